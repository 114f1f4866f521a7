/* write_behind.c: see write_behind.h. */
#include "write_behind.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dict.h"
#include "keys.h"
#include "del_job.h"
#include "log.h"
#include "policy.h"
#include "reply.h"
#include "store_stream.h"
#include "util.h"

#define TICK_MS        50    /* flush timer resolution */
#define MAX_BACKOFF_MS 60000 /* cap of a failed batch's retry delay */
#define STATUS_LIST    100   /* dead letters WRITES lists */
#define RETRY_MAX      10000 /* dead letters one WRITES RETRY moves */

/* One queued write of the batch in hand (copies: the reply buffer goes). */
typedef struct wb_entry {
    char *sid, *id, *value; /* id NULL: the entry was gone; value NULL: a del */
    size_t sidlen, idlen, vlen;
} wb_entry_t;

/* Per namespace, created on first use and kept until close. */
typedef struct wb {
    ns_t *ns;
    buf_t q, dead;     /* key names */
    bool group_ok;     /* XGROUP CREATE answered on this instance */
    bool busy;         /* a Redis call or write_batch of the flush is out */
    bool bury_due;     /* the batch in hand goes to the dead letters (that failed once) */
    bool claimed;      /* the batch in hand was taken over from another instance */
    bool lost;         /* ... or another instance took it over from us */
    uint64_t batch_no; /* of the batch in hand: a late touch reply is about an older one */
    bool drained;      /* drain: a read found the queue empty */
    long appended;     /* writes this instance queued since its last flush began */
    uint64_t next_flush, retry_at, touched_at, next_prune;
    /* the batch in hand: entries and the items write_batch gets */
    wb_entry_t *e;
    size_t n;
    policy_write_item_t *items;
    size_t nitems;
    long attempts;
    char *last_err;
    /* gauges of the last status sample */
    bool sampled;
    long long depth, dead_n, oldest_ms;
} wb_t;

static struct {
    uv_loop_t *loop;
    uv_timer_t timer;
    bool timer_open, draining, stopped;
    dict_t by_ns; /* ns name -> wb_t */
    char consumer[320];
} W;

/* ---- state --------------------------------------------------------------- */

static wb_t *wb_get(ns_t *ns)
{
    wb_t *w = dict_get(&W.by_ns, ns->name, strlen(ns->name));
    if (w) return w;
    w = xcalloc(1, sizeof(*w));
    w->ns = ns;
    keys_wb_queue(&w->q, ns->name);
    keys_wb_dead(&w->dead, ns->name);
    dict_set(&W.by_ns, ns->name, strlen(ns->name), w);
    return w;
}

static const policy_conf_t *wb_conf(const ns_t *ns)
{
    return ns->cur && ns->cur->conf.has_write_behind ? &ns->cur->conf : NULL;
}

static void batch_free(wb_t *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->e[i].sid);
        free(w->e[i].id);
        free(w->e[i].value);
    }
    free(w->e);
    free(w->items);
    free(w->last_err);
    w->e = NULL;
    w->items = NULL;
    w->last_err = NULL;
    w->n = w->nitems = 0;
    w->attempts = 0;
    w->bury_due = w->claimed = w->lost = false;
}

static void sids_of(const wb_t *w, const char ***sids, size_t **lens)
{
    *sids = xcalloc(w->n ? w->n : 1, sizeof(**sids));
    *lens = xcalloc(w->n ? w->n : 1, sizeof(**lens));
    for (size_t i = 0; i < w->n; i++) {
        (*sids)[i] = w->e[i].sid;
        (*lens)[i] = w->e[i].sidlen;
    }
}

/* ---- gauges -------------------------------------------------------------- */

static void on_sampled(void *priv, const store_wb_status_t *s)
{
    wb_t *w = priv;
    if (s->status != STORE_OK) return;
    w->sampled = true;
    w->depth = s->depth;
    w->dead_n = s->dead;
    w->oldest_ms = s->oldest_ms;
}

static void sample(wb_t *w)
{
    store_wb_status(w->q.data, w->q.len, w->dead.data, w->dead.len, 0, on_sampled, w);
}

