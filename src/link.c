/* link.c: one Redis connection that stays alive (see link.h), hiredis
 * async on our libuv loop.
 *
 * A direct link reads and parses its replies itself and answers its FIFO
 * from them (see "Direct replies"); hiredis connects it and writes for
 * it, and files no callback for it. The subscribers use hiredis whole.
 * hiredis rules this code relies on (0.14 async.c), for hiredis's
 * callbacks (the subscriber's, and connect/disconnect for both):
 *  - Every command callback runs exactly once; at teardown with a NULL reply.
 *    A NULL reply therefore always means the context is going away.
 *  - redisAsyncFree() from inside a command callback is deferred until that
 *    callback returns (REDIS_IN_CALLBACK); from the connect/disconnect
 *    callbacks it is NOT (they run outside that flag, and hiredis frees the
 *    context itself right after them). So we free only from our timer, from
 *    link_close(), or from a command callback.
 *  - Teardown order: pending callbacks (NULL), event cleanup (our libuv
 *    adapter uv_close()s its poll handle and frees itself in the close
 *    callback), onDisconnect (only if the socket had connected), free.
 *  - A failed connect calls onConnect(REDIS_ERR), then frees the context.
 *
 * The link knows nothing about the public API: what a link is for (the
 * command link, a cluster node, a subscriber, a sentinel) is in its hooks. */
#include "link.h"

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
#include "stats.h"
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
    int events;        /* what the poll handle watches */
    bool direct;       /* the link reads its replies itself (link_read_direct) */
    list_node_t flush; /* on `flushes`: output to write before the loop blocks */
};

/* Writes without waiting for "writable". hiredis asks for a write event
 * after every command it queues and drops it once written. Watching for
 * it cost a loop iteration per round trip (queue, poll, write, poll, read)
 * and five epoll_ctl calls: libuv's uv_poll_start() deletes the fd from
 * epoll and adds it back on every change (strace: a miss made 15, a
 * Redis-backed hit 5). Instead a connected link's output is written once
 * per loop iteration, from a prepare handle, after every callback of the
 * iteration queued its commands and just before the loop polls: one write
 * per link per turn. Only a socket that does not take it all (or a connect
 * still in progress) is watched for "writable", until it drains.
 * A prepare callback that runs after ours in the same phase (libuv runs
 * them in an order of its own) and queues commands calls
 * link_flush_writes() itself: store.c's batches do. */
static list_t flushes;
static uv_prepare_t *flusher;      /* while any socket is attached */
static unsigned attached;          /* sockets with a poll handle */
static struct link_poll *flushing; /* whose output link_flush_writes is writing */

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

static void poll_update(struct link_poll *p, int events);

