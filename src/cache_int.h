/* cache_int.h: what cache.c (requests, lookups, SET/DEL) and fill.c (one
 * fetch per key across instances) share. Not for other modules. */
#ifndef LC_CACHE_INT_H
#define LC_CACHE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "cache.h"
#include "entry.h"
#include "policy.h"

typedef struct request request_t;

/* One key of one command. */
typedef struct op {
    request_t *req;
    long idx;
    cache_op_t kind;
    ns_t *ns;
    buf_t rkey; /* Redis key of the entry */
    char *id;
    size_t idlen;
    struct op *next_waiter;
} op_t;

/* cache.c */
buf_t *op_out(op_t *op);  /* where op writes its answer */
void op_done(op_t *op);   /* op has written its answer (may free the request) */
void op_answer_entry(op_t *op, const entry_t *e);
bool entry_usable(const ns_t *ns, const char *data, size_t len, entry_t *e);
double cache_rand(void); /* uniform in [0,1) */
/* Keep a fresh entry in the in-process tier when its policy has l1_ttl. */
void cache_l1_store(const ns_t *ns, const buf_t *rkey, const entry_t *e);
void cache_entry_key(buf_t *out, const ns_t *ns, const char *id, size_t idlen);
void cache_lock_key(buf_t *out, const buf_t *entry_key);
extern const char *cache_instance_id; /* random, tags our own broadcasts */
extern buf_t cache_channel;          /* pub/sub channel of this prefix */
extern uv_loop_t *cache_loop;

/* fill.c */
void fills_init(void);
void fills_shutdown(void); /* fail every fill not fetching; no new fetches */
void fills_close(void);
size_t fills_in_flight(void);
/* A miss: wait for the key's fill, starting one if none is in flight here.
 * REFRESH ops always fetch (force). stale: an expired value kept for
 * stale-if-error, or NULL. */
void fill_wait(op_t *op, const entry_t *stale);
/* A fill clients wait on is in flight here: join it. */
bool fill_join_if_running(op_t *op);
/* Stale-while-revalidate and early refresh: one background fill across all
 * instances; nobody waits on it. */
void fill_background(ns_t *ns, const buf_t *rkey, const char *id, size_t idlen,
                     const entry_t *stale);
/* An invalidation of rkey: a fill in flight must not store its result. */
void fill_invalidate(const buf_t *rkey);
/* Broadcast from another instance: a fill of rkey landed. */
void fill_remote_landed(const char *rkey, size_t len);
/* The subscription was re-established: re-check every remote wait. */
void fills_resync(void);

#endif
