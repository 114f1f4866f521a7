/* cache.c: the read-through cache (see cache.h).
 *
 * A command becomes a request (one reply sink) holding one op per key. An
 * op looks its key up in Redis (one round trip, no Lua) and either answers
 * from the entry or waits on the key's fill (fill.c), which fetches once
 * across all instances and tells its waiters the outcome (cache.h); the
 * replies are encoded here only, in the sink's protocol version.
 * Invalidations here (SET, DEL) delete the key's fill lock too, so a fill
 * they overtook cannot store, and are broadcast so other instances drop
 * what they hold of the key (bcast.c). WARM's fetches are requests without
 * a sink: their outcome goes to a callback. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "bcast.h"
#include "bus.h"
#include "cache.h"
#include "cache_int.h"
#include "config.h"
#include "fetch_log.h"
#include "fill.h"
#include "keys.h"
#include "l1.h"
#include "l1_link.h"
#include "log.h"
#include "reply.h"
#include "store.h"
#include "tags.h"
#include "util.h"

struct request {
    sink_t *sink;       /* NULL for a request with a callback (WARM) */
    cache_warm_cb done; /* with sink NULL: told the outcome */
    void *done_priv;
    bool as_array;
    bool as_count; /* EXISTS: answer how many ops counted */
    long count;
    long nops;
    long remaining;
    buf_t *parts; /* as_array: each op's encoded reply */
    op_t ops[];
};

/* ---------------------------------------------------------------------------
 * Keys and entries
 * ------------------------------------------------------------------------- */

void cache_entry_key(buf_t *out, const ns_t *ns, const char *id, size_t idlen)
{
    keys_entry(out, ns->name, ns->name_len, id, idlen);
}

