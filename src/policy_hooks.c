/* policy_hooks.c: a policy's on_event, warm, ttl, write and delete
 * functions (EVENT, WARM, background warm runs, SET with a ttl function,
 * write-through SET and DEL, write-behind batches).
 *
 * Each runs through the coroutine runner (fetch.c, policy_run) like fetch:
 * budgeted and sliced, so a runaway fails only the command that called it
 * and never holds the loop for more than a slice. They only compute what to
 * invalidate, which ids to load or how long a value lives, so they need no
 * I/O (their ctx.http and ctx.sleep raise; see runtime.lua); write and
 * delete talk to the origin, so they get the fetch handle and a full ctx. runtime.lua
 * validates what they return; the strings are copied into C memory from
 * the finished thread's stack with raw reads that cannot raise. */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "policy_int.h"
#include "util.h"

void str_list_free(str_list_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    free(l->len);
    memset(l, 0, sizeof(*l));
}

void event_result_free(event_result_t *r)
{
    str_list_free(&r->keys);
    str_list_free(&r->patterns);
    str_list_free(&r->tags);
}

/* Copy the array of strings at idx of co (validated by runtime.lua) into l.
 * One stack slot is used (the runner checked room for 8). */
static void copy_strings(lua_State *co, int idx, str_list_t *l)
{
    size_t n = lua_type(co, idx) == LUA_TTABLE ? (size_t)lua_rawlen(co, idx) : 0;
    l->v = xcalloc(n ? n : 1, sizeof(*l->v));
    l->len = xcalloc(n ? n : 1, sizeof(*l->len));
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        lua_rawgeti(co, idx, (lua_Integer)i + 1); /* [.., s] */
        const char *s = lua_type(co, -1) == LUA_TSTRING ? lua_tolstring(co, -1, &len) : "";
        l->v[i] = xmemdup(s, len);
        l->len[i] = len;
        l->n++;
        lua_pop(co, 1); /* [..] */
    }
}

/* "<what> failed: <message>" (what: "on_event", "warm", "ttl"). The
 * message says itself what it is about ("file:line: ttl(id, value) must
 * return ..."), so nothing more goes in front. */
static void hook_error(char *buf, size_t len, const char *what, const char *msg)
{
    snprintf(buf, len, "%s failed: %s", what, msg);
}

/* ------------------------------------------------------------------------ */
/* on_event                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct event_run {
    const char *name, *payload; /* valid while pushed (policy_run's start) */
    size_t nlen, plen;
    policy_event_cb cb;
    void *priv;
} event_run_t;

static int event_push(lua_State *L, void *arg)
{
    const event_run_t *r = arg;
    lua_pushlstring(L, r->name, r->nlen);
    if (r->payload)
        lua_pushlstring(L, r->payload, r->plen);
    else
        lua_pushnil(L);
    return 2;
}

/* [keys, patterns, tags, flush] */
static void event_done(void *priv, lua_State *co, int nres)
{
    event_run_t *r = priv;
    event_result_t ev = {0};
    int base = lua_gettop(co) - nres + 1;
    if (nres == 4) {
        copy_strings(co, base, &ev.keys);
        copy_strings(co, base + 1, &ev.patterns);
        copy_strings(co, base + 2, &ev.tags);
        ev.flush = lua_toboolean(co, base + 3);
    }
    r->cb(r->priv, &ev, nres == 4 ? NULL : "on_event failed: internal error: bad result");
    free(r);
}

static void event_failed(void *priv, fetch_kind_t kind, const char *msg)
{
    LC_UNUSED(kind);
    event_run_t *r = priv;
    char err[1024];
    hook_error(err, sizeof(err), "on_event", msg);
    event_result_t ev = {0};
    r->cb(r->priv, &ev, err);
    free(r);
}

static const run_ops_t event_ops = {event_push, event_done, event_failed};

void policy_on_event(policy_t *p, const char *name, size_t nlen, const char *payload, size_t plen,
                     policy_event_cb cb, void *priv)
{
    event_run_t *r = xcalloc(1, sizeof(*r));
    *r = (event_run_t){name, payload, nlen, plen, cb, priv};
    pstate_t *ps = p->engine_private;
    policy_run(p, ps->on_event_ref, false, &event_ops, r, r);
}

