/* lua_pattern.c: string.find, match, gmatch and gsub for policies, with a
 * pattern matcher of our own that counts its work.
 *
 * Why: Lua patterns backtrack, so a short pattern can run for minutes
 * (string.find(("a"):rep(2000), ".-.-.-.-b")), and the count hook that
 * bounds a policy never fires inside a C function. This matcher reports
 * its steps to a budget callback (lua_pattern.h) about every
 * LUA_PATTERN_STEP steps, and the callback stops it with a Lua error.
 *
 * Written from the Lua 5.4 manual (§6.4.1 Patterns, §6.4 for the four
 * functions); where the manual leaves things open (ranges next to classes
 * in a set, nesting limits, which error comes when), we follow what the
 * stock functions observably do, and tests/c/test_pattern_diff.c compares
 * the two on a large generated corpus.
 *
 * Design:
 *  - compile: the pattern becomes an array of nodes, one per item: a
 *    single-byte test (literal, '.', %class or [set], the set as a 256-bit
 *    map) with its quantifier, a capture boundary, %b, %f, a back-reference,
 *    a final '$'. Capture numbering and back-reference checks are static:
 *    every path through a pattern passes the same items in order.
 *  - errors are deferred: a malformed item compiles to an error node, raised
 *    only if matching gets there, because stock Lua reports a bad item only
 *    when it reaches it (("abc"):find("x%") is nil, ("xbc"):find("x%") is an
 *    error). Nothing after an error node is reachable, so compiling stops.
 *  - match: a backtracking matcher over the nodes. It recurses only at
 *    choice points (a quantified item that could take the byte in front of
 *    it), so the C stack is bounded by MAX_DEPTH.
 *
 * Memory: small patterns compile into a buffer on the C stack; larger ones
 * into a Lua userdata, so a policy's memory cap applies and a Lua error
 * (budget, malformed pattern) leaks nothing. gmatch compiles once, into its
 * iterator's userdata. */
#include "lua_pattern.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Stock Lua's limits, which are observable: the 33rd capture is "too many
 * captures"; and "pattern too complex" comes when its matcher would nest
 * more than 200 calls: one per attempt at a start position, one more per
 * capture boundary passed, one more per open choice point. We keep the same
 * count (m->depth) so the same patterns fail on the same subjects. */
#define MAX_CAPTURES 32
#define MAX_DEPTH    200

/* ------------------------------------------------------------------------ */
/* Compiled patterns                                                         */
/* ------------------------------------------------------------------------ */

enum node_op {
    N_END,        /* end of the pattern: the match succeeds */
    N_END_ANCHOR, /* a '$' ending the pattern: succeeds at the subject's end only */
    N_SINGLE,     /* one byte tested by cls, maybe repeated (rep) */
    N_OPEN,       /* '(': capture x starts */
    N_POSITION,   /* '()': capture x is the position */
    N_CLOSE,      /* ')': capture x ends */
    N_BALANCE,    /* %bxy */
    N_FRONTIER,   /* %f[set] */
    N_BACKREF,    /* %1-%9: the text of capture x again */
    N_ERROR,      /* malformed here: luaL_error(err, arg) when reached */
};

enum byte_class {
    CL_BYTE,  /* the byte x */
    CL_ANY,   /* '.' */
    CL_CLASS, /* %x for a class letter x (upper case: the complement) */
    CL_SET,   /* [set]: sets[set] */
};

typedef struct node {
    uint8_t op;  /* node_op */
    uint8_t cls; /* N_SINGLE: byte_class */
    uint8_t rep; /* N_SINGLE: 0 (exactly once), '?', '*', '+' or '-' */
    uint8_t x;   /* the byte, class letter, capture index, or %b's opener */
    uint8_t y;   /* %b's closer */
    int arg;     /* N_ERROR: the format's %d */
    uint32_t set;
    const char *err; /* N_ERROR: luaL_error format */
} node_t;

typedef struct byteset {
    uint8_t bits[32];
} byteset_t;

