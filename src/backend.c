/* backend.c: the Redis connection, hiredis async on our libuv loop.
 *
 * hiredis 0.14 gives us a context that dies on the first error and has no
 * timeouts. This file wraps it in a *link* that stays alive: it connects,
 * authenticates and selects the db before calling itself up, tracks every
 * command it sent in its own FIFO (Redis answers in order, so the head is
 * always the oldest), enforces the timeout with one loop timer, and when the
 * context dies it reconnects with exponential backoff while the rest of the
 * core fails open (backend_cmd() returns -1 at once).
 *
 * The command link reads and parses its replies itself and answers its
 * FIFO from them (see "Direct replies"); hiredis connects it and writes
 * for it, and files no callback for it. The subscriber uses hiredis
 * whole. hiredis rules this code relies on (0.14 async.c), for hiredis's
 * callbacks (the subscriber's, and connect/disconnect for both):
 *  - Every command callback runs exactly once; at teardown with a NULL reply.
 *    A NULL reply therefore always means the context is going away.
 *  - redisAsyncFree() from inside a command callback is deferred until that
 *    callback returns (REDIS_IN_CALLBACK); from the connect/disconnect
 *    callbacks it is NOT (they run outside that flag, and hiredis frees the
 *    context itself right after them). So we free only from our timer, from
 *    backend_close(), or from a command callback.
 *  - Teardown order: pending callbacks (NULL), event cleanup (our libuv
 *    adapter uv_close()s its poll handle and frees itself in the close
 *    callback), onDisconnect (only if the socket had connected), free.
 *  - A failed connect calls onConnect(REDIS_ERR), then frees the context.
 *
 * The link knows nothing about the public API. A second one, the pub/sub
 * subscriber, reuses connect, handshake, backoff and outage logging through
 * two hooks (on_ready, on_idle); see "The subscriber" below. */
#include "backend.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/sds.h>

#include "list.h"
#include "log.h"
#include "reply_arena.h"
#include "reply_parse.h"
#include "util.h"

#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     5000
#define DEFAULT_TIMEOUT_MS 1000
/* hiredis reads 16 KiB per redisAsyncHandleRead(); a wake-up reads on while
 * the socket has more, up to this many times (1 MiB), so a large reply
 * arrives at socket speed rather than 16 KiB per loop iteration, and other
 * handles still get their turn between wake-ups. */
#define READS_PER_WAKEUP 64

static_assert(sizeof(((redis_url_t *)0)->path) == sizeof(((struct sockaddr_un *)0)->sun_path),
              "redis_url_t.path must match sun_path");

/* ------------------------------------------------------------------------ */
/* libuv adapter                                                            */
/* ------------------------------------------------------------------------ */

/* Our own copy of hiredis/adapters/libuv.h, for one fix. On POLLERR libuv
 * stops the poll handle and reports status UV_EBADF; the 0.14 adapter
 * returns on any status != 0, so hiredis never learns that a connect was
 * refused or that an idle connection was reset: the link would look alive
 * until a command timed out. Like later hiredis releases, we let hiredis do
 * the read/write it asked for, which fails and reports the real error.
 * Also unlike 0.14's, a failed attach leaks nothing and leaves no hooks. */
struct link_poll {
    redisAsyncContext *ac; /* NULL once hiredis cleaned up */
    uv_poll_t handle;
    int events;
    bool direct; /* the link reads its replies itself (link_read_direct) */
};

/* Bytes that have arrived on fd and are not read yet (0 on any error). */
static int fd_unread(int fd)
{
    int n = 0;
    if (fd < 0 || ioctl(fd, FIONREAD, &n) != 0) return 0;
    return n;
}

static void link_read_progress(redisAsyncContext *ac);
static void link_write_progress(redisAsyncContext *ac, size_t written);

static void link_read_direct(redisAsyncContext *ac);

static void poll_cb(uv_poll_t *handle, int status, int events)
{
    struct link_poll *p = handle->data;
    int ev = status < 0 ? p->events : events;
    if (p->ac && p->direct && (ev & UV_READABLE)) {
        /* Before the connect completes, only hiredis's connect check (in
         * its write handler) can make sense of an event. */
        if (p->ac->c.flags & REDIS_CONNECTED)
            link_read_direct(p->ac);
        else
            ev |= UV_WRITABLE;
        ev &= ~UV_READABLE;
    }
    /* Each call may free the context (p->ac turns NULL); p lives until the
     * close callback. */
    for (int i = 0; i < READS_PER_WAKEUP && p->ac && (ev & UV_READABLE); i++) {
        link_read_progress(p->ac);
        redisAsyncHandleRead(p->ac);
        if (!p->ac || fd_unread(p->ac->c.fd) <= 0) break;
    }
    if (p->ac && (ev & UV_WRITABLE)) {
        size_t before = sdslen(p->ac->c.obuf);
        redisAsyncHandleWrite(p->ac);
        /* A write never runs callbacks, so the context is still here. */
        if (p->ac) link_write_progress(p->ac, before - sdslen(p->ac->c.obuf));
    }
}

static void poll_update(struct link_poll *p, int events)
{
    p->events = events;
    if (events)
        uv_poll_start(&p->handle, events, poll_cb);
    else
        uv_poll_stop(&p->handle);
}

static void poll_add_read(void *priv)
{
    struct link_poll *p = priv;
    poll_update(p, p->events | UV_READABLE);
}

static void poll_del_read(void *priv)
{
    struct link_poll *p = priv;
    poll_update(p, p->events & ~UV_READABLE);
}

