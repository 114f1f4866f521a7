/* policy.c: namespaces and their sandboxed Lua policies (SPEC §2, §4).
 *
 * Every successfully loaded version of a policy file is its own lua_State:
 *  - created by lua_newstate with lc_alloc, which refuses to grow the state
 *    past engine_conf.mem_limit (Lua then raises "not enough memory" in the
 *    call that asked, and the state stays usable);
 *  - watched by a count hook (budget_hook): every run of policy code (the
 *    main chunk's lua_pcall; a coroutine run of fetch, on_event, warm or
 *    ttl from its start or an I/O resume) gets instr_budget VM instructions
 *    and time_limit_ms of Lua time, whichever runs out first. A coroutine
 *    run is paused every SLICE_NS (the hook yields; fetch.c resumes it on a
 *    later loop turn). Once over budget the hook ends a coroutine run by
 *    yielding, which nothing can catch; elsewhere it raises on every
 *    instruction, so pcall cannot swallow the kill (the Redis script_lua.c
 *    watchdog). Code that cannot yield is cut off after STALL_NS;
 *  - opened with base, table, string, math, utf8, coroutine and a trimmed os
 *    only (no io, debug or package), string.dump removed; cjson is opened
 *    privately and handed to the sandbox, whose require is the only way in;
 *  - string.find/match/gmatch/gsub replaced by lua_pattern.c's, whose C
 *    matcher charges its steps to the same budget (pattern_charge), since
 *    the hook cannot reach into C.
 *
 * The shipped lua/ modules are read into memory by engine_init; the bootstrap
 * (json, sandbox, validate, runtime) runs in each new state from those
 * copies, and a policy's require compiles them from memory too, so no Lua
 * code ever touches the disk after start-up. Policy files are read at
 * start-up here, and afterwards by watch.c in the libuv threadpool (hot
 * reload, RELOAD, SIGHUP), which hands their bytes to engine_apply.
 *
 * Namespaces are never freed before engine_close: requests in flight hold
 * ns_t pointers. A namespace whose file is deleted moves to E.gone (not
 * found, not listed) with its last version kept, and is reused if the file
 * comes back.
 *
 * Rule for Lua calls from C here and in fetch.c: anything that may allocate
 * runs inside lua_pcall (of a small C function when needed), because a memory
 * error outside protected mode would reach the panic handler and abort. */
#include "policy.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "lua_alloc.h"
#include "lua_pattern.h"
#include "policy_int.h"
#include "util.h"

/* Debian's liblua5.4-cjson ships no header. */
int luaopen_cjson(lua_State *L);

#define BUDGET_STEP          1000         /* instructions between two hook calls */
#define DEFAULT_INSTR_BUDGET 100000000ULL /* ~0.4 s of `while true do end` on the dev box */
#define DEFAULT_TIME_LIMIT   1000         /* ms */
#define DEFAULT_MEM_LIMIT    ((size_t)64 * 1024 * 1024)
#define MAX_POLICY_FILE      ((size_t)4 * 1024 * 1024)
#define MAX_MODULE_DEPTH     8
#define MAX_ERR              1024

typedef struct module {
    char *name;      /* "luacached.sandbox" */
    char *chunkname; /* "@<lua_path>/luacached/sandbox.lua" */
    char *src;
    size_t len;
} module_t;

static struct engine {
    bool inited;
    uv_loop_t *loop;
    char *policies_dir;
    char *lua_path;
    size_t mem_limit;
    uint64_t budget;
    uint64_t time_limit_ns;
    module_t *mods; /* sorted by name */
    size_t nmods, modcap;
    ns_t **ns; /* sorted by name; the namespaces served */
    size_t nns, nscap;
    ns_t **gone; /* removed namespaces (file deleted), kept until engine_close */
    size_t ngone, gonecap;
} E;

/* The modules the bootstrap runs in every state. */
static const char *const boot_modules[] = {"luacached.json", "luacached.sandbox",
                                           "luacached.validate", "luacached.runtime"};

uv_loop_t *engine_loop(void)
{
    return E.loop;
}

/* ------------------------------------------------------------------------ */
/* Memory cap, panic, instruction budget                                     */
/* ------------------------------------------------------------------------ */

/* The allocator of every policy state. Growing past the cap returns NULL,
 * which Lua turns into a "not enough memory" error (after one emergency
 * full GC). Shrinking never fails: Lua relies on that. */
static void *lc_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    policy_t *p = ud;
    size_t old = ptr ? osize : 0; /* without ptr, osize is a type tag */
    if (nsize > old && p->mem_limit && p->mem_used + (nsize - old) > p->mem_limit) return NULL;
    void *q = lua_alloc_block(ptr, osize, nsize);
    if (!q && nsize > 0) return NULL; /* growing failed; shrinking cannot */
    p->mem_used = p->mem_used - old + nsize;
    return q;
}

static int lc_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    log_error("Lua panic in a policy state: %s", msg ? msg : "(no message)");
    abort(); /* every call that can fail is protected; this is a bug */
}

#define SLICE_NS 1000000ULL  /* Lua time before a coroutine yields to the loop */
#define STALL_NS 25000000ULL /* Lua time a run may hold the loop where it cannot yield */

/* Whether a Lua source ("@path") is one of the shipped lua/ modules. */
static bool source_shipped(const char *source)
{
    size_t plen = strlen(E.lua_path);
    return plen && source[0] == '@' && strncmp(source + 1, E.lua_path, plen) == 0;
}

/* The innermost Lua frame of L from level on that is the policy's own
 * (outside the shipped modules), in *ar. */
static bool policy_frame(lua_State *L, int level, lua_Debug *ar)
{
    for (; level < 64 && lua_getstack(L, level, ar); level++)
        if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0 && !source_shipped(ar->source))
            return true;
    return false;
}

/* "file:line: " of the Lua function at level of L, for the message of a
 * run the hook ends by yielding (nothing allocated: hooks may not fail). */
static void note_where(lua_budget_t *b, lua_State *L, int level)
{
    lua_Debug ar;
    b->where[0] = '\0';
    /* the nearest Lua function of the policy's (pcall(string.find, ...)
     * has two C levels; the sandbox's wrappers are luacached's) */
    if (policy_frame(L, level, &ar))
        snprintf(b->where, sizeof(b->where), "%s:%d: ", ar.short_src, ar.currentline);
}

/* host.where([fn]) -> "file:line: " of the policy's code that is running
 * (so a bad ctx.http argument is reported at the policy's line, not at
 * runtime.lua's); when no frame of it is left (the policy returned, or
 * tail-called the helper), the line where fn is defined; else "". */
static int l_where(lua_State *L)
{
    lua_Debug ar;
    if (policy_frame(L, 1, &ar)) {
        lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
        return 1;
    }
    if (lua_type(L, 1) == LUA_TFUNCTION) {
        lua_pushvalue(L, 1);
        if (lua_getinfo(L, ">S", &ar) && ar.linedefined > 0 && !source_shipped(ar.source)) {
            lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.linedefined);
            return 1;
        }
    }
    lua_pushliteral(L, "");
    return 1;
}

