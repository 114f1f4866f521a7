/* test_pattern_diff.c: src/lua_pattern.c against the stock string library.
 *
 * Two plain lua_States: one with Lua's own string.find/match/gmatch/gsub,
 * one with ours registered over them. Each case (an operation and its four
 * arguments) runs in both through the same driver chunk, which returns the
 * outcome as one string: ok/err, then every value with its exact type
 * (integer vs float positions), or the error message. The two strings must
 * be equal, byte for byte, so results and error texts alike are compared.
 *
 * Cases:
 *  - hand-picked: a cross product of subjects, patterns (malformed ones
 *    too), init values, replacements and max-n values, and edge cases
 *    (argument errors, nesting and capture limits, empty matches);
 *  - generated: patterns from a grammar of pattern pieces (classes, sets,
 *    quantifiers, captures, %b, %f, back-references, anchors, and broken
 *    pieces), subjects from a small alphabet that those pieces match, with
 *    random init, plain, replacement kinds and max n. Seeded: the same
 *    cases every run.
 *
 * A generated pattern may be catastrophic (stock Lua has no budget): ours
 * runs first under a step limit, and a case that exceeds it is skipped for
 * both (counted, and required to be rare). */
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

#define LC_COUNT(a)     (sizeof(a) / sizeof((a)[0]))
#define GENERATED_CASES 150000
#define CASE_STEP_LIMIT 2000000 /* ours, per case; over it the case is skipped */

/* ------------------------------------------------------------------------ */
/* The two states                                                            */
/* ------------------------------------------------------------------------ */

static struct {
    unsigned long long used, total;
    unsigned long calls;
} B;

static void diff_charge(lua_State *L, unsigned long steps, int final)
{
    B.used += steps;
    B.total += steps;
    B.calls++;
    if (!final && B.used > CASE_STEP_LIMIT) luaL_error(L, "case step limit");
}

static const lua_pattern_budget_t diff_budget = {diff_charge};

/* Arguments are specs, so both states build equal values: "-" absent (only
 * trailing ones), "n" nil, "b0"/"b1" booleans, "i<int>", "f<float>",
 * "s<bytes>", "T" an empty table, "t<k>" replacement table k, "F<k>"
 * replacement function k. run(op, spec1..spec4) returns the outcome. */
static const char driver_lua[] =
    "local find, match, gmatch, gsub = string.find, string.match, string.gmatch, string.gsub\n"
    "local tables = {\n"
    "  { a = 'A', hello = 'HI', ['1'] = 'one', l = false, ab = 3, x = 2.5, [1] = 'pos1' },\n"
    "  setmetatable({}, { __index = function(_, k) return tostring(k) .. '!' end }),\n"
    "  { a = {}, b = true },\n"
    "  { [2] = 'two', [3] = 3.0 },\n"
    "}\n"
    "local fns = {\n"
    "  function(...) local t = { select('#', ...) }\n"
    "    for i = 1, select('#', ...) do local v = select(i, ...)\n"
    "      t[#t + 1] = math.type(v) or type(v); t[#t + 1] = tostring(v) end\n"
    "    return table.concat(t, ',') end,\n"
    "  function() return nil end,\n"
    "  function() return false end,\n"
    "  function() return {} end,\n"
    "  function(x) return #tostring(x) end,\n"
    "  function(x) return 1.5 end,\n"
    "  function(x) error('boom ' .. tostring(x)) end,\n"
    "  function(x, y) if y then return y end end,\n"
    "}\n"
    "local function val(sp)\n"
    "  local t, rest = sp:sub(1, 1), sp:sub(2)\n"
    "  if t == 'n' then return nil\n"
    "  elseif t == 'b' then return rest == '1'\n"
    "  elseif t == 'i' then return math.tointeger(tonumber(rest))\n"
    "  elseif t == 'f' then return tonumber(rest) + 0.0\n"
    "  elseif t == 's' then return rest\n"
    "  elseif t == 'T' then return {}\n"
    "  elseif t == 't' then return tables[tonumber(rest)]\n"
    "  elseif t == 'F' then return fns[tonumber(rest)]\n"
    "  end\n"
    "  error('bad spec ' .. sp)\n"
    "end\n"
    "local function out(ok, ...)\n"
    "  local n = select('#', ...)\n"
    "  local o = { ok and 'ok' or 'err', n }\n"
    "  for i = 1, n do\n"
    "    local v = select(i, ...)\n"
    "    local ty = math.type(v) or type(v)\n"
    "    if ty == 'string' then v = string.format('%q', v) else v = tostring(v) end\n"
    "    o[#o + 1] = ty .. ':' .. v\n"
    "  end\n"
    "  return table.concat(o, ' ')\n"
    "end\n"
    "local ops = { find = find, match = match, gmatch = gmatch, gsub = gsub }\n"
    "function run(op, ...)\n"
    "  local args, n = {}, 0\n"
    "  for i = 1, select('#', ...) do\n"
    "    local sp = select(i, ...)\n"
    "    if sp ~= '-' then n = i; args[i] = val(sp) end\n"
    "  end\n"
    "  if op ~= 'gmatch' then return out(pcall(ops[op], table.unpack(args, 1, n))) end\n"
    "  local ok, it = pcall(gmatch, table.unpack(args, 1, n))\n"
    "  if not ok then return out(false, it) end\n"
    "  local o = {}\n"
    "  for _ = 1, 2000 do\n"
    "    local r = out(pcall(it))\n"
    "    o[#o + 1] = r\n"
    "    if r == 'ok 0' or r:sub(1, 3) == 'err' then break end\n"
    "  end\n"
    "  return table.concat(o, ' | ')\n"
    "end\n";

