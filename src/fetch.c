/* fetch.c: the coroutine runner — a policy's fetch(id, ctx), and its
 * on_event, warm and ttl functions (policy_hooks.c), as budgeted coroutines
 * on the event loop.
 *
 * Each run is a Lua thread (lua_newthread, anchored by a registry ref and
 * released exactly once) running one of runtime.lua's entry points. The ctx
 * I/O primitives park it the OpenResty way: start the operation, note on
 * the run what it waits for, and `return lua_yieldk(L, 1, 0, k)` with
 * fetch_io_sentinel as the yielded value. The event handler (timer, HTTP
 * completion) resumes the thread through the one run function,
 * fetch_resume(); the continuation k then builds the primitive's results
 * from what the handler left on the run, inside the resumed thread (so in
 * protected mode). A thread parked on I/O is resumed exactly once with its
 * result; at the run's timeout and at fetch_abort_all() it is let go where
 * it stands instead (see release(): never closed, so its pending __close
 * handlers do not run) and never resumed again.
 *
 * Budget slices (policy_int.h): the count hook yields the thread after
 * about 1 ms of Lua; the runner parks it (WAIT_SLICE) and resumes it from a
 * zero timer on the next loop turn, so other clients are served between
 * slices. The hook also yields when the budget is spent, and the runner
 * then ends the run: nothing the policy does (pcall, xpcall handlers) can
 * catch that.
 *
 * A yield that is not an I/O park or a slice (coroutine.yield at the top
 * of fetch) ends the run with an error; coroutines the policy creates
 * itself work as usual, and ctx I/O and slices inside them are forwarded
 * by sandbox.lua's resume.
 *
 * A fetch tells the policy about itself through a handle userdata (the `h`
 * of runtime.lua), anchored by a registry ref while the fetch lives. The
 * handle outlives the fetch if the policy keeps ctx around; its pointer is
 * cleared at release, so a late call raises. */
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client.h"
#include "list.h"
#include "log.h"
#include "policy.h"
#include "policy_int.h"
#include "util.h"

#define HANDLE_MT "luacached.fetch"

const char fetch_io_sentinel = 0;

typedef enum wait_kind { WAIT_NONE, WAIT_SLEEP, WAIT_HTTP, WAIT_SLICE } wait_kind_t;

typedef struct fetch fetch_t;

typedef struct fetch_handle {
    fetch_t *f; /* NULL once the fetch is released */
} fetch_handle_t;

struct fetch {
    list_node_t node; /* F.inflight_list (until finalised), oldest first */
    uint64_t seq;
    policy_t *p;
    lua_State *co; /* the run's thread; NULL if setup failed */
    int co_ref;
    fetch_handle_t *h;    /* fetches only */
    int h_ref;            /* anchors h while the fetch lives */
    fetch_cb cb;          /* a fetch's callback (ops NULL) */
    const run_ops_t *ops; /* or another run's (policy_run) */
    void *priv;
    lua_budget_t budget;
    uint64_t start_ns;
    uint64_t deadline_ms; /* mono_ms() at which fetch_timeout fires */

    uv_timer_t timeout; /* conf.fetch_timeout */
    uv_timer_t sleep;   /* ctx.sleep */
    /* The next slice. An idle handle runs once per loop turn, and keeps
     * that turn's poll from blocking; a zero timer would not do: libuv
     * runs a timer re-armed from its callback again in the same pass. */
    uv_idle_t slice;
    /* sleep and slice are made on first use (sleep_timer, slice_idle):
     * most runs neither sleep nor outlast a slice, and each handle costs
     * an init and a close, whose callback runs on the next loop turn. */
    bool has_sleep, has_slice;
    int open_handles; /* freed when all its handles are closed */

    wait_kind_t wait;      /* what the parked thread waits for */
    http_call_t *call;     /* WAIT_HTTP */
    bool call_at_deadline; /* the call's own timeout is the fetch's deadline */
    bool io_ready;         /* the handler left a result for k */
    const char *io_err;    /* HTTP transport error, valid during the resume */
    http_response_t *io_resp;

    bool running;     /* inside lua_resume */
    int defer_nargs;  /* WAIT_SLICE: resume with these (a deferred start) */
    bool defer_fresh; /* WAIT_SLICE: with a fresh budget */
    bool finalised;   /* cb has run (or is running) */
    bool released;    /* thread and policy let go */
    bool reusable;    /* the thread returned normally: it may run the next run */
};