typedef struct prog {
    node_t *node;
    byteset_t *set;
    int ncap; /* captures in the pattern (up to where it is malformed) */
} prog_t;

/* Patterns up to this size compile on the C stack. */
#define SMALL_NODES 32
#define SMALL_SETS  4

typedef struct small_prog {
    node_t node[SMALL_NODES];
    byteset_t set[SMALL_SETS];
} small_prog_t;

static bool set_has(const byteset_t *set, unsigned char c)
{
    return set->bits[c >> 3] & (1u << (c & 7));
}

static void set_add(byteset_t *set, unsigned char c)
{
    set->bits[c >> 3] |= (uint8_t)(1u << (c & 7));
}

/* The class letters of §6.4.1, and 'z' ('\0', dropped from the manual
 * but still honoured by stock Lua); their upper-case forms are
 * complements. Any other byte after '%' stands for itself. */
static bool is_class_letter(unsigned char l)
{
    if (!((l >= 'a' && l <= 'z') || (l >= 'A' && l <= 'Z'))) return false;
    return strchr("acdglpsuwxz", l | 0x20) != NULL;
}

/* Is c in the class of letter l (a class letter)? The classes are C's
 * <ctype.h> ones, as the manual defines them. */
static bool class_has(unsigned char l, unsigned char c)
{
    bool in;
    switch (l | 0x20) {
    case 'a':
        in = isalpha(c);
        break;
    case 'c':
        in = iscntrl(c);
        break;
    case 'd':
        in = isdigit(c);
        break;
    case 'g':
        in = isgraph(c);
        break;
    case 'l':
        in = islower(c);
        break;
    case 'p':
        in = ispunct(c);
        break;
    case 's':
        in = isspace(c);
        break;
    case 'u':
        in = isupper(c);
        break;
    case 'w':
        in = isalnum(c);
        break;
    case 'x':
        in = isxdigit(c);
        break;
    default:
        in = c == 0;
        break; /* 'z' */
    }
    return (l & 0x20) ? in : !in;
}

static bool byte_matches(const prog_t *prog, const node_t *n, unsigned char c)
{
    switch (n->cls) {
    case CL_BYTE:
        return c == n->x;
    case CL_ANY:
        return true;
    case CL_CLASS:
        return class_has(n->x, c);
    default:
        return set_has(&prog->set[n->set], c);
    }
}

/* ------------------------------------------------------------------------ */
/* Compiler                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct compiler {
    const unsigned char *end; /* of the pattern */
    prog_t *prog;
    size_t nnode, nset;
    bool closed[MAX_CAPTURES]; /* capture i has ended (or is a position) */
    unsigned long work;        /* steps to charge for compiling */
} compiler_t;

static node_t *new_node(compiler_t *c, enum node_op op)
{
    node_t *n = &c->prog->node[c->nnode++];
    memset(n, 0, sizeof(*n));
    n->op = op;
    return n;
}

static void fail(node_t *n, const char *err, int arg)
{
    n->op = N_ERROR;
    n->err = err;
    n->arg = arg;
}

static void set_add_class(compiler_t *c, byteset_t *set, unsigned char l)
{
    if (!is_class_letter(l)) {
        set_add(set, l);
        return;
    }
    for (int b = 0; b < 256; b++)
        if (class_has(l, (unsigned char)b)) set_add(set, (unsigned char)b);
    c->work += 16;
}

/* A set at p ('['): into a new byteset (*idx). Returns the end of the item,
 * or NULL if there is no closing ']'.
 *
 * The closing ']' is the first one after at least one member, and '%'
 * escapes the byte after it, so "[]]" and "[%]]" are sets of ']'. Members
 * are then read left to right: '%x' is a class (or the byte x), 'a-z' a
 * range unless the 'z' would be the closing ']', anything else itself.
 * Stock Lua reads a '%' that follows a range as an escape even when it is
 * the byte before the ']' ("[a-%%]" holds a..'%', and ']'); so do we. */
