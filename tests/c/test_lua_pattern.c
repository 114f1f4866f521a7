/* test_lua_pattern.c: the budget of src/lua_pattern.c on a plain lua_State
 * (its results are compared with the stock library in test_pattern_diff.c).
 *
 *  - runaway patterns stop with the budget's error, by count or by clock,
 *    as plain calls and as string methods, and ordinary ones are
 *    unaffected;
 *  - the steps reported add up (final flushes included) and are a fair
 *    measure of the work. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lua_pattern.h"
#include "check.h"

static double now_s(void)
{
    return (double)uv_hrtime() / 1e9;
}

/* ------------------------------------------------------------------------ */
/* A budget like policy.c's: a step count and a deadline                     */
/* ------------------------------------------------------------------------ */

static struct {
    uint64_t used, limit;
    uint64_t deadline_ns; /* 0: none */
    unsigned long calls, finals;
} B;

static void test_charge(lua_State *L, unsigned long steps, int final)
{
    B.used += steps;
    B.calls++;
    if (final) {
        B.finals++;
        return;
    }
    if (B.used > B.limit) luaL_error(L, "pattern matching exceeded the instruction budget");
    if (B.deadline_ns && uv_hrtime() > B.deadline_ns)
        luaL_error(L, "pattern matching exceeded the time budget");
}

static const lua_pattern_budget_t plain_budget = {test_charge};

static void budget_reset(uint64_t limit, double seconds)
{
    memset(&B, 0, sizeof(B));
    B.limit = limit;
    B.deadline_ns = seconds > 0 ? uv_hrtime() + (uint64_t)(seconds * 1e9) : 0;
}

/* A state with the stock library in `string`, and `lp` holding the
 * budgeted functions. With methods, `string` gets them too (what
 * policy.c does), and `stock` keeps the originals. */
static lua_State *state_new(int methods)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_newtable(L); /* [lp] */
    lua_pattern_register(L, -1, &plain_budget);
    lua_setglobal(L, "lp"); /* [] */
    lua_getglobal(L, "string");
    lua_newtable(L); /* [string, stock] */
    static const char *const names[] = {"find", "match", "gmatch", "gsub"};
    for (int i = 0; i < 4; i++) {
        lua_getfield(L, -2, names[i]);
        lua_setfield(L, -2, names[i]);
    }
    lua_setglobal(L, "stock"); /* [string] */
    if (methods) lua_pattern_register(L, -1, &plain_budget);
    lua_pop(L, 1);
    return L;
}

/* ------------------------------------------------------------------------ */
/* Budget                                                                    */
/* ------------------------------------------------------------------------ */

/* Run chunk (returning one value) in L under limit steps / seconds; *err
 * gets its error message (or NULL), *took the time. */
static const char *budgeted(lua_State *L, const char *chunk, uint64_t limit, double seconds,
                            double *took)
{
    static char msg[512];
    budget_reset(limit, seconds);
    double t0 = now_s();
    int st = luaL_loadstring(L, chunk);
    if (st == LUA_OK) st = lua_pcall(L, 0, 1, 0);
    *took = now_s() - t0;
    snprintf(msg, sizeof(msg), "%s", st == LUA_OK ? "" : lua_tostring(L, -1));
    lua_pop(L, 1);
    return st == LUA_OK ? NULL : msg;
}

