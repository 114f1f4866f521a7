/* policy.h: namespaces and their Lua policies (SPEC §4).
 *
 * Isolation: every loaded version of a namespace's policy is its own
 * lua_State, created with our allocator (memory cap per state) and run with
 * a count hook (an instruction and time budget per call into Lua, spent in
 * ~1 ms slices between which the loop serves others; a spent budget ends
 * the call whatever pcall does). A policy version is reference-counted:
 * a reload swaps ns->cur while fetches in flight keep the version they
 * started on until they finish. */
#ifndef LC_POLICY_H
#define LC_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "stats.h"

typedef struct lua_State lua_State;

/* The validated fields of a policy, as numbers C reads without Lua. */
typedef struct policy_conf {
    double ttl;            /* seconds fresh (when ttl_is_fn is false); default 300 */
    bool ttl_is_fn;        /* ttl = function(id, value) -> seconds */
    double ttl_jitter;     /* fraction, 0..1; default 0 */
    double negative_ttl;   /* seconds; default 0 (not-found not cached) */
    double stale_ttl;      /* default 0 */
    double stale_if_error; /* default 0 */
    double error_ttl;      /* default 0 */
    double early_refresh;  /* XFetch beta; default 0 (off) */
    double fetch_timeout;  /* default 5 */
    double lock_timeout;   /* default 10 */
    double l1_ttl;         /* default 1 (0: off) */
    double warm_every;     /* default 0 (off) */
    long long version;     /* default 1 */
    bool has_on_event, has_warm;
    bool has_write, has_delete; /* write-through SET / DEL (policy_write, policy_delete) */
    /* write_behind = {...} with write_batch (write_behind.c; docs/POLICIES.md) */
    bool has_write_behind;
    double wb_delay;       /* seconds between flushes; default 5 */
    long wb_batch;         /* queued writes per write_batch call, at most; default 100 */
    bool wb_coalesce;      /* only the last write per id of a batch; default true */
    long wb_max_retries;   /* retries of a failed batch before dead letters; default 10 */
    double wb_claim_after; /* seconds idle before another instance takes a batch; default 30 */
} policy_conf_t;

typedef struct ns ns_t;

typedef struct policy {
    int refs;
    ns_t *ns;
    lua_State *L;
    policy_conf_t conf;
    char sha1[41]; /* of the file's bytes */
    size_t mem_used, mem_limit;
    void *engine_private; /* owned by policy.c */
} policy_t;

struct ns {
    char *name;
    size_t name_len;  /* strlen(name): read on every request */
    char *path;       /* policies/NAME.lua */
    policy_t *cur;    /* NULL when no load ever succeeded */
    char *last_error; /* "" after a successful load; else "file:line: message" */
    char sha1[41];    /* of the last file attempted ("" if unreadable) */
    ns_stats_t stats;
    /* Its file was deleted (hot reload): ns_find, ns_count and ns_at skip it,
     * so it answers "unknown namespace" and leaves POLICIES/INFO. The struct
     * is never freed before engine_close, since requests in flight hold
     * ns_t pointers; cur is kept too (work in flight finishes on it). If the
     * file comes back, this same struct serves again (stats continue). */
    bool removed;
    /* Namespace generation (FLUSHNS; docs/STORAGE.md): an entry stored under
     * an older one is absent. It only grows: learned from Redis, from "G"
     * broadcasts and from entries stored under a newer one (nsgen.c). */
    long long gen;
    struct {
        bool started;      /* the first run (at start, or when the file appeared) began */
        bool running;      /* a background run is under way */
        uint64_t last_end; /* mono ms when the last background run ended */
    } warm;                /* background warm runs (warm.c) */
};

typedef struct engine_conf {
    const char *policies_dir;
    const char *lua_path;   /* folder of the shipped lua/ modules */
    size_t mem_limit;       /* bytes per Lua state */
    uint64_t instr_budget;  /* VM instructions per call into Lua; 0: 100M */
    uint64_t time_limit_ms; /* and wall-clock ms per call into Lua; 0: 1000 (instructions
                               that call C, e.g. string.format, run ~10x slower than a
                               tight loop, so the count alone does not bound the time) */
} engine_conf_t;

/* Read the shipped lua/ modules into memory (require never touches disk
 * afterwards) and remember the configuration. -1 with err filled on failure. */
int engine_init(uv_loop_t *loop, const engine_conf_t *conf, char *err, size_t errlen);
void engine_close(void); /* aborts fetches (see fetch_abort_all), closes all states */

