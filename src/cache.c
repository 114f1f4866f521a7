/* cache.c: the read-through cache (see cache.h).
 *
 * A command becomes a request (one reply slot) holding one op per key. An
 * op looks its key up in Redis (one round trip, no Lua) and either answers
 * from the entry or joins the key's fill. A fill runs the policy's fetch
 * once for every op waiting on that key in this process, stores the result
 * (unless an invalidation landed meanwhile) and answers all waiters. */
#include "cache.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "config.h"
#include "dict.h"
#include "entry.h"
#include "log.h"
#include "reply.h"
#include "util.h"

typedef struct request request_t;
typedef struct fill fill_t;

typedef struct op {
    request_t *req;
    long idx;
    cache_op_t kind;
    ns_t *ns;
    buf_t rkey; /* Redis key: prefix:ns:id */
    char *id;
    size_t idlen;
    struct op *next_waiter;
} op_t;

struct request {
    slot_t *slot;
    bool as_array;
    long nops;
    long remaining;
    buf_t *parts; /* as_array: each op's encoded reply */
    op_t ops[];
};

/* A value kept from an expired entry, for stale-if-error. */
typedef struct stale_copy {
    bool present;
    int64_t error_until;
    char *value;
    size_t len;
} stale_copy_t;

struct fill {
    buf_t rkey;
    ns_t *ns;
    char *id;
    size_t idlen;
    op_t *waiters;
    bool background;  /* stale-while-revalidate refresh: nobody waits */
    bool invalidated; /* DEL/SET landed while fetching: do not store */
    stale_copy_t stale;
};

static struct {
    uv_loop_t *loop;
    dict_t fills; /* rkey -> fill_t, the fills in flight */
    uint64_t rng;
} cache;

/* ---------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------- */

/* xorshift64*: fast, good enough for jitter and early-refresh draws. */
static double rand_unit(void)
{
    uint64_t x = cache.rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    cache.rng = x;
    return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static void redis_key(buf_t *out, const ns_t *ns, const char *id, size_t idlen)
{
    buf_append_str(out, cfg.prefix);
    buf_append(out, ":", 1);
    buf_append_str(out, ns->name);
    buf_append(out, ":", 1);
    buf_append(out, id, idlen);
}

static bool valid_ns_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
}

int cache_key_parse(const char *key, size_t len, cache_key_t *out, buf_t *err)
{
    const char *colon = memchr(key, ':', len);
    if (!colon || colon == key) {
        reply_error(err, "key must be namespace:id");
        return -1;
    }
    size_t nslen = (size_t)(colon - key);
    bool valid = nslen <= 128;
    for (size_t i = 0; valid && i < nslen; i++) valid = valid_ns_char(key[i]);
    ns_t *ns = valid ? ns_find(key, nslen) : NULL;
    if (!ns) {
        reply_error(err, "unknown namespace '%.*s'", (int)(nslen > 128 ? 128 : nslen), key);
        return -1;
    }
    if (!ns->cur) {
        reply_error(err, "namespace '%s' failed to load: %s", ns->name, ns->last_error);
        return -1;
    }
    out->ns = ns;
    out->id = colon + 1;
    out->idlen = len - nslen - 1;
    return 0;
}

/* Decode a Redis reply into an entry usable under the namespace's current
 * policy. Entries of another policy version count as absent. */
static bool usable_entry(const ns_t *ns, const redisReply *r, entry_t *e)
{
    if (!r || r->type != REDIS_REPLY_STRING) return false;
    if (entry_decode(r->str, r->len, e) != 0) return false;
    return ns->cur && e->version == ns->cur->conf.version;
}

/* ---------------------------------------------------------------------------
 * Requests: collecting per-key answers into one reply
 * ------------------------------------------------------------------------- */

static buf_t *op_out(op_t *op)
{
    request_t *r = op->req;
    return r->as_array ? &r->parts[op->idx] : &r->slot->buf;
}

static void request_free(request_t *r)
{
    for (long i = 0; i < r->nops; i++) {
        buf_free(&r->ops[i].rkey);
        free(r->ops[i].id);
    }
    if (r->parts) {
        for (long i = 0; i < r->nops; i++) buf_free(&r->parts[i]);
        free(r->parts);
    }
    free(r);
}

