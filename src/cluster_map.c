/* cluster_map.c: see cluster_map.h. Everything read from Redis is checked
 * (types, ranges, lengths) before it changes the map: a node that answers
 * garbage must not route keys to nowhere. */
#include "cluster_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void cluster_map_init(cluster_map_t *m)
{
    memset(m->nodes, 0, sizeof(m->nodes));
    m->nnodes = 0;
    m->covered = 0;
    for (size_t i = 0; i < HASHSLOT_COUNT; i++)
        m->owner[i] = CLUSTER_NO_NODE;
}

int cluster_map_node(cluster_map_t *m, const char *host, size_t hlen, int port)
{
    if (hlen == 0 || hlen >= sizeof(m->nodes[0].host) || port <= 0 || port > 65535) return -1;
    for (size_t i = 0; i < m->nnodes; i++)
        if (m->nodes[i].port == port && strlen(m->nodes[i].host) == hlen &&
            memcmp(m->nodes[i].host, host, hlen) == 0)
            return (int)i;
    if (m->nnodes == CLUSTER_MAX_NODES) return -1;
    cluster_node_t *n = &m->nodes[m->nnodes];
    memcpy(n->host, host, hlen);
    n->host[hlen] = '\0';
    n->port = port;
    return (int)m->nnodes++;
}

static int fail(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "CLUSTER SLOTS: %s", what);
    return -1;
}

/* [ip, port, id, ...] of a range's master: its node index, or -1. */
static int range_master(cluster_map_t *m, const redisReply *ep, const char *asked_host,
                        int asked_port)
{
    if (ep->type != REDIS_REPLY_ARRAY || ep->elements < 2) return -1;
    const redisReply *ip = ep->element[0], *port = ep->element[1];
    if (port->type != REDIS_REPLY_INTEGER || port->integer <= 0 || port->integer > 65535) return -1;
    const char *host = asked_host;
    size_t hlen = strlen(asked_host);
    if (ip->type == REDIS_REPLY_STRING && ip->len > 0 && !(ip->len == 1 && ip->str[0] == '?')) {
        host = ip->str;
        hlen = ip->len;
    } else if (ip->type != REDIS_REPLY_STRING && ip->type != REDIS_REPLY_NIL) {
        return -1;
    }
    LC_UNUSED(asked_port); /* the port is always given; only the host may be unknown */
    return cluster_map_node(m, host, hlen, (int)port->integer);
}

int cluster_map_load(cluster_map_t *m, const redisReply *r, const char *asked_host, int asked_port,
                     char *err, size_t errlen)
{
    if (!r) return fail(err, errlen, "no reply");
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "CLUSTER SLOTS: %.*s", (int)(r->len > 200 ? 200 : r->len), r->str);
        return -1;
    }
    if (r->type != REDIS_REPLY_ARRAY) return fail(err, errlen, "not an array");
    /* Build the new owners aside: a bad range leaves the old map in place.
     * New nodes may be added to the table either way; indexes stay valid. */
    uint16_t *owner = xmalloc(sizeof(m->owner));
    for (size_t i = 0; i < HASHSLOT_COUNT; i++)
        owner[i] = CLUSTER_NO_NODE;
    size_t covered = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *range = r->element[i];
        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
            range->element[0]->type != REDIS_REPLY_INTEGER ||
            range->element[1]->type != REDIS_REPLY_INTEGER) {
            free(owner);
            return fail(err, errlen, "a range is not [start, end, master, ...]");
        }
        long long from = range->element[0]->integer, to = range->element[1]->integer;
        if (from < 0 || to < from || to >= HASHSLOT_COUNT) {
            free(owner);
            return fail(err, errlen, "a slot range is out of 0..16383");
        }
        int node = range_master(m, range->element[2], asked_host, asked_port);
        if (node < 0) {
            free(owner);
            return fail(err, errlen, "a master's address is unusable (or too many nodes)");
        }
        for (long long s = from; s <= to; s++) {
            if (owner[s] == CLUSTER_NO_NODE) covered++;
            owner[s] = (uint16_t)node;
        }
    }
    memcpy(m->owner, owner, sizeof(m->owner));
    m->covered = covered;
    free(owner);
    return 0;
}

/* Digits only, at most max. */
static bool parse_num(const char *s, size_t len, long max, long *out)
{
    if (len == 0 || len > 6) return false;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max) return false;
    *out = v;
    return true;
}

bool cluster_parse_redirect(const char *text, size_t len, cluster_redirect_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t skip;
    if (len > 6 && memcmp(text, "MOVED ", 6) == 0)
        skip = 6;
    else if (len > 4 && memcmp(text, "ASK ", 4) == 0) {
        skip = 4;
        out->ask = true;
    } else
        return false;
    const char *s = text + skip, *end = text + len;
    const char *sp = memchr(s, ' ', (size_t)(end - s));
    long slot, port;
    if (!sp || !parse_num(s, (size_t)(sp - s), HASHSLOT_COUNT - 1, &slot)) return false;
    const char *ep = sp + 1;
    const char *colon = NULL; /* the last ':' separates the port (IPv6 has more) */
    for (const char *p = ep; p < end; p++)
        if (*p == ':') colon = p;
    if (!colon || !parse_num(colon + 1, (size_t)(end - colon - 1), 65535, &port) || port == 0)
        return false;
    const char *host = ep;
    size_t hlen = (size_t)(colon - ep);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    if (hlen >= sizeof(out->host)) return false;
    memcpy(out->host, host, hlen); /* may be empty: the node that answered */
    out->host[hlen] = '\0';
    out->slot = (unsigned)slot;
    out->port = (int)port;
    return true;
}