static struct {
    list_t inflight_list; /* fetch_t */
    size_t inflight;
    uint64_t seq;
    fetch_t *running; /* whose thread is in lua_resume now */
    /* Lua time spent in the loop turn that began at uv_now() == turn_ms
     * (a turn that ran Lua takes longer than a millisecond, so the next
     * one has another uv_now()). */
    uint64_t turn_ms, turn_lua_ns;
} F;

/* Lua time per loop turn for runs resuming from a slice: a hundred busy
 * runs then take turns, a few per loop turn, instead of delaying every
 * other client by a hundred slices. */
#define TURN_LUA_NS 2000000ULL

/* Threads that returned normally are kept for the next runs (at most this
 * many per Lua state, in a registry table made this long up front, so
 * keeping one never allocates): a run's thread and stack are most of the
 * garbage a short fetch leaves, and the collector's work follows the
 * garbage. Only a thread whose function returned is kept: it has no call
 * in progress, no pending to-be-closed variable and its hooks on; one
 * stopped by a timeout, the budget or an error is let go (release()). */
#define THREAD_POOL_MAX 64
static const char thread_pool_key = 0;

static void fetch_resume(fetch_t *f, int nargs, bool fresh);

/* ------------------------------------------------------------------------ */
/* Lifetime                                                                  */
/* ------------------------------------------------------------------------ */

static void inflight_unlink(fetch_t *f)
{
    list_remove(&f->node);
    F.inflight--;
}

/* Deliver the one callback. Everything r points to must stay anchored
 * until this returns. (The caller, cache.c, counts fetch results in the
 * namespace's stats.) */
static bool mark_final(fetch_t *f)
{
    if (f->finalised) return false;
    f->finalised = true;
    inflight_unlink(f);
    return true;
}

static void finalise(fetch_t *f, fetch_result_t *r)
{
    if (!mark_final(f)) return;
    r->duration = (double)(uv_hrtime() - f->start_ns) / 1e9;
    r->policy = f->p; /* still referenced: release() comes after */
    f->cb(f->priv, r);
}

static void finalise_error(fetch_t *f, fetch_kind_t kind, const char *msg)
{
    if (f->ops) {
        if (mark_final(f)) f->ops->failed(f->priv, kind, msg);
        return;
    }
    fetch_result_t r = {.kind = kind, .error = msg};
    finalise(f, &r);
}

static void on_handle_closed(uv_handle_t *h)
{
    fetch_t *f = h->data;
    if (--f->open_handles == 0) free(f);
}

static uv_timer_t *sleep_timer(fetch_t *f)
{
    if (!f->has_sleep) {
        uv_timer_init(engine_loop(), &f->sleep);
        f->sleep.data = f;
        f->has_sleep = true;
        f->open_handles++;
    }
    return &f->sleep;
}

static uv_idle_t *slice_idle(fetch_t *f)
{
    if (!f->has_slice) {
        uv_idle_init(engine_loop(), &f->slice);
        f->slice.data = f;
        f->has_slice = true;
        f->open_handles++;
    }
    return &f->slice;
}

static void stop_sleep(fetch_t *f)
{
    if (f->has_sleep) uv_timer_stop(&f->sleep);
}

/* Put a finished thread (anchored by ref) in the pool, if there is room.
 * Nothing here allocates: the pool's array was sized when it was made. */
static void keep_thread(lua_State *L, lua_State *co, int ref)
{
    if (lua_status(co) != LUA_OK || !lua_checkstack(L, 2)) return;
    lua_settop(co, 0);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &thread_pool_key) == LUA_TTABLE) { /* [pool] */
        lua_Unsigned n = lua_rawlen(L, -1);
        if (n < THREAD_POOL_MAX) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, ref); /* [pool, co] */
            lua_rawseti(L, -2, (lua_Integer)n + 1); /* [pool] */
        }
    }
    lua_pop(L, 1);
}

/* Abandon the ctx.http call in flight, if any (a timeout, an abort): it
 * counts as an origin response of class "error". */
