/* lua_alloc.h: the memory behind every policy state. Small blocks (the
 * most of what a fetch allocates) come from per-size lists of freed ones
 * before malloc; see lua_alloc.c. Loop thread only. */
#ifndef LC_LUA_ALLOC_H
#define LC_LUA_ALLOC_H

#include <stddef.h>

/* The lua_Alloc contract without its ud: ptr == NULL allocates nsize bytes
 * (osize is then a type tag), nsize == 0 frees ptr (osize bytes), else
 * resizes ptr from osize to nsize. Returns NULL only when it allocates or
 * grows and memory is short; shrinking always succeeds. */
void *lua_alloc_block(void *ptr, size_t osize, size_t nsize);

/* Hand the kept blocks back to malloc (at exit, so leak checkers see a
 * clean heap). */
void lua_alloc_drain(void);

/* Bytes kept for reuse now (INFO, tests). */
size_t lua_alloc_kept(void);

#endif