static const unsigned char *compile_set(compiler_t *c, const unsigned char *p, uint32_t *idx)
{
    const unsigned char *q = p + 1;
    bool negate = false;
    if (q < c->end && *q == '^') {
        negate = true;
        q++;
    }
    const unsigned char *first = q;
    do {
        if (q == c->end) return NULL;
        if (*q++ == '%' && q < c->end) q++;
    } while (q == c->end || *q != ']');
    const unsigned char *close = q;

    *idx = (uint32_t)c->nset;
    byteset_t *set = &c->prog->set[c->nset++];
    memset(set, 0, sizeof(*set));
    for (const unsigned char *r = first; r < close; r++) {
        if (*r == '%') {
            r++; /* r <= close: the ']' itself at worst */
            set_add_class(c, set, *r);
        } else if (r[1] == '-' && r + 2 < close) {
            for (int b = r[0]; b <= r[2]; b++)
                set_add(set, (unsigned char)b);
            c->work += (unsigned long)(r[2] > r[0] ? r[2] - r[0] : 0) / 16;
            r += 2;
        } else {
            set_add(set, *r);
        }
    }
    if (negate)
        for (int i = 0; i < 32; i++)
            set->bits[i] = (uint8_t)~set->bits[i];
    c->work += (unsigned long)(close - p);
    return close + 1;
}

/* A single-byte item at p and its quantifier. Returns the end of the item,
 * or NULL if it is malformed (n is then an error node). */
static const unsigned char *compile_single(compiler_t *c, node_t *n, const unsigned char *p)
{
    if (*p == '%') {
        if (p + 1 == c->end) {
            fail(n, "malformed pattern (ends with '%%')", 0);
            return NULL;
        }
        n->cls = is_class_letter(p[1]) ? CL_CLASS : CL_BYTE;
        n->x = p[1];
        p += 2;
    } else if (*p == '[') {
        p = compile_set(c, p, &n->set);
        if (!p) {
            fail(n, "malformed pattern (missing ']')", 0);
            return NULL;
        }
        n->cls = CL_SET;
    } else if (*p == '.') {
        n->cls = CL_ANY;
        p++;
    } else {
        n->cls = CL_BYTE;
        n->x = *p++;
    }
    if (p < c->end && (*p == '?' || *p == '*' || *p == '+' || *p == '-')) n->rep = *p++;
    return p;
}

/* Pattern [p, end) into c->prog, which has room for end - p + 1 nodes and
 * as many sets as the pattern has '['. */
static void compile(compiler_t *c, const unsigned char *p)
{
    prog_t *prog = c->prog;
    for (;;) {
        if (p == c->end) {
            new_node(c, N_END);
            return;
        }
        node_t *n = new_node(c, N_SINGLE);
        switch (*p) {
        case '(':
            if (prog->ncap == MAX_CAPTURES) {
                fail(n, "too many captures", 0);
                return;
            }
            n->x = (uint8_t)prog->ncap;
            if (p + 1 < c->end && p[1] == ')') {
                n->op = N_POSITION;
                c->closed[prog->ncap++] = true;
                p += 2;
            } else {
                n->op = N_OPEN;
                c->closed[prog->ncap++] = false;
                p++;
            }
            continue;
        case ')': {
            /* closes the innermost capture still open */
            int i = prog->ncap - 1;
            while (i >= 0 && c->closed[i])
                i--;
            if (i < 0) {
                fail(n, "invalid pattern capture", 0);
                return;
            }
            n->op = N_CLOSE;
            n->x = (uint8_t)i;
            c->closed[i] = true;
            p++;
            continue;
        }
        case '$':
            if (p + 1 == c->end) {
                n->op = N_END_ANCHOR;
                return;
            }
            break; /* elsewhere '$' is itself */
        case '%':
            if (p + 1 == c->end) break; /* compile_single reports it */
            if (p[1] == 'b') {
                if (p + 3 >= c->end) {
                    fail(n, "malformed pattern (missing arguments to '%%b')", 0);
                    return;
                }
                n->op = N_BALANCE;
                n->x = p[2];
                n->y = p[3];
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                p += 2;
                if (p == c->end || *p != '[') {
                    fail(n, "missing '[' after '%%f' in pattern", 0);
                    return;
                }
                n->op = N_FRONTIER;
                p = compile_set(c, p, &n->set);
                if (!p) {
                    fail(n, "malformed pattern (missing ']')", 0);
                    return;
                }
                continue;
            }
            if (p[1] >= '0' && p[1] <= '9') {
                int i = p[1] - '1'; /* %0 is -1: invalid, like a capture not yet ended */
                if (i < 0 || i >= prog->ncap || !c->closed[i]) {
                    fail(n, "invalid capture index %%%d", i + 1);
                    return;
                }
                n->op = N_BACKREF;
                n->x = (uint8_t)i;
                p += 2;
                continue;
            }
            break;
        }
        p = compile_single(c, n, p);
        if (!p) return;
    }
}