/* One op has written its answer. */
static void op_done(op_t *op)
{
    request_t *r = op->req;
    if (--r->remaining > 0) return;
    if (r->as_array) {
        reply_array(&r->slot->buf, r->nops);
        for (long i = 0; i < r->nops; i++)
            buf_append(&r->slot->buf, r->parts[i].data, r->parts[i].len);
    }
    slot_finish(r->slot);
    request_free(r);
}

static void op_answer_entry_value(op_t *op, const entry_t *e)
{
    if (e->kind == ENTRY_VALUE) reply_bulk(op_out(op), e->value, e->len);
    else if (e->kind == ENTRY_NEGATIVE) reply_nil(op_out(op));
    else reply_error(op_out(op), "fetch failed: %.*s", (int)e->len, e->value);
}

/* ---------------------------------------------------------------------------
 * Fills: one fetch per key in flight
 * ------------------------------------------------------------------------- */

static void on_stored(void *priv, redisReply *reply)
{
    ns_t *ns = priv;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        ns->stats.store_errors++;
        if (reply) log_warn("storing in redis failed: %s", reply->str);
    }
}

static void store_entry(fill_t *f, const entry_t *e)
{
    if (f->invalidated) {
        f->ns->stats.invalidations_race++;
        return;
    }
    buf_t val = {0};
    entry_encode(&val, e);
    long long px = (long long)entry_redis_ttl_ms(e, now_ms());
    if (backend_cmd(on_stored, f->ns, "SET %b %b PX %lld", f->rkey.data, f->rkey.len, val.data,
                    val.len, px) == 0)
        f->ns->stats.stores++;
    buf_free(&val);
}

/* Build the entry a fetch result should be stored as. */
static void entry_from_fetch(const policy_conf_t *pc, const fetch_result_t *r, entry_t *e)
{
    int64_t now = now_ms();
    memset(e, 0, sizeof(*e));
    e->version = pc->version;
    e->fetch_ms = (int64_t)llround(r->duration * 1000.0);
    e->stored_at = now;
    if (r->kind == FETCH_OK) {
        e->kind = ENTRY_VALUE;
        e->value = r->value;
        e->len = r->len;
        e->fresh_until = now + ttl_jittered_ms(r->ttl, pc->ttl_jitter, rand_unit());
        e->stale_until = e->fresh_until + (int64_t)llround(pc->stale_ttl * 1000.0);
        e->error_until = e->fresh_until + (int64_t)llround(pc->stale_if_error * 1000.0);
    } else if (r->kind == FETCH_NOT_FOUND) {
        e->kind = ENTRY_NEGATIVE;
        e->fresh_until = now + ttl_jittered_ms(r->ttl, pc->ttl_jitter, rand_unit());
        e->stale_until = e->error_until = e->fresh_until;
    } else {
        e->kind = ENTRY_ERROR;
        e->value = r->error;
        e->len = strlen(r->error);
        e->fresh_until = now + (int64_t)llround(pc->error_ttl * 1000.0);
        e->stale_until = e->error_until = e->fresh_until;
    }
}

static void count_fetch(ns_stats_t *s, const fetch_result_t *r)
{
    switch (r->kind) {
    case FETCH_OK: s->fetch_ok++; break;
    case FETCH_NOT_FOUND: s->fetch_not_found++; break;
    case FETCH_ERROR: s->fetch_error++; break;
    case FETCH_TIMEOUT: s->fetch_timeout++; break;
    }
    ns_stats_observe_fetch(s, r->duration);
}

static void fill_free(fill_t *f)
{
    buf_free(&f->rkey);
    free(f->id);
    free(f->stale.value);
    free(f);
}