static void poll_add_write(void *priv)
{
    struct link_poll *p = priv;
    poll_update(p, p->events | UV_WRITABLE);
}

static void poll_del_write(void *priv)
{
    struct link_poll *p = priv;
    poll_update(p, p->events & ~UV_WRITABLE);
}

static void poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static void poll_cleanup(void *priv)
{
    struct link_poll *p = priv;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->handle, poll_closed);
}

static int poll_attach(redisAsyncContext *ac, uv_loop_t *loop, bool direct)
{
    if (ac->ev.data) return -1;
    struct link_poll *p = xcalloc(1, sizeof(*p));
    if (uv_poll_init_socket(loop, &p->handle, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    p->handle.data = p;
    p->ac = ac;
    p->direct = direct;
    ac->ev.data = p;
    ac->ev.addRead = poll_add_read;
    ac->ev.delRead = poll_del_read;
    ac->ev.addWrite = poll_add_write;
    ac->ev.delWrite = poll_del_write;
    ac->ev.cleanup = poll_cleanup;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The link: one hiredis context at a time, re-made for as long as we run   */
/* ------------------------------------------------------------------------ */

enum link_state {
    LINK_OFF,        /* never started */
    LINK_WAIT,       /* down; the timer is the backoff before the next try */
    LINK_RESOLVING,  /* uv_getaddrinfo in flight; the timer is its deadline */
    LINK_CONNECTING, /* socket connect in progress; handshake already queued */
    LINK_HANDSHAKE,  /* socket up; AUTH/SELECT/PING replies not all in yet */
    LINK_UP,         /* commands accepted */
    LINK_CLOSED,     /* closed for good */
};

struct redis_link;

/* One command we sent and still owe exactly one callback for. */
struct link_req {
    list_node_t node; /* in link->fifo */
    struct redis_link *link;
    uint64_t sent_ms;  /* uv_now() when queued */
    uint64_t wire_end; /* link->queued_bytes once this command was queued */
    const char *step;  /* handshake step ("AUTH", ...); NULL for a caller's command */
    backend_cb cb;
    void *priv;
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
    redis_url_t url;
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

    /* Hooks for a link that does more than commands (the subscriber), NULL
     * for the command link. on_ready runs instead of link_up() once the
     * handshake is answered (the hook calls link_up() when it is satisfied);
     * on_idle runs when the timer fires in LINK_HANDSHAKE or LINK_UP with no
     * command pending, and owns the timer then. */
    void (*on_ready)(struct redis_link *link);
    void (*on_idle)(struct redis_link *link);
    const char *down_note; /* what an outage means, for its log line */
    /* The command link reads and parses its replies itself (see "Direct
     * replies" below); hiredis only connects it and writes for it. */
    bool direct;
    void (*on_lost)(void); /* an established connection is gone (the subscriber's hook) */
};

static void link_connect(struct redis_link *link);
static void link_timer_cb(uv_timer_t *t);

static void free_handle_cb(uv_handle_t *h)
{
    free(h);
}

static bool link_live(const struct redis_link *link)
{
    return link->state != LINK_OFF && link->state != LINK_CLOSED;
}

/* The oldest command still owed a reply, or NULL. */
static struct link_req *fifo_head(const struct redis_link *link)
{
    return list_first_entry(&link->fifo, struct link_req, node);
}

static void link_read_progress(redisAsyncContext *ac)
{
    struct redis_link *link = ac->data;
    link->last_io_ms = uv_now(link->loop);
}

/* Writing counts only while the head command is not all out: once it is,
 * a Redis that reads but never answers (hung, paused) must still time out. */
static void link_write_progress(redisAsyncContext *ac, size_t written)
{
    struct redis_link *link = ac->data;
    if (written == 0) return;
    if (fifo_head(link) && link->written_bytes < fifo_head(link)->wire_end)
        link->last_io_ms = uv_now(link->loop);
    link->written_bytes += written;
}

/* Is there progress the poll phase has not seen yet: reply bytes unread in
 * the socket, or the head command not all written while the socket would
 * take more? Then a late timer is our loop's delay, not Redis's. */
static bool link_progress_pending(const struct redis_link *link)
{
    if (!link->ac || link->ac->c.fd < 0) return false;
    if (fd_unread(link->ac->c.fd) > 0) return true;
    if (!fifo_head(link) || link->written_bytes >= fifo_head(link)->wire_end) return false;
    struct pollfd pfd = {.fd = link->ac->c.fd, .events = POLLOUT};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT);
}

static const char *ac_errstr(const redisAsyncContext *ac)
{
    return ac->c.errstr[0] ? ac->c.errstr : "connection lost";
}

/* xorshift64, for backoff jitter only. */
static uint64_t link_rand(struct redis_link *link)
{
    uint64_t x = link->rand_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return link->rand_state = x;
}

static void fifo_push(struct redis_link *link, struct link_req *req)
{
    list_push_back(&link->fifo, &req->node);
}

static void fifo_unlink(struct redis_link *link, struct link_req *req)
{
    LC_UNUSED(link);
    list_remove(&req->node);
}

static void direct_reset(void);
static void link_fail_pending(struct redis_link *link);

/* Why a context is given up, which decides who frees it and how loud the
 * log is. */
enum link_loss {
    LOSS_SEEN,    /* nothing for us to free: hiredis is freeing it, or there is none */
    LOSS_DROP,    /* we drop it (timeout, ...): free it */
    LOSS_REFUSED, /* Redis answered but refused AUTH/SELECT/PING: free it */
};

/* The context is gone or must go. Mark the link down *first*, so callbacks
 * run by the teardown see backend_up() false and cannot queue on a dying
 * context; then count, log and schedule the next attempt. */
static void link_lost(struct redis_link *link, const char *why, enum link_loss loss)
{
    redisAsyncContext *ac = link->ac;
    bool was_up = link->state == LINK_UP;

    link->ac = NULL;
    link->handshake_left = 0;
    link->state = LINK_WAIT;
    /* Counted either way: a connection that was up and is lost, or an attempt
     * to make one (the first, or a reconnect) that failed. */
    link->errors_total++;
    if (!was_up) link->addr_turn++; /* a host with several addresses: try the next one */

    uint64_t delay = link->backoff_ms;
    link->backoff_ms = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
    /* Up to 25% jitter: instances that lost the same Redis together should
     * not all come back in the same millisecond. */
    delay -= link_rand(link) % (delay / 4 + 1);

    if (!link->in_outage) {
        link->in_outage = true;
        link->outage_no = ++link->outages_total;
        link->outage_started_ms = uv_now(link->loop);
        log_warn("%s unreachable at %s: %s; %s (outage #%llu)", link->name, link->where, why,
                 link->down_note ? link->down_note : "serving without it",
                 (unsigned long long)link->outage_no);
    } else if (loss == LOSS_REFUSED && strcmp(why, link->last_err) != 0) {
        /* One line per outage, except this: Redis is back but will not take
         * us (say, a new password). Retries cannot fix that; a person must. */
        log_warn("%s at %s refuses us: %s (outage #%llu)", link->name, link->where, why,
                 (unsigned long long)link->outage_no);
    } else {
        log_debug("%s: connecting to %s failed: %s; next try in %llu ms", link->name, link->where,
                  why, (unsigned long long)delay);
    }
    snprintf(link->last_err, sizeof(link->last_err), "%s", why);

    uv_timer_start(link->timer, link_timer_cb, delay, 0);
    if (was_up && link->on_lost) link->on_lost();
    if (link->direct) direct_reset();
    /* Last: the NULL callbacks this runs may call anything, even close. */
    if (loss != LOSS_SEEN && ac) redisAsyncFree(ac);
    if (link->direct) link_fail_pending(link);
}

static void (*data_on_up)(void);
static struct redis_link data_link;

static void link_up(struct redis_link *link)
{
    link->state = LINK_UP;
    /* First thing, so what it sends goes ahead of every other command. */
    if (link == &data_link && data_on_up) data_on_up();
    link->backoff_ms = BACKOFF_MIN_MS;
    link->last_err[0] = '\0';
    if (link->in_outage) {
        link->in_outage = false;
        /* warn, like the line that opened the outage, so both show at any level. */
        log_warn("%s back after %llu ms (outage #%llu)", link->name,
                 (unsigned long long)(uv_now(link->loop) - link->outage_started_ms),
                 (unsigned long long)link->outage_no);
    } else {
        log_info("%s connected at %s", link->name, link->where);
    }
}

/* The timer watches only the head, the oldest command. It is lazy: armed
 * when idle, and when it fires for a head that has since been answered it
 * re-arms for the new head. So a busy link costs one timer operation per
 * timeout period, not one per command. */
static void link_arm(struct redis_link *link)
{
    if (!fifo_head(link) || uv_is_active((uv_handle_t *)link->timer)) return;
    uint64_t due = fifo_head(link)->sent_ms + (uint64_t)link->timeout_ms;
    uint64_t now = uv_now(link->loop);
    uv_timer_start(link->timer, link_timer_cb, due > now ? due - now : 0, 0);
}

static void link_handshake_reply(struct redis_link *link, redisAsyncContext *ac, const char *step,
                                 redisReply *reply)
{
    if (!reply || ac != link->ac) return; /* the teardown already took the link down */
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[256];
        snprintf(why, sizeof(why), "%s failed: %.*s", step,
                 (int)(reply->len > 200 ? 200 : reply->len), reply->str);
        link_lost(link, why, LOSS_REFUSED); /* in a hiredis callback: it defers the free */
        return;
    }
    if (--link->handshake_left > 0) return;
    if (link->on_ready)
        link->on_ready(link);
    else
        link_up(link);
}

/* The one callback hiredis knows: it settles our FIFO entry and calls the
 * owner exactly once. */
static void link_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct link_req *req = privdata;
    struct redis_link *link = req->link;
    redisReply *reply = r;
    const char *step = req->step;
    backend_cb cb = req->cb;
    void *priv = req->priv;

    fifo_unlink(link, req);
    free(req);
    /* NULL only comes from a teardown. If it is not one we started, this is
     * the first we hear of it (onDisconnect comes after these callbacks). */
    if (!reply && ac == link->ac) link_lost(link, ac_errstr(ac), LOSS_SEEN);
    if (step) {
        link_handshake_reply(link, ac, step, reply);
        return;
    }
    if (!reply && link->state != LINK_CLOSED) link->errors_total++;
    if (cb) cb(priv, reply);
}

