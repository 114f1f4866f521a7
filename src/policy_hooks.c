/* policy_hooks.c: a policy's on_event and warm (EVENT, WARM, background
 * warm runs), called synchronously.
 *
 * Unlike fetch, neither runs as a coroutine: each is one lua_pcall on the
 * state's main thread under the usual instruction and time budget. They
 * only compute what to invalidate or which ids to load, so they need no
 * I/O (their ctx.http and ctx.sleep raise; see runtime.lua), and a runaway
 * fails only the command that called it. runtime.lua validates what they
 * return; the strings are copied into C memory inside the protected call,
 * where nothing between the copies can raise (raw reads of validated
 * strings), so a partial copy never leaks. */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "policy_int.h"
#include "util.h"

typedef struct hook_job {
    policy_t *p;
    const char *name, *payload;
    size_t nlen, plen;
    event_result_t *ev;
    str_list_t *ids;
} hook_job_t;

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

/* Copy the array of strings at idx (validated by runtime.lua) into l. */
static void copy_strings(lua_State *L, int idx, str_list_t *l)
{
    size_t n = (size_t)lua_rawlen(L, idx);
    l->v = xcalloc(n ? n : 1, sizeof(*l->v));
    l->len = xcalloc(n ? n : 1, sizeof(*l->len));
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        lua_rawgeti(L, idx, (lua_Integer)i + 1); /* [.., s] */
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : "";
        l->v[i] = xmemdup(s, len);
        l->len[i] = len;
        l->n++;
        lua_pop(L, 1); /* [..] */
    }
}

static int on_event_protected(lua_State *L)
{
    hook_job_t *j = lua_touserdata(L, 1);
    pstate_t *ps = j->p->engine_private;
    luaL_checkstack(L, 6, "on_event");
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->on_event_ref); /* [job, run] */
    lua_pushlstring(L, j->name, j->nlen);                /* [job, run, name] */
    if (j->payload)
        lua_pushlstring(L, j->payload, j->plen);
    else
        lua_pushnil(L); /* [job, run, name, payload] */
    lua_call(L, 2, 4);  /* [job, keys, patterns, tags, flush] */
    copy_strings(L, 2, &j->ev->keys);
    copy_strings(L, 3, &j->ev->patterns);
    copy_strings(L, 4, &j->ev->tags);
    j->ev->flush = lua_toboolean(L, 5);
    return 0;
}

static int warm_protected(lua_State *L)
{
    hook_job_t *j = lua_touserdata(L, 1);
    pstate_t *ps = j->p->engine_private;
    luaL_checkstack(L, 4, "warm");
    lua_rawgeti(L, LUA_REGISTRYINDEX, ps->warm_ref); /* [job, run] */
    lua_call(L, 0, 1);                               /* [job, ids] */
    copy_strings(L, 2, j->ids);
    return 0;
}

/* Run fn(job) under the budget; on failure "<what> failed: <message>". */
static int call_hook(lua_CFunction fn, hook_job_t *job, const char *what, char *err, size_t errlen)
{
    lua_State *L = job->p->L;
    lua_pushcfunction(L, fn);      /* [fn] */
    lua_pushlightuserdata(L, job); /* [fn, job] */
    policy_budget_start(L, job->p);
    int st = lua_pcall(L, 1, 0, 0); /* [] or [err] */
    if (st == LUA_OK) return 0;
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (st == LUA_ERRMEM)
        snprintf(err, errlen, "%s failed: not enough memory (a policy's Lua state may use %zu MiB)",
                 what, job->p->mem_limit >> 20);
    else
        snprintf(err, errlen, "%s failed: %s", what, msg ? msg : "(error object is not a string)");
    lua_pop(L, 1); /* [] */
    if (st == LUA_ERRMEM) {
        policy_budget_start(L, job->p);
        lua_gc(L, LUA_GCCOLLECT);
    }
    return -1;
}

int policy_on_event(policy_t *p, const char *name, size_t nlen, const char *payload, size_t plen,
                    event_result_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    hook_job_t job = {
        .p = p, .name = name, .nlen = nlen, .payload = payload, .plen = plen, .ev = out};
    if (call_hook(on_event_protected, &job, "on_event", err, errlen) == 0) return 0;
    event_result_free(out);
    return -1;
}

int policy_warm(policy_t *p, str_list_t *ids, char *err, size_t errlen)
{
    memset(ids, 0, sizeof(*ids));
    hook_job_t job = {.p = p, .ids = ids};
    if (call_hook(warm_protected, &job, "warm", err, errlen) == 0) return 0;
    str_list_free(ids);
    return -1;
}