static void on_fetched(void *priv, const fetch_result_t *r)
{
    fill_t *f = priv;
    ns_t *ns = f->ns;
    /* Out of the table first: requests from now on start a new fill. */
    dict_del(&cache.fills, f->rkey.data, f->rkey.len);
    count_fetch(&ns->stats, r);
    fetch_result_t res = *r;
    if (res.kind == FETCH_OK && res.len > cfg.max_value) {
        res.kind = FETCH_ERROR;
        res.error = "value exceeds --max-value";
    }
    const policy_conf_t *pc = ns->cur ? &ns->cur->conf : NULL;
    entry_t e;
    bool serve_stale = false;
    if (pc) {
        entry_from_fetch(pc, &res, &e);
        if (res.kind == FETCH_OK || (res.kind == FETCH_NOT_FOUND && pc->negative_ttl > 0)) {
            store_entry(f, &e);
        } else if (res.kind == FETCH_ERROR || res.kind == FETCH_TIMEOUT) {
            serve_stale = f->stale.present && now_ms() < f->stale.error_until;
            if (!serve_stale && pc->error_ttl > 0) store_entry(f, &e);
        }
    }
    op_t *w = f->waiters;
    while (w) {
        op_t *next = w->next_waiter;
        buf_t *out = op_out(w);
        if (res.kind == FETCH_OK) {
            reply_bulk(out, res.value, res.len);
        } else if (res.kind == FETCH_NOT_FOUND) {
            reply_nil(out);
        } else if (serve_stale) {
            ns->stats.stale_error++;
            reply_bulk(out, f->stale.value, f->stale.len);
        } else {
            reply_error(out, "fetch failed: %s", res.error ? res.error : "unknown error");
        }
        op_done(w);
        w = next;
    }
    fill_free(f);
}

static fill_t *fill_start(ns_t *ns, const buf_t *rkey, const char *id, size_t idlen,
                          const entry_t *stale, bool background)
{
    fill_t *f = xcalloc(1, sizeof(*f));
    buf_append(&f->rkey, rkey->data, rkey->len);
    f->ns = ns;
    f->id = xmemdup(id, idlen);
    f->idlen = idlen;
    f->background = background;
    if (stale && stale->kind == ENTRY_VALUE) {
        f->stale.present = true;
        f->stale.error_until = stale->error_until;
        f->stale.value = xmemdup(stale->value, stale->len);
        f->stale.len = stale->len;
    }
    dict_set(&cache.fills, f->rkey.data, f->rkey.len, f);
    return f;
}

/* fetch_start may answer at once, freeing f: nothing may touch f after. */
static void fill_run(fill_t *f)
{
    fetch_start(f->ns->cur, f->id, f->idlen, on_fetched, f);
}

static void fill_join(fill_t *f, op_t *op)
{
    op->next_waiter = f->waiters;
    f->waiters = op;
}

/* A miss: wait for the key's fill, starting one if none is in flight. */
static void op_fill(op_t *op, const entry_t *stale)
{
    fill_t *f = dict_get(&cache.fills, op->rkey.data, op->rkey.len);
    if (f) {
        op->ns->stats.coalesced++;
        fill_join(f, op);
        f->background = false;
        return;
    }
    f = fill_start(op->ns, &op->rkey, op->id, op->idlen, stale, false);
    fill_join(f, op);
    fill_run(f);
}

static void background_refresh(op_t *op, const entry_t *stale)
{
    if (dict_get(&cache.fills, op->rkey.data, op->rkey.len)) return;
    fill_run(fill_start(op->ns, &op->rkey, op->id, op->idlen, stale, true));
}

/* ---------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------- */

static void answer_get(op_t *op, const entry_t *e, bool have)
{
    ns_stats_t *s = &op->ns->stats;
    entry_state_t st = have ? entry_state(e, now_ms()) : STATE_EXPIRED;
    if (st == STATE_FRESH) {
        if (e->kind == ENTRY_NEGATIVE) s->negative_hits++;
        else s->hits_redis++;
        op_answer_entry_value(op, e);
        op_done(op);
        return;
    }
    if (st == STATE_STALE && e->kind == ENTRY_VALUE) {
        s->stale_revalidate++;
        reply_bulk(op_out(op), e->value, e->len);
        background_refresh(op, e);
        op_done(op);
        return;
    }
    s->misses++;
    op_fill(op, have && st != STATE_EXPIRED ? e : NULL);
}

