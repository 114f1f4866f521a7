/* stats.c: histogram bucketing for fetch durations. */
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
