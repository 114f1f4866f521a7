/* cmd_admin.c: POLICIES, RELOAD and INFO/STATS. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "cache.h"
#include "commands.h"
#include "config.h"
#include "http_client.h"
#include "l1.h"
#include "reply.h"
#include "sink.h"
#include "store.h"
#include "util.h"
#include "watch.h"
#include "write_behind.h"

/* RESP3: a map of namespace to a map of its sha1, last_error (null when
 * none), version and ttl (a double; null when ttl is a function or the
 * policy never loaded). */
static void policies_resp3(buf_t *b)
{
    size_t n = ns_count();
    sink_map(SINK_RESP3, b, (long)n);
    for (size_t i = 0; i < n; i++) {
        ns_t *ns = ns_at(i);
        const policy_t *p = ns->cur;
        reply_bulk_str(b, ns->name);
        sink_map(SINK_RESP3, b, 4);
        reply_bulk_str(b, "sha1");
        reply_bulk_str(b, p ? p->sha1 : ns->sha1);
        reply_bulk_str(b, "last_error");
        if (ns->last_error && ns->last_error[0])
            reply_bulk_str(b, ns->last_error);
        else
            sink_null(SINK_RESP3, b);
        reply_bulk_str(b, "version");
        if (p)
            reply_int(b, p->conf.version);
        else
            sink_null(SINK_RESP3, b);
        reply_bulk_str(b, "ttl");
        if (p && !p->conf.ttl_is_fn)
            sink_double(SINK_RESP3, b, p->conf.ttl);
        else
            sink_null(SINK_RESP3, b);
    }
}

/* RESP2: [ns, sha1, last_error] per namespace ("" when none). */
void cmd_policies(client_t *c)
{
    buf_t *b = client_reply_buf(c);
    if (c->proto == SINK_RESP3) {
        policies_resp3(b);
        return;
    }
    size_t n = ns_count();
    reply_array(b, (long)n);
    for (size_t i = 0; i < n; i++) {
        ns_t *ns = ns_at(i);
        reply_array(b, 3);
        reply_bulk_str(b, ns->name);
        reply_bulk_str(b, ns->cur ? ns->cur->sha1 : ns->sha1);
        reply_bulk_str(b, ns->last_error ? ns->last_error : "");
    }
}

/* RELOAD [ns]: re-read the policies folder now, off the loop (watch.c),
 * compile ns (or every namespace) afresh and answer once that is applied;
 * on error the old version stays active. */
static void on_reloaded(void *priv, const char *err)
{
    slot_finish_ok(priv, err);
}

void cmd_reload(client_t *c)
{
    if (client_argc(c) > 2) {
        reply_error(client_reply_buf(c), "wrong number of arguments for 'reload' command");
        return;
    }
    const char *name = NULL;
    size_t len = 0;
    if (client_argc(c) == 2) {
        name = client_arg(c, 1, &len);
        if (len > 128 || !ns_name_valid(name, len)) {
            reply_error(client_reply_buf(c), "unknown namespace '%.*s'",
                        (int)(len > 128 ? 128 : len), name);
            return;
        }
    }
    watch_reload(name, len, on_reloaded, client_defer(c));
}

static void ns_lines(buf_t *o, const ns_t *ns)
{
    const ns_stats_t *s = &ns->stats;
    buf_printf(o,
               "ns_%s:loaded=%d,version=%lld,sha1=%s,requests_get=%llu,requests_mget=%llu,"
               "hits_l1=%llu,hits_redis=%llu,misses=%llu,negative_hits=%llu,"
               "stale_revalidate=%llu,stale_error=%llu,fetches_ok=%llu,fetches_not_found=%llu,"
               "fetches_error=%llu,fetches_timeout=%llu,coalesced=%llu,stores=%llu,"
               "store_errors=%llu,invalidations_race=%llu,lock_waits=%llu,lock_takeovers=%llu,"
               "early_refreshes=%llu,requests_other=%llu,invalidations_del=%llu,"
               "invalidations_event=%llu,invalidations_purge=%llu,invalidations_tag=%llu,"
               "invalidations_flush=%llu,generation=%lld\r\n",
               ns->name, ns->cur != NULL, ns->cur ? ns->cur->conf.version : 0,
               ns->cur ? ns->cur->sha1 : "", (unsigned long long)s->requests_get,
               (unsigned long long)s->requests_mget, (unsigned long long)s->hits_l1,
               (unsigned long long)s->hits_redis, (unsigned long long)s->misses,
               (unsigned long long)s->negative_hits, (unsigned long long)s->stale_revalidate,
               (unsigned long long)s->stale_error, (unsigned long long)s->fetch_ok,
               (unsigned long long)s->fetch_not_found, (unsigned long long)s->fetch_error,
               (unsigned long long)s->fetch_timeout, (unsigned long long)s->coalesced,
               (unsigned long long)s->stores, (unsigned long long)s->store_errors,
               (unsigned long long)s->invalidations_race, (unsigned long long)s->lock_waits,
               (unsigned long long)s->lock_takeovers, (unsigned long long)s->early_refreshes,
               (unsigned long long)s->requests_other, (unsigned long long)s->invalidations_del,
               (unsigned long long)s->invalidations_event,
               (unsigned long long)s->invalidations_purge, (unsigned long long)s->invalidations_tag,
               (unsigned long long)s->invalidations_flush, ns->gen);
    write_behind_info(o, ns);
}

