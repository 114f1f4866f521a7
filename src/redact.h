/* redact.h: credentials out of text before it is logged or shown.
 *
 * The one place that knows what a secret in a URL looks like. Whatever
 * prints a URL, or text that may hold one (a log line, an error, INFO, the
 * process title), runs it through here first:
 *   redis://user:secret@host:6379/0       -> redis://user:***@host:6379/0
 *   redis://:secret@host                  -> redis://:***@host
 *   unix:/run/redis.sock?password=secret  -> unix:/run/redis.sock?password=***
 * and a userinfo without ':' (redis-cli's "redis://secret@host") is all
 * password, so all of it is masked.
 * The rules lean towards hiding too much: an '@' anywhere after the host
 * (a '/' or '?' in a password that was not %-escaped) hides everything
 * between "://" and the last '@'. */
#ifndef LC_REDACT_H
#define LC_REDACT_H

#include <stdbool.h>
#include <stddef.h>

/* url is one whole URL (spaces are part of it, as in a password). Writes a
 * NUL-terminated result into out (truncated to outlen - 1 bytes) and returns
 * true when something was hidden. */
bool redact_url(const char *url, char *out, size_t outlen);

/* Free text, len bytes (say, a fetch error): each whitespace-separated word
 * is treated as redact_url() treats a URL. Same output rules. */
bool redact_text(const char *text, size_t len, char *out, size_t outlen);

#endif