/* If msg starts with another file's "file.lua:N: " than the policy's own
 * frame on L from level on (an error Lua raised inside a shipped module
 * the policy called: sandbox.lua's load, json.lua's encode), the rest of
 * msg after it, with that frame in *ar; else NULL. */
static const char *foreign_rest(lua_State *L, int level, const char *msg, lua_Debug *ar)
{
    const char *dot = msg ? strstr(msg, ".lua:") : NULL;
    if (!dot || dot - msg > 300) return NULL;
    const char *q = dot + 5;
    if (*q < '0' || *q > '9') return NULL;
    while (*q >= '0' && *q <= '9')
        q++;
    if (q[0] != ':' || q[1] != ' ' || !policy_frame(L, level, ar)) return NULL;
    size_t sl = strlen(ar->short_src);
    if ((size_t)(dot + 4 - msg) == sl && strncmp(msg, ar->short_src, sl) == 0) return NULL;
    return q + 2;
}

/* The message handler of a policy's load: see foreign_rest. Other values
 * are returned as they are, with nothing allocated (this also runs for a
 * spent budget). */
static int l_relocate(lua_State *L)
{
    lua_Debug ar;
    const char *msg = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL;
    const char *rest = foreign_rest(L, 1, msg, &ar);
    if (rest) lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, rest);
    return 1;
}

const char *policy_error_relocate(lua_State *co, const char *msg, char *buf, size_t len)
{
    lua_Debug ar;
    const char *rest = foreign_rest(co, 0, msg, &ar);
    if (!rest) return msg;
    snprintf(buf, len, "%s:%d: %s", ar.short_src, ar.currentline, rest);
    return buf;
}

/* Whether the Lua function running on L is one of the shipped lua/
 * modules (the sandbox's wrappers) rather than the policy's. */
static bool in_shipped_code(lua_State *L)
{
    lua_Debug ar;
    if (!lua_getstack(L, 0, &ar) || !lua_getinfo(L, "S", &ar)) return false;
    return source_shipped(ar.source);
}

/* Whether the run's budget is spent; sets tripped. now: uv_hrtime(). */
static bool budget_spent(lua_budget_t *b, uint64_t now)
{
    bool over_count = b->instr > E.budget;
    bool over_time = b->used_ns + (now - b->slice_start) > E.time_limit_ns;
    if (!over_count && !over_time) return false;
    b->tripped = true;
    b->over_time = !over_count;
    return true;
}

/* The count hook of every thread of a policy state. Three outcomes:
 *  - within the budget and the slice: return;
 *  - within the budget, slice over, in a coroutine that may yield: yield
 *    (nothing to catch: the runner resumes it on the next loop turn);
 *  - over the budget: in the run's own coroutine, yield too, and the
 *    runner ends the run, so no pcall, xpcall handler or __close of the
 *    policy gets to run; elsewhere (the main thread, or inside a C call
 *    that cannot yield) raise an error, and keep raising on every
 *    instruction so an enclosing pcall has no room to do anything else.
 * Hooks are off while Lua runs a message handler for an error raised here
 * (and in __gc, which the sandbox refuses), so the sandbox's xpcall skips
 * the policy's handler once the budget is tripped (l_tripped). */
#define STALL_MESSAGE                                                                              \
    "time budget exceeded: ran %I ms without a chance to yield to the server (inside a C "         \
    "function that called back into Lua, such as __tostring or a sort comparator)"

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    LC_UNUSED(ar);
    policy_t *p = *(policy_t **)lua_getextraspace(L);
    pstate_t *ps = p->engine_private;
    lua_budget_t *b = ps->budget;
    if (!b->tripped) {
        int count = lua_gethookcount(L);
        b->instr += (uint64_t)count;
        if (count != BUDGET_STEP) lua_sethook(L, budget_hook, LUA_MASKCOUNT, BUDGET_STEP);
        /* The clock is read once per BUDGET_STEP instructions: ~20 ns per
         * few microseconds of Lua, as Redis's script watchdog does. */
        uint64_t now = uv_hrtime();
        if (budget_spent(b, now)) {
            note_where(b, L, 0);
        } else {
            uint64_t in_slice = now - b->slice_start;
            if (in_slice < SLICE_NS || !b->thread) return;
            bool can_yield = lua_isyieldable(L);
            /* A coroutine the policy made itself yields to sandbox.lua's
             * resume, which passes the slice on (l_slice_taken) when it
             * can. */
            if (can_yield && L == b->thread) {
                b->sliced = true;
                lua_yield(L, 0);
                return;
            }
            if (can_yield && in_slice < STALL_NS) {
                /* Not inside sandbox.lua's resume: it is between a
                 * coroutine's slice and handing it on (l_slice_taken),
                 * and one pending slice is all it can tell apart. */
                if (in_shipped_code(L)) return;
                b->nested_sliced = L;
                lua_yield(L, 0);
                return;
            }
            if (in_slice < STALL_NS) return;
            /* Policy code that cannot be paused (inside a C function that
             * called back into Lua: a message handler, tostring's
             * __tostring, a sort comparator, a gsub callback) has held the
             * loop for STALL_NS: that ends the run. */
            b->tripped = b->stalled = true;
            note_where(b, L, 0);
        }
    }
    if (L == b->thread && lua_isyieldable(L)) {
        lua_yield(L, 0);
        return;
    }
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    /* and the run's own coroutine, which resumed this one: it stops at its
     * next instruction, whatever catches this error */
    if (b->thread && b->thread != L) lua_sethook(b->thread, budget_hook, LUA_MASKCOUNT, 1);
    /* Where the budget ran out (the policy's line, not the sandbox's);
     * else level 0, the Lua function running (a count hook has no frame of
     * its own). */
    if (b->where[0])
        lua_pushstring(L, b->where);
    else
        luaL_where(L, 0);
    if (b->stalled)
        lua_pushfstring(L, STALL_MESSAGE, (lua_Integer)(STALL_NS / 1000000));
    else if (b->over_time)
        lua_pushfstring(L, "time budget exceeded (%I ms per call into Lua)",
                        (lua_Integer)(E.time_limit_ns / 1000000));
    else
        lua_pushliteral(L, "instruction budget exceeded");
    lua_concat(L, 2);
    lua_error(L);
}

void policy_budget_message(const lua_budget_t *b, char *buf, size_t len)
{
    if (b->stalled)
        snprintf(buf, len,
                 "%stime budget exceeded: ran %llu ms without a chance to yield to the server",
                 b->where, (unsigned long long)(STALL_NS / 1000000));
    else if (b->over_time)
        snprintf(buf, len, "%stime budget exceeded (%llu ms per call into Lua)", b->where,
                 (unsigned long long)(E.time_limit_ns / 1000000));
    else
        snprintf(buf, len, "%sinstruction budget exceeded", b->where);
}