static lua_State *state_new(bool ours)
{
    lua_State *L = luaL_newstate();
    if (!L) abort();
    luaL_openlibs(L);
    if (ours) {
        lua_getglobal(L, "string");
        lua_pattern_register(L, -1, &diff_budget);
        lua_pop(L, 1);
    }
    if (luaL_loadbuffer(L, driver_lua, sizeof(driver_lua) - 1, "=driver") != LUA_OK ||
        lua_pcall(L, 0, 0, 0) != LUA_OK) {
        fprintf(stderr, "driver: %s\n", lua_tostring(L, -1));
        abort();
    }
    return L;
}

/* ------------------------------------------------------------------------ */
/* Running a case                                                            */
/* ------------------------------------------------------------------------ */

typedef struct spec {
    const char *s;
    size_t len;
} spec_t;

static lua_State *Lstock, *Lours;
static long cases, fails, skipped;

/* run(op, specs...) in L; the outcome is left on L's stack. */
static const char *run_in(lua_State *L, const char *op, const spec_t *a, int n, size_t *len)
{
    lua_settop(L, 0);
    lua_getglobal(L, "run");
    lua_pushstring(L, op);
    for (int i = 0; i < n; i++)
        lua_pushlstring(L, a[i].s, a[i].len);
    if (lua_pcall(L, n + 1, 1, 0) != LUA_OK) {
        /* only the case step limit gets here (gmatch's iterator is
         * pcalled too, but its error ends the loop with it) */
        *len = 0;
        return NULL;
    }
    return lua_tolstring(L, -1, len);
}

static void print_spec(const spec_t *a)
{
    fputc('"', stderr);
    for (size_t i = 0; i < a->len; i++) {
        unsigned char c = (unsigned char)a->s[i];
        if (c >= 32 && c < 127 && c != '"' && c != '\\')
            fputc(c, stderr);
        else
            fprintf(stderr, "\\%d", c);
    }
    fputc('"', stderr);
}

static void compare(const char *op, const spec_t *a, int n)
{
    cases++;
    B.used = 0;
    size_t lo, ls;
    const char *ours = run_in(Lours, op, a, n, &lo);
    if (!ours || strstr(ours, "case step limit")) {
        skipped++;
        return;
    }
    const char *stock = run_in(Lstock, op, a, n, &ls);
    if (stock && lo == ls && memcmp(ours, stock, lo) == 0) return;
    if (++fails > 20) return;
    fprintf(stderr, "    MISMATCH %s(", op);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", stderr);
        print_spec(&a[i]);
    }
    fprintf(stderr, ")\n      stock: %s\n      ours:  %s\n", stock ? stock : "(driver error)",
            ours);
}

/* compare() with specs from C strings (no NUL bytes; use compare_specs for
 * those). Trailing NULLs are left out. */
