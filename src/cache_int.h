/* cache_int.h: what the files of the cache core share: the ops of
 * cache.c's requests (which fill.c answers), and cache_int.c's state and
 * entry rules. Each file's own interface is its header (fill.h, bcast.h,
 * nsgen.h, tags.h, l1_link.h, invalidate.h, warm.h); news between them goes
 * over the bus (bus.h). Not for other modules. */
#ifndef LC_CACHE_INT_H
#define LC_CACHE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "backend.h"
#include "buf.h"
#include "cache_op.h"
#include "cache_outcome.h"
#include "entry.h"
#include "policy.h"
#include "store.h"

typedef struct request request_t;
typedef struct op op_t;

/* How a fill tells one of its waiters what it came to (cache.h): the op
 * encodes a reply, or WARM counts it. May free op. */
typedef void (*op_outcome_cb)(op_t *op, const outcome_t *o);

/* One key of one command. */
struct op {
    request_t *req;
    long idx;
    cache_op_t kind;
    ns_t *ns;
    buf_t rkey;     /* Redis key of the entry */
    const char *id; /* in rkey */
    size_t idlen;
    bool warm;                /* CACHE_REFRESH for WARM: a fill that landed meanwhile will do */
    uint64_t epoch;           /* cache_inval_epoch when its lookup was sent */
    op_outcome_cb on_outcome; /* what a fill it waits on calls */
    struct op *next_waiter;
};

/* The outcome an entry stands for (a value, a not-found or an error). */
/* Redis is up for the key's node (with one server: Redis is up). */
static inline bool key_backend_up(const buf_t *rkey)
{
    return backend_slot_up(backend_slot(rkey->data, rkey->len));
}

static inline outcome_t outcome_of_entry(const entry_t *e)
{
    outcome_kind_t k = e->kind == ENTRY_VALUE      ? OUTCOME_VALUE
                       : e->kind == ENTRY_NEGATIVE ? OUTCOME_NOT_FOUND
                                                   : OUTCOME_ERROR;
    return (outcome_t){.kind = k, .data = e->value, .len = e->len};
}

/* cache.c */
void cache_entry_key(buf_t *out, const ns_t *ns, const char *id, size_t idlen);

/* cache_int.c */
void cache_int_init(uv_loop_t *loop); /* the loop, the random state, the instance id */
/* Decode and validate; false when it is not a valid entry (logged, rate-
 * limited, naming rkey), of another policy version, or of
 * an older namespace generation. An entry of a newer generation teaches ns
 * that generation (BUS_GEN_SEEN). */
bool entry_usable(ns_t *ns, const buf_t *rkey, const char *data, size_t len, entry_t *e);
double cache_rand(void); /* uniform in [0,1) */
/* Keep a fresh entry in the in-process tier when its policy has l1_ttl. */
void cache_l1_store(const ns_t *ns, const buf_t *rkey, const entry_t *e);
extern const char *cache_instance_id; /* random, tags our own broadcasts */
extern uv_loop_t *cache_loop;

#endif
