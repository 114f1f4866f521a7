/* cmd_admin.c: POLICIES, RELOAD and INFO/STATS. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "cache.h"
#include "commands.h"
#include "config.h"
#include "http_client.h"
#include "reply.h"
#include "store.h"
#include "util.h"
#include "watch.h"
#include "write_behind.h"

void cmd_policies(client_t *c)
{
    buf_t *b = client_reply_buf(c);
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
            reply_bulk(client_reply_buf(c), o.data, o.len);
            buf_free(&o);
            return;
        }
    }
    buf_printf(&o,
               "# Server\r\nluacached_version:%s\r\nredis_version:7.0.0\r\nprocess_id:%d\r\n"
               "tcp_port:%d\r\nuptime_in_seconds:%llu\r\n\r\n",
               LUACACHED_VERSION, (int)getpid(), cfg.port,
               (unsigned long long)((mono_ms() - lc_start_mono_ms) / 1000));
    buf_printf(&o, "# Clients\r\nconnected_clients:%zu\r\n\r\n", server_clients());
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
    reply_bulk(client_reply_buf(c), o.data, o.len);
    buf_free(&o);
}
