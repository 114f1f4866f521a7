/* test_lua_alloc.c: the policy states' allocator (src/lua_alloc.c): it keeps
 * contents across every kind of resize (within a class, between classes,
 * across the small/large boundary, both ways), shrinking never fails, freed
 * small blocks are reused and bounded, a real Lua state runs on it, and
 * drain gives everything back. Under ASan nothing is kept, and the checks
 * that depend on keeping are skipped. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <string.h>

#include "lua_alloc.h"
#include "check.h"

#if defined(__SANITIZE_ADDRESS__)
#define KEEPS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEPS 0
#endif
#endif
#ifndef KEEPS
#define KEEPS 1
#endif

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 7);
}

static int same(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7)) return 0;
    return 1;
}

/* Every resize path keeps the bytes both sizes share. */
static void test_resize_keeps_contents(void)
{
    static const size_t sizes[] = {1, 15, 16, 17, 100, 255, 256, 257, 1000, 70000, 3};
    unsigned char *p = lua_alloc_block(NULL, 0, sizes[0]);
    REQUIRE(p != NULL);
    fill(p, sizes[0], 11);
    size_t cur = sizes[0];
    for (size_t i = 1; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        unsigned char *q = lua_alloc_block(p, cur, n);
        REQUIRE(q != NULL);
        size_t kept = cur < n ? cur : n;
        CHECK(same(q, kept, 11));
        fill(q, n, 11); /* the whole block is writable (ASan checks it) */
        p = q;
        cur = n;
    }
    CHECK(lua_alloc_block(p, cur, 0) == NULL);
    lua_alloc_drain();
}

/* Shrinking inside the small classes keeps the block in place. */
static void test_shrink_in_place(void)
{
    unsigned char *p = lua_alloc_block(NULL, 0, 200);
    REQUIRE(p != NULL);
    fill(p, 200, 3);
    CHECK(lua_alloc_block(p, 200, 20) == p);
    CHECK(same(p, 20, 3));
    /* it may grow back within its class in place too */
    CHECK(lua_alloc_block(p, 20, 30) == p);
    lua_alloc_block(p, 30, 0);
    lua_alloc_drain();
}

/* A freed small block is the next one of its class; the lists are bounded. */
static void test_reuse_and_bound(void)
{
    lua_alloc_drain();
    CHECK(lua_alloc_kept() == 0);
    void *a = lua_alloc_block(NULL, 0, 40);
    REQUIRE(a != NULL);
    lua_alloc_block(a, 40, 0);
    if (KEEPS) {
        CHECK(lua_alloc_kept() == 48);
        void *b = lua_alloc_block(NULL, 0, 33); /* same class, 33..48 */
        CHECK(b == a);
        lua_alloc_block(b, 33, 0);
    } else {
        CHECK(lua_alloc_kept() == 0);
    }
    lua_alloc_drain();
    enum { N = 5000 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = lua_alloc_block(NULL, 0, 64);
        REQUIRE(blocks[i] != NULL);
    }
    for (int i = 0; i < N; i++)
        lua_alloc_block(blocks[i], 64, 0);
    CHECK(lua_alloc_kept() <= 2048 * 64); /* at most 2048 of one class */
    if (KEEPS) CHECK(lua_alloc_kept() > 0);
    lua_alloc_drain();
    CHECK(lua_alloc_kept() == 0);
}

static void *test_state_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    return lua_alloc_block(ptr, osize, nsize);
}

/* A Lua state runs on it: tables, strings and a full collection. */
static void test_lua_state(void)
{
    lua_State *L = lua_newstate(test_state_alloc, NULL);
    REQUIRE(L != NULL);
    luaL_openlibs(L);
    const char *code = "local t = {} for i = 1, 20000 do t[i] = {i, tostring(i) .. 'x'} end "
                       "collectgarbage() local s = 0 for i = 1, #t do s = s + t[i][1] end "
                       "t = nil collectgarbage() return s";
    CHECK(luaL_dostring(L, code) == LUA_OK);
    CHECK(lua_tointeger(L, -1) == 20000LL * 20001 / 2);
    lua_close(L);
    lua_alloc_drain();
    CHECK(lua_alloc_kept() == 0);
}

int main(void)
{
    RUN(test_resize_keeps_contents);
    RUN(test_shrink_in_place);
    RUN(test_reuse_and_bound);
    RUN(test_lua_state);
    return check_summary("test_lua_alloc");
}
