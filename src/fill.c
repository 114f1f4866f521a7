/* fill.c: one origin fetch per missing key, across every instance that
 * shares the Redis (SPEC §5).
 *
 * In this process, concurrent misses of a key join one fill. Across
 * processes, a fill first takes the key's lock in Redis:
 *
 *     SET <key>:lock <token> NX PX <lock_timeout>   and, after it,   GET <key>
 *
 * (for all the fills of a loop turn, one script call: store.h), then:
 *  - lock taken, entry fresh: another instance's fill landed just before;
 *    release the lock and answer from the entry.
 *  - lock taken: fetch, index the value under its tags, then store only if
 *    we still hold the lock (one script: compare token, SET entry, DEL
 *    lock) and PUBLISH "F" so waiting instances re-read at once. An
 *    invalidation deletes the lock, so a fill it overtook cannot store
 *    (SPEC §3). The fill's waiters are answered once Redis has confirmed
 *    the store: a value a client has seen is in Redis and in its tag sets,
 *    so any invalidation sent afterwards finds it (docs/STAMPEDE.md).
 *  - lock held elsewhere: wait for the "F" broadcast (or the subscription's
 *    resync), then re-read. Nothing usable there (the other fetch failed or
 *    was invalidated): try the lock again. After lock_timeout of waiting in
 *    total, take the fill over and fetch without the lock (counted).
 *  - Redis unreachable: fetch without a lock (fail open, SPEC §6).
 * A background fill (stale-while-revalidate, early refresh) that finds the
 * lock held just ends: someone else is already refreshing. A REFRESH is
 * answered only by a fetch that started after it arrived. */
#include "fill.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bcast.h"
#include "bus.h"
#include "cache_int.h"
#include "config.h"
#include "dict.h"
#include "fetch_log.h"
#include "glob.h"
#include "keys.h"
#include "l1_link.h"
#include "log.h"
#include "slowlog.h"
#include "store.h"
#include "tags.h"
#include "util.h"

/* How often a remote wait re-reads the entry while the subscription that
 * would tell it is down. */
#define UNSUBSCRIBED_POLL_MS 100

typedef enum fill_state {
    FILL_LOCKING,  /* SET NX + GET queued or sent */
    FILL_WAITING,  /* lock held elsewhere; waiting for its broadcast */
    FILL_CHECKING, /* re-reading the entry after a broadcast */
    FILL_FETCHING, /* the policy's fetch runs here */
    FILL_STORING,  /* fetched; tag index and entry sent, waiters wait for Redis */
    FILL_DONE,
} fill_state_t;

typedef enum lock_result { LOCK_NONE, LOCK_TAKEN, LOCK_HELD, LOCK_FAILED } lock_result_t;

typedef struct fill {
    fill_state_t state;
    int refs; /* the table, each backend reply awaited, the fetch, the timer */
    buf_t rkey, lkey;
    ns_t *ns;
    char *id;
    size_t idlen;
    op_t *waiters;
    op_t *refreshers; /* REFRESHes that came while fetching: they need a new fetch */
    bool background;  /* nobody waits: stale-while-revalidate / early refresh */
    bool force;       /* REFRESH, WARM: fetch even if the entry is fresh */
    bool strict;      /* REFRESH: only a fetch of this fill answers it */
    bool invalidated; /* an invalidation landed while in flight: do not store */
    bool own_lock;
    /* Never read the entry: Redis was down or its reply was lost when we
     * looked. A value may be there (a user's SET), so a store must not
     * replace one (SET NX), whatever Redis says by the time the fetch is
     * done. */
    bool blind;
    bool landed;        /* an "F" came while the lock request was in flight */
    long long gen;      /* the namespace generation when the fetch started */
    uint64_t fetch_seq; /* tag_clock() when the fetch started */
    uint64_t epoch;     /* cache_inval_epoch when the last entry read was sent */
    lock_result_t lock;
    char token[48];
    int64_t created_ms;
    int64_t basis_stored_at; /* background: stored_at of the entry it refreshes */
    uint64_t wait_started;   /* mono ms, 0 before the first wait */
    uv_timer_t *timer;
    struct {
        bool present;
        int64_t error_until;
        char *value;
        size_t len;
    } stale;
    struct {              /* FILL_STORING: what is being stored */
        buf_t encoded;    /* the entry as sent to Redis */
        entry_t e;        /* decoded view; e.value points into encoded */
        long long px;     /* its Redis lifetime */
        buf_t tags;       /* its tags, back to back ... */
        size_t *tag_lens; /* ... this long */
        size_t ntags;
        size_t tags_pending; /* TAG_ADD replies still to come */
        bool tags_failed;
    } st;
} fill_t;