static void cancel_call(fetch_t *f)
{
    if (!f->call) return;
    if (f->p && f->p->ns) ns_stats_count_origin(&f->p->ns->stats, "cancelled", 0);
    http_cancel(f->call);
    f->call = NULL;
}

/* Let go of the thread and the policy once the thread will not run again.
 * The memory is freed when libuv has closed its handles. */
static void release(fetch_t *f, bool memerr)
{
    if (f->released) return;
    f->released = true;
    cancel_call(f);
    policy_t *p = f->p;
    lua_State *L = p->L;
    if (f->h) {
        f->h->f = NULL;
        luaL_unref(L, LUA_REGISTRYINDEX, f->h_ref);
        f->h = NULL;
    }
    if (f->co) {
        /* The thread is let go as it stands, for the collector: never
         * closed (lua_resetthread), so a stopped run's pending __close
         * handlers do not run. If the budget's hook stopped it with an
         * error, Lua left its hooks off, and Lua 5.4.4 may leave a stale
         * message-handler slot in it: code run there could not be
         * stopped. */
        f->budget.thread = NULL;
        if (f->reusable && !memerr) keep_thread(L, f->co, f->co_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, f->co_ref);
        f->co = NULL;
        if (memerr) {
            /* The memory the failed run held is garbage now; free it
             * before the next run of this state needs it. */
            pstate_t *ps = p->engine_private;
            lua_budget_t *saved = ps->budget;
            policy_budget_start(L, p);
            lua_gc(L, LUA_GCCOLLECT);
            ps->budget = saved == &f->budget ? &ps->main_budget : saved;
        }
    }
    policy_unref(p);
    f->p = NULL;
    if (f->has_sleep) uv_close((uv_handle_t *)&f->sleep, on_handle_closed);
    if (f->has_slice) uv_close((uv_handle_t *)&f->slice, on_handle_closed);
    uv_close((uv_handle_t *)&f->timeout, on_handle_closed);
}

/* Finalise with kind/msg. A parked thread is closed where it stands; a
 * running one is released by fetch_resume when lua_resume returns. */
static void fetch_abort(fetch_t *f, fetch_kind_t kind, const char *msg)
{
    if (f->finalised) return;
    uv_timer_stop(&f->timeout);
    stop_sleep(f);
    if (f->has_slice) uv_idle_stop(&f->slice);
    cancel_call(f);
    f->wait = WAIT_NONE;
    finalise_error(f, kind, msg);
    if (!f->running) release(f, false);
}

/* A run that is not parked on I/O has none in progress: cancel what a
 * primitive may have started before its yield failed. */
static void drop_io(fetch_t *f)
{
    stop_sleep(f);
    cancel_call(f);
    if (f->wait == WAIT_SLEEP || f->wait == WAIT_HTTP) f->wait = WAIT_NONE;
}

/* ------------------------------------------------------------------------ */
/* The run loop                                                              */
/* ------------------------------------------------------------------------ */

static bool is_memerr(int status, const char *msg)
{
    return status == LUA_ERRMEM || (msg && strstr(msg, "not enough memory"));
}

/* Results of runtime.fetch on the thread's stack: value|nil, ttl, tag... */
static void deliver_result(fetch_t *f, int nres)
{
    lua_State *co = f->co;
    int base = lua_gettop(co) - nres + 1;
    fetch_result_t r = {0};
    if (nres < 2 || lua_type(co, base + 1) != LUA_TNUMBER) {
        finalise_error(f, FETCH_ERROR, "internal error: bad result from the fetch runner");
        return;
    }
    r.ttl = lua_tonumber(co, base + 1);
    if (lua_isnil(co, base)) {
        r.kind = FETCH_NOT_FOUND;
        finalise(f, &r);
        return;
    }
    if (lua_type(co, base) != LUA_TSTRING) {
        finalise_error(f, FETCH_ERROR, "internal error: fetch runner returned a non-string");
        return;
    }
    r.kind = FETCH_OK;
    r.value = lua_tolstring(co, base, &r.len);
    size_t ntags = (size_t)(nres - 2);
    const char **tags = ntags ? xmalloc(ntags * sizeof(*tags)) : NULL;
    size_t *lens = ntags ? xmalloc(ntags * sizeof(*lens)) : NULL;
    for (size_t i = 0; i < ntags; i++) {
        int idx = base + 2 + (int)i;
        /* runtime.lua checked them; never let lua_tostring convert in place */
        lens[i] = 0;
        tags[i] = lua_type(co, idx) == LUA_TSTRING ? lua_tolstring(co, idx, &lens[i]) : "";
    }
    r.tags = tags;
    r.tag_lens = lens;
    r.ntags = ntags;
    finalise(f, &r); /* values stay anchored on co's stack meanwhile */
    free(tags);
    free(lens);
}