/* The room pattern [p, p + len) needs: a node per byte and one for the
 * end (each node takes at least one byte), a set per '['. */
static size_t prog_room(const char *p, size_t len, size_t *nnode, size_t *nset)
{
    *nset = 0;
    for (size_t i = 0; i < len; i++)
        *nset += p[i] == '[';
    *nnode = len + 1;
    return *nnode * sizeof(node_t) + *nset * sizeof(byteset_t);
}

/* Compile into nodes and sets (of prog_room's sizes). Returns the work in
 * steps. */
static unsigned long prog_compile(prog_t *prog, node_t *nodes, byteset_t *sets, const char *p,
                                  size_t len)
{
    prog->node = nodes;
    prog->set = sets;
    prog->ncap = 0;
    compiler_t c = {.end = (const unsigned char *)p + len, .prog = prog};
    compile(&c, (const unsigned char *)p);
    return c.work + 1;
}

/* Compile pattern [p, p + len): into *small if it fits, else into a new
 * userdata left on the stack (nodes, then sets, which need no alignment).
 * Returns the work in steps. */
static unsigned long prog_build(lua_State *L, prog_t *prog, small_prog_t *small, const char *p,
                                size_t len)
{
    size_t nnode, nset;
    size_t room = prog_room(p, len, &nnode, &nset);
    if (nnode <= SMALL_NODES && nset <= SMALL_SETS)
        return prog_compile(prog, small->node, small->set, p, len);
    char *mem = lua_newuserdatauv(L, room, 0);
    return prog_compile(prog, (node_t *)(void *)mem,
                        (byteset_t *)(void *)(mem + nnode * sizeof(node_t)), p, len);
}

/* ------------------------------------------------------------------------ */
/* Matcher                                                                   */
/* ------------------------------------------------------------------------ */

#define CAP_OPEN     (-1) /* started, not ended */
#define CAP_POSITION (-2)

typedef struct capture {
    const unsigned char *start;
    ptrdiff_t len; /* or CAP_OPEN / CAP_POSITION */
} capture_t;

typedef struct matcher {
    lua_State *L;
    const lua_pattern_budget_t *budget; /* NULL: count nothing */
    unsigned long steps;                /* not yet charged */
    const prog_t *prog;
    const unsigned char *subject, *end; /* the whole subject (%f looks behind init) */
    int depth;                          /* see MAX_DEPTH */
    capture_t cap[MAX_CAPTURES];
} matcher_t;

static void matcher_init(matcher_t *m, lua_State *L, const lua_pattern_budget_t *budget,
                         const char *s, size_t len)
{
    m->L = L;
    m->budget = budget;
    m->steps = 0;
    m->prog = NULL;
    m->subject = (const unsigned char *)s;
    m->end = s ? m->subject + len : NULL; /* NULL + 0 is undefined in C */
}

