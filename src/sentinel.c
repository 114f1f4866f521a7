/* sentinel.c: following the master through Redis Sentinel (see
 * sentinel.h). The sentinels are asked, never trusted blindly: the data
 * link checks ROLE on the node named before it writes there (link.c). */
#include "sentinel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "link.h"
#include "log.h"
#include "subscriber.h"
#include "util.h"

static struct {
    bool running;
    redis_url_t url; /* the sentinels, with their own credentials */
    void (*on_master)(const char *host, int port);
    struct redis_link query;
    subscriber_t sub;
    uv_timer_t *poll;
    bool query_out;
    unsigned turn[2]; /* next sentinel to try: query link, subscriber */
    char host[256];   /* the master now ("" while unknown) */
    int port;
    /* The config-epoch of the answer followed (-1: none yet), and whether a
     * +switch-master moved us past it since (a switch names no epoch, but
     * only a sentinel with a newer configuration announces one). */
    long long epoch;
    bool switched;
    bool rotate; /* the query link's sentinel lags: ask another */
    char last_err[200];
} sn;

/* Each connection attempt of either link goes to the next sentinel. */
static void next_sentinel(struct redis_link *link)
{
    unsigned *turn = &sn.turn[link == &sn.query ? 0 : 1];
    const redis_addr_t *a = &sn.url.hosts[(*turn)++ % sn.url.nhosts];
    link_set_addr(link, a->host, a->port);
}

static void complain(const char *fmt, const char *a, const char *b)
{
    char msg[sizeof(sn.last_err)];
    snprintf(msg, sizeof(msg), fmt, a, b);
    if (strcmp(msg, sn.last_err) != 0) log_warn("%s", msg);
    snprintf(sn.last_err, sizeof(sn.last_err), "%s", msg);
}

static void learn(const char *host, size_t hlen, int port)
{
    if (hlen == 0 || hlen >= sizeof(sn.host) || port <= 0 || port > 65535) return;
    sn.last_err[0] = '\0';
    if (strlen(sn.host) == hlen && memcmp(sn.host, host, hlen) == 0 && sn.port == port) return;
    bool first = !sn.host[0];
    char was[sizeof(sn.host) + 8];
    snprintf(was, sizeof(was), "%s:%d", sn.host, sn.port);
    memcpy(sn.host, host, hlen);
    sn.host[hlen] = '\0';
    sn.port = port;
    if (first)
        log_info("redis sentinel: master '%s' is at %s:%d", sn.url.master, sn.host, sn.port);
    else
        log_warn("redis sentinel: master '%s' moved from %s to %s:%d", sn.url.master, was, sn.host,
                 sn.port);
    sn.on_master(sn.host, sn.port);
}

/* The value of field name in a SENTINEL MASTER reply (a flat array of
 * names and values), or NULL. */
static const redisReply *field(const redisReply *r, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && k->len == nl && memcmp(k->str, name, nl) == 0)
            return v->type == REDIS_REPLY_STRING ? v : NULL;
    }
    return NULL;
}

static long long number(const redisReply *v, long long dflt)
{
    char buf[24];
    if (!v || v->len == 0 || v->len >= sizeof(buf)) return dflt;
    memcpy(buf, v->str, v->len);
    buf[v->len] = '\0';
    char *end;
    long long n = strtoll(buf, &end, 10);
    return *end ? dflt : n;
}

bool sentinel_answer_current(long long followed, bool switched, long long epoch)
{
    return epoch > followed || (epoch == followed && !switched);
}

static void on_master_info(void *priv, redisReply *r)
{
    LC_UNUSED(priv);
    sn.query_out = false;
    if (!sn.running || !r) return;
    if (r->type == REDIS_REPLY_ERROR) {
        if (strstr(r->str, "No such master"))
            complain("redis sentinel at %s knows no master named '%s' (check the URL's /name)",
                     sn.query.where, sn.url.master);
        else
            complain("redis sentinel at %s: SENTINEL MASTER %s failed", sn.query.where,
                     sn.url.master);
        return;
    }
    const redisReply *ip = r->type == REDIS_REPLY_ARRAY ? field(r, "ip") : NULL;
    long long port = ip ? number(field(r, "port"), -1) : -1;
    if (!ip || port <= 0 || port > 65535) {
        complain("redis sentinel at %s: unexpected answer to SENTINEL MASTER %s", sn.query.where,
                 sn.url.master);
        return;
    }
    long long epoch = number(field(r, "config-epoch"), 0);
    bool same =
        strlen(sn.host) == ip->len && memcmp(sn.host, ip->str, ip->len) == 0 && sn.port == port;
    if (!same && !sentinel_answer_current(sn.epoch, sn.switched, epoch)) {
        char e[48];
        snprintf(e, sizeof(e), "%lld, followed: %lld%s", epoch, sn.epoch,
                 sn.switched ? " and a switch since" : "");
        complain("redis sentinel at %s lags (config-epoch %s): its answer is ignored and "
                 "another sentinel is asked",
                 sn.query.where, e);
        sn.rotate = sn.url.nhosts > 1;
        return;
    }
    if (epoch > sn.epoch) {
        sn.epoch = epoch;
        sn.switched = false;
    }
    learn(ip->str, ip->len, (int)port);
}