static dict_t fills; /* rkey -> fill in flight in this process */
static uint64_t token_seq;
static bool shutting_down;
static buf_t landed_msg; /* a store's "F" is formatted here; store.c copies it */

static void fill_lock(fill_t *f);
static void fill_fetch(fill_t *f);
static void refresh_again(fill_t *done);

/* ---------------------------------------------------------------------------
 * Lifetime
 * ------------------------------------------------------------------------- */

static void fill_free(fill_t *f)
{
    buf_free(&f->rkey);
    buf_free(&f->lkey);
    free(f->id);
    free(f->stale.value);
    buf_free(&f->st.encoded);
    buf_free(&f->st.tags);
    free(f->st.tag_lens);
    free(f);
}

static void fill_unref(fill_t *f)
{
    if (--f->refs == 0) fill_free(f);
}

static void on_timer_closed(uv_handle_t *h)
{
    fill_t *f = h->data;
    free(h);
    fill_unref(f);
}

static void stop_timer(fill_t *f)
{
    if (!f->timer) return;
    uv_close((uv_handle_t *)f->timer, on_timer_closed);
    f->timer = NULL;
}

/* Leave the table: requests from now on start a new fill. */
static void fill_finish(fill_t *f)
{
    if (f->state == FILL_DONE) return;
    f->state = FILL_DONE;
    if (dict_get(&fills, f->rkey.data, f->rkey.len) == f)
        dict_del(&fills, f->rkey.data, f->rkey.len);
    stop_timer(f);
    fill_unref(f); /* the table's reference */
}

/* "<instance id>-<sequence>", the fill's lock token, unique among
 * instances. By hand: snprintf was about 800 instructions a miss. */
static void make_token(char *out, size_t size)
{
    char digits[24];
    char *end = digits + sizeof(digits),
         *q = format_ll_back(end, (long long)(++token_seq & (uint64_t)LLONG_MAX));
    size_t il = strlen(cache_instance_id), dl = (size_t)(end - q);
    if (il + 1 + dl + 1 > size) { /* never: the id is 16 hex digits */
        snprintf(out, size, "%s-%.*s", cache_instance_id, (int)dl, q);
        return;
    }
    memcpy(out, cache_instance_id, il);
    out[il] = '-';
    memcpy(out + il + 1, q, dl);
    out[il + 1 + dl] = '\0';
}

static fill_t *fill_new(ns_t *ns, const buf_t *rkey, const char *id, size_t idlen,
                        const entry_t *stale)
{
    fill_t *f = xcalloc(1, sizeof(*f));
    f->refs = 1;
    buf_append(&f->rkey, rkey->data, rkey->len);
    keys_lock(&f->lkey, rkey->data, rkey->len);
    f->ns = ns;
    f->id = xmemdup(id, idlen);
    f->idlen = idlen;
    f->created_ms = now_ms();
    make_token(f->token, sizeof(f->token));
    if (stale && stale->kind == ENTRY_VALUE) {
        f->stale.present = true;
        f->stale.error_until = stale->error_until;
        f->stale.value = xmemdup(stale->value, stale->len);
        f->stale.len = stale->len;
    }
    dict_set(&fills, f->rkey.data, f->rkey.len, f);
    return f;
}

/* ---------------------------------------------------------------------------
 * Answering waiters
 * ------------------------------------------------------------------------- */

/* Every waiter gets the outcome; each may free itself, so the next is read
 * first. Encoding a reply is the waiter's business (cache.c). */
static void tell_waiters(fill_t *f, const outcome_t *o)
{
    op_t *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        op_t *next = w->next_waiter;
        w->on_outcome(w, o);
        w = next;
    }
}

static void answer_waiters(fill_t *f, const entry_t *e)
{
    outcome_t o = outcome_of_entry(e);
    tell_waiters(f, &o);
}

/* An entry read from Redis answers the fill. It goes to the in-process
 * tier only if no invalidation came while the read was under way: the
 * read may predate it. */
static void answer_from_entry(fill_t *f, const entry_t *e)
{
    if (f->epoch == cache_inval_epoch) cache_l1_store(f->ns, &f->rkey, e);
    answer_waiters(f, e);
}

/* A fetch result that is not stored answers as it is; a failed one with
 * the stale copy when serve_stale (counted once per waiter served). */
static void answer_from_fetch(fill_t *f, const fetch_result_t *r, bool serve_stale)
{
    outcome_t o = {.kind = OUTCOME_ERROR};
    if (r->kind == FETCH_OK) {
        o = (outcome_t){.kind = OUTCOME_VALUE, .data = r->value, .len = r->len};
    } else if (r->kind == FETCH_NOT_FOUND) {
        o.kind = OUTCOME_NOT_FOUND;
    } else if (serve_stale) {
        o = (outcome_t){.kind = OUTCOME_STALE, .data = f->stale.value, .len = f->stale.len};
        for (const op_t *w = f->waiters; w; w = w->next_waiter)
            f->ns->stats.stale_error++;
    } else {
        o.data = r->error ? r->error : "unknown error";
        o.len = strlen(o.data);
    }
    tell_waiters(f, &o);
}

