/* log.h: leveled logging to stderr. Never called per request on the hit path. */
#ifndef LC_LOG_H
#define LC_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

extern enum log_level log_min_level;

int log_level_parse(const char *name, enum log_level *out); /* 0 ok, -1 unknown */
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_min_level <= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__);                           \
    } while (0)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* ---- Rate limiting: for lines an outside party can trigger at will ------
 *
 * One log_limit_t per kind of line (say, fetch failures of one namespace).
 * Fixed windows: at most `per_window` lines in each window of `window_ms`;
 * the rest are counted, and the count is handed back with the first line of
 * a later window, so the caller logs "suppressed K similar messages" just
 * before it. Zero-initialised is ready to use. */
typedef struct log_limit {
    uint64_t window_start; /* ms, on the caller's clock */
    uint32_t used;         /* lines let through in this window */
    uint64_t suppressed;   /* lines held back and not reported yet */
} log_limit_t;

/* One line wanting out at now_ms. True: log it. *report gets the number of
 * lines suppressed in earlier windows and not yet reported (0 mostly); it is
 * only ever non-zero when the call returns true. */
bool log_limit_allow(log_limit_t *l, uint64_t now_ms, uint32_t per_window, uint64_t window_ms,
                     uint64_t *report);

/* Printable, bounded text of arbitrary bytes, for ids and messages in log
 * lines: printable ASCII as is, backslash and quote escaped, anything else
 * as \xHH (so no byte can end the line or fake another), and cut after
 * max_in input bytes with "...(N bytes)". Always NUL-terminates out. */
void log_escape(char *out, size_t outlen, const void *s, size_t len, size_t max_in);

#endif