static void same(const char *op, const char *a1, const char *a2, const char *a3, const char *a4)
{
    const char *in[4] = {a1, a2, a3, a4};
    spec_t a[4];
    int n = 0;
    for (int i = 0; i < 4 && in[i]; i++, n++) {
        a[i].s = in[i];
        a[i].len = strlen(in[i]);
    }
    compare(op, a, n);
}

/* ------------------------------------------------------------------------ */
/* Hand-picked cases                                                         */
/* ------------------------------------------------------------------------ */

/* Subjects and patterns are "s" specs; a \0 inside is written \x01 here
 * and turned into a NUL byte by nul_spec. */
static const char *const subjects[] = {
    "s",
    "sa",
    "saaa",
    "saaab",
    "shello world",
    "s  Hello, World! 123 ",
    "sTHE (quick) [brown] fox",
    "sa.b.c",
    "sabcabcabc",
    "sx=1, y=22, z=333",
    "sf(a(b)c)d",
    "s0x1F ff 9g",
    "stab\tnl\nnul\x01"
    "end",
    "scaf\xc3\xa9 \xff\x80",
    "s%%%",
    "skey = value",
    "s((()))",
    "s[[]]",
    "sa,b,,c,",
    "s$^*+?.-",
    "sab12cd34",
    "sCamelCaseString",
    "s  trim me  ",
    "shello hello",
    "sabababababababababababb",
    "sone two  three   ",
    "s(a)(b)((c))",
    "s\x01\x01",
    "s]-^",
};

static const char *const patterns[] = {
    "s",
    "sa",
    "s^a",
    "sa$",
    "s^$",
    "s^",
    "s$",
    "s.",
    "s..",
    "s.-",
    "s.*",
    "s.+",
    "sa*",
    "sa+",
    "sa-",
    "sa?",
    "sa?b",
    "s^a*",
    "sb*$",
    "sab",
    "sl+",
    "so w",
    "snul\x01"
    "e",
    "s%a+",
    "s%A+",
    "s%d+",
    "s%D+",
    "s%s+",
    "s%S+",
    "s%w+",
    "s%W+",
    "s%p+",
    "s%P+",
    "s%x+",
    "s%X+",
    "s%c+",
    "s%C+",
    "s%g+",
    "s%G+",
    "s%l+",
    "s%L+",
    "s%u+",
    "s%U+",
    "s%z",
    "s%Z+",
    "s%a*%d",
    "s[abc]+",
    "s[^abc]+",
    "s[a-z]+",
    "s[^a-z]+",
    "s[%a_][%w_]*",
    "s[%]]",
    "s[]]",
    "s[^]]+",
    "s[a-]",
    "s[-a]+",
    "s[%-%.]+",
    "s[0-9a-fA-F]+",
    "s[%s,]+",
    "s[^%s]+",
    "s[%w%.]+",
    "s[\x80-\xff]+",
    "s[a-%%]",
    "s[%a-z]+",
    "s[]-a]+",
    "s[^]-a]",
    "s%b()",
    "s%b[]",
    "s%b((",
    "s%bab",
    "s%f[%w]%w+",
    "s%f[%W]",
    "s%f[%a]",
    "s%f[%z]",
    "s%f[^%z]",
    "s%f[%l]%a",
    "s(a)",
    "s(a*)",
    "s()a()",
    "s()",
    "s(%w+)=(%w+)",
    "s(%d)(%d)",
    "s((a)(b))",
    "s(.)%1",
    "s(%w+)%s*%1",
    "s(h)(e)(l)(l)(o)",
    "s(l)%1",
    "s()(%a+)()",
    "s%.",
    "s%%",
    "s%$",
    "sx*$",
    "s^(%s*)(.-)(%s*)$",
    "s.-b",
    "s(.-)c",
    "sa.-c",
    "s^(%w+)",
    "s%s*$",
    "s^%s*",
    "s(%a)(%a)%2%1",
    "s[%(%)]",
    "s%((%a)%)",
    "sa%-b",
    "s[%^]",
    "s^^",
    "s$$",
    "sa$b",
    "s(()",
    "s(()())",
    "s%",
    "s[a",
    "s(",
    "s)",
    "s%1",
    "s%b",
    "s%bx",
    "s%f",
    "s%fx",
    "s%f[a",
    "s[^",
    "s(a)%2",
    "s%0",
    "s[%",
    "s[a-",
    "s(a%1)",
    "s()%1",
    "sa%",
    "s[]",
    "s[^]",
    "s%g%",
    "sa**",
    "s*",
    "s+a",
    "s-",
    "s?",
    "s%q",
    "s\x01*",
};

