/* policy_int.h: what policy.c, fetch.c and policy_hooks.c share about a
 * loaded policy's Lua state. Private to those files; everything else uses
 * policy.h. */
#ifndef LC_POLICY_INT_H
#define LC_POLICY_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "policy.h"

/* The budget of one run of policy code: a lua_pcall on the state's main
 * thread (loading), or one coroutine run (fetch, on_event, warm, ttl) from
 * its start or an I/O resume until it finishes or parks on I/O. A run is
 * spent in slices: after SLICE of Lua time the count hook yields the
 * coroutine back to the loop, which resumes it on the next iteration, so a
 * busy policy delays other clients by a slice, not by its whole budget. */
typedef struct lua_budget {
    uint64_t instr;           /* VM instructions (and pattern steps) used by this run */
    uint64_t used_ns;         /* Lua time of this run's finished slices */
    uint64_t slice_start;     /* uv_hrtime() when the current slice began */
    bool tripped;             /* over budget: the hook stops whatever runs */
    bool over_time;           /* tripped by the clock, not the count */
    bool stalled;             /* tripped by holding the loop where it cannot yield */
    bool sliced;              /* the run's coroutine yields at the end of a slice */
    lua_State *nested_sliced; /* a coroutine of the policy's own the hook yielded */
    /* The coroutine this run belongs to, which the hook may yield; NULL on
     * the main thread and while a thread is being closed. */
    lua_State *thread;
    char where[96]; /* "file:line:" where the hook stopped a run by yielding */
} lua_budget_t;

/* Per policy version, behind policy_t.engine_private. */
typedef struct pstate {
    lua_budget_t *budget;     /* the run in progress (main_budget, or a coroutine's) */
    lua_budget_t main_budget; /* calls on the main thread */
    int fetch_ref;            /* registry: runtime's fetch(h, id), the coroutine body */
    int ttl_ref;              /* registry: runtime's ttl_for(id, value) */
    int on_event_ref;         /* registry: runtime's on_event(name, payload) */
    int warm_ref;             /* registry: runtime's warm() */
    int write_ref;            /* registry: runtime's write(h, id, value) */
    int delete_ref;           /* registry: runtime's delete(h, id) */
    int write_batch_ref;      /* registry: runtime's write_batch(h, items) */
} pstate_t;

uv_loop_t *engine_loop(void);

/* Arm the budget for one call into Lua on the state's main thread. */
void policy_budget_start(lua_State *L, policy_t *p);
/* Clean-up (lua_close of a policy that failed to load): the first hook
 * that fires stops whatever policy code still runs. */
void policy_budget_exhaust(lua_State *L, policy_t *p);

/* Make b the budget of the run about to resume on thread co: fresh (a new
 * run) or continued (after a slice). Returns the budget it replaces, to be
 * given back to policy_budget_leave when lua_resume returns. */
lua_budget_t *policy_budget_enter(policy_t *p, lua_State *co, lua_budget_t *b, bool fresh);
void policy_budget_leave(policy_t *p, lua_budget_t *prev);
/* The error msg of a run that failed on thread co (its stack is left as it
 * was when the error was raised): an error raised inside a shipped lua/
 * module the policy called ("json.lua:76: Cannot serialise function") is
 * given the policy's own line instead, written into buf. Returns msg or
 * buf. Allocates nothing. */
const char *policy_error_relocate(lua_State *co, const char *msg, char *buf, size_t len);
/* The message of a run the hook stopped by yielding (b->tripped). */
void policy_budget_message(const lua_budget_t *b, char *buf, size_t len);

/* fetch.c: push the table of C primitives behind ctx (see runtime.lua) and
 * register the fetch handle's metatable. Called once per state while it is
 * loaded, in protected mode. [] -> [prims] */
void fetch_push_prims(lua_State *L, const char *ns);

/* Its address is the light userdata ctx I/O primitives yield, so the fetch
 * runner and sandbox coroutine.resume can tell an I/O park from a user
 * coroutine.yield. */
extern const char fetch_io_sentinel;

/* ---- the coroutine runner (fetch.c) ----
 *
 * Runs one runtime.lua function of a policy as a budgeted coroutine: fetch,
 * on_event, warm and ttl_for all go through it, so they share one
 * exactly-once start/park/resume/finish path. */
typedef struct run_ops {
    /* In protected mode on the main thread, after the function was pushed:
     * push its arguments and return how many. May raise (memory). */
    int (*push_args)(lua_State *L, void *arg);
    /* Finished: its nres results are on top of co (room for 8 more values
     * is checked). Must not raise. */
    void (*done)(void *priv, lua_State *co, int nres);
    /* Failed, timed out or aborted, with the message. */
    void (*failed)(void *priv, fetch_kind_t kind, const char *msg);
} run_ops_t;

/* Run the function at registry ref fn_ref of p with the arguments push_args
 * pushes (after the fetch handle when with_handle). Exactly one of
 * ops->done / ops->failed runs, possibly before policy_run returns. Holds a
 * reference on p until then. The run's wall-clock limit is
 * conf.fetch_timeout. */
void policy_run(policy_t *p, int fn_ref, bool with_handle, const run_ops_t *ops, void *arg,
                void *priv);

#endif