/* ---------------------------------------------------------------------------
 * Storing and broadcasting
 *
 * A result to store goes out in this order, on the one command link:
 *   1. one TAG_ADD per tag (the entry key into each tag set), and their
 *      replies are awaited;
 *   2. if no invalidation has overtaken the fetch meanwhile, the entry
 *      (STORE_IF_LOCKED, or a plain SET without a lock), then "F";
 *   3. once Redis has answered the store, the in-process tier and the
 *      waiters.
 * So when a client sees the value, the entry and its tag index are already
 * in Redis: a PURGETAG (or DEL, PURGE) sent afterwards, through any
 * instance, finds and removes it. A PURGETAG that walks the tag set before
 * step 1 landed was sent while the fetch was in flight; its "T" broadcast
 * stops step 2 (tag_purged_since). One that finds the key after step 1
 * deletes the lock before the entry, so the store either lands before its
 * UNLINK or is refused.
 * ------------------------------------------------------------------------- */

static void release_lock(fill_t *f)
{
    if (!f->own_lock) return;
    f->own_lock = false;
    store_release(f->lkey.data, f->lkey.len, f->token);
}

/* An invalidation since the fetch started: a key invalidation or pattern
 * (f->invalidated), a flush (newer generation), a purge of one of its tags. */
static bool overtaken(const fill_t *f)
{
    if (f->invalidated || f->gen < f->ns->gen) return true;
    const char *tag = f->st.tags.data;
    for (size_t i = 0; i < f->st.ntags; tag += f->st.tag_lens[i], i++)
        if (tag_purged_since(tag, f->st.tag_lens[i], f->fetch_seq)) return true;
    return false;
}

/* The store is over (stored, refused, failed or skipped): answer. */
static void store_done(fill_t *f, bool to_l1)
{
    if (to_l1 && !overtaken(f)) cache_l1_store(f->ns, &f->rkey, &f->st.e);
    answer_waiters(f, &f->st.e);
    fill_finish(f);
    refresh_again(f);
    fill_unref(f); /* the fetch's reference */
}

/* Nothing goes to Redis after all: free the lock, wake other instances'
 * waiters (they try themselves), answer. to_l1: Redis is unreachable,
 * keep the value here (fail open). */
static void store_skip(fill_t *f, bool to_l1)
{
    release_lock(f);
    bcast_landed(&f->rkey);
    store_done(f, to_l1);
}

static void on_stored(void *priv, const store_result_t *r)
{
    fill_t *f = priv;
    ns_t *ns = f->ns;
    bool to_l1 = true; /* no answer: Redis is gone, fail open */
    if (r->status == STORE_ERROR) {
        ns->stats.store_errors++;
        /* A cluster without a master for a while (CLUSTERDOWN, TRYAGAIN)
         * fails every store: a few lines a second tell the story. */
        static log_limit_t limit;
        uint64_t report = 0;
        if (log_limit_allow(&limit, uv_now(cache_loop), 5, 1000, &report)) {
            if (report)
                log_warn("(%llu similar store failures not logged)", (unsigned long long)report);
            log_warn("[%s] storing in redis failed: %.*s", ns->name, (int)r->len, r->str);
        }
        to_l1 = false;
    } else if (r->status == STORE_DOWN) {
        ns->stats.store_errors++;
        /* a blind store's SET NX may have been refused: a value the user
         * SET may be there, which the tier must not hide */
        if (f->blind) to_l1 = false;
    } else if (r->status == STORE_OK && !r->str && r->integer == 0) {
        /* Our lock was gone: an invalidation (or a lease that ran out)
         * overtook this fill, so its result must not be stored. */
        ns->stats.invalidations_race++;
        to_l1 = false;
    } else if (r->status == STORE_NIL) {
        /* A blind store's SET NX found a value there (a user's SET, say):
         * it stays, and is what the next read gets; not this one. */
        to_l1 = false;
    }
    if (f->state == FILL_STORING) store_done(f, to_l1);
    fill_unref(f);
}