void write_behind_info(buf_t *o, const ns_t *ns)
{
    if (!wb_conf(ns)) return;
    const ns_stats_t *s = &ns->stats;
    write_behind_gauges_t g = {0};
    write_behind_gauges(ns, &g);
    buf_printf(o,
               "writes_%s:queued=%llu,queue_error=%llu,ok=%llu,error=%llu,dead_letter=%llu,"
               "queue_depth=%lld,lag_seconds=%.3f,dead_letters=%lld\r\n",
               ns->name, (unsigned long long)s->writes_behind_queued,
               (unsigned long long)s->writes_behind_queue_error,
               (unsigned long long)s->writes_behind_ok, (unsigned long long)s->writes_behind_error,
               (unsigned long long)s->writes_behind_dead, g.depth, g.lag_seconds, g.dead);
}

bool write_behind_gauges(const ns_t *ns, write_behind_gauges_t *out)
{
    wb_t *w = dict_get(&W.by_ns, ns->name, strlen(ns->name));
    if (!w || !w->sampled || !wb_conf(ns)) return false;
    out->depth = w->depth;
    out->dead = w->dead_n;
    long long age = w->oldest_ms >= 0 ? (long long)now_ms() - w->oldest_ms : 0;
    out->lag_seconds = age > 0 ? (double)age / 1000.0 : 0;
    return true;
}

/* ---- the flusher --------------------------------------------------------- */

static void flush_start(wb_t *w);

/* The flush is over (nothing more to do now); a full batch means more may
 * be waiting, so the next begins at once. */
static void flush_end(wb_t *w, bool more)
{
    w->busy = false;
    if (more) w->next_flush = 0;
    /* draining: a flush that leaves nothing more (or cannot reach Redis)
     * ends this instance's part */
    if (W.draining && !more) w->drained = true;
}

static void on_acked(void *priv, const store_result_t *r)
{
    wb_t *w = priv;
    if (r->status != STORE_OK)
        log_warn("write-behind %s: acknowledging a written batch failed (%s): it will be "
                 "written again",
                 w->ns->name, r->status == STORE_ERROR ? r->str : "Redis unavailable");
    const policy_conf_t *c = wb_conf(w->ns);
    /* a full batch, or one taken over (there may be new writes to read:
     * that flush read none), means the next flush begins at once */
    bool more = (c && (long)w->n >= c->wb_batch) || w->claimed;
    batch_free(w);
    flush_end(w, more);
}

static uint64_t backoff_ms(const policy_conf_t *c, long attempts)
{
    double ms = c->wb_delay * 1000.0;
    for (long i = 1; i < attempts && ms < MAX_BACKOFF_MS; i++)
        ms *= 2;
    return ms > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : (uint64_t)ms;
}

static void touch(wb_t *w);

/* Moving to the dead letters failed (Redis down, a dead-letter key of
 * another type): keep the batch, and retry the move, not write_batch, with
 * the batch's backoff. */
static void bury_failed(wb_t *w, const char *why)
{
    const policy_conf_t *c = wb_conf(w->ns);
    w->bury_due = true;
    log_error("write-behind %s: moving %zu writes to the dead letters failed (%s); retrying",
              w->ns->name, w->nitems, why);
    w->retry_at = mono_ms() + (c ? backoff_ms(c, w->attempts) : MAX_BACKOFF_MS);
    touch(w);
    flush_end(w, false);
}

static void on_buried(void *priv, const store_result_t *r)
{
    wb_t *w = priv;
    if (r->status != STORE_OK) {
        bury_failed(w, r->status == STORE_ERROR ? r->str : "Redis unavailable");
        return;
    }
    w->ns->stats.writes_behind_dead += w->nitems;
    log_error("write-behind %s: %zu writes moved to the dead letters after %ld attempts: %s",
              w->ns->name, w->nitems, w->attempts, w->last_err ? w->last_err : "");
    batch_free(w);
    flush_end(w, false);
}

