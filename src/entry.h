/* entry.h: how a cached value is stored in Redis, and the TTL math.
 *
 * One Redis string per cached key, readable with redis-cli GET:
 *
 *   LC1 <kind> <version> <gen> <fresh_until> <stale_until> <error_until> <fetch_ms> <stored_at>\n
 *   <value bytes>
 *
 * kind is v (value), n (not found: no value bytes) or e (cached fetch error:
 * the value bytes are the message). Times are Unix epoch milliseconds; every
 * instance sharing a Redis compares them with its own wall clock, so the
 * hosts must be NTP-synchronised (skew shifts expiry by the skew, no more).
 * stale_until = fresh_until + stale_ttl (stale-while-revalidate window);
 * error_until = fresh_until + stale_if_error (stale-if-error window).
 * The Redis key expires (PX) at the latest of the three, so Redis drops an
 * entry once no rule can use it. version is the policy's `version`; gen the
 * namespace generation (FLUSHNS); an entry whose version or gen differs from
 * the current one is treated as absent. fetch_ms feeds early refresh.
 *
 * Redis may hold anything (another program, a bug, an attacker with access):
 * a decoded entry is used only if entry_check() finds every field in range,
 * and every computation on its times goes through the saturating helpers
 * below, so no field value can overflow the arithmetic. */
#ifndef LC_ENTRY_H
#define LC_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define ENTRY_MAGIC "LC1 "

typedef enum entry_kind { ENTRY_VALUE = 'v', ENTRY_NEGATIVE = 'n', ENTRY_ERROR = 'e' } entry_kind_t;

typedef struct entry {
    entry_kind_t kind;
    long long version;
    long long gen;
    int64_t fresh_until;
    int64_t stale_until;
    int64_t error_until;
    int64_t fetch_ms;
    int64_t stored_at;
    const char *value; /* points into the decoded buffer */
    size_t len;
} entry_t;

/* Bounds of a valid entry (docs/STORAGE.md, "Entries that fail validation").
 * Times and durations are at most 2^53 ms (about 285,000 years): our own
 * deadlines are now + ttl + stale_ttl with each ttl clamped to 1e15 ms
 * (entry_secs_to_ms), far below it. Generations stay exact in a double, so
 * the Lua scripts in Redis handle them without rounding (nsgen.c). */
#define ENTRY_TIME_MAX  (INT64_C(1) << 53)
#define ENTRY_GEN_MAX   ((INT64_C(1) << 53) - 1)
#define ENTRY_TTL_MAX   INT64_C(1000000000000000) /* 1e15 ms: the longest ttl honoured */
#define ENTRY_FUTURE_MS 10000 /* how far stored_at may be ahead of our clock (skew) */

/* What entry_check (or entry_decode) found wrong; ENTRY_OK if nothing. */
typedef enum entry_fault {
    ENTRY_OK,
    ENTRY_BAD_HEADER,    /* does not parse: not an entry of this format */
    ENTRY_BAD_GEN,       /* generation outside [0, ENTRY_GEN_MAX] */
    ENTRY_BAD_TIME,      /* a deadline or fetch_ms outside [0, ENTRY_TIME_MAX] */
    ENTRY_BAD_ORDER,     /* stale_until or error_until before fresh_until */
    ENTRY_BAD_STORED_AT, /* stored_at negative or over ENTRY_FUTURE_MS in the future */
    ENTRY_FAULTS         /* how many kinds there are */
} entry_fault_t;

typedef enum entry_state {
    STATE_FRESH,     /* now < fresh_until */
    STATE_STALE,     /* within stale_until: serve, refresh in background */
    STATE_STALE_ERR, /* within error_until only: serve only if a fetch fails */
    STATE_EXPIRED,   /* no rule can use it */
} entry_state_t;

/* Append the encoded entry (header + value) to out. */
void entry_encode(buf_t *out, const entry_t *e);
/* Parse data[0..len). 0 ok (e->value points into data), -1 not an entry. */
int entry_decode(const char *data, size_t len, entry_t *e);

/* Is the decoded e valid at wall-clock time now? ENTRY_OK or the first fault. */
entry_fault_t entry_check(const entry_t *e, int64_t now);
/* A short text for a fault ("generation out of range", ...). */
const char *entry_fault_text(entry_fault_t f);

/* Saturating a - b: clamped to [INT64_MIN, INT64_MAX] instead of overflowing. */
int64_t ms_sub_sat(int64_t a, int64_t b);
/* Saturating a + b. */
int64_t ms_add_sat(int64_t a, int64_t b);
/* Milliseconds as whole seconds, rounded half up, for any ms. */
int64_t ms_to_s_round(int64_t ms);
/* A duration in seconds as milliseconds, clamped to [0, ENTRY_TTL_MAX]
 * (NaN: 0), so a huge policy value cannot overflow a deadline. */
int64_t entry_secs_to_ms(double s);

entry_state_t entry_state(const entry_t *e, int64_t now);
/* PEEK's milliseconds: freshness left, negative since expiry (saturating). */
int64_t entry_fresh_left_ms(const entry_t *e, int64_t now);
/* TTL (in_ms 0: seconds, rounded) or PTTL of a cached entry: freshness
 * left, 0 once stale. */
int64_t entry_ttl_left(const entry_t *e, int64_t now, int in_ms);
/* Milliseconds Redis should keep the key: until the latest deadline, >= 1. */
int64_t entry_redis_ttl_ms(const entry_t *e, int64_t now);

/* ttl seconds spread uniformly by +-jitter (a fraction); u is a uniform random
 * number in [0,1). Never negative. Returns milliseconds. */
int64_t ttl_jittered_ms(double ttl_s, double jitter, double u);

/* XFetch (Vattani et al., VLDB 2015): refresh early when
 *   now - fetch_ms * beta * ln(u) >= fresh_until, u uniform in (0,1].
 * The expected head start grows with the fetch's cost and beta. */
int xfetch_should_refresh(int64_t now, int64_t fresh_until, int64_t fetch_ms, double beta,
                          double u);

#endif
