/* cache_int.h: what the files of the cache core share: cache.c (requests,
 * lookups, SET/DEL), fill.c (one fetch per key across instances), bcast.c
 * (messages between instances), purge.c (PURGE, PURGETAG), nsgen.c
 * (namespace generations, FLUSHNS) and warm.c. Not for other modules. */
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
#include "store.h"

typedef struct request request_t;

/* One key of one command. */
typedef struct op {
    request_t *req;
    long idx;
    cache_op_t kind;
    ns_t *ns;
    buf_t rkey;     /* Redis key of the entry */
    const char *id; /* in rkey */
    size_t idlen;
    bool warm;      /* CACHE_REFRESH for WARM: a fill that landed meanwhile will do */
    uint64_t epoch; /* cache_inval_epoch when its lookup was sent */
    struct op *next_waiter;
} op_t;

/* cache.c */
buf_t *op_out(op_t *op); /* where op writes its answer */
void op_done(op_t *op);  /* op has written its answer (may free the request) */
void op_answer_entry(op_t *op, const entry_t *e);
/* Decode and validate; false when it is not a valid entry (logged, rate-
 * limited, naming rkey), of another policy version, or of
 * an older namespace generation. An entry of a newer generation teaches ns
 * that generation (nsgen_learn). */
bool entry_usable(ns_t *ns, const buf_t *rkey, const char *data, size_t len, entry_t *e);
double cache_rand(void); /* uniform in [0,1) */
/* Keep a fresh entry in the in-process tier when its policy has l1_ttl. */
void cache_l1_store(const ns_t *ns, const buf_t *rkey, const entry_t *e);
void cache_entry_key(buf_t *out, const ns_t *ns, const char *id, size_t idlen);
extern const char *cache_instance_id; /* random, tags our own broadcasts */
extern buf_t cache_channel;           /* pub/sub channel of this prefix */
extern uv_loop_t *cache_loop;
/* Bumped by every invalidation this process applies: an entry read from
 * Redis while one happened may predate it and does not go to the tier. */
extern uint64_t cache_inval_epoch;
/* What this process holds of rkey is outdated: drop its tier item, and a
 * fill of it in flight must not store. */
void cache_invalidate_local(const char *rkey, size_t len);
/* The same for every rkey matching a Redis glob (PURGE): O(tier items +
 * fills in flight). */
void cache_invalidate_matching(const char *glob, size_t len);

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
void fill_invalidate(const char *rkey, size_t len);
/* The same for every fill whose rkey matches a Redis glob (PURGE). */
void fills_invalidate_matching(const char *glob, size_t len);
/* The same for every fill of ns (a newer generation: FLUSHNS). */
void fills_invalidate_ns(const ns_t *ns);
/* tag_clock() when the oldest fetch still running or storing here started
 * (the clock now if none): a tag purged before it concerns no fetch. */
uint64_t fills_oldest_fetch(void);
/* Broadcast from another instance: a fill of rkey landed. */
void fill_remote_landed(const char *rkey, size_t len);
/* The subscription was re-established: re-check every remote wait. */
void fills_resync(void);

/* bcast.c: messages to the other instances (formats in bcast.c) */
void bcast_landed(const buf_t *rkey);                 /* F */
void bcast_landed_msg(buf_t *out, const buf_t *rkey); /* F's text, appended: for a store to send */
void bcast_key(const buf_t *rkey);                    /* I */
void bcast_keys_add(buf_t *batch, const char *rkey, size_t len); /* K, built up */
/* and sent, cb told when Redis has delivered it (0); -1: nothing sent. batch reset */
int bcast_keys_send(buf_t *batch, store_cb cb, void *priv);
void bcast_pattern(const char *glob, size_t len); /* P */
void bcast_tag(const char *tag, size_t len);      /* T */
void bcast_gen(const ns_t *ns, long long gen);    /* G */
void bcast_on_message(const char *msg, size_t len);

/* purge.c: tags purged recently, so a fetch in flight that returns one of
 * them does not store its result. The clock counts the purges this process
 * has noted (its own and other instances' "T"), so "since" is exact: no
 * two events share a tick, as two in one millisecond would. */
uint64_t tag_clock(void);
void tag_note_purged(const char *tag, size_t len);
bool tag_purged_since(const char *tag, size_t len, uint64_t since_clock);
void tags_close(void);

/* nsgen.c: namespace generations */
void nsgen_learn(ns_t *ns, long long gen); /* a newer one flushes what is in flight */
void nsgen_sync(ns_t *ns);                 /* read (and repair) ns's generation in Redis */
void nsgen_sync_all(void);

/* warm.c */
void warm_init(void);
void warm_ns_served(ns_t *ns); /* a file appeared (or came back): warm it as at start */
void warm_stop(void);          /* start no new warm fetches; runs under way wind down */
void warm_shutdown(void);      /* and close the timer */

#endif