static void bury(wb_t *w)
{
    const char **sids;
    size_t *lens;
    sids_of(w, &sids, &lens);
    int rc = store_wb_bury(w->q.data, w->q.len, w->dead.data, w->dead.len, sids, lens, w->n,
                           w->last_err ? w->last_err : "", w->attempts, on_buried, w);
    free(sids);
    free(lens);
    if (rc != 0) bury_failed(w, "Redis unavailable");
}

typedef struct touch_call {
    wb_t *w;
    uint64_t batch_no;
} touch_call_t;

static void on_touched(void *priv, const store_result_t *r)
{
    touch_call_t *t = priv;
    wb_t *w = t->w;
    bool same = t->batch_no == w->batch_no;
    free(t);
    if (!same || r->status != STORE_OK || r->integer <= 0 || w->lost || w->n == 0) return;
    w->lost = true; /* dropped when write_batch is not running (wb_tick, on_batch) */
    log_warn("write-behind %s: %lld writes of the batch in hand were taken over by another "
             "instance (this one stalled past claim_after): the batch is left to it",
             w->ns->name, r->integer);
}

static void touch(wb_t *w)
{
    if (w->n == 0) return;
    const char **sids;
    size_t *lens;
    sids_of(w, &sids, &lens);
    touch_call_t *t = xmalloc(sizeof(*t));
    *t = (touch_call_t){w, w->batch_no};
    if (store_wb_touch(w->q.data, w->q.len, w->dead.data, w->dead.len, write_behind_consumer(),
                       sids, lens, w->n, on_touched, t) != 0)
        free(t);
    w->touched_at = mono_ms();
    free(sids);
    free(lens);
}

static void on_reinvalidated(void *priv, long long removed, const char *err)
{
    LC_UNUSED(priv);
    LC_UNUSED(removed);
    LC_UNUSED(err); /* best effort: the entry's TTL bounds what a failure leaves */
}

/* A delete landed at the origin: a read between the DEL and now refilled
 * the id from the origin's old value, so the entry goes again. */
static void reinvalidate_deletes(const wb_t *w)
{
    cache_key_t *keys = xcalloc(w->nitems ? w->nitems : 1, sizeof(*keys));
    long n = 0;
    for (size_t i = 0; i < w->nitems; i++)
        if (!w->items[i].value)
            keys[n++] =
                (cache_key_t){.ns = w->ns, .id = w->items[i].id, .idlen = w->items[i].idlen};
    if (n > 0) cache_del_keys(keys, n, false, on_reinvalidated, NULL);
    free(keys);
}

static void on_batch(void *priv, const char *err)
{
    wb_t *w = priv;
    const policy_conf_t *c = wb_conf(w->ns);
    const char **sids;
    size_t *lens;
    if (!err) {
        w->ns->stats.writes_behind_ok += w->nitems;
        reinvalidate_deletes(w);
        sids_of(w, &sids, &lens);
        int rc = store_wb_done(w->q.data, w->q.len, w->dead.data, w->dead.len, sids, lens, w->n,
                               on_acked, w);
        free(sids);
        free(lens);
        if (rc != 0) on_acked(w, &(store_result_t){.status = STORE_DOWN});
        return;
    }
    w->attempts++;
    w->ns->stats.writes_behind_error += w->nitems;
    if (w->lost) { /* another instance has it now: it retries it */
        batch_free(w);
        flush_end(w, false);
        return;
    }
    free(w->last_err);
    w->last_err = xstrdup(err);
    if (!c) { /* reloaded without write_behind meanwhile: the writes wait in the queue */
        log_warn("write-behind %s: batch of %zu writes failed (%s); kept for a version with "
                 "write_behind",
                 w->ns->name, w->nitems, err);
        w->retry_at = mono_ms() + MAX_BACKOFF_MS;
        flush_end(w, false);
        return;
    }
    long max = c->wb_max_retries;
    if (w->attempts > max && !W.stopped) {
        bury(w);
        return;
    }
    log_warn("write-behind %s: batch of %zu writes failed (attempt %ld of %ld): %s", w->ns->name,
             w->nitems, w->attempts, max + 1, err);
    w->retry_at = mono_ms() + backoff_ms(c, w->attempts);
    touch(w);
    flush_end(w, false);
}

