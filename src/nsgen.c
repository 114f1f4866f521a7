/* nsgen.c: namespace generations, which make FLUSHNS O(1) (docs/STORAGE.md).
 *
 * Every entry carries the generation of its namespace when its fetch
 * started (or when SET stored it); an entry of an older generation than the
 * one an instance knows is absent, in Redis and in the in-process tier. The
 * generation lives in PREFIX:#gen:NS (no expiry) and only grows:
 *  - FLUSHNS increments it, never below what this instance knows (a Redis
 *    that lost the key must not hand out a generation already used), and
 *    broadcasts "G";
 *  - every instance reads it when its subscription is (re)established (a
 *    "G" may have been missed meanwhile) and when a namespace appears,
 *    writing back its own if Redis holds a smaller one (Redis restarted);
 *  - an entry of a newer generation teaches it (entry_usable), and so does
 *    another instance's "G": both arrive as BUS_GEN_SEEN.
 * Learning a newer generation is emitted (BUS_NS_FLUSHED): fill.c takes
 * this namespace's fetches in flight out of the fill table; they started
 * before the flush, so their results answer their waiters but are not
 * stored. */
#include "nsgen.h"

#include <stdlib.h>

#include "bcast.h"
#include "bus.h"
#include "entry.h"
#include "invalidate.h"
#include "keys.h"
#include "log.h"
#include "store.h"
#include "util.h"

/* The generation key may hold anything (another program, a bug): only a
 * decimal integer in [0, ENTRY_GEN_MAX] is a generation; anything else
 * counts as absent and is repaired by the next sync or FLUSHNS (the
 * scripts are in store.c). */

static void gen_key(buf_t *out, const ns_t *ns)
{
    keys_gen(out, ns->name);
}

void nsgen_learn(ns_t *ns, long long gen)
{
    if (gen < 0 || gen > ENTRY_GEN_MAX) { /* cannot come from our scripts or entries */
        log_warn("[%s] ignoring namespace generation %lld: out of range", ns->name, gen);
        return;
    }
    if (gen <= ns->gen) return;
    log_debug("[%s] namespace generation %lld -> %lld", ns->name, ns->gen, gen);
    ns->gen = gen;
    bus_emit(BUS_NS_FLUSHED, &(bus_msg_t){.ns = ns, .gen = gen});
}

static void on_synced(void *priv, const store_result_t *r)
{
    ns_t *ns = priv;
    if (r->status == STORE_OK && !r->str)
        nsgen_learn(ns, r->integer);
    else if (r->status == STORE_ERROR)
        log_warn("[%s] reading the namespace generation failed: %.*s", ns->name, (int)r->len,
                 r->str);
}

void nsgen_sync(ns_t *ns)
{
    buf_t key = {0};
    gen_key(&key, ns);
    store_gen_sync(key.data, key.len, ns->gen, on_synced, ns);
    buf_free(&key);
}

void nsgen_sync_all(void)
{
    for (size_t i = 0; i < ns_count(); i++)
        nsgen_sync(ns_at(i));
}

typedef struct flush_req {
    ns_t *ns;
    bool count;
    cache_inval_cb cb;
    void *priv;
} flush_req_t;

/* FLUSHNS answers once the other instances were told (as PURGETAG does):
 * an instance that reads an entry before it hears of the new generation
 * would serve it. */
static void on_told(void *priv, const store_result_t *res)
{
    LC_UNUSED(res); /* not told (Redis went away): they resync when it is back */
    flush_req_t *r = priv;
    r->cb(r->priv, 0, NULL);
    free(r);
}

static void on_flushed(void *priv, const store_result_t *res)
{
    flush_req_t *r = priv;
    if (res->status == STORE_OK && !res->str) {
        nsgen_learn(r->ns, res->integer);
        if (r->count) r->ns->stats.invalidations_flush++;
        log_info("[%s] FLUSHNS: namespace generation is now %lld", r->ns->name, res->integer);
        if (bcast_gen(r->ns, res->integer, on_told, r) == 0) return;
        r->cb(r->priv, 0, NULL);
    } else if (res->status == STORE_ERROR) {
        buf_t msg = {0};
        buf_printf(&msg, "backend: %.*s", (int)res->len, res->str);
        buf_append(&msg, "", 1);
        r->cb(r->priv, 0, msg.data);
        buf_free(&msg);
    } else {
        r->cb(r->priv, 0, "backend unavailable, namespace not flushed");
    }
    free(r);
}

void flush_ns(ns_t *ns, bool count, cache_inval_cb cb, void *priv)
{
    flush_req_t *r = xcalloc(1, sizeof(*r));
    *r = (flush_req_t){ns, count, cb, priv};
    buf_t key = {0};
    gen_key(&key, ns);
    if (store_gen_flush(key.data, key.len, ns->gen, on_flushed, r) != 0)
        on_flushed(r, &(store_result_t){.status = STORE_DOWN});
    buf_free(&key);
}

static void on_gen_seen(bus_type_t type, const bus_msg_t *msg, void *priv)
{
    LC_UNUSED(type);
    LC_UNUSED(priv);
    nsgen_learn(msg->ns, msg->gen);
}

/* A "G" may have been missed while the subscription was down. */
static void on_subscribed(bus_type_t type, const bus_msg_t *msg, void *priv)
{
    LC_UNUSED(type);
    LC_UNUSED(msg);
    LC_UNUSED(priv);
    nsgen_sync_all();
}

int nsgen_listen(void)
{
    if (bus_on(BUS_GEN_SEEN, on_gen_seen, NULL) != 0) return -1;
    return bus_on(BUS_SUBSCRIBED, on_subscribed, NULL);
}