static void budget_reset(lua_budget_t *b, lua_State *thread)
{
    memset(b, 0, sizeof(*b));
    b->slice_start = uv_hrtime();
    b->thread = thread;
}

void policy_budget_start(lua_State *L, policy_t *p)
{
    pstate_t *ps = p->engine_private;
    ps->budget = &ps->main_budget;
    budget_reset(ps->budget, NULL);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, BUDGET_STEP);
}

void policy_budget_exhaust(lua_State *L, policy_t *p)
{
    pstate_t *ps = p->engine_private;
    ps->budget = &ps->main_budget;
    budget_reset(ps->budget, NULL);
    ps->budget->instr = E.budget;
    ps->budget->tripped = true;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, BUDGET_STEP);
}

lua_budget_t *policy_budget_enter(policy_t *p, lua_State *co, lua_budget_t *b, bool fresh)
{
    pstate_t *ps = p->engine_private;
    lua_budget_t *prev = ps->budget;
    if (fresh) {
        budget_reset(b, co);
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, BUDGET_STEP);
    } else {
        b->slice_start = uv_hrtime();
        b->sliced = false;
    }
    ps->budget = b;
    return prev;
}

void policy_budget_leave(policy_t *p, lua_budget_t *prev)
{
    pstate_t *ps = p->engine_private;
    lua_budget_t *b = ps->budget;
    b->used_ns += uv_hrtime() - b->slice_start;
    ps->budget = prev ? prev : &ps->main_budget;
}

/* The pattern matcher (lua_pattern.c) runs in C, where the hook never
 * fires: it reports its steps here about every LUA_PATTERN_STEP steps, and
 * they count against the same budget as VM instructions (a step costs about
 * what an instruction does). Over budget, it raises (a C function cannot
 * yield here without a continuation) and re-arms the hook to fire on every
 * instruction. final: the call is ending; record only (no clock read). */
static void pattern_charge(lua_State *L, unsigned long steps, int final)
{
    policy_t *p = *(policy_t **)lua_getextraspace(L);
    pstate_t *ps = p->engine_private;
    lua_budget_t *b = ps->budget;
    if (!b->tripped) {
        b->instr += steps;
        if (final) return;
        uint64_t now = uv_hrtime();
        if (budget_spent(b, now)) {
            note_where(b, L, 1);
        } else {
            if (!b->thread || now - b->slice_start < SLICE_NS) return;
            /* The slice is over, but a C function cannot yield: have the
             * hook fire at the first instruction after this call (and
             * yield there), rather than after its usual count, since a loop
             * of matches runs few instructions. */
            if (now - b->slice_start < STALL_NS) {
                lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
                return;
            }
            /* one match that cannot be paused: held to the same cap as
             * other code that cannot yield */
            b->tripped = b->stalled = true;
            note_where(b, L, 1);
        }
    }
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    if (b->thread && b->thread != L) lua_sethook(b->thread, budget_hook, LUA_MASKCOUNT, 1);
    if (b->stalled)
        luaL_error(L,
                   "pattern matching exceeded the time budget (%I ms at a stretch: a match "
                   "cannot be paused)",
                   (lua_Integer)(STALL_NS / 1000000));
    if (b->over_time)
        luaL_error(L, "pattern matching exceeded the time budget (%I ms per call into Lua)",
                   (lua_Integer)(E.time_limit_ns / 1000000));
    luaL_error(L, "pattern matching exceeded the instruction budget");
}

static const lua_pattern_budget_t pattern_budget = {pattern_charge};

/* host.tripped() -> whether the run's budget is spent (sandbox.lua's xpcall
 * then skips the policy's message handler, which would run unbudgeted). */
static int l_tripped(lua_State *L)
{
    policy_t *p = *(policy_t **)lua_getextraspace(L);
    pstate_t *ps = p->engine_private;
    lua_pushboolean(L, ps->budget->tripped);
    return 1;
}

static int slice_k(lua_State *L, int status, lua_KContext ctx)
{
    LC_UNUSED(status);
    LC_UNUSED(ctx);
    lua_pushboolean(L, 1);
    return 1;
}

/* host.slice_taken(co, can_park) -> whether co, a coroutine of the policy's own, just came
 * back from coroutine.resume because its budget slice ended (the hook
 * yielded it), not by yielding. If so and the caller can yield, the run's
 * coroutine is parked here until the next loop turn first: the yield
 * carries the I/O sentinel, so enclosing sandbox resumes pass it up to the
 * runner, which sees the slice flag. (Yielding from here, in C, leaves no
 * window in which the hook could take another slice in between.) */
static int l_slice_taken(lua_State *L)
{
    policy_t *p = *(policy_t **)lua_getextraspace(L);
    pstate_t *ps = p->engine_private;
    lua_budget_t *b = ps->budget;
    lua_State *co = lua_tothread(L, 1);        /* the coroutine that came back */
    bool reaches_runner = lua_toboolean(L, 2); /* sandbox's can_park() */
    if (!co || b->nested_sliced != co) {
        lua_pushboolean(L, 0);
        return 1;
    }
    b->nested_sliced = NULL;
    if (!reaches_runner || !lua_isyieldable(L)) {
        lua_pushboolean(L, 1); /* cannot pause here: go on at once */
        return 1;
    }
    b->sliced = true;
    lua_pushlightuserdata(L, (void *)&fetch_io_sentinel);
    return lua_yieldk(L, 1, 0, slice_k);
}

/* A fresh state: capped allocator, panic handler, the policy in its extra
 * space (the hook finds its budget there; threads copy it), count hook
 * (threads inherit it from the thread that creates them). */
static lua_State *state_new(policy_t *p)
{
    lua_State *L = lua_newstate(lc_alloc, p);
    if (!L) return NULL;
    lua_atpanic(L, lc_panic);
    *(policy_t **)lua_getextraspace(L) = p;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, BUDGET_STEP);
    return L;
}

/* ------------------------------------------------------------------------ */
/* The shipped lua/ modules, in memory                                       */
/* ------------------------------------------------------------------------ */

/* Read path, or name inside the open folder dirfd when dirfd >= 0 (path
 * then only names it in messages). Thread-safe (runs in the libuv
 * threadpool for hot reload). On failure *err_no (if given) is the errno,
 * or 0 for "not a regular file" and size problems. */