/* Build the items of the batch in hand and run write_batch on them. */
static void run_batch(wb_t *w)
{
    const policy_conf_t *c = wb_conf(w->ns);
    if (!c) { /* reloaded without write_behind: keep the batch, do nothing */
        flush_end(w, false);
        return;
    }
    if (!w->items) {
        w->items = xcalloc(w->n ? w->n : 1, sizeof(*w->items));
        dict_t seen;
        dict_init(&seen);
        for (size_t i = 0; i < w->n; i++) {
            const wb_entry_t *e = &w->e[i];
            if (!e->id) continue;
            policy_write_item_t it = {e->id, e->value, e->sid, e->idlen, e->vlen, e->sidlen};
            /* coalesce: the last write of an id, at the place of its first */
            void *at = c->wb_coalesce ? dict_get(&seen, e->id, e->idlen) : NULL;
            if (at) {
                w->items[(uintptr_t)at - 1] = it;
                continue;
            }
            w->items[w->nitems++] = it;
            if (c->wb_coalesce) dict_set(&seen, e->id, e->idlen, (void *)(uintptr_t)w->nitems);
        }
        dict_free(&seen);
    }
    if (w->nitems == 0) { /* only entries deleted meanwhile */
        on_batch(w, NULL);
        return;
    }
    policy_write_batch(w->ns->cur, w->items, w->nitems, on_batch, w);
}

static void take(wb_t *w, const store_xlist_t *l)
{
    w->e = xcalloc(l->n, sizeof(*w->e));
    w->n = l->n;
    w->batch_no++;
    for (size_t i = 0; i < l->n; i++) {
        const store_xentry_t *x = &l->e[i];
        wb_entry_t *e = &w->e[i];
        e->sid = xmemdup(x->sid, x->sidlen);
        e->sidlen = x->sidlen;
        bool del = x->op && x->oplen == 3 && memcmp(x->op, "del", 3) == 0;
        if (!x->id || (!del && !x->value)) continue; /* gone, or not ours: acked unsent */
        e->id = xmemdup(x->id, x->idlen);
        e->idlen = x->idlen;
        if (!del) {
            e->value = xmemdup(x->value, x->vlen);
            e->vlen = x->vlen;
        }
    }
    w->attempts = 0;
    w->touched_at = mono_ms();
    run_batch(w);
}

static void on_read(void *priv, const store_xlist_t *l)
{
    wb_t *w = priv;
    if (l->status == STORE_ERROR && l->err && strncmp(l->err, "NOGROUP", 7) == 0)
        w->group_ok = false; /* the stream was deleted: create the group again */
    if (l->status != STORE_OK || l->n == 0) {
        flush_end(w, false);
        return;
    }
    take(w, l);
}

static void on_claimed(void *priv, const store_xlist_t *l)
{
    wb_t *w = priv;
    const policy_conf_t *c = wb_conf(w->ns);
    if (l->status == STORE_OK && l->n > 0) {
        log_info("write-behind %s: took over %zu writes idle for %.3g s", w->ns->name, l->n,
                 c ? c->wb_claim_after : 0);
        w->claimed = true;
        take(w, l);
        return;
    }
    if (l->status == STORE_ERROR && l->err && strncmp(l->err, "NOGROUP", 7) == 0)
        w->group_ok = false;
    if (!c || l->status != STORE_OK ||
        store_wb_read(w->q.data, w->q.len, write_behind_consumer(), c->wb_batch, on_read, w) != 0)
        flush_end(w, false);
}

static void claim(wb_t *w)
{
    const policy_conf_t *c = wb_conf(w->ns);
    if (!c || store_wb_claim_idle(w->q.data, w->q.len, write_behind_consumer(),
                                  (long long)(c->wb_claim_after * 1000.0), c->wb_batch, on_claimed,
                                  w) != 0)
        flush_end(w, false);
}

static void on_group(void *priv, const store_result_t *r)
{
    wb_t *w = priv;
    if (r->status != STORE_OK) {
        flush_end(w, false);
        return;
    }
    w->group_ok = true;
    claim(w);
}

