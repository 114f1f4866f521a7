/* backend.c: the Redis deployment behind the cache (see backend.h): one
 * server, a Redis Cluster (cluster.c) or a master found through Sentinel
 * (sentinel.c), each reached over links (link.c), plus the subscriber to
 * the events channel (subscriber.c). This file only chooses the link a
 * command goes to; the links do the rest. */
#include "backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "hashslot.h"
#include "link.h"
#include "log.h"
#include "sentinel.h"
#include "subscriber.h"
#include "util.h"

#define DEFAULT_TIMEOUT_MS 1000

static struct backend_state {
    bool running;
    redis_mode_t mode;
    uv_loop_t *loop;
    redis_url_t url;
    long timeout_ms;
    void (*on_up)(void);
    /* the link a command with no key goes to while on_up runs (a cluster
     * node coming up loads its scripts on itself) */
    struct redis_link *hook_link;
    unsigned sub_turn;   /* cluster: the node the subscriber tries next */
    bool sentinel_known; /* sentinel: a master address was learnt */
} be;

static struct redis_link data_link; /* one server, or the Sentinel's master */
static subscriber_t sub;
static backend_msg_cb sub_msg_cb;
static backend_resync_cb sub_resync_cb;
static backend_lost_cb sub_lost_cb; /* survives backend_close(), like a setting */

static void link_came_up(struct redis_link *link)
{
    if (!be.on_up) return;
    be.hook_link = link;
    be.on_up();
    be.hook_link = NULL;
}

/* The link a command for slot goes to, or NULL when it is down. */
static struct redis_link *route(unsigned slot)
{
    if (be.mode == REDIS_MODE_CLUSTER) return cluster_link(slot);
    return data_link.state == LINK_UP ? &data_link : NULL;
}

/* A command with no key: any node will do. */
static struct redis_link *route_any(void)
{
    if (be.hook_link) return be.hook_link;
    if (be.mode == REDIS_MODE_CLUSTER) return cluster_any();
    return data_link.state == LINK_UP ? &data_link : NULL;
}

/* ---- Sentinel: follow the master -------------------------------------- */

static void on_master(const char *host, int port)
{
    if (!be.running) return;
    be.sentinel_known = true;
    link_retarget(&data_link, host, port);
    link_retarget(&sub.link, host, port);
}

/* A data link that fails to connect (or finds a replica there, by ROLE)
 * asks the sentinels again before its next try. */
static void data_before_connect(struct redis_link *link)
{
    if (be.mode == REDIS_MODE_SENTINEL && link->errors_total > 0) sentinel_refresh();
}

/* ---- The subscriber ----------------------------------------------------- */

static void sub_on_msg(subscriber_t *s, const char *msg, size_t len)
{
    LC_UNUSED(s);
    if (sub_msg_cb) sub_msg_cb(msg, len);
}

static void sub_on_resync(subscriber_t *s)
{
    LC_UNUSED(s);
    if (sub_resync_cb) sub_resync_cb();
}

static void sub_on_lost(struct redis_link *link)
{
    LC_UNUSED(link);
    if (sub_lost_cb) sub_lost_cb();
}

/* In a cluster, classic PUBLISH reaches every node: subscribe on any, and
 * move on to the next one when it fails. */
static void sub_before_connect(struct redis_link *link)
{
    if (be.mode != REDIS_MODE_CLUSTER) return;
    char host[256];
    int port;
    if (!cluster_node_addr(be.sub_turn++, host, sizeof(host), &port)) return;
    link_set_addr(link, host, port);
}

/* ---- Public API ----------------------------------------------------------- */