static void link_on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_link *link = ac->data;
    if (ac != link->ac) return;
    if (status != REDIS_OK) {
        link_lost(link, ac_errstr(ac), LOSS_SEEN); /* hiredis frees ac after we return */
        return;
    }
    link->state = LINK_HANDSHAKE;
}

static void link_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_link *link = ac->data;
    if (ac != link->ac) return; /* we dropped it ourselves and know already */
    link_lost(link, status == REDIS_OK ? "connection closed" : ac_errstr(ac), LOSS_SEEN);
}

/* obuf_before: the write buffer's length before the command was queued. */
static void link_track(struct redis_link *link, struct link_req *req, size_t obuf_before)
{
    req->sent_ms = uv_now(link->loop);
    link->queued_bytes += sdslen(link->ac->c.obuf) - obuf_before;
    req->wire_end = link->queued_bytes;
    fifo_push(link, req);
    link_arm(link);
}

static struct link_req *req_new(struct redis_link *link, const char *step, backend_cb cb,
                                void *priv)
{
    struct link_req *req = xmalloc(sizeof(*req));
    *req = (struct link_req){.link = link, .step = step, .cb = cb, .priv = priv};
    return req;
}

static int link_write(struct redis_link *link, struct link_req *req, const char *cmd, size_t len);