/* The error on top of the thread, for the callback. */
static const char *error_message(lua_State *co, int status, char *buf, size_t buflen, size_t limit)
{
    int t = lua_type(co, -1);
    if (status == LUA_ERRMEM) {
        snprintf(buf, buflen, "not enough memory (a policy's Lua state may use %zu MiB)",
                 limit >> 20);
        return buf;
    }
    if (t == LUA_TSTRING) return lua_tostring(co, -1);
    if (t == LUA_TNUMBER) {
        snprintf(buf, buflen, "%.14g", lua_tonumber(co, -1));
        return buf;
    }
    snprintf(buf, buflen, "(error object is a %s value)", lua_typename(co, t));
    return buf;
}

static void on_slice(uv_idle_t *t);
static void resume_or_defer(fetch_t *f, int nargs, bool fresh);

/* Resume the run's thread with nargs values on its stack and act on how it
 * stopped: parked on I/O, at the end of a slice, stopped by the budget,
 * finished, failed, or yielded out of turn. fresh: a new budget (start,
 * I/O resume) rather than the next slice of the current one. */
static void fetch_resume(fetch_t *f, int nargs, bool fresh)
{
    policy_t *p = f->p;
    lua_State *co = f->co;
    fetch_t *prev = F.running;
    F.running = f;
    f->running = true;
    lua_budget_t *prevb = policy_budget_enter(p, co, &f->budget, fresh);
    uint64_t t0 = uv_hrtime();
    int nres = 0;
    int st = lua_resume(co, p->L, nargs, &nres);
    uint64_t took = uv_hrtime() - t0;
    if (lat_clock_valid) lat_clock_ns = t0 + took; /* the Lua run took that long */
    policy_budget_leave(p, prevb);
    if (uv_now(engine_loop()) != F.turn_ms) {
        F.turn_ms = uv_now(engine_loop());
        F.turn_lua_ns = 0;
    }
    F.turn_lua_ns += took;
    F.running = prev;
    f->running = false;

    bool sliced = f->budget.sliced;
    f->budget.sliced = false;
    if (st == LUA_YIELD) {
        bool io = nres == 1 && lua_touserdata(co, -1) == (void *)&fetch_io_sentinel;
        lua_pop(co, nres);
        if (f->finalised) {
            /* aborted while it ran */
        } else if (f->budget.tripped && nres == 0) {
            char msg[192];
            policy_budget_message(&f->budget, msg, sizeof(msg));
            finalise_error(f, FETCH_ERROR, msg);
        } else if (io && (f->wait == WAIT_SLEEP || f->wait == WAIT_HTTP)) {
            return; /* parked on I/O */
        } else if (sliced && (nres == 0 || io) && f->wait == WAIT_NONE) {
            f->wait = WAIT_SLICE;
            uv_idle_start(slice_idle(f), on_slice);
            return;
        } else {
            finalise_error(f, FETCH_ERROR,
                           f->ops ? "policy function yielded outside ctx I/O (coroutine.yield "
                                    "outside a coroutine of its own)"
                                  : "fetch yielded outside ctx I/O (coroutine.yield at the top "
                                    "level of fetch)");
        }
        drop_io(f);
        release(f, false);
        return;
    }
    /* Finished or failed: whatever I/O a primitive started is orphaned. */
    drop_io(f);
    bool memerr = false;
    if (st == LUA_OK) {
        if (f->finalised) {
            /* aborted while it ran */
        } else if (f->budget.tripped) {
            /* a coroutine of the policy's own caught the budget error */
            char msg[192];
            policy_budget_message(&f->budget, msg, sizeof(msg));
            finalise_error(f, FETCH_ERROR, msg);
        } else if (!lua_checkstack(co, 8)) {
            finalise_error(f, FETCH_ERROR, "not enough memory for the results");
            memerr = true;
        } else if (f->ops) {
            if (mark_final(f)) f->ops->done(f->priv, co, nres);
            f->reusable = true;
        } else {
            deliver_result(f, nres);
            f->reusable = true;
        }
    } else {
        char buf[160], moved[1024];
        const char *msg = error_message(co, st, buf, sizeof(buf), p->mem_limit);
        memerr = is_memerr(st, msg);
        if (!memerr) msg = policy_error_relocate(co, msg, moved, sizeof(moved));
        if (!f->finalised) finalise_error(f, FETCH_ERROR, msg);
    }
    release(f, memerr);
}

