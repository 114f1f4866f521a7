/* util.h: allocation wrappers and small helpers shared by every module.
 *
 * Allocation policy (as in Redis's zmalloc): the C core never limps on with a
 * failed malloc. x*alloc() log and abort on out-of-memory, so callers need no
 * NULL checks and no half-initialised objects can escape. Memory that a
 * client or a policy can drive (Lua states) is capped separately and fails
 * gracefully; see policy.c. */
#ifndef LC_UTIL_H
#define LC_UTIL_H

#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xmemdup(const void *p, size_t n); /* NUL-terminated copy of n bytes */

/* Milliseconds since the Unix epoch (wall clock) and a monotonic clock. */
int64_t now_ms(void);
uint64_t mono_ms(void);

/* Parse a whole string as a base-10 integer / a finite double. 0 on success. */
int parse_ll(const char *s, size_t len, long long *out);
int parse_double(const char *s, size_t len, double *out);

/* v in base 10, written backwards so that it ends just before end (at
 * most 20 bytes: a sign and 19 digits); returns where it starts. */
char *format_ll_back(char *end, long long v);

/* Case-insensitive compare of a counted string with a C string. */
int eq_nocase(const char *s, size_t len, const char *lit);

/* SHA-1 of data as 40 lowercase hex digits (policy versions, Redis script
 * names); "" if the digest is unavailable. */
void sha1_hex(const char *data, size_t len, char out[41]);

#define LC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define LC_UNUSED(x)    (void)(x)

#endif
