/* link.h: one Redis connection that stays alive, for the backend's own use
 * (backend.c, the cluster router and the sentinel client build on it; no
 * other module includes this).
 *
 * hiredis 0.14 gives us a context that dies on the first error and has no
 * timeouts. A link wraps it: it connects (names resolved off the loop),
 * authenticates and selects the db before calling itself up, tracks every
 * command it sent in its own FIFO (Redis answers in order, so the head is
 * always the oldest), enforces the timeout with one loop timer, and when
 * the context dies it reconnects with exponential backoff (100 ms .. 5 s),
 * logging each outage once when it starts and once when it ends.
 *
 * Contract for commands: each one queued gets exactly one callback, with
 * the reply or with NULL (failed, dropped, timed out). A *direct* link
 * reads and parses its replies itself (link.c, "Direct replies"); the
 * others let hiredis parse (the subscribers, whose replies hiredis must
 * route). */
#ifndef LC_LINK_H
#define LC_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "list.h"
#include "redis_url.h"
#include "reply_parse.h"

/* reply is NULL on any failure; valid only during the callback. */
typedef void (*link_cb)(void *priv, redisReply *reply);

enum link_state {
    LINK_OFF,        /* never started */
    LINK_WAIT,       /* down; the timer is the backoff before the next try */
    LINK_RESOLVING,  /* uv_getaddrinfo in flight; the timer is its deadline */
    LINK_CONNECTING, /* socket connect in progress; handshake already queued */
    LINK_HANDSHAKE,  /* socket up; AUTH/SELECT/PING replies not all in yet */
    LINK_UP,         /* commands accepted */
    LINK_CLOSED,     /* closed for good (link_init may start it again) */
};

/* Why a context is given up, which decides who frees it and how loud the
 * log is. */
enum link_loss {
    LOSS_SEEN,    /* nothing for us to free: hiredis is freeing it, or there is none */
    LOSS_DROP,    /* we drop it (timeout, ...): free it */
    LOSS_REFUSED, /* Redis answered but refused AUTH/SELECT/PING/ROLE: free it */
};

struct redis_link;

/* One command we sent and still owe exactly one callback for. */
struct link_req {
    list_node_t node; /* in link->fifo */
    struct redis_link *link;
    uint64_t sent_ms;  /* uv_now() when queued */
    uint64_t sent_ns;  /* uv_hrtime() then (luacached_redis_rtt_seconds) */
    uint64_t wire_end; /* link->queued_bytes once this command was queued */
    const char *step;  /* handshake step ("AUTH", ...); NULL for a caller's command */
    link_cb cb;
    void *priv;
    /* Kept only on links with keep_cmds (cluster nodes), for a resend
     * after a redirection: the command's bytes and how often it moved. */
    char *cmd;
    size_t cmd_len;
    unsigned redirects;
};

/* Heap-allocated: a getaddrinfo cannot be stopped once the thread pool runs
 * it, so it may finish after we gave up on it (or closed the link). */
struct link_resolve {
    uv_getaddrinfo_t req; /* first member: the callback casts back */
    struct redis_link *link;
};

struct redis_link {
    const char *name; /* "redis" in log lines */
    uv_loop_t *loop;
    redis_url_t url; /* host/port/path: where it connects now */
    char where[300]; /* host:port or socket path, for logs; never the password */
    long timeout_ms;
    enum link_state state;
    redisAsyncContext *ac; /* NULL whenever the link is not connecting or up */
    uv_timer_t *timer;     /* heap: outlives link_close() until its close callback */
    list_t fifo;           /* struct link_req, oldest (the head) first */
    /* Progress of the current context, for the timeout: a command is late
     * only after timeout_ms with no byte of any reply arriving (replies come
     * in order, so bytes arriving are the head's) and, while the head's own
     * bytes are still being written, none of those leaving either. */
    uint64_t last_io_ms;    /* uv_now() of the last such progress */
    uint64_t queued_bytes;  /* bytes ever appended to the context's write buffer */
    uint64_t written_bytes; /* bytes of them written to the socket */
    unsigned handshake_left;
    struct link_resolve *resolving; /* the lookup we still wait for, if any */
    unsigned addr_turn;             /* rotates through resolved addresses on failure */
    uint64_t backoff_ms;
    uint64_t rand_state;

