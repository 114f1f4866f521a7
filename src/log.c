/* log.c: leveled logging to stderr with a timestamp, one line per message. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum log_level log_min_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcmp(name, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return -1;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    if (lvl < log_min_level) return;
    char ts[32];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ %-5s %s\n", ts, now.tv_nsec / 1000000, level_names[lvl], msg);
}

bool log_limit_allow(log_limit_t *l, uint64_t now_ms, uint32_t per_window, uint64_t window_ms,
                     uint64_t *report)
{
    *report = 0;
    if (l->used == 0 || now_ms - l->window_start >= window_ms) {
        /* A new window: what the last one held back is reported now. */
        *report = l->suppressed;
        l->suppressed = 0;
        l->used = 0;
        l->window_start = now_ms;
    }
    if (l->used < per_window) {
        l->used++;
        return true;
    }
    l->suppressed++;
    return false;
}

void log_escape(char *out, size_t outlen, const void *s, size_t len, size_t max_in)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = s;
    size_t n = len > max_in ? max_in : len, o = 0;
    if (outlen == 0) return;
    for (size_t i = 0; i < n; i++) {
        char tmp[4];
        size_t k = 0;
        unsigned char c = p[i];
        if (c == '\\' || c == '\'') {
            tmp[k++] = '\\';
            tmp[k++] = (char)c;
        } else if (c >= 0x20 && c < 0x7f) {
            tmp[k++] = (char)c;
        } else {
            tmp[k++] = '\\';
            tmp[k++] = 'x';
            tmp[k++] = hex[c >> 4];
            tmp[k++] = hex[c & 15];
        }
        if (o + k >= outlen) break; /* never half an escape */
        memcpy(out + o, tmp, k);
        o += k;
    }
    out[o] = '\0';
    if (len > n) {
        int w = snprintf(out + o, outlen - o, "...(%zu bytes)", len);
        if (w < 0 || (size_t)w >= outlen - o) out[o] = '\0'; /* did not fit: drop it whole */
    }
}