/* A command hiredis formatted (n bytes, or n < 0 when it could not) goes
 * out through our own write path; the formatted copy is freed either way. */
static int link_write_formatted(struct redis_link *link, struct link_req *req, char *cmd, int n)
{
    if (n < 0) {
        free(req);
        return -1;
    }
    int rc = link_write(link, req, cmd, (size_t)n);
    redisFreeCommand(cmd);
    return rc;
}

static int link_send_argv(struct redis_link *link, const char *step, backend_cb cb, void *priv,
                          int argc, const char **argv, const size_t *lens)
{
    struct link_req *req = req_new(link, step, cb, priv);
    if (link->direct) {
        char *cmd = NULL;
        int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
        return link_write_formatted(link, req, cmd, n);
    }
    size_t obuf = sdslen(link->ac->c.obuf);
    if (redisAsyncCommandArgv(link->ac, link_reply_cb, req, argc, argv, lens) != REDIS_OK) {
        free(req);
        return -1;
    }
    link_track(link, req, obuf);
    return 0;
}

static int link_sendv(struct redis_link *link, backend_cb cb, void *priv, const char *fmt,
                      va_list ap)
{
    struct link_req *req = req_new(link, NULL, cb, priv);
    if (link->direct) {
        char *cmd = NULL;
        int n = redisvFormatCommand(&cmd, fmt, ap);
        return link_write_formatted(link, req, cmd, n);
    }
    size_t obuf = sdslen(link->ac->c.obuf);
    if (redisvAsyncCommand(link->ac, link_reply_cb, req, fmt, ap) != REDIS_OK) {
        free(req);
        return -1;
    }
    link_track(link, req, obuf);
    return 0;
}

/* Queued before the socket even connects, so the whole handshake is one
 * write and one round trip. PING goes last even when AUTH/SELECT went
 * before it: it proves Redis serves commands (not -LOADING, not -NOAUTH)
 * before we call the link up, and its deadline doubles as the connect
 * timeout. */
static int link_handshake(struct redis_link *link)
{
    const redis_url_t *u = &link->url;
    link->handshake_left = 0;
    if (u->pass[0]) {
        const char *argv[3] = {"AUTH", u->user, u->pass};
        size_t lens[3] = {4, strlen(u->user), strlen(u->pass)};
        int argc = 3;
        if (!u->user[0]) { /* Redis < 6 style: AUTH password */
            argv[1] = u->pass;
            lens[1] = lens[2];
            argc = 2;
        }
        if (link_send_argv(link, "AUTH", NULL, NULL, argc, argv, lens) != 0) return -1;
        link->handshake_left++;
    }
    if (u->db) {
        char db[16];
        int n = snprintf(db, sizeof(db), "%d", u->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, (size_t)n};
        if (link_send_argv(link, "SELECT", NULL, NULL, 2, argv, lens) != 0) return -1;
        link->handshake_left++;
    }
    const char *argv[1] = {"PING"};
    size_t lens[1] = {4};
    if (link_send_argv(link, "PING", NULL, NULL, 1, argv, lens) != 0) return -1;
    link->handshake_left++;
    return 0;
}

/* Adopt a fresh context from redisAsyncConnect*(). */
static void link_start(struct redis_link *link, redisAsyncContext *ac)
{
    if (!ac) {
        link_lost(link, "out of memory", LOSS_SEEN);
        return;
    }
    if (ac->err) { /* refused at once, typically: a missing unix socket */
        char why[sizeof(ac->c.errstr)];
        snprintf(why, sizeof(why), "%s", ac_errstr(ac));
        redisAsyncFree(ac);
        link_lost(link, why, LOSS_SEEN);
        return;
    }
    ac->data = link;
    /* hiredis parses the subscriber's replies: build them in one arena
     * each (the command link parses its own, below). */
    if (!link->direct) ac->c.reader->fn = &reply_arena_fns;
    if (poll_attach(ac, link->loop, link->direct) != 0) {
        redisAsyncFree(ac);
        link_lost(link, "cannot watch the socket", LOSS_SEEN);
        return;
    }
    redisAsyncSetConnectCallback(ac, link_on_connect);
    redisAsyncSetDisconnectCallback(ac, link_on_disconnect);
    link->ac = ac;
    link->last_io_ms = 0;
    link->queued_bytes = link->written_bytes = 0;
    link->state = LINK_CONNECTING;
    log_debug("%s: connecting to %s", link->name, link->where);
    if (link_handshake(link) != 0) link_lost(link, "cannot queue the handshake", LOSS_DROP);
}

/* Lookups given up on (timed out, closed) that still occupy a thread of
 * libuv's pool: a hung DNS server must not pile them up across retries
 * until the pool (shared with hot reload's file reads) is full. */
