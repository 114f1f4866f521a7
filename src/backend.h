/* backend.h: the Redis connection (hiredis async API on our libuv loop).
 *
 * Fail-open contract: the rest of the core never waits on a dead Redis.
 *  - backend_cmd() returns -1 at once when Redis is not connected; the caller
 *    goes on without it (fetch from the origin, skip the store).
 *  - A queued command gets exactly one callback: with the reply, or with NULL
 *    when the command failed, the connection dropped, or no reply came within
 *    the backend timeout (then the connection is dropped and re-made, since a
 *    reply that late means the link is unusable).
 *  - Reconnects run by themselves with exponential backoff (100 ms .. 5 s).
 *    Each outage is logged once when it starts and once when it ends.
 * hiredis 0.14 has no timeouts of its own, so a loop timer enforces them. */
#ifndef LC_BACKEND_H
#define LC_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "redis_url.h"

typedef struct backend_conf {
    const char *url; /* redis://[:pass@]host[:port][/db] or unix:/path[?db=N] */
    long timeout_ms; /* per command and for connecting */
} backend_conf_t;

/* reply is NULL on any failure; it is valid only during the callback (its
 * strings point into the link's read buffer). */
typedef void (*backend_cb)(void *priv, redisReply *reply);

/* Parse the URL now (error text into err, -1) and start connecting (to the
 * server, the cluster's seeds, or the sentinels, by the URL). A Redis
 * that is down is not an error: the backend keeps retrying. Call it from
 * top-level code, not from inside a backend callback. */
int backend_init(uv_loop_t *loop, const backend_conf_t *conf, char *err, size_t errlen);
void backend_close(void); /* pending callbacks get NULL */

bool backend_up(void);
/* Of the command link: each command that failed or timed out, each loss of
 * an established connection, each connection attempt (first or reconnect)
 * that failed. So it keeps growing, one per retry, while Redis is away. */
uint64_t backend_errors_total(void);
uint64_t backend_outages_total(void);

/* 0: queued, cb will run exactly once later. -1: not connected, cb never runs.
 * Replies are matched to commands in order, so no SUBSCRIBE/MONITOR here. A
 * Redis error reply (-ERR ...) reaches cb as a reply, not as NULL. cb may be
 * NULL to fire and forget. */
int backend_cmd(backend_cb cb, void *priv, const char *fmt, ...);
int backend_cmd_argv(backend_cb cb, void *priv, int argc, const char **argv, const size_t *lens);
/* A command already in RESP (what the store formats itself, once). */
int backend_cmd_formatted(backend_cb cb, void *priv, const char *cmd, size_t len);
/* fn runs each time the command link comes up, before any other command can
 * be queued on it (the store loads its scripts there). */
void backend_on_up(void (*fn)(void));

/* ---- Pub/sub: one subscribed channel on a second connection ------------
 *
 * The subscriber is a link of its own (same URL, same AUTH/SELECT/PING
 * handshake, same backoff and once-per-outage logging, as "redis subscriber"
 * in the log), so a long command queue never delays a message and a
 * subscription never sits in the command FIFO or under its timeout.
 * Liveness: a dropped socket is seen at once; a Redis that stops answering
 * (hung, paused, a silently dead TCP path) is seen by re-sending SUBSCRIBE
 * for the same channel after 1 s without any traffic: Redis answers it with
 * a subscribe confirmation (a no-op for an existing subscription), and no
 * answer within the backend timeout drops and re-makes the link.
 * Messages published while the subscription is down are lost (Redis pub/sub
 * keeps nothing), which is what the resync callback is for. */

/* A message on the subscribed channel: the payload, binary-safe, valid only
 * during the call. Called on the loop thread. */
typedef void (*backend_msg_cb)(const char *msg, size_t len);
/* Called each time the subscription is (re)established, the first time
 * included: messages published while it was down were missed, so callers
 * re-check what they wait on. */
typedef void (*backend_resync_cb)(void);

/* Open the subscriber connection for channel (a C string, copied) and keep
 * it subscribed across reconnects. Call after backend_init(), once per
 * backend_init(); backend_close() ends it too. 0 ok; -1 when the backend is
 * not running, a subscription already exists, or channel is empty. Either
 * callback may be NULL. Callbacks may call any backend function, even
 * backend_close(). */
int backend_subscribe(const char *channel, backend_msg_cb on_msg, backend_resync_cb on_resync);
/* Called when a confirmed subscription is lost (socket closed, probe or
 * timeout gave up), the moment the link is marked down: backend_subscribed()
 * is already false, backend_up() tells whether the command link still
 * stands. Not called for connection attempts that never subscribed. May be
 * set before or after backend_subscribe(); NULL removes it. It may queue
 * commands (backend_cmd). */
typedef void (*backend_lost_cb)(void);
void backend_on_subscriber_lost(backend_lost_cb cb);
/* True while the SUBSCRIBE is confirmed on a live connection. */
bool backend_subscribed(void);
uint64_t backend_subscriber_outages_total(void);

/* PUBLISH on a command link, fire and forget: 0 queued, -1 when Redis is
 * down (the message is dropped; nothing is retried). */
int backend_publish(const char *channel, const char *msg, size_t len);

/* ---- Routing (Redis Cluster) -------------------------------------------
 *
 * With one server (or Sentinel's master) every command goes to it and the
 * slot is ignored. In a cluster, a command about keys goes to the master
 * of their slot (all its keys must share it), redirections are followed
 * below this API, and a master that is down fails its slots alone. */

/* A cluster is in use: batches must not mix slots. */
bool backend_clustered(void);
/* The hash slot of key in a cluster, 0 otherwise (cheap). */
unsigned backend_slot(const char *key, size_t len);
/* Some node is up (backend_up(): in a cluster, every slot's master). */
bool backend_any_up(void);
/* The link that serves slot is up. */
bool backend_slot_up(unsigned slot);
/* A formatted command about keys of slot: as backend_cmd_formatted. */
int backend_send(unsigned slot, backend_cb cb, void *priv, const char *cmd, size_t len);
/* The masters (1 without a cluster), for commands every one must see
 * (SCAN): node 0 .. backend_nodes()-1; -1 when that one is down. */
size_t backend_nodes(void);
int backend_send_node(size_t node, backend_cb cb, void *priv, const char *cmd, size_t len);
/* cb(priv) once everything sent before is answered on every node (at once
 * with one server, whose order is the order of calls): a broadcast about
 * writes on several nodes goes after them. */
void backend_barrier(void (*cb)(void *priv), void *priv);
/* Write what is queued on every link now (link_flush_writes): for the
 * store's batches, sent from a prepare callback. */
void backend_flush_writes(void);

typedef struct backend_cluster_stats {
    size_t masters, masters_up;
    uint64_t redirects, refreshes;
    uint64_t reshapes; /* cluster_reshapes_total (cluster.h) */
} backend_cluster_stats_t;
void backend_cluster_stats(backend_cluster_stats_t *out); /* zeros without a cluster */

#endif