static const char *const inits[] = {"-",   "i1",   "i2",    "i0",   "i-1",  "i-3", "i4",
                                    "i30", "i100", "i-100", "f2.0", "f1.5", "sx",  "s3"};

static const char *const repls[] = {
    "s<%0>",   "s%1", "s%2-%1", "s%%", "sx", "s",  "s%", "s%9", "s%a",
    "s%1%1%0", "i7",  "f2.5",   "t1",  "t2", "t3", "t4", "F1",  "F2",
    "F3",      "F4",  "F5",     "F6",  "F7", "F8", "b1", "T",   "n",
};

static const char *const max_ns[] = {"i0", "i1", "i2", "i-1", "f2.0", "f1.5", "s1", "sx", "n"};

/* A copy of spec s with \x01 as NUL (static storage, for one case). */
static spec_t nul_spec(const char *s, int slot)
{
    static char buf[4][256];
    size_t len = strlen(s);
    if (len >= sizeof(buf[0])) abort();
    for (size_t i = 0; i < len; i++)
        buf[slot][i] = s[i] == '\x01' ? '\0' : s[i];
    return (spec_t){buf[slot], len};
}

static void hand_picked(void)
{
    for (size_t si = 0; si < LC_COUNT(subjects); si++) {
        for (size_t pi = 0; pi < LC_COUNT(patterns); pi++) {
            spec_t a[4] = {nul_spec(subjects[si], 0), nul_spec(patterns[pi], 1)};
            compare("find", a, 2);
            compare("match", a, 2);
            compare("gmatch", a, 2);
            for (size_t ii = 0; ii < LC_COUNT(inits); ii++) {
                a[2] = nul_spec(inits[ii], 2);
                compare("find", a, 3);
                compare("match", a, 3);
                compare("gmatch", a, 3);
                a[3] = nul_spec(ii % 2 ? "b1" : "n", 3);
                compare("find", a, 4);
            }
            for (size_t ri = 0; ri < LC_COUNT(repls); ri++) {
                a[2] = nul_spec(repls[ri], 2);
                compare("gsub", a, 3);
            }
            a[2] = nul_spec("s[%0]", 2);
            for (size_t ni = 0; ni < LC_COUNT(max_ns); ni++) {
                a[3] = nul_spec(max_ns[ni], 3);
                compare("gsub", a, 4);
            }
        }
    }
    /* argument errors and coercions */
    same("find", "n", "sa", NULL, NULL);
    same("find", "sa", "n", NULL, NULL);
    same("find", "sa", NULL, NULL, NULL);
    same("find", NULL, NULL, NULL, NULL);
    same("find", "i123", "i2", NULL, NULL);
    same("find", "sa1", "i1", NULL, NULL);
    same("find", "f1.5", "s%.", NULL, NULL);
    same("match", "T", "sa", NULL, NULL);
    same("gmatch", "sa", NULL, NULL, NULL);
    same("gmatch", "sabc", "s.", "f2.5", NULL);
    same("gmatch", "sabc", "s.", "b1", NULL);
    same("gsub", "sabc", "sb", NULL, NULL);
    same("gsub", "sabc", "sb", "b1", "sx");
    same("gsub", "sabc", "sb", "sx", "sn");
    same("gsub", "sabc", "sb", "b0", NULL);
    same("gsub", "i123", "i2", "i5", NULL);
    same("gsub", "sabc", "s%w", "s%2", NULL);
    same("gsub", "sabc", "s(b)", "s%2", NULL);
    same("gsub", "sabc", "s()", "s%1", NULL);
    same("gsub", "sabc", "s()", "t4", NULL);
    same("gsub", "sabc", "s(b", "sx", NULL);
    same("gsub", "sabc", "s(b", "s%1", NULL);
    same("gsub", "sabc", "s(b", "F1", NULL);
    same("gsub", "sabc", "s(b", "t1", NULL);
    same("find", "sabc", "sb", "i-9223372036854775807", NULL);
    same("find", "sabc", "sb", "i9223372036854775807", NULL);
    same("find", "sabc", "sb", "f1e300", NULL);
    same("gmatch", "sabc", "s", "i9223372036854775807", NULL);
    same("gmatch", "sabc", "s", "i-9223372036854775807", NULL);
    same("gsub", "sabc", "s", "s-", "i9223372036854775807");
    same("gsub", "sabc", "s", "s-", "i-9223372036854775807");
    /* empty matches */
    same("gsub", "sabc", "s", "s-", NULL);
    same("gsub", "sabc", "s.-", "s-", NULL);
    same("gsub", "sabc", "sx*", "s-", NULL);
    same("gsub", "sabc", "s%w*", "s-", NULL);
    same("gmatch", "sabc", "s%w*", NULL, NULL);
    same("gmatch", "sa,b,,c", "s[^,]*", NULL, NULL);
    same("gsub", "sa,b,,c", "s[^,]*", "s<%0>", NULL);
    same("gsub", "shello world", "s%w+", "s%0 %0", "i1");
    /* limits: nesting depth and captures */
    char big[2][2048];
    for (int k = 195; k <= 202; k++) {
        big[0][0] = 's';
        memset(big[0] + 1, 'a', (size_t)k + 5);
        big[0][k + 6] = '\0';
        big[1][0] = 's';
        for (int i = 0; i < k; i++)
            memcpy(big[1] + 1 + 2 * i, "a?", 2);
        big[1][1 + 2 * k] = '\0';
        same("find", big[0], big[1], NULL, NULL);
        for (int i = 0; i < k; i++)
            memcpy(big[1] + 1 + 2 * i, "a-", 2);
        same("match", big[0], big[1], NULL, NULL);
        /* 32 position captures take 32 levels */
        big[1][0] = 's';
        size_t o = 1;
        for (int i = 0; i < 32; i++, o += 2)
            memcpy(big[1] + o, "()", 2);
        for (int i = 0; i < k - 32; i++, o += 2)
            memcpy(big[1] + o, "a?", 2);
        big[1][o] = '\0';
        same("find", big[0], big[1], NULL, NULL);
        big[1][0] = 's';
        o = 1;
        for (int i = 0; i < 32; i++, o += 3)
            memcpy(big[1] + o, "(a)", 3);
        for (int i = 0; i < k - 64; i++, o += 2)
            memcpy(big[1] + o, "a*", 2);
        big[1][o] = '\0';
        same("match", big[0], big[1], NULL, NULL);
        same("gsub", big[0], big[1], "s%9", NULL);
    }
    for (int k = 31; k <= 34; k++) {
        big[1][0] = 's';
        for (int i = 0; i < k; i++)
            memcpy(big[1] + 1 + 3 * i, "(x)", 3);
        big[1][1 + 3 * k] = '\0';
        same("match", "sxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", big[1], NULL, NULL);
        for (int i = 0; i < k; i++)
            memcpy(big[1] + 1 + 2 * i, "()", 2);
        big[1][1 + 2 * k] = '\0';
        same("find", "sx", big[1], NULL, NULL);
        same("gsub", "sx", big[1], "F1", NULL);
    }
}