static unsigned abandoned_lookups;

static void abandon_lookup(struct redis_link *link)
{
    /* uv_cancel works only while the lookup is queued; once it runs, its
     * callback comes later and finds itself unwanted. */
    if (uv_cancel((uv_req_t *)&link->resolving->req) != 0) abandoned_lookups++;
    link->resolving = NULL;
}

static void link_resolved_cb(uv_getaddrinfo_t *greq, int status, struct addrinfo *res)
{
    struct link_resolve *r = (struct link_resolve *)greq;
    struct redis_link *link = r->link;
    bool wanted = link->resolving == r;
    free(r);
    if (!wanted) { /* timed out or closed meanwhile */
        if (status != UV_ECANCELED && abandoned_lookups > 0) abandoned_lookups--;
        uv_freeaddrinfo(res);
        return;
    }
    link->resolving = NULL;
    uv_timer_stop(link->timer);

    char why[sizeof(link->url.host) + 64];
    if (status != 0) {
        snprintf(why, sizeof(why), "cannot resolve %s: %s", link->url.host, uv_strerror(status));
        link_lost(link, why, LOSS_SEEN);
        return;
    }
    unsigned n = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) n++;
    char ip[INET6_ADDRSTRLEN] = "";
    unsigned want = n ? link->addr_turn % n : 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        if (want-- > 0) continue;
        if (ai->ai_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, ip, sizeof(ip));
        else
            uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, ip, sizeof(ip));
        break;
    }
    uv_freeaddrinfo(res);
    if (!ip[0]) {
        snprintf(why, sizeof(why), "%s has no IP address", link->url.host);
        link_lost(link, why, LOSS_SEEN);
        return;
    }
    link_start(link, redisAsyncConnect(ip, link->url.port));
}

/* hiredis resolves names with a blocking getaddrinfo(); a slow DNS server
 * would stall the whole loop on every reconnect. So names are resolved on
 * the thread pool and hiredis only ever sees an IP literal. */
static void link_resolve(struct redis_link *link)
{
    if (abandoned_lookups > 0) {
        char why[sizeof(link->url.host) + 64];
        snprintf(why, sizeof(why), "an earlier lookup of %s has not returned yet", link->url.host);
        link_lost(link, why, LOSS_SEEN);
        return;
    }
    struct link_resolve *r = xmalloc(sizeof(*r));
    r->link = link;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    int rc = uv_getaddrinfo(link->loop, &r->req, link_resolved_cb, link->url.host, NULL, &hints);
    if (rc != 0) {
        free(r);
        char why[sizeof(link->url.host) + 64];
        snprintf(why, sizeof(why), "cannot resolve %s: %s", link->url.host, uv_strerror(rc));
        link_lost(link, why, LOSS_SEEN);
        return;
    }
    link->resolving = r;
    link->state = LINK_RESOLVING;
    uv_timer_start(link->timer, link_timer_cb, (uint64_t)link->timeout_ms, 0);
}

static void link_connect(struct redis_link *link)
{
    const redis_url_t *u = &link->url;
    if (u->is_unix) {
        link_start(link, redisAsyncConnectUnix(u->path));
        return;
    }
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(AF_INET, u->host, addr) == 1 || inet_pton(AF_INET6, u->host, addr) == 1)
        link_start(link, redisAsyncConnect(u->host, u->port));
    else
        link_resolve(link);
}

static void link_timer_cb(uv_timer_t *t)
{
    struct redis_link *link = t->data;
    char why[128];

    switch (link->state) {
    case LINK_WAIT:
        link_connect(link);
        return;
    case LINK_RESOLVING:
        abandon_lookup(link);
        snprintf(why, sizeof(why), "resolving the host took over %ld ms", link->timeout_ms);
        link_lost(link, why, LOSS_SEEN);
        return;
    case LINK_CONNECTING:
    case LINK_HANDSHAKE:
    case LINK_UP:
        break;
    default:
        return;
    }

    struct link_req *head = fifo_head(link);
    if (!head) {
        if (link->on_idle && link->state != LINK_CONNECTING) link->on_idle(link);
        return;
    }
    /* Measured from the head's sending or the last progress, whichever is
     * later: a large reply still arriving is not a dead Redis. */
    uint64_t since = head->sent_ms > link->last_io_ms ? head->sent_ms : link->last_io_ms;
    uint64_t due = since + (uint64_t)link->timeout_ms;
    uint64_t now = uv_now(link->loop);
    if (now < due) {
        uv_timer_start(t, link_timer_cb, due - now, 0);
        return;
    }
    /* Timers run before the poll phase: after the loop was busy elsewhere
     * (say, formatting a large command), progress may be waiting for us. */
    if (link_progress_pending(link)) {
        link->last_io_ms = now;
        uv_timer_start(t, link_timer_cb, (uint64_t)link->timeout_ms, 0);
        return;
    }
    /* No byte for the whole timeout while a command waits: the link is
     * unusable (or Redis is stuck). Replies come in order, so one command
     * cannot be given up alone: drop the link, which fails every pending
     * command, and start over. */
    if (link->state == LINK_CONNECTING)
        snprintf(why, sizeof(why), "connect timed out after %ld ms", link->timeout_ms);
    else if (head->step)
        snprintf(why, sizeof(why), "no reply to %s within %ld ms", head->step, link->timeout_ms);
    else
        snprintf(why, sizeof(why), "no reply within %ld ms", link->timeout_ms);
    link_lost(link, why, LOSS_DROP);
}