/* Load every *.lua in the policies folder, synchronously (start-up).
 * Returns the number that failed (each logged, kept in ns->last_error). A
 * namespace whose load failed still exists (so it can answer "failed to
 * load"). Calling it again rescans: new files become namespaces, known ones
 * are reloaded (forced), served ones whose file is gone are removed. */
int engine_load_all(void);
/* Reload one namespace from disk now, synchronously (tests, tools): 0 ok,
 * -1 failed (old version stays; error in ns->last_error). A missing file is
 * an error here, not a removal. The server reloads through watch.c instead,
 * which reads files off the loop and calls engine_apply/engine_remove. */
int engine_reload(ns_t *ns);

/* ---- hot reload (watch.c drives these; docs/POLICIES.md "Reloading") ---- */

/* A policy file as read from disk. */
typedef struct policy_src {
    char *data; /* the file's bytes, NUL-terminated; NULL if the read failed */
    size_t len;
    char sha1[41];   /* hex SHA-1 of data; "" if the read failed */
    char error[512]; /* read failed: "path: reason" */
    int err_no;      /* read failed: errno (ENOENT: the file is gone; EAGAIN: it changed
                      * while being read, a writer is at work) */
} policy_src_t;

/* Read (at most 4 MiB) and hash one policy file. Thread-safe: touches no
 * engine state, so it runs in the libuv threadpool. 0 ok, -1 (src->error). */
int policy_src_read(const char *path, policy_src_t *src);
/* The same for file name inside the open folder dirfd (path: for messages). */
int policy_src_read_at(int dirfd, const char *name, const char *path, policy_src_t *src);
void policy_src_free(policy_src_t *src);

/* [A-Za-z0-9_.-]+ (SPEC §2). Thread-safe. */
bool ns_name_valid(const char *name, size_t len);

typedef enum policy_apply {
    POLICY_UNCHANGED, /* same sha1 (or same read error) as the last attempt: nothing done */
    POLICY_LOADED,    /* a new version serves */
    POLICY_FAILED,    /* the previous version (if any) stays; error in ns->last_error */
} policy_apply_t;

/* NAME.lua exists and src is what it holds now: create the namespace if it
 * is new, serve a removed one again, else load a new version. Unless force,
 * content whose sha1 (or read error) equals the last attempt's is a no-op,
 * so touching a file reloads nothing. Counts reloads_ok/reloads_error and
 * logs each outcome (no-ops are not logged). */
policy_apply_t engine_apply(const char *name, const policy_src_t *src, bool force);
/* NAME.lua was deleted: stop serving NAME (see ns_t.removed). Returns true
 * if it was being served. */
bool engine_remove(const char *name);
/* fn(ns) runs each time a namespace starts being served after start-up: a
 * new file, or one that came back after removal (its policy may not be
 * loaded yet). The cache reads the namespace's generation there. */
typedef void (*ns_served_fn)(ns_t *ns);
void engine_set_ns_served_hook(ns_served_fn fn);
/* Like ns_find, but also finds removed namespaces. */
ns_t *ns_find_any(const char *name, size_t len);
const char *engine_policies_dir(void);

ns_t *ns_find(const char *name, size_t len);
size_t ns_count(void);
ns_t *ns_at(size_t i); /* sorted by name */

void policy_ref(policy_t *p);
void policy_unref(policy_t *p);

/* --check: load and validate each path (a folder: every NAME.lua in it; a
 * file: that policy), or conf->policies_dir when npaths is 0; print every
 * error and warning as "file:line: message" on stderr; returns the number
 * of policies that failed (warnings do not count). */
int engine_check(const engine_conf_t *conf, const char *const *paths, size_t npaths);
int engine_check_dir(const engine_conf_t *conf); /* engine_check(conf, NULL, 0) */

/* ---- on_event, warm and ttl: a policy's hooks (policy_hooks.c) ----
 *
 * Each runs as a budgeted coroutine like fetch (sliced, so a runaway delays
 * other clients by about a millisecond at a time, and fails only its own
 * command) and returns validated, C-owned copies to a callback that runs
 * exactly once, possibly before the start function returns. Their ctx has
 * ns, now and log; ctx.http and ctx.sleep raise (docs/POLICIES.md). Each
 * holds a reference on p until its callback has run. */

typedef struct str_list {
    char **v; /* each NUL-terminated too, for messages */
    size_t *len;
    size_t n;
} str_list_t;

void str_list_free(str_list_t *l);