/* ------------------------------------------------------------------------ */
/* Generated cases                                                           */
/* ------------------------------------------------------------------------ */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n) /* 0 .. n-1 */
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545f4914f6cdd1dULL) >> 33) % n;
}

static const char *pick(const char *const *list, size_t n)
{
    return list[rnd((uint32_t)n)];
}

#define PICK(list) pick(list, LC_COUNT(list))

typedef struct text {
    char b[512];
    size_t n;
} text_t;

static void put(text_t *t, const char *s, size_t n)
{
    if (t->n + n >= sizeof(t->b)) return;
    memcpy(t->b + t->n, s, n);
    t->n += n;
}

static void puts_(text_t *t, const char *s)
{
    put(t, s, strlen(s));
}

static void putc_(text_t *t, char c)
{
    put(t, &c, 1);
}

/* The bytes subjects are made of; patterns draw literals from them too. */
static const char alphabet[] = "aaabbcx  .()%[]^$-_A1B\0\xe9,";
#define ALPHABET_LEN (sizeof(alphabet) - 1)

static char any_byte(void)
{
    return alphabet[rnd(ALPHABET_LEN)];
}

static const char *const classes[] = {
    "%a", "%A", "%d", "%D", "%s", "%S", "%w", "%W", "%p", "%P", "%x", "%X", "%c", "%C", "%g",
    "%G", "%l", "%L", "%u", "%U", "%z", "%Z", "%.", "%%", "%(", "%]", "%-", "%q", "%^", "%$",
};