static void link_init(struct redis_link *link, const char *name, uv_loop_t *loop,
                      const redis_url_t *url, long timeout_ms)
{
    memset(link, 0, sizeof(*link));
    link->name = name;
    link->loop = loop;
    link->url = *url;
    link->timeout_ms = timeout_ms;
    link->backoff_ms = BACKOFF_MIN_MS;
    link->rand_state = (uv_hrtime() ^ ((uint64_t)getpid() << 32)) | 1;
    if (url->is_unix)
        snprintf(link->where, sizeof(link->where), "%s", url->path);
    else if (strchr(url->host, ':'))
        snprintf(link->where, sizeof(link->where), "[%s]:%d", url->host, url->port);
    else
        snprintf(link->where, sizeof(link->where), "%s:%d", url->host, url->port);
    link->timer = xmalloc(sizeof(*link->timer));
    uv_timer_init(loop, link->timer);
    link->timer->data = link;
    link->state = LINK_WAIT;
}

/* Pending commands get their NULL callback here, or (when called from inside
 * a hiredis callback) as soon as that callback returns. */
static void link_close(struct redis_link *link)
{
    if (!link_live(link)) return;
    redisAsyncContext *ac = link->ac;
    link->state = LINK_CLOSED;
    link->ac = NULL;
    if (link->resolving) {
        abandon_lookup(link);
    }
    uv_timer_stop(link->timer);
    uv_close((uv_handle_t *)link->timer, free_handle_cb);
    link->timer = NULL;
    if (link->direct) direct_reset();
    if (ac) redisAsyncFree(ac);
    if (link->direct) link_fail_pending(link);
}

/* ------------------------------------------------------------------------ */
/* Direct replies: the command link reads and parses its own                */
/* ------------------------------------------------------------------------ */

/* hiredis's reader copies each read into its buffer, moves the rest of the
 * buffer to the front after every reply and allocates every element: on a
 * Redis-backed hit that was most of our cost. So the command link uses
 * hiredis only to connect and to write: commands are appended to its
 * output buffer (c.obuf, which redisAsyncHandleWrite() sends), no callback
 * is filed with it (its reply queue stays empty), and replies are read
 * here into one buffer, parsed in place (reply_parse.c) and matched to our
 * FIFO, whose head is always the command answered. The contract does not
 * change: every command gets exactly one callback, with NULL when the link
 * is lost (link_fail_pending). Unlike inside a hiredis callback, a context
 * freed during one of ours is freed at once: after each callback the loop
 * checks that its context is still the link's. */

#define DIRECT_READ (16 * 1024)   /* room for each read */
#define DIRECT_KEEP (1024 * 1024) /* a larger buffer is released once empty */

static struct {
    char *buf;
    size_t len, cap;
    reply_parser_t parser;
    bool busy; /* a callback may be using buf: do not free or move it */
} rd;

/* The connection is gone: its unparsed bytes with it. */
static void direct_reset(void)
{
    rd.len = 0;
    reply_parser_reset(&rd.parser);
}

static void direct_release(void)
{
    if (rd.busy) return;
    free(rd.buf);
    reply_parser_free(&rd.parser);
    memset(&rd, 0, sizeof(rd));
}

static int link_write(struct redis_link *link, struct link_req *req, const char *cmd, size_t len)
{
    redisAsyncContext *ac = link->ac;
    if (ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) {
        free(req);
        return -1;
    }
    size_t before = sdslen(ac->c.obuf);
    sds grown = sdscatlen(ac->c.obuf, cmd, len);
    if (!grown) {
        log_error("out of memory");
        abort();
    }
    ac->c.obuf = grown;
    ac->ev.addWrite(ac->ev.data);
    link_track(link, req, before);
    return 0;
}

/* Every command still owed a reply gets its NULL callback, oldest first.
 * Taken off the link first: a callback may queue on a new link. */
static void link_fail_pending(struct redis_link *link)
{
    list_t pending;
    list_init(&pending);
    list_splice_back(&pending, &link->fifo);
    while (!list_empty(&pending)) {
        struct link_req *req = list_first_entry(&pending, struct link_req, node);
        list_remove(&req->node);
        backend_cb cb = req->cb;
        void *priv = req->priv;
        bool step = req->step != NULL;
        free(req);
        if (step) continue; /* a handshake reply: nobody waits for it */
        if (link->state != LINK_CLOSED) link->errors_total++;
        if (cb) cb(priv, NULL);
    }
}

/* Answer the FIFO from the complete replies in rd.buf. 0: go on reading;
 * -1: the context went away meanwhile. */
static int direct_dispatch(struct redis_link *link, redisAsyncContext *ac)
{
    size_t off = 0;
    while (off < rd.len) {
        size_t used = 0;
        redisReply *reply = NULL;
        int rc = reply_parse(&rd.parser, rd.buf + off, rd.len - off, &used, &reply);
        if (rc == 0) break;
        if (rc < 0) {
            link_lost(link, rd.parser.err, LOSS_DROP);
            return -1;
        }
        off += used;
        struct link_req *req = fifo_head(link);
        if (!req) {
            /* Redis speaks unasked only to say why it drops us (say, max
             * clients reached), as hiredis also takes it. */
            link_lost(link,
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "a reply nothing asked for",
                      LOSS_DROP);
            return -1;
        }
        const char *step = req->step;
        backend_cb cb = req->cb;
        void *priv = req->priv;
        fifo_unlink(link, req);
        free(req);
        if (step)
            link_handshake_reply(link, ac, step, reply);
        else if (cb)
            cb(priv, reply);
        if (link->ac != ac) return -1;
    }
    /* What is left is the start of a reply: to the front (its scan state
     * is relative to its start). */
    if (off) {
        memmove(rd.buf, rd.buf + off, rd.len - off);
        rd.len -= off;
    }
    return 0;
}

