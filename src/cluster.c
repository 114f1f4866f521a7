/* cluster.c: routing over a Redis Cluster (see cluster.h).
 *
 * Why our own and not a library: Debian 12 packages no cluster client for
 * hiredis's async API on libuv (hiredis-vip and hiredis-cluster are not
 * packaged), and the routing we need is small: the slot map (cluster_map.c,
 * pure), one link per master (link.c, with its timeouts, backoff and
 * fail-open), and redirections followed from the reply (docs/DECISIONS.md).
 *
 * Link structs are allocated once per node index and never freed while
 * the process runs: a name lookup abandoned on the thread pool may still
 * hold a pointer to one (link.c), so closed links are kept to be re-made
 * in place if the node owns slots again. */
#include "cluster.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_map.h"
#include "log.h"
#include "util.h"

/* While a slot has no live owner, ask for the map this often. */
#define REFRESH_DOWN_MS 250

static struct {
    bool running;
    uv_loop_t *loop;
    redis_url_t url; /* credentials; each link's host/port is its node's */
    long timeout_ms;
    void (*on_up)(struct redis_link *link);
    cluster_map_t map;
    struct redis_link *links[CLUSTER_MAX_NODES];
    uint16_t masters[CLUSTER_MAX_NODES]; /* distinct owners, by first slot */
    size_t nmasters;
    bool loaded;      /* a map was learnt */
    bool refresh_out; /* a CLUSTER SLOTS is in flight */
    bool refresh_due; /* one is wanted soon (a MOVED, a node lost) */
    unsigned turn;    /* round robin for cluster_any() and reconnects */
    uv_timer_t *timer;
    uint64_t redirects, refreshes;
    uint64_t reshapes; /* map loads that moved a slot (redirects aside) */
    char last_err[200];
} cl;

static void node_on_up(struct redis_link *link);
static void node_on_lost(struct redis_link *link);
static bool node_intercept(struct redis_link *link, struct link_req *req, const redisReply *reply);

static size_t node_index(const struct redis_link *link)
{
    return (size_t)(uintptr_t)link->owner;
}

/* The link of node i, made (or re-made) and connecting if it is not live. */
static struct redis_link *node_link(size_t i)
{
    struct redis_link *link = cl.links[i];
    if (link && link_live(link)) return link;
    if (!link) link = cl.links[i] = xcalloc(1, sizeof(*link));
    redis_url_t url = cl.url;
    snprintf(url.host, sizeof(url.host), "%s", cl.map.nodes[i].host);
    url.port = cl.map.nodes[i].port;
    url.is_unix = false;
    url.db = 0;
    link_init(link, "redis", cl.loop, &url, cl.timeout_ms);
    link->direct = true;
    link->keep_cmds = true;
    link->owner = (void *)(uintptr_t)i;
    link->on_up = node_on_up;
    link->on_lost = node_on_lost;
    link->intercept = node_intercept;
    link->down_note = "its slots fail open until it or a replica is back";
    link_connect(link);
    return link;
}

static bool owns_slots(size_t i)
{
    for (size_t m = 0; m < cl.nmasters; m++)
        if (cl.masters[m] == i) return true;
    return false;
}

static void list_masters(void)
{
    bool seen[CLUSTER_MAX_NODES] = {false};
    cl.nmasters = 0;
    for (unsigned s = 0; s < HASHSLOT_COUNT; s++) {
        unsigned o = cluster_map_owner(&cl.map, s);
        if (o == CLUSTER_NO_NODE || seen[o]) continue;
        seen[o] = true;
        cl.masters[cl.nmasters++] = (uint16_t)o;
    }
}

/* ---- The map ------------------------------------------------------------ */

static void arm_refresh(uint64_t ms);

