/* metrics.c: render the counters of stats.h and the process-wide gauges as
 * Prometheus text exposition format 0.0.4 (SPEC §7; docs/METRICS.md).
 *
 * The per-namespace counter families are one declarative table: family
 * name, help, an optional label and, per label value, the offset of the
 * counter in ns_stats_t. Adding a counter to stats.h and a row here is all
 * it takes to export it. Rendering is O(namespaces x families) and runs
 * only when scraped. */
#include "metrics.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cache.h"
#include "config.h"
#include "l1.h"
#include "policy.h"
#include "server.h"
#include "store.h"
#include "util.h"
#include "write_behind.h"

/* ------------------------------------------------------------------------
 * Formatting helpers
 * ---------------------------------------------------------------------- */

void metrics_escape_label(buf_t *out, const char *s)
{
    const char *run = s; /* start of the bytes not yet copied */
    for (; *s; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        if (!esc) continue;
        buf_append(out, run, (size_t)(s - run));
        buf_append(out, esc, 2);
        run = s + 1;
    }
    buf_append(out, run, (size_t)(s - run));
}

void metrics_format_double(char *dst, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(dst, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(dst, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    /* The fewest digits that read back exactly, as Go's strconv 'g' -1 and
     * so the Prometheus client libraries do: 0.005 is "0.005", not
     * "0.0050000000000000001". Printing with at least 6 digits keeps %g off
     * the exponent form for 10 and 30 ("10", not "1e+01"); %g drops the
     * trailing zeros again. */
    int prec = 1;
    while (prec < 17) {
        snprintf(dst, n, "%.*e", prec - 1, v);
        if (strtod(dst, NULL) == v) break;
        prec++;
    }
    snprintf(dst, n, "%.*g", prec < 6 ? 6 : prec, v);
}

static void help_type(buf_t *o, const char *name, const char *help, const char *type)
{
    buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{ns="NS"[,label="value"]} v */
static void ns_sample(buf_t *o, const char *name, const char *ns, const char *label,
                      const char *value, uint64_t v)
{
    buf_printf(o, "%s{ns=\"", name);
    metrics_escape_label(o, ns);
    buf_append_str(o, "\"");
    /* our own literals: no escaping; label "" means value is the labels */
    if (label && !label[0])
        buf_printf(o, ",%s", value);
    else if (label)
        buf_printf(o, ",%s=\"%s\"", label, value);
    buf_printf(o, "} %llu\n", (unsigned long long)v);
}

/* ------------------------------------------------------------------------
 * Per-namespace counter families
 * ---------------------------------------------------------------------- */

#define MAX_LABEL_VALUES 8
#define FIELD(f)         offsetof(ns_stats_t, f)

typedef struct ns_counter_family {
    const char *name;
    const char *help;
    const char *label; /* NULL: only ns */
    struct {
        const char *value; /* label value; NULL ends the list */
        size_t off;        /* of a uint64_t in ns_stats_t */
    } v[MAX_LABEL_VALUES + 1];
} ns_counter_family_t;

/* Families of SPEC §7 first (in its order), then the extras. */
static const ns_counter_family_t spec_families[] = {
    {"luacached_requests_total",
     "Cache commands received, per namespace and command (ttl counts TTL and PTTL; "
     "MGET counts once per key).",
     "cmd",
     {{"get", FIELD(requests_get)},
      {"mget", FIELD(requests_mget)},
      {"set", FIELD(requests_set)},
      {"del", FIELD(requests_del)},
      {"peek", FIELD(requests_peek)},
      {"ttl", FIELD(requests_ttl)},
      {"refresh", FIELD(requests_refresh)},
      {"other", FIELD(requests_other)}}},
    {"luacached_hits_total",
     "Reads answered from a fresh cached value, per tier (l1: in-process, redis).",
     "tier",
     {{"l1", FIELD(hits_l1)}, {"redis", FIELD(hits_redis)}}},
    {"luacached_misses_total",
     "Reads that found nothing usable and waited for a fetch.",
     NULL,
     {{"", FIELD(misses)}}},
    {"luacached_negative_hits_total",
     "Reads answered nil from a cached not-found.",
     NULL,
     {{"", FIELD(negative_hits)}}},
    {"luacached_stale_served_total",
     "Reads answered with a stale value (revalidate: within stale_ttl while one background "
     "refresh runs; error: within stale_if_error after a failed fetch).",
     "reason",
     {{"revalidate", FIELD(stale_revalidate)}, {"error", FIELD(stale_error)}}},
    {"luacached_fetches_total",
     "Origin fetches run through the policy, by outcome.",
     "result",
     {{"ok", FIELD(fetch_ok)},
      {"not_found", FIELD(fetch_not_found)},
      {"error", FIELD(fetch_error)},
      {"timeout", FIELD(fetch_timeout)}}},
};

static const ns_counter_family_t spec_families_2[] = {
    {"luacached_coalesced_total",
     "Requests that joined a fetch already in flight instead of starting their own.",
     NULL,
     {{"", FIELD(coalesced)}}},
    {"luacached_invalidations_total",
     "Cache entries invalidated, by kind (race: an in-flight fill not stored because an "
     "invalidation overtook it).",
     "kind",
     {{"del", FIELD(invalidations_del)},
      {"event", FIELD(invalidations_event)},
      {"purge", FIELD(invalidations_purge)},
      {"tag", FIELD(invalidations_tag)},
      {"flush", FIELD(invalidations_flush)},
      {"race", FIELD(invalidations_race)}}},
    {"luacached_policy_reloads_total",
     "Policy loads (the first one at start-up included), by result; on error the previous "
     "version stays active.",
     "result",
     {{"ok", FIELD(reloads_ok)}, {"error", FIELD(reloads_error)}}},
    {"luacached_lock_waits_total",
     "Fills that waited on another instance's fill lock instead of fetching.",
     NULL,
     {{"", FIELD(lock_waits)}}},
    {"luacached_lock_takeovers_total",
     "Fills that took over after waiting lock_timeout on another instance's fill.",
     NULL,
     {{"", FIELD(lock_takeovers)}}},
    {"luacached_early_refreshes_total",
     "Background refreshes started before expiry by early_refresh (XFetch).",
     NULL,
     {{"", FIELD(early_refreshes)}}},
    {"luacached_writes_total",
     "Writes through the cache to the origin (write-through SET runs write, DEL runs "
     "delete), by mode and result.",
     "",
     {{"mode=\"through\",result=\"ok\"", FIELD(writes_through_ok)},
      {"mode=\"through\",result=\"error\"", FIELD(writes_through_error)},
      {"mode=\"behind\",result=\"queued\"", FIELD(writes_behind_queued)},
      {"mode=\"behind\",result=\"queue_error\"", FIELD(writes_behind_queue_error)},
      {"mode=\"behind\",result=\"ok\"", FIELD(writes_behind_ok)},
      {"mode=\"behind\",result=\"error\"", FIELD(writes_behind_error)},
      {"mode=\"behind\",result=\"dead_letter\"", FIELD(writes_behind_dead)}}},
    {"luacached_stores_total",
     "Fetch results sent to Redis for storing (none while Redis is down).",
     NULL,
     {{"", FIELD(stores)}}},
    {"luacached_store_errors_total",
     "Stores that Redis rejected or never answered.",
     NULL,
     {{"", FIELD(store_errors)}}},
    {"luacached_origin_responses_total",
     "ctx.http calls completed by the namespace's policy, by HTTP status class (error: no "
     "response: a transport failure or timeout, or a status outside 200..599).",
     "class",
     {{"2xx", FIELD(origin_2xx)},
      {"3xx", FIELD(origin_3xx)},
      {"4xx", FIELD(origin_4xx)},
      {"5xx", FIELD(origin_5xx)},
      {"error", FIELD(origin_error)}}},
};

static uint64_t counter_at(const ns_stats_t *s, size_t off)
{
    uint64_t v;
    memcpy(&v, (const char *)s + off, sizeof(v));
    return v;
}

static void render_ns_counters(buf_t *o, const ns_counter_family_t *fams, size_t nfams,
                               const metrics_ns_t *ns, size_t nns)
{
    for (size_t f = 0; f < nfams; f++) {
        const ns_counter_family_t *fam = &fams[f];
        help_type(o, fam->name, fam->help, "counter");
        for (size_t i = 0; i < nns; i++)
            for (size_t j = 0; fam->v[j].value; j++)
                ns_sample(o, fam->name, ns[i].name, fam->label, fam->v[j].value,
                          counter_at(ns[i].stats, fam->v[j].off));
    }
}

/* The histogram is stored non-cumulative per bucket (stats.c); the
 * exposition wants each le bucket to count everything at or below it. */
static void render_fetch_histogram(buf_t *o, const metrics_ns_t *ns, size_t nns)
{
    static const char *name = "luacached_fetch_duration_seconds";
    help_type(o, name, "Duration of origin fetches run through the policy, every outcome.",
              "histogram");
    char num[64];
    for (size_t i = 0; i < nns; i++) {
        const ns_stats_t *s = ns[i].stats;
        uint64_t cum = 0;
        for (int b = 0; b <= FETCH_HIST_BUCKETS; b++) {
            cum += s->fetch_hist[b];
            metrics_format_double(num, sizeof(num),
                                  b < FETCH_HIST_BUCKETS ? fetch_hist_bounds[b] : INFINITY);
            buf_printf(o, "%s_bucket{ns=\"", name);
            metrics_escape_label(o, ns[i].name);
            buf_printf(o, "\",le=\"%s\"} %llu\n", num, (unsigned long long)cum);
        }
        metrics_format_double(num, sizeof(num), s->fetch_seconds_sum);
        buf_printf(o, "%s_sum{ns=\"", name);
        metrics_escape_label(o, ns[i].name);
        buf_printf(o, "\"} %s\n%s_count{ns=\"", num, name);
        metrics_escape_label(o, ns[i].name);
        buf_printf(o, "\"} %llu\n", (unsigned long long)cum);
    }
}

/* One latency histogram (stats.h lat_hist_t) as name_bucket/_sum/_count;
 * labels: "" or `cmd="get"`, our own literals. */
static void lat_hist_samples(buf_t *o, const char *name, const char *labels, const lat_hist_t *h)
{
    /* the bounds' text, made once: there are a few hundred of these lines */
    static char le[LAT_HIST_BUCKETS + 1][24];
    if (!le[0][0])
        for (int b = 0; b <= LAT_HIST_BUCKETS; b++)
            metrics_format_double(le[b], sizeof(le[b]),
                                  b < LAT_HIST_BUCKETS ? (double)lat_hist_bounds_ns[b] / 1e9
                                                       : INFINITY);
    char num[64];
    const char *sep = labels[0] ? "," : "";
    uint64_t cum = 0;
    for (int b = 0; b <= LAT_HIST_BUCKETS; b++) {
        cum += h->b[b];
        buf_printf(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, le[b],
                   (unsigned long long)cum);
    }
    metrics_format_double(num, sizeof(num), (double)h->sum_ns / 1e9);
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    buf_printf(o, "%s_sum%s%s%s %s\n%s_count%s%s%s %llu\n", name, open, labels, close, num, name,
               open, labels, close, (unsigned long long)cum);
}

static void render_lat_histograms(buf_t *o, const metrics_globals_t *g)
{
    static const char *cmd = "luacached_command_duration_seconds";
    help_type(o, cmd,
              "Time from a command's dispatch to its reply being complete (a reply that waits "
              "on Redis or a fetch included), per command of the command table.",
              "histogram");
    char labels[64];
    for (size_t i = 0; i < g->ncmds; i++) {
        snprintf(labels, sizeof(labels), "cmd=\"%s\"", g->cmd_names[i]);
        lat_hist_samples(o, cmd, labels, &g->cmd_hist[i]);
    }
    static const char *rtt = "luacached_redis_rtt_seconds";
    help_type(o, rtt,
              "Redis round trips, from queueing a command to its reply, over every connection "
              "and node.",
              "histogram");
    lat_hist_samples(o, rtt, "", g->redis_rtt ? g->redis_rtt : &(lat_hist_t){0});
}

/* ------------------------------------------------------------------------
 * Process-wide families
 * ---------------------------------------------------------------------- */

static void scalar(buf_t *o, const char *name, const char *type, const char *help, uint64_t v)
{
    help_type(o, name, help, type);
    buf_printf(o, "%s %llu\n", name, (unsigned long long)v);
}

void metrics_render_from(buf_t *o, const metrics_ns_t *ns, size_t nns, const metrics_globals_t *g)
{
    render_ns_counters(o, spec_families, LC_ARRAY_LEN(spec_families), ns, nns);
    render_fetch_histogram(o, ns, nns);
    render_ns_counters(o, spec_families_2, LC_ARRAY_LEN(spec_families_2), ns, nns);
    render_lat_histograms(o, g);

    help_type(o, "luacached_policy_loaded",
              "1 when the last load of the namespace's policy succeeded, else 0 (a failed "
              "reload keeps the previous version serving).",
              "gauge");
    for (size_t i = 0; i < nns; i++) {
        buf_append_str(o, "luacached_policy_loaded{ns=\"");
        metrics_escape_label(o, ns[i].name);
        buf_printf(o, "\"} %d\n", ns[i].loaded ? 1 : 0);
    }

    help_type(o, "luacached_l1_ns_entries",
              "Items of the namespace in the in-process tier (of luacached_l1_entries).", "gauge");
    for (size_t i = 0; i < nns; i++) {
        buf_append_str(o, "luacached_l1_ns_entries{ns=\"");
        metrics_escape_label(o, ns[i].name);
        buf_printf(o, "\"} %llu\n", (unsigned long long)ns[i].l1_entries);
    }

    scalar(o, "luacached_backend_up", "gauge", "1 while the Redis connection is up, else 0.",
           g->backend_up ? 1 : 0);
    scalar(
        o, "luacached_backend_errors_total", "counter",
        "Redis commands that failed or timed out, lost connections and failed connection attempts.",
        g->backend_errors_total);
    scalar(o, "luacached_backend_outages_total", "counter",
           "Times the Redis connection was lost (or never made at start).",
           g->backend_outages_total);
    scalar(o, "luacached_backend_subscribed", "gauge",
           "1 while the subscription to the instances' events channel is up, else 0.",
           g->backend_subscribed ? 1 : 0);
    scalar(o, "luacached_backend_subscriber_outages_total", "counter",
           "Times the subscriber connection was lost (or never made at start).",
           g->backend_subscriber_outages_total);
    if (g->clustered) {
        scalar(o, "luacached_cluster_masters", "gauge", "Redis Cluster masters in the slot map.",
               g->cluster_masters);
        scalar(o, "luacached_cluster_masters_up", "gauge", "Of them, those whose connection is up.",
               g->cluster_masters_up);
        scalar(o, "luacached_cluster_redirects_total", "counter",
               "MOVED and ASK redirections followed.", g->cluster_redirects_total);
        scalar(o, "luacached_cluster_map_refreshes_total", "counter",
               "Slot maps learnt (CLUSTER SLOTS answers taken).", g->cluster_map_refreshes_total);
    }
    scalar(o, "luacached_store_read_batches_total", "counter",
           "Batches of entry reads sent to Redis (one MGET, or a GET for a lone key).",
           g->store_batches_total);
    scalar(o, "luacached_store_batched_reads_total", "counter",
           "Entry reads those batches carried.", g->store_batched_keys_total);
    scalar(o, "luacached_store_noscript_total", "counter",
           "Script calls Redis answered with NOSCRIPT (after a SCRIPT FLUSH), retried with the "
           "script's text.",
           g->store_noscript_total);
    scalar(o, "luacached_connected_clients", "gauge", "Open RESP client connections.",
           g->connected_clients);
    scalar(o, "luacached_connections_total", "counter", "RESP client connections accepted.",
           g->connections_total);
    scalar(o, "luacached_commands_total", "counter", "RESP commands processed, every command.",
           g->commands_total);
    scalar(o, "luacached_l1_entries", "gauge", "Items in the in-process tier.", g->l1_entries);
    scalar(o, "luacached_l1_bytes", "gauge", "Bytes held by the in-process tier.", g->l1_bytes);
    scalar(o, "luacached_fills_in_flight", "gauge",
           "Cache fills (coalesced fetch and store of one key) under way.", g->fills_in_flight);
    scalar(o, "luacached_fetches_in_flight", "gauge", "Policy fetch coroutines running.",
           g->fetches_in_flight);

    char num[64];
    metrics_format_double(num, sizeof(num), g->uptime_seconds);
    help_type(o, "luacached_uptime_seconds", "Seconds since the process started.", "gauge");
    buf_printf(o, "luacached_uptime_seconds %s\n", num);

    help_type(o, "luacached_build_info", "Always 1; the version is in the label.", "gauge");
    buf_append_str(o, "luacached_build_info{version=\"");
    metrics_escape_label(o, g->version ? g->version : "");
    buf_append_str(o, "\"} 1\n");
}

/* ------------------------------------------------------------------------
 * Live values
 * ---------------------------------------------------------------------- */

/* The write-behind gauges, sampled at each flush tick: only for
 * write-behind namespaces, and only when there is one. */
static void render_wb_gauges(buf_t *o)
{
    static const char *const names[] = {"luacached_write_queue_depth",
                                        "luacached_write_lag_seconds",
                                        "luacached_write_dead_letters"};
    static const char *const helps[] = {
        "Write-behind writes queued and not yet written (XLEN of the queue), sampled at each "
        "flush tick.",
        "Age of the oldest write-behind write not yet acknowledged, from its queue entry id.",
        "Write-behind writes in the dead-letter stream (WRITES ns RETRY replays them)."};
    size_t n = ns_count();
    write_behind_gauges_t *g = xcalloc(n ? n : 1, sizeof(*g));
    bool *has = xcalloc(n ? n : 1, sizeof(*has));
    size_t any = 0;
    for (size_t i = 0; i < n; i++)
        any += has[i] = write_behind_gauges(ns_at(i), &g[i]);
    char num[64];
    for (int f = 0; any && f < 3; f++) {
        help_type(o, names[f], helps[f], "gauge");
        for (size_t i = 0; i < n; i++) {
            if (!has[i]) continue;
            buf_printf(o, "%s{ns=\"", names[f]);
            metrics_escape_label(o, ns_at(i)->name);
            if (f == 1) {
                metrics_format_double(num, sizeof(num), g[i].lag_seconds);
                buf_printf(o, "\"} %s\n", num);
            } else {
                buf_printf(o, "\"} %lld\n", f == 0 ? g[i].depth : g[i].dead);
            }
        }
    }
    free(g);
    free(has);
}

void metrics_render(buf_t *out)
{
    backend_cluster_stats_t cs;
    backend_cluster_stats(&cs);
    size_t n = ns_count();
    metrics_ns_t *views = xcalloc(n ? n : 1, sizeof(*views));
    for (size_t i = 0; i < n; i++) {
        const ns_t *ns = ns_at(i);
        views[i].name = ns->name;
        views[i].stats = &ns->stats;
        views[i].loaded = ns->cur != NULL && ns->last_error && ns->last_error[0] == '\0';
        views[i].l1_entries = l1_ns_entries(ns->name, strlen(ns->name));
    }
    metrics_globals_t g = {
        .version = LUACACHED_VERSION,
        .backend_up = backend_up(),
        .backend_errors_total = backend_errors_total(),
        .backend_outages_total = backend_outages_total(),
        .backend_subscribed = backend_subscribed(),
        .backend_subscriber_outages_total = backend_subscriber_outages_total(),
        .clustered = backend_clustered(),
        .store_batches_total = store_stats()->batches,
        .store_batched_keys_total = store_stats()->batched_keys,
        .store_noscript_total = store_stats()->noscript,
        .connected_clients = server_clients(),
        .connections_total = server_total_connections(),
        .commands_total = server_total_commands(),
        .l1_entries = l1_entries(),
        .l1_bytes = l1_bytes(),
        .fills_in_flight = cache_fills_in_flight(),
        .fetches_in_flight = fetches_in_flight(),
        .uptime_seconds = (double)(mono_ms() - lc_start_mono_ms) / 1000.0,
        .cluster_masters = cs.masters,
        .cluster_masters_up = cs.masters_up,
        .cluster_redirects_total = cs.redirects,
        .cluster_map_refreshes_total = cs.refreshes,
        .cmd_hist = cmd_stats_hist,
        .cmd_names = cmd_stats_name,
        .ncmds = cmd_stats_count,
        .redis_rtt = &redis_rtt_hist,
    };
    metrics_render_from(out, views, n, &g);
    free(views);
    render_wb_gauges(out);
}