static void answer_peek(op_t *op, const entry_t *e, bool have)
{
    buf_t *out = op_out(op);
    int64_t now = now_ms();
    entry_state_t st = have ? entry_state(e, now) : STATE_EXPIRED;
    if (!have || (st != STATE_FRESH && e->kind != ENTRY_VALUE)) {
        reply_nil(out);
    } else {
        const char *state = st != STATE_FRESH ? "stale"
                            : e->kind == ENTRY_NEGATIVE ? "negative"
                            : e->kind == ENTRY_ERROR    ? "error"
                                                        : "fresh";
        reply_array(out, 3);
        reply_bulk_str(out, state);
        reply_int(out, (long long)(e->fresh_until - now)); /* negative: ms since expiry */
        if (e->kind == ENTRY_NEGATIVE) reply_nil(out);
        else reply_bulk(out, e->value, e->len);
    }
    op_done(op);
}

static void answer_ttl(op_t *op, const entry_t *e, bool have)
{
    int64_t now = now_ms();
    if (!have || entry_state(e, now) == STATE_EXPIRED) {
        reply_int(op_out(op), -2);
    } else {
        int64_t ms = e->fresh_until - now;
        if (ms < 0) ms = 0; /* cached but stale: no freshness left */
        reply_int(op_out(op), op->kind == CACHE_PTTL ? ms : (ms + 500) / 1000);
    }
    op_done(op);
}

static void on_lookup(void *priv, redisReply *reply)
{
    op_t *op = priv;
    entry_t e;
    bool have = usable_entry(op->ns, reply, &e);
    switch (op->kind) {
    case CACHE_GET: answer_get(op, &e, have); break;
    case CACHE_PEEK: answer_peek(op, &e, have); break;
    case CACHE_TTL:
    case CACHE_PTTL: answer_ttl(op, &e, have); break;
    case CACHE_REFRESH: op_fill(op, NULL); break;
    }
}

static void op_start(op_t *op)
{
    if (op->kind == CACHE_REFRESH) {
        op_fill(op, NULL);
        return;
    }
    if (op->kind == CACHE_GET) {
        /* A fill that clients wait on is already under way: wait with them
         * rather than ask Redis for what is known to be missing. */
        fill_t *f = dict_get(&cache.fills, op->rkey.data, op->rkey.len);
        if (f && !f->background) {
            op->ns->stats.misses++;
            op->ns->stats.coalesced++;
            fill_join(f, op);
            return;
        }
    }
    if (backend_cmd(on_lookup, op, "GET %b", op->rkey.data, op->rkey.len) != 0)
        on_lookup(op, NULL); /* Redis down: fail open */
}

static void count_request(ns_stats_t *s, cache_op_t kind, bool as_array)
{
    if (as_array) s->requests_mget++;
    else if (kind == CACHE_GET) s->requests_get++;
    else if (kind == CACHE_PEEK) s->requests_peek++;
    else if (kind == CACHE_REFRESH) s->requests_refresh++;
    else s->requests_ttl++;
}

void cache_read(slot_t *slot, cache_op_t kind, const cache_key_t *keys, long nkeys, bool as_array)
{
    request_t *r = xcalloc(1, sizeof(*r) + (size_t)nkeys * sizeof(op_t));
    r->slot = slot;
    r->as_array = as_array;
    r->nops = r->remaining = nkeys;
    if (as_array) r->parts = xcalloc((size_t)nkeys, sizeof(buf_t));
    for (long i = 0; i < nkeys; i++) {
        op_t *op = &r->ops[i];
        op->req = r;
        op->idx = i;
        op->kind = kind;
        op->ns = keys[i].ns;
        op->id = xmemdup(keys[i].id, keys[i].idlen);
        op->idlen = keys[i].idlen;
        redis_key(&op->rkey, op->ns, op->id, op->idlen);
        count_request(&op->ns->stats, kind, as_array);
    }
    /* Ops may finish synchronously (and the last one frees r). */
    for (long i = 0, n = nkeys; i < n; i++) op_start(&r->ops[i]);
}

/* ---------------------------------------------------------------------------
 * Writes: SET and DEL
 * ------------------------------------------------------------------------- */

static void invalidate_fill(const buf_t *rkey)
{
    fill_t *f = dict_get(&cache.fills, rkey->data, rkey->len);
    if (f) f->invalidated = true;
}

