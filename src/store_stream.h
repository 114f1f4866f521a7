/* store_stream.h: the write-behind queue's typed Redis operations (a
 * Stream per namespace with one consumer group, and its dead-letter
 * Stream; docs/STORAGE.md). Same contract as store.h: 0 when queued, and
 * then the callback runs exactly once; -1 when Redis (the key's node) is
 * not connected, and then it never runs. Every call concerns the queue's
 * slot (the queue and its dead letters share a hash tag) and goes to its
 * master in a cluster. No redisReply crosses this boundary.
 *
 * An entry's fields: op ("set" or "del"), id, value (set only); a dead
 * letter adds error and attempts. */
#ifndef LC_STORE_STREAM_H
#define LC_STORE_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

typedef struct store_xentry {
    const char *sid; /* the stream entry id "ms-seq" */
    size_t sidlen;
    const char *op, *id, *value, *error; /* NULL when absent (an entry deleted meanwhile) */
    size_t oplen, idlen, vlen, errlen;
    long long attempts; /* dead letters */
} store_xentry_t;

/* Valid only during the callback. */
typedef struct store_xlist {
    store_status_t status; /* OK (n may be 0), ERROR (err), DOWN */
    const char *err;
    size_t n;
    const store_xentry_t *e;
} store_xlist_t;
typedef void (*store_xlist_cb)(void *priv, const store_xlist_t *l);

/* Create the consumer group (from the stream's start, creating the stream
 * if needed); an existing group is OK. */
int store_wb_group(const char *q, size_t qlen, store_cb cb, void *priv);
/* XADD: OK with the new entry's id in str. value NULL: a "del". */
int store_wb_append(const char *q, size_t qlen, const char *id, size_t idlen, const char *value,
                    size_t vlen, store_cb cb, void *priv);
/* New entries for consumer (XREADGROUP ... >), at most count. An ERROR
 * starting "NOGROUP" means the group must be created again. */
int store_wb_read(const char *q, size_t qlen, const char *consumer, long count, store_xlist_cb cb,
                  void *priv);
/* Take over entries pending longer than min_idle_ms (XAUTOCLAIM). */
int store_wb_claim_idle(const char *q, size_t qlen, const char *consumer, long long min_idle_ms,
                        long count, store_xlist_cb cb, void *priv);
/* Reset the idle time of the entries consumer still holds (XCLAIM ...
 * JUSTID), so nobody claims a batch being retried; one another instance
 * took over meanwhile (this one stalled past claim_after) is left to it.
 * OK with integer: how many were no longer ours. */
int store_wb_touch(const char *q, size_t qlen, const char *dead, size_t dlen, const char *consumer,
                   const char *const *sids, const size_t *lens, size_t n, store_cb cb, void *priv);
/* Written: XACK and XDEL them, in one script. OK with integer: entries
 * deleted. */
int store_wb_done(const char *q, size_t qlen, const char *dead, size_t dlen,
                  const char *const *sids, const size_t *lens, size_t n, store_cb cb, void *priv);
/* Given up: copy each to the dead letters with err and attempts, then XACK
 * and XDEL it, in one script. OK with integer: entries moved. */
int store_wb_bury(const char *q, size_t qlen, const char *dead, size_t dlen,
                  const char *const *sids, const size_t *lens, size_t n, const char *err,
                  long long attempts, store_cb cb, void *priv);
/* Move up to max dead letters back to the queue. OK with integer: moved. */
int store_wb_retry(const char *q, size_t qlen, const char *dead, size_t dlen, long max, store_cb cb,
                   void *priv);

/* Remove the group's consumers other than self that hold nothing pending
 * and were idle at least min_idle_ms (instances gone: each process is a
 * consumer of its own name), checked and removed in one script, so a
 * consumer with a write in hand is never removed. OK with integer: how
 * many went. A live instance removed anyway is made again by its next
 * read. */
int store_wb_prune(const char *q, size_t qlen, const char *dead, size_t dlen, const char *self,
                   long long min_idle_ms, store_cb cb, void *priv);

typedef struct store_wb_status {
    store_status_t status;
    const char *err;
    long long depth;     /* XLEN of the queue: entries not yet written */
    long long pending;   /* of them, read by a consumer and not acknowledged */
    long long oldest_ms; /* ms part of the oldest entry's id; -1 when empty */
    long long dead;      /* XLEN of the dead letters */
    size_t n;            /* the first dead letters, at most the limit asked */
    const store_xentry_t *e;
} store_wb_status_t;
typedef void (*store_wb_status_cb)(void *priv, const store_wb_status_t *s);
int store_wb_status(const char *q, size_t qlen, const char *dead, size_t dlen, long limit,
                    store_wb_status_cb cb, void *priv);

#endif