/* ------------------------------------------------------------------------ */
/* Event handlers                                                            */
/* ------------------------------------------------------------------------ */

static void on_timeout(uv_timer_t *t)
{
    fetch_t *f = t->data;
    char msg[64];
    snprintf(msg, sizeof(msg), "%stimed out after %gs", f->ops ? "" : "fetch ",
             f->p->conf.fetch_timeout);
    fetch_abort(f, FETCH_TIMEOUT, msg);
}

static void on_sleep(uv_timer_t *t)
{
    fetch_t *f = t->data;
    if (f->wait != WAIT_SLEEP) return;
    f->wait = WAIT_NONE;
    f->io_ready = true;
    resume_or_defer(f, 0, true);
}

/* The loop had its turn: the next slice of the run's budget, unless this
 * turn's Lua time is used up. Then the handle stays where it is in libuv's
 * idle queue, ahead of those that ran (they were stopped and restarted,
 * which queues them at the end): round robin. */
static void on_slice(uv_idle_t *t)
{
    fetch_t *f = t->data;
    if (f->wait != WAIT_SLICE) {
        uv_idle_stop(t);
        return;
    }
    uint64_t now = uv_now(engine_loop());
    if (now != F.turn_ms) {
        F.turn_ms = now;
        F.turn_lua_ns = 0;
    }
    if (F.turn_lua_ns >= TURN_LUA_NS) return;
    uv_idle_stop(t);
    f->wait = WAIT_NONE;
    int nargs = f->defer_nargs;
    bool fresh = f->defer_fresh;
    f->defer_nargs = 0;
    f->defer_fresh = false;
    fetch_resume(f, nargs, fresh);
}

/* Resume now, or, when this loop turn's Lua time is used up, on a later
 * turn in round robin with the runs resuming from a slice: a burst of
 * starts or I/O completions cannot hold the loop either. */
static void resume_or_defer(fetch_t *f, int nargs, bool fresh)
{
    if (uv_now(engine_loop()) == F.turn_ms && F.turn_lua_ns >= TURN_LUA_NS) {
        f->wait = WAIT_SLICE;
        f->defer_nargs = nargs;
        f->defer_fresh = fresh;
        uv_idle_start(slice_idle(f), on_slice);
        return;
    }
    fetch_resume(f, nargs, fresh);
}

static void on_http(void *priv, const char *err, http_response_t *resp)
{
    fetch_t *f = priv;
    f->call = NULL;
    /* every completed call, the one a timeout abandons included */
    if (f->p && f->p->ns) ns_stats_count_origin(&f->p->ns->stats, err, resp ? resp->status : 0);
    if (f->wait != WAIT_HTTP) return;
    /* curl's timer and ours end together; either way it is the fetch's
     * timeout, and counts as one (SPEC §7 result="timeout"). */
    if (err && strcmp(err, "timeout") == 0 && f->call_at_deadline) {
        on_timeout(&f->timeout);
        return;
    }
    f->wait = WAIT_NONE;
    f->io_ready = true;
    f->io_err = err ? err : (resp ? NULL : "no response");
    f->io_resp = resp; /* owned by the client; valid while we resume */
    fetch_resume(f, 0, true);
    f->io_err = NULL;
    f->io_resp = NULL;
}

/* ------------------------------------------------------------------------ */
/* ctx primitives (runtime.lua wraps them; see its header comment)           */
/* ------------------------------------------------------------------------ */

