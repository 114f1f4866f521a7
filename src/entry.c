/* entry.c: the stored entry format and TTL math (see entry.h). Pure code. */
#include "entry.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* v in decimal, then sep, at p; returns the end. Not printf: every fill
 * encodes seven of these, and printf cost a third of a fill's own
 * instructions. */
static char *put_ll(char *p, long long v, char sep)
{
    char tmp[24];
    char *end = tmp + sizeof(tmp), *q = format_ll_back(end, v);
    size_t n = (size_t)(end - q);
    memcpy(p, q, n);
    p[n] = sep;
    return p + n + 1;
}

void entry_encode(buf_t *out, const entry_t *e)
{
    /* magic, kind, seven numbers of at most 20 digits and a sign, each
     * with its separator */
    buf_reserve(out, sizeof(ENTRY_MAGIC) + 2 + 7 * 22 + e->len);
    char *p = out->data + out->len;
    memcpy(p, ENTRY_MAGIC, sizeof(ENTRY_MAGIC) - 1);
    p += sizeof(ENTRY_MAGIC) - 1;
    *p++ = (char)e->kind;
    *p++ = ' ';
    p = put_ll(p, e->version, ' ');
    p = put_ll(p, e->gen, ' ');
    p = put_ll(p, (long long)e->fresh_until, ' ');
    p = put_ll(p, (long long)e->stale_until, ' ');
    p = put_ll(p, (long long)e->error_until, ' ');
    p = put_ll(p, (long long)e->fetch_ms, ' ');
    p = put_ll(p, (long long)e->stored_at, '\n');
    out->len = (size_t)(p - out->data);
    buf_append(out, e->value, e->len);
}

/* If the 8 bytes at s are all decimal digits, their value in *out. Eight
 * digits at a time, in a 64-bit word: each header field has 13 (times in
 * ms). Bytes are combined pairwise (d0*10+d1), then in fours, then the two
 * halves; no lane can carry into the next (99, 9999 fit). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static bool eight_digits(const char *s, uint64_t *out)
{
    uint64_t v;
    memcpy(&v, s, 8);
    /* each byte in 0x30..0x39: high nibble 3, and still 3 after adding 6 */
    if ((v & 0xF0F0F0F0F0F0F0F0ULL) != 0x3030303030303030ULL ||
        ((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) != 0x3030303030303030ULL)
        return false;
    v -= 0x3030303030303030ULL;                        /* byte i: digit i (memory order) */
    v = (v * 10 + (v >> 8)) & 0x00FF00FF00FF00FFULL;   /* 16-bit lanes: two digits */
    v = (v * 100 + (v >> 16)) & 0x0000FFFF0000FFFFULL; /* 32-bit lanes: four digits */
    *out = (v & 0xFFFF) * 10000 + (v >> 32);
    return true;
}
#endif

/* Read one space- or newline-terminated integer; advances *p. Every hit
 * decodes seven of these, so the digit loop has no bounds test of its
 * own: the header's '\n' at nl, not a digit, ends it. */
static int read_ll(const char **p, const char *nl, long long *out)
{
    const char *s = *p;
    if (s > nl) return -1;
    bool neg = *s == '-';
    s += neg;
    const char *digits = s;
    unsigned long long v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t eight;
    while (nl - s >= 8 && eight_digits(s, &eight)) { /* 8 bytes before nl: readable */
        v = v * 100000000ULL + eight;
        s += 8;
    }
#endif
    while ((unsigned char)(*s - '0') <= 9) {
        v = v * 10 + (unsigned)(*s - '0');
        s++;
    }
    size_t n = (size_t)(s - digits);
    if (n == 0 || (*s != ' ' && *s != '\n')) return -1;
    /* 19 digits fit in 64 unsigned bits; more may have wrapped */
    if (n > 19 || v > (unsigned long long)INT64_MAX) return -1;
    *out = neg ? -(long long)v : (long long)v;
    *p = s + 1;
    return 0;
}

int entry_decode(const char *data, size_t len, entry_t *e)
{
    const char *end = data + len;
    /* The header is short; never scan past the first 256 bytes for it. */
    size_t hlen = len < 256 ? len : 256;
    const char *nl = memchr(data, '\n', hlen);
    if (!nl || len < 7 || memcmp(data, ENTRY_MAGIC, 4) != 0) return -1;
    char kind = data[4];
    if ((kind != 'v' && kind != 'n' && kind != 'e') || data[5] != ' ') return -1;
    const char *p = data + 6;
    long long f[7];
    for (int i = 0; i < 7; i++)
        if (read_ll(&p, nl, &f[i]) != 0) return -1;
    if (p != nl + 1) return -1;
    e->kind = (entry_kind_t)kind;
    e->version = f[0];
    e->gen = f[1];
    e->fresh_until = f[2];
    e->stale_until = f[3];
    e->error_until = f[4];
    e->fetch_ms = f[5];
    e->stored_at = f[6];
    e->value = p;
    e->len = (size_t)(end - p);
    return 0;
}