/* Charge the steps so far; final: the call is ending. May raise. */
static void charge(matcher_t *m, int final)
{
    unsigned long n = m->steps;
    m->steps = 0;
    if (m->budget) m->budget->charge(m->L, n, final);
}

static inline void step(matcher_t *m, unsigned long n)
{
    m->steps += n;
    if (m->steps >= LUA_PATTERN_STEP) charge(m, 0);
}

/* One more level of stock Lua's nesting (see MAX_DEPTH). */
static void enter(matcher_t *m)
{
    if (m->depth == MAX_DEPTH) luaL_error(m->L, "pattern too complex");
    m->depth++;
}

static const unsigned char *match_seq(matcher_t *m, const unsigned char *s, const node_t *n);

/* Match nodes n... at s, as a new level; returns the match's end or NULL.
 * Levels taken inside (capture boundaries) are given back on return. */
static const unsigned char *match(matcher_t *m, const unsigned char *s, const node_t *n)
{
    int depth = m->depth;
    enter(m);
    const unsigned char *e = match_seq(m, s, n);
    m->depth = depth;
    return e;
}

/* Item n repeated, as many times as it goes from s (at least once, since
 * the caller saw it take *s), then the rest; on failure give back one
 * repetition at a time. */
static const unsigned char *match_greedy(matcher_t *m, const unsigned char *s, const node_t *n)
{
    size_t i = 0;
    while (s + i < m->end && byte_matches(m->prog, n, s[i]))
        i++;
    step(m, i);
    for (;;) {
        const unsigned char *e = match(m, s + i, n + 1);
        if (e || i == 0) return e;
        i--;
    }
}

/* Item n repeated as few times as possible: the rest first, then one more
 * repetition, while the item takes the next byte. */
static const unsigned char *match_lazy(matcher_t *m, const unsigned char *s, const node_t *n)
{
    for (;;) {
        const unsigned char *e = match(m, s, n + 1);
        if (e) return e;
        if (s == m->end || !byte_matches(m->prog, n, *s)) return NULL;
        s++;
        step(m, 1);
    }
}

/* %bxy at s: an x, then bytes up to the y that balances it. */
static const unsigned char *match_balance(matcher_t *m, const unsigned char *s, const node_t *n)
{
    if (s == m->end || *s != n->x) return NULL;
    const unsigned char *from = s;
    size_t open = 1;
    for (s++; s < m->end; s++) {
        /* the closer first: with x == y, the second x closes */
        if (*s == n->y) {
            if (--open == 0) break;
        } else if (*s == n->x) {
            open++;
        }
    }
    step(m, (unsigned long)(s - from));
    return s < m->end ? s + 1 : NULL;
}

static const unsigned char *match_seq(matcher_t *m, const unsigned char *s, const node_t *n)
{
    for (;; n++) {
        step(m, 1);
        switch (n->op) {
        case N_END:
            return s;
        case N_END_ANCHOR:
            return s == m->end ? s : NULL;
        case N_ERROR:
            luaL_error(m->L, n->err, n->arg);
            return NULL;
        case N_OPEN:
        case N_POSITION:
            /* Captures need no undoing on backtracking: every path to a
             * node passes the same boundaries, so each is set again
             * before anything reads it. Stock Lua nests a level here. */
            enter(m);
            m->cap[n->x].start = s;
            m->cap[n->x].len = n->op == N_OPEN ? CAP_OPEN : CAP_POSITION;
            break;
        case N_CLOSE:
            enter(m);
            m->cap[n->x].len = s - m->cap[n->x].start;
            break;
        case N_BALANCE:
            s = match_balance(m, s, n);
            if (!s) return NULL;
            break;
        case N_FRONTIER: {
            /* between a byte not in the set and one in it; the subject's
             * edges count as '\0' */
            const byteset_t *set = &m->prog->set[n->set];
            unsigned char before = s == m->subject ? 0 : s[-1];
            unsigned char here = s == m->end ? 0 : *s;
            if (set_has(set, before) || !set_has(set, here)) return NULL;
            break;
        }
        case N_BACKREF: {
            const capture_t *c = &m->cap[n->x];
            if (c->len == CAP_POSITION) return NULL; /* has no text: never matches */
            size_t len = (size_t)c->len;
            if ((size_t)(m->end - s) < len) return NULL;
            step(m, len / 16); /* a comparison of len bytes */
            if (memcmp(c->start, s, len) != 0) return NULL;
            s += len;
            break;
        }
        default: { /* N_SINGLE */
            bool takes = s < m->end && byte_matches(m->prog, n, *s);
            if (!takes) {
                /* zero repetitions are all there is: no choice to remember */
                if (n->rep == '?' || n->rep == '*' || n->rep == '-') break;
                return NULL;
            }
            switch (n->rep) {
            case '?': {
                const unsigned char *e = match(m, s + 1, n + 1);
                if (e) return e;
                break; /* without it */
            }
            case '*':
                return match_greedy(m, s, n);
            case '+':
                return match_greedy(m, s + 1, n);
            case '-':
                return match_lazy(m, s, n);
            default:
                s++;
                break;
            }
        }
        }
    }
}