/* The fetch whose handle is argument 1, if it may start I/O now. */
static fetch_t *check_fetch(lua_State *L)
{
    fetch_handle_t *h = luaL_checkudata(L, 1, HANDLE_MT);
    fetch_t *f = h->f;
    if (!f || f->finalised)
        luaL_error(L, "ctx used after its fetch finished (returned, timed out or was aborted)");
    if (f != F.running) luaL_error(L, "ctx I/O used outside the fetch it belongs to");
    if (f->wait != WAIT_NONE || f->call) luaL_error(L, "fetch is already waiting on ctx I/O");
    /* runtime.lua checks the whole chain of resumes; this is the last link */
    if (!lua_isyieldable(L))
        luaL_error(L, "ctx I/O cannot wait here: it is called from inside a C function");
    return f;
}

/* In k: the fetch, which must still be running (an aborted run is never
 * resumed; this only guards against a bug). */
static fetch_t *io_resumed(lua_State *L)
{
    fetch_handle_t *h = lua_touserdata(L, 1);
    fetch_t *f = h ? h->f : NULL;
    if (!f || f->finalised) luaL_error(L, "fetch finished");
    if (!f->io_ready) luaL_error(L, "internal error: ctx I/O resumed without a result");
    f->io_ready = false;
    return f;
}

static int park(lua_State *L, fetch_t *f, wait_kind_t w, lua_KFunction k)
{
    f->wait = w;
    lua_pushlightuserdata(L, (void *)&fetch_io_sentinel);
    return lua_yieldk(L, 1, 0, k);
}

static int sleep_k(lua_State *L, int status, lua_KContext kctx)
{
    LC_UNUSED(status);
    LC_UNUSED(kctx);
    io_resumed(L);
    return 0;
}

/* sleep(h, seconds) */
static int prim_sleep(lua_State *L)
{
    fetch_t *f = check_fetch(L);
    double s = luaL_checknumber(L, 2);
    luaL_argcheck(L, s >= 0, 2, "seconds must be >= 0");
    double ms = ceil(s * 1000.0);
    if (ms > 1e12) ms = 1e12; /* the fetch timeout ends it long before */
    uv_timer_start(sleep_timer(f), on_sleep, (uint64_t)ms, 0);
    return park(L, f, WAIT_SLEEP, sleep_k);
}

/* Response table: {status=, body=, headers={lowercased name = value}};
 * repeated headers are joined with ", ". [] -> [res] */
static void push_response(lua_State *L, const http_response_t *resp)
{
    luaL_checkstack(L, 8, "http response");
    lua_createtable(L, 0, 3); /* [res] */
    lua_pushinteger(L, resp->status);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, resp->body.data ? resp->body.data : "", resp->body.len);
    lua_setfield(L, -2, "body");
    lua_createtable(L, 0, (int)(resp->nheaders < 64 ? resp->nheaders : 64)); /* [res, hdrs] */
    for (size_t i = 0; i < resp->nheaders; i++) {
        const char *name = resp->headers[i].name, *value = resp->headers[i].value;
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (const char *c = name; *c; c++)
            luaL_addchar(&b, (char)((*c >= 'A' && *c <= 'Z') ? *c + 32 : *c));
        luaL_pushresult(&b);  /* [res, hdrs, name] */
        lua_pushvalue(L, -1); /* [res, hdrs, name, name] */
        lua_rawget(L, -3);    /* [res, hdrs, name, old] */
        if (lua_type(L, -1) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushstring(L, value ? value : "");
            lua_concat(L, 3); /* [res, hdrs, name, old..", "..value] */
        } else {
            lua_pop(L, 1);
            lua_pushstring(L, value ? value : ""); /* [res, hdrs, name, value] */
        }
        lua_rawset(L, -3); /* [res, hdrs] */
    }
    lua_setfield(L, -2, "headers"); /* [res] */
}

static int http_k(lua_State *L, int status, lua_KContext kctx)
{
    LC_UNUSED(status);
    LC_UNUSED(kctx);
    fetch_t *f = io_resumed(L);
    if (f->io_err || !f->io_resp) {
        lua_pushnil(L);
        lua_pushfstring(L, "http %s %s: %s", lua_tostring(L, 2), lua_tostring(L, 3),
                        f->io_err ? f->io_err : "no response");
        return 2;
    }
    push_response(L, f->io_resp);
    return 1;
}

/* http(h, method, url, body|nil, timeout|nil, "Name: value"...)
 * -> response table, or nil, message (transport failure; runtime.lua raises) */
