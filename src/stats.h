/* stats.h: counters behind INFO/STATS and the Prometheus metrics (SPEC §7).
 * Plain integers bumped on the loop thread: no atomics needed. */
#ifndef LC_STATS_H
#define LC_STATS_H

#include <stdint.h>

/* Buckets of luacached_fetch_duration_seconds, in seconds. */
#define FETCH_HIST_BUCKETS 12
extern const double fetch_hist_bounds[FETCH_HIST_BUCKETS];

typedef struct ns_stats {
    uint64_t requests_get, requests_mget, requests_set, requests_del, requests_peek, requests_ttl,
        requests_refresh, requests_other;
    uint64_t hits_l1, hits_redis, misses, negative_hits;
    uint64_t stale_revalidate, stale_error;
    uint64_t fetch_ok, fetch_not_found, fetch_error, fetch_timeout;
    uint64_t fetch_hist[FETCH_HIST_BUCKETS + 1]; /* last one is +Inf */
    double fetch_seconds_sum;
    uint64_t coalesced;
    uint64_t invalidations_del, invalidations_event, invalidations_purge, invalidations_tag,
        invalidations_flush, invalidations_race; /* race: in-flight fill not stored */
    uint64_t lock_waits, lock_takeovers, early_refreshes;
    uint64_t reloads_ok, reloads_error;
    uint64_t stores, store_errors;
    uint64_t writes_through_ok, writes_through_error; /* write / delete at the origin */
    /* write-behind: SET/DEL queued or refused (queue down); writes a
     * write_batch carried, by outcome; writes moved to the dead letters */
    uint64_t writes_behind_queued, writes_behind_queue_error, writes_behind_ok, writes_behind_error,
        writes_behind_dead;
} ns_stats_t;

void ns_stats_observe_fetch(ns_stats_t *s, double seconds);

#endif
