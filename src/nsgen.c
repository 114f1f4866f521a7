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
 *  - an entry of a newer generation teaches it (entry_usable).
 * Learning a newer generation takes this namespace's fetches in flight out
 * of the fill table: they started before the flush, so their results
 * answer their waiters but are not stored. */
#include <stdlib.h>

#include "backend.h"
#include "cache_int.h"
#include "config.h"
#include "entry.h"
#include "invalidate.h"
#include "log.h"
#include "util.h"

/* The generation key may hold anything (another program, a bug): only a
 * decimal integer in [0, ENTRY_GEN_MAX] is a generation. Anything else (not
 * a number, negative, fractional, too large, another Redis type) counts as
 * absent, i.e. 0, and is overwritten with a valid generation by the next
 * sync or FLUSHNS, so a poisoned key cannot take the namespace down
 * (docs/STORAGE.md). Redis's Lua numbers are doubles: ENTRY_GEN_MAX = 2^53-1
 * keeps every generation exact, and '%.0f' writes it back without an
 * exponent. READ_GEN sets g (0 if absent or poisoned) and bad. */
#define GEN_MAX_LUA "9007199254740991"
#define READ_GEN                                                                                   \
    "local g,bad=0,false local t=redis.call('type',KEYS[1]).ok "                                   \
    "if t=='string' then local s=redis.call('get',KEYS[1]) "                                       \
    "if #s<=16 and string.match(s,'^%d+$') and tonumber(s)<=" GEN_MAX_LUA " then "                 \
    "g=tonumber(s) else bad=true end elseif t~='none' then bad=true end "                          \
    "local m=tonumber(ARGV[1]) "

/* One above both Redis's and the caller's known generation (a Redis that
 * lost the key must not hand out a generation already used). */
static const char FLUSH_GEN[] =
    READ_GEN "if m>g then g=m end g=g+1 if g>" GEN_MAX_LUA " then "
             "return redis.error_reply('namespace generation at its maximum') end "
             "redis.call('set',KEYS[1],string.format('%.0f',g)) return g";
/* Read; raise to the caller's known generation if Redis holds less, and
 * repair a poisoned key. */
static const char SYNC_GEN[] =
    READ_GEN "if bad or g<m then redis.call('set',KEYS[1],string.format('%.0f',m)) return m end "
             "return g";

static void gen_key(buf_t *out, const ns_t *ns)
{
    buf_printf(out, "%s:#gen:%s", cfg.prefix, ns->name);
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
    fills_invalidate_ns(ns);
}

static void on_synced(void *priv, redisReply *reply)
{
    ns_t *ns = priv;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        nsgen_learn(ns, reply->integer);
    else if (reply && reply->type == REDIS_REPLY_ERROR)
        log_warn("[%s] reading the namespace generation failed: %s", ns->name, reply->str);
}

void nsgen_sync(ns_t *ns)
{
    buf_t key = {0};
    gen_key(&key, ns);
    backend_cmd(on_synced, ns, "EVAL %s 1 %b %lld", SYNC_GEN, key.data, key.len, ns->gen);
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

static void on_flushed(void *priv, redisReply *reply)
{
    flush_req_t *r = priv;
    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        nsgen_learn(r->ns, reply->integer);
        bcast_gen(r->ns, reply->integer);
        if (r->count) r->ns->stats.invalidations_flush++;
        log_info("[%s] FLUSHNS: namespace generation is now %lld", r->ns->name, reply->integer);
        r->cb(r->priv, 0, NULL);
    } else if (reply && reply->type == REDIS_REPLY_ERROR) {
        buf_t msg = {0};
        buf_printf(&msg, "backend: %s", reply->str);
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
    if (backend_cmd(on_flushed, r, "EVAL %s 1 %b %lld", FLUSH_GEN, key.data, key.len, ns->gen) != 0)
        on_flushed(r, NULL);
    buf_free(&key);
}