static void test_budget(void)
{
    lua_State *L = state_new(1); /* string.* and methods are ours */
    static const char *const runaway[] = {
        "return string.find(string.rep('a', 2000), '.-.-.-.-b')",
        "return ('a'):rep(200000):find('.-b')",
        "return ('a'):rep(200000):match('(.-)b')",
        "return (string.gsub(string.rep('a', 3000), '(.-)(.-)(.-)x', '%1'))",
        "for x in ('a'):rep(3000):gmatch('.-.-.-b') do end",
        "return ('('):rep(100000):find('%b()')",
        "return ('a'):rep(200000):find(('a'):rep(5000) .. 'b', 1, true)",
        "return ('ab'):rep(50000):find('(.*)%1%1x')",
        "return ('a'):rep(30):find(('a?'):rep(30) .. ('a'):rep(30))",
        "return ('a'):rep(3000):match('(.-)a(.-)a(.-)b')",
        "return ('x'):rep(2000):find('(x-)(x-)(x-)(x-)y')",
        "return ('a'):rep(5000):gsub('a-a-a-b', '')",
        "return ('(('):rep(50000):match('%b()')",
        "local ok, e for i = 1, 50 do ok, e = pcall(string.find, ('a'):rep(2000), '.-.-.-.-b') end "
        "error(e, 0)",
    };
    for (size_t i = 0; i < sizeof(runaway) / sizeof(runaway[0]); i++) {
        double took;
        const char *err = budgeted(L, runaway[i], 20000000, 0, &took);
        printf("    %-72.72s %.3f s\n", runaway[i], took);
        if (i + 1 == sizeof(runaway) / sizeof(runaway[0])) {
            /* this budget does not trip for good (policy.c's does): the
             * loop survives, but each find stops at the budget */
            REQUIRE(err && strstr(err, "exceeded the instruction budget"));
            REQUIRE(took < 1.5);
            continue;
        }
        REQUIRE(err != NULL);
        if (!strstr(err, "pattern matching exceeded the instruction budget")) {
            fprintf(stderr, "    %s: %s\n", runaway[i], err);
            REQUIRE(0);
        }
        REQUIRE(took < 1.5);
    }
    /* By the clock: a budget too big to count out. */
    double took;
    const char *err = budgeted(L, "return ('a'):rep(200000):find('.-b')", UINT64_MAX, 0.2, &took);
    REQUIRE(err && strstr(err, "pattern matching exceeded the time budget"));
    REQUIRE(took >= 0.19 && took < 0.5);
    /* The message names the Lua line that called. */
    err = budgeted(L, "local s = ('a'):rep(5000)\nreturn s:find('.-.-b')", 100000, 0, &took);
    REQUIRE(err && strstr(err, "[string \"local s = ('a'):rep(5000)...\"]:2: pattern matching"));
    /* Ordinary patterns under a small budget are fine, and counted. */
    err = budgeted(L,
                   "local k, v = ('x=1, y=22'):match('(%w+)=(%w+)')\n"
                   "local n = select(2, ('a,b,c'):gsub(',', ';'))\n"
                   "local w = {} for x in ('one two three'):gmatch('%a+') do w[#w + 1] = x end\n"
                   "assert(k .. v .. n .. table.concat(w, '+') .. string.find('hello', 'l+') ==\n"
                   "       'x12one+two+three3')\n"
                   "assert(getmetatable('').__index.find == string.find)\n"
                   "assert(string.find ~= stock.find)\n",
                   100000, 0, &took);
    if (err) fprintf(stderr, "    %s\n", err);
    REQUIRE(err == NULL);
    REQUIRE(B.used > 20 && B.used < 2000 && B.calls == B.finals);
    /* Steps are a fair measure: a match of 1000 steps reports ~1000. */
    err = budgeted(L, "return ('a'):rep(999):find('^a*b')", UINT64_MAX, 0, &took);
    REQUIRE(err == NULL);
    printf("    ('a'):rep(999):find('^a*b') counted %llu steps\n", (unsigned long long)B.used);
    REQUIRE(B.used > 1000 && B.used < 10000);
    lua_close(L);
}

/* How long a budget of steps lasts: the default policy budget is 100 M
 * instructions, meant to be well under the 1 s time limit. Printed, not
 * asserted: a duration is a benchmark figure (and ASan multiplies it); the
 * time bound itself is the deadline, which test_budget checks. */
static void test_throughput(void)
{
    lua_State *L = state_new(1);
    double took;
    const char *err =
        budgeted(L, "return string.find(string.rep('a', 2000), '.-.-.-.-b')", 100000000, 0, &took);
    REQUIRE(err && strstr(err, "instruction budget"));
    printf("    100 M matcher steps of '.-.-.-.-b' took %.3f s\n", took);
    err = budgeted(L, "return ('a'):rep(200000):find('.-b')", 100000000, 0, &took);
    REQUIRE(err && strstr(err, "instruction budget"));
    printf("    100 M matcher steps of '.-b' took %.3f s\n", took);
    lua_close(L);
}

int main(void)
{
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"budget", test_budget},
        {"throughput", test_throughput},
    };
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        test_failed = 0;
        double t0 = now_s();
        tests[i].fn();
        bool ok = check_end_test();
        printf("%s %s (%.2fs)\n", ok ? "ok  " : "FAIL", tests[i].name, now_s() - t0);
    }
    return check_summary("lua_pattern");
}