/* Step 2: the entry itself. */
static void store_entry(fill_t *f)
{
    if (overtaken(f)) {
        f->ns->stats.invalidations_race++;
        store_skip(f, false);
        return;
    }
    if (f->st.tags_failed) { /* unindexed, a PURGETAG could not find it */
        f->ns->stats.store_errors++;
        store_skip(f, !key_backend_up(&f->rkey));
        return;
    }
    const buf_t *val = &f->st.encoded;
    int rc;
    f->refs++;
    if (f->own_lock) {
        /* The "F" goes with the store (batched per loop turn), after the
         * entry: a waiter that re-reads finds it. */
        buf_reset(&landed_msg);
        bcast_landed_msg(&landed_msg, &f->rkey);
        f->own_lock = false; /* the script drops it */
        rc = store_put_if_locked(f->rkey.data, f->rkey.len, f->lkey.data, f->lkey.len, f->token,
                                 val->data, val->len, f->st.px, bcast_channel()->data,
                                 bcast_channel()->len, landed_msg.data, landed_msg.len, on_stored,
                                 f);
        if (rc == 0) {
            f->ns->stats.stores++;
            return;
        }
    } else {
        bool nx = f->blind && !f->strict; /* only REFRESH asks to replace */
        rc = store_put(f->rkey.data, f->rkey.len, val->data, val->len, f->st.px, nx, on_stored, f);
    }
    if (rc != 0) { /* Redis down: fail open */
        f->refs--;
        store_skip(f, true);
        return;
    }
    f->ns->stats.stores++;
    /* After the entry on the same link: a waiter that re-reads finds it. */
    bcast_landed(&f->rkey);
}

static void on_tag_added(void *priv, const store_result_t *r)
{
    fill_t *f = priv;
    if (r->status == STORE_DOWN || r->status == STORE_ERROR) {
        if (r->status == STORE_ERROR)
            log_warn("[%s] indexing a tag failed: %.*s", f->ns->name, (int)r->len, r->str);
        f->st.tags_failed = true;
    }
    if (--f->st.tags_pending == 0 && f->state == FILL_STORING) store_entry(f);
    fill_unref(f);
}

/* Step 1: index the value under each of its tags. The set lives at least
 * as long as the entry (TAG_ADD). */
static void index_tags(fill_t *f)
{
    buf_t tkey = {0};
    const char *tag = f->st.tags.data;
    f->st.tags_pending = 1; /* held until every TAG_ADD is queued */
    for (size_t i = 0; i < f->st.ntags; tag += f->st.tag_lens[i], i++) {
        buf_reset(&tkey);
        keys_tag(&tkey, tag, f->st.tag_lens[i]);
        f->refs++;
        f->st.tags_pending++;
        if (store_tag_add(tkey.data, tkey.len, f->rkey.data, f->rkey.len, f->st.px, on_tag_added,
                          f) != 0) {
            f->refs--;
            f->st.tags_pending--;
            f->st.tags_failed = true;
        }
    }
    buf_free(&tkey);
    if (--f->st.tags_pending == 0) store_entry(f);
}

/* Store e (r: the fetch it came from, for its tags; NULL for none) and
 * answer the waiters with it once that is done. Takes over the fetch's
 * reference. */
static void store(fill_t *f, const entry_t *e, const fetch_result_t *r)
{
    f->state = FILL_STORING;
    entry_encode(&f->st.encoded, e);
    f->st.e = *e;
    f->st.e.value = f->st.encoded.data + f->st.encoded.len - e->len;
    f->st.px = (long long)entry_redis_ttl_ms(e, now_ms());
    if (r && r->ntags && e->kind == ENTRY_VALUE) {
        f->st.tag_lens = xmalloc(r->ntags * sizeof(*f->st.tag_lens));
        for (size_t i = 0; i < r->ntags; i++) {
            buf_append(&f->st.tags, r->tags[i], r->tag_lens[i]);
            f->st.tag_lens[i] = r->tag_lens[i];
        }
        f->st.ntags = r->ntags;
    }
    /* Invalidated in flight, or the namespace was flushed since the fetch
     * started (such an entry would be ignored anyway: its gen is old). */
    if (overtaken(f)) {
        f->ns->stats.invalidations_race++;
        store_skip(f, false);
    } else if (f->st.ntags) {
        index_tags(f);
    } else {
        store_entry(f);
    }
}

static void entry_from_fetch(const policy_conf_t *pc, long long gen, const fetch_result_t *r,
                             entry_t *e)
{
    int64_t now = now_ms();
    memset(e, 0, sizeof(*e));
    e->version = pc->version;
    e->gen = gen;
    e->fetch_ms = entry_secs_to_ms(r->duration);
    e->stored_at = now;
    if (r->kind == FETCH_OK) {
        e->kind = ENTRY_VALUE;
        e->value = r->value;
        e->len = r->len;
        e->fresh_until = now + ttl_jittered_ms(r->ttl, pc->ttl_jitter, cache_rand());
        e->stale_until = e->fresh_until + entry_secs_to_ms(pc->stale_ttl);
        e->error_until = e->fresh_until + entry_secs_to_ms(pc->stale_if_error);
    } else if (r->kind == FETCH_NOT_FOUND) {
        e->kind = ENTRY_NEGATIVE;
        e->fresh_until = now + ttl_jittered_ms(r->ttl, pc->ttl_jitter, cache_rand());
        e->stale_until = e->error_until = e->fresh_until;
    } else {
        e->kind = ENTRY_ERROR;
        e->value = r->error ? r->error : "unknown error";
        e->len = strlen(e->value);
        e->fresh_until = now + entry_secs_to_ms(pc->error_ttl);
        e->stale_until = e->error_until = e->fresh_until;
    }
}

