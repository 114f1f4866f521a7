/* cache.h: the read-through cache (SPEC §3-§6): look an entry up in Redis,
 * decide fresh / stale / miss, fill misses through the policy's fetch with
 * one fetch per key in flight (coalescing), store, and answer every waiter.
 * Every answer goes into a sink (sink.h) in the sink's protocol version, so
 * callers never wait synchronously and this layer knows no clients. */
#ifndef LC_CACHE_H
#define LC_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "buf.h"
#include "cache_op.h"
#include "cache_outcome.h"
#include "policy.h"
#include "set_opts.h"
#include "sink.h"

typedef struct cache_key {
    ns_t *ns;
    const char *id; /* points into the command's argument */
    size_t idlen;
} cache_key_t;

void cache_init(uv_loop_t *loop);
/* Shutdown grace over: fail what waits; start no new fetches. */
void cache_shutdown(void);
void cache_close(void);
size_t cache_fills_in_flight(void);

/* Split "NS:ID" and find the namespace. On failure writes the error reply
 * (SPEC §2 texts) into err and returns -1. */
int cache_key_parse(const char *key, size_t len, cache_key_t *out, buf_t *err);

/* Run op for each key; answer one reply (as_array false, nkeys == 1) or an
 * array of per-key replies (MGET) into sink, then finish it. */
void cache_read(sink_t *sink, cache_op_t op, const cache_key_t *keys, long nkeys, bool as_array);

/* GET's fast path: answer from the in-process tier at once, into sink (the
 * client's immediate replies). false: not there (or l1 off), nothing
 * written; run cache_read. */
bool cache_try_l1(sink_t *sink, const cache_key_t *key);

/* SET: store value as fresh for ttl_ms (< 0: the policy's TTL with jitter). */
void cache_set(sink_t *sink, const cache_key_t *key, const char *value, size_t vlen,
               long long ttl_ms);

/* SET with NX, XX, GET or KEEPTTL (set_opts_conditional(o)): the old
 * entry is read, the condition decided and the new one stored in one
 * script in Redis (store_set_cond), never as a read and a later write
 * here. The old entry counts when it is a live value (cache_exists).
 * Answers +OK, or nil when NX/XX kept it from storing; with GET, the old
 * value or nil instead. ttl_ms as cache_set's; KEEPTTL over a live entry
 * keeps its deadlines. The client's next commands wait for the answer. */
void cache_set_cond(sink_t *sink, const cache_key_t *key, const char *value, size_t vlen,
                    long long ttl_ms, const set_opts_t *o);

/* EXISTS: how many of the keys have a live value cached: a value of the
 * current policy version and generation, fresh or within a stale window
 * (what PEEK reports with a value). Not-found and error entries do not
 * count. No fill, no origin fetch; Redis down counts 0 (fail-open). */
void cache_exists(sink_t *sink, const cache_key_t *keys, long nkeys);

/* DEL: invalidate exact keys; answers how many existed in Redis. */
void cache_del(sink_t *sink, const cache_key_t *keys, long nkeys);

/* How an invalidation ends: removed = entries that existed in Redis; err is
 * NULL, or the text of the error reply (Redis was unavailable). */
typedef void (*cache_inval_cb)(void *priv, long long removed, const char *err);
/* A cache_inval_cb that answers a sink_t (priv) with the count, or the
 * error, and finishes it. */
void cache_reply_removed(void *sink, long long removed, const char *err);

/* DEL's work with a callback (EVENT's keys). count: bump the keys'
 * requests_del and invalidations_del (DEL itself; EVENT counts its own). */
void cache_del_keys(const cache_key_t *keys, long nkeys, bool count, cache_inval_cb cb, void *priv);

/* WARM: fetch one id now even if fresh (as REFRESH: through the key's fill,
 * so it coalesces and takes the lock), and tell cb how it ended. cb may run
 * before this returns. */
typedef void (*cache_warm_cb)(void *priv, const outcome_t *o);
void cache_warm_one(ns_t *ns, const char *id, size_t idlen, cache_warm_cb cb, void *priv);

#endif
