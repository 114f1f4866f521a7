/* reply_arena.c: hiredis reply objects in one arena per reply (see
 * reply_arena.h).
 *
 * A reply's first block starts with the arena header, then the root
 * redisReply, so the root finds its arena by subtraction; every other
 * object finds the root through its read task's parent chain (the root
 * task's obj is set before hiredis reads any element). Objects are bumped
 * from the current block; a full block chains a new one, never moves, so
 * pointers stay valid. The first block of an array reply is sized for its
 * elements at the average element size of the arrays seen so far. */
#include "reply_arena.h"

#include <hiredis/hiredis.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* A reply's first block doubles as its arena header (cur); chained
 * blocks leave cur unused. */
typedef struct block {
    struct block *next; /* first block: NULL; chained: the block before */
    struct block *cur;  /* first block: the block being filled */
    size_t used, cap;   /* bytes of data[] */
    alignas(max_align_t) char data[];
} block_t;

#define ALIGN         (alignof(max_align_t))
#define ROUND(n)      (((n) + ALIGN - 1) & ~(ALIGN - 1))
#define MIN_CHAINED   4096
#define ELEM_GUESS_IN 64 /* bytes per element before any array was seen */

/* Average bytes per element of the array replies lately (decaying), to
 * size the first block of the next one so that it rarely needs a second. */
static size_t elem_guess = ELEM_GUESS_IN;

/* The root object's arena: the root sits at the start of the first block. */
static block_t *arena_of(redisReply *root)
{
    return (block_t *)((char *)root - offsetof(block_t, data));
}

static redisReply *root_of(const redisReadTask *task)
{
    while (task->parent)
        task = task->parent;
    return task->obj;
}

static void *arena_alloc(block_t *a, size_t n)
{
    n = ROUND(n);
    block_t *b = a->cur;
    if (b->cap - b->used < n) {
        size_t cap = n > MIN_CHAINED ? n : MIN_CHAINED;
        if (cap < b->cap) cap = b->cap; /* grow geometrically with the reply */
        block_t *nb = xmalloc(sizeof(*nb) + cap);
        nb->next = b;
        nb->cur = NULL;
        nb->used = 0;
        nb->cap = cap;
        a->cur = b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

/* A new object: the root of a new arena with room for extra more bytes
 * (parent NULL), or an object in its root's arena, linked into its parent. */
static redisReply *new_object(const redisReadTask *task, int type, size_t extra)
{
    redisReply *r;
    if (!task->parent) {
        size_t room = ROUND(sizeof(redisReply)) + ROUND(extra);
        block_t *a = xmalloc(sizeof(*a) + room);
        a->next = NULL;
        a->cap = room;
        a->used = ROUND(sizeof(redisReply));
        a->cur = a;
        r = (redisReply *)a->data;
    } else {
        r = arena_alloc(arena_of(root_of(task)), sizeof(redisReply));
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    memset(r, 0, sizeof(*r));
    r->type = type;
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    redisReply *r = new_object(task, task->type, task->parent ? 0 : len + 1);
    char *copy = arena_alloc(arena_of(task->parent ? root_of(task) : r), len + 1);
    memcpy(copy, str, len);
    copy[len] = '\0';
    r->str = copy;
    r->len = len;
    return r;
}

static void *create_array(const redisReadTask *task, int elements)
{
    size_t n = elements > 0 ? (size_t)elements : 0;
    size_t ptrs = n * sizeof(redisReply *);
    /* A root array gets room for its elements too, at the usual size. */
    size_t extra = task->parent ? 0 : ROUND(ptrs) + n * elem_guess;
    redisReply *r = new_object(task, REDIS_REPLY_ARRAY, extra);
    r->elements = n;
    if (n) {
        r->element = arena_alloc(arena_of(task->parent ? root_of(task) : r), ptrs);
        memset(r->element, 0, ptrs);
    }
    return r;
}

static void *create_integer(const redisReadTask *task, long long value)
{
    redisReply *r = new_object(task, REDIS_REPLY_INTEGER, 0);
    r->integer = value;
    return r;
}

static void *create_nil(const redisReadTask *task)
{
    return new_object(task, REDIS_REPLY_NIL, 0);
}

static void free_object(void *obj)
{
    redisReply *root = obj;
    block_t *a = arena_of(root);
    if (root->type == REDIS_REPLY_ARRAY && root->elements > 0) {
        size_t total = 0;
        for (block_t *b = a->cur; b; b = b->next)
            total += b->used;
        size_t per = total / root->elements;
        elem_guess = (elem_guess * 3 + per) / 4;
    }
    block_t *b = a->cur;
    while (b != a) {
        block_t *next = b->next;
        free(b);
        b = next;
    }
    free(a);
}

redisReplyObjectFunctions reply_arena_fns = {
    .createString = create_string,
    .createArray = create_array,
    .createInteger = create_integer,
    .createNil = create_nil,
    .freeObject = free_object,
};
