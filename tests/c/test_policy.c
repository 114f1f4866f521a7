/* test_policy.c: the policy engine on a real libuv loop (src/policy.c,
 * src/fetch.c and the lua/luacached/ modules): loading and validation,
 * fetch results, the sandbox, the instruction budget (pattern matching
 * included) and memory cap,
 * coroutine parking (sleep, HTTP), fetch timeouts and shutdown.
 *
 * Each test writes its policies into a fresh mkdtemp folder, starts fetches
 * and runs the loop until every callback came or a deadline passed; every
 * test checks exact callback counts. The lua/ folder is found from the
 * LUACACHED_LUA_PATH environment variable, else ../lua or ./lua. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "http_client.h"
#include "log.h"
#include "policy.h"
#include "util.h"
#include "watch.h"
#include "check.h"

/* ------------------------------------------------------------------------ */
/* Harness                                                                   */
/* ------------------------------------------------------------------------ */

static uv_loop_t *loop;
static char tmpdir[256];
static char lua_path[512];
static int http_port;
static pid_t http_pid;

#define CHECK_STR_HAS(s, sub)                                                                      \
    do {                                                                                           \
        const char *s_ = (s);                                                                      \
        if (!s_ || !strstr(s_, (sub))) {                                                           \
            fprintf(stderr, "    %s:%d: expected \"%s\" in \"%s\"\n", __FILE__, __LINE__, (sub),   \
                    s_ ? s_ : "(null)");                                                           \
            test_failed = 1;                                                                       \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static double now_s(void)
{
    return (double)uv_hrtime() / 1e9;
}

static void write_file(const char *name, const char *fmt, ...)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

static void wipe_dir(void)
{
    uv_fs_t req;
    uv_dirent_t de;
    if (uv_fs_scandir(NULL, &req, tmpdir, 0, NULL) >= 0) {
        while (uv_fs_scandir_next(&req, &de) != UV_EOF) {
            char path[600];
            snprintf(path, sizeof(path), "%s/%s", tmpdir, de.name);
            unlink(path);
        }
    }
    uv_fs_req_cleanup(&req);
}

static engine_conf_t base_conf(void)
{
    engine_conf_t c = {
        .policies_dir = tmpdir,
        .lua_path = lua_path,
        .mem_limit = 32u << 20,
        .instr_budget = 50000000, /* ~0.2 s of a tight loop; tests stay quick */
    };
    return c;
}

/* engine_init + engine_load_all over the current folder. */
static int engine_up_conf(engine_conf_t c)
{
    char err[512];
    if (engine_init(loop, &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "    engine_init: %s\n", err);
        return -1;
    }
    return engine_load_all();
}

static int engine_up(void)
{
    return engine_up_conf(base_conf());
}

static void tick_cb(uv_timer_t *t)
{
    LC_UNUSED(t);
}

/* Run the loop until *count reaches want or seconds pass. */
static bool run_until(const int *count, int want, double seconds)
{
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, tick_cb, 5, 5); /* keeps uv_run(ONCE) from blocking forever */
    double deadline = now_s() + seconds;
    while (*count < want && now_s() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *count >= want;
}

/* engine_close, then let libuv close the fetch timers. */
static void engine_down(void)
{
    engine_close();
    for (int i = 0; i < 10; i++)
        uv_run(loop, UV_RUN_NOWAIT);
    wipe_dir();
}

typedef struct res {
    int calls;
    fetch_kind_t kind;
    char *value;
    size_t len;
    double ttl;
    char *error;
    char *tags[8];
    size_t ntags;
    double duration;
    double done_at;
} res_t;

static int total_calls;

static void res_cb(void *priv, const fetch_result_t *r)
{
    res_t *x = priv;
    x->calls++;
    total_calls++;
    x->kind = r->kind;
    x->ttl = r->ttl;
    x->duration = r->duration;
    x->done_at = now_s();
    free(x->value);
    free(x->error);
    x->value = r->value ? xmemdup(r->value, r->len) : NULL;
    x->len = r->len;
    x->error = r->error ? xstrdup(r->error) : NULL;
    for (size_t i = 0; i < x->ntags; i++)
        free(x->tags[i]);
    x->ntags = r->ntags < 8 ? r->ntags : 8;
    for (size_t i = 0; i < x->ntags; i++)
        x->tags[i] = xstrdup(r->tags[i]);
}

static void res_free(res_t *x)
{
    free(x->value);
    free(x->error);
    for (size_t i = 0; i < x->ntags; i++)
        free(x->tags[i]);
    memset(x, 0, sizeof(*x));
}

/* Start one fetch of ns:id and wait for its callback. */
static void fetch_wait(const char *ns, const char *id, res_t *x, double seconds)
{
    memset(x, 0, sizeof(*x));
    ns_t *n = ns_find(ns, strlen(ns));
    if (!n || !n->cur) {
        x->error = xstrdup(n ? n->last_error : "no such namespace");
        x->kind = FETCH_ERROR;
        return;
    }
    fetch_start(n->cur, id, strlen(id), res_cb, x);
    run_until(&x->calls, 1, seconds);
}

/* With an instruction budget too big to count out and a 200 ms limit,
 * fetching ns:1 fails after about 200 ms with an error that holds want. */
static void fails_on_time(const char *ns, const char *want)
{
    engine_conf_t c = base_conf();
    c.instr_budget = 1000000000000ULL;
    c.time_limit_ms = 200;
    REQUIRE(engine_up_conf(c) == 0);
    res_t r;
    double t0 = now_s();
    fetch_wait(ns, "1", &r, 5);
    double took = now_s() - t0;
    REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
    CHECK_STR_HAS(r.error, want);
    REQUIRE(took >= 0.19 && took < 0.5);
    res_free(&r);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */
/* ------------------------------------------------------------------------ */

static void test_load_fields(void)
{
    write_file("widget.lua", "local json = require 'cjson'\n"
                             "return {\n"
                             "  ttl = 600, ttl_jitter = 0.1, negative_ttl = 30,\n"
                             "  stale_ttl = 120, stale_if_error = 600, error_ttl = 2,\n"
                             "  early_refresh = 1.0, fetch_timeout = 5, lock_timeout = 10,\n"
                             "  l1_ttl = 1, version = 3, warm_every = 300,\n"
                             "  fetch = function(id, ctx) return 'w' .. id end,\n"
                             "  on_event = function() return {} end,\n"
                             "  warm = function() return {'1'} end,\n"
                             "}\n");
    write_file("plain.lua", "return { fetch = function(id) return id end }\n");
    REQUIRE(engine_up() == 0);
    REQUIRE(ns_count() == 2);
    REQUIRE(strcmp(ns_at(0)->name, "plain") == 0 && strcmp(ns_at(1)->name, "widget") == 0);
    ns_t *ns = ns_find("widget:42", 6);
    REQUIRE(ns && ns->cur);
    REQUIRE(ns_find("widge", 5) == NULL && ns_find("widgets", 7) == NULL);
    REQUIRE(strcmp(ns->last_error, "") == 0);
    REQUIRE(strlen(ns->sha1) == 40 && strcmp(ns->sha1, ns->cur->sha1) == 0);
    REQUIRE(ns->stats.reloads_ok == 1);
    const policy_conf_t *c = &ns->cur->conf;
    REQUIRE(c->ttl == 600 && !c->ttl_is_fn && c->ttl_jitter == 0.1 && c->negative_ttl == 30);
    REQUIRE(c->stale_ttl == 120 && c->stale_if_error == 600 && c->error_ttl == 2);
    REQUIRE(c->early_refresh == 1.0 && c->fetch_timeout == 5 && c->lock_timeout == 10);
    REQUIRE(c->l1_ttl == 1 && c->version == 3 && c->warm_every == 300);
    REQUIRE(c->has_on_event && c->has_warm);
    const policy_conf_t *d = &ns_find("plain", 5)->cur->conf;
    REQUIRE(d->ttl == 300 && d->ttl_jitter == 0 && d->negative_ttl == 0 && d->fetch_timeout == 5);
    REQUIRE(d->lock_timeout == 10 && d->version == 1 && !d->has_on_event && !d->has_warm);
    REQUIRE(ns->cur->mem_used > 0 && ns->cur->mem_used < ns->cur->mem_limit);
}

static void test_load_errors(void)
{
    write_file("syntax.lua", "return {\n  fetch = function(id) return id end\n  ttl = 5,\n}\n");
    write_file("badfield.lua", "return {\n  fetch = function(id) return id end,\n"
                               "  ttl = 'soon',\n}\n");
    write_file("typo.lua", "return {\n  fetch = function(id) return id end,\n  tll = 60,\n}\n");
    write_file("nofetch.lua", "local x = 1\nreturn {\n  ttl = 60,\n}\n");
    write_file("runtime.lua", "local t = nil\nlocal y = t.x\nreturn {}\n");
    write_file("bad name.lua", "return { fetch = function() end }\n");
    write_file("good.lua", "return { fetch = function(id) return id end }\n");
    int failed = engine_up();
    REQUIRE(failed == 6);
    char want[700];
    ns_t *ns = ns_find("syntax", 6);
    REQUIRE(ns && !ns->cur && ns->stats.reloads_error == 1);
    snprintf(want, sizeof(want), "%s/syntax.lua:3:", tmpdir);
    CHECK_STR_HAS(ns->last_error, want);
    ns = ns_find("badfield", 8);
    snprintf(want, sizeof(want),
             "%s/badfield.lua:3: ttl must be a number >= 0 or a function (got string)", tmpdir);
    REQUIRE(ns && strcmp(ns->last_error, want) == 0);
    ns = ns_find("typo", 4);
    snprintf(want, sizeof(want), "%s/typo.lua:3: unknown field 'tll'", tmpdir);
    CHECK_STR_HAS(ns->last_error, want);
    CHECK_STR_HAS(ns->last_error, "did you mean 'ttl'");
    ns = ns_find("nofetch", 7);
    snprintf(want, sizeof(want), "%s/nofetch.lua:2: fetch is required", tmpdir);
    CHECK_STR_HAS(ns->last_error, want);
    ns = ns_find("runtime", 7);
    snprintf(want, sizeof(want), "%s/runtime.lua:2:", tmpdir);
    CHECK_STR_HAS(ns->last_error, want);
    REQUIRE(ns_find("bad name", 8) == NULL);
    REQUIRE(ns_find("good", 4)->cur != NULL);

    /* A failed reload keeps the previous version; fixing it swaps. */
    ns = ns_find("good", 4);
    policy_t *old = ns->cur;
    char oldsha[41];
    memcpy(oldsha, ns->sha1, 41);
    write_file("good.lua", "return { fetch = function(id) return id end, ttl = -1 }\n");
    REQUIRE(engine_reload(ns) == -1);
    REQUIRE(ns->cur == old && ns->stats.reloads_error == 1);
    CHECK_STR_HAS(ns->last_error, "good.lua:1: ttl must be a number >= 0");
    REQUIRE(strcmp(ns->sha1, oldsha) != 0);
    write_file("good.lua", "return { fetch = function(id) return 'v2' end }\n");
    REQUIRE(engine_reload(ns) == 0);
    REQUIRE(ns->cur != old && strcmp(ns->last_error, "") == 0 && ns->stats.reloads_ok == 2);
    char path[600];
    snprintf(path, sizeof(path), "%s/good.lua", tmpdir);
    unlink(path);
    REQUIRE(engine_reload(ns) == -1);
    REQUIRE(ns->cur != NULL);
    CHECK_STR_HAS(ns->last_error, "file not found");
}

static void test_fetch_results(void)
{
    write_file("s.lua",
               "return { ttl = 60, negative_ttl = 7,\n"
               "  fetch = function(id, ctx)\n"
               "    if id == 'nil' then return nil end\n"
               "    if id == 'neg' then return nil, { ttl = 3 } end\n"
               "    if id == 'tbl' then\n"
               "      return { n = 42, list = { 1, 2 } }, { ttl = 9, tags = { 'a', 'b:1' } }\n"
               "    end\n"
               "    if id == 'bool' then return true end\n"
               "    if id == 'boom' then error('origin said 500') end\n"
               "    if id == 'fn' then return { f = print } end\n"
               "    return ctx.key .. '|' .. ctx.ns .. '|' .. ctx.id\n"
               "  end }\n");
    REQUIRE(engine_up() == 0);
    res_t r;
    fetch_wait("s", "42", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_OK && r.ttl == 60);
    REQUIRE(r.value && strcmp(r.value, "s:42|s|42") == 0);
    res_free(&r);
    fetch_wait("s", "tbl", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_OK && r.ttl == 9 && r.ntags == 2);
    REQUIRE(strcmp(r.tags[0], "a") == 0 && strcmp(r.tags[1], "b:1") == 0);
    CHECK_STR_HAS(r.value, "\"n\":42");
    CHECK_STR_HAS(r.value, "\"list\":[1,2]");
    res_free(&r);
    fetch_wait("s", "nil", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_NOT_FOUND && r.ttl == 7);
    res_free(&r);
    fetch_wait("s", "neg", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_NOT_FOUND && r.ttl == 3);
    res_free(&r);
    fetch_wait("s", "bool", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
    CHECK_STR_HAS(r.error, "fetch must return a string, a table or nil (got boolean)");
    res_free(&r);
    fetch_wait("s", "boom", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
    CHECK_STR_HAS(r.error, "s.lua:9: origin said 500");
    res_free(&r);
    fetch_wait("s", "fn", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
    CHECK_STR_HAS(r.error, "cannot be encoded as JSON");
    res_free(&r);
    REQUIRE(fetches_in_flight() == 0);
}

static void test_budget(void)
{
    write_file("loop.lua", "return { fetch = function(id)\n"
                           "  if id == 'pcall' then\n"
                           "    while true do pcall(function() while true do end end) end\n"
                           "  end\n"
                           "  while id ~= 'co' do end\n"
                           "  coroutine.wrap(function() while true do end end)()\n"
                           "end }\n");
    write_file("other.lua", "return { fetch = function(id) return 'fine' end }\n");
    REQUIRE(engine_up() == 0);
    res_t r;
    double t0 = now_s();
    fetch_wait("loop", "1", &r, 5);
    double took = now_s() - t0;
    REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
    CHECK_STR_HAS(r.error, "instruction budget exceeded");
    CHECK_STR_HAS(r.error, "loop.lua:5:");
    REQUIRE(took < 1.5);
    res_free(&r);
    t0 = now_s();
    fetch_wait("loop", "pcall", &r, 5);
    REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
    CHECK_STR_HAS(r.error, "instruction budget exceeded");
    REQUIRE(now_s() - t0 < 1.5);
    res_free(&r);
    /* coroutines the policy makes inherit the hook */
    t0 = now_s();
    fetch_wait("loop", "co", &r, 5);
    REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
    CHECK_STR_HAS(r.error, "loop.lua:6: instruction budget exceeded");
    REQUIRE(now_s() - t0 < 1.5);
    res_free(&r);
    fetch_wait("other", "1", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_OK);
    res_free(&r);
    /* A runaway main chunk fails the load, with file and line. */
    write_file("loop.lua", "local x = 0\nwhile true do x = x + 1 end\nreturn {}\n");
    ns_t *ns = ns_find("loop", 4);
    REQUIRE(engine_reload(ns) == -1);
    CHECK_STR_HAS(ns->last_error, "loop.lua:2: instruction budget exceeded");
}

/* Instructions that call C run far slower than a tight loop: the wall
 * clock bounds them. */
static void test_time_limit(void)
{
    write_file("slowop.lua", "return { fetch = function(id)\n"
                             "  while true do local s = string.format('%%d', 1) .. id end\n"
                             "end }\n");
    fails_on_time("slowop", "slowop.lua:2: time budget exceeded (200 ms per call into Lua)");
}

/* Pattern matching runs in C, where the hook never fires: lua_pattern.c's
 * matcher charges the same budget and trips it the same way. */
static void test_patterns(void)
{
    write_file("pat.lua",
               "local big = string.rep('a', 2000)\n"
               "local probes = {\n"
               "  find = function() return tostring(string.find(big, '.-.-.-.-b')) end,\n"
               "  method = function() return tostring(('a'):rep(200000):find('.-b')) end,\n"
               "  match = function() return tostring(big:match('^(.-)(.-)(.-)b')) end,\n"
               "  gsub = function()\n"
               "    return (string.gsub(('a'):rep(3000), '(.-)(.-)(.-)x', '%%1')) end,\n"
               "  gmatch = function() for x in big:gmatch('.-.-.-b') do end return 'done' end,\n"
               "  pcall = function()\n"
               "    while true do pcall(string.find, big, '.-.-.-.-b') end\n"
               "  end,\n"
               "  pcall_method = function()\n"
               "    for i = 1, 1000 do pcall(function() return big:find('.-.-.-.-b') end) end\n"
               "    return 'survived'\n"
               "  end,\n"
               "  same = function()\n"
               "    return tostring(string.find == ('').find and string.gsub == ('').gsub and\n"
               "                    string.match == ('').match and string.gmatch == ('').gmatch)\n"
               "  end,\n"
               "  ok = function()\n"
               "    local k, v = ('x=1, y=22'):match('(%%w+)=(%%w+)')\n"
               "    local n = select(2, ('a,b,c'):gsub(',', ';'))\n"
               "    local w = {} for x in ('one two three'):gmatch('%%a+') do w[#w + 1] = x end\n"
               "    return k .. v .. n .. table.concat(w, '+') .. string.find('hello', 'l+')\n"
               "  end,\n"
               "}\n"
               "return { fetch = function(id) return probes[id]() end }\n");
    REQUIRE(engine_up() == 0);
    static const struct {
        const char *id, *line;
    } runaway[] = {
        {"find", "pat.lua:3: "},      {"method", "pat.lua:4: "}, {"match", "pat.lua:5: "},
        {"gsub", "pat.lua:7: "},      {"gmatch", "pat.lua:8: "}, {"pcall", "pat.lua:"},
        {"pcall_method", "pat.lua:"},
    };
    res_t r;
    for (size_t i = 0; i < LC_ARRAY_LEN(runaway); i++) {
        double t0 = now_s();
        fetch_wait("pat", runaway[i].id, &r, 10);
        double took = now_s() - t0;
        printf("    pattern runaway '%s' failed after %.3f s: %s\n", runaway[i].id, took,
               r.error ? r.error : "(no error)");
        REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
        CHECK_STR_HAS(r.error, runaway[i].line);
        CHECK_STR_HAS(r.error, "budget");
        /* one long match is cut off at 25 ms; under pcall, the run's
         * budget stops the retries */
        if (strncmp(runaway[i].id, "pcall", 5) != 0)
            CHECK_STR_HAS(r.error, "pattern matching exceeded the time budget (25 ms at a stretch");
        REQUIRE(took < 1.5);
        res_free(&r);
        /* the namespace serves the next fetch, ordinary patterns included */
        fetch_wait("pat", "ok", &r, 2);
        REQUIRE(r.calls == 1 && r.kind == FETCH_OK);
        REQUIRE(strcmp(r.value, "x12one+two+three3") == 0);
        res_free(&r);
    }
    fetch_wait("pat", "same", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_OK && strcmp(r.value, "true") == 0);
    res_free(&r);
}

/* A pattern under an instruction budget too big to count out: the clock. */
static void test_pattern_time(void)
{
    /* many matches of a few milliseconds each: the per-call time budget */
    write_file("slowpat.lua", "return { fetch = function(id)\n"
                              "  while true do local _ = ('a'):rep(1000):find('.-b') end\n"
                              "end }\n");
    fails_on_time("slowpat", "slowpat.lua:2: pattern matching exceeded the time budget (200 ms "
                             "per call into Lua)");
    engine_down();
    /* one long match cannot be paused: cut off after 25 ms */
    write_file("longpat.lua", "return { fetch = function(id)\n"
                              "  return tostring(('a'):rep(200000):find('.-b'))\n"
                              "end }\n");
    REQUIRE(engine_up() == 0);
    res_t r;
    double t0 = now_s();
    fetch_wait("longpat", "1", &r, 5);
    double took = now_s() - t0;
    REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
    CHECK_STR_HAS(r.error, "longpat.lua:2: pattern matching exceeded the time budget (25 ms at a "
                           "stretch: a match cannot be paused)");
    REQUIRE(took >= 0.024 && took < 0.2);
    res_free(&r);
}

static void test_memory(void)
{
    write_file("mem.lua",
               "return { fetch = function(id)\n"
               "  if id == 'bomb' then\n"
               "    local t = {} while true do t[#t + 1] = string.rep('x', 1e6) .. #t end\n"
               "  end\n"
               "  return string.rep('y', 1000)\n"
               "end }\n");
    REQUIRE(engine_up() == 0);
    ns_t *ns = ns_find("mem", 3);
    res_t r;
    fetch_wait("mem", "bomb", &r, 5);
    REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
    CHECK_STR_HAS(r.error, "not enough memory");
    res_free(&r);
    REQUIRE(ns->cur->mem_used < 8u << 20); /* collected */
    for (int i = 0; i < 3; i++) {
        fetch_wait("mem", "ok", &r, 2);
        REQUIRE(r.calls == 1 && r.kind == FETCH_OK && r.len == 1000);
        res_free(&r);
    }
    fetch_wait("mem", "bomb", &r, 5);
    REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
    res_free(&r);
    fetch_wait("mem", "ok", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_OK);
    res_free(&r);
}

static void test_sleep_concurrent(void)
{
    write_file("sl.lua",
               "return { fetch = function(id, ctx)\n"
               "  local t0 = ctx.now()\n"
               "  ctx.sleep(0.05)\n"
               "  local v = coroutine.wrap(function() ctx.sleep(0.01) return 'in' end)()\n"
               "  assert(math.type(t0) == 'integer')\n"
               "  return v .. ':' .. id .. ':' .. tostring(ctx.now() - t0 >= 50)\n"
               "end }\n"
               "\n");
    write_file("sl2.lua", "return { fetch = function(id, ctx) ctx.sleep(0.05) return id end }\n");
    REQUIRE(engine_up() == 0);
    enum { N = 100 };
    static res_t rs[N];
    memset(rs, 0, sizeof(rs));
    total_calls = 0;
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof(id), "%d", i);
        const char *ns = i % 2 ? "sl" : "sl2";
        fetch_start(ns_find(ns, strlen(ns))->cur, id, strlen(id), res_cb, &rs[i]);
    }
    REQUIRE(fetches_in_flight() == N);
    REQUIRE(run_until(&total_calls, N, 3));
    double took = now_s() - t0;
    REQUIRE(took >= 0.05 && took < 0.5);
    for (int i = 0; i < N; i++) {
        char want[32];
        if (i % 2)
            snprintf(want, sizeof(want), "in:%d:true", i);
        else
            snprintf(want, sizeof(want), "%d", i);
        REQUIRE(rs[i].calls == 1 && rs[i].kind == FETCH_OK);
        REQUIRE(strcmp(rs[i].value, want) == 0);
        res_free(&rs[i]);
    }
    REQUIRE(fetches_in_flight() == 0);
}

static void test_timeout(void)
{
    write_file("slow.lua", "return { fetch_timeout = 0.1, fetch = function(id, ctx)\n"
                           "  if id == 'nested' then\n"
                           "    return coroutine.wrap(function() ctx.sleep(10) return 'x' end)()\n"
                           "  end\n"
                           "  local ok, err = pcall(ctx.sleep, 10)\n"
                           "  -- the abort raises again at any further ctx use\n"
                           "  ctx.sleep(1)\n"
                           "  return 'never'\n"
                           "end }\n");
    REQUIRE(engine_up() == 0);
    res_t r;
    double t0 = now_s();
    fetch_wait("slow", "1", &r, 3);
    double took = now_s() - t0;
    REQUIRE(r.calls == 1 && r.kind == FETCH_TIMEOUT);
    CHECK_STR_HAS(r.error, "fetch timed out after 0.1s");
    REQUIRE(took >= 0.09 && took < 0.6);
    /* no second callback, nothing left running */
    int zero = 0;
    run_until(&zero, 1, 0.2);
    REQUIRE(r.calls == 1 && fetches_in_flight() == 0);
    res_free(&r);
    /* parked inside a coroutine of the policy's own */
    fetch_wait("slow", "nested", &r, 3);
    REQUIRE(r.calls == 1 && r.kind == FETCH_TIMEOUT);
    run_until(&zero, 1, 0.2);
    REQUIRE(r.calls == 1 && fetches_in_flight() == 0);
    res_free(&r);
}

static void test_abort_all(void)
{
    write_file("park.lua", "return { fetch = function(id, ctx)\n"
                           "  local ok = pcall(ctx.sleep, 30)\n"
                           "  while true do end\n"
                           "end }\n");
    REQUIRE(engine_up() == 0);
    enum { N = 20 };
    static res_t rs[N];
    memset(rs, 0, sizeof(rs));
    policy_t *p = ns_find("park", 4)->cur;
    for (int i = 0; i < N; i++)
        fetch_start(p, "x", 1, res_cb, &rs[i]);
    int zero = 0;
    run_until(&zero, 1, 0.05);
    REQUIRE(fetches_in_flight() == N);
    double t0 = now_s();
    fetch_abort_all();
    REQUIRE(now_s() - t0 < 1.0); /* the unwinding cannot spin */
    REQUIRE(fetches_in_flight() == 0);
    for (int i = 0; i < N; i++) {
        REQUIRE(rs[i].calls == 1 && rs[i].kind == FETCH_ERROR);
        REQUIRE(strcmp(rs[i].error, "shutting down") == 0);
    }
    run_until(&zero, 1, 0.1);
    for (int i = 0; i < N; i++) {
        REQUIRE(rs[i].calls == 1);
        res_free(&rs[i]);
    }
    /* and engine_close aborts what is still parked */
    static res_t last;
    memset(&last, 0, sizeof(last));
    fetch_start(p, "y", 1, res_cb, &last);
    engine_close();
    REQUIRE(last.calls == 1 && strcmp(last.error, "shutting down") == 0);
    res_free(&last);
}

static void test_sandbox(void)
{
    write_file("sb.lua",
               "local cjson = require 'cjson'\n"
               "local probes = {\n"
               "  os_execute = function() return os.execute('true') end,\n"
               "  io_open = function() return io.open('/etc/passwd') end,\n"
               "  loadfile = function() return loadfile('/etc/passwd') end,\n"
               "  dofile = function() return dofile('/etc/passwd') end,\n"
               "  debug = function() return debug.getinfo(1) end,\n"
               "  dump = function() return string.dump(print) end,\n"
               "  require_io = function() return require 'io' end,\n"
               "  binary = function() return assert(load('\\27Lua', 'x', 'b')) end,\n"
               "  json = function() return 'widget:' .. cjson.decode('{\"id\":42}').id end,\n"
               "  yield = function() coroutine.yield() end,\n"
               "  global = function() leak = 1 end,\n"
               "  pyield = function() pcall(coroutine.yield, 1) end,\n"
               "}\n"
               "local saved\n"
               "probes.save = function(ctx) saved = ctx return 'saved' end\n"
               "probes.stale = function() saved.sleep(0) end\n"
               "return { fetch = function(id, ctx) return probes[id](ctx) end }\n");
    REQUIRE(engine_up() == 0);
    static const struct {
        const char *id, *want;
    } cases[] = {
        {"os_execute", "attempt to call a nil value (field 'execute')"},
        {"io_open", "undefined global 'io'"},
        {"loadfile", "undefined global 'loadfile'"},
        {"dofile", "undefined global 'dofile'"},
        {"debug", "undefined global 'debug'"},
        {"dump", "attempt to call a nil value (field 'dump')"},
        {"require_io", "module 'io' not found"},
        {"binary", "load: only text chunks are allowed"},
        {"yield", "fetch yielded outside ctx I/O"},
        {"global", "assignment to undeclared global 'leak'"},
        {"pyield", "fetch yielded outside ctx I/O"},
        {"save", NULL},
        {"stale", "ctx used after its fetch finished"},
    };
    res_t r;
    for (size_t i = 0; i < LC_ARRAY_LEN(cases); i++) {
        fetch_wait("sb", cases[i].id, &r, 2);
        if (!cases[i].want) {
            REQUIRE(r.calls == 1 && r.kind == FETCH_OK);
        } else {
            REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
            CHECK_STR_HAS(r.error, cases[i].want);
        }
        res_free(&r);
    }
    fetch_wait("sb", "json", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_OK && strcmp(r.value, "widget:42") == 0);
    res_free(&r);
}

typedef struct ttl_res {
    int calls;
    double ttl;
    char err[256];
} ttl_res_t;

static void ttl_cb(void *priv, double ttl, const char *err)
{
    ttl_res_t *r = priv;
    r->calls++;
    r->ttl = ttl;
    snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
}

static void test_ttl_fn(void)
{
    write_file("t.lua",
               "return {\n"
               "  ttl = function(id, v) if id == 'bad' then return 'x' end return #v end,\n"
               "  fetch = function(id) return id .. id end }\n");
    REQUIRE(engine_up() == 0);
    policy_t *p = ns_find("t", 1)->cur;
    REQUIRE(p->conf.ttl_is_fn);
    ttl_res_t a = {0}, bad = {0};
    policy_ttl(p, "a", 1, "12345", 5, ttl_cb, &a);
    policy_ttl(p, "bad", 3, "1", 1, ttl_cb, &bad);
    REQUIRE(run_until(&bad.calls, 1, 2) && run_until(&a.calls, 1, 2));
    REQUIRE(a.calls == 1 && a.ttl == 5 && a.err[0] == '\0');
    REQUIRE(bad.calls == 1 && bad.ttl == 300);
    CHECK_STR_HAS(bad.err, "ttl(id, value) must return a number >= 0");
    res_t r;
    fetch_wait("t", "abc", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_OK && r.ttl == 6);
    res_free(&r);
    fetch_wait("t", "bad", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
    res_free(&r);
}

/* A reload while fetches are parked: they finish on the old version. */
static void test_reload_in_flight(void)
{
    write_file("v.lua", "return { fetch = function(id, ctx) ctx.sleep(0.05) return 'v1' end }\n");
    REQUIRE(engine_up() == 0);
    ns_t *ns = ns_find("v", 1);
    res_t a = {0}, b = {0};
    total_calls = 0;
    fetch_start(ns->cur, "1", 1, res_cb, &a);
    write_file("v.lua", "return { fetch = function(id, ctx) ctx.sleep(0.01) return 'v2' end }\n");
    REQUIRE(engine_reload(ns) == 0);
    fetch_start(ns->cur, "1", 1, res_cb, &b);
    REQUIRE(run_until(&total_calls, 2, 2));
    REQUIRE(a.calls == 1 && strcmp(a.value, "v1") == 0);
    REQUIRE(b.calls == 1 && strcmp(b.value, "v2") == 0);
    res_free(&a);
    res_free(&b);
}

/* engine_apply: the same bytes again are a no-op (a touch reloads nothing),
 * unless forced; new bytes load a new version; a failed one keeps the old. */
static void test_apply_unchanged(void)
{
    write_file("u.lua", "return { fetch = function(id) return 'u1' end }\n");
    REQUIRE(engine_up() == 0);
    ns_t *ns = ns_find("u", 1);
    REQUIRE(ns && ns->cur && ns->stats.reloads_ok == 1);
    policy_t *v1 = ns->cur;
    char path[600];
    snprintf(path, sizeof(path), "%s/u.lua", tmpdir);
    policy_src_t src;
    REQUIRE(policy_src_read(path, &src) == 0);
    REQUIRE(strcmp(src.sha1, ns->sha1) == 0 && src.len > 0);
    REQUIRE(engine_apply("u", &src, false) == POLICY_UNCHANGED);
    REQUIRE(ns->cur == v1 && ns->stats.reloads_ok == 1 && ns->stats.reloads_error == 0);
    REQUIRE(engine_apply("u", &src, true) == POLICY_LOADED); /* RELOAD forces */
    REQUIRE(ns->cur != v1 && ns->stats.reloads_ok == 2);
    policy_src_free(&src);

    write_file("u.lua", "return { fetch = function(id) return 'u2' end,\n  ttl = 'x' }\n");
    REQUIRE(policy_src_read(path, &src) == 0);
    policy_t *v2 = ns->cur;
    REQUIRE(engine_apply("u", &src, false) == POLICY_FAILED);
    REQUIRE(ns->cur == v2 && ns->stats.reloads_error == 1);
    CHECK_STR_HAS(ns->last_error, "u.lua:2: ttl must be a number");
    REQUIRE(strcmp(ns->sha1, src.sha1) == 0 && strcmp(ns->cur->sha1, src.sha1) != 0);
    /* the same broken bytes again: not retried, not counted */
    REQUIRE(engine_apply("u", &src, false) == POLICY_UNCHANGED);
    REQUIRE(ns->stats.reloads_error == 1);
    policy_src_free(&src);

    /* a read error is a failure too, and the same one again a no-op */
    policy_src_t bad;
    REQUIRE(policy_src_read("/nonexistent/u.lua", &bad) == -1);
    REQUIRE(bad.data == NULL && bad.sha1[0] == '\0' && bad.err_no == ENOENT);
    CHECK_STR_HAS(bad.error, "file not found");
    REQUIRE(engine_apply("u", &bad, false) == POLICY_FAILED && ns->stats.reloads_error == 2);
    REQUIRE(engine_apply("u", &bad, false) == POLICY_UNCHANGED && ns->stats.reloads_error == 2);
    REQUIRE(ns->cur == v2);

    write_file("u.lua", "return { fetch = function(id) return 'u3' end }\n");
    REQUIRE(policy_src_read(path, &src) == 0);
    REQUIRE(engine_apply("u", &src, false) == POLICY_LOADED);
    REQUIRE(strcmp(ns->last_error, "") == 0 && strcmp(ns->cur->sha1, src.sha1) == 0);
    policy_src_free(&src);
    res_t r;
    fetch_wait("u", "1", &r, 2);
    REQUIRE(r.calls == 1 && r.kind == FETCH_OK && strcmp(r.value, "u3") == 0);
    res_free(&r);
}

/* Removing a namespace: it stops being found, its fetches in flight finish
 * on their version, and a file that comes back reuses the same ns_t. */
static void test_remove_readd(void)
{
    write_file("a.lua", "return { fetch = function(id, ctx) ctx.sleep(0.05) return 'a1' end }\n");
    write_file("b.lua", "return { fetch = function(id) return 'b' end }\n");
    REQUIRE(engine_up() == 0);
    REQUIRE(ns_count() == 2);
    ns_t *a = ns_find("a", 1);
    policy_t *a1 = a->cur;
    res_t inflight = {0};
    total_calls = 0;
    fetch_start(a1, "x", 1, res_cb, &inflight);

    char path[600];
    snprintf(path, sizeof(path), "%s/a.lua", tmpdir);
    unlink(path);
    REQUIRE(engine_load_all() == 0); /* a rescan notices the deletion */
    REQUIRE(ns_find("a", 1) == NULL && ns_count() == 1 && strcmp(ns_at(0)->name, "b") == 0);
    REQUIRE(ns_find_any("a", 1) == a && a->removed && a->cur == a1);
    REQUIRE(engine_remove("a") == false); /* already gone */
    REQUIRE(run_until(&total_calls, 1, 2));
    REQUIRE(inflight.calls == 1 && inflight.kind == FETCH_OK && strcmp(inflight.value, "a1") == 0);
    res_free(&inflight);

    /* back: the same struct serves a fresh load (stats continue) */
    write_file("a.lua", "return { fetch = function(id) return 'a2' end }\n");
    REQUIRE(engine_load_all() == 0);
    REQUIRE(ns_find("a", 1) == a && !a->removed && a->cur != a1 && ns_count() == 2);
    REQUIRE(a->stats.reloads_ok == 2);
    res_t r;
    fetch_wait("a", "x", &r, 2);
    REQUIRE(r.calls == 1 && strcmp(r.value, "a2") == 0);
    res_free(&r);

    /* removed, then back broken: like any failed reload, the version it
     * had stays (docs/POLICIES.md) and the error shows */
    REQUIRE(engine_remove("a") == true && ns_find("a", 1) == NULL);
    policy_t *a2 = a->cur;
    write_file("a.lua", "return { fetch = 1 }\n");
    policy_src_t src;
    REQUIRE(policy_src_read(path, &src) == 0);
    REQUIRE(engine_apply("a", &src, false) == POLICY_FAILED);
    policy_src_free(&src);
    REQUIRE(ns_find("a", 1) == a && a->cur == a2);
    CHECK_STR_HAS(a->last_error, "a.lua:1: fetch must be a function");

    /* a namespace whose first load failed can be removed and added too */
    write_file("c.lua", "return {\n  fetch = function(id) return 'c' end\n  ttl = 1 }\n");
    REQUIRE(engine_load_all() == 2); /* a.lua is broken too */
    ns_t *c = ns_find("c", 1);
    REQUIRE(c && !c->cur && c->stats.reloads_error == 1);
    snprintf(path, sizeof(path), "%s/c.lua", tmpdir);
    unlink(path);
    REQUIRE(engine_load_all() == 1); /* a.lua is still broken */
    REQUIRE(ns_find("c", 1) == NULL && ns_find_any("c", 1) == c);
    /* engine_reload of a removed one whose file is still gone: an error,
     * still removed */
    REQUIRE(engine_reload(c) == -1 && c->removed && ns_find("c", 1) == NULL);
    CHECK_STR_HAS(c->last_error, "file not found");
}

/* ---- the watcher (src/watch.c) on the real loop ---- */

typedef struct reload_res {
    int calls;
    char err[600];
} reload_res_t;

static void reload_cb(void *priv, const char *err)
{
    reload_res_t *r = priv;
    r->calls++;
    snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
}

/* Run the loop until ns serves a policy whose fetch answers want (NULL:
 * until ns is not served) or seconds pass. */
static bool wait_serving(const char *name, const char *want, double seconds)
{
    double deadline = now_s() + seconds;
    for (;;) {
        ns_t *ns = ns_find(name, strlen(name));
        if (!want && !ns) return true;
        if (want && ns && ns->cur) {
            res_t r;
            fetch_wait(name, "1", &r, 1);
            bool ok = r.kind == FETCH_OK && r.value && strcmp(r.value, want) == 0;
            res_free(&r);
            if (ok) return true;
        }
        if (now_s() >= deadline) return false;
        int zero = 0;
        run_until(&zero, 1, 0.02);
    }
}

static void watch_down(void)
{
    watch_stop();
    int zero = 0;
    run_until(&zero, 1, 0.05);
}

static void test_watch(void)
{
    write_file("w.lua", "return { fetch = function(id) return 'w1' end }\n");
    write_file("other.lua", "return { fetch = function(id) return 'o1' end }\n");
    REQUIRE(engine_up() == 0);
    REQUIRE(watch_start(loop, tmpdir, 0) == 0);
    REQUIRE(watch_start(loop, tmpdir, 0) == -1);
    ns_t *w = ns_find("w", 1);
    double t0 = now_s();

    /* an edit is served within a second; the old state goes once unused */
    write_file("w.lua", "return { fetch = function(id) return 'w2' end }\n");
    bool ok = wait_serving("w", "w2", 1.5);
    if (!ok) watch_down();
    REQUIRE(ok);
    REQUIRE(now_s() - t0 < 1.2);
    REQUIRE(w->stats.reloads_ok == 2);
    /* the start-up scan may have read w.lua while it was being rewritten:
     * that is not a failed reload (watch.c, "changing") */
    CHECK(w->stats.reloads_error == 0);

    /* a syntax error: the old version stays, the error is kept */
    uint64_t errs0 = w->stats.reloads_error;
    write_file("w.lua", "return {\n  fetch = function(id) return 'w3' end\n  ttl = 1 }\n");
    int zero = 0;
    double d = now_s() + 1.5;
    while (w->stats.reloads_error == errs0 && now_s() < d)
        run_until(&zero, 1, 0.02);
    if (w->stats.reloads_error != errs0 + 1) watch_down();
    REQUIRE(w->stats.reloads_error == errs0 + 1);
    CHECK_STR_HAS(w->last_error, "w.lua:3:");
    REQUIRE(wait_serving("w", "w2", 0.1));

    /* touching files changes nothing: not even with a real change of another
     * file picked up after the touch (proof that a scan ran since) */
    char path[600];
    snprintf(path, sizeof(path), "%s/w.lua", tmpdir);
    uint64_t ok_before = w->stats.reloads_ok, err_before = w->stats.reloads_error;
    ns_t *o = ns_find("other", 5);
    uint64_t o_before = o->stats.reloads_ok;
    REQUIRE(utimes(path, NULL) == 0);
    snprintf(path, sizeof(path), "%s/other.lua", tmpdir);
    REQUIRE(utimes(path, NULL) == 0);
    run_until(&zero, 1, 0.7); /* a debounced scan and a poll */
    write_file("w.lua",
               "return {\n  fetch = function(id) return 'w3' end\n  ttl = 1 }\n"); /* same */
    run_until(&zero, 1, 0.3);
    write_file("other.lua", "return { fetch = function(id) return 'o2' end }\n");
    ok = wait_serving("other", "o2", 1.5);
    if (!ok) watch_down();
    REQUIRE(ok);
    REQUIRE(o->stats.reloads_ok == o_before + 1);
    REQUIRE(w->stats.reloads_ok == ok_before && w->stats.reloads_error == err_before);

    /* fixed: serves */
    write_file("w.lua", "return { fetch = function(id) return 'w4' end }\n");
    ok = wait_serving("w", "w4", 1.5);
    if (!ok) watch_down();
    REQUIRE(ok && strcmp(w->last_error, "") == 0);

    /* an in-place rewrite truncates first: an empty file is not an error
     * for the watcher (it waits for content) */
    uint64_t errs = w->stats.reloads_error;
    write_file("w.lua", "%s", "");
    run_until(&zero, 1, 0.8);
    REQUIRE(w->stats.reloads_error == errs && strcmp(w->last_error, "") == 0);
    write_file("w.lua", "return { fetch = function(id) return 'w5' end }\n");
    ok = wait_serving("w", "w5", 1.5);
    if (!ok) watch_down();
    REQUIRE(ok && w->stats.reloads_error == errs);

    /* added, removed, added again */
    write_file("n.lua", "return { fetch = function(id) return 'n1' end }\n");
    ok = wait_serving("n", "n1", 1.5);
    if (!ok) watch_down();
    REQUIRE(ok);
    ns_t *n = ns_find("n", 1);
    snprintf(path, sizeof(path), "%s/n.lua", tmpdir);
    unlink(path);
    ok = wait_serving("n", NULL, 1.5);
    if (!ok) watch_down();
    REQUIRE(ok && n->removed && ns_count() == 2);
    write_file("n.lua", "return { fetch = function(id) return 'n2' end }\n");
    ok = wait_serving("n", "n2", 1.5);
    if (!ok) watch_down();
    REQUIRE(ok && ns_find("n", 1) == n);

    /* a hidden file or a bad name is never a namespace */
    write_file(".hidden.lua", "return { fetch = function(id) return 'h' end }\n");
    write_file("bad name.lua", "return { fetch = function(id) return 'h' end }\n");

    /* RELOAD ns: answered after the read, compiled even if unchanged */
    reload_res_t rr = {0};
    uint64_t before = n->stats.reloads_ok;
    watch_reload("n", 1, reload_cb, &rr);
    REQUIRE(rr.calls == 0); /* never before watch_reload returns */
    run_until(&rr.calls, 1, 2);
    if (rr.calls != 1) watch_down();
    REQUIRE(rr.calls == 1 && strcmp(rr.err, "") == 0 && n->stats.reloads_ok == before + 1);
    REQUIRE(ns_count() == 3);

    /* RELOAD ns of a broken file */
    write_file("n.lua", "return { fetch = 'x' }\n");
    memset(&rr, 0, sizeof(rr));
    watch_reload("n", 1, reload_cb, &rr);
    run_until(&rr.calls, 1, 2);
    if (rr.calls != 1) watch_down();
    REQUIRE(rr.calls == 1);
    CHECK_STR_HAS(rr.err, "policy 'n': ");
    CHECK_STR_HAS(rr.err, "n.lua:1: fetch must be a function");
    REQUIRE(wait_serving("n", "n2", 0.1));

    /* RELOAD (all): the first failure by name; the bad file name after that */
    memset(&rr, 0, sizeof(rr));
    watch_reload(NULL, 0, reload_cb, &rr);
    run_until(&rr.calls, 1, 2);
    REQUIRE(rr.calls == 1);
    CHECK_STR_HAS(rr.err, "policy 'n': ");
    write_file("n.lua", "return { fetch = function(id) return 'n3' end }\n");
    memset(&rr, 0, sizeof(rr));
    watch_reload(NULL, 0, reload_cb, &rr);
    run_until(&rr.calls, 1, 2);
    REQUIRE(rr.calls == 1);
    CHECK_STR_HAS(rr.err, "bad name.lua: namespace name must match");
    snprintf(path, sizeof(path), "%s/bad name.lua", tmpdir);
    unlink(path);
    memset(&rr, 0, sizeof(rr));
    watch_reload(NULL, 0, reload_cb, &rr);
    run_until(&rr.calls, 1, 2);
    REQUIRE(rr.calls == 1 && strcmp(rr.err, "") == 0);
    REQUIRE(wait_serving("n", "n3", 0.1));

    /* RELOAD of a deleted file: removed, +OK; of a name never seen: unknown */
    snprintf(path, sizeof(path), "%s/n.lua", tmpdir);
    unlink(path);
    memset(&rr, 0, sizeof(rr));
    watch_reload("n", 1, reload_cb, &rr);
    run_until(&rr.calls, 1, 2);
    REQUIRE(rr.calls == 1 && strcmp(rr.err, "") == 0 && ns_find("n", 1) == NULL);
    memset(&rr, 0, sizeof(rr));
    watch_reload("nope", 4, reload_cb, &rr);
    run_until(&rr.calls, 1, 2);
    REQUIRE(rr.calls == 1 && strcmp(rr.err, "unknown namespace 'nope'") == 0);
    /* RELOAD of a file added a moment ago (before any event): served */
    write_file("fresh.lua", "return { fetch = function(id) return 'f' end }\n");
    memset(&rr, 0, sizeof(rr));
    watch_reload("fresh", 5, reload_cb, &rr);
    run_until(&rr.calls, 1, 2);
    REQUIRE(rr.calls == 1 && strcmp(rr.err, "") == 0 && ns_find("fresh", 5) != NULL);

    /* stop: a pending request is answered, exactly once */
    memset(&rr, 0, sizeof(rr));
    watch_reload(NULL, 0, reload_cb, &rr);
    watch_stop();
    REQUIRE(rr.calls == 1 && strcmp(rr.err, "shutting down") == 0);
    watch_down();
    REQUIRE(rr.calls == 1);
    memset(&rr, 0, sizeof(rr));
    watch_reload(NULL, 0, reload_cb, &rr);
    REQUIRE(rr.calls == 1 && strcmp(rr.err, "shutting down") == 0);
    /* and it can start again (the tests' next round, a restart) */
    REQUIRE(watch_start(loop, tmpdir, 0) == 0);
    memset(&rr, 0, sizeof(rr));
    watch_reload("w", 1, reload_cb, &rr);
    run_until(&rr.calls, 1, 2);
    REQUIRE(rr.calls == 1 && strcmp(rr.err, "") == 0);
    watch_down();
}

/* A folder that cannot be listed changes nothing; it coming back works. */
static void test_watch_dir_gone(void)
{
    char dir[300], real[300];
    snprintf(real, sizeof(real), "%s/real", tmpdir);
    snprintf(dir, sizeof(dir), "%s/link", tmpdir);
    REQUIRE(mkdir(real, 0700) == 0);
    REQUIRE(symlink(real, dir) == 0);
    char p[600];
    snprintf(p, sizeof(p), "%s/s.lua", real);
    FILE *f = fopen(p, "w");
    fputs("return { fetch = function(id) return 's1' end }\n", f);
    fclose(f);
    engine_conf_t c = base_conf();
    c.policies_dir = dir;
    REQUIRE(engine_up_conf(c) == 0);
    REQUIRE(watch_start(loop, dir, 0) == 0);
    REQUIRE(wait_serving("s", "s1", 0.5));
    /* the link dangles: nothing is removed */
    REQUIRE(unlink(dir) == 0);
    int zero = 0;
    run_until(&zero, 1, 0.8);
    REQUIRE(ns_find("s", 1) != NULL);
    reload_res_t rr = {0};
    watch_reload(NULL, 0, reload_cb, &rr);
    run_until(&rr.calls, 1, 2);
    if (rr.calls != 1) watch_down();
    REQUIRE(rr.calls == 1);
    CHECK_STR_HAS(rr.err, "cannot read policies folder");
    /* a new release behind the link (the usual deploy): picked up by the
     * poll, and the inotify watch follows it */
    char real2[300];
    snprintf(real2, sizeof(real2), "%s/real2", tmpdir);
    REQUIRE(mkdir(real2, 0700) == 0);
    snprintf(p, sizeof(p), "%s/s.lua", real2);
    f = fopen(p, "w");
    fputs("return { fetch = function(id) return 's2' end }\n", f);
    fclose(f);
    REQUIRE(symlink(real2, dir) == 0);
    bool ok = wait_serving("s", "s2", 1.5);
    if (!ok) watch_down();
    REQUIRE(ok);
    f = fopen(p, "w");
    fputs("return { fetch = function(id) return 's3' end }\n", f);
    fclose(f);
    ok = wait_serving("s", "s3", 1.5);
    watch_down();
    REQUIRE(ok);
    /* clean up the sub folders (wipe_dir removes files only) */
    unlink(p);
    snprintf(p, sizeof(p), "%s/s.lua", real);
    unlink(p);
    unlink(dir);
    rmdir(real);
    rmdir(real2);
}

/* A deleted file's namespace serves on for the grace: a file back within
 * it is a plain reload; past it the namespace goes; RELOAD does not wait. */
static void test_watch_grace(void)
{
    write_file("g.lua", "return { fetch = function(id) return 'g1' end }\n");
    REQUIRE(engine_up() == 0);
    REQUIRE(watch_start(loop, tmpdir, 400) == 0);
    ns_t *g = ns_find("g", 1);
    REQUIRE(g && wait_serving("g", "g1", 0.5));
    char path[600];
    snprintf(path, sizeof(path), "%s/g.lua", tmpdir);
    /* rm, then the copy 250 ms later: never unloaded */
    unlink(path);
    int zero = 0;
    run_until(&zero, 1, 0.25);
    REQUIRE(ns_find("g", 1) == g && wait_serving("g", "g1", 0.05));
    write_file("g.lua", "return { fetch = function(id) return 'g2' end }\n");
    bool ok = wait_serving("g", "g2", 1.5);
    if (!ok) watch_down();
    REQUIRE(ok);
    run_until(&zero, 1, 0.4); /* past the first grace: still served */
    REQUIRE(ns_find("g", 1) == g && !g->removed);
    /* rm for good: unloaded after the grace, not before */
    unlink(path);
    double t0 = now_s();
    while (ns_find("g", 1) && now_s() - t0 < 2)
        run_until(&zero, 1, 0.02);
    double took = now_s() - t0;
    if (ns_find("g", 1)) watch_down();
    REQUIRE(ns_find("g", 1) == NULL && g->removed);
    CHECK(took >= 0.39 && took < 1.2);
    /* RELOAD unloads at once */
    write_file("g.lua", "return { fetch = function(id) return 'g3' end }\n");
    ok = wait_serving("g", "g3", 1.5);
    if (!ok) watch_down();
    REQUIRE(ok);
    unlink(path);
    reload_res_t rr = {0};
    watch_reload("g", 1, reload_cb, &rr);
    run_until(&rr.calls, 1, 2);
    REQUIRE(rr.calls == 1 && strcmp(rr.err, "") == 0 && ns_find("g", 1) == NULL);
    watch_down();
}

/* A Kubernetes ConfigMap volume: ..data -> ..v1, NAME.lua -> ..data/NAME.lua;
 * an update renames a new ..data over the old one. Every file's new
 * version serves; nothing is removed on the way. */
static void test_watch_configmap(void)
{
    char p[1300], v[600];
    const char *vers[] = {"..v1", "..v2"};
    for (int i = 0; i < 2; i++) {
        snprintf(v, sizeof(v), "%s/%s", tmpdir, vers[i]);
        REQUIRE(mkdir(v, 0700) == 0);
        for (int j = 0; j < 2; j++) {
            snprintf(p, sizeof(p), "%s/c%d.lua", v, j);
            FILE *f = fopen(p, "w");
            REQUIRE(f);
            fprintf(f, "return { fetch = function(id) return 'c%d-v%d' end }\n", j, i + 1);
            fclose(f);
        }
    }
    snprintf(p, sizeof(p), "%s/..data", tmpdir);
    REQUIRE(symlink("..v1", p) == 0);
    for (int j = 0; j < 2; j++) {
        char target[64];
        snprintf(target, sizeof(target), "..data/c%d.lua", j);
        snprintf(p, sizeof(p), "%s/c%d.lua", tmpdir, j);
        REQUIRE(symlink(target, p) == 0);
    }
    REQUIRE(engine_up() == 0);
    REQUIRE(watch_start(loop, tmpdir, 5000) == 0);
    REQUIRE(wait_serving("c0", "c0-v1", 0.5) && wait_serving("c1", "c1-v1", 0.5));
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s/..data_tmp", tmpdir);
    snprintf(p, sizeof(p), "%s/..data", tmpdir);
    REQUIRE(symlink("..v2", tmp) == 0 && rename(tmp, p) == 0);
    bool ok = wait_serving("c0", "c0-v2", 1.5) && wait_serving("c1", "c1-v2", 0.1);
    watch_down();
    REQUIRE(ok);
    /* clean up (wipe_dir removes files only) */
    for (int j = 0; j < 2; j++) {
        snprintf(p, sizeof(p), "%s/c%d.lua", tmpdir, j);
        unlink(p);
        for (int i = 0; i < 2; i++) {
            snprintf(p, sizeof(p), "%s/%s/c%d.lua", tmpdir, vers[i], j);
            unlink(p);
        }
    }
    snprintf(p, sizeof(p), "%s/..data", tmpdir);
    unlink(p);
    for (int i = 0; i < 2; i++) {
        snprintf(v, sizeof(v), "%s/%s", tmpdir, vers[i]);
        rmdir(v);
    }
}

/* A file that changes while it is read (stand-in: a /proc file, whose
 * size says 0 and whose read brings more, as a file written between the
 * read's stat and its read does) is reported as such, with EAGAIN. */
static void test_src_read_changing(void)
{
    policy_src_t src;
    REQUIRE(policy_src_read("/proc/self/status", &src) == -1);
    CHECK(src.data == NULL && src.err_no == EAGAIN);
    CHECK_STR_HAS(src.error, "/proc/self/status: file changed while being read");
    const char *text = "return { fetch = function(id) return id end }\n";
    write_file("still.lua", "%s", text);
    char path[600];
    snprintf(path, sizeof(path), "%s/still.lua", tmpdir);
    REQUIRE(policy_src_read(path, &src) == 0);
    CHECK(strcmp(src.data, text) == 0 && src.len == strlen(text) && src.err_no == 0);
    policy_src_free(&src);
}

/* The watcher takes a file that changed under its read as one being
 * written: no failed reload, no namespace from it; RELOAD reports it. */
static void test_watch_changing(void)
{
    write_file("w.lua", "return { fetch = function(id) return 'w1' end }\n");
    REQUIRE(engine_up() == 0);
    REQUIRE(watch_start(loop, tmpdir, 0) == 0);
    char path[600];
    snprintf(path, sizeof(path), "%s/p.lua", tmpdir);
    REQUIRE(symlink("/proc/self/status", path) == 0);
    /* a scan that lists q.lua started after p.lua was there, and read it */
    write_file("q.lua", "return { fetch = function(id) return 'q1' end }\n");
    bool ok = wait_serving("q", "q1", 1.5);
    int zero = 0;
    run_until(&zero, 1, 0.6); /* and a poll */
    if (!ok) watch_down();
    REQUIRE(ok);
    CHECK(ns_find("p", 1) == NULL);
    CHECK(ns_find("w", 1)->stats.reloads_error == 0 && ns_find("q", 1)->stats.reloads_error == 0);
    reload_res_t rr = {0};
    watch_reload("p", 1, reload_cb, &rr);
    run_until(&rr.calls, 1, 2);
    watch_down();
    REQUIRE(rr.calls == 1);
    CHECK_STR_HAS(rr.err, "policy 'p': ");
    CHECK_STR_HAS(rr.err, "p.lua: file changed while being read");
}

static void test_check_dir(void)
{
    write_file("ok.lua", "return { fetch = function(id) return id end }\n");
    engine_conf_t c = base_conf();
    /* stdout/stderr go to the test log; only the count is checked here */
    REQUIRE(engine_check_dir(&c) == 0);
    write_file("bad.lua", "return { fetch = 1 }\n");
    REQUIRE(engine_check_dir(&c) == 1);
}

/* ---- HTTP, against a python3 http.server child ---- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

static char http_root[300];

static bool http_server_start(void)
{
    snprintf(http_root, sizeof(http_root), "%s-www", tmpdir);
    mkdir(http_root, 0700);
    char path[400];
    snprintf(path, sizeof(path), "%s/widget.json", http_root);
    FILE *f = fopen(path, "w");
    if (!f) return false;
    fputs("{\"id\":42,\"owner_id\":5}", f);
    fclose(f);
    http_port = free_port();
    if (http_port <= 0) return false;
    http_pid = fork();
    if (http_pid == 0) {
        char port[16];
        snprintf(port, sizeof(port), "%d", http_port);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("python3", "python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory",
               http_root, port, (char *)NULL);
        _exit(127);
    }
    double deadline = now_s() + 10;
    while (now_s() < deadline) {
        if (port_open(http_port)) return true;
        usleep(50000);
    }
    return false;
}

static void http_server_stop(void)
{
    if (http_pid > 0) {
        kill(http_pid, SIGTERM);
        waitpid(http_pid, NULL, 0);
        http_pid = 0;
    }
    char path[400];
    snprintf(path, sizeof(path), "%s/widget.json", http_root);
    unlink(path);
    rmdir(http_root);
}

static void test_http(void)
{
    if (!http_server_start()) {
        fprintf(stderr, "    python3 http.server did not start\n");
        test_failed = 1;
        return;
    }
    int dead = free_port();
    /* a listener that never answers: curl connects and waits */
    int hole = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in ha = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t halen = sizeof(ha);
    REQUIRE(hole >= 0 && bind(hole, (struct sockaddr *)&ha, sizeof(ha)) == 0 &&
            listen(hole, 64) == 0 && getsockname(hole, (struct sockaddr *)&ha, &halen) == 0);
    write_file("hole.lua",
               "return { fetch_timeout = 0.2, fetch = function(id, ctx)\n"
               "  local res = ctx.http.get('http://127.0.0.1:%d/')\n"
               "  return 'never'\n"
               "end }\n",
               ntohs(ha.sin_port));
    write_file("h.lua",
               "local json = require 'cjson'\n"
               "return { fetch = function(id, ctx)\n"
               "  if id == 'refused' then\n"
               "    local ok, err = pcall(ctx.http.get, 'http://127.0.0.1:%d/')\n"
               "    return 'caught:' .. tostring(err)\n"
               "  end\n"
               "  if id == 'raise' then ctx.http.get('http://127.0.0.1:%d/') end\n"
               "  local res = ctx.http.request{ url = 'http://127.0.0.1:%d/' .. id,\n"
               "                                headers = { Accept = 'application/json' } }\n"
               "  if res.status == 404 then return nil end\n"
               "  local w = json.decode(res.body)\n"
               "  assert(type(res.headers['content-type']) == 'string')\n"
               "  return res.body, { tags = { 'owner:' .. w.owner_id } }\n"
               "end }\n",
               dead, dead, http_port);
    REQUIRE(engine_up() == 0);
    res_t r;
    fetch_wait("h", "widget.json", &r, 5);
    REQUIRE(r.calls == 1 && r.kind == FETCH_OK);
    REQUIRE(strcmp(r.value, "{\"id\":42,\"owner_id\":5}") == 0);
    REQUIRE(r.ntags == 1 && strcmp(r.tags[0], "owner:5") == 0);
    res_free(&r);
    fetch_wait("h", "missing", &r, 5);
    REQUIRE(r.calls == 1 && r.kind == FETCH_NOT_FOUND);
    res_free(&r);
    fetch_wait("h", "refused", &r, 5);
    REQUIRE(r.calls == 1 && r.kind == FETCH_OK);
    CHECK_STR_HAS(r.value, "caught:");
    /* pcall called ctx.http.get directly: the policy's line is still named */
    CHECK_STR_HAS(r.value, "h.lua:4: http GET http://127.0.0.1:");
    CHECK_STR_HAS(r.value, "onnect"); /* curl's "Couldn't connect to server" */
    res_free(&r);
    fetch_wait("h", "raise", &r, 5);
    REQUIRE(r.calls == 1 && r.kind == FETCH_ERROR);
    CHECK_STR_HAS(r.error, "h.lua:7: http GET");
    res_free(&r);
    /* fetch_timeout cancels the HTTP call */
    double t0 = now_s();
    fetch_wait("hole", "1", &r, 3);
    if (r.kind != FETCH_TIMEOUT)
        fprintf(stderr, "hole: calls=%d kind=%d error=%s\n", r.calls, (int)r.kind,
                r.error ? r.error : "(none)");
    REQUIRE(r.calls == 1 && r.kind == FETCH_TIMEOUT);
    REQUIRE(now_s() - t0 < 1.0);
    REQUIRE(http_calls_in_flight() == 0);
    res_free(&r);
    /* and so does shutdown */
    static res_t rs[5];
    memset(rs, 0, sizeof(rs));
    for (int i = 0; i < 5; i++)
        fetch_start(ns_find("hole", 4)->cur, "x", 1, res_cb, &rs[i]);
    int zero = 0;
    run_until(&zero, 1, 0.05);
    REQUIRE(http_calls_in_flight() == 5);
    fetch_abort_all();
    REQUIRE(http_calls_in_flight() == 0 && fetches_in_flight() == 0);
    for (int i = 0; i < 5; i++) {
        REQUIRE(rs[i].calls == 1 && strcmp(rs[i].error, "shutting down") == 0);
        res_free(&rs[i]);
    }
    close(hole);
}

/* ------------------------------------------------------------------------ */

typedef struct test {
    const char *name;
    void (*fn)(void);
    bool needs_http;
} test_t;

static const test_t tests[] = {
    {"load_fields", test_load_fields, false},
    {"load_errors", test_load_errors, false},
    {"fetch_results", test_fetch_results, false},
    {"budget", test_budget, false},
    {"time_limit", test_time_limit, false},
    {"patterns", test_patterns, false},
    {"pattern_time", test_pattern_time, false},
    {"memory", test_memory, false},
    {"sleep_concurrent", test_sleep_concurrent, false},
    {"timeout", test_timeout, false},
    {"abort_all", test_abort_all, false},
    {"sandbox", test_sandbox, false},
    {"ttl_fn", test_ttl_fn, false},
    {"reload_in_flight", test_reload_in_flight, false},
    {"apply_unchanged", test_apply_unchanged, false},
    {"remove_readd", test_remove_readd, false},
    {"watch", test_watch, false},
    {"watch_dir_gone", test_watch_dir_gone, false},
    {"watch_grace", test_watch_grace, false},
    {"watch_configmap", test_watch_configmap, false},
    {"src_read_changing", test_src_read_changing, false},
    {"watch_changing", test_watch_changing, false},
    {"check_dir", test_check_dir, false},
    {"http", test_http, true},
};

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    const char *lp = getenv("LUACACHED_LUA_PATH");
    if (!lp) {
        struct stat st;
        lp = stat("lua/luacached/runtime.lua", &st) == 0 ? "lua" : "../lua";
    }
    snprintf(lua_path, sizeof(lua_path), "%s", lp);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lc-policy-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    if (!getenv("LC_TEST_VERBOSE")) log_min_level = LOG_ERROR + 1; /* quiet */
    loop = uv_default_loop();
    bool have_http = http_client_init(loop) == 0;

    for (size_t i = 0; i < LC_ARRAY_LEN(tests); i++) {
        if (argc > 1 && strcmp(argv[1], tests[i].name) != 0) continue;
        if (tests[i].needs_http && !have_http) continue;
        test_failed = 0;
        double t0 = now_s();
        tests[i].fn();
        /* A test that failed half-way left its watcher running: stop it
         * here (before the engine, as watch.h asks), so the next test's
         * watch_start does not fail because of this one. */
        watch_stop();
        engine_down();
        if (tests[i].needs_http) http_server_stop();
        bool ok = check_end_test();
        printf("%s %s (%.2fs)\n", ok ? "ok  " : "FAIL", tests[i].name, now_s() - t0);
    }
    if (have_http) http_client_close();
    for (int i = 0; i < 10; i++)
        uv_run(loop, UV_RUN_NOWAIT);
    uv_loop_close(loop);
    rmdir(tmpdir);
    return check_summary("policy");
}
