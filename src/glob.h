/* glob.h: Redis's glob patterns (KEYS, SCAN MATCH), binary-safe.
 *
 * PURGE sends a pattern to Redis's SCAN and applies the same pattern to
 * what this process holds (the in-process tier, fills in flight), so both
 * sides must agree on what matches: this is Redis's stringmatchlen()
 * semantics, not fnmatch(3), and it works on byte strings that may hold
 * NUL. `*` any run of bytes, `?` one byte, `[abc]` `[^a-z]` a class, `\x`
 * the byte x. Checked against Redis 7's KEYS on random patterns; the one
 * difference is the empty string, which Redis matches against nothing but
 * the empty pattern (cache keys are never empty). */
#ifndef LC_GLOB_H
#define LC_GLOB_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Does s[0..slen) match pat[0..plen)? O(plen * slen) at worst: `*` backtracks
 * to the last star only, never recursively. */
bool glob_match(const char *pat, size_t plen, const char *s, size_t slen);

/* Append s with every glob metacharacter escaped, so it matches literally. */
void glob_escape(buf_t *out, const char *s, size_t len);

/* Does s hold a glob metacharacter (* ? [ ] \)? */
bool glob_has_meta(const char *s, size_t len);

#endif
