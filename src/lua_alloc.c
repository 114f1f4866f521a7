/* lua_alloc.c: the memory behind every policy state (lua_alloc.h).
 *
 * A miss allocates and frees a dozen small Lua objects (the run's ctx, the
 * id string, the handle, closures a policy makes), and glibc's malloc and
 * free were about a seventh of a miss's own instructions. Lua tells its
 * allocator the size of every block it frees or resizes, so small blocks
 * need no header: freed ones wait in a list per 16-byte size class and the
 * next request of that class takes one (a push and a pop). Each class
 * keeps at most CLASS_KEEP blocks (about 4 MB in all); beyond that, and for
 * blocks over SMALL_MAX bytes, it is plain malloc/realloc/free.
 *
 * Only the loop thread runs Lua, so the lists need no lock. Under
 * AddressSanitizer nothing is kept (every block goes to free at once), so a
 * use after free in Lua's memory is still reported. */
#include "lua_alloc.h"

#include <stdlib.h>
#include <string.h>

#define CLASS_BYTES 16
#define SMALL_MAX   256 /* bytes; larger blocks go to malloc */
#define NCLASSES    (SMALL_MAX / CLASS_BYTES)
#define CLASS_KEEP  2048

#if defined(__SANITIZE_ADDRESS__)
#define KEEP_BLOCKS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEP_BLOCKS 0
#endif
#endif
#ifndef KEEP_BLOCKS
#define KEEP_BLOCKS 1
#endif

typedef struct free_block {
    struct free_block *next;
} free_block_t;

static struct {
    free_block_t *head[NCLASSES];
    size_t count[NCLASSES];
} cache;

/* Class 0 holds sizes 1..16, class 15 sizes 241..256. */
static size_t class_of(size_t n)
{
    return (n - 1) / CLASS_BYTES;
}

static void *small_get(size_t n)
{
    size_t c = class_of(n);
    free_block_t *b = cache.head[c];
    if (b) {
        cache.head[c] = b->next;
        cache.count[c]--;
        return b;
    }
    return malloc((c + 1) * CLASS_BYTES);
}

/* p has room for at least n bytes (n <= SMALL_MAX). */
static void small_put(void *p, size_t n)
{
    size_t c = class_of(n);
    if (!KEEP_BLOCKS || cache.count[c] >= CLASS_KEEP) {
        free(p);
        return;
    }
    free_block_t *b = p;
    b->next = cache.head[c];
    cache.head[c] = b;
    cache.count[c]++;
}

/* A small block has room for its whole class: one allocated for n holds
 * (class_of(n) + 1) * CLASS_BYTES bytes, and a larger block that shrank
 * into the class in place holds more. */
void *lua_alloc_block(void *ptr, size_t osize, size_t nsize)
{
    size_t old = ptr ? osize : 0; /* without ptr, osize is a type tag */
    if (nsize == 0) {
        if (!ptr) return NULL;
        if (old <= SMALL_MAX)
            small_put(ptr, old);
        else
            free(ptr);
        return NULL;
    }
    if (old == 0) return nsize <= SMALL_MAX ? small_get(nsize) : malloc(nsize);
    if (old <= SMALL_MAX && nsize <= SMALL_MAX && class_of(nsize) <= class_of(old))
        return ptr; /* it fits where it is */
    if (old > SMALL_MAX && nsize > SMALL_MAX) {
        void *q = realloc(ptr, nsize);
        return q || nsize > old ? q : ptr; /* shrinking must not fail: keep it */
    }
    /* to another class, or across SMALL_MAX: move it */
    void *q = nsize <= SMALL_MAX ? small_get(nsize) : malloc(nsize);
    if (!q) return nsize < old ? ptr : NULL; /* shrinking must not fail: keep it */
    memcpy(q, ptr, old < nsize ? old : nsize);
    lua_alloc_block(ptr, old, 0);
    return q;
}

void lua_alloc_drain(void)
{
    for (size_t c = 0; c < NCLASSES; c++) {
        while (cache.head[c]) {
            free_block_t *b = cache.head[c];
            cache.head[c] = b->next;
            free(b);
        }
        cache.count[c] = 0;
    }
}

size_t lua_alloc_kept(void)
{
    size_t bytes = 0;
    for (size_t c = 0; c < NCLASSES; c++)
        bytes += cache.count[c] * (c + 1) * CLASS_BYTES;
    return bytes;
}