static void count_fetch(ns_stats_t *s, const fetch_result_t *r)
{
    switch (r->kind) {
    case FETCH_OK:
        s->fetch_ok++;
        break;
    case FETCH_NOT_FOUND:
        s->fetch_not_found++;
        break;
    case FETCH_ERROR:
        s->fetch_error++;
        break;
    case FETCH_TIMEOUT:
        s->fetch_timeout++;
        break;
    }
    ns_stats_observe_fetch(s, r->duration);
}

/* ---------------------------------------------------------------------------
 * Fetching
 * ------------------------------------------------------------------------- */

static void on_fetched(void *priv, const fetch_result_t *r)
{
    fill_t *f = priv;
    ns_t *ns = f->ns;
    count_fetch(&ns->stats, r);
    uint64_t fetch_ns = r->duration > 0 ? (uint64_t)(r->duration * 1e9) : 0;
    if (slowlog_is_slow_ns(fetch_ns))
        slowlog_push_fetch(ns->name, f->id, f->idlen, fetch_ns / 1000);
    fetch_result_t res = *r;
    if (res.kind == FETCH_OK && res.len > cfg.max_value) {
        res.kind = FETCH_ERROR;
        res.error = "value exceeds --max-value";
    }
    fetch_log_result(ns->name, f->id, f->idlen, &res);
    bool serve_stale = false;
    /* Stored by the version the fetch ran on: after a reload that bumped
     * `version`, its result is not mistaken for the new version's. */
    const policy_t *ran_on = r->policy ? r->policy : ns->cur;
    if (ran_on) {
        const policy_conf_t *pc = &ran_on->conf;
        entry_t e;
        entry_from_fetch(pc, f->gen, &res, &e);
        if (res.kind == FETCH_OK || (res.kind == FETCH_NOT_FOUND && res.ttl > 0)) {
            store(f, &e, &res); /* answers when done */
            return;
        }
        serve_stale = (res.kind == FETCH_ERROR || res.kind == FETCH_TIMEOUT) && f->stale.present &&
                      now_ms() < f->stale.error_until;
        if (res.kind != FETCH_NOT_FOUND && !serve_stale && pc->error_ttl > 0) {
            store(f, &e, NULL);
            return;
        }
    }
    release_lock(f);
    /* Tell waiting instances to look, whatever happened: if nothing was
     * stored they take the lock and try themselves. */
    bcast_landed(&f->rkey);
    answer_from_fetch(f, &res, serve_stale);
    fill_finish(f);
    refresh_again(f);
    fill_unref(f); /* the fetch's reference */
}

static void fill_fetch(fill_t *f)
{
    stop_timer(f);
    f->state = FILL_FETCHING;
    f->gen = f->ns->gen;
    f->fetch_seq = tag_clock();
    if (shutting_down || !f->ns->cur) {
        fetch_result_t r = {.kind = FETCH_ERROR, .error = "shutting down"};
        f->refs++;
        on_fetched(f, &r);
        return;
    }
    f->refs++;
    /* May call on_fetched before returning. */
    fetch_start(f->ns->cur, f->id, f->idlen, on_fetched, f);
}

/* ---------------------------------------------------------------------------
 * Waiting on another instance's fill
 * ------------------------------------------------------------------------- */

static uint64_t lock_timeout_ms(const fill_t *f)
{
    double s = f->ns->cur ? f->ns->cur->conf.lock_timeout : 10;
    return (uint64_t)llround(s * 1000.0);
}

static void recheck(fill_t *f);

static void on_wait_timer(uv_timer_t *t)
{
    fill_t *f = t->data;
    uint64_t waited = mono_ms() - f->wait_started;
    if (waited >= lock_timeout_ms(f)) {
        /* The winner died or hangs: stop waiting and fetch here. */
        f->ns->stats.lock_takeovers++;
        log_debug("[%s] lock wait over after %llu ms: taking the fill over", f->ns->name,
                  (unsigned long long)waited);
        if (f->state == FILL_LOCKING && f->own_lock) release_lock(f);
        fill_fetch(f);
        return;
    }
    if (f->state == FILL_WAITING) recheck(f);
}