static void flush_start(wb_t *w)
{
    const policy_conf_t *c = wb_conf(w->ns);
    w->busy = true;
    w->appended = 0;
    w->next_flush = mono_ms() + (uint64_t)(c->wb_delay * 1000.0);
    sample(w);
    if (w->group_ok)
        claim(w);
    else if (store_wb_group(w->q.data, w->q.len, on_group, w) != 0)
        flush_end(w, false);
}

static void on_pruned(void *priv, const store_result_t *r)
{
    wb_t *w = priv;
    if (r->status == STORE_OK && r->integer > 0)
        log_info("[%s] write-behind: removed %lld consumer(s) of instances gone from the queue's "
                 "group",
                 w->ns->name, r->integer);
}

/* Each process joins the group under a name of its own, so consumers of
 * instances long gone would pile up: every claim_after, remove those with
 * nothing pending, idle for 4 claim_after (their writes were claimed by
 * then) and 2 delays (a live instance reads every delay). */
static void prune(wb_t *w, const policy_conf_t *c, uint64_t now)
{
    w->next_prune = now + (uint64_t)(c->wb_claim_after * 1000.0);
    double idle_s =
        4 * c->wb_claim_after > 2 * c->wb_delay ? 4 * c->wb_claim_after : 2 * c->wb_delay;
    store_wb_prune(w->q.data, w->q.len, w->dead.data, w->dead.len, write_behind_consumer(),
                   (long long)(idle_s * 1000.0), on_pruned, w);
}

static void wb_tick(wb_t *w, uint64_t now)
{
    const policy_conf_t *c = wb_conf(w->ns);
    if (!c || W.stopped) return;
    if (w->group_ok && now >= w->next_prune) prune(w, c, now);
    uint64_t keep_claimed = (uint64_t)(c->wb_claim_after * 1000.0 / 3);
    if (w->busy) {
        /* a write_batch slower than claim_after stays ours while we live */
        if (w->n > 0 && w->items && now - w->touched_at >= keep_claimed) touch(w);
        return;
    }
    if (w->n > 0 && w->lost) { /* taken over while it waited for its retry */
        batch_free(w);
        return;
    }
    if (w->n > 0) { /* a failed batch waits for its retry */
        if (now >= w->retry_at) {
            touch(w);
            w->busy = true;
            if (w->bury_due)
                bury(w);
            else
                run_batch(w);
        } else if (now - w->touched_at >= keep_claimed) {
            touch(w);
        }
        return;
    }
    bool draining = W.draining && !w->drained;
    if (now >= w->next_flush || w->appended >= c->wb_batch || draining) flush_start(w);
}

static void on_timer(uv_timer_t *t)
{
    LC_UNUSED(t);
    uint64_t now = mono_ms();
    for (size_t i = 0; i < ns_count(); i++) {
        ns_t *ns = ns_at(i);
        if (wb_conf(ns)) wb_tick(wb_get(ns), now);
    }
}

void write_behind_init(uv_loop_t *loop)
{
    W.loop = loop;
    dict_init(&W.by_ns);
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) != 0) snprintf(host, sizeof(host), "unknown");
    snprintf(W.consumer, sizeof(W.consumer), "%s:%ld:%lld", host, (long)getpid(),
             (long long)now_ms());
    uv_timer_init(loop, &W.timer);
    W.timer_open = true;
    uv_timer_start(&W.timer, on_timer, TICK_MS, TICK_MS);
}

const char *write_behind_consumer(void)
{
    return W.consumer;
}

void write_behind_drain(void)
{
    W.draining = true;
    size_t i;
    for (dict_entry_t *e = dict_first(&W.by_ns, &i); e; e = dict_next(&W.by_ns, &i, e))
        ((wb_t *)e->value)->drained = false;
    if (W.timer_open) on_timer(&W.timer);
}