int cache_key_parse(const char *key, size_t len, cache_key_t *out, buf_t *err)
{
    const char *colon = memchr(key, ':', len);
    if (!colon || colon == key) {
        reply_error(err, "key must be namespace:id");
        return -1;
    }
    size_t nslen = (size_t)(colon - key);
    /* Only a loaded namespace is found, and their names are checked at
     * load (policy.c), so no per-byte check here: this runs on every hit. */
    ns_t *ns = nslen <= 128 ? ns_find(key, nslen) : NULL;
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

/* ---------------------------------------------------------------------------
 * Requests: collecting per-key answers into one reply
 * ------------------------------------------------------------------------- */

/* Where op writes its answer: taken once per answer (sink.h). */
static buf_t *op_out(op_t *op)
{
    request_t *r = op->req;
    return r->as_array ? &r->parts[op->idx] : sink_out(r->sink);
}

static sink_proto_t op_proto(const op_t *op)
{
    return op->req->sink->proto;
}

/* Requests of one key (GET, most of all) are kept for reuse with their
 * key buffer, as memcached keeps its response objects: a hit then
 * allocates nothing here. */
#define POOL_MAX      1024
#define POOL_KEY_KEEP 512 /* a key buffer larger than this is not kept */

static request_t *pool;
static size_t pooled;

static request_t *request_new(long nkeys)
{
    if (nkeys == 1 && pool) {
        request_t *r = pool;
        pool = r->parts ? (request_t *)r->parts : NULL; /* the free list's link */
        pooled--;
        buf_t rkey = r->ops[0].rkey;
        memset(r, 0, sizeof(*r) + sizeof(op_t));
        r->ops[0].rkey = rkey;
        buf_reset(&r->ops[0].rkey);
        return r;
    }
    return xcalloc(1, sizeof(request_t) + (size_t)nkeys * sizeof(op_t));
}

static void request_free(request_t *r)
{
    if (r->parts) {
        for (long i = 0; i < r->nops; i++)
            buf_free(&r->parts[i]);
        free(r->parts);
        r->parts = NULL;
    }
    if (r->nops == 1 && pooled < POOL_MAX && r->ops[0].rkey.cap <= POOL_KEY_KEEP) {
        r->parts = (buf_t *)pool; /* unused while pooled: the free list's link */
        pool = r;
        pooled++;
        return;
    }
    for (long i = 0; i < r->nops; i++)
        buf_free(&r->ops[i].rkey);
    free(r);
}

static void pool_free(void)
{
    while (pool) {
        request_t *r = pool;
        pool = (request_t *)r->parts;
        buf_free(&r->ops[0].rkey);
        free(r);
    }
    pooled = 0;
}

/* The op's entry key; its id is read from there, not copied again. */
static void op_set_key(op_t *op, ns_t *ns, const char *id, size_t idlen)
{
    size_t nslen = strlen(ns->name);
    size_t at = keys_entry_id_offset(nslen);
    buf_reserve(&op->rkey, at + idlen + 1);
    keys_entry(&op->rkey, ns->name, nslen, id, idlen);
    op->ns = ns;
    op->id = op->rkey.data + at;
    op->idlen = idlen;
}

/* op has written its answer: the last one of a request finishes its sink
 * (MGET: the array of the answers) and frees it. */
static void op_done(op_t *op)
{
    request_t *r = op->req;
    if (--r->remaining > 0) return;
    if (r->as_array) {
        buf_t *out = sink_out(r->sink);
        reply_array(out, r->nops);
        for (long i = 0; i < r->nops; i++)
            buf_append(out, r->parts[i].data, r->parts[i].len);
    } else if (r->as_count) {
        reply_int(sink_out(r->sink), r->count);
    }
    sink_finish(r->sink);
    request_free(r);
}

/* The reply to a read's outcome: GET's, MGET's and REFRESH's answers are
 * encoded here and nowhere else. */
static void encode_outcome(sink_proto_t proto, buf_t *out, const outcome_t *o)
{
    switch (o->kind) {
    case OUTCOME_VALUE:
    case OUTCOME_STALE:
        reply_bulk(out, o->data, o->len);
        break;
    case OUTCOME_NOT_FOUND:
        sink_null(proto, out);
        break;
    case OUTCOME_ERROR:
        reply_error(out, "fetch failed: %.*s", (int)o->len, o->data);
        break;
    }
}

/* Write op's answer to an entry read here (op_done follows). */
static void op_answer_entry(op_t *op, const entry_t *e)
{
    outcome_t o = outcome_of_entry(e);
    encode_outcome(op_proto(op), op_out(op), &o);
}

/* A read op's fill came to o: answer it. */
static void read_op_outcome(op_t *op, const outcome_t *o)
{
    encode_outcome(op_proto(op), op_out(op), o);
    op_done(op);
}

/* A WARM request has one op, and no reply: the outcome goes to its
 * callback. */
static void warm_op_outcome(op_t *op, const outcome_t *o)
{
    request_t *r = op->req;
    r->done(r->done_priv, o);
    request_free(r);
}

/* ---------------------------------------------------------------------------
 * The in-process tier
 * ------------------------------------------------------------------------- */

/* A fresh item of the tier at now (now_ms()), or false. */
static bool l1_lookup(const ns_t *ns, const buf_t *rkey, int64_t now, entry_t *e)
{
    if (!(ns->cur && ns->cur->conf.l1_ttl > 0)) return false;
    /* Redis is there but its broadcasts are not: another instance's
     * invalidation would go unheard, so read Redis. (With Redis down too,
     * the tier is all there is: fail open, SPEC §6.) l1_link.h. */
    if (!l1_link_usable()) return false;
    if (!l1_get(rkey->data, rkey->len, uv_now(cache_loop), !key_backend_up(rkey), e)) return false;
    if (e->version != ns->cur->conf.version || e->gen < ns->gen ||
        entry_state(e, now) != STATE_FRESH) {
        l1_del(rkey->data, rkey->len);
        return false;
    }
    return true;
}

/* XFetch: refresh early, with a probability that rises toward expiry, so
 * a hot key is renewed before anyone misses it. */
static void maybe_refresh_early(ns_t *ns, const buf_t *rkey, const char *id, size_t idlen,
                                const entry_t *e, int64_t now)
{
    double beta = ns->cur->conf.early_refresh;
    if (beta > 0 && e->kind == ENTRY_VALUE &&
        xfetch_should_refresh(now, e->fresh_until, e->fetch_ms, beta, cache_rand()))
        fill_background(ns, rkey, id, idlen, e); /* counts early_refreshes */
}

static buf_t l1_scratch; /* the fast path's key buffer, reused */

bool cache_try_l1(sink_t *sink, const cache_key_t *key)
{
    ns_t *ns = key->ns;
    if (!(ns->cur->conf.l1_ttl > 0)) return false;
    buf_reset(&l1_scratch);
    cache_entry_key(&l1_scratch, ns, key->id, key->idlen);
    entry_t e;
    int64_t now = now_ms(); /* one clock read per hit */
    if (!l1_lookup(ns, &l1_scratch, now, &e)) return false;
    ns->stats.requests_get++;
    if (e.kind == ENTRY_NEGATIVE)
        ns->stats.negative_hits++;
    else
        ns->stats.hits_l1++;
    outcome_t o = outcome_of_entry(&e); /* the tier holds no errors (cache_l1_store) */
    encode_outcome(sink->proto, sink_out(sink), &o);
    sink_finish(sink);
    maybe_refresh_early(ns, &l1_scratch, key->id, key->idlen, &e, now);
    return true;
}

/* ---------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------- */

static void answer_get(op_t *op, const entry_t *e, bool have)
{
    ns_stats_t *s = &op->ns->stats;
    int64_t now = now_ms();
    entry_state_t st = have ? entry_state(e, now) : STATE_EXPIRED;
    if (st == STATE_FRESH) {
        if (e->kind == ENTRY_NEGATIVE)
            s->negative_hits++;
        else
            s->hits_redis++;
        op_answer_entry(op, e);
        /* Not if an invalidation came while the lookup was under way: the
         * entry may be the one it removed. */
        if (op->epoch == cache_inval_epoch) cache_l1_store(op->ns, &op->rkey, e);
        maybe_refresh_early(op->ns, &op->rkey, op->id, op->idlen, e, now);
        op_done(op);
        return;
    }
    if (st == STATE_STALE && e->kind == ENTRY_VALUE) {
        s->stale_revalidate++;
        encode_outcome(op_proto(op), op_out(op),
                       &(outcome_t){.kind = OUTCOME_STALE, .data = e->value, .len = e->len});
        fill_background(op->ns, &op->rkey, op->id, op->idlen, e);
        op_done(op);
        return;
    }
    s->misses++;
    fill_wait(op, have && st != STATE_EXPIRED ? e : NULL);
}

static void answer_peek(op_t *op, const entry_t *e, bool have)
{
    buf_t *out = op_out(op);
    int64_t now = now_ms();
    entry_state_t st = have ? entry_state(e, now) : STATE_EXPIRED;
    if (!have || st == STATE_EXPIRED || (st != STATE_FRESH && e->kind != ENTRY_VALUE)) {
        sink_null(op_proto(op), out);
    } else {
        const char *state = st != STATE_FRESH           ? "stale"
                            : e->kind == ENTRY_NEGATIVE ? "negative"
                            : e->kind == ENTRY_ERROR    ? "error"
                                                        : "fresh";
        /* RESP3: a map of the same three, named */
        bool named = op_proto(op) == SINK_RESP3;
        if (named)
            sink_map(SINK_RESP3, out, 3);
        else
            reply_array(out, 3);
        if (named) reply_bulk_str(out, "state");
        reply_bulk_str(out, state);
        if (named) reply_bulk_str(out, "ttl_ms");
        reply_int(out, entry_fresh_left_ms(e, now)); /* negative: ms since expiry */
        if (named) reply_bulk_str(out, "value");
        if (e->kind == ENTRY_NEGATIVE)
            sink_null(op_proto(op), out);
        else
            reply_bulk(out, e->value, e->len);
    }
    op_done(op);
}

static void answer_ttl(op_t *op, const entry_t *e, bool have)
{
    int64_t now = now_ms();
    if (!have || entry_state(e, now) == STATE_EXPIRED) {
        reply_int(op_out(op), -2);
    } else {
        reply_int(op_out(op), entry_ttl_left(e, now, op->kind == CACHE_PTTL));
    }
    op_done(op);
}

/* EXISTS's rule, the one SC_SET_COND applies in Redis (store.c): a
 * value that no deadline has passed. */
static bool entry_live_value(const entry_t *e, bool have)
{
    return have && e->kind == ENTRY_VALUE && entry_state(e, now_ms()) != STATE_EXPIRED;
}

static void on_lookup(void *priv, const store_result_t *r)
{
    op_t *op = priv;
    entry_t e;
    bool have = r->status == STORE_OK && entry_usable(op->ns, &op->rkey, r->str, r->len, &e);
    switch (op->kind) {
    case CACHE_GET:
        answer_get(op, &e, have);
        break;
    case CACHE_PEEK:
        answer_peek(op, &e, have);
        break;
    case CACHE_TTL:
    case CACHE_PTTL:
        answer_ttl(op, &e, have);
        break;
    case CACHE_REFRESH:
        fill_wait(op, have ? &e : NULL);
        break;
    case CACHE_EXISTS:
        if (entry_live_value(&e, have)) op->req->count++;
        op_done(op);
        break;
    }
}

static void op_start(op_t *op)
{
    if (op->kind == CACHE_REFRESH) {
        fill_wait(op, NULL);
        return;
    }
    if (op->kind == CACHE_GET) {
        entry_t e;
        int64_t now = now_ms();
        if (l1_lookup(op->ns, &op->rkey, now, &e)) {
            if (e.kind == ENTRY_NEGATIVE)
                op->ns->stats.negative_hits++;
            else
                op->ns->stats.hits_l1++;
            op_answer_entry(op, &e);
            maybe_refresh_early(op->ns, &op->rkey, op->id, op->idlen, &e, now);
            op_done(op);
            return;
        }
        /* A fill that clients wait on is under way here: wait with them
         * rather than ask Redis for what is known to be missing. */
        if (fill_join_if_running(op)) {
            op->ns->stats.misses++;
            return;
        }
    }
    op->epoch = cache_inval_epoch;
    if (store_get(op->rkey.data, op->rkey.len, on_lookup, op) != 0)
        on_lookup(op, &(store_result_t){.status = STORE_DOWN}); /* Redis down: fail open */
}

static void count_request(ns_stats_t *s, cache_op_t kind, bool as_array)
{
    if (as_array)
        s->requests_mget++;
    else if (kind == CACHE_GET)
        s->requests_get++;
    else if (kind == CACHE_PEEK || kind == CACHE_EXISTS) /* both look without filling */
        s->requests_peek++;
    else if (kind == CACHE_REFRESH)
        s->requests_refresh++;
    else
        s->requests_ttl++;
}

static void read_request(sink_t *sink, cache_op_t kind, const cache_key_t *keys, long nkeys,
                         bool as_array, bool as_count)
{
    request_t *r = request_new(nkeys);
    r->sink = sink;
    r->as_array = as_array;
    r->as_count = as_count;
    r->nops = r->remaining = nkeys;
    if (as_array) r->parts = xcalloc((size_t)nkeys, sizeof(buf_t));
    for (long i = 0; i < nkeys; i++) {
        op_t *op = &r->ops[i];
        op->req = r;
        op->idx = i;
        op->kind = kind;
        op->on_outcome = read_op_outcome;
        op_set_key(op, keys[i].ns, keys[i].id, keys[i].idlen);
        count_request(&op->ns->stats, kind, as_array);
    }
    /* Ops may finish synchronously and the last one frees r: the loop only
     * reads r before starting op i, and op n-1 is the last thing it does. */
    for (long i = 0, n = nkeys; i < n; i++)
        op_start(&r->ops[i]);
}

void cache_read(sink_t *sink, cache_op_t kind, const cache_key_t *keys, long nkeys, bool as_array)
{
    read_request(sink, kind, keys, nkeys, as_array, false);
}

void cache_exists(sink_t *sink, const cache_key_t *keys, long nkeys)
{
    read_request(sink, CACHE_EXISTS, keys, nkeys, false, true);
}

void cache_warm_one(ns_t *ns, const char *id, size_t idlen, cache_warm_cb cb, void *priv)
{
    request_t *r = request_new(1);
    r->done = cb;
    r->done_priv = priv;
    r->nops = r->remaining = 1;
    op_t *op = &r->ops[0];
    op->req = r;
    op->kind = CACHE_REFRESH; /* force, through the key's fill and lock */
    op->warm = true;
    op->on_outcome = warm_op_outcome;
    op_set_key(op, ns, id, idlen);
    op_start(op); /* may call cb before returning */
}

/* ---------------------------------------------------------------------------
 * Invalidation: SET and DEL
 * ------------------------------------------------------------------------- */

/* Stop a local fill from storing, drop the tier item, and tell the other
 * instances. */
static void invalidate_key(const buf_t *rkey)
{
    bus_emit(BUS_KEY_INVALIDATED, &(bus_msg_t){.key = rkey->data, .len = rkey->len});
    bcast_key(rkey);
}

static void on_set(void *priv, const store_result_t *r)
{
    sink_t *sink = priv;
    buf_t *out = sink_out(sink);
    if (r->status == STORE_DOWN)
        reply_error(out, "backend unavailable, value not stored");
    else if (r->status == STORE_ERROR)
        reply_error(out, "backend: %.*s", (int)r->len, r->str);
    else
        reply_ok(out);
    sink_finish(sink);
}

/* What a conditional SET asks (cache_set_cond): store.h's mode letters,
 * and whether the answer is the old value. mode[0] == 0: a plain SET. */
typedef struct set_cond {
    char mode[4];
    bool get;
} set_cond_t;

typedef struct cond_req {
    sink_t *sink;
    bool get;
    buf_t rkey;
} cond_req_t;

static void on_set_cond(void *priv, const store_result_t *r)
{
    cond_req_t *q = priv;
    bool stored = r->status == STORE_OK && r->integer == 1;
    if (stored) invalidate_key(&q->rkey); /* after the store, as set_store's */
    buf_t *out = sink_out(q->sink);
    if (r->status == STORE_DOWN)
        reply_error(out, "backend unavailable, value not stored");
    else if (r->status == STORE_ERROR)
        reply_error(out, "backend: %.*s", (int)r->len, r->str);
    else if (q->get && r->str)
        reply_bulk(out, r->str, r->len);
    else if (q->get || !stored)
        sink_null(q->sink->proto, out);
    else
        reply_ok(out);
    sink_finish(q->sink);
    buf_free(&q->rkey);
    free(q);
}

/* Send the conditional store; the client's next commands wait for it, so
 * they see its outcome. */
static void set_store_cond(sink_t *sink, ns_t *ns, const policy_t *p, buf_t *rkey, buf_t *lkey,
                           const buf_t *val, long long px, const set_cond_t *cond, int64_t now)
{
    cond_req_t *q = xcalloc(1, sizeof(*q));
    q->sink = sink;
    q->get = cond->get;
    q->rkey = *rkey;
    *rkey = (buf_t){0};
    sink_hold_input(sink);
    if (store_set_cond(q->rkey.data, q->rkey.len, lkey->data, lkey->len, val->data, val->len, px,
                       cond->mode, p->conf.version, ns->gen, now, on_set_cond, q) != 0)
        on_set_cond(q, &(store_result_t){.status = STORE_DOWN});
}

/* Store value under the entry key of ns:id as fresh for ttl_ms, by the
 * conf of policy p; under cond's condition when it has one. */
static void set_store(sink_t *sink, ns_t *ns, const policy_t *p, const char *id, size_t idlen,
                      const char *value, size_t vlen, long long ttl_ms, const set_cond_t *cond)
{
    buf_t rkey = {0};
    cache_entry_key(&rkey, ns, id, idlen);
    int64_t now = now_ms();
    entry_t e = {.kind = ENTRY_VALUE,
                 .version = p->conf.version,
                 .gen = ns->gen,
                 .value = value,
                 .len = vlen};
    e.stored_at = now;
    e.fresh_until = now + ttl_ms; /* ttl_ms <= ENTRY_TTL_MAX: SET's cap, ttl_jittered_ms */
    e.stale_until = e.fresh_until + entry_secs_to_ms(p->conf.stale_ttl);
    e.error_until = e.fresh_until + entry_secs_to_ms(p->conf.stale_if_error);
    buf_t val = {0}, lkey = {0};
    entry_encode(&val, &e);
    keys_lock(&lkey, rkey.data, rkey.len);
    long long px = (long long)entry_redis_ttl_ms(&e, now);
    if (cond && cond->mode[0]) {
        set_store_cond(sink, ns, p, &rkey, &lkey, &val, px, cond, now);
    } else if (store_set_unlock(rkey.data, rkey.len, lkey.data, lkey.len, val.data, val.len, px,
                                on_set, sink) != 0) {
        reply_error(sink_out(sink), "backend unavailable, value not stored");
        sink_finish(sink);
    } else {
        /* After the SET on the same link: the "I" goes out once the value
         * is in place, so a waiting instance re-reads the new value. */
        invalidate_key(&rkey);
    }
    buf_free(&val);
    buf_free(&lkey);
    buf_free(&rkey);
}

/* A SET waiting for the policy's ttl(id, value), with its own copies. */
typedef struct set_job {
    sink_t *sink;
    ns_t *ns;
    policy_t *p;
    char *id, *value;
    size_t idlen, vlen;
    set_cond_t cond;
} set_job_t;

static void on_set_ttl(void *priv, double ttl, const char *err)
{
    set_job_t *j = priv;
    sink_release_input(j->sink); /* the SET below goes out before the next command */
    if (err) log_warn("[%s] SET stored with the default ttl (300 s): %s", j->ns->name, err);
    long long ttl_ms = ttl_jittered_ms(ttl, j->p->conf.ttl_jitter, cache_rand());
    set_store(j->sink, j->ns, j->p, j->id, j->idlen, j->value, j->vlen, ttl_ms, &j->cond);
    policy_unref(j->p);
    free(j->id);
    free(j->value);
    free(j);
}

static void set_with(sink_t *sink, const cache_key_t *key, const char *value, size_t vlen,
                     long long ttl_ms, const set_cond_t *cond)
{
    ns_t *ns = key->ns;
    policy_t *p = ns->cur;
    ns->stats.requests_set++;
    if (ttl_ms >= 0 || !p->conf.ttl_is_fn) {
        if (ttl_ms < 0) ttl_ms = ttl_jittered_ms(p->conf.ttl, p->conf.ttl_jitter, cache_rand());
        set_store(sink, ns, p, key->id, key->idlen, value, vlen, ttl_ms, cond);
        return;
    }
    /* ttl(id, value) runs as a coroutine; it usually finishes within its
     * first slice, so before policy_ttl returns. Until it does, the
     * client's next commands wait, so they see this SET, as in Redis. */
    set_job_t *j = xcalloc(1, sizeof(*j));
    j->sink = sink;
    j->ns = ns;
    j->p = p;
    policy_ref(p);
    j->id = xmemdup(key->id, key->idlen);
    j->idlen = key->idlen;
    j->value = xmemdup(value, vlen);
    j->vlen = vlen;
    j->cond = *cond;
    sink_hold_input(sink); /* the client's next command sees this SET */
    policy_ttl(p, j->id, j->idlen, j->value, j->vlen, on_set_ttl, j);
}

void cache_set(sink_t *sink, const cache_key_t *key, const char *value, size_t vlen,
               long long ttl_ms)
{
    set_with(sink, key, value, vlen, ttl_ms, &(set_cond_t){0});
}

void cache_set_cond(sink_t *sink, const cache_key_t *key, const char *value, size_t vlen,
                    long long ttl_ms, const set_opts_t *o)
{
    set_cond_t cond = {.get = o->get};
    char *m = cond.mode;
    if (o->nx) *m++ = 'n';
    if (o->xx) *m++ = 'x';
    if (o->keepttl) *m++ = 'k';
    if (m == cond.mode) *m++ = 'g'; /* GET alone: still the script, which reads the old */
    set_with(sink, key, value, vlen, ttl_ms, &cond);
}

typedef struct del_req {
    cache_inval_cb cb;
    void *priv;
    long remaining;
    long long removed;
    bool failed;
} del_req_t;

static void del_finish(del_req_t *d)
{
    d->cb(d->priv, d->removed, d->failed ? "backend unavailable, keys may still be cached" : NULL);
    free(d);
}

static void on_del(void *priv, const store_result_t *r)
{
    del_req_t *d = priv;
    if (r->status == STORE_OK)
        d->removed += r->integer;
    else
        d->failed = true;
    if (--d->remaining == 0) del_finish(d);
}

void cache_del_keys(const cache_key_t *keys, long nkeys, bool count, cache_inval_cb cb, void *priv)
{
    del_req_t *d = xcalloc(1, sizeof(*d));
    d->cb = cb;
    d->priv = priv;
    d->remaining = 1; /* held until every DEL is queued */
    buf_t rkey = {0}, lkey = {0};
    for (long i = 0; i < nkeys; i++) {
        buf_reset(&rkey);
        buf_reset(&lkey);
        cache_entry_key(&rkey, keys[i].ns, keys[i].id, keys[i].idlen);
        keys_lock(&lkey, rkey.data, rkey.len);
        if (count) {
            keys[i].ns->stats.requests_del++;
            keys[i].ns->stats.invalidations_del++;
        }
        /* One script per key: keys of a namespace live in different
         * cluster slots (SPEC §9). */
        d->remaining++;
        if (store_del_unlock(rkey.data, rkey.len, lkey.data, lkey.len, on_del, d) != 0) {
            d->remaining--;
            d->failed = true;
        }
        invalidate_key(&rkey);
    }
    buf_free(&rkey);
    buf_free(&lkey);
    if (--d->remaining == 0) del_finish(d);
}

void cache_reply_removed(void *priv, long long removed, const char *err)
{
    sink_t *sink = priv;
    buf_t *out = sink_out(sink);
    if (err)
        reply_error(out, "%s", err);
    else
        reply_int(out, removed);
    sink_finish(sink);
}

void cache_del(sink_t *sink, const cache_key_t *keys, long nkeys)
{
    cache_del_keys(keys, nkeys, true, cache_reply_removed, sink);
}

/* ---------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------- */

/* The modules' listeners are registered by main.c, in the order they must
 * run (bus.h). */
void cache_init(uv_loop_t *loop)
{
    cache_int_init(loop);
    fills_init();
    l1_init(cfg.l1_max_bytes);
    l1_link_init(loop); /* drops the tier when the subscription is lost */
    bcast_init();
}

size_t cache_fills_in_flight(void)
{
    return fills_in_flight();
}

void cache_shutdown(void)
{
    fills_shutdown();
    l1_link_close();
    bcast_shutdown();
}

void cache_close(void)
{
    fetch_log_close();
    fills_close();
    tags_close();
    l1_close();
    buf_free(&l1_scratch);
    pool_free();
    bcast_close();
}