typedef struct event_result {
    str_list_t keys, patterns, tags;
    bool flush;
} event_result_t;

void event_result_free(event_result_t *r);

/* ev is the callback's to keep or free (event_result_free); on failure it
 * is empty and err says "on_event failed: ...". */
typedef void (*policy_event_cb)(void *priv, event_result_t *ev, const char *err);
/* on_event(name, data, ctx); payload NULL when absent. */
void policy_on_event(policy_t *p, const char *name, size_t nlen, const char *payload, size_t plen,
                     policy_event_cb cb, void *priv);

/* ids (integers as decimal text) are the callback's to keep or free; on
 * failure they are empty and err says "warm failed: ...". */
typedef void (*policy_warm_cb)(void *priv, str_list_t *ids, const char *err);
void policy_warm(policy_t *p, policy_warm_cb cb, void *priv);

/* Seconds of freshness for a value stored by SET: ttl(id, value) when the
 * policy's ttl is a function, else conf.ttl (the callback then runs at
 * once). On failure ttl is conf's default 300 and err says
 * "ttl failed: file:line: ...". */
typedef void (*policy_ttl_cb)(void *priv, double ttl, const char *err);
void policy_ttl(policy_t *p, const char *id, size_t idlen, const char *value, size_t vlen,
                policy_ttl_cb cb, void *priv);

/* Write-through: write(id, value, ctx) (SET) and delete(id, ctx) (DEL) at
 * the origin, as budgeted coroutines with a full ctx (ctx.http, within
 * fetch_timeout). value/len: the bytes to cache (write's result, or the
 * value given), valid during the call; on failure NULL and err says
 * "write failed: ..." / "delete failed: ...". */
typedef void (*policy_write_cb)(void *priv, const char *value, size_t len, const char *err);
void policy_write(policy_t *p, const char *id, size_t idlen, const char *value, size_t vlen,
                  policy_write_cb cb, void *priv);
void policy_delete(policy_t *p, const char *id, size_t idlen, policy_write_cb cb, void *priv);

/* Write-behind: write_batch(items, ctx) with a full ctx, as write. items[i]
 * is {id=, value=, op="set"|"del", seq=} (value absent for del); the strings
 * are copied into Lua before the call starts. cb runs once: err NULL on
 * success, else "write_batch failed: ...". */
typedef struct policy_write_item {
    const char *id, *value, *seq; /* value NULL: op "del" */
    size_t idlen, vlen, seqlen;
} policy_write_item_t;
typedef void (*policy_batch_cb)(void *priv, const char *err);
void policy_write_batch(policy_t *p, const policy_write_item_t *items, size_t n, policy_batch_cb cb,
                        void *priv);

/* ---- fetch: running a policy's fetch(id, ctx) as a coroutine ---- */

typedef enum fetch_kind { FETCH_OK, FETCH_NOT_FOUND, FETCH_ERROR, FETCH_TIMEOUT } fetch_kind_t;

typedef struct fetch_result {
    fetch_kind_t kind;
    const char *value; /* FETCH_OK: bytes to store (strings as-is, tables as JSON) */
    size_t len;
    double ttl; /* OK: seconds fresh before jitter (opts.ttl, else ttl(id,value), else conf.ttl)
                   NOT_FOUND: opts.ttl of `return nil, {ttl=}`, else conf.negative_ttl */
    const char *const *tags; /* OK: opts.tags (binary-safe: see tag_lens) */
    const size_t *tag_lens;
    size_t ntags;
    const char *error; /* ERROR/TIMEOUT: message for "-ERR fetch failed: <message>" */
    double duration;   /* seconds the fetch took */
    /* The version the fetch ran on, which a reload may have replaced as
     * ns->cur meanwhile: its conf is the one to store the result by. */
    const policy_t *policy;
} fetch_result_t;

/* r and everything it points to are valid only during the callback. */
typedef void (*fetch_cb)(void *priv, const fetch_result_t *r);

/* Run fetch(id, ctx) of policy p. cb runs exactly once: with the result, the
 * error, FETCH_TIMEOUT after conf.fetch_timeout, or FETCH_ERROR "shutting
 * down" from fetch_abort_all(). cb may run before fetch_start returns (a
 * fetch that needs no I/O). Holds a reference on p until cb has run. */
void fetch_start(policy_t *p, const char *id, size_t idlen, fetch_cb cb, void *priv);
void fetch_abort_all(void);
size_t fetches_in_flight(void);

#endif
