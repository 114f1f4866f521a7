/* test_lua_pattern.c: src/lua_pattern.c on a plain lua_State.
 *
 *  - differential: for a corpus of patterns and subjects (and a seeded
 *    random one), the budgeted find/match/gmatch/gsub return exactly what
 *    the stock string library of the same state returns: values, their
 *    types (integer positions), and error messages;
 *  - budget: runaway patterns stop with the budget's error, by count or by
 *    clock, as plain calls and as string methods, and ordinary ones are
 *    unaffected;
 *  - the steps reported add up (final flushes included). */
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

/* Run chunk; on error print it and return -1. */
static int run(lua_State *L, const char *name, const char *chunk)
{
    if (luaL_loadbuffer(L, chunk, strlen(chunk), name) != LUA_OK ||
        lua_pcall(L, 0, LUA_MULTRET, 0) != LUA_OK) {
        fprintf(stderr, "    %s: %s\n", name, lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Differential                                                              */
/* ------------------------------------------------------------------------ */

/* Defines same(label, fa, fb, ...) comparing pcall(fa, ...) with
 * pcall(fb, ...), and the corpus. Error messages are compared with the
 * function name in "bad argument #n to 'name'" left out (the stock
 * functions are found under string.* by name, ours are not). */
static const char harness_lua[] =
    "local stock, lp = stock, lp\n"
    "local fails, cases = 0, 0\n"
    "local function ser(v)\n"
    "  local t = type(v)\n"
    "  if t == 'number' then return math.type(v) .. ':' .. tostring(v) end\n"
    "  if t == 'string' then return string.format('%q', v) end\n"
    "  return t\n"
    "end\n"
    "local function norm(ok, ...)\n"
    "  local n = select('#', ...)\n"
    "  local out = { ok and 'ok' or 'err', tostring(n) }\n"
    "  for i = 1, n do\n"
    "    local v = select(i, ...)\n"
    "    if not ok and type(v) == 'string' then\n"
    "      v = v:gsub(\"bad argument #(%d+) to '[^']*'\", 'bad argument #%1')\n"
    "      out[#out + 1] = 'E' .. v\n"
    "    else\n"
    "      out[#out + 1] = ser(v)\n"
    "    end\n"
    "  end\n"
    "  return table.concat(out, ' ')\n"
    "end\n"
    "local function gm_all(gm, s, p, init)\n"
    "  local out = {}\n"
    "  local ok, it = pcall(gm, s, p, init)\n"
    "  if not ok then return norm(false, it) end\n"
    "  for i = 1, 10000 do\n"
    "    local r = norm(pcall(it))\n"
    "    out[#out + 1] = r\n"
    "    if r == 'ok 0' or r:sub(1, 3) == 'err' then break end\n"
    "  end\n"
    "  return table.concat(out, ' | ')\n"
    "end\n"
    "local function describe(x)\n"
    "  if type(x) == 'string' then return string.format('%q', x) end\n"
    "  return tostring(x)\n"
    "end\n"
    "function same(what, ...)\n"
    "  cases = cases + 1\n"
    "  local a, b\n"
    "  if what == 'gmatch' then\n"
    "    a, b = gm_all(stock.gmatch, ...), gm_all(lp.gmatch, ...)\n"
    "  else\n"
    "    a, b = norm(pcall(stock[what], ...)), norm(pcall(lp[what], ...))\n"
    "  end\n"
    "  if a ~= b then\n"
    "    fails = fails + 1\n"
    "    if fails <= 20 then\n"
    "      local args = {}\n"
    "      for i = 1, select('#', ...) do args[i] = describe((select(i, ...))) end\n"
    "      io.stderr:write('    MISMATCH ', what, '(', table.concat(args, ', '), ')\\n',\n"
    "        '      stock: ', a, '\\n      ours:  ', b, '\\n')\n"
    "    end\n"
    "  end\n"
    "end\n"
    "function results() return cases, fails end\n";

static const char corpus_lua[] =
    "local subjects = {\n"
    "  '', 'a', 'aaa', 'aaab', 'hello world', '  Hello, World! 123 ',\n"
    "  'THE (quick) [brown] fox', 'a.b.c', 'abcabcabc', 'x=1, y=22, z=333',\n"
    "  'f(a(b)c)d', '0x1F ff 9g', 'tab' .. string.char(9) .. 'nl' .. string.char(10) ..\n"
    "  'nul' .. string.char(0) .. 'end', 'caf' .. string.char(195, 169) .. ' ' ..\n"
    "  string.char(255, 128), '%%%', 'key = value', '((()))', '[[]]', 'a,b,,c,',\n"
    "  '$^*+?.-', 'ab12cd34', 'CamelCaseString', '  trim me  ', 'hello hello',\n"
    "  string.rep('ab', 20) .. 'b', 'one two  three   ', '(a)(b)((c))',\n"
    "}\n"
    "local patterns = {\n"
    "  '', 'a', '^a', 'a$', '^$', '^', '$', '.', '..', '.-', '.*', '.+', 'a*', 'a+',\n"
    "  'a-', 'a?', 'a?b', '^a*', 'b*$', 'ab', 'l+', 'o w', 'nul' .. string.char(0) .. 'e',\n"
    "  '%a+', '%A+', '%d+', '%D+', '%s+', '%S+', '%w+', '%W+', '%p+', '%P+', '%x+', '%X+',\n"
    "  '%c+', '%C+', '%g+', '%G+', '%l+', '%L+', '%u+', '%U+', '%z', '%Z+', '%a*%d',\n"
    "  '[abc]+', '[^abc]+', '[a-z]+', '[^a-z]+', '[%a_][%w_]*', '[%]]', '[]]', '[^]]+',\n"
    "  '[a-]', '[-a]+', '[%-%.]+', '[0-9a-fA-F]+', '[%s,]+', '[^%s]+', '[%w%.]+',\n"
    "  '[' .. string.char(128) .. '-' .. string.char(255) .. ']+',\n"
    "  '%b()', '%b[]', '%b((', '%bab', '%f[%w]%w+', '%f[%W]', '%f[%a]', '%f[%z]',\n"
    "  '%f[^%z]', '%f[%l]%a', '(a)', '(a*)', '()a()', '()', '(%w+)=(%w+)', '(%d)(%d)',\n"
    "  '((a)(b))', '(.)%1', '(%w+)%s*%1', '(h)(e)(l)(l)(o)', '(l)%1', '()(%a+)()',\n"
    "  '%.', '%%', '%$', 'x*$', '^(%s*)(.-)(%s*)$', '.-b', '(.-)c', 'a.-c', '^(%w+)',\n"
    "  '%s*$', '^%s*', '(%a)(%a)%2%1', '[%(%)]', '%((%a)%)', 'a%-b', '[%^]', '^^',\n"
    "  '$$', 'a$b', '(()', '(()())', '%',  '[a', '(', ')', '%1', '%b', '%bx', '%f',\n"
    "  '%fx', '[^', '(a)%2', '%0', '[%', '[a-', '(((((((((((((((((((((((((((((((((a)))))'..\n"
    "  ')))))))))))))))))))))))))))',\n"
    "}\n"
    "local inits = { 1, 2, 0, -1, -3, 4, 30, 41, 42, 43, -100 }\n"
    "local repls = {\n"
    "  '<%0>', '%1', '%2-%1', '%%', 'x', '', '%', '%9', '%a', '%1%1%0', 7, 2.5,\n"
    "  { a = 'A', hello = 'HI', ['1'] = 'one', l = false, ab = 3 },\n"
    "  function(a, b) return a and (a:upper() .. tostring(b)) end,\n"
    "  function() return nil end, function() return false end,\n"
    "  function() return {} end, function(x) return #tostring(x) end,\n"
    "  function(...) return select('#', ...) .. '' end,\n"
    "}\n"
    "for _, s in ipairs(subjects) do\n"
    "  for _, p in ipairs(patterns) do\n"
    "    same('find', s, p)\n"
    "    same('find', s, p, nil, true)\n"
    "    same('match', s, p)\n"
    "    same('gmatch', s, p)\n"
    "    for _, i in ipairs(inits) do\n"
    "      same('find', s, p, i)\n"
    "      same('find', s, p, i, true)\n"
    "      same('match', s, p, i)\n"
    "      same('gmatch', s, p, i)\n"
    "    end\n"
    "    for _, r in ipairs(repls) do\n"
    "      same('gsub', s, p, r)\n"
    "    end\n"
    "    for _, n in ipairs({ 0, 1, 2, -1, 2.0 }) do\n"
    "      same('gsub', s, p, '[%0]', n)\n"
    "    end\n"
    "  end\n"
    "end\n"
    /* argument errors and coercions */
    "same('find', nil, 'a') same('find', 'a', nil) same('find', 'a', 'a', 'x')\n"
    "same('find', 'a', 'a', 1.5) same('find', 123, 2) same('find', 'a1', 1)\n"
    "same('match', {}, 'a') same('gmatch', 'a') same('gmatch', 'abc', '.', 2.5)\n"
    "same('gsub', 'abc', 'b') same('gsub', 'abc', 'b', true) same('gsub', 'abc', 'b', 'x', 'n')\n"
    "same('gsub', 'abc', '%w', '%2') same('gsub', 'abc', '(b)', '%2')\n"
    "same('gsub', 123, 2, 5) same('find', 'abc', 'b', math.mininteger)\n"
    "same('find', 'abc', 'b', math.maxinteger) same('gmatch', 'abc', '', math.maxinteger)\n"
    "same('find', 'abc', '', 4) same('find', 'abc', '', 5) same('match', 'abc', '()', 4)\n"
    "same('gsub', 'abc', '', '-') same('gsub', 'abc', '.-', '-') same('gsub', 'abc', 'x*', '-')\n"
    "same('gsub', 'hello world', '%w+', '%0 %0', 1)\n"
    "same('gsub', 'abc', '%w', function(c) error('boom ' .. c) end)\n"
    "same('gsub', 'abc', '%w', setmetatable({}, { __index = function(_, k) return k .. k end }))\n"
    "same('gsub', 'abc', '()', '%1') same('gsub', 'abc', '()', { [1] = 'one', [2] = 'two' })\n"
    "same('find', string.rep('a', 300), string.rep('a?', 300) .. string.rep('a', 300))\n"
    "same('match', string.rep('(', 300), string.rep('%(', 250))\n"
    "same('match', string.rep('x', 100), string.rep('(x)', 33))\n"
    "same('match', string.rep('x', 100), string.rep('(x)', 32))\n"
    "same('find', string.rep('x', 500), string.rep('.?', 250) .. 'y')\n";

/* Random patterns built from pattern items, on random subjects. */
static const char random_lua[] =
    "math.randomseed(20240611)\n"
    "local items = { 'a', 'b', '.', '%a', '%d', '%s', '%w', '%p', '%A', '[ab]', '[^a]',\n"
    "  '[a-c]', '%b()', '%f[%a]', '%1', '(', ')', '()', '^', '$', '%', '[', ']', '-', 'x',\n"
    "  '%%', '%.', '[%d_]', '%u', '%l' }\n"
    "local quant = { '', '', '', '*', '+', '-', '?' }\n"
    "local chars = { 'a', 'b', 'c', '1', '2', ' ', '(', ')', '.', '%', 'A', '_', 'x' }\n"
    "for _ = 1, 30000 do\n"
    "  local p = {}\n"
    "  for i = 1, math.random(1, 6) do\n"
    "    p[i] = items[math.random(#items)] .. quant[math.random(#quant)]\n"
    "  end\n"
    "  p = table.concat(p)\n"
    "  local s = {}\n"
    "  for i = 1, math.random(0, 14) do s[i] = chars[math.random(#chars)] end\n"
    "  s = table.concat(s)\n"
    "  local init = math.random(-5, 16)\n"
    "  same('find', s, p, init)\n"
    "  same('match', s, p)\n"
    "  same('gmatch', s, p)\n"
    "  same('gsub', s, p, '<%0>')\n"
    "  same('gsub', s, p, function(...) return table.concat({ ... }, ',') end)\n"
    "end\n";

static void test_differential(void)
{
    lua_State *L = state_new(0);
    budget_reset(UINT64_MAX, 0);
    double t0 = now_s();
    REQUIRE(run(L, "=harness", harness_lua) == 0);
    REQUIRE(run(L, "=corpus", corpus_lua) == 0);
    REQUIRE(run(L, "=random", random_lua) == 0);
    lua_getglobal(L, "results");
    lua_call(L, 0, 2);
    long cases = (long)lua_tointeger(L, -2), fails = (long)lua_tointeger(L, -1);
    lua_close(L);
    printf("    %ld cases compared with the stock library in %.2f s, %ld differ; "
           "%llu matcher steps counted\n",
           cases, now_s() - t0, fails, (unsigned long long)B.used);
    REQUIRE(cases > 100000);
    REQUIRE(fails == 0);
    REQUIRE(B.used > 0 && B.finals > 0);
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
        "return ('a'):rep(100000):find('[' .. ('b'):rep(10000) .. ']')",
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
        {"differential", test_differential},
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