static bool in_range(int64_t v, int64_t lo, int64_t hi)
{
    return v >= lo && v <= hi;
}

entry_fault_t entry_check(const entry_t *e, int64_t now)
{
    if (!in_range(e->gen, 0, ENTRY_GEN_MAX)) return ENTRY_BAD_GEN;
    if (!in_range(e->fresh_until, 0, ENTRY_TIME_MAX) ||
        !in_range(e->stale_until, 0, ENTRY_TIME_MAX) ||
        !in_range(e->error_until, 0, ENTRY_TIME_MAX) || !in_range(e->fetch_ms, 0, ENTRY_TIME_MAX))
        return ENTRY_BAD_TIME;
    /* Our encoder adds stale_ttl and stale_if_error (>= 0) to fresh_until. */
    if (e->stale_until < e->fresh_until || e->error_until < e->fresh_until) return ENTRY_BAD_ORDER;
    /* A stored_at ahead of every clock would pass for "stored after this
     * REFRESH was asked for" (fill.c) for as long as it stays ahead. */
    if (!in_range(e->stored_at, 0, ms_add_sat(now, ENTRY_FUTURE_MS))) return ENTRY_BAD_STORED_AT;
    return ENTRY_OK;
}

const char *entry_fault_text(entry_fault_t f)
{
    switch (f) {
    case ENTRY_OK:
        return "valid";
    case ENTRY_BAD_HEADER:
        return "not an entry (header does not parse)";
    case ENTRY_BAD_GEN:
        return "generation out of range";
    case ENTRY_BAD_TIME:
        return "time field out of range";
    case ENTRY_BAD_ORDER:
        return "deadlines out of order";
    case ENTRY_BAD_STORED_AT:
        return "stored_at in the future";
    case ENTRY_FAULTS:
        break;
    }
    return "unknown fault";
}

int64_t ms_sub_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

int64_t ms_add_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

int64_t ms_to_s_round(int64_t ms)
{
    /* floor((ms + 500) / 1000) without the addition overflowing */
    int64_t q = ms / 1000, r = ms % 1000;
    if (r < 0) {
        q--;
        r += 1000;
    }
    return r >= 500 ? q + 1 : q;
}

int64_t entry_secs_to_ms(double s)
{
    if (!(s > 0)) return 0;
    double ms = s * 1000.0;
    if (ms >= (double)ENTRY_TTL_MAX) return ENTRY_TTL_MAX;
    return (int64_t)llround(ms);
}

entry_state_t entry_state(const entry_t *e, int64_t now)
{
    if (now < e->fresh_until) return STATE_FRESH;
    if (now < e->stale_until) return STATE_STALE;
    if (now < e->error_until) return STATE_STALE_ERR;
    return STATE_EXPIRED;
}

int64_t entry_fresh_left_ms(const entry_t *e, int64_t now)
{
    return ms_sub_sat(e->fresh_until, now);
}

int64_t entry_ttl_left(const entry_t *e, int64_t now, int in_ms)
{
    int64_t ms = ms_sub_sat(e->fresh_until, now);
    if (ms < 0) ms = 0; /* cached but stale: no freshness left */
    return in_ms ? ms : ms_to_s_round(ms);
}

int64_t entry_redis_ttl_ms(const entry_t *e, int64_t now)
{
    int64_t until = e->fresh_until;
    if (e->stale_until > until) until = e->stale_until;
    if (e->error_until > until) until = e->error_until;
    int64_t left = ms_sub_sat(until, now);
    return left > 0 ? left : 1;
}

int64_t ttl_jittered_ms(double ttl_s, double jitter, double u)
{
    if (!(ttl_s > 0)) return 0;
    if (!(jitter >= 0)) jitter = 0; /* NaN too: llround(NaN) is not a number of ms */
    if (jitter > 1) jitter = 1;
    if (!(u >= 0 && u <= 1)) u = 0.5;
    double factor = 1.0 + jitter * (2.0 * u - 1.0);
    double ms = ttl_s * 1000.0 * factor;
    if (!(ms > 0)) return 0;
    if (ms > (double)ENTRY_TTL_MAX) ms = (double)ENTRY_TTL_MAX; /* far below int64 overflow */
    return (int64_t)llround(ms);
}

int xfetch_should_refresh(int64_t now, int64_t fresh_until, int64_t fetch_ms, double beta, double u)
{
    if (!(beta > 0) || fetch_ms <= 0) return 0;
    if (u <= 0) u = 1e-12;
    if (u > 1) u = 1;
    double head_start = -(double)fetch_ms * beta * log(u);
    return (double)now + head_start >= (double)fresh_until;
}
