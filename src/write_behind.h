/* write_behind.h: SET and DEL of a namespace whose policy has write_behind
 * and write_batch: the write is queued durably in Redis, the cache is
 * written at once, and every instance flushes the queue to the origin in
 * batches (docs/POLICIES.md, "Write-behind").
 *
 * SET / DEL append the write (op, id, value) to the namespace's Stream
 * first; only when Redis acknowledged it is the cache entry stored or
 * deleted as by a plain SET / DEL (cache_set / cache_del_keys, broadcast
 * included), and the client answered. If the append fails the client gets
 * "-ERR write queue unavailable: ..." and the cache is not changed: a
 * write is never accepted that could be lost. Until the append is
 * answered the client's next commands wait, so they see the write.
 *
 * The flusher: every instance, per write-behind namespace, every delay
 * seconds (and at once after it appended batch writes itself) takes
 * entries idle longer than claim_after from dead consumers (XAUTOCLAIM),
 * else reads new ones (XREADGROUP, its own consumer name), at most batch;
 * with coalesce only the last write per id goes out. write_batch runs as
 * a budgeted coroutine; on success the entries are acknowledged and
 * deleted; on failure the same batch is retried after delay, 2 delay,
 * 4 delay ... (at most 60 s), its entries kept claimed by this instance;
 * after max_retries the entries move to the dead-letter Stream. One batch
 * per namespace per instance is in flight. Delivery is at least once: a
 * write is sent once per successful write_batch, and only a batch whose
 * instance died (or lost Redis) between the origin's answer and the
 * acknowledgement is sent again. */
#ifndef LC_WRITE_BEHIND_H
#define LC_WRITE_BEHIND_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "cache.h"
#include "sink.h"

void write_behind_init(uv_loop_t *loop);
/* SIGTERM: flush every queue at once and keep flushing until it is empty. */
void write_behind_drain(void);
/* A batch is in flight, or a drain has more to read. */
bool write_behind_busy(void);
/* Shutdown grace over: start nothing more (idempotent; closes the timer). */
void write_behind_stop(void);
void write_behind_close(void); /* after the backend closed */

bool write_behind_set_wanted(const cache_key_t *key);
bool write_behind_del_wanted(const cache_key_t *keys, long nkeys);
void write_behind_set(sink_t *sink, const cache_key_t *key, const char *value, size_t vlen,
                      long long ttl_ms);
void write_behind_del(sink_t *sink, const cache_key_t *keys, long nkeys);

/* WRITES ns: the queue's state as a map (see docs/POLICIES.md); WRITES ns
 * RETRY: dead letters back to the queue, answers how many. */
void write_behind_status(sink_t *sink, ns_t *ns);
void write_behind_retry(sink_t *sink, ns_t *ns);

/* Gauges sampled at each flush tick, for the metrics; false when this
 * instance has no sample for ns. */
typedef struct write_behind_gauges {
    long long depth, dead;
    double lag_seconds;
} write_behind_gauges_t;
bool write_behind_gauges(const ns_t *ns, write_behind_gauges_t *out);

/* INFO / STATS ns: a "writes_NS:queued=..,..." line for a write-behind
 * namespace (its counters and gauges); nothing for others. */
void write_behind_info(buf_t *o, const ns_t *ns);

/* This process's consumer name: host:pid:start-time. */
const char *write_behind_consumer(void);

#endif