/* ------------------------------------------------------------------------ */
/* warm                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct warm_run {
    policy_warm_cb cb;
    void *priv;
} warm_run_t;

static int no_args(lua_State *L, void *arg)
{
    LC_UNUSED(L);
    LC_UNUSED(arg);
    return 0;
}

/* [ids] */
static void warm_done(void *priv, lua_State *co, int nres)
{
    warm_run_t *r = priv;
    str_list_t ids = {0};
    if (nres == 1) copy_strings(co, -1, &ids);
    r->cb(r->priv, &ids, nres == 1 ? NULL : "warm failed: internal error: bad result");
    free(r);
}

static void warm_failed(void *priv, fetch_kind_t kind, const char *msg)
{
    LC_UNUSED(kind);
    warm_run_t *r = priv;
    char err[1024];
    hook_error(err, sizeof(err), "warm", msg);
    str_list_t ids = {0};
    r->cb(r->priv, &ids, err);
    free(r);
}

static const run_ops_t warm_ops = {no_args, warm_done, warm_failed};

void policy_warm(policy_t *p, policy_warm_cb cb, void *priv)
{
    warm_run_t *r = xcalloc(1, sizeof(*r));
    *r = (warm_run_t){cb, priv};
    pstate_t *ps = p->engine_private;
    policy_run(p, ps->warm_ref, false, &warm_ops, r, r);
}

/* ------------------------------------------------------------------------ */
/* ttl(id, value) for SET                                                    */
/* ------------------------------------------------------------------------ */

typedef struct ttl_run {
    const char *id, *value; /* valid while pushed */
    size_t idlen, vlen;
    policy_ttl_cb cb;
    void *priv;
} ttl_run_t;

static int ttl_push(lua_State *L, void *arg)
{
    const ttl_run_t *r = arg;
    lua_pushlstring(L, r->id, r->idlen);
    lua_pushlstring(L, r->value, r->vlen);
    return 2;
}

/* [ttl], validated by runtime.lua */
static void ttl_done(void *priv, lua_State *co, int nres)
{
    ttl_run_t *r = priv;
    if (nres == 1 && lua_type(co, -1) == LUA_TNUMBER)
        r->cb(r->priv, lua_tonumber(co, -1), NULL);
    else
        r->cb(r->priv, 300, "ttl failed: internal error: bad result");
    free(r);
}

static void ttl_failed(void *priv, fetch_kind_t kind, const char *msg)
{
    LC_UNUSED(kind);
    ttl_run_t *r = priv;
    char err[1024];
    hook_error(err, sizeof(err), "ttl", msg);
    r->cb(r->priv, 300, err);
    free(r);
}

static const run_ops_t ttl_ops = {ttl_push, ttl_done, ttl_failed};

void policy_ttl(policy_t *p, const char *id, size_t idlen, const char *value, size_t vlen,
                policy_ttl_cb cb, void *priv)
{
    if (!p->conf.ttl_is_fn) {
        cb(priv, p->conf.ttl, NULL);
        return;
    }
    ttl_run_t *r = xcalloc(1, sizeof(*r));
    *r = (ttl_run_t){id, value, idlen, vlen, cb, priv};
    pstate_t *ps = p->engine_private;
    policy_run(p, ps->ttl_ref, false, &ttl_ops, r, r);
}

/* ------------------------------------------------------------------------ */
/* write(id, value, ctx) and delete(id, ctx): write-through                   */
/* ------------------------------------------------------------------------ */

typedef struct write_run {
    const char *id, *value; /* valid while pushed; value NULL for delete */
    size_t idlen, vlen;
    const char *what; /* "write" or "delete" */
    policy_write_cb cb;
    void *priv;
} write_run_t;

static int write_push(lua_State *L, void *arg)
{
    const write_run_t *r = arg;
    lua_pushlstring(L, r->id, r->idlen);
    if (!r->value) return 1;
    lua_pushlstring(L, r->value, r->vlen);
    return 2;
}