/* A set: members are bytes, ranges, classes, escapes; a ']' or '-' first,
 * '^', and now and then no closing ']' or a '%' at the very end. */
static void gen_set(text_t *t)
{
    putc_(t, '[');
    if (rnd(3) == 0) putc_(t, '^');
    if (rnd(8) == 0) putc_(t, rnd(2) ? ']' : '-');
    int members = 1 + (int)rnd(4);
    for (int i = 0; i < members; i++) {
        switch (rnd(6)) {
        case 0:
        case 1:
            putc_(t, any_byte());
            break;
        case 2:
            putc_(t, any_byte());
            putc_(t, '-');
            putc_(t, any_byte());
            break;
        case 3:
            puts_(t, PICK(classes));
            break;
        case 4:
            puts_(t, rnd(2) ? "a-c" : "%a-z");
            break;
        default:
            putc_(t, "-]^%"[rnd(4)]);
            break;
        }
    }
    if (rnd(25) != 0) putc_(t, ']');
}

static void gen_single(text_t *t)
{
    switch (rnd(10)) {
    case 0:
    case 1:
    case 2:
        putc_(t, "aabbcx _A1"[rnd(10)]);
        break;
    case 3:
        putc_(t, any_byte());
        break;
    case 4:
        putc_(t, '.');
        break;
    case 5:
    case 6:
        puts_(t, PICK(classes));
        break;
    default:
        gen_set(t);
        break;
    }
    static const char *const quant[] = {"", "", "", "*", "+", "-", "?"};
    puts_(t, PICK(quant));
}

static void gen_items(text_t *t, int budget, int depth);

static void gen_item(text_t *t, int *budget, int depth)
{
    (*budget)--;
    switch (rnd(24)) {
    case 0:
    case 1:
        if (depth < 3) {
            putc_(t, '(');
            gen_items(t, 1 + (int)rnd(3), depth + 1);
            if (rnd(12) != 0) putc_(t, ')');
            return;
        }
        break;
    case 2:
        puts_(t, "()");
        return;
    case 3: {
        static const char *const bal[] = {"%b()", "%b[]", "%bab", "%baa", "%b((", "%b", "%bx"};
        puts_(t, PICK(bal));
        return;
    }
    case 4:
        puts_(t, "%f");
        if (rnd(10) == 0) return;
        gen_set(t);
        return;
    case 5: {
        static const char *const refs[] = {"%1", "%1", "%2", "%3", "%0", "%9"};
        if (rnd(2) == 0) break; /* a single instead, half the time */
        puts_(t, PICK(refs));
        return;
    }
    case 6:
        putc_(t, "^$()%"[rnd(5)]);
        return;
    }
    gen_single(t);
}

static void gen_items(text_t *t, int budget, int depth)
{
    while (budget > 0)
        gen_item(t, &budget, depth);
}

static void gen_pattern(text_t *t)
{
    t->n = 0;
    putc_(t, 's');
    if (rnd(5) == 0) putc_(t, '^');
    gen_items(t, (int)rnd(7), 0);
    if (rnd(6) == 0) putc_(t, '$');
    if (rnd(40) == 0) putc_(t, '%');
}

/* A random subject, or (one time in two) one that follows the pattern's
 * bytes, so that its literals and classes find something to match. */
static void gen_subject(text_t *t, const text_t *pattern)
{
    t->n = 0;
    putc_(t, 's');
    if (rnd(2) == 0) {
        for (size_t i = 1; i < pattern->n; i++) {
            char c = pattern->b[i];
            if (rnd(8) == 0) putc_(t, any_byte());
            if (!strchr("%[]()^$*+?-.", c) || rnd(6) == 0) putc_(t, c);
            if (c == '*' || c == '+' || c == '-') put(t, "aab", rnd(4));
        }
        return;
    }
    int len = (int)rnd(rnd(4) == 0 ? 40 : 14);
    for (int i = 0; i < len; i++)
        putc_(t, any_byte());
}