static int read_file_errno(int dirfd, const char *name, const char *path, size_t max, char **out,
                           size_t *outlen, char *err, size_t errlen, int *err_no)
{
    if (err_no) *err_no = 0;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (fstat rejects it) */
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
    int fd = dirfd >= 0 ? openat(dirfd, name, flags) : open(path, flags);
    if (fd < 0) {
        if (err_no) *err_no = errno;
        if (errno == ENOENT)
            snprintf(err, errlen, "%s: file not found", path);
        else
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if ((size_t)st.st_size > max) {
        snprintf(err, errlen, "%s: file too large (%lld bytes, at most %zu)", path,
                 (long long)st.st_size, max);
        close(fd);
        return -1;
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = xmalloc(cap);
    struct stat after;
    for (;;) {
        if (len + 1 > cap) goto changing;
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
            goto err;
        }
        if (n == 0) break;
        len += (size_t)n;
    }
    /* A file rewritten in place while we read it (truncated, then written:
     * what an editor or a deploy does) is caught between versions: its
     * bytes are neither. Not an error of the policy; EAGAIN tells the
     * watcher to look again once the writer is done. */
    if (fstat(fd, &after) != 0 || after.st_size != st.st_size || (size_t)after.st_size != len ||
        after.st_mtim.tv_sec != st.st_mtim.tv_sec || after.st_mtim.tv_nsec != st.st_mtim.tv_nsec ||
        after.st_ctim.tv_sec != st.st_ctim.tv_sec || after.st_ctim.tv_nsec != st.st_ctim.tv_nsec)
        goto changing;
    close(fd);
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
changing:
    if (err_no) *err_no = EAGAIN;
    snprintf(err, errlen, "%s: file changed while being read (being written?)", path);
err:
    close(fd);
    free(buf);
    return -1;
}

static int read_file(const char *path, size_t max, char **out, size_t *outlen, char *err,
                     size_t errlen)
{
    return read_file_errno(-1, NULL, path, max, out, outlen, err, errlen, NULL);
}

static int mod_cmp(const void *a, const void *b)
{
    return strcmp(((const module_t *)a)->name, ((const module_t *)b)->name);
}

static const module_t *mods_find(const char *name)
{
    module_t key = {.name = (char *)name};
    return bsearch(&key, E.mods, E.nmods, sizeof(module_t), mod_cmp);
}

static void mods_free(void)
{
    for (size_t i = 0; i < E.nmods; i++) {
        free(E.mods[i].name);
        free(E.mods[i].chunkname);
        free(E.mods[i].src);
    }
    free(E.mods);
    E.mods = NULL;
    E.nmods = E.modcap = 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

/* Read every *.lua under root/rel (rel "" at the top) into E.mods. */
static int mods_scan(const char *root, const char *rel, int depth, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    int n = snprintf(dir, sizeof(dir), "%s%s%s", root, *rel ? "/" : "", rel);
    if (n < 0 || (size_t)n >= sizeof(dir)) return 0; /* path too long: skip */
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot open Lua module folder %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue; /* ., .., hidden and editor files */
        char relpath[PATH_MAX], full[PATH_MAX];
        int n1 = snprintf(relpath, sizeof(relpath), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        int n2 = snprintf(full, sizeof(full), "%s/%s", root, relpath);
        if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(relpath) || (size_t)n2 >= sizeof(full))
            continue; /* path too long */
        struct stat st;
        if (stat(full, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < MAX_MODULE_DEPTH) rc = mods_scan(root, relpath, depth + 1, err, errlen);
            continue;
        }
        if (!S_ISREG(st.st_mode) || !ends_with(de->d_name, ".lua")) continue;
        module_t m = {0};
        if (read_file(full, MAX_POLICY_FILE, &m.src, &m.len, err, errlen) != 0) {
            rc = -1;
            break;
        }
        m.name = xmemdup(relpath, strlen(relpath) - 4); /* minus ".lua" */
        for (char *c = m.name; *c; c++)
            if (*c == '/') *c = '.';
        size_t cl = strlen(full) + 2;
        m.chunkname = xmalloc(cl);
        snprintf(m.chunkname, cl, "@%s", full);
        if (E.nmods == E.modcap) {
            E.modcap = E.modcap ? E.modcap * 2 : 16;
            E.mods = xrealloc(E.mods, E.modcap * sizeof(module_t));
        }
        E.mods[E.nmods++] = m;
    }
    closedir(d);
    return rc;
}

static int mods_load(const char *lua_path, char *err, size_t errlen)
{
    if (!lua_path || !*lua_path) {
        snprintf(err, errlen, "no Lua module folder given (--lua-path)");
        return -1;
    }
    if (mods_scan(lua_path, "", 0, err, errlen) != 0) goto err;
    qsort(E.mods, E.nmods, sizeof(module_t), mod_cmp);
    for (size_t i = 0; i < LC_ARRAY_LEN(boot_modules); i++) {
        if (!mods_find(boot_modules[i])) {
            snprintf(err, errlen, "Lua module %s not found under %s (is --lua-path right?)",
                     boot_modules[i], lua_path);
            goto err;
        }
    }
    return 0;
err:
    mods_free();
    return -1;
}

/* host.find_module(name) -> source, chunkname | nil: require's view of lua/. */
static int l_find_module(lua_State *L)
{
    const module_t *m = mods_find(luaL_checkstring(L, 1));
    if (!m) return 0;
    lua_pushlstring(L, m->src, m->len); /* [name, src] */
    lua_pushstring(L, m->chunkname);    /* [name, src, chunkname] */
    return 2;
}

/* ------------------------------------------------------------------------ */
/* Loading one policy version                                                */
/* ------------------------------------------------------------------------ */

typedef struct load_job {
    policy_t *p;
    const char *ns, *path;
    const char *src;
    size_t len;
    char *warnings; /* out: validate.lua's warnings, one a line; NULL: none */
} load_job_t;

/* conf.warnings (an array of strings) into job->warnings, one a line. */
static void read_warnings(lua_State *L, int t, load_job_t *job)
{
    lua_getfield(L, t, "warnings"); /* [.., warnings] */
    lua_Integer n = lua_istable(L, -1) ? luaL_len(L, -1) : 0;
    buf_t b = {0};
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i); /* [.., warnings, w] */
        size_t len;
        const char *w = lua_tolstring(L, -1, &len);
        if (w) {
            if (b.len) buf_append(&b, "\n", 1);
            buf_append(&b, w, len);
        }
        lua_pop(L, 1); /* [.., warnings] */
    }
    lua_pop(L, 1); /* [..] */
    if (b.len) {
        free(job->warnings);
        job->warnings = xmemdup(b.data, b.len);
    }
    buf_free(&b);
}

/* Run one bootstrap module from memory in the host environment.
 * [] -> [module] */
static void boot_module(lua_State *L, const char *name)
{
    const module_t *m = mods_find(name);
    if (!m) luaL_error(L, "Lua module %s is missing", name);
    if (luaL_loadbufferx(L, m->src, m->len, m->chunkname, "t") != LUA_OK) lua_error(L);
    lua_call(L, 0, 1); /* [module] */
}