static void link_read_direct(redisAsyncContext *ac)
{
    struct redis_link *link = ac->data;
    rd.busy = true;
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        if (rd.cap - rd.len < DIRECT_READ) {
            size_t cap = rd.cap ? rd.cap : DIRECT_READ;
            while (cap - rd.len < DIRECT_READ)
                cap *= 2;
            rd.buf = xrealloc(rd.buf, cap);
            rd.cap = cap;
        }
        size_t room = rd.cap - rd.len;
        ssize_t n = read(ac->c.fd, rd.buf + rd.len, room);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) {
            /* hiredis's texts, as when it read for this link */
            link_lost(link, n == 0 ? "Server closed the connection" : strerror(errno), LOSS_DROP);
            break;
        }
        link->last_io_ms = uv_now(link->loop);
        rd.len += (size_t)n;
        if (direct_dispatch(link, ac) != 0 || (size_t)n < room) break;
    }
    rd.busy = false;
    if (!link_live(link)) {
        direct_release();
    } else if (rd.len == 0 && rd.cap > DIRECT_KEEP) {
        free(rd.buf); /* one huge reply must not pin its memory */
        rd.buf = NULL;
        rd.cap = 0;
    }
}

/* ------------------------------------------------------------------------ */
/* The subscriber: a second link that stays SUBSCRIBEd to one channel       */
/* ------------------------------------------------------------------------ */

/* hiredis 0.14 and pub/sub, as this code relies on it:
 *  - SUBSCRIBE does not go through the reply queue: redisAsyncCommand()
 *    files the callback under the channel name and calls it for every
 *    ["subscribe", ch, n] and ["message", ch, payload] on that channel, and
 *    once with NULL at teardown. A second SUBSCRIBE of the same channel
 *    replaces the entry (same callback) and gets its own confirmation.
 *  - Commands queued before SUBSCRIBE (our AUTH/SELECT/PING handshake) are
 *    answered through the normal queue first, so the handshake runs as on
 *    the command link and SUBSCRIBE is sent only once it is answered.
 *  - Other commands on a subscribed context are NOT usable: a PING's
 *    ["pong", ""] reply is routed as if it were a pattern message and its
 *    callback only ever runs at teardown. Hence the liveness probe is a
 *    repeated SUBSCRIBE, whose confirmation hiredis routes to us properly.
 *  - An error reply to SUBSCRIBE (say -NOPERM from an ACL) makes hiredis
 *    drop the connection with the error text in errstr: an outage, retried.
 *
 * States: the link is LINK_HANDSHAKE from the socket connect until Redis
 * confirms the SUBSCRIBE, and only then LINK_UP (so a Redis that takes AUTH
 * but refuses the subscription is one outage, not a flapping link). The
 * timer then belongs to the probe: one SUBSCRIBE in flight at most, sent
 * after SUB_PROBE_MS without any traffic, due within the backend timeout. */

#define SUB_PROBE_MS 1000

static struct redis_link sub_link;
static backend_lost_cb sub_lost_cb; /* survives backend_close(), like a setting */

static struct {
    char *channel; /* NULL when there is no subscription */
    size_t channel_len;
    backend_msg_cb on_msg;
    backend_resync_cb on_resync;
    bool probe_out;         /* a SUBSCRIBE awaits its confirmation */
    uint64_t probe_sent_ms; /* uv_now() when it was sent */
    uint64_t last_seen_ms;  /* uv_now() of the last reply or message */
} sub;

static void sub_reply_cb(redisAsyncContext *ac, void *r, void *privdata);

static void sub_send(struct redis_link *link)
{
    const char *argv[2] = {"SUBSCRIBE", sub.channel};
    size_t lens[2] = {9, sub.channel_len};
    if (redisAsyncCommandArgv(link->ac, sub_reply_cb, link, 2, argv, lens) != REDIS_OK) {
        link_lost(link, "cannot queue SUBSCRIBE", LOSS_DROP);
        return;
    }
    sub.probe_out = true;
    sub.probe_sent_ms = uv_now(link->loop);
    uv_timer_start(link->timer, link_timer_cb, (uint64_t)link->timeout_ms, 0);
}

/* The handshake is answered: subscribe. Runs inside a hiredis callback. */
static void sub_on_ready(struct redis_link *link)
{
    sub.probe_out = false;
    sub_send(link);
}

static void sub_on_idle(struct redis_link *link)
{
    uint64_t now = uv_now(link->loop);
    if (sub.probe_out) {
        uint64_t due = sub.probe_sent_ms + (uint64_t)link->timeout_ms;
        if (now < due) {
            uv_timer_start(link->timer, link_timer_cb, due - now, 0);
            return;
        }
        char why[128];
        snprintf(why, sizeof(why), "no reply to SUBSCRIBE within %ld ms", link->timeout_ms);
        link_lost(link, why, LOSS_DROP);
        return;
    }
    uint64_t due = sub.last_seen_ms + SUB_PROBE_MS;
    if (now < due) {
        uv_timer_start(link->timer, link_timer_cb, due - now, 0);
        return;
    }
    sub_send(link);
}

/* Every confirmation and message of our channel, and NULL at teardown. The
 * user's callbacks run last and may do anything, even backend_close(). */