/* Try the whole pattern at s. */
static const unsigned char *match_at(matcher_t *m, const unsigned char *s)
{
    m->depth = 0;
    return match(m, s, m->prog->node);
}

/* ------------------------------------------------------------------------ */
/* Results                                                                   */
/* ------------------------------------------------------------------------ */

/* Push capture i of the match [s, e); with no captures, "capture 0" is the
 * whole match. */
static void push_capture(matcher_t *m, int i, const unsigned char *s, const unsigned char *e)
{
    lua_State *L = m->L;
    if (i >= m->prog->ncap) {
        if (i != 0) luaL_error(L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(L, (const char *)s, (size_t)(e - s));
        return;
    }
    const capture_t *c = &m->cap[i];
    if (c->len == CAP_OPEN) luaL_error(L, "unfinished capture");
    if (c->len == CAP_POSITION)
        lua_pushinteger(L, (lua_Integer)(c->start - m->subject) + 1);
    else
        lua_pushlstring(L, (const char *)c->start, (size_t)c->len);
}

/* Push every capture (or, with whole and no captures, the match itself);
 * returns how many. */
static int push_captures(matcher_t *m, const unsigned char *s, const unsigned char *e, bool whole)
{
    int n = (m->prog->ncap == 0 && whole) ? 1 : m->prog->ncap;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

/* ------------------------------------------------------------------------ */
/* The library functions                                                     */
/* ------------------------------------------------------------------------ */

static const lua_pattern_budget_t *budget_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* init (1-based, negative from the end) as a 0-based offset; may be past
 * the end, which each caller treats in its own way. */
static size_t start_offset(lua_Integer init, size_t len)
{
    if (init > 0) return (size_t)init - 1;
    if (init == 0 || init < -(lua_Integer)len) return 0;
    return len - (size_t)(-init);
}

/* A pattern without any of these is a plain string: find it as one. */
static bool has_specials(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (strchr("^$*+?.([%-", p[i]) && p[i] != '\0') return true;
    return false;
}

/* Plain search for [p, p + lp) in [s, s + ls). Each place where the first
 * byte matches costs a step and a comparison of the rest. */
static const char *find_plain(matcher_t *m, const char *s, size_t ls, const char *p, size_t lp)
{
    if (lp == 0) return s;
    if (lp > ls) return NULL;
    const char *last = s + (ls - lp);
    for (const char *at = s; at <= last; at++) {
        at = memchr(at, p[0], (size_t)(last - at) + 1);
        if (!at) return NULL;
        step(m, 1 + lp / 16);
        if (memcmp(at + 1, p + 1, lp - 1) == 0) return at;
    }
    return NULL;
}

static int find_or_match(lua_State *L, bool find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    if (init > ls) {
        lua_pushnil(L);
        return 1;
    }
    matcher_t m;
    matcher_init(&m, L, budget_of(L), s, ls);
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        const char *at = find_plain(&m, s + init, ls - init, p, lp);
        charge(&m, 1);
        if (!at) {
            lua_pushnil(L);
            return 1;
        }
        lua_pushinteger(L, (lua_Integer)(at - s) + 1);
        lua_pushinteger(L, (lua_Integer)(at - s) + (lua_Integer)lp);
        return 2;
    }
    bool anchored = lp > 0 && p[0] == '^';
    if (anchored) p++, lp--;
    prog_t prog;
    small_prog_t small;
    m.steps = prog_build(L, &prog, &small, p, lp);
    m.prog = &prog;
    for (const unsigned char *at = m.subject + init;; at++) {
        const unsigned char *e = match_at(&m, at);
        if (e) {
            charge(&m, 1);
            if (!find) return push_captures(&m, at, e, true);
            lua_pushinteger(L, (lua_Integer)(at - m.subject) + 1);
            lua_pushinteger(L, (lua_Integer)(e - m.subject));
            return 2 + push_captures(&m, at, e, false);
        }
        if (anchored || at == m.end) break;
    }
    charge(&m, 1);
    lua_pushnil(L);
    return 1;
}

static int lp_find(lua_State *L)
{
    return find_or_match(L, true);
}

static int lp_match(lua_State *L)
{
    return find_or_match(L, false);
}

/* gmatch's iterator state; the compiled pattern follows it in the same
 * userdata. No anchor: in gmatch a leading '^' is an ordinary byte. */
typedef struct gmatch_state {
    size_t pos;  /* where the next search starts */
    size_t last; /* end of the previous match (SIZE_MAX: none yet) */
    prog_t prog;
} gmatch_t;

/* upvalues: budget, subject, state */
static int gmatch_next(lua_State *L)
{
    size_t ls;
    const char *s = lua_tolstring(L, lua_upvalueindex(2), &ls);
    gmatch_t *g = lua_touserdata(L, lua_upvalueindex(3));
    matcher_t m;
    matcher_init(&m, L, budget_of(L), s, ls);
    m.prog = &g->prog;
    for (size_t at = g->pos; at <= ls; at++) {
        const unsigned char *e = match_at(&m, m.subject + at);
        /* an empty match where the previous one ended is no match */
        if (e && (size_t)(e - m.subject) != g->last) {
            g->pos = g->last = (size_t)(e - m.subject);
            charge(&m, 1);
            return push_captures(&m, m.subject + at, e, true);
        }
    }
    g->pos = ls + 1;
    charge(&m, 1);
    return 0;
}

static int lp_gmatch(lua_State *L)
{
    size_t ls, lp;
    luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    lua_settop(L, 2);
    /* one block: the state, then the nodes (at a multiple of their size,
     * so aligned), then the sets */
    size_t nnode, nset;
    size_t room = prog_room(p, lp, &nnode, &nset);
    size_t nodes_at = (sizeof(gmatch_t) + sizeof(node_t) - 1) / sizeof(node_t) * sizeof(node_t);
    char *mem = lua_newuserdatauv(L, nodes_at + room, 0); /* [s, p, ud] */
    gmatch_t *g = (gmatch_t *)(void *)mem;
    g->pos = init > ls ? ls + 1 : init;
    g->last = SIZE_MAX;
    unsigned long work =
        prog_compile(&g->prog, (node_t *)(void *)(mem + nodes_at),
                     (byteset_t *)(void *)(mem + nodes_at + nnode * sizeof(node_t)), p, lp);
    matcher_t m;
    matcher_init(&m, L, budget_of(L), NULL, 0);
    m.steps = work;
    charge(&m, 1);
    lua_pushvalue(L, lua_upvalueindex(1)); /* [s, p, ud, budget] */
    lua_pushvalue(L, 1);                   /* [s, p, ud, budget, s] */
    lua_pushvalue(L, 3);                   /* [s, p, ud, budget, s, ud] */
    lua_pushcclosure(L, gmatch_next, 3);   /* [s, p, ud, next] */
    return 1;
}

/* Append the replacement string r for the match [s, e): '%0' is the match,
 * '%1'-'%9' captures, '%%' a '%'. */
static void add_repl_string(matcher_t *m, luaL_Buffer *b, const char *r, size_t lr,
                            const unsigned char *s, const unsigned char *e)
{
    lua_State *L = m->L;
    const char *end = r + lr;
    while (r < end) {
        const char *pct = memchr(r, '%', (size_t)(end - r));
        if (!pct) {
            luaL_addlstring(b, r, (size_t)(end - r));
            return;
        }
        luaL_addlstring(b, r, (size_t)(pct - r));
        char c = pct + 1 < end ? pct[1] : '\0';
        r = pct + 2;
        if (c == '%') {
            luaL_addchar(b, '%');
        } else if (c == '0') {
            luaL_addlstring(b, (const char *)s, (size_t)(e - s));
        } else if (c >= '1' && c <= '9') {
            push_capture(m, c - '1', s, e); /* a position becomes its digits */
            luaL_tolstring(L, -1, NULL);
            lua_remove(L, -2);
            luaL_addvalue(b);
        } else {
            luaL_error(L, "invalid use of '%c' in replacement string", '%');
        }
    }
}

/* Append the replacement for the match [s, e): repl at stack index 3 is a
 * string (r), a table indexed by the first capture, or a function called
 * with the captures. false or nil from those keeps the match. */
static void add_replacement(matcher_t *m, luaL_Buffer *b, int type, const char *r, size_t lr,
                            const unsigned char *s, const unsigned char *e)
{
    lua_State *L = m->L;
    if (type == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e, true);
        lua_call(L, n, 1);
    } else if (type == LUA_TTABLE) {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_repl_string(m, b, r, lr, s, e);
        return;
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, (const char *)s, (size_t)(e - s));
    } else if (!lua_isstring(L, -1)) {
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    } else {
        luaL_addvalue(b);
    }
}