static void arm_timer(fill_t *f)
{
    if (!f->timer) {
        f->timer = xmalloc(sizeof(*f->timer));
        uv_timer_init(cache_loop, f->timer);
        f->timer->data = f;
        f->refs++;
    }
    uint64_t limit = lock_timeout_ms(f);
    uint64_t waited = mono_ms() - f->wait_started;
    uint64_t left = waited >= limit ? 0 : limit - waited;
    /* Without a subscription no broadcast will come: poll instead. */
    if (!backend_subscribed() && left > UNSUBSCRIBED_POLL_MS) left = UNSUBSCRIBED_POLL_MS;
    uv_timer_start(f->timer, on_wait_timer, left, 0);
}

static void wait_remote(fill_t *f)
{
    f->state = FILL_WAITING;
    if (!f->wait_started) {
        f->wait_started = mono_ms();
        f->ns->stats.lock_waits++;
    }
    arm_timer(f);
}

/* An entry another instance stored answers this fill if it is fresh and:
 * for a background refresh, newer than the entry it set out to refresh (a
 * refresh that landed just before ours took the lock must not be fetched
 * again); for WARM, stored since the warm began (the millisecond it began
 * included: a warm wants the key present, not a fetch of its own). Never
 * for REFRESH: its answer must come from a fetch that started after it
 * arrived, which no entry read here can prove. */
static bool answers_fill(const fill_t *f, const entry_t *e)
{
    if (entry_state(e, now_ms()) != STATE_FRESH) return false;
    if (f->background) return e->stored_at > f->basis_stored_at;
    if (f->strict) return false;
    return !f->force || e->stored_at >= f->created_ms;
}

static void on_recheck(void *priv, const store_result_t *r)
{
    fill_t *f = priv;
    if (f->state == FILL_CHECKING) {
        entry_t e;
        if (r->status == STORE_OK && entry_usable(f->ns, &f->rkey, r->str, r->len, &e) &&
            answers_fill(f, &e)) {
            answer_from_entry(f, &e);
            fill_finish(f);
        } else {
            fill_lock(f); /* the other fill stored nothing: try ourselves */
        }
    }
    fill_unref(f);
}

static void recheck(fill_t *f)
{
    f->state = FILL_CHECKING;
    f->epoch = cache_inval_epoch;
    f->refs++;
    if (store_get(f->rkey.data, f->rkey.len, on_recheck, f) != 0) {
        f->refs--;
        f->blind = true;
        fill_fetch(f); /* Redis gone: fail open */
    }
}

/* ---------------------------------------------------------------------------
 * Taking the lock
 * ------------------------------------------------------------------------- */

/* The lock and the entry read after it, in one reply (store_lock_read). */
static void on_locked(void *priv, const store_result_t *lr, const store_result_t *r)
{
    fill_t *f = priv;
    if (lr->status == STORE_DOWN || lr->status == STORE_ERROR)
        f->lock = LOCK_FAILED;
    else if (lr->status == STORE_OK)
        f->lock = LOCK_TAKEN;
    else
        f->lock = LOCK_HELD; /* nil: NX refused */
    if (f->lock == LOCK_TAKEN) f->own_lock = true;
    if (f->state != FILL_LOCKING) { /* taken over meanwhile */
        release_lock(f);
        fill_unref(f);
        return;
    }
    /* this read is what we know */
    f->blind = r->status == STORE_DOWN || r->status == STORE_ERROR;
    entry_t e;
    bool fresh = r->status == STORE_OK && entry_usable(f->ns, &f->rkey, r->str, r->len, &e) &&
                 answers_fill(f, &e);
    if (fresh) {
        /* Another fill landed between our lookup and our lock. */
        release_lock(f);
        answer_from_entry(f, &e);
        fill_finish(f);
    } else if (f->lock == LOCK_TAKEN || f->lock == LOCK_FAILED) {
        fill_fetch(f);
    } else if (f->background && !f->waiters) {
        fill_finish(f); /* someone else is refreshing it */
    } else {
        wait_remote(f);
        /* The holder's "F" can overtake these replies (another connection):
         * then no broadcast is coming, look again now. */
        if (f->landed) recheck(f);
    }
    fill_unref(f);
}

static void fill_lock(fill_t *f)
{
    f->state = FILL_LOCKING;
    f->lock = LOCK_NONE;
    f->landed = false; /* what landed before is in the replies to come */
    long long lease = (long long)lock_timeout_ms(f);
    f->refs++;
    f->epoch = cache_inval_epoch;
    if (store_lock_read(f->lkey.data, f->lkey.len, f->token, lease, f->rkey.data, f->rkey.len,
                        on_locked, f) != 0) {
        f->refs--;
        f->blind = true;
        fill_fetch(f); /* Redis down: fail open, coalesced in this process only */
        return;
    }
    if (f->wait_started) arm_timer(f); /* keep the total wait bounded */
}