static void gen_init(text_t *t, size_t subject_len)
{
    t->n = 0;
    int len = (int)subject_len;
    switch (rnd(8)) {
    case 0:
        puts_(t, "-");
        break;
    case 1:
        puts_(t, "i0");
        break;
    default: {
        int v = (int)rnd((uint32_t)(2 * len + 7)) - len - 3; /* -len-3 .. len+3 */
        char num[24];
        snprintf(num, sizeof(num), "i%d", v);
        puts_(t, num);
    }
    }
}

static void gen_repl(text_t *t)
{
    t->n = 0;
    switch (rnd(6)) {
    case 0: {
        char k[4];
        snprintf(k, sizeof(k), "t%u", 1 + rnd(4));
        puts_(t, k);
        return;
    }
    case 1: {
        char k[4];
        snprintf(k, sizeof(k), "F%u", 1 + rnd(8));
        puts_(t, k);
        return;
    }
    case 2:
        puts_(t, rnd(2) ? "i42" : "f0.5");
        return;
    }
    putc_(t, 's');
    static const char *const parts[] = {"<",  ">", "%0", "%1", "%2", "%3",
                                        "%%", "x", "%",  "%a", "%9", "-"};
    int n = (int)rnd(5);
    for (int i = 0; i < n; i++)
        puts_(t, PICK(parts));
}

static void generated(void)
{
    text_t s, p, a3, a4;
    for (int i = 0; i < GENERATED_CASES; i++) {
        gen_pattern(&p);
        gen_subject(&s, &p);
        spec_t a[4] = {{s.b, s.n}, {p.b, p.n}};
        switch (rnd(4)) {
        case 0:
            gen_init(&a3, s.n - 1);
            a[2] = (spec_t){a3.b, a3.n};
            const char *plain = rnd(4) == 0 ? "b1" : "n";
            a[3] = (spec_t){plain, strlen(plain)};
            compare("find", a, a3.n == 1 ? 2 : 4);
            break;
        case 1:
            gen_init(&a3, s.n - 1);
            a[2] = (spec_t){a3.b, a3.n};
            compare("match", a, a3.n == 1 ? 2 : 3);
            break;
        case 2:
            gen_init(&a3, s.n - 1);
            a[2] = (spec_t){a3.b, a3.n};
            compare("gmatch", a, a3.n == 1 ? 2 : 3);
            break;
        default:
            gen_repl(&a3);
            a[2] = (spec_t){a3.b, a3.n};
            a4.n = 0;
            static const char *const maxn[] = {"i1", "i2", "i0", "i-1", "i3"};
            if (rnd(4) == 0) puts_(&a4, PICK(maxn));
            a[3] = (spec_t){a4.b, a4.n};
            compare("gsub", a, a4.n ? 4 : 3);
            break;
        }
    }
}

/* ------------------------------------------------------------------------ */

static double now_s(void)
{
    return (double)uv_hrtime() / 1e9;
}

static void test_hand_picked(void)
{
    long c0 = cases, f0 = fails, s0 = skipped;
    hand_picked();
    printf("    %ld hand-picked cases, %ld differ, %ld skipped\n", cases - c0, fails - f0,
           skipped - s0);
    REQUIRE(cases - c0 > 50000);
    REQUIRE(fails == f0);
    REQUIRE(skipped == s0);
}

static void test_generated(void)
{
    long c0 = cases, f0 = fails, s0 = skipped;
    generated();
    printf("    %ld generated cases, %ld differ, %ld skipped as too slow for stock Lua\n",
           cases - c0, fails - f0, skipped - s0);
    REQUIRE(cases - c0 == GENERATED_CASES);
    REQUIRE(fails == f0);
    REQUIRE(skipped - s0 < GENERATED_CASES / 1000);
}

int main(void)
{
    Lstock = state_new(false);
    Lours = state_new(true);
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"hand_picked", test_hand_picked},
        {"generated", test_generated},
    };
    for (size_t i = 0; i < LC_COUNT(tests); i++) {
        test_failed = 0;
        double t0 = now_s();
        tests[i].fn();
        bool ok = check_end_test();
        printf("%s %s (%.2fs)\n", ok ? "ok  " : "FAIL", tests[i].name, now_s() - t0);
    }
    printf("    %llu matcher steps charged in %lu calls\n", B.total, B.calls);
    CHECK(B.total > 0);
    lua_close(Lstock);
    lua_close(Lours);
    return check_summary("pattern_diff");
}