static double conf_number(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k); /* [.., v] */
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static bool conf_bool(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k); /* [.., v] */
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static void read_conf(lua_State *L, int t, policy_conf_t *c)
{
    t = lua_absindex(L, t);
    c->ttl = conf_number(L, t, "ttl");
    c->ttl_is_fn = conf_bool(L, t, "ttl_is_fn");
    c->ttl_jitter = conf_number(L, t, "ttl_jitter");
    c->negative_ttl = conf_number(L, t, "negative_ttl");
    c->stale_ttl = conf_number(L, t, "stale_ttl");
    c->stale_if_error = conf_number(L, t, "stale_if_error");
    c->error_ttl = conf_number(L, t, "error_ttl");
    c->early_refresh = conf_number(L, t, "early_refresh");
    c->fetch_timeout = conf_number(L, t, "fetch_timeout");
    c->lock_timeout = conf_number(L, t, "lock_timeout");
    c->l1_ttl = conf_number(L, t, "l1_ttl");
    c->warm_every = conf_number(L, t, "warm_every");
    lua_getfield(L, t, "version"); /* [.., version] */
    c->version = (long long)lua_tointeger(L, -1);
    lua_pop(L, 1);
    c->has_on_event = conf_bool(L, t, "has_on_event");
    c->has_write = conf_bool(L, t, "has_write");
    c->has_delete = conf_bool(L, t, "has_delete");
    c->has_warm = conf_bool(L, t, "has_warm");
    c->has_write_behind = conf_bool(L, t, "has_write_behind");
    c->wb_delay = conf_number(L, t, "wb_delay");
    c->wb_batch = (long)conf_number(L, t, "wb_batch");
    c->wb_coalesce = conf_bool(L, t, "wb_coalesce");
    c->wb_max_retries = (long)conf_number(L, t, "wb_max_retries");
    c->wb_claim_after = conf_number(L, t, "wb_claim_after");
}

/* The whole load of one policy, in protected mode under one budget:
 * libraries, bootstrap, then runtime.load(host) compiles and runs the file
 * in the sandbox and validates what it returns (see lua/luacached/). */
static int load_protected(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},        {LUA_TABLIBNAME, luaopen_table},
        {LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},  {LUA_COLIBNAME, luaopen_coroutine},
        {LUA_OSLIBNAME, luaopen_os},
    };
    static const char *const os_keep[] = {"time", "clock", "date", "difftime"};
    static const char *const base_drop[] = {"dofile", "loadfile", "collectgarbage"};
    load_job_t *job = lua_touserdata(L, 1);
    pstate_t *ps = job->p->engine_private;
    lua_settop(L, 0);
    luaL_checkstack(L, 12, "policy load");

    for (size_t i = 0; i < LC_ARRAY_LEN(libs); i++) {
        luaL_requiref(L, libs[i].name, libs[i].func, 1); /* [lib] */
        lua_pop(L, 1);                                   /* [] */
    }
    /* The host environment only runs our bootstrap, and policies never see
     * it; still, leave nothing in it a policy must not have. */
    lua_createtable(L, 0, 4); /* [os'] */
    lua_getglobal(L, "os");   /* [os', os] */
    for (size_t i = 0; i < LC_ARRAY_LEN(os_keep); i++) {
        lua_getfield(L, -1, os_keep[i]); /* [os', os, fn] */
        lua_setfield(L, -3, os_keep[i]); /* [os', os] */
    }
    lua_pop(L, 1);              /* [os'] */
    lua_setglobal(L, "os");     /* [] */
    lua_getglobal(L, "string"); /* [string] */
    lua_pushnil(L);
    lua_setfield(L, -2, "dump"); /* [string] */
    /* find/match/gmatch/gsub under the budget (lua_pattern.c). This table
     * is also the string metatable's __index, and the sandbox copies it,
     * so ("x"):find(...) gets them too. */
    lua_pattern_register(L, -1, &pattern_budget);
    lua_pop(L, 1); /* [] */
    for (size_t i = 0; i < LC_ARRAY_LEN(base_drop); i++) {
        lua_pushnil(L);
        lua_setglobal(L, base_drop[i]);
    }

    lua_createtable(L, 0, 10);                   /* [host] */
    luaL_requiref(L, "cjson", luaopen_cjson, 0); /* [host, cjson]: private */
    lua_setfield(L, -2, "cjson");                /* [host] */
    lua_createtable(L, 0, 3);                    /* [host, libs] */
    boot_module(L, "luacached.json");            /* [host, libs, json] */
    lua_setfield(L, -2, "json");                 /* [host, libs] */
    boot_module(L, "luacached.sandbox");
    lua_setfield(L, -2, "sandbox");
    boot_module(L, "luacached.validate");
    lua_setfield(L, -2, "validate");
    lua_setfield(L, -2, "libs"); /* [host] */
    lua_pushcfunction(L, l_find_module);
    lua_setfield(L, -2, "find_module");
    lua_pushlightuserdata(L, (void *)&fetch_io_sentinel);
    lua_setfield(L, -2, "io_sentinel");
    lua_pushcfunction(L, l_tripped);
    lua_setfield(L, -2, "tripped");
    lua_pushcfunction(L, l_slice_taken);
    lua_setfield(L, -2, "slice_taken");
    lua_pushcfunction(L, l_where);
    lua_setfield(L, -2, "where");
    fetch_push_prims(L, job->ns); /* [host, prims] */
    lua_getfield(L, -1, "log");   /* [host, prims, log] */
    lua_setfield(L, -3, "log");   /* [host, prims] */
    lua_setfield(L, -2, "prims"); /* [host] */
    lua_pushstring(L, job->ns);
    lua_setfield(L, -2, "ns");
    lua_pushstring(L, job->path);
    lua_setfield(L, -2, "path");
    lua_pushlstring(L, job->src, job->len);
    lua_setfield(L, -2, "source"); /* [host] */

    boot_module(L, "luacached.runtime"); /* [host, runtime] */
    lua_getfield(L, -1, "load");         /* [host, runtime, load] */
    lua_pushvalue(L, 1);                 /* [host, runtime, load, host] */
    lua_call(L, 1, 8); /* [host, runtime, conf, fetch, ttl_for, on_event, warm, write, delete,
                          write_batch] */
    ps->write_batch_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* [.., write, delete] */
    ps->delete_ref = luaL_ref(L, LUA_REGISTRYINDEX);      /* [.., on_event, warm, write] */
    ps->write_ref = luaL_ref(L, LUA_REGISTRYINDEX);       /* [.., on_event, warm] */
    ps->warm_ref = luaL_ref(L, LUA_REGISTRYINDEX);        /* [.., conf, fetch, ttl_for, on_event] */
    ps->on_event_ref = luaL_ref(L, LUA_REGISTRYINDEX);    /* [.., conf, fetch, ttl_for] */
    ps->ttl_ref = luaL_ref(L, LUA_REGISTRYINDEX);         /* [host, runtime, conf, fetch] */
    ps->fetch_ref = luaL_ref(L, LUA_REGISTRYINDEX);       /* [host, runtime, conf] */
    read_conf(L, -1, &job->p->conf);
    read_warnings(L, -1, job);
    lua_settop(L, 0);
    return 0;
}

