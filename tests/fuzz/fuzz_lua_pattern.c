/* fuzz_lua_pattern.c: the budgeted Lua pattern matcher (src/lua_pattern.h
 * API only) on arbitrary patterns and subjects, through find (pattern and
 * plain), match, gmatch and gsub (string, function and table
 * replacements), with a charge callback that stops any call after
 * STEP_LIMIT steps, the way policy.c's budget does. Checks: no sanitizer
 * report, no hang (libFuzzer's -timeout): the budget stops every call.
 *
 * With LUACACHED_FUZZ_DIFF=1 in the environment it also compares each
 * result (values and types, or the error message) with the stock string
 * library of the same Lua, when ours finished within the budget. Off by
 * default: the stock matcher has no budget and can take exponential time.
 *
 * Input: byte 0 the operation and replacement, byte 1 init (signed), byte 2
 * the pattern's length (mod the rest), then the pattern, then the subject. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lua_pattern.h"

#define STEP_LIMIT 200000UL

static lua_State *L;
static int diff;
static unsigned long used;
static int budget_tripped;

static void charge(lua_State *T, unsigned long steps, int final)
{
    used += steps;
    if (!final && used > STEP_LIMIT) {
        budget_tripped = 1;
        luaL_error(T, "pattern budget exceeded");
    }
}

static const lua_pattern_budget_t budget = {charge};

/* run(F, op, s, p, init, rk): one call through the functions in table F,
 * its results (or the gmatch iterations) as one string. */
static const char DRIVER[] =
    "local REPL = { '%0', '<%1>', '%%', 'x%2y', '', '%', function(a) return a end,\n"
    "  function() return false end, { a = 'A', ['1'] = 'one' } }\n"
    "return function(F, op, s, p, init, rk)\n"
    "  local out = {}\n"
    "  local function put(...)\n"
    "    for i = 1, select('#', ...) do\n"
    "      local v = select(i, ...)\n"
    "      out[#out + 1] = (math.type(v) or type(v)) .. ':' .. tostring(v)\n"
    "    end\n"
    "    out[#out + 1] = '|'\n"
    "  end\n"
    "  if op == 0 then put(F.find(s, p, init))\n"
    "  elseif op == 1 then put(F.find(s, p, init, true))\n"
    "  elseif op == 2 then put(F.match(s, p, init))\n"
    "  elseif op == 3 then\n"
    "    local k = 0\n"
    "    for a, b in F.gmatch(s, p, init) do put(a, b) k = k + 1 if k >= 100 then break end end\n"
    "  else put(F.gsub(s, p, REPL[rk], init > 0 and init or nil)) end\n"
    "  return table.concat(out, ' ')\n"
    "end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *d = getenv("LUACACHED_FUZZ_DIFF");
    diff = d && strcmp(d, "1") == 0;
    L = luaL_newstate();
    if (!L) abort();
    luaL_openlibs(L);
    lua_newtable(L);
    lua_pattern_register(L, -1, &budget);
    lua_setglobal(L, "ours");
    lua_newtable(L);
    static const char *const names[] = {"find", "match", "gmatch", "gsub"};
    lua_getglobal(L, "string");
    for (int i = 0; i < 4; i++) {
        lua_getfield(L, -1, names[i]);
        lua_setfield(L, -3, names[i]);
    }
    lua_pop(L, 1);
    lua_setglobal(L, "stock");
    if (luaL_loadstring(L, DRIVER) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "driver: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_setglobal(L, "run");
    return 0;
}

typedef struct outcome {
    char *s; /* "ok: " or "err:" then the result or message; may hold NULs */
    size_t n;
} outcome_t;

/* Call run with the functions in global `which`; leaves the stack as is. */
static outcome_t call(const char *which, int op, const char *s, size_t slen, const char *p,
                      size_t plen, int init, int rk)
{
    lua_getglobal(L, "run");
    lua_getglobal(L, which);
    lua_pushinteger(L, op);
    lua_pushlstring(L, s, slen);
    lua_pushlstring(L, p, plen);
    lua_pushinteger(L, init);
    lua_pushinteger(L, rk);
    int rc = lua_pcall(L, 6, 1, 0);
    size_t n;
    const char *r = lua_tolstring(L, -1, &n);
    if (!r) {
        r = "(non-string error)";
        n = strlen(r);
    }
    outcome_t o = {malloc(n + 4), n + 4};
    if (!o.s) abort();
    memcpy(o.s, rc == LUA_OK ? "ok: " : "err:", 4);
    memcpy(o.s + 4, r, n);
    lua_pop(L, 1);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    int op = data[0] % 5, rk = (data[0] / 5) % 9 + 1;
    int init = (int)(int8_t)data[1];
    size_t rest = size - 3;
    size_t plen = rest ? data[2] % (rest + 1) : 0;
    const char *p = (const char *)data + 3, *s = p + plen;
    size_t slen = rest - plen;
    used = 0;
    budget_tripped = 0;
    outcome_t mine = call("ours", op, s, slen, p, plen, init, rk);
    if (diff && !budget_tripped) {
        outcome_t theirs = call("stock", op, s, slen, p, plen, init, rk);
        if (mine.n != theirs.n || memcmp(mine.s, theirs.s, mine.n) != 0) {
            fprintf(stderr, "op %d rk %d init %d\nours:  %.*s\nstock: %.*s\n", op, rk, init,
                    (int)mine.n, mine.s, (int)theirs.n, theirs.s);
            abort();
        }
        free(theirs.s);
    }
    free(mine.s);
    lua_settop(L, 0);
    static unsigned runs;
    if (++runs % 4096 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