static int prim_http(lua_State *L)
{
    fetch_t *f = check_fetch(L);
    const char *method = luaL_checkstring(L, 2);
    const char *url = luaL_checkstring(L, 3);
    size_t blen = 0;
    const char *body = luaL_optlstring(L, 4, NULL, &blen);
    double timeout = luaL_optnumber(L, 5, 0);
    int nh = lua_gettop(L) > 5 ? lua_gettop(L) - 5 : 0;
    const char **hdrs = NULL;
    if (nh) {
        /* anchored on this frame, which stays on the stack while parked */
        hdrs = lua_newuserdatauv(L, (size_t)nh * sizeof(*hdrs), 0); /* [.., hdrs] */
        for (int i = 0; i < nh; i++)
            hdrs[i] = luaL_checkstring(L, 6 + i);
    }
    /* The request may not outlive the fetch: min(remaining, timeout). */
    uint64_t now = mono_ms();
    long ms = f->deadline_ms > now ? (long)(f->deadline_ms - now) : 1;
    f->call_at_deadline = true;
    if (timeout > 0 && timeout * 1000.0 < (double)ms) {
        ms = (long)ceil(timeout * 1000.0);
        f->call_at_deadline = false;
    }
    if (ms < 1) ms = 1;
    http_request_t req = {
        .method = method,
        .url = url,
        .headers = hdrs,
        .nheaders = (size_t)nh,
        .body = body,
        .body_len = blen,
        .timeout_ms = ms,
    };
    const char *err = NULL;
    http_call_t *call = http_start(&req, on_http, f, &err);
    if (!call) {
        lua_pushnil(L);
        lua_pushfstring(L, "http %s %s: %s", method, url, err ? err : "invalid request");
        return 2;
    }
    f->call = call;
    return park(L, f, WAIT_HTTP, http_k);
}

static int prim_now(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)now_ms());
    return 1;
}

/* log(level, msg), the ns name as upvalue 1 */
static int prim_log(lua_State *L)
{
    static const char *const names[] = {"debug", "info", "warn", "error", NULL};
    static const enum log_level levels[] = {LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR};
    enum log_level lvl = levels[luaL_checkoption(L, 1, "info", names)];
    const char *msg = luaL_checkstring(L, 2);
    if (lvl >= log_min_level) log_msg(lvl, "[%s] %s", lua_tostring(L, lua_upvalueindex(1)), msg);
    return 0;
}

void fetch_push_prims(lua_State *L, const char *ns)
{
    luaL_checkstack(L, 4, "prims");
    if (luaL_newmetatable(L, HANDLE_MT)) { /* [mt] */
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);            /* [] */
    lua_createtable(L, 0, 4); /* [prims] */
    lua_pushcfunction(L, prim_http);
    lua_setfield(L, -2, "http");
    lua_pushcfunction(L, prim_sleep);
    lua_setfield(L, -2, "sleep");
    lua_pushcfunction(L, prim_now);
    lua_setfield(L, -2, "now");
    lua_pushstring(L, ns);            /* [prims, ns] */
    lua_pushcclosure(L, prim_log, 1); /* [prims, log] */
    lua_setfield(L, -2, "log");       /* [prims] */
}

/* ------------------------------------------------------------------------ */
/* Starting and aborting                                                     */
/* ------------------------------------------------------------------------ */

typedef struct start_job {
    fetch_t *f;
    int fn_ref;
    bool with_handle;
    int (*push_args)(lua_State *L, void *arg);
    void *arg;
    int nargs; /* out: arguments on the thread's stack after the function */
} start_job_t;

/* In protected mode on the main thread: the run's thread with
 * [fn, h?, args...] on its stack, anchored in the registry. */