static int lp_gsub(lua_State *L)
{
    size_t ls, lp, lr = 0;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int type = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L,
                     type == LUA_TNUMBER || type == LUA_TSTRING || type == LUA_TFUNCTION ||
                         type == LUA_TTABLE,
                     3, "string/function/table");
    const char *r = NULL;
    if (type == LUA_TNUMBER || type == LUA_TSTRING) r = lua_tolstring(L, 3, &lr);
    bool anchored = lp > 0 && p[0] == '^';
    if (anchored) p++, lp--;
    matcher_t m;
    matcher_init(&m, L, budget_of(L), s, ls);
    prog_t prog;
    small_prog_t small;
    m.steps = prog_build(L, &prog, &small, p, lp);
    m.prog = &prog;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    const unsigned char *at = m.subject, *last = NULL;
    lua_Integer n = 0;
    while (n < max_n) {
        const unsigned char *e = match_at(&m, at);
        if (e && e != last) { /* an empty match where the last one ended is none */
            n++;
            add_replacement(&m, &b, type, r, lr, at, e);
            at = last = e;
        } else if (at < m.end) {
            luaL_addchar(&b, (char)*at++);
        } else {
            break;
        }
        if (anchored) break;
    }
    luaL_addlstring(&b, (const char *)at, (size_t)(m.end - at));
    charge(&m, 1);
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

void lua_pattern_register(lua_State *L, int idx, const lua_pattern_budget_t *budget)
{
    static const luaL_Reg fns[] = {
        {"find", lp_find}, {"match", lp_match}, {"gmatch", lp_gmatch}, {"gsub", lp_gsub}};
    idx = lua_absindex(L, idx);
    for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
        lua_pushlightuserdata(L, (void *)budget);
        lua_pushcclosure(L, fns[i].func, 1);
        lua_setfield(L, idx, fns[i].name);
    }
}