/* ---------------------------------------------------------------------------
 * Entry points
 * ------------------------------------------------------------------------- */

static void join(fill_t *f, op_t *op)
{
    op->next_waiter = f->waiters;
    f->waiters = op;
}

bool fill_join_if_running(op_t *op)
{
    fill_t *f = dict_get(&fills, op->rkey.data, op->rkey.len);
    if (!f || f->background) return false;
    op->ns->stats.coalesced++;
    join(f, op);
    return true;
}

static bool fetch_under_way(const fill_t *f)
{
    return f->state == FILL_FETCHING || f->state == FILL_STORING;
}

/* From now on only a fetch of f answers it (a REFRESH joined). */
static void make_strict(fill_t *f)
{
    f->background = false; /* someone waits on it now */
    f->force = f->strict = true;
}

void fill_wait(op_t *op, const entry_t *stale)
{
    bool strict = op->kind == CACHE_REFRESH && !op->warm;
    fill_t *f = dict_get(&fills, op->rkey.data, op->rkey.len);
    if (f) {
        if (strict && fetch_under_way(f)) {
            /* That fetch started before this REFRESH: wait for the next
             * one, which the REFRESHes queued here share. */
            op->next_waiter = f->refreshers;
            f->refreshers = op;
            return;
        }
        op->ns->stats.coalesced++;
        f->background = false;      /* someone waits on it now */
        if (strict) make_strict(f); /* it has not fetched yet */
        join(f, op);
        return;
    }
    f = fill_new(op->ns, &op->rkey, op->id, op->idlen, stale);
    f->force = op->kind == CACHE_REFRESH;
    f->strict = strict;
    join(f, op);
    fill_lock(f);
}

/* done's fetch has answered: the REFRESHes that came while it ran get a
 * fetch of their own. A fill now in the table was created after done left
 * it, so after these REFRESHes arrived: it may answer them even if it is
 * fetching already. Else a new fill. */
static void refresh_again(fill_t *done)
{
    op_t *w = done->refreshers;
    done->refreshers = NULL;
    if (!w) return;
    if (shutting_down) {
        fetch_result_t r = {.kind = FETCH_ERROR, .error = "shutting down"};
        done->waiters = w;
        answer_from_fetch(done, &r, false);
        return;
    }
    fill_t *f = dict_get(&fills, done->rkey.data, done->rkey.len);
    bool start = !f;
    if (!f) f = fill_new(done->ns, &done->rkey, done->id, done->idlen, NULL);
    if (!fetch_under_way(f)) make_strict(f);
    f->background = false;
    while (w) {
        op_t *next = w->next_waiter;
        if (!start || f->waiters) f->ns->stats.coalesced++; /* the first starts it */
        join(f, w);
        w = next;
    }
    if (start) fill_lock(f);
}

void fill_background(ns_t *ns, const buf_t *rkey, const char *id, size_t idlen,
                     const entry_t *stale)
{
    if (dict_get(&fills, rkey->data, rkey->len)) return;
    /* Refreshing an entry that is still fresh: an early refresh (XFetch).
     * Counted here, so draws while one is already under way do not count. */
    if (entry_state(stale, now_ms()) == STATE_FRESH) ns->stats.early_refreshes++;
    fill_t *f = fill_new(ns, rkey, id, idlen, stale);
    f->background = true;
    f->force = true; /* the entry is known stale or due: a fresh one must be newer */
    f->basis_stored_at = stale->stored_at;
    fill_lock(f);
}

/* Only a fetch under way is overtaken: a fill still locking or waiting
 * reads Redis, or fetches, after the invalidation. Its result answers the
 * requests already waiting on it and is not stored; requests from now on
 * start a new fill (fill_finish then leaves the table alone). */
static void overtake(fill_t *f)
{
    f->invalidated = true;
    dict_del(&fills, f->rkey.data, f->rkey.len);
}

/* A fill still locking or waiting is not overtaken, but the stale copy it
 * keeps for stale_if_error is of the entry just invalidated: if its fetch
 * fails later, that copy must not answer. */
static void forget_stale(fill_t *f)
{
    if (!f->stale.present) return;
    f->stale.present = false;
    free(f->stale.value);
    f->stale.value = NULL;
    f->stale.len = 0;
}

static void fill_invalidate(const char *rkey, size_t len)
{
    fill_t *f = dict_get(&fills, rkey, len);
    if (!f) return;
    if (fetch_under_way(f))
        overtake(f);
    else
        forget_stale(f);
}

typedef bool (*fill_pred)(const fill_t *f, const void *arg, size_t len);