int backend_init(uv_loop_t *loop, const backend_conf_t *conf, char *err, size_t errlen)
{
    redis_url_t url;
    if (be.running) {
        snprintf(err, errlen, "backend: already running (backend_close() first)");
        return -1;
    }
    if (redis_url_parse(conf->url, &url, err, errlen) != 0) return -1;
    if (url.tls) {
        /* hiredis has TLS from 1.0.0 on (libhiredis-ssl); Debian 12 ships 0.14.1. */
        snprintf(err, errlen,
                 "--redis: TLS (rediss://) needs hiredis 1.0.0 or later built with SSL; this "
                 "build uses hiredis %d.%d.%d, which has none. Reach Redis over a trusted network, "
                 "a unix socket, or a TLS tunnel (stunnel, spiped) on localhost",
                 HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
        return -1;
    }
    be = (struct backend_state){
        .running = true, .mode = url.mode, .loop = loop, .url = url, .on_up = be.on_up};
    be.timeout_ms = conf->timeout_ms > 0 ? conf->timeout_ms : DEFAULT_TIMEOUT_MS;
    switch (url.mode) {
    case REDIS_MODE_CLUSTER:
        cluster_start(loop, &url, be.timeout_ms, link_came_up);
        break;
    case REDIS_MODE_SENTINEL:
        link_init(&data_link, "redis", loop, &url, be.timeout_ms);
        data_link.direct = true;
        data_link.role_check = true;
        data_link.on_up = link_came_up;
        data_link.before_connect = data_before_connect;
        data_link.down_note = "serving without it; asking the sentinels for the master";
        snprintf(data_link.where, sizeof(data_link.where), "(master '%s', not known yet)",
                 url.master);
        /* connects once the sentinels name the master (on_master) */
        sentinel_start(loop, &url, be.timeout_ms, on_master);
        break;
    default:
        link_init(&data_link, "redis", loop, &url, be.timeout_ms);
        data_link.direct = true;
        data_link.on_up = link_came_up;
        link_connect(&data_link);
        break;
    }
    return 0;
}

void backend_close(void)
{
    if (!be.running) return;
    be.running = false;
    subscriber_close(&sub);
    if (be.mode == REDIS_MODE_SENTINEL) sentinel_close();
    if (be.mode == REDIS_MODE_CLUSTER)
        cluster_close();
    else
        link_close(&data_link);
}

bool backend_up(void)
{
    if (be.mode == REDIS_MODE_CLUSTER) return be.running && cluster_up();
    return data_link.state == LINK_UP;
}

bool backend_clustered(void)
{
    return be.running && be.mode == REDIS_MODE_CLUSTER;
}

unsigned backend_slot(const char *key, size_t len)
{
    return be.mode == REDIS_MODE_CLUSTER ? hashslot_of(key, len) : 0;
}

bool backend_any_up(void)
{
    return route_any() != NULL;
}

bool backend_slot_up(unsigned slot)
{
    return route(slot) != NULL;
}

uint64_t backend_errors_total(void)
{
    return be.mode == REDIS_MODE_CLUSTER ? cluster_errors_total() : data_link.errors_total;
}

uint64_t backend_outages_total(void)
{
    return be.mode == REDIS_MODE_CLUSTER ? cluster_outages_total() : data_link.outages_total;
}

void backend_cluster_stats(backend_cluster_stats_t *out)
{
    *out = (backend_cluster_stats_t){0};
    if (be.mode != REDIS_MODE_CLUSTER) return;
    out->masters = cluster_masters();
    for (size_t i = 0; i < out->masters; i++)
        if (cluster_master(i)) out->masters_up++;
    out->redirects = cluster_redirects_total();
    out->refreshes = cluster_refreshes_total();
    out->reshapes = cluster_reshapes_total();
}

int backend_cmd(backend_cb cb, void *priv, const char *fmt, ...)
{
    struct redis_link *l = route_any();
    if (!l) return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = link_sendv(l, cb, priv, fmt, ap);
    va_end(ap);
    return rc;
}

int backend_cmd_argv(backend_cb cb, void *priv, int argc, const char **argv, const size_t *lens)
{
    struct redis_link *l = route_any();
    if (!l) return -1;
    return link_send_argv(l, NULL, cb, priv, argc, argv, lens);
}

int backend_cmd_formatted(backend_cb cb, void *priv, const char *cmd, size_t len)
{
    struct redis_link *l = route_any();
    if (!l) return -1;
    return link_send_formatted(l, cb, priv, cmd, len);
}

int backend_send(unsigned slot, backend_cb cb, void *priv, const char *cmd, size_t len)
{
    struct redis_link *l = route(slot);
    if (!l) return -1;
    return link_send_formatted(l, cb, priv, cmd, len);
}

size_t backend_nodes(void)
{
    return be.mode == REDIS_MODE_CLUSTER ? cluster_masters() : 1;
}

int backend_send_node(size_t node, backend_cb cb, void *priv, const char *cmd, size_t len)
{
    struct redis_link *l = be.mode == REDIS_MODE_CLUSTER             ? cluster_master(node)
                           : node == 0 && data_link.state == LINK_UP ? &data_link
                                                                     : NULL;
    if (!l) return -1;
    return link_send_formatted(l, cb, priv, cmd, len);
}

void backend_flush_writes(void)
{
    link_flush_writes();
}

void backend_barrier(void (*cb)(void *priv), void *priv)
{
    if (be.mode == REDIS_MODE_CLUSTER)
        cluster_barrier(cb, priv);
    else
        cb(priv); /* one link: its order is the order of calls */
}

void backend_on_up(void (*fn)(void))
{
    be.on_up = fn;
}

int backend_subscribe(const char *channel, backend_msg_cb on_msg, backend_resync_cb on_resync)
{
    if (!be.running || link_live(&sub.link) || !channel || !channel[0]) return -1;
    sub_msg_cb = on_msg;
    sub_resync_cb = on_resync;
    redis_url_t url = be.url;
    if (be.mode != REDIS_MODE_SINGLE) url.db = 0;
    if (be.mode == REDIS_MODE_SENTINEL) url = data_link.url; /* the master, once known */
    subscriber_init(&sub, "redis subscriber", be.loop, &url, be.timeout_ms, channel);
    sub.on_msg = sub_on_msg;
    sub.on_resync = sub_on_resync;
    sub.link.on_lost = sub_on_lost;
    sub.link.before_connect = sub_before_connect;
    sub.link.down_note = "messages on its channel are missed until it is back";
    if (be.mode == REDIS_MODE_SENTINEL && !be.sentinel_known)
        snprintf(sub.link.where, sizeof(sub.link.where), "%s", data_link.where);
    /* With Sentinel, it waits for the master's address, as the data link. */
    if (be.mode != REDIS_MODE_SENTINEL || be.sentinel_known) subscriber_start(&sub);
    return 0;
}

void backend_on_subscriber_lost(backend_lost_cb cb)
{
    sub_lost_cb = cb;
}

bool backend_subscribed(void)
{
    return subscriber_up(&sub);
}

uint64_t backend_subscriber_outages_total(void)
{
    return sub.link.outages_total;
}

int backend_publish(const char *channel, const char *msg, size_t len)
{
    struct redis_link *l = route_any();
    if (!l) return -1;
    const char *argv[3] = {"PUBLISH", channel, msg};
    size_t lens[3] = {7, strlen(channel), len};
    return link_send_argv(l, NULL, NULL, NULL, 3, argv, lens);
}