static void poll_cb(uv_poll_t *handle, int status, int events)
{
    struct link_poll *p = handle->data;
    int ev = status < 0 ? p->events : events;
    /* On an error libuv has stopped the handle: what it watches is nothing
     * now, so hiredis's next addRead (after a read that returned the data
     * queued before a reset, not the reset) starts it again instead of
     * being skipped as no change, and the error is seen at once. */
    if (status < 0) p->events = 0;
    if (p->ac && p->direct && (ev & UV_READABLE)) {
        /* Before the connect completes, only hiredis's connect check (in
         * its write handler) can make sense of an event. */
        if (p->ac->c.flags & REDIS_CONNECTED)
            link_read_direct(p->ac);
        else
            ev |= UV_WRITABLE;
        ev &= ~UV_READABLE;
        /* hiredis asks to read on after its own reads; a direct link reads
         * without it, so it watches again itself: the error behind the
         * data it just read shows at the next poll. */
        if (status < 0 && p->ac) poll_update(p, p->events | UV_READABLE);
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
    if (events == p->events) return; /* each change is two epoll_ctl calls */
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

void link_flush_writes(void)
{
    /* Taken off before the write: a write that fails tears the context
     * down, and its disconnect may queue on (or close) other links. */
    while (!list_empty(&flushes)) {
        struct link_poll *p = list_first_entry(&flushes, struct link_poll, flush);
        list_remove(&p->flush);
        size_t before = sdslen(p->ac->c.obuf);
        flushing = p;
        redisAsyncHandleWrite(p->ac); /* asks again (poll_add_write) if not all went */
        flushing = NULL;
        if (p->ac) link_write_progress(p->ac, before - sdslen(p->ac->c.obuf));
    }
}

static void on_prepare(uv_prepare_t *h)
{
    LC_UNUSED(h);
    link_flush_writes();
}

static void poll_add_write(void *priv)
{
    struct link_poll *p = priv;
    if (p->events & UV_WRITABLE) return; /* already waiting for room */
    /* Asked from inside link_flush_writes's write: the socket is full. Before the
     * connect completes, "writable" is how hiredis learns that it did. */
    if (p == flushing || !p->ac || !(p->ac->c.flags & REDIS_CONNECTED)) {
        poll_update(p, p->events | UV_WRITABLE);
        return;
    }
    if (!list_linked(&p->flush)) list_push_back(&flushes, &p->flush);
}

static void poll_del_write(void *priv)
{
    struct link_poll *p = priv;
    list_remove(&p->flush);
    poll_update(p, p->events & ~UV_WRITABLE);
}

static void poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static void free_handle_cb(uv_handle_t *h)
{
    free(h);
}

static void poll_cleanup(void *priv)
{
    struct link_poll *p = priv;
    p->ac = NULL;
    list_remove(&p->flush);
    uv_close((uv_handle_t *)&p->handle, poll_closed);
    if (--attached == 0) { /* so the loop can close at shutdown */
        uv_close((uv_handle_t *)flusher, free_handle_cb);
        flusher = NULL;
    }
}

static int poll_attach(redisAsyncContext *ac, uv_loop_t *loop, bool direct)
{
    if (ac->ev.data) return -1;
    struct link_poll *p = xcalloc(1, sizeof(*p));
    if (uv_poll_init_socket(loop, &p->handle, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    if (!flusher) {
        flusher = xmalloc(sizeof(*flusher));
        uv_prepare_init(loop, flusher);
        uv_prepare_start(flusher, on_prepare);
        uv_unref((uv_handle_t *)flusher); /* pending output never keeps the loop alive alone */
    }
    attached++;
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

static void req_free(struct link_req *req)
{
    free(req->cmd);
    free(req);
}

bool link_live(const struct redis_link *link)
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

const char *link_ac_errstr(const redisAsyncContext *ac)
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

static void direct_reset(struct redis_link *link);
static void direct_release(struct redis_link *link);
static void link_fail_pending(struct redis_link *link);

/* The context is gone or must go. Mark the link down *first*, so callbacks
 * run by the teardown see backend_up() false and cannot queue on a dying
 * context; then count, log and schedule the next attempt. */
void link_lost(struct redis_link *link, const char *why, enum link_loss loss)
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
    if (was_up && link->on_lost) link->on_lost(link);
    if (link->direct) direct_reset(link);
    /* Last: the NULL callbacks this runs may call anything, even close. */
    if (loss != LOSS_SEEN && ac) redisAsyncFree(ac);
    if (link->direct) link_fail_pending(link);
}

void link_up(struct redis_link *link)
{
    link->state = LINK_UP;
    /* First thing, so what it sends goes ahead of every other command. */
    if (link->on_up) link->on_up(link);
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

static bool role_is_master(const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
           r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len == 6 &&
           memcmp(r->element[0]->str, "master", 6) == 0;
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
    if (strcmp(step, "ROLE") == 0 && !role_is_master(reply)) {
        /* A sentinel that has not seen a failover yet, or an old master
         * that came back as a replica: writing there would be lost. */
        link_lost(link, "ROLE: the node is not a master (a replica, or still syncing)",
                  LOSS_REFUSED);
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
    link_cb cb = req->cb;
    void *priv = req->priv;

    if (reply && !step) lat_hist_observe(&redis_rtt_hist, lat_now_ns() - req->sent_ns);
    fifo_unlink(link, req);
    req_free(req);
    /* NULL only comes from a teardown. If it is not one we started, this is
     * the first we hear of it (onDisconnect comes after these callbacks). */
    if (!reply && ac == link->ac) link_lost(link, link_ac_errstr(ac), LOSS_SEEN);
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
        link_lost(link, link_ac_errstr(ac), LOSS_SEEN); /* hiredis frees ac after we return */
        return;
    }
    link->state = LINK_HANDSHAKE;
}

static void link_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_link *link = ac->data;
    if (ac != link->ac) return; /* we dropped it ourselves and know already */
    link_lost(link, status == REDIS_OK ? "connection closed" : link_ac_errstr(ac), LOSS_SEEN);
}

/* obuf_before: the write buffer's length before the command was queued. */
static void link_track(struct redis_link *link, struct link_req *req, size_t obuf_before)
{
    req->sent_ms = uv_now(link->loop);
    req->sent_ns = lat_now_ns();
    link->queued_bytes += sdslen(link->ac->c.obuf) - obuf_before;
    req->wire_end = link->queued_bytes;
    fifo_push(link, req);
    link_arm(link);
}

static struct link_req *req_new(struct redis_link *link, const char *step, link_cb cb, void *priv)
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
        req_free(req);
        return -1;
    }
    int rc = link_write(link, req, cmd, (size_t)n);
    redisFreeCommand(cmd);
    return rc;
}

int link_send_argv(struct redis_link *link, const char *step, link_cb cb, void *priv, int argc,
                   const char **argv, const size_t *lens)
{
    struct link_req *req = req_new(link, step, cb, priv);
    if (link->direct) {
        char *cmd = NULL;
        int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
        return link_write_formatted(link, req, cmd, n);
    }
    size_t obuf = sdslen(link->ac->c.obuf);
    if (redisAsyncCommandArgv(link->ac, link_reply_cb, req, argc, argv, lens) != REDIS_OK) {
        req_free(req);
        return -1;
    }
    link_track(link, req, obuf);
    return 0;
}

int link_sendv(struct redis_link *link, link_cb cb, void *priv, const char *fmt, va_list ap)
{
    struct link_req *req = req_new(link, NULL, cb, priv);
    if (link->direct) {
        char *cmd = NULL;
        int n = redisvFormatCommand(&cmd, fmt, ap);
        return link_write_formatted(link, req, cmd, n);
    }
    size_t obuf = sdslen(link->ac->c.obuf);
    if (redisvAsyncCommand(link->ac, link_reply_cb, req, fmt, ap) != REDIS_OK) {
        req_free(req);
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
    if (link->role_check) {
        const char *rargv[1] = {"ROLE"};
        size_t rlens[1] = {4};
        if (link_send_argv(link, "ROLE", NULL, NULL, 1, rargv, rlens) != 0) return -1;
        link->handshake_left++;
    }
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
        snprintf(why, sizeof(why), "%s", link_ac_errstr(ac));
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

void link_connect(struct redis_link *link)
{
    if (link->before_connect) link->before_connect(link);
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

void link_timer_cb(uv_timer_t *t)
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

static void link_set_where(struct redis_link *link)
{
    const redis_url_t *url = &link->url;
    if (url->is_unix)
        snprintf(link->where, sizeof(link->where), "%s", url->path);
    else if (strchr(url->host, ':'))
        snprintf(link->where, sizeof(link->where), "[%s]:%d", url->host, url->port);
    else
        snprintf(link->where, sizeof(link->where), "%s:%d", url->host, url->port);
}

void link_set_addr(struct redis_link *link, const char *host, int port)
{
    snprintf(link->url.host, sizeof(link->url.host), "%s", host);
    link->url.port = port;
    link->url.is_unix = false;
    link_set_where(link);
}

void link_retarget(struct redis_link *link, const char *host, int port)
{
    if (!link->url.is_unix && link->url.port == port && strcmp(link->url.host, host) == 0) return;
    char was[sizeof(link->where)];
    snprintf(was, sizeof(was), "%s", link->where);
    if (link_live(link) && link->state != LINK_WAIT) {
        char why[sizeof(link->where) + 32];
        snprintf(why, sizeof(why), "moving to %s:%d", host, port);
        if (link->resolving) abandon_lookup(link);
        link_lost(link, why, LOSS_DROP); /* fails what was pending there */
    }
    link_set_addr(link, host, port);
    link->addr_turn = 0;
    if (!link_live(link)) return; /* closed meanwhile, or never started */
    log_info("%s: %s -> %s", link->name, was, link->where);
    link->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_start(link->timer, link_timer_cb, 0, 0);
}

void link_init(struct redis_link *link, const char *name, uv_loop_t *loop, const redis_url_t *url,
               long timeout_ms)
{
    memset(link, 0, sizeof(*link));
    link->name = name;
    link->loop = loop;
    link->url = *url;
    link->timeout_ms = timeout_ms;
    link->backoff_ms = BACKOFF_MIN_MS;
    link->rand_state = (uv_hrtime() ^ ((uint64_t)getpid() << 32)) | 1;
    link_set_where(link);
    link->timer = xmalloc(sizeof(*link->timer));
    uv_timer_init(loop, link->timer);
    link->timer->data = link;
    link->state = LINK_WAIT;
}

/* Pending commands get their NULL callback here, or (when called from inside
 * a hiredis callback) as soon as that callback returns. */
void link_close(struct redis_link *link)
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
    if (link->direct) direct_reset(link);
    if (ac) redisAsyncFree(ac);
    if (link->direct) {
        link_fail_pending(link);
        direct_release(link); /* unless a callback of ours is still running: then after it */
    }
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

/* The connection is gone: its unparsed bytes with it. */
static void direct_reset(struct redis_link *link)
{
    link->rd.len = 0;
    reply_parser_reset(&link->rd.parser);
}

static void direct_release(struct redis_link *link)
{
    if (link->rd.busy) return;
    free(link->rd.buf);
    reply_parser_free(&link->rd.parser);
    memset(&link->rd, 0, sizeof(link->rd));
}

static int link_write(struct redis_link *link, struct link_req *req, const char *cmd, size_t len)
{
    redisAsyncContext *ac = link->ac;
    if (ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)) {
        req_free(req);
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
    if (link->keep_cmds && !req->cmd && !req->step) {
        req->cmd = xmemdup(cmd, len);
        req->cmd_len = len;
    }
    link_track(link, req, before);
    return 0;
}

int link_send_formatted(struct redis_link *link, link_cb cb, void *priv, const char *cmd,
                        size_t len)
{
    if (!link->ac) return -1;
    return link_write(link, req_new(link, NULL, cb, priv), cmd, len);
}

int link_resend(struct redis_link *link, struct link_req *req)
{
    /* Connecting will do: the handshake is queued ahead of it. */
    if (!link->ac || !req->cmd || (link->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)))
        return -1;
    req->link = link;
    return link_write(link, req, req->cmd, req->cmd_len);
}

void link_req_finish(struct link_req *req, redisReply *reply)
{
    link_cb cb = req->cb;
    void *priv = req->priv;
    req_free(req);
    if (cb) cb(priv, reply);
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
        link_cb cb = req->cb;
        void *priv = req->priv;
        bool step = req->step != NULL;
        req_free(req);
        if (step) continue; /* a handshake reply: nobody waits for it */
        if (link->state != LINK_CLOSED) link->errors_total++;
        if (cb) cb(priv, NULL);
    }
}

/* Answer the FIFO from the complete replies in link->rd.buf. 0: go on reading;
 * -1: the context went away meanwhile. */
static int direct_dispatch(struct redis_link *link, redisAsyncContext *ac)
{
    size_t off = 0;
    while (off < link->rd.len) {
        size_t used = 0;
        redisReply *reply = NULL;
        int rc =
            reply_parse(&link->rd.parser, link->rd.buf + off, link->rd.len - off, &used, &reply);
        if (rc == 0) break;
        if (rc < 0) {
            link_lost(link, link->rd.parser.err, LOSS_DROP);
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
        link_cb cb = req->cb;
        void *priv = req->priv;
        uint64_t now = lat_now_ns();
        if (!step) lat_hist_observe(&redis_rtt_hist, now - req->sent_ns);
        fifo_unlink(link, req);
        if (!step && link->intercept && link->intercept(link, req, reply)) {
            if (link->ac != ac) return -1;
            continue; /* it owns req now */
        }
        req_free(req);
        if (step)
            link_handshake_reply(link, ac, step, reply);
        else if (cb) {
            /* what this reply completes is timed by this reading */
            bool outer = lat_clock_valid;
            lat_clock_ns = now;
            lat_clock_valid = true;
            cb(priv, reply);
            lat_clock_valid = outer;
        }
        if (link->ac != ac) return -1;
    }
    /* What is left is the start of a reply: to the front (its scan state
     * is relative to its start). */
    if (off) {
        memmove(link->rd.buf, link->rd.buf + off, link->rd.len - off);
        link->rd.len -= off;
    }
    return 0;
}

static void link_read_direct(redisAsyncContext *ac)
{
    struct redis_link *link = ac->data;
    link->rd.busy = true;
    for (int i = 0; i < READS_PER_WAKEUP; i++) {
        if (link->rd.cap - link->rd.len < DIRECT_READ) {
            size_t cap = link->rd.cap ? link->rd.cap : DIRECT_READ;
            while (cap - link->rd.len < DIRECT_READ)
                cap *= 2;
            link->rd.buf = xrealloc(link->rd.buf, cap);
            link->rd.cap = cap;
        }
        size_t room = link->rd.cap - link->rd.len;
        ssize_t n = read(ac->c.fd, link->rd.buf + link->rd.len, room);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) {
            /* hiredis's texts, as when it read for this link */
            link_lost(link, n == 0 ? "Server closed the connection" : strerror(errno), LOSS_DROP);
            break;
        }
        link->last_io_ms = uv_now(link->loop);
        link->rd.len += (size_t)n;
        if (direct_dispatch(link, ac) != 0 || (size_t)n < room) break;
    }
    link->rd.busy = false;
    if (!link_live(link)) {
        direct_release(link);
    } else if (link->rd.len == 0 && link->rd.cap > DIRECT_KEEP) {
        free(link->rd.buf); /* one huge reply must not pin its memory */
        link->rd.buf = NULL;
        link->rd.cap = 0;
    }
}