    bool in_outage;
    uint64_t outage_started_ms;
    uint64_t outage_no;
    char last_err[200];

    uint64_t errors_total;
    uint64_t outages_total;

    /* Hooks, each may be NULL:
     *  - on_ready runs instead of link_up() once the handshake is answered
     *    (the hook calls link_up() when it is satisfied);
     *  - on_idle runs when the timer fires in LINK_HANDSHAKE or LINK_UP with
     *    no command pending, and owns the timer then;
     *  - on_up runs as the link comes up, before anything else can be
     *    queued on it (the store loads its scripts there);
     *  - on_lost runs when an established connection is gone;
     *  - before_connect runs before each connection attempt, and may
     *    change url.host/port (the subscriber of a cluster moves on to
     *    another node, a sentinel link to the next sentinel);
     *  - intercept sees each reply before its command's callback: true when
     *    it took the request over (a cluster redirection), then the link
     *    forgets it. */
    void (*on_ready)(struct redis_link *link);
    void (*on_idle)(struct redis_link *link);
    void (*on_up)(struct redis_link *link);
    void (*on_lost)(struct redis_link *link);
    void (*before_connect)(struct redis_link *link);
    bool (*intercept)(struct redis_link *link, struct link_req *req, const redisReply *reply);
    void *owner;           /* for the hooks */
    const char *down_note; /* what an outage means, for its log line */
    bool role_check;       /* the handshake asks ROLE and refuses a replica */
    bool keep_cmds;        /* keep each command's bytes in its request */
    bool direct;           /* reads and parses its replies itself */
    /* direct links: the bytes read and not yet answered */
    struct {
        char *buf;
        size_t len, cap;
        reply_parser_t parser;
        bool busy; /* a callback may be using buf: do not free or move it */
    } rd;
};

/* Set the link up (LINK_WAIT, not connecting yet) for url; memset first, so
 * set hooks and flags after it, then call link_connect(). */
void link_init(struct redis_link *link, const char *name, uv_loop_t *loop, const redis_url_t *url,
               long timeout_ms);
void link_connect(struct redis_link *link);
/* Pending commands get their NULL callback here, or (when called from
 * inside a hiredis callback) as soon as that callback returns. */
void link_close(struct redis_link *link);
bool link_live(const struct redis_link *link);
/* Point the link at host:port (db, credentials unchanged): dropped and
 * re-made at once if it was connected elsewhere. */
void link_retarget(struct redis_link *link, const char *host, int port);
/* Set where the next connection attempt goes (host:port over TCP), with
 * no reconnect: for before_connect hooks. */
void link_set_addr(struct redis_link *link, const char *host, int port);

/* The context is gone or must go: mark the link down, fail what is
 * pending, schedule a retry. */
void link_lost(struct redis_link *link, const char *why, enum link_loss loss);
void link_up(struct redis_link *link);
void link_timer_cb(uv_timer_t *t);

/* Write every link's queued commands now, not at the loop's next prepare
 * phase: for a caller that queues them from a prepare callback of its own
 * (see "Writes without waiting for writable" in link.c). */
void link_flush_writes(void);

/* Queue a command (link up or connecting; callers check state). 0 queued;
 * -1 not (nothing will be called). */
int link_send_formatted(struct redis_link *link, link_cb cb, void *priv, const char *cmd,
                        size_t len);
int link_send_argv(struct redis_link *link, const char *step, link_cb cb, void *priv, int argc,
                   const char **argv, const size_t *lens);
int link_sendv(struct redis_link *link, link_cb cb, void *priv, const char *fmt, va_list ap);
/* Queue a request taken over from another link's intercept on this one
 * (its kept bytes; the request's callback and count go with it). */
int link_resend(struct redis_link *link, struct link_req *req);

/* Answer a request taken over by an intercept (reply may be NULL) and
 * free it. */
void link_req_finish(struct link_req *req, redisReply *reply);

const char *link_ac_errstr(const redisAsyncContext *ac);

#endif