/* overtake() every fetching fill for which pred holds: O(fills). */
static void overtake_where(fill_pred pred, const void *arg, size_t len)
{
    if (fills.count == 0) return;
    size_t n = 0, i;
    fill_t **list = xmalloc(fills.count * sizeof(*list));
    for (dict_entry_t *e = dict_first(&fills, &i); e; e = dict_next(&fills, &i, e)) {
        fill_t *f = e->value;
        if (!pred(f, arg, len)) continue;
        if (fetch_under_way(f))
            list[n++] = f;
        else
            forget_stale(f);
    }
    for (size_t j = 0; j < n; j++)
        overtake(list[j]);
    free(list);
}

static bool rkey_matches(const fill_t *f, const void *glob, size_t len)
{
    return glob_match(glob, len, f->rkey.data, f->rkey.len);
}

static bool of_ns(const fill_t *f, const void *ns, size_t len)
{
    LC_UNUSED(len);
    return f->ns == ns;
}

static void fills_invalidate_matching(const char *glob, size_t len)
{
    overtake_where(rkey_matches, glob, len);
}

static void fills_invalidate_ns(const ns_t *ns)
{
    overtake_where(of_ns, ns, 0);
}

uint64_t fills_oldest_fetch(void)
{
    uint64_t oldest = tag_clock();
    size_t i;
    for (dict_entry_t *e = dict_first(&fills, &i); e; e = dict_next(&fills, &i, e)) {
        fill_t *f = e->value;
        if (fetch_under_way(f) && f->fetch_seq < oldest) oldest = f->fetch_seq;
    }
    return oldest;
}

static void fill_remote_landed(const char *rkey, size_t len)
{
    fill_t *f = dict_get(&fills, rkey, len);
    if (!f) return;
    if (f->state == FILL_WAITING)
        recheck(f);
    else if (f->state == FILL_LOCKING)
        f->landed = true; /* see on_locked */
}

static void fills_resync(void)
{
    /* Collect first: recheck may finish fills and change the table. */
    size_t n = 0, i;
    fill_t **list = xmalloc((fills.count + 1) * sizeof(*list));
    for (dict_entry_t *e = dict_first(&fills, &i); e; e = dict_next(&fills, &i, e)) {
        fill_t *f = e->value;
        if (f->state == FILL_LOCKING) f->landed = true; /* a broadcast may be lost */
        if (f->state == FILL_WAITING) {
            f->refs++;
            list[n++] = f;
        }
    }
    for (size_t j = 0; j < n; j++) {
        if (list[j]->state == FILL_WAITING) recheck(list[j]);
        fill_unref(list[j]);
    }
    free(list);
}

/* ---------------------------------------------------------------------------
 * Listening
 * ------------------------------------------------------------------------- */

static void on_message(bus_type_t type, const bus_msg_t *msg, void *priv)
{
    LC_UNUSED(priv);
    switch (type) {
    case BUS_KEY_INVALIDATED:
        fill_invalidate(msg->key, msg->len);
        break;
    case BUS_KEYS_INVALIDATED:
        fills_invalidate_matching(msg->key, msg->len);
        break;
    case BUS_NS_FLUSHED:
        fills_invalidate_ns(msg->ns);
        break;
    case BUS_FILL_LANDED:
        fill_remote_landed(msg->key, msg->len);
        break;
    case BUS_SUBSCRIBED:
        fills_resync();
        break;
    default:
        break;
    }
}

int fill_listen(void)
{
    static const bus_type_t types[] = {BUS_KEY_INVALIDATED, BUS_KEYS_INVALIDATED, BUS_NS_FLUSHED,
                                       BUS_FILL_LANDED, BUS_SUBSCRIBED};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (bus_on(types[i], on_message, NULL) != 0) return -1;
    return 0;
}

void fills_init(void)
{
    dict_init(&fills);
}

size_t fills_in_flight(void)
{
    return fills.count;
}

void fills_shutdown(void)
{
    shutting_down = true;
    /* Fills running a fetch end through fetch_abort_all(), and fills
     * storing when Redis answers the store (or the backend closes); the
     * others (waiting on a lock or a Redis reply) are answered here. Their
     * pending Redis replies find them done and only drop their reference. */
    size_t i, n = 0;
    fill_t **list = xmalloc((fills.count + 1) * sizeof(*list));
    for (dict_entry_t *e = dict_first(&fills, &i); e; e = dict_next(&fills, &i, e)) {
        fill_t *f = e->value;
        if (!fetch_under_way(f)) list[n++] = f;
    }
    for (size_t j = 0; j < n; j++) {
        fetch_result_t r = {.kind = FETCH_ERROR, .error = "shutting down"};
        release_lock(list[j]);
        answer_from_fetch(list[j], &r, false);
        fill_finish(list[j]);
    }
    free(list);
}

void fills_close(void)
{
    dict_free(&fills);
    buf_free(&landed_msg);
}