static void sub_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    struct redis_link *link = privdata;
    redisReply *reply = r;
    if (ac != link->ac) return; /* a context we have already given up */
    if (!reply) {               /* a teardown we did not start */
        link_lost(link, ac_errstr(ac), LOSS_SEEN);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    sub.last_seen_ms = uv_now(link->loop);
    const redisReply *kind = reply->element[0];
    if (kind->len == 7 && strncasecmp(kind->str, "message", 7) == 0) {
        const redisReply *payload = reply->element[2];
        if (payload->type == REDIS_REPLY_STRING && sub.on_msg)
            sub.on_msg(payload->str, payload->len);
        return;
    }
    if (kind->len == 9 && strncasecmp(kind->str, "subscribe", 9) == 0) {
        sub.probe_out = false;
        if (link->state == LINK_UP) return; /* a liveness probe answered */
        link_up(link);
        log_debug("%s: subscribed to '%.*s'", link->name, (int)sub.channel_len, sub.channel);
        /* The timer ran the SUBSCRIBE deadline; now it waits for silence. */
        uv_timer_start(link->timer, link_timer_cb, SUB_PROBE_MS, 0);
        if (sub.on_resync) sub.on_resync();
    }
}

/* ------------------------------------------------------------------------ */
/* Public API: the data link and the subscriber                             */
/* ------------------------------------------------------------------------ */

int backend_init(uv_loop_t *loop, const backend_conf_t *conf, char *err, size_t errlen)
{
    redis_url_t url;
    if (link_live(&data_link) || !list_empty(&data_link.fifo)) {
        snprintf(err, errlen, "backend: already running (backend_close() first)");
        return -1;
    }
    if (redis_url_parse(conf->url, &url, err, errlen) != 0) return -1;
    if (url.tls) {
        /* hiredis has TLS from 1.0.0 on (libhiredis-ssl); Debian 12 ships 0.14.1. */
        snprintf(err, errlen,
                 "--redis: TLS (rediss://) needs hiredis 1.0.0 or later built with SSL; this "
                 "build uses hiredis %d.%d.%d, which has none. Reach Redis over a trusted network, "
                 "a unix socket, or a TLS tunnel (stunnel, spiped) on localhost",
                 HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
        return -1;
    }
    if (url.mode != REDIS_MODE_SINGLE) {
        snprintf(err, errlen, "--redis: %s URLs are not supported by this build yet",
                 redis_mode_name(url.mode));
        return -1;
    }
    long timeout = conf->timeout_ms > 0 ? conf->timeout_ms : DEFAULT_TIMEOUT_MS;
    link_init(&data_link, "redis", loop, &url, timeout);
    data_link.direct = true;
    link_connect(&data_link);
    return 0;
}

void backend_close(void)
{
    link_close(&sub_link);
    free(sub.channel);
    memset(&sub, 0, sizeof(sub));
    link_close(&data_link);
    direct_release(); /* unless a callback of ours is still running: then after it */
}

bool backend_up(void)
{
    return data_link.state == LINK_UP;
}

uint64_t backend_errors_total(void)
{
    return data_link.errors_total;
}

uint64_t backend_outages_total(void)
{
    return data_link.outages_total;
}

int backend_cmd(backend_cb cb, void *priv, const char *fmt, ...)
{
    if (data_link.state != LINK_UP) return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = link_sendv(&data_link, cb, priv, fmt, ap);
    va_end(ap);
    return rc;
}

int backend_cmd_formatted(backend_cb cb, void *priv, const char *cmd, size_t len)
{
    if (data_link.state != LINK_UP) return -1;
    return link_write(&data_link, req_new(&data_link, NULL, cb, priv), cmd, len);
}

void backend_on_up(void (*fn)(void))
{
    data_on_up = fn;
}

int backend_cmd_argv(backend_cb cb, void *priv, int argc, const char **argv, const size_t *lens)
{
    if (data_link.state != LINK_UP) return -1;
    return link_send_argv(&data_link, NULL, cb, priv, argc, argv, lens);
}

int backend_subscribe(const char *channel, backend_msg_cb on_msg, backend_resync_cb on_resync)
{
    if (!link_live(&data_link) || link_live(&sub_link) || !channel || !channel[0]) return -1;
    sub.channel_len = strlen(channel);
    sub.channel = xmemdup(channel, sub.channel_len);
    sub.on_msg = on_msg;
    sub.on_resync = on_resync;
    sub.probe_out = false;
    link_init(&sub_link, "redis subscriber", data_link.loop, &data_link.url, data_link.timeout_ms);
    sub_link.on_ready = sub_on_ready;
    sub_link.on_idle = sub_on_idle;
    sub_link.down_note = "messages on its channel are missed until it is back";
    sub_link.on_lost = sub_lost_cb;
    link_connect(&sub_link);
    return 0;
}

void backend_on_subscriber_lost(backend_lost_cb cb)
{
    sub_lost_cb = cb;
    sub_link.on_lost = cb;
}

bool backend_subscribed(void)
{
    return sub_link.state == LINK_UP;
}

uint64_t backend_subscriber_outages_total(void)
{
    return sub_link.outages_total;
}

int backend_publish(const char *channel, const char *msg, size_t len)
{
    if (data_link.state != LINK_UP) return -1;
    const char *argv[3] = {"PUBLISH", channel, msg};
    size_t lens[3] = {7, strlen(channel), len};
    return link_send_argv(&data_link, NULL, NULL, NULL, 3, argv, lens);
}
