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
 * the current one is treated as absent. fetch_ms feeds early refresh. */
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

entry_state_t entry_state(const entry_t *e, int64_t now);
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