static int run_setup(lua_State *L)
{
    start_job_t *j = lua_touserdata(L, 1);
    fetch_t *f = j->f;
    lua_settop(L, 0);
    lua_State *co = NULL;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &thread_pool_key) != LUA_TTABLE) { /* [nil] */
        lua_pop(L, 1);
        lua_createtable(L, THREAD_POOL_MAX, 0); /* [pool] */
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &thread_pool_key);
    }
    lua_Unsigned pooled = lua_rawlen(L, -1); /* [pool] */
    if (pooled > 0) {
        lua_rawgeti(L, -1, (lua_Integer)pooled); /* [pool, co] */
        lua_pushnil(L);
        lua_rawseti(L, -3, (lua_Integer)pooled);
        co = lua_tothread(L, -1);
        lua_remove(L, 1); /* [co] */
    } else {
        lua_pop(L, 1);
        co = lua_newthread(L); /* [co] */
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, j->fn_ref); /* [co, fn] */
    int nargs = 0;
    fetch_handle_t *h = NULL;
    if (j->with_handle) {
        h = lua_newuserdatauv(L, sizeof(*h), 0); /* [co, fn, h] */
        h->f = NULL;
        luaL_setmetatable(L, HANDLE_MT);
        lua_pushvalue(L, -1);                      /* [co, fn, h, h] */
        f->h_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* [co, fn, h] */
        f->h = h;
        h->f = f;
        nargs++;
    }
    nargs += j->push_args(L, j->arg); /* [co, fn, h?, args...] */
    luaL_checkstack(co, nargs + 1, "policy run");
    lua_xmove(L, co, nargs + 1);                /* [co]; co: [fn, h?, args...] */
    f->co_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* [] */
    f->co = co;
    j->nargs = nargs;
    return 0;
}

static void run_start(policy_t *p, fetch_t *f, start_job_t *job)
{
    f->seq = ++F.seq;
    f->p = p;
    policy_ref(p);
    f->co_ref = f->h_ref = LUA_NOREF;
    f->start_ns = uv_hrtime();
    double tmo_ms = ceil(p->conf.fetch_timeout * 1000.0);
    if (!(tmo_ms >= 1)) tmo_ms = 1;
    if (tmo_ms > 1e12) tmo_ms = 1e12;
    f->deadline_ms = mono_ms() + (uint64_t)tmo_ms;
    uv_timer_init(engine_loop(), &f->timeout);
    f->timeout.data = f;
    f->open_handles = 1;

    list_push_back(&F.inflight_list, &f->node);
    F.inflight++;

    lua_State *L = p->L;
    job->f = f;
    lua_pushcfunction(L, run_setup); /* [fn] */
    lua_pushlightuserdata(L, job);   /* [fn, job] */
    policy_budget_start(L, p);
    int st = lua_pcall(L, 1, 0, 0); /* [] or [err] */
    if (st != LUA_OK) {
        lua_pop(L, 1);
        finalise_error(f, FETCH_ERROR, "not enough memory to start the policy function");
        release(f, true);
        return;
    }
    uv_timer_start(&f->timeout, on_timeout, (uint64_t)tmo_ms, 0);
    resume_or_defer(f, job->nargs, true);
}

typedef struct id_arg {
    const char *id;
    size_t len;
} id_arg_t;

static int push_id_arg(lua_State *L, void *arg)
{
    const id_arg_t *a = arg;
    lua_pushlstring(L, a->id, a->len);
    return 1;
}

void fetch_start(policy_t *p, const char *id, size_t idlen, fetch_cb cb, void *priv)
{
    fetch_t *f = xcalloc(1, sizeof(*f));
    f->cb = cb;
    f->priv = priv;
    pstate_t *ps = p->engine_private;
    id_arg_t a = {id, idlen};
    start_job_t job = {
        .fn_ref = ps->fetch_ref, .with_handle = true, .push_args = push_id_arg, .arg = &a};
    run_start(p, f, &job);
}

void policy_run(policy_t *p, int fn_ref, bool with_handle, const run_ops_t *ops, void *arg,
                void *priv)
{
    fetch_t *f = xcalloc(1, sizeof(*f));
    f->ops = ops;
    f->priv = priv;
    start_job_t job = {
        .fn_ref = fn_ref, .with_handle = with_handle, .push_args = ops->push_args, .arg = arg};
    run_start(p, f, &job);
}

void fetch_abort_all(void)
{
    /* Fetches a callback starts meanwhile are not ours to abort. */
    uint64_t upto = F.seq;
    fetch_t *f;
    while ((f = list_first_entry(&F.inflight_list, fetch_t, node)) && f->seq <= upto)
        fetch_abort(f, FETCH_ERROR, "shutting down");
}

size_t fetches_in_flight(void)
{
    return F.inflight;
}