bool write_behind_busy(void)
{
    if (W.stopped) return false;
    size_t i;
    for (dict_entry_t *e = dict_first(&W.by_ns, &i); e; e = dict_next(&W.by_ns, &i, e)) {
        const wb_t *w = e->value;
        if (!wb_conf(w->ns)) continue;
        /* a removed namespace is not ticked: only a call already out holds us */
        if (w->ns->removed) {
            if (w->busy) return true;
            continue;
        }
        if (w->busy || (W.draining && !w->drained && w->n == 0)) return true;
    }
    return false;
}

void write_behind_stop(void)
{
    W.stopped = true;
    if (!W.timer_open) return;
    W.timer_open = false;
    uv_timer_stop(&W.timer);
    uv_close((uv_handle_t *)&W.timer, NULL);
}

void write_behind_close(void)
{
    write_behind_stop();
    size_t i;
    for (dict_entry_t *e = dict_first(&W.by_ns, &i); e; e = dict_next(&W.by_ns, &i, e)) {
        wb_t *w = e->value;
        batch_free(w);
        buf_free(&w->q);
        buf_free(&w->dead);
        free(w);
    }
    dict_free(&W.by_ns);
}

/* ---- SET and DEL --------------------------------------------------------- */

bool write_behind_set_wanted(const cache_key_t *key)
{
    return wb_conf(key->ns) != NULL;
}

bool write_behind_del_wanted(const cache_key_t *keys, long nkeys)
{
    for (long i = 0; i < nkeys; i++)
        if (wb_conf(keys[i].ns)) return true;
    return false;
}

/* "write queue unavailable: ..." for a failed append. */
static void queue_error_text(char *out, size_t size, const store_result_t *r)
{
    if (r && r->status == STORE_ERROR)
        snprintf(out, size, "write queue unavailable: %.*s", (int)r->len, r->str);
    else
        snprintf(out, size, "write queue unavailable: Redis did not answer");
}

static void queue_error(buf_t *out, const store_result_t *r)
{
    char err[256];
    queue_error_text(err, sizeof(err), r);
    reply_error(out, "%s", err);
}

static void queued(wb_t *w)
{
    w->ns->stats.writes_behind_queued++;
    w->appended++;
    const policy_conf_t *c = wb_conf(w->ns);
    if (c && w->appended >= c->wb_batch) wb_tick(w, mono_ms());
}

typedef struct set_job {
    sink_t *sink;
    wb_t *w;
    char *id, *value;
    size_t idlen, vlen;
    long long ttl_ms;
} set_job_t;

static void on_set_queued(void *priv, const store_result_t *r)
{
    set_job_t *j = priv;
    sink_release_input(j->sink); /* the cache write below goes out before the next command */
    if (r->status != STORE_OK) {
        j->w->ns->stats.writes_behind_queue_error++;
        queue_error(sink_out(j->sink), r);
        sink_finish(j->sink);
    } else {
        queued(j->w);
        cache_key_t key = {.ns = j->w->ns, .id = j->id, .idlen = j->idlen};
        cache_set(j->sink, &key, j->value, j->vlen, j->ttl_ms);
    }
    free(j->id);
    free(j->value);
    free(j);
}

void write_behind_set(sink_t *sink, const cache_key_t *key, const char *value, size_t vlen,
                      long long ttl_ms)
{
    set_job_t *j = xcalloc(1, sizeof(*j));
    *j = (set_job_t){
        sink, wb_get(key->ns), xmemdup(key->id, key->idlen), xmemdup(value, vlen), key->idlen,
        vlen, ttl_ms};
    sink_hold_input(sink);
    if (store_wb_append(j->w->q.data, j->w->q.len, j->id, j->idlen, j->value, vlen, on_set_queued,
                        j) != 0)
        on_set_queued(j, &(store_result_t){.status = STORE_DOWN});
}

typedef struct del_one {
    del_job_t *job;
    long i;
} del_one_t;

static void on_del_queued(void *priv, const store_result_t *r)
{
    del_one_t *d = priv;
    del_job_t *j = d->job;
    long i = d->i;
    free(d);
    wb_t *w = wb_get(del_job_key(j, i)->ns);
    if (r->status == STORE_OK) {
        queued(w);
        del_job_step_done(j, i, NULL);
        return;
    }
    w->ns->stats.writes_behind_queue_error++;
    char err[256];
    queue_error_text(err, sizeof(err), r);
    del_job_step_done(j, i, err);
}