/* "file:line: message" from a failed load; messages that do not name the
 * file (a memory error, a bug in a shipped module) get "file: " in front. */
static void load_error(lua_State *L, int status, const char *path, char *err, size_t errlen)
{
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (status == LUA_ERRMEM || !msg) msg = status == LUA_ERRMEM ? "not enough memory" : NULL;
    if (!msg) {
        snprintf(err, errlen, "%s: error object is a %s value", path, luaL_typename(L, -1));
        return;
    }
    size_t pl = strlen(path);
    if (strncmp(msg, path, pl) == 0 && msg[pl] == ':')
        snprintf(err, errlen, "%s", msg);
    else
        snprintf(err, errlen, "%s: %s", path, msg);
}

int policy_src_read_at(int dirfd, const char *name, const char *path, policy_src_t *src)
{
    memset(src, 0, sizeof(*src));
    if (read_file_errno(dirfd, name, path, MAX_POLICY_FILE, &src->data, &src->len, src->error,
                        sizeof(src->error), &src->err_no) != 0)
        return -1;
    sha1_hex(src->data, src->len, src->sha1);
    return 0;
}

int policy_src_read(const char *path, policy_src_t *src)
{
    return policy_src_read_at(-1, NULL, path, src);
}

void policy_src_free(policy_src_t *src)
{
    free(src->data);
    src->data = NULL;
    src->len = 0;
}

/* Compile, run and validate one policy's source into a new state. NULL
 * with err "file:line: message" on failure (every validation error, one a
 * line). *warnings (if warnings is given): NULL, or the combinations the
 * docs advise against, "file:line: warning: ..." one a line, to free. */
static policy_t *policy_load_src(ns_t *ns, const char *name, const char *path, const char *src,
                                 size_t len, const char sha[41], char *err, size_t errlen,
                                 char **warnings)
{
    if (warnings) *warnings = NULL;
    policy_t *p = xcalloc(1, sizeof(*p));
    pstate_t *ps = xcalloc(1, sizeof(*ps));
    ps->fetch_ref = ps->ttl_ref = ps->on_event_ref = ps->warm_ref = LUA_NOREF;
    ps->write_ref = ps->delete_ref = ps->write_batch_ref = LUA_NOREF;
    ps->budget = &ps->main_budget;
    p->engine_private = ps;
    p->refs = 1;
    p->ns = ns;
    p->mem_limit = E.mem_limit;
    memcpy(p->sha1, sha, sizeof(p->sha1));
    p->L = state_new(p);
    if (!p->L) {
        snprintf(err, errlen, "%s: not enough memory for a Lua state", path);
        goto err;
    }
    lua_State *L = p->L;
    load_job_t job = {p, name, path, src, len, NULL};
    lua_pushcfunction(L, l_relocate);     /* [msgh]: light C functions do not allocate */
    lua_pushcfunction(L, load_protected); /* [msgh, fn] */
    lua_pushlightuserdata(L, &job);       /* [msgh, fn, job] */
    policy_budget_start(L, p);
    int st = lua_pcall(L, 1, 0, 1); /* [msgh] or [msgh, err] */
    if (st != LUA_OK) {
        free(job.warnings);
        load_error(L, st, path, err, errlen);
        goto err;
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT); /* the bootstrap's garbage */
    if (warnings)
        *warnings = job.warnings;
    else
        free(job.warnings);
    return p;
err:
    if (p->L) {
        policy_budget_exhaust(p->L, p); /* finalizers of the failed policy */
        lua_close(p->L);
    }
    free(ps);
    free(p);
    return NULL;
}

/* Read, then policy_load_src. sha gets the file's SHA-1 ("" when unreadable). */
static policy_t *policy_load(ns_t *ns, const char *name, const char *path, char sha[41], char *err,
                             size_t errlen, char **warnings)
{
    if (warnings) *warnings = NULL;
    policy_src_t src;
    sha[0] = '\0';
    if (policy_src_read(path, &src) != 0) {
        snprintf(err, errlen, "%s", src.error);
        return NULL;
    }
    memcpy(sha, src.sha1, 41);
    policy_t *p = policy_load_src(ns, name, path, src.data, src.len, sha, err, errlen, warnings);
    policy_src_free(&src);
    return p;
}

void policy_ref(policy_t *p)
{
    p->refs++;
}