static void ask(void)
{
    if (sn.query_out || sn.query.state != LINK_UP) return;
    const char *argv[3] = {"SENTINEL", "MASTER", sn.url.master};
    size_t lens[3] = {8, 6, strlen(sn.url.master)};
    if (link_send_argv(&sn.query, NULL, on_master_info, NULL, 3, argv, lens) == 0)
        sn.query_out = true;
}

static void query_on_up(struct redis_link *link)
{
    LC_UNUSED(link);
    sn.query_out = false;
    ask();
}

static void on_poll(uv_timer_t *t)
{
    LC_UNUSED(t);
    if (sn.rotate) { /* here, not in the reply's callback: the link is not mid-read */
        sn.rotate = false;
        const redis_addr_t *a = &sn.url.hosts[sn.turn[0] % sn.url.nhosts];
        link_retarget(&sn.query, a->host, a->port);
        return;
    }
    ask();
}

/* "+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>" */
static void on_switch(subscriber_t *s, const char *msg, size_t len)
{
    LC_UNUSED(s);
    const char *part[5];
    size_t plen[5], n = 0;
    const char *p = msg, *end = msg + len;
    while (p < end && n < 5) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        size_t l = sp ? (size_t)(sp - p) : (size_t)(end - p);
        part[n] = p;
        plen[n++] = l;
        p += l + (sp ? 1 : 0);
    }
    if (n < 5 || plen[0] != strlen(sn.url.master) || memcmp(part[0], sn.url.master, plen[0]) != 0)
        return;
    char port[8];
    size_t pl = plen[4] < sizeof(port) - 1 ? plen[4] : sizeof(port) - 1;
    memcpy(port, part[4], pl);
    port[pl] = '\0';
    sn.switched = true;
    learn(part[3], plen[3], atoi(port));
}

/* (Re)subscribed: a switch may have been missed meanwhile. */
static void on_resync(subscriber_t *s)
{
    LC_UNUSED(s);
    ask();
}

void sentinel_start(uv_loop_t *loop, const redis_url_t *url, long timeout_ms,
                    void (*on_master)(const char *host, int port))
{
    memset(sn.host, 0, sizeof(sn.host));
    sn.running = true;
    sn.url = *url;
    snprintf(sn.url.user, sizeof(sn.url.user), "%s", url->sentinel_user);
    snprintf(sn.url.pass, sizeof(sn.url.pass), "%s", url->sentinel_pass);
    sn.url.db = 0;
    sn.on_master = on_master;
    sn.port = 0;
    sn.epoch = -1;
    sn.switched = sn.rotate = false;
    sn.query_out = false;
    sn.last_err[0] = '\0';

    link_init(&sn.query, "redis sentinel", loop, &sn.url, timeout_ms);
    sn.query.direct = true;
    sn.query.on_up = query_on_up;
    sn.query.before_connect = next_sentinel;
    sn.query.down_note = "asking the next sentinel";
    link_connect(&sn.query);

    subscriber_init(&sn.sub, "redis sentinel subscriber", loop, &sn.url, timeout_ms,
                    "+switch-master");
    sn.sub.on_msg = on_switch;
    sn.sub.on_resync = on_resync;
    sn.sub.link.before_connect = next_sentinel;
    sn.sub.link.down_note = "failovers are seen by polling until it is back";
    subscriber_start(&sn.sub);

    sn.poll = xmalloc(sizeof(*sn.poll));
    uv_timer_init(loop, sn.poll);
    uv_timer_start(sn.poll, on_poll, SENTINEL_POLL_MS, SENTINEL_POLL_MS);
}

void sentinel_refresh(void)
{
    ask();
}

static void free_timer(uv_handle_t *h)
{
    free(h);
}

void sentinel_close(void)
{
    if (!sn.running) return;
    sn.running = false;
    uv_timer_stop(sn.poll);
    uv_close((uv_handle_t *)sn.poll, free_timer);
    sn.poll = NULL;
    subscriber_close(&sn.sub);
    link_close(&sn.query);
}
