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
#include "cache_int.h"
#include "config.h"
#include "fetch_log.h"
#include "keys.h"
#include "l1.h"
#include "l1_link.h"
#include "log.h"
#include "reply.h"
#include "store.h"
#include "util.h"

struct request {
    sink_t *sink;       /* NULL for a request with a callback (WARM) */
    cache_warm_cb done; /* with sink NULL: told the outcome */
    void *done_priv;
    bool as_array;
    long nops;
    long remaining;
    buf_t *parts; /* as_array: each op's encoded reply */
    op_t ops[];
};

uv_loop_t *cache_loop;
const char *cache_instance_id;
buf_t cache_channel;
uint64_t cache_inval_epoch;
static char instance_id_buf[24];
static uint64_t rng_state;

/* ---------------------------------------------------------------------------
 * Keys and entries
 * ------------------------------------------------------------------------- */

/* xorshift64*: fast, good enough for jitter and early-refresh draws. */
double cache_rand(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

void cache_entry_key(buf_t *out, const ns_t *ns, const char *id, size_t idlen)
{
    keys_entry(out, ns->name, strlen(ns->name), id, idlen);
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
    for (size_t i = 0; valid && i < nslen; i++)
        valid = valid_ns_char(key[i]);
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

/* A bad entry is logged once per kind, then at most once a minute per kind
 * with how many more were seen: Redis full of foreign data must not flood
 * the log. The key is shown with unprintable bytes as '?'. */
#define BAD_ENTRY_LOG_EVERY_MS 60000

static void log_bad_entry(const ns_t *ns, const buf_t *rkey, entry_fault_t f)
{
    static struct {
        bool logged;
        uint64_t last;
        unsigned long suppressed;
    } seen[ENTRY_FAULTS];
    uint64_t now = mono_ms();
    if (seen[f].logged && now - seen[f].last < BAD_ENTRY_LOG_EVERY_MS) {
        seen[f].suppressed++;
        return;
    }
    char key[201];
    size_t n = rkey->len < sizeof(key) - 1 ? rkey->len : sizeof(key) - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)rkey->data[i];
        key[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    key[n] = '\0';
    log_warn("[%s] ignoring the entry at %s%s in Redis: %s; treated as absent, the next fill "
             "overwrites it (%lu more of this kind since the last report)",
             ns->name, key, n < rkey->len ? "..." : "", entry_fault_text(f), seen[f].suppressed);
    seen[f].logged = true;
    seen[f].last = now;
    seen[f].suppressed = 0;
}

/* An entry of another policy version counts as absent, and so does one of
 * an older namespace generation (FLUSHNS), and one that fails validation
 * (entry_check: foreign or corrupt data). */
bool entry_usable(ns_t *ns, const buf_t *rkey, const char *data, size_t len, entry_t *e)
{
    entry_fault_t f = entry_decode(data, len, e) != 0 ? ENTRY_BAD_HEADER : entry_check(e, now_ms());
    if (f != ENTRY_OK) {
        log_bad_entry(ns, rkey, f);
        return false;
    }
    if (!ns->cur || e->version != ns->cur->conf.version) return false;
    if (e->gen > ns->gen) nsgen_learn(ns, e->gen); /* we missed a FLUSHNS */
    return e->gen == ns->gen;
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

void cache_l1_store(const ns_t *ns, const buf_t *rkey, const entry_t *e)
{
    double l1_ttl = ns->cur ? ns->cur->conf.l1_ttl : 0;
    int64_t fresh_left = ms_sub_sat(e->fresh_until, now_ms());
    if (!l1_link_usable()) return; /* deaf: the tier holds nothing now */
    if (!(l1_ttl > 0) || e->kind == ENTRY_ERROR || fresh_left <= 0) {
        l1_del(rkey->data, rkey->len); /* whatever it held is older than e */
        return;
    }
    /* While Redis is down the tier is all there is: keep the item for the
     * entry's whole freshness (SPEC §6, "the in-process tier keeps
     * serving"). */
    int64_t life = backend_up() ? entry_secs_to_ms(l1_ttl) : fresh_left;
    if (life > fresh_left) life = fresh_left;
    l1_put(rkey->data, rkey->len, e, uv_now(cache_loop) + (uint64_t)life);
}

/* A fresh item of the tier, or false. */
static bool l1_lookup(const ns_t *ns, const buf_t *rkey, entry_t *e)
{
    if (!(ns->cur && ns->cur->conf.l1_ttl > 0)) return false;
    /* Redis is there but its broadcasts are not: another instance's
     * invalidation would go unheard, so read Redis. (With Redis down too,
     * the tier is all there is: fail open, SPEC §6.) l1_link.h. */
    if (!l1_link_usable()) return false;
    if (!l1_get(rkey->data, rkey->len, uv_now(cache_loop), !backend_up(), e)) return false;
    if (e->version != ns->cur->conf.version || e->gen < ns->gen ||
        entry_state(e, now_ms()) != STATE_FRESH) {
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
    if (!l1_lookup(ns, &l1_scratch, &e)) return false;
    ns->stats.requests_get++;
    if (e.kind == ENTRY_NEGATIVE)
        ns->stats.negative_hits++;
    else
        ns->stats.hits_l1++;
    outcome_t o = outcome_of_entry(&e); /* the tier holds no errors (cache_l1_store) */
    encode_outcome(sink->proto, sink_out(sink), &o);
    sink_finish(sink);
    maybe_refresh_early(ns, &l1_scratch, key->id, key->idlen, &e, now_ms());
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
        reply_array(out, 3);
        reply_bulk_str(out, state);
        reply_int(out, entry_fresh_left_ms(e, now)); /* negative: ms since expiry */
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
        if (l1_lookup(op->ns, &op->rkey, &e)) {
            if (e.kind == ENTRY_NEGATIVE)
                op->ns->stats.negative_hits++;
            else
                op->ns->stats.hits_l1++;
            op_answer_entry(op, &e);
            maybe_refresh_early(op->ns, &op->rkey, op->id, op->idlen, &e, now_ms());
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
    else if (kind == CACHE_PEEK)
        s->requests_peek++;
    else if (kind == CACHE_REFRESH)
        s->requests_refresh++;
    else
        s->requests_ttl++;
}

void cache_read(sink_t *sink, cache_op_t kind, const cache_key_t *keys, long nkeys, bool as_array)
{
    request_t *r = request_new(nkeys);
    r->sink = sink;
    r->as_array = as_array;
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

/* How long an invalidation keeps older entries out of the in-process tier:
 * longer than a Redis read in flight can take (the backend timeout fails
 * it), so a read sent before the invalidation cannot cache what it removed. */
static uint64_t forbid_ms(void)
{
    return 2 * (uint64_t)cfg.backend_timeout_ms + 1000;
}

/* Entries stored up to this millisecond stay out of the tier for a while:
 * "up to", not "before", as stored_at has millisecond resolution and a
 * value stored in the same millisecond may be the one removed. The price is
 * that a SET's own value, too, is read from Redis for that while. */
void cache_invalidate_local(const char *rkey, size_t len)
{
    cache_inval_epoch++;
    uint64_t now = uv_now(cache_loop);
    fill_invalidate(rkey, len);
    l1_forbid(rkey, len, now_ms(), now, now + forbid_ms());
}

void cache_invalidate_matching(const char *glob, size_t len)
{
    cache_inval_epoch++;
    uint64_t now = uv_now(cache_loop);
    fills_invalidate_matching(glob, len);
    l1_forbid_matching(glob, len, now_ms(), now, now + forbid_ms());
}

/* Stop a local fill from storing, drop the tier item, and tell the other
 * instances. */
static void invalidate_key(const buf_t *rkey)
{
    cache_invalidate_local(rkey->data, rkey->len);
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

/* Store value under the entry key of ns:id as fresh for ttl_ms, by the
 * conf of policy p. */
static void set_store(sink_t *sink, ns_t *ns, const policy_t *p, const char *id, size_t idlen,
                      const char *value, size_t vlen, long long ttl_ms)
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
    if (store_set_unlock(rkey.data, rkey.len, lkey.data, lkey.len, val.data, val.len, px, on_set,
                         sink) != 0) {
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
} set_job_t;

static void on_set_ttl(void *priv, double ttl, const char *err)
{
    set_job_t *j = priv;
    sink_release_input(j->sink); /* the SET below goes out before the next command */
    if (err) log_warn("[%s] ttl function failed for SET: %s", j->ns->name, err);
    long long ttl_ms = ttl_jittered_ms(ttl, j->p->conf.ttl_jitter, cache_rand());
    set_store(j->sink, j->ns, j->p, j->id, j->idlen, j->value, j->vlen, ttl_ms);
    policy_unref(j->p);
    free(j->id);
    free(j->value);
    free(j);
}

void cache_set(sink_t *sink, const cache_key_t *key, const char *value, size_t vlen,
               long long ttl_ms)
{
    ns_t *ns = key->ns;
    policy_t *p = ns->cur;
    ns->stats.requests_set++;
    if (ttl_ms >= 0 || !p->conf.ttl_is_fn) {
        if (ttl_ms < 0) ttl_ms = ttl_jittered_ms(p->conf.ttl, p->conf.ttl_jitter, cache_rand());
        set_store(sink, ns, p, key->id, key->idlen, value, vlen, ttl_ms);
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
    sink_hold_input(sink); /* the client's next command sees this SET */
    policy_ttl(p, j->id, j->idlen, j->value, j->vlen, on_set_ttl, j);
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

/* The subscription is (re)established: broadcasts may have been missed. */
static void on_resync(void)
{
    /* Any item may have missed its invalidation meanwhile. */
    l1_link_resync();
    fills_resync();
    nsgen_sync_all();
}

/* A namespace appeared after start-up: it may have been flushed before,
 * and it warms as at start. */
static void on_ns_served(ns_t *ns)
{
    nsgen_sync(ns);
    warm_ns_served(ns);
}

void cache_init(uv_loop_t *loop)
{
    cache_loop = loop;
    rng_state = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    if (!rng_state) rng_state = 1;
    snprintf(instance_id_buf, sizeof(instance_id_buf), "%016" PRIx64,
             (uint64_t)(cache_rand() * 18446744073709551615.0));
    cache_instance_id = instance_id_buf;
    keys_channel(&cache_channel);
    buf_append(&cache_channel, "", 1);
    cache_channel.len--; /* NUL-terminated for the backend */
    fills_init();
    l1_init(cfg.l1_max_bytes);
    l1_link_init(loop); /* drops the tier when the subscription is lost */
    engine_set_ns_served_hook(on_ns_served);
    if (backend_subscribe(cache_channel.data, bcast_on_message, on_resync) != 0)
        log_warn("cannot subscribe to %s: other instances' fills will be polled",
                 cache_channel.data);
    warm_init();
}

size_t cache_fills_in_flight(void)
{
    return fills_in_flight();
}

void cache_stop_background(void)
{
    warm_stop();
}

void cache_shutdown(void)
{
    warm_shutdown();
    fills_shutdown();
    l1_link_close();
}

void cache_close(void)
{
    fetch_log_close();
    fills_close();
    tags_close();
    l1_close();
    buf_free(&l1_scratch);
    pool_free();
    buf_free(&cache_channel);
}