void policy_unref(policy_t *p)
{
    if (!p || --p->refs > 0) return;
    if (p->L) {
        /* __gc finalizers run under a fresh budget */
        policy_budget_start(p->L, p);
        lua_close(p->L);
    }
    free(p->engine_private);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* Namespaces                                                                */
/* ------------------------------------------------------------------------ */

bool ns_name_valid(const char *s, size_t len)
{
    if (len == 0) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

/* Binary search of the served namespaces: index of name, or where it would
 * go (*found = 0). */
static size_t ns_search(const char *name, size_t len, int *found)
{
    size_t lo = 0, hi = E.nns;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(name, len, E.ns[mid]->name, E.ns[mid]->name_len);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = 0;
    return lo;
}

ns_t *ns_find(const char *name, size_t len)
{
    int found;
    size_t i = ns_search(name, len, &found);
    return found ? E.ns[i] : NULL;
}

/* Removed namespaces are few (one per name ever deleted): a linear scan. */
static size_t gone_index(const char *name, size_t len)
{
    for (size_t i = 0; i < E.ngone; i++)
        if (name_cmp(name, len, E.gone[i]->name, E.gone[i]->name_len) == 0) return i;
    return E.ngone;
}

ns_t *ns_find_any(const char *name, size_t len)
{
    ns_t *ns = ns_find(name, len);
    if (ns) return ns;
    size_t g = gone_index(name, len);
    return g < E.ngone ? E.gone[g] : NULL;
}

size_t ns_count(void)
{
    return E.nns;
}

ns_t *ns_at(size_t i)
{
    return i < E.nns ? E.ns[i] : NULL;
}

const char *engine_policies_dir(void)
{
    return E.policies_dir;
}

static char *policy_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 6;
    char *path = xmalloc(n);
    snprintf(path, n, "%s/%s.lua", dir, name);
    return path;
}

/* Put ns into the served list (sorted); it must not be there. */
static void ns_insert(ns_t *ns)
{
    int found;
    size_t i = ns_search(ns->name, strlen(ns->name), &found);
    if (E.nns == E.nscap) {
        E.nscap = E.nscap ? E.nscap * 2 : 16;
        E.ns = xrealloc(E.ns, E.nscap * sizeof(ns_t *));
    }
    memmove(E.ns + i + 1, E.ns + i, (E.nns - i) * sizeof(ns_t *));
    E.ns[i] = ns;
    E.nns++;
}

static ns_served_fn ns_served_hook;

void engine_set_ns_served_hook(ns_served_fn fn)
{
    ns_served_hook = fn;
}

/* The served namespace NAME: found, brought back from the removed ones, or
 * created (with no policy yet). */
static ns_t *ns_add(const char *name)
{
    size_t len = strlen(name);
    ns_t *ns = ns_find(name, len);
    if (ns) return ns;
    size_t g = gone_index(name, len);
    if (g < E.ngone) {
        ns = E.gone[g];
        E.gone[g] = E.gone[--E.ngone];
        ns->removed = false;
        ns_insert(ns);
        log_info("policy file %s is back: namespace '%s' serves again", ns->path, ns->name);
        if (ns_served_hook) ns_served_hook(ns);
        return ns;
    }
    ns = xcalloc(1, sizeof(*ns));
    ns->name = xstrdup(name);
    ns->name_len = strlen(name);
    ns->path = policy_path(E.policies_dir, name);
    ns->last_error = xstrdup("");
    ns_insert(ns);
    if (ns_served_hook) ns_served_hook(ns);
    return ns;
}

static void ns_free(ns_t *ns)
{
    policy_unref(ns->cur);
    free(ns->name);
    free(ns->path);
    free(ns->last_error);
    free(ns);
}

bool engine_remove(const char *name)
{
    int found;
    size_t i = ns_search(name, strlen(name), &found);
    if (!found) return false;
    ns_t *ns = E.ns[i];
    memmove(E.ns + i, E.ns + i + 1, (E.nns - i - 1) * sizeof(ns_t *));
    E.nns--;
    if (E.ngone == E.gonecap) {
        E.gonecap = E.gonecap ? E.gonecap * 2 : 8;
        E.gone = xrealloc(E.gone, E.gonecap * sizeof(ns_t *));
    }
    E.gone[E.ngone++] = ns;
    ns->removed = true;
    /* ns->cur stays: requests in flight hold ns and read ns->cur. A file
     * that comes back is always loaded afresh (see engine_apply). */
    log_info("policy file %s was deleted: namespace '%s' is no longer served "
             "(requests in flight finish on its last version)",
             ns->path, ns->name);
    return true;
}

/* Install what one load attempt produced. p is the new version (NULL: the
 * load failed with err). */
static policy_apply_t ns_install(ns_t *ns, policy_t *p, const char *sha, const char *err)
{
    snprintf(ns->sha1, sizeof(ns->sha1), "%s", sha);
    free(ns->last_error);
    if (!p) {
        ns->last_error = xstrdup(err);
        ns->stats.reloads_error++;
        log_error("policy '%s' failed to load%s: %s", ns->name,
                  ns->cur ? " (previous version stays active)" : "", err);
        return POLICY_FAILED;
    }
    ns->last_error = xstrdup("");
    policy_t *old = ns->cur;
    ns->cur = p;
    ns->stats.reloads_ok++;
    if (old)
        log_info("policy '%s' reloaded (sha1 %.12s, was %.12s)", ns->name, p->sha1, old->sha1);
    else
        log_info("policy '%s' loaded (sha1 %.12s)", ns->name, p->sha1);
    policy_unref(old); /* fetches in flight keep their own reference */
    return POLICY_LOADED;
}

policy_apply_t engine_apply(const char *name, const policy_src_t *src, bool force)
{
    size_t len = strlen(name);
    ns_t *ns = ns_find(name, len);
    bool known = ns != NULL;
    /* The same bytes as the last attempt (or the same read failure): the
     * outcome would be the same too. */
    if (known && !force) {
        if (src->data && strcmp(src->sha1, ns->sha1) == 0) return POLICY_UNCHANGED;
        if (!src->data && ns->sha1[0] == '\0' && strcmp(src->error, ns->last_error) == 0)
            return POLICY_UNCHANGED;
    }
    /* New, or back after removal: always loaded afresh (a re-added file
     * whose load fails leaves the namespace on the version it had when it
     * was removed, like any failed reload; docs/POLICIES.md). */
    if (!known) ns = ns_add(name);
    if (!src->data) return ns_install(ns, NULL, "", src->error);
    char err[MAX_ERR], *warnings;
    policy_t *p = policy_load_src(ns, ns->name, ns->path, src->data, src->len, src->sha1, err,
                                  sizeof(err), &warnings);
    policy_apply_t r = ns_install(ns, p, src->sha1, err);
    /* loaded anyway: said once per version, like its errors */
    for (char *w = warnings, *nl; w && *w; w = nl ? nl + 1 : w + strlen(w)) {
        nl = strchr(w, '\n');
        log_warn("policy '%s': %.*s", ns->name, nl ? (int)(nl - w) : (int)strlen(w), w);
    }
    free(warnings);
    return r;
}

int engine_reload(ns_t *ns)
{
    policy_src_t src;
    policy_src_read(ns->path, &src);
    policy_apply_t r;
    if (ns->removed && !src.data) {
        /* still gone: record why, but do not serve it again */
        memcpy(ns->sha1, "", 1);
        free(ns->last_error);
        ns->last_error = xstrdup(src.error);
        ns->stats.reloads_error++;
        r = POLICY_FAILED;
    } else {
        r = engine_apply(ns->name, &src, true);
    }
    policy_src_free(&src);
    return r == POLICY_FAILED ? -1 : 0;
}

/* A policy file: "NAME.lua", not hidden (editors' temporary files). */
static int policy_file_filter(const struct dirent *de)
{
    return de->d_name[0] != '.' && ends_with(de->d_name, ".lua");
}

static int dirent_cmp(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Calls fn(name, path, arg) for each policy file of dir, sorted; reports
 * and counts files with bad names. Returns failures (fn's plus those);
 * *dir_ok tells whether the folder could be listed at all. */
typedef int (*policy_file_fn)(const char *name, const char *path, void *arg);

static int for_each_policy(const char *dir, policy_file_fn fn, void *arg, bool to_stderr,
                           bool *dir_ok)
{
    struct dirent **list = NULL;
    int n = scandir(dir, &list, policy_file_filter, dirent_cmp);
    if (dir_ok) *dir_ok = n >= 0;
    if (n < 0) {
        if (to_stderr)
            fprintf(stderr, "%s: cannot open policies folder: %s\n", dir, strerror(errno));
        else
            log_error("cannot open policies folder %s: %s", dir, strerror(errno));
        return 1;
    }
    int failures = 0;
    for (int i = 0; i < n; i++) {
        const char *fname = list[i]->d_name;
        size_t len = strlen(fname) - 4;
        char *name = xmemdup(fname, len);
        char *path = policy_path(dir, name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            /* a folder named x.lua is not a policy */
        } else if (!ns_name_valid(name, len)) {
            if (to_stderr)
                fprintf(stderr, "%s: namespace name must match [A-Za-z0-9_.-]+; file skipped\n",
                        path);
            else
                log_error("%s: namespace name must match [A-Za-z0-9_.-]+; file skipped", path);
            failures++;
        } else {
            failures += fn(name, path, arg) != 0;
        }
        free(name);
        free(path);
        free(list[i]);
    }
    free(list);
    return failures;
}

typedef struct seen_names {
    char **names;
    size_t n, cap;
} seen_names_t;

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_one(const char *name, const char *path, void *arg)
{
    seen_names_t *seen = arg;
    policy_src_t src;
    if (policy_src_read(path, &src) != 0 && src.err_no == ENOENT) return 0; /* deleted since */
    if (seen->n == seen->cap) {
        seen->cap = seen->cap ? seen->cap * 2 : 16;
        seen->names = xrealloc(seen->names, seen->cap * sizeof(char *));
    }
    seen->names[seen->n++] = xstrdup(name);
    policy_apply_t r = engine_apply(name, &src, true);
    policy_src_free(&src);
    return r == POLICY_FAILED;
}

int engine_load_all(void)
{
    seen_names_t seen = {0};
    bool dir_ok = false;
    int failures = for_each_policy(E.policies_dir, load_one, &seen, false, &dir_ok);
    if (dir_ok) {
        /* Served namespaces whose file is gone (a rescan after start-up). */
        if (seen.n) qsort(seen.names, seen.n, sizeof(char *), str_ptr_cmp);
        for (size_t i = E.nns; i-- > 0;) {
            const char *name = E.ns[i]->name;
            if (!seen.n || !bsearch(&name, seen.names, seen.n, sizeof(char *), str_ptr_cmp))
                engine_remove(name);
        }
    }
    for (size_t i = 0; i < seen.n; i++)
        free(seen.names[i]);
    free(seen.names);
    return failures;
}

/* ------------------------------------------------------------------------ */
/* Engine                                                                    */
/* ------------------------------------------------------------------------ */

static void engine_set_conf(const engine_conf_t *conf)
{
    E.policies_dir = xstrdup(conf->policies_dir ? conf->policies_dir : "./policies");
    E.lua_path = xstrdup(conf->lua_path ? conf->lua_path : "");
    E.mem_limit = conf->mem_limit ? conf->mem_limit : DEFAULT_MEM_LIMIT;
    E.budget = conf->instr_budget ? conf->instr_budget : DEFAULT_INSTR_BUDGET;
    E.time_limit_ns = (conf->time_limit_ms ? conf->time_limit_ms : DEFAULT_TIME_LIMIT) * 1000000;
}

static void engine_clear_conf(void)
{
    free(E.policies_dir);
    free(E.lua_path);
    E.policies_dir = E.lua_path = NULL;
}

int engine_init(uv_loop_t *loop, const engine_conf_t *conf, char *err, size_t errlen)
{
    if (E.inited) {
        snprintf(err, errlen, "policy engine already initialised");
        return -1;
    }
    engine_set_conf(conf);
    if (mods_load(E.lua_path, err, errlen) != 0) {
        engine_clear_conf();
        return -1;
    }
    E.loop = loop;
    E.inited = true;
    log_debug("policy engine: %zu Lua modules from %s, %zu MiB and %llu instructions per call",
              E.nmods, E.lua_path, E.mem_limit >> 20, (unsigned long long)E.budget);
    return 0;
}

void engine_close(void)
{
    if (!E.inited) return;
    fetch_abort_all();
    for (size_t i = 0; i < E.nns; i++)
        ns_free(E.ns[i]);
    free(E.ns);
    E.ns = NULL;
    E.nns = E.nscap = 0;
    for (size_t i = 0; i < E.ngone; i++)
        ns_free(E.gone[i]);
    free(E.gone);
    E.gone = NULL;
    E.ngone = E.gonecap = 0;
    mods_free();
    engine_clear_conf();
    lua_alloc_drain();
    E.loop = NULL;
    E.inited = false;
}

typedef struct check_ctx {
    size_t ok, warnings;
} check_ctx_t;

static int check_one(const char *name, const char *path, void *arg)
{
    check_ctx_t *c = arg;
    char err[MAX_ERR], sha[41], *warnings;
    policy_t *p = policy_load(NULL, name, path, sha, err, sizeof(err), &warnings);
    if (!p) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (warnings) {
        fprintf(stderr, "%s\n", warnings);
        for (const char *w = warnings; w; w = strchr(w + 1, '\n'))
            c->warnings++;
        free(warnings);
    }
    policy_unref(p);
    c->ok++;
    return 0;
}

/* One --check argument: a folder (every NAME.lua in it) or one policy
 * file (its namespace is its name without .lua). Returns failures. */
static int check_path(const char *path, check_ctx_t *c)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    if (S_ISDIR(st.st_mode)) return for_each_policy(path, check_one, c, true, NULL);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (!ends_with(base, ".lua")) {
        fprintf(stderr, "%s: not a policy file (a policy is NAME.lua)\n", path);
        return 1;
    }
    len -= 4;
    if (!ns_name_valid(base, len)) {
        fprintf(stderr, "%s: namespace name must match [A-Za-z0-9_.-]+\n", path);
        return 1;
    }
    char *name = xmemdup(base, len);
    int failures = check_one(name, path, c);
    free(name);
    return failures;
}

int engine_check(const engine_conf_t *conf, const char *const *paths, size_t npaths)
{
    /* Usable without engine_init (luacached --check); then the modules are
     * read for the check only. */
    bool temp = !E.inited;
    struct engine saved = E;
    if (temp) {
        char err[MAX_ERR];
        engine_set_conf(conf);
        if (mods_load(E.lua_path, err, sizeof(err)) != 0) {
            fprintf(stderr, "%s\n", err);
            engine_clear_conf();
            E = saved;
            return 1;
        }
    } else {
        /* same modules, the caller's folder and limits */
        E.policies_dir = xstrdup(conf->policies_dir ? conf->policies_dir : E.policies_dir);
        E.mem_limit = conf->mem_limit ? conf->mem_limit : E.mem_limit;
        E.budget = conf->instr_budget ? conf->instr_budget : E.budget;
        if (conf->time_limit_ms) E.time_limit_ns = conf->time_limit_ms * 1000000;
    }
    check_ctx_t c = {0};
    int failures = 0;
    if (npaths == 0) failures = check_path(E.policies_dir, &c);
    for (size_t i = 0; i < npaths; i++)
        failures += check_path(paths[i], &c);
    if (failures == 0)
        printf("policies OK: %zu namespaces%s\n", c.ok,
               c.warnings ? " (with warnings, above)" : "");
    else
        fprintf(stderr, "policies: %d failed, %zu OK\n", failures, c.ok);
    if (temp) {
        mods_free();
        engine_clear_conf();
    } else {
        free(E.policies_dir);
    }
    E.policies_dir = saved.policies_dir;
    E.lua_path = saved.lua_path;
    E.mem_limit = saved.mem_limit;
    E.budget = saved.budget;
    E.time_limit_ns = saved.time_limit_ns;
    return failures;
}

int engine_check_dir(const engine_conf_t *conf)
{
    return engine_check(conf, NULL, 0);
}
