/* warm.c: WARM and the background warm runs (SPEC §3, §4).
 *
 * A run fetches a list of ids of one namespace, each as REFRESH does: now,
 * even if fresh, through the key's fill (so it coalesces with requests for
 * the same key and takes the cross-instance lock; a key another instance is
 * filling is waited for, not fetched twice). At most WARM_MAX_INFLIGHT
 * fetches of a run are in flight at once, so a long list cannot flood the
 * origin or the loop.
 *
 * Background runs: every namespace whose policy has warm() runs it when it
 * first serves (at start, or when its file appears) and then warm_every
 * seconds after the previous run ended (runs of one namespace never
 * overlap; warm_every is read again at each check, so a reload that
 * changes it applies from the next run). At start the first runs wait for
 * Redis to be up, or at most WARM_START_DELAY_MS. One log line per run. */
#include "warm.h"

#include <stdlib.h>

#include "backend.h"
#include "cache.h"
#include "cache_int.h"
#include "log.h"
#include "reply.h"
#include "util.h"

#define WARM_MAX_INFLIGHT   32
#define WARM_TICK_MS        200
#define WARM_START_DELAY_MS 2000

typedef struct warm_job {
    ns_t *ns;
    str_list_t ids;
    size_t next;
    int inflight;
    long long ok, failed;
    bool pumping; /* inside pump(): completions only count */
    sink_t *sink; /* WARM; NULL for a background run */
    uint64_t started;
} warm_job_t;

static struct {
    uv_timer_t timer;
    bool timer_on;
    bool stopping; /* no new fetches: shutting down */
    uint64_t started;
} W;

static void pump(warm_job_t *j);

static void finish(warm_job_t *j)
{
    if (j->sink) {
        reply_int(sink_out(j->sink), j->ok);
        sink_finish(j->sink);
    } else {
        ns_t *ns = j->ns;
        ns->warm.running = false;
        ns->warm.last_end = mono_ms();
        log_info("[%s] warm: %lld of %zu ids loaded in %llu ms%s", ns->name, j->ok, j->ids.n,
                 (unsigned long long)(ns->warm.last_end - j->started),
                 j->next < j->ids.n ? " (stopped: shutting down or namespace removed)" : "");
    }
    str_list_free(&j->ids);
    free(j);
}

/* Anything but an error counts as loaded: a value, a not-found (the
 * origin has none, and that is cached), a stale value served for
 * stale-if-error (the fetch failed, but the key is there). */
static void on_one(void *priv, const outcome_t *o)
{
    warm_job_t *j = priv;
    j->inflight--;
    if (o->kind != OUTCOME_ERROR)
        j->ok++;
    else
        j->failed++;
    pump(j);
}

static bool may_start(const warm_job_t *j)
{
    return !W.stopping && j->next < j->ids.n && !(j->sink == NULL && j->ns->removed);
}

/* Keep WARM_MAX_INFLIGHT fetches going; finish when all are done. A fetch
 * can complete inside cache_warm_one (Redis down and shutting down, say):
 * then on_one only counts, and this loop goes on, so a long list never
 * recurses. */
static void pump(warm_job_t *j)
{
    if (j->pumping) return;
    j->pumping = true;
    while (j->inflight < WARM_MAX_INFLIGHT && may_start(j)) {
        size_t i = j->next++;
        j->inflight++;
        cache_warm_one(j->ns, j->ids.v[i], j->ids.len[i], on_one, j);
    }
    j->pumping = false;
    if (j->inflight == 0 && !may_start(j)) finish(j);
}

static void run(ns_t *ns, str_list_t *ids, sink_t *sink)
{
    warm_job_t *j = xcalloc(1, sizeof(*j));
    j->ns = ns;
    j->ids = *ids;
    j->sink = sink;
    j->started = mono_ms();
    pump(j);
}

void warm_command(sink_t *sink, ns_t *ns, str_list_t *ids)
{
    run(ns, ids, sink);
}

/* ---------------------------------------------------------------------------
 * Background runs
 * ------------------------------------------------------------------------- */

static void on_background_ids(void *priv, str_list_t *ids, const char *err)
{
    ns_t *ns = priv;
    if (err || W.stopping) {
        if (err) log_warn("[%s] %s", ns->name, err);
        str_list_free(ids);
        ns->warm.running = false;
        ns->warm.last_end = mono_ms(); /* try again after warm_every */
        return;
    }
    run(ns, ids, NULL);
}

static void run_background(ns_t *ns)
{
    ns->warm.started = true;
    ns->warm.running = true; /* from now: warm() itself runs as a coroutine */
    policy_warm(ns->cur, on_background_ids, ns);
}

static bool due(const ns_t *ns, uint64_t now)
{
    if (!ns->cur || !ns->cur->conf.has_warm || ns->warm.running) return false;
    if (!ns->warm.started) return true;
    double every = ns->cur->conf.warm_every;
    return every > 0 && (double)(now - ns->warm.last_end) >= every * 1000.0;
}

static void on_tick(uv_timer_t *t)
{
    LC_UNUSED(t);
    uint64_t now = mono_ms();
    if (W.stopping || (!backend_up() && now - W.started < WARM_START_DELAY_MS)) return;
    /* run_background does not change the list of namespaces */
    for (size_t i = 0; i < ns_count(); i++) {
        ns_t *ns = ns_at(i);
        if (due(ns, now)) run_background(ns);
    }
}

void warm_ns_served(ns_t *ns)
{
    ns->warm.started = false; /* due at the next check (once a run under way ends) */
}

void warm_init(void)
{
    W.started = mono_ms();
    W.stopping = false;
    uv_timer_init(cache_loop, &W.timer);
    uv_timer_start(&W.timer, on_tick, WARM_TICK_MS, WARM_TICK_MS);
    uv_unref((uv_handle_t *)&W.timer); /* never what keeps the loop running */
    W.timer_on = true;
}

void warm_stop(void)
{
    W.stopping = true;
}

void warm_shutdown(void)
{
    warm_stop();
    if (!W.timer_on) return;
    W.timer_on = false;
    uv_close((uv_handle_t *)&W.timer, NULL);
}
