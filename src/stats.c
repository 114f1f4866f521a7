/* stats.c: histogram bucketing for fetch, command and Redis latencies. */
#include "stats.h"

const double fetch_hist_bounds[FETCH_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                      0.5,   1,    2.5,   5,    10,  30};

void ns_stats_observe_fetch(ns_stats_t *s, double seconds)
{
    int i = 0;
    while (i < FETCH_HIST_BUCKETS && seconds > fetch_hist_bounds[i])
        i++;
    s->fetch_hist[i]++; /* non-cumulative here; the exporter accumulates */
    s->fetch_seconds_sum += seconds;
}

void ns_stats_count_origin(ns_stats_t *s, const char *err, long status)
{
    if (err || status < 200 || status > 599)
        s->origin_error++;
    else if (status < 300)
        s->origin_2xx++;
    else if (status < 400)
        s->origin_3xx++;
    else if (status < 500)
        s->origin_4xx++;
    else
        s->origin_5xx++;
}

/* 50 us .. 10 s: a hit from the in-process tier is tens of microseconds, a
 * Redis round trip a few hundred, a fill up to the fetch timeout. */
const uint64_t lat_hist_bounds_ns[LAT_HIST_BUCKETS] = {
    50000,    100000,   250000,    500000,    1000000,   2500000,    5000000,    10000000,
    25000000, 50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000, 10000000000ULL};

/* The first bucket whose bound is >= 2^k, for k the top bit of a
 * duration: from there at most two more compares find its bucket (the
 * bounds grow at least twice each step). */
const uint8_t lat_hist_start[64] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  1,  2,  3,  4,  5,  5,
    6,  7,  8,  9,  10, 11, 12, 13, 14, 14, 15, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
};

lat_hist_t cmd_stats_hist[CMD_STATS_MAX];
const char *cmd_stats_name[CMD_STATS_MAX];
size_t cmd_stats_count;
lat_hist_t redis_rtt_hist;
uint64_t lat_clock_ns;
bool lat_clock_valid;
