/* metrics.h: the Prometheus text exposition (format 0.0.4) of SPEC §7,
 * served by the METRICS command and by GET /metrics (metrics_http.c).
 *
 * Two layers: metrics_render_from() is pure (a list of namespace views and
 * a struct of process-wide values in, text out), so the unit tests pin the
 * exact output; metrics_render() gathers the live values and calls it.
 * Every family is always present with its # HELP and # TYPE lines, and every
 * per-namespace family has a sample for every namespace, zero included, so a
 * rate() never starts from a missing series. docs/METRICS.md lists them. */
#ifndef LC_METRICS_H
#define LC_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "stats.h"

/* One namespace as the renderer sees it. */
typedef struct metrics_ns {
    const char *name;
    const ns_stats_t *stats;
    bool loaded;         /* the last load of its policy succeeded */
    uint64_t l1_entries; /* its items in the in-process tier */
} metrics_ns_t;

/* Process-wide values. */
typedef struct metrics_globals {
    const char *version;
    bool backend_up;
    uint64_t backend_errors_total;
    uint64_t backend_outages_total;
    bool backend_subscribed;
    uint64_t backend_subscriber_outages_total;
    bool clustered; /* the cluster_* fields below mean something */
    uint64_t cluster_masters, cluster_masters_up, cluster_redirects_total,
        cluster_map_refreshes_total;
    uint64_t store_batches_total;
    uint64_t store_batched_keys_total;
    uint64_t store_noscript_total;
    uint64_t connected_clients;
    uint64_t connections_total;
    uint64_t commands_total;
    uint64_t l1_entries;
    uint64_t l1_bytes;
    uint64_t fills_in_flight;
    uint64_t fetches_in_flight;
    double uptime_seconds;
    /* luacached_command_duration_seconds: ncmds histograms and names */
    const lat_hist_t *cmd_hist;
    const char *const *cmd_names;
    size_t ncmds;
    const lat_hist_t *redis_rtt; /* NULL: all zero */
} metrics_globals_t;

/* Append the whole exposition to out. Pure. */
void metrics_render_from(buf_t *out, const metrics_ns_t *ns, size_t nns,
                         const metrics_globals_t *g);

/* Append the live exposition to out (every namespace, sorted by name). */
void metrics_render(buf_t *out);

/* Helpers the renderer uses, exposed for the tests. */
/* A label value escaped per the format: \ -> \\, " -> \", newline -> \n. */
void metrics_escape_label(buf_t *out, const char *s);
/* A sample value or le bound: the shortest text that reads back as v
 * ("0.005", "1", "2.5"), "+Inf", "-Inf" or "NaN". */
void metrics_format_double(char *dst, size_t n, double v);

#endif