/* Redis's bytesToHuman: 1023B, 1.50K, 2.00M, 3.10G. */
static void human_bytes(char *dst, size_t n, double v)
{
    if (v < 1024)
        snprintf(dst, n, "%.0fB", v);
    else if (v < 1024.0 * 1024)
        snprintf(dst, n, "%.2fK", v / 1024);
    else if (v < 1024.0 * 1024 * 1024)
        snprintf(dst, n, "%.2fM", v / (1024.0 * 1024));
    else
        snprintf(dst, n, "%.2fG", v / (1024.0 * 1024 * 1024));
}

/* used_memory: bytes malloc has handed out and not had back (every Lua
 * state, the in-process tier, buffers), as glibc counts them; rss: the
 * process's resident set. The fields redis-cli --stat and dashboards read. */
static void memory_section(buf_t *o)
{
    struct mallinfo2 mi = mallinfo2();
    double used = (double)mi.uordblks + (double)mi.hblkhd;
    double rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long long size, resident;
        if (fscanf(f, "%llu %llu", &size, &resident) == 2)
            rss = (double)resident * (double)sysconf(_SC_PAGESIZE);
        fclose(f);
    }
    if (used == 0) used = rss; /* an allocator that glibc does not see (ASan's) */
    char used_h[32], rss_h[32];
    human_bytes(used_h, sizeof(used_h), used);
    human_bytes(rss_h, sizeof(rss_h), rss);
    buf_printf(o,
               "# Memory\r\nused_memory:%.0f\r\nused_memory_human:%s\r\nused_memory_rss:%.0f\r\n"
               "used_memory_rss_human:%s\r\nl1_bytes:%zu\r\nmaxmemory:0\r\n\r\n",
               used, used_h, rss, rss_h, l1_bytes());
}

/* INFO / STATS [ns]: Redis-style "name:value" lines grouped in sections. */
void cmd_info(client_t *c)
{
    buf_t o = {0};
    if (client_argc(c) == 2) {
        size_t len;
        const char *name = client_arg(c, 1, &len);
        ns_t *ns = ns_find(name, len);
        /* Anything else (INFO server, INFO all, ...) gets every section. */
        if (ns) {
            buf_printf(&o, "# Namespace\r\n");
            ns_lines(&o, ns);
            sink_verbatim(c->proto, client_reply_buf(c), o.data, o.len);
            buf_free(&o);
            return;
        }
    }
    buf_printf(&o,
               "# Server\r\nluacached_version:%s\r\nredis_version:7.0.0\r\nprocess_id:%d\r\n"
               "tcp_port:%d\r\nuptime_in_seconds:%llu\r\n\r\n",
               LUACACHED_VERSION, (int)getpid(), cfg.port,
               (unsigned long long)((mono_ms() - lc_start_mono_ms) / 1000));
    buf_printf(&o, "# Clients\r\nconnected_clients:%zu\r\nblocked_clients:%zu\r\n\r\n",
               server_clients(), server_blocked_clients());
    memory_section(&o);
    buf_printf(&o,
               "# Stats\r\ntotal_connections_received:%llu\r\ntotal_commands_processed:%llu\r\n"
               "fills_in_flight:%zu\r\nfetches_in_flight:%zu\r\nhttp_calls_in_flight:%zu\r\n\r\n",
               (unsigned long long)server_total_connections(),
               (unsigned long long)server_total_commands(), cache_fills_in_flight(),
               fetches_in_flight(), http_calls_in_flight());
    buf_printf(&o,
               "# Backend\r\nbackend_up:%d\r\nbackend_errors_total:%llu\r\n"
               "backend_outages_total:%llu\r\nbackend_subscribed:%d\r\n"
               "backend_subscriber_outages_total:%llu\r\nstore_read_batches_total:%llu\r\n"
               "store_batched_reads_total:%llu\r\nstore_noscript_total:%llu\r\n\r\n",
               backend_up(), (unsigned long long)backend_errors_total(),
               (unsigned long long)backend_outages_total(), backend_subscribed(),
               (unsigned long long)backend_subscriber_outages_total(),
               (unsigned long long)store_stats()->batches,
               (unsigned long long)store_stats()->batched_keys,
               (unsigned long long)store_stats()->noscript);
    backend_cluster_stats_t cs;
    backend_cluster_stats(&cs);
    if (cs.masters || backend_clustered())
        buf_printf(&o,
                   "# Cluster\r\ncluster_masters:%zu\r\ncluster_masters_up:%zu\r\n"
                   "cluster_redirects_total:%llu\r\ncluster_map_refreshes_total:%llu\r\n\r\n",
                   cs.masters, cs.masters_up, (unsigned long long)cs.redirects,
                   (unsigned long long)cs.refreshes);
    buf_printf(&o, "# Namespaces\r\n");
    for (size_t i = 0; i < ns_count(); i++)
        ns_lines(&o, ns_at(i));
    sink_verbatim(c->proto, client_reply_buf(c), o.data, o.len);
    buf_free(&o);
}