/* [bytes] for write (validated by runtime.lua), [true] for delete */
static void write_done(void *priv, lua_State *co, int nres)
{
    write_run_t *r = priv;
    size_t len = 0;
    const char *v = nres == 1 && lua_type(co, -1) == LUA_TSTRING ? lua_tolstring(co, -1, &len) : "";
    if (nres == 1)
        r->cb(r->priv, v, len, NULL);
    else
        r->cb(r->priv, NULL, 0, "write failed: internal error: bad result");
    free(r);
}

static void write_failed(void *priv, fetch_kind_t kind, const char *msg)
{
    LC_UNUSED(kind); /* a timeout's message says so */
    write_run_t *r = priv;
    char err[1024];
    hook_error(err, sizeof(err), r->what, msg);
    r->cb(r->priv, NULL, 0, err);
    free(r);
}

static const run_ops_t write_ops = {write_push, write_done, write_failed};

void policy_write(policy_t *p, const char *id, size_t idlen, const char *value, size_t vlen,
                  policy_write_cb cb, void *priv)
{
    write_run_t *r = xcalloc(1, sizeof(*r));
    *r = (write_run_t){id, value ? value : "", idlen, vlen, "write", cb, priv};
    pstate_t *ps = p->engine_private;
    policy_run(p, ps->write_ref, true, &write_ops, r, r);
}

void policy_delete(policy_t *p, const char *id, size_t idlen, policy_write_cb cb, void *priv)
{
    write_run_t *r = xcalloc(1, sizeof(*r));
    *r = (write_run_t){id, NULL, idlen, 0, "delete", cb, priv};
    pstate_t *ps = p->engine_private;
    policy_run(p, ps->delete_ref, true, &write_ops, r, r);
}

/* ------------------------------------------------------------------------ */
/* write_batch(items, ctx): write-behind                                     */
/* ------------------------------------------------------------------------ */

typedef struct batch_run {
    const policy_write_item_t *items; /* valid while pushed */
    size_t n;
    policy_batch_cb cb;
    void *priv;
} batch_run_t;

/* [items]: { {id=, value=, op=, seq=}, ... } */
static int batch_push(lua_State *L, void *arg)
{
    const batch_run_t *r = arg;
    luaL_checkstack(L, 4, "write_batch items");
    lua_createtable(L, (int)r->n, 0); /* [items] */
    for (size_t i = 0; i < r->n; i++) {
        const policy_write_item_t *it = &r->items[i];
        lua_createtable(L, 0, 4); /* [items, item] */
        lua_pushlstring(L, it->id, it->idlen);
        lua_setfield(L, -2, "id");
        lua_pushstring(L, it->value ? "set" : "del");
        lua_setfield(L, -2, "op");
        if (it->value) {
            lua_pushlstring(L, it->value, it->vlen);
            lua_setfield(L, -2, "value");
        }
        lua_pushlstring(L, it->seq, it->seqlen);
        lua_setfield(L, -2, "seq");
        lua_rawseti(L, -2, (lua_Integer)i + 1); /* [items] */
    }
    return 1;
}

static void batch_done(void *priv, lua_State *co, int nres)
{
    LC_UNUSED(co);
    LC_UNUSED(nres); /* runtime.lua returns true or raises */
    batch_run_t *r = priv;
    r->cb(r->priv, NULL);
    free(r);
}

static void batch_failed(void *priv, fetch_kind_t kind, const char *msg)
{
    LC_UNUSED(kind);
    batch_run_t *r = priv;
    char err[1024];
    hook_error(err, sizeof(err), "write_batch", msg);
    r->cb(r->priv, err);
    free(r);
}

static const run_ops_t batch_ops = {batch_push, batch_done, batch_failed};

void policy_write_batch(policy_t *p, const policy_write_item_t *items, size_t n, policy_batch_cb cb,
                        void *priv)
{
    batch_run_t *r = xcalloc(1, sizeof(*r));
    *r = (batch_run_t){items, n, cb, priv};
    pstate_t *ps = p->engine_private;
    policy_run(p, ps->write_batch_ref, true, &batch_ops, r, r);
}