static void on_slots(void *priv, redisReply *reply)
{
    size_t i = (size_t)(uintptr_t)priv;
    cl.refresh_out = false;
    if (!cl.running) return;
    if (!reply) {
        arm_refresh(REFRESH_DOWN_MS);
        return;
    }
    char err[200];
    const cluster_node_t *asked = &cl.map.nodes[i];
    char host[sizeof(asked->host)];
    snprintf(host, sizeof(host), "%s", asked->host);
    static uint16_t owner_was[HASHSLOT_COUNT]; /* 32 KiB: not on the stack */
    memcpy(owner_was, cl.map.owner, sizeof(owner_was));
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(err, sizeof(err), "CLUSTER SLOTS: %s", reply->str);
    } else if (cluster_map_load(&cl.map, reply, host, asked->port, err, sizeof(err)) == 0) {
        cl.refreshes++;
        if (memcmp(owner_was, cl.map.owner, sizeof(owner_was)) != 0) cl.reshapes++;
        cl.refresh_due = cl.map.covered < HASHSLOT_COUNT;
        if (!cl.loaded || cl.last_err[0])
            log_info("redis cluster: %zu slots of %u mapped, from %s:%d", cl.map.covered,
                     HASHSLOT_COUNT, host, asked->port);
        cl.loaded = true;
        cl.last_err[0] = '\0';
        list_masters();
        for (size_t m = 0; m < cl.nmasters; m++)
            node_link(cl.masters[m]);
        /* A node that owns nothing now (a master turned replica, a
         * removed node): its link goes, and what is pending there fails
         * open rather than wait on a node that will answer MOVED. */
        for (size_t n = 0; n < cl.map.nnodes; n++)
            if (cl.links[n] && link_live(cl.links[n]) && !owns_slots(n) && n != i)
                link_close(cl.links[n]);
        arm_refresh(cl.refresh_due ? REFRESH_DOWN_MS : CLUSTER_REFRESH_MS);
        return;
    }
    if (strcmp(err, cl.last_err) != 0) log_warn("redis cluster: %s (from %s)", err, host);
    snprintf(cl.last_err, sizeof(cl.last_err), "%s", err);
    arm_refresh(REFRESH_DOWN_MS);
}

static void refresh_from(struct redis_link *link)
{
    if (cl.refresh_out) return;
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    size_t lens[2] = {7, 5};
    if (link_send_argv(link, NULL, on_slots, (void *)(uintptr_t)node_index(link), 2, argv, lens) ==
        0)
        cl.refresh_out = true;
}

/* Ask any node that is up; with none up, (re)open the next known node,
 * which asks once it is up. */
static void refresh(void)
{
    if (cl.refresh_out || cl.map.nnodes == 0) return;
    for (size_t k = 0; k < cl.map.nnodes; k++) {
        struct redis_link *l = cl.links[(cl.turn + k) % cl.map.nnodes];
        if (l && l->state == LINK_UP) {
            cl.turn++;
            refresh_from(l);
            return;
        }
    }
    node_link(cl.turn++ % cl.map.nnodes);
}

static void on_timer(uv_timer_t *t)
{
    LC_UNUSED(t);
    if (!cl.running) return;
    refresh();
    arm_refresh(cl.refresh_due || !cluster_up() ? REFRESH_DOWN_MS : CLUSTER_REFRESH_MS);
}

/* The next refresh within ms (an earlier one already set stays). */
static void arm_refresh(uint64_t ms)
{
    if (!cl.running) return;
    uint64_t left = uv_timer_get_due_in(cl.timer);
    if (uv_is_active((uv_handle_t *)cl.timer) && left <= ms) return;
    uv_timer_start(cl.timer, on_timer, ms, 0);
}

/* ---- Node links' hooks ---------------------------------------------------- */

static void node_on_up(struct redis_link *link)
{
    if (cl.on_up) cl.on_up(link);
    if (!cl.loaded || cl.refresh_due) refresh_from(link);
}

static void node_on_lost(struct redis_link *link)
{
    LC_UNUSED(link);
    cl.refresh_due = true;
    arm_refresh(REFRESH_DOWN_MS);
}

/* A -MOVED or -ASK answer: follow it, keeping the caller's callback. */
static bool node_intercept(struct redis_link *link, struct link_req *req, const redisReply *reply)
{
    LC_UNUSED(link);
    cluster_redirect_t rd;
    if (reply->type != REDIS_REPLY_ERROR || req->redirects >= CLUSTER_MAX_REDIRECTS ||
        !cluster_parse_redirect(reply->str, reply->len, &rd))
        return false;
    int i = cluster_map_node(&cl.map, rd.host, strlen(rd.host), rd.port);
    if (i < 0) return false;
    cl.redirects++;
    req->redirects++;
    if (!rd.ask) {
        if (cl.map.owner[rd.slot] == CLUSTER_NO_NODE) cl.map.covered++;
        cl.map.owner[rd.slot] = (uint16_t)i;
        if (!owns_slots((size_t)i)) cl.masters[cl.nmasters++] = (uint16_t)i;
        cl.refresh_due = true;
        arm_refresh(0);
    }
    struct redis_link *to = node_link((size_t)i);
    if (rd.ask && to->ac) {
        const char *argv[1] = {"ASKING"};
        size_t lens[1] = {6};
        link_send_argv(to, NULL, NULL, NULL, 1, argv, lens);
    }
    if (link_resend(to, req) != 0) link_req_finish(req, NULL); /* not connected: fail open */
    return true;
}

/* ---- API ------------------------------------------------------------------ */

