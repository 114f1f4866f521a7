/* policy_int.h: what policy.c and fetch.c share about a loaded policy's Lua
 * state. Private to those two files; everything else uses policy.h. */
#ifndef LC_POLICY_INT_H
#define LC_POLICY_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "policy.h"

/* Per policy version, behind policy_t.engine_private. */
typedef struct pstate {
    uint64_t instr;       /* VM instructions used by the current call into Lua */
    uint64_t deadline_ns; /* uv_hrtime() past which the current call is over time */
    bool tripped;         /* over budget: the hook fires on every instruction */
    bool over_time;       /* tripped by the clock, not the count */
    int fetch_ref;        /* registry: runtime's fetch(h, id), the coroutine body */
    int ttl_ref;          /* registry: runtime's ttl_for(id, value) */
    int on_event_ref;     /* registry: runtime's on_event(name, payload) */
    int warm_ref;         /* registry: runtime's warm() */
} pstate_t;

uv_loop_t *engine_loop(void);

/* Arm the instruction budget for one call into Lua on thread L (a
 * lua_pcall on the main thread or a lua_resume of a coroutine). */
void policy_budget_start(lua_State *L, policy_t *p);
/* Clean-up runs (unwinding an aborted fetch, closing a thread): the first
 * hook that fires stops whatever policy code still runs. */
void policy_budget_exhaust(lua_State *L, policy_t *p);

/* fetch.c: push the table of C primitives behind ctx (see runtime.lua) and
 * register the fetch handle's metatable. Called once per state while it is
 * loaded, in protected mode. [] -> [prims] */
void fetch_push_prims(lua_State *L, const char *ns);

/* Its address is the light userdata ctx I/O primitives yield, so the fetch
 * runner and sandbox coroutine.resume can tell an I/O park from a user
 * coroutine.yield. */
extern const char fetch_io_sentinel;

#endif
