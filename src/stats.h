/* stats.h: counters behind INFO/STATS and the Prometheus metrics (SPEC §7).
 * Plain integers bumped on the loop thread: no atomics needed. */
#ifndef LC_STATS_H
#define LC_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

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
    /* ctx.http calls completed, by status class; error: no response
     * (transport failure, timeout, or a status outside 200..599) */
    uint64_t origin_2xx, origin_3xx, origin_4xx, origin_5xx, origin_error;
    /* write-behind: SET/DEL queued or refused (queue down); writes a
     * write_batch carried, by outcome; writes moved to the dead letters */
    uint64_t writes_behind_queued, writes_behind_queue_error, writes_behind_ok, writes_behind_error,
        writes_behind_dead;
} ns_stats_t;

void ns_stats_observe_fetch(ns_stats_t *s, double seconds);
/* One finished ctx.http call: status, or err set (no response). */
void ns_stats_count_origin(ns_stats_t *s, const char *err, long status);

/* Latency histograms kept in integer nanoseconds, so an observation on the
 * hit path is a few compares and adds (luacached_command_duration_seconds,
 * luacached_redis_rtt_seconds). Bounds: lat_hist_bounds_ns. */
#define LAT_HIST_BUCKETS 16
extern const uint64_t lat_hist_bounds_ns[LAT_HIST_BUCKETS];

typedef struct lat_hist {
    uint64_t b[LAT_HIST_BUCKETS + 1]; /* non-cumulative; the last is +Inf */
    uint64_t sum_ns;
} lat_hist_t;

/* The clock the histograms are kept in (CLOCK_MONOTONIC, as uv_hrtime,
 * without its wrapper: this runs twice per command). */
static inline uint64_t lat_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

extern const uint8_t lat_hist_start[64];

static inline void lat_hist_observe(lat_hist_t *h, uint64_t ns)
{
    int i = lat_hist_start[63 - __builtin_clzll(ns | 1)];
    while (i < LAT_HIST_BUCKETS && ns > lat_hist_bounds_ns[i])
        i++;
    h->b[i]++;
    h->sum_ns += ns;
}

/* Per command of the command table, by its index there (commands.c
 * registers the names at start; the table is at most CMD_STATS_MAX long). */
#define CMD_STATS_MAX 64
extern lat_hist_t cmd_stats_hist[CMD_STATS_MAX];
extern const char *cmd_stats_name[CMD_STATS_MAX];
extern size_t cmd_stats_count;

/* A clock reading (uv_hrtime) shared by what finishes inside one
 * callback: the command link sets it as it hands a reply to its callback
 * (valid until that returns), so the replies that reply completes are
 * timed without reading the clock again each; a Lua run inside moves it
 * on (fetch.c). Outside such a callback it is not valid. */
extern uint64_t lat_clock_ns;
extern bool lat_clock_valid;

/* Every Redis round trip (any link, any node), from queueing the command
 * to its reply. */
extern lat_hist_t redis_rtt_hist;

#endif