void cluster_start(uv_loop_t *loop, const redis_url_t *url, long timeout_ms,
                   void (*on_up)(struct redis_link *link))
{
    cl.running = true;
    cl.loop = loop;
    cl.url = *url;
    cl.timeout_ms = timeout_ms;
    cl.on_up = on_up;
    cl.loaded = cl.refresh_out = cl.refresh_due = false;
    cl.nmasters = 0;
    cl.last_err[0] = '\0';
    cluster_map_init(&cl.map);
    cl.timer = xmalloc(sizeof(*cl.timer));
    uv_timer_init(loop, cl.timer);
    for (size_t h = 0; h < url->nhosts; h++) {
        int i = cluster_map_node(&cl.map, url->hosts[h].host, strlen(url->hosts[h].host),
                                 url->hosts[h].port);
        if (i >= 0) node_link((size_t)i);
    }
    arm_refresh(CLUSTER_REFRESH_MS);
}

static void free_timer(uv_handle_t *h)
{
    free(h);
}

void cluster_close(void)
{
    if (!cl.running) return;
    cl.running = false;
    uv_timer_stop(cl.timer);
    uv_close((uv_handle_t *)cl.timer, free_timer);
    cl.timer = NULL;
    for (size_t i = 0; i < CLUSTER_MAX_NODES; i++)
        if (cl.links[i]) link_close(cl.links[i]);
    cl.loaded = false;
}

struct redis_link *cluster_link(unsigned slot)
{
    unsigned o = cluster_map_owner(&cl.map, slot);
    if (o == CLUSTER_NO_NODE) return NULL;
    struct redis_link *l = cl.links[o];
    return l && l->state == LINK_UP ? l : NULL;
}

struct redis_link *cluster_any(void)
{
    for (size_t k = 0; k < cl.nmasters; k++) {
        struct redis_link *l = cl.links[cl.masters[(cl.turn + k) % cl.nmasters]];
        if (l && l->state == LINK_UP) {
            cl.turn++;
            return l;
        }
    }
    return NULL;
}

size_t cluster_masters(void)
{
    return cl.nmasters;
}

struct redis_link *cluster_master(size_t i)
{
    if (i >= cl.nmasters) return NULL;
    struct redis_link *l = cl.links[cl.masters[i]];
    return l && l->state == LINK_UP ? l : NULL;
}

bool cluster_up(void)
{
    if (!cl.running || !cl.loaded || cl.map.covered < HASHSLOT_COUNT) return false;
    for (size_t m = 0; m < cl.nmasters; m++)
        if (!cl.links[cl.masters[m]] || cl.links[cl.masters[m]]->state != LINK_UP) return false;
    return true;
}

uint64_t cluster_errors_total(void)
{
    uint64_t n = 0;
    for (size_t i = 0; i < CLUSTER_MAX_NODES; i++)
        if (cl.links[i]) n += cl.links[i]->errors_total;
    return n;
}

uint64_t cluster_outages_total(void)
{
    uint64_t n = 0;
    for (size_t i = 0; i < CLUSTER_MAX_NODES; i++)
        if (cl.links[i]) n += cl.links[i]->outages_total;
    return n;
}

uint64_t cluster_redirects_total(void)
{
    return cl.redirects;
}

uint64_t cluster_refreshes_total(void)
{
    return cl.refreshes;
}

uint64_t cluster_reshapes_total(void)
{
    return cl.reshapes + cl.redirects;
}

bool cluster_node_addr(unsigned turn, char *host, size_t hostlen, int *port)
{
    const cluster_node_t *n;
    if (cl.nmasters)
        n = &cl.map.nodes[cl.masters[turn % cl.nmasters]];
    else if (cl.map.nnodes)
        n = &cl.map.nodes[turn % cl.map.nnodes];
    else
        return false;
    snprintf(host, hostlen, "%s", n->host);
    *port = n->port;
    return true;
}

/* ---- Barrier ---------------------------------------------------------- */

typedef struct barrier {
    void (*cb)(void *priv);
    void *priv;
    size_t left;
} barrier_t;

static void on_barrier_ping(void *priv, redisReply *reply)
{
    LC_UNUSED(reply); /* an answer or a lost link: either way nothing sent before is pending */
    barrier_t *b = priv;
    if (--b->left > 0) return;
    void (*cb)(void *) = b->cb;
    void *cpriv = b->priv;
    free(b);
    cb(cpriv);
}

void cluster_barrier(void (*cb)(void *priv), void *priv)
{
    barrier_t *b = xmalloc(sizeof(*b));
    *b = (barrier_t){cb, priv, 1}; /* 1: held until every PING is queued */
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    for (size_t i = 0; i < CLUSTER_MAX_NODES; i++) {
        struct redis_link *l = cl.links[i];
        /* Connecting links too: a redirected write may wait there. */
        if (!l || !l->ac || list_empty(&l->fifo)) continue;
        if (link_send_argv(l, NULL, on_barrier_ping, b, 1, argv, lens) == 0) b->left++;
    }
    on_barrier_ping(b, NULL);
}