void write_behind_del(sink_t *sink, const cache_key_t *keys, long nkeys)
{
    for (long i = 0; i < nkeys; i++)
        if (keys[i].ns->cur && keys[i].ns->cur->conf.has_delete) {
            reply_error(sink_out(sink), "DEL mixes write-behind and write-through namespaces: "
                                        "send them in separate commands");
            sink_finish(sink);
            return;
        }
    del_job_t *j = del_job_new(sink, keys, nkeys);
    for (long i = 0; i < nkeys; i++) {
        const cache_key_t *k = del_job_key(j, i);
        if (!wb_conf(k->ns)) continue;
        wb_t *w = wb_get(k->ns);
        del_one_t *d = xcalloc(1, sizeof(*d));
        *d = (del_one_t){j, i};
        del_job_step(j);
        if (store_wb_append(w->q.data, w->q.len, k->id, k->idlen, NULL, 0, on_del_queued, d) != 0)
            on_del_queued(d, &(store_result_t){.status = STORE_DOWN});
    }
    del_job_started(j);
}

/* ---- WRITES ns [RETRY] --------------------------------------------------- */

static void pair_int(buf_t *b, const char *k, long long v)
{
    reply_bulk_str(b, k);
    reply_int(b, v);
}

static void on_status(void *priv, const store_wb_status_t *s)
{
    sink_t *sink = priv;
    buf_t *b = sink_out(sink);
    if (s->status != STORE_OK) {
        reply_error(b, "write queue unavailable: %s",
                    s->status == STORE_ERROR && s->err ? s->err : "Redis did not answer");
        sink_finish(sink);
        return;
    }
    long long age = s->oldest_ms >= 0 ? (long long)now_ms() - s->oldest_ms : 0;
    sink_map(sink->proto, b, 6);
    pair_int(b, "queued", s->depth);
    pair_int(b, "pending", s->pending);
    pair_int(b, "oldest_age_ms", age > 0 ? age : 0);
    pair_int(b, "dead_letters", s->dead);
    reply_bulk_str(b, "consumer");
    reply_bulk_str(b, write_behind_consumer());
    reply_bulk_str(b, "dead");
    reply_array(b, (long)s->n);
    for (size_t i = 0; i < s->n; i++) {
        const store_xentry_t *e = &s->e[i];
        /* seq, op, id, value (nil for a del), error, attempts */
        reply_array(b, 6);
        reply_bulk(b, e->sid, e->sidlen);
        reply_bulk(b, e->op ? e->op : "", e->oplen);
        reply_bulk(b, e->id ? e->id : "", e->idlen);
        if (e->value)
            reply_bulk(b, e->value, e->vlen);
        else
            sink_null(sink->proto, b);
        reply_bulk(b, e->error ? e->error : "", e->errlen);
        reply_int(b, e->attempts);
    }
    sink_finish(sink);
}

void write_behind_status(sink_t *sink, ns_t *ns)
{
    wb_t *w = wb_get(ns);
    if (store_wb_status(w->q.data, w->q.len, w->dead.data, w->dead.len, STATUS_LIST, on_status,
                        sink) != 0)
        on_status(sink, &(store_wb_status_t){.status = STORE_DOWN});
}

static void on_retried(void *priv, const store_result_t *r)
{
    sink_t *sink = priv;
    if (r->status == STORE_OK)
        reply_int(sink_out(sink), r->integer);
    else
        queue_error(sink_out(sink), r);
    sink_finish(sink);
}

void write_behind_retry(sink_t *sink, ns_t *ns)
{
    wb_t *w = wb_get(ns);
    if (store_wb_retry(w->q.data, w->q.len, w->dead.data, w->dead.len, RETRY_MAX, on_retried,
                       sink) != 0)
        on_retried(sink, &(store_result_t){.status = STORE_DOWN});
}