static void on_set(void *priv, redisReply *reply)
{
    slot_t *slot = priv;
    if (!reply) reply_error(&slot->buf, "backend unavailable, value not stored");
    else if (reply->type == REDIS_REPLY_ERROR) reply_error(&slot->buf, "backend: %s", reply->str);
    else reply_ok(&slot->buf);
    slot_finish(slot);
}

void cache_set(slot_t *slot, const cache_key_t *key, const char *value, size_t vlen,
               long long ttl_ms)
{
    ns_t *ns = key->ns;
    policy_t *p = ns->cur;
    ns->stats.requests_set++;
    buf_t rkey = {0};
    redis_key(&rkey, ns, key->id, key->idlen);
    if (ttl_ms < 0) {
        const char *err = NULL;
        double ttl = p->conf.ttl_is_fn ? policy_ttl_for(p, key->id, key->idlen, value, vlen, &err)
                                       : p->conf.ttl;
        if (err) log_warn("[%s] ttl function failed for SET: %s", ns->name, err);
        ttl_ms = ttl_jittered_ms(ttl, p->conf.ttl_jitter, rand_unit());
    }
    int64_t now = now_ms();
    entry_t e = {.kind = ENTRY_VALUE, .version = p->conf.version, .value = value, .len = vlen};
    e.stored_at = now;
    e.fresh_until = now + ttl_ms;
    e.stale_until = e.fresh_until + (int64_t)llround(p->conf.stale_ttl * 1000.0);
    e.error_until = e.fresh_until + (int64_t)llround(p->conf.stale_if_error * 1000.0);
    buf_t val = {0};
    entry_encode(&val, &e);
    invalidate_fill(&rkey); /* a fetch started before this SET must not overwrite it */
    long long px = (long long)entry_redis_ttl_ms(&e, now);
    if (backend_cmd(on_set, slot, "SET %b %b PX %lld", rkey.data, rkey.len, val.data, val.len,
                    px) != 0) {
        reply_error(&slot->buf, "backend unavailable, value not stored");
        slot_finish(slot);
    }
    buf_free(&val);
    buf_free(&rkey);
}

typedef struct del_req {
    slot_t *slot;
    long remaining;
    long long removed;
    bool failed;
} del_req_t;

static void del_finish(del_req_t *d)
{
    if (d->failed) reply_error(&d->slot->buf, "backend unavailable, keys may still be cached");
    else reply_int(&d->slot->buf, d->removed);
    slot_finish(d->slot);
    free(d);
}

static void on_del(void *priv, redisReply *reply)
{
    del_req_t *d = priv;
    if (reply && reply->type == REDIS_REPLY_INTEGER) d->removed += reply->integer;
    else d->failed = true;
    if (--d->remaining == 0) del_finish(d);
}

void cache_del(slot_t *slot, const cache_key_t *keys, long nkeys)
{
    del_req_t *d = xcalloc(1, sizeof(*d));
    d->slot = slot;
    d->remaining = 1; /* held until every DEL is queued */
    buf_t rkey = {0};
    for (long i = 0; i < nkeys; i++) {
        buf_reset(&rkey);
        redis_key(&rkey, keys[i].ns, keys[i].id, keys[i].idlen);
        keys[i].ns->stats.requests_del++;
        keys[i].ns->stats.invalidations_del++;
        invalidate_fill(&rkey);
        /* One DEL per key: keys of a namespace may live in different
         * cluster slots (SPEC §9). */
        d->remaining++;
        if (backend_cmd(on_del, d, "DEL %b", rkey.data, rkey.len) != 0) {
            d->remaining--;
            d->failed = true;
        }
    }
    buf_free(&rkey);
    if (--d->remaining == 0) del_finish(d);
}

/* ---------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------- */

void cache_init(uv_loop_t *loop)
{
    cache.loop = loop;
    dict_init(&cache.fills);
    cache.rng = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    if (!cache.rng) cache.rng = 1;
}

size_t cache_fills_in_flight(void)
{
    return cache.fills.count;
}

void cache_close(void)
{
    /* Fills end through fetch_abort_all() before this; the table is empty. */
    dict_free(&cache.fills);
}
