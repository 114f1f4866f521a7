/* lua_pattern.h: string.find, match, gmatch and gsub as Lua 5.4 defines
 * them, on our own matcher, which counts its steps against a
 * caller-supplied budget (see lua_pattern.c for why and how). */
#ifndef LC_LUA_PATTERN_H
#define LC_LUA_PATTERN_H

#include <lua.h>

/* Steps the matcher takes between two calls of charge(final = 0). */
#define LUA_PATTERN_STEP 1000

typedef struct lua_pattern_budget {
    /* Told about the matcher's work: steps taken since the previous call.
     * final = 0: called about every LUA_PATTERN_STEP steps in the middle of
     * a match; raise a Lua error (lua_error/luaL_error, never returns) to
     * stop it: the matcher holds nothing that needs cleaning up.
     * final = 1: the call into the matcher is ending; record the steps (it
     * may raise too). L is the thread running the match. */
    void (*charge)(lua_State *L, unsigned long steps, int final);
} lua_pattern_budget_t;

/* Set find, match, gmatch and gsub of the table at idx (a string library
 * table) to the budgeted versions, which behave exactly like Lua 5.4's
 * otherwise. budget must outlive the state; NULL counts nothing. */
void lua_pattern_register(lua_State *L, int idx, const lua_pattern_budget_t *budget);

#endif
