/* store.h: the typed storage layer between the cache and Redis. Callers
 * name what they want done (read an entry, take a lock, store if the lock
 * is still ours, index under a tag, ...) with the key it concerns, and get
 * a decoded result; no hiredis reply crosses this boundary, and no caller
 * formats a Redis command. Key names come from keys.h.
 *
 * Contract, as backend.h's (fail-open): each call returns 0 when queued,
 * and then its callback runs exactly once, later; or -1 when Redis is not
 * connected, and then the callback never runs. Results keep the order of
 * the calls: an operation is never overtaken by one issued after it.
 *
 * Reads issued in one loop turn, from pipelines and from many clients, go
 * to Redis as one batch (MGET; a single GET alone), sent before the loop
 * next polls, so batching costs no latency. A write issued after a read
 * sends the batch first, which keeps the order.
 *
 * Scripts are loaded (SCRIPT LOAD) each time the link comes up, ahead of
 * any other command, and called by EVALSHA; a NOSCRIPT answer (an operator
 * ran SCRIPT FLUSH) is retried once with the script's text and reloads it.
 *
 * Redis Cluster: each call concerns keys of one hash slot and goes to its
 * master (backend.h); a batch holds keys of one slot (a key of another
 * slot sends the open batch first); SCAN walks every master, with the
 * node in the cursor ("N:C"); a master that is down fails only its own
 * keys' calls. */
#ifndef LC_STORE_H
#define LC_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

typedef enum store_status {
    STORE_OK,    /* a value, an integer, or a status reply */
    STORE_NIL,   /* no such key (or not a string); a lost NX */
    STORE_ERROR, /* Redis answered with an error: its text in str */
    STORE_DOWN,  /* no answer: the link failed, dropped or timed out */
} store_status_t;

/* Valid only during the callback. */
typedef struct store_result {
    store_status_t status;
    const char *str; /* STORE_OK of a read: the value; STORE_ERROR: the text */
    size_t len;
    long long integer; /* STORE_OK of a count or a script's number */
} store_result_t;

typedef void (*store_cb)(void *priv, const store_result_t *r);

void store_init(uv_loop_t *loop);
void store_close(void);

/* The entry at key: OK with its bytes, or NIL. Batched. */
int store_get(const char *key, size_t len, store_cb cb, void *priv);

/* SET or DEL an entry and delete its fill lock, in one script, so a fill's
 * store (which needs the lock) lands before it or not at all. set: OK;
 * del: integer, entries removed. */
int store_set_unlock(const char *key, size_t len, const char *lock, size_t llen, const char *val,
                     size_t vlen, long long px, store_cb cb, void *priv);
int store_del_unlock(const char *key, size_t len, const char *lock, size_t llen, store_cb cb,
                     void *priv);
/* SET with NX, XX, GET or KEEPTTL: in one script, read the old entry at
 * key, decide and store val (PX px) and delete the lock, as
 * store_set_unlock. The old entry counts when it is a live value of policy
 * version and namespace generation gen at wall-clock ms now (store.c,
 * SC_SET_COND). mode: letters 'n' (store only without one), 'x' (only
 * with one), 'k' (keep its deadlines and PTTL). OK: integer 1 stored, 0
 * not; str/len the old value, str NULL when there was none. */
int store_set_cond(const char *key, size_t len, const char *lock, size_t llen, const char *val,
                   size_t vlen, long long px, const char *mode, long long version, long long gen,
                   long long now, store_cb cb, void *priv);

/* A fill's lock and store are batched per loop turn: the calls of one
 * turn go to Redis as one script call (store.c, "Batched fill writes"),
 * each key with its own result. */

/* Take the fill lock (SET NX PX) and read the entry after it: lock OK
 * when taken, NIL when another holds it; entry as store_get's. */
typedef void (*store_lock_cb)(void *priv, const store_result_t *lock, const store_result_t *entry);
int store_lock_read(const char *lock, size_t llen, const char *token, long long px, const char *key,
                    size_t len, store_lock_cb cb, void *priv);
/* Release the lock if it still holds token. Fire and forget. */
int store_release(const char *lock, size_t llen, const char *token);
/* Store the entry if the lock still holds token, and release it: integer
 * 1 stored, 0 not (the lock was lost). Then PUBLISH msg on channel (msg
 * NULL: none), whether stored or not. */
int store_put_if_locked(const char *key, size_t len, const char *lock, size_t llen,
                        const char *token, const char *val, size_t vlen, long long px,
                        const char *channel, size_t clen, const char *msg, size_t mlen, store_cb cb,
                        void *priv);
/* SET PX (nx: only if absent; NIL when it was present). */
int store_put(const char *key, size_t len, const char *val, size_t vlen, long long px, bool nx,
              store_cb cb, void *priv);

/* Add member to the tag set at tag and keep the set alive at least px. */
int store_tag_add(const char *tag, size_t tlen, const char *member, size_t mlen, long long px,
                  store_cb cb, void *priv);
/* SREM members from the tag set. Fire and forget. */
int store_tag_remove(const char *tag, size_t tlen, const char *const *members, const size_t *lens,
                     size_t n);

/* DEL (fire and forget) and UNLINK (integer: removed). */
int store_del(const char *key, size_t len);
int store_unlink(const char *key, size_t len, store_cb cb, void *priv);

/* One step of a SCAN MATCH glob, or of an SSCAN of a set: the next cursor
 * ("0" when done) and the names found, valid during the callback. status
 * as store_result_t's (STORE_ERROR: err holds the text). */
typedef struct store_scan {
    store_status_t status;
    const char *cursor;
    size_t n;
    const char *const *items;
    const size_t *lens;
    const char *err;
} store_scan_t;
typedef void (*store_scan_cb)(void *priv, const store_scan_t *s);
int store_scan(const char *cursor, const char *glob, size_t glen, int count, store_scan_cb cb,
               void *priv);
int store_sscan(const char *set, size_t slen, const char *cursor, int count, store_scan_cb cb,
                void *priv);

/* Namespace generations (FLUSHNS): read the generation, raised to at least
 * known and repaired if it is not a number (sync); or advance it past both
 * (flush). Integer: the generation; STORE_ERROR at its maximum. */
int store_gen_sync(const char *key, size_t len, long long known, store_cb cb, void *priv);
int store_gen_flush(const char *key, size_t len, long long known, store_cb cb, void *priv);

/* PUBLISH; cb (may be NULL) runs once Redis has handed it to subscribers.
 * key: the key the message is about (it goes after that key's writes, on
 * its node); NULL for a message about several keys, which in a cluster
 * goes out once every write sent before it is answered on every node. */
int store_publish(const char *key, size_t klen, const char *channel, size_t clen, const char *msg,
                  size_t len, store_cb cb, void *priv);

/* Counters for INFO/metrics and tests. */
typedef struct store_stats {
    unsigned long long batches;      /* read batches sent */
    unsigned long long batched_keys; /* keys they carried */
    unsigned long long noscript;     /* NOSCRIPT answers retried with the text */
} store_stats_t;
const store_stats_t *store_stats(void);

/* Grows whenever a key may have moved between Redis nodes (a cluster's
 * slot map changed, or a MOVED/ASK was seen); always 0 with one server. */
uint64_t store_reshapes(void);

#endif
