/* server.c: TCP listener, client lifecycle, reading, ordered replies and
 * writing (see server.h). Model: Redis networking.c and libuv stream.c. */
#include "server.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "reply.h"
#include "slowlog.h"
#include "stats.h"
#include "util.h"

/* Bytes one client may have parsed per loop iteration before it yields the
 * loop to others (libuv itself would read up to 32 times per wake-up). */
#define READ_BUDGET_PER_ITERATION (64 * 1024)
#define READ_CHUNK                (64 * 1024)
/* Commands one client may start per loop iteration: a read of 64 KiB of
 * tiny pipelined commands is ~2000 of them, and others wait meanwhile. */
#define COMMANDS_PER_ITERATION 256
/* Bytes of replies one client may have on their way (from Redis, over the
 * one shared link, or from an origin) beyond its first pending one: more
 * would only queue ahead of other clients' replies on the Redis link. */
#define IN_FLIGHT_BYTES (8 * 1024 * 1024)
/* A new client's guess at one reply's size: before any reply has told us,
 * at most IN_FLIGHT_BYTES / that run at once (a slow start), and each
 * finished reply refines the guess. */
#define INITIAL_REPLY_EST (IN_FLIGHT_BYTES / 16)
/* Write buffers larger than this are freed rather than kept when empty. */
#define KEEP_BUFFER_MAX (1024 * 1024)

static struct {
    uv_loop_t *loop;
    server_dispatch_cb dispatch;
    uv_tcp_t listener;
    bool listening;
    uv_check_t flusher;
    uv_idle_t spinner; /* active while a client yielded: no blocking poll then */
    uv_timer_t idle_timer;
    list_t clients; /* client_t, newest first */
    size_t nclients;
    list_t flush_list; /* client_t by flush_node, last queued first */
    uint64_t next_id;
    uint64_t total_connections;
    uint64_t total_commands;
    char readbuf[READ_CHUNK];
    bool readbuf_busy;
} srv;

static void client_close(client_t *c);
static void queue_flush(client_t *c);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

size_t server_clients(void)
{
    return srv.nclients;
}

uint64_t server_total_connections(void)
{
    return srv.total_connections;
}

uint64_t server_total_commands(void)
{
    return srv.total_commands;
}

long client_argc(const client_t *c)
{
    return c->args->argc;
}

const char *client_arg(const client_t *c, long i, size_t *len)
{
    return resp_arg(c->args, i, len);
}

/* ---------------------------------------------------------------------------
 * MULTI/EXEC queues
 * ------------------------------------------------------------------------- */

bool client_multi_queue(client_t *c)
{
    size_t bytes = 0;
    for (long i = 0; i < client_argc(c); i++) {
        size_t len;
        client_arg(c, i, &len);
        bytes += len + 24; /* "$len\r\n" ... "\r\n" */
    }
    if (c->multi_cmds.len + bytes > cfg.output_limit) return false;
    reply_array(&c->multi_cmds, client_argc(c)); /* a request is an array of bulks */
    for (long i = 0; i < client_argc(c); i++) {
        size_t len;
        const char *a = client_arg(c, i, &len);
        reply_bulk(&c->multi_cmds, a, len);
    }
    c->multi_n++;
    return true;
}

void client_multi_reset(client_t *c)
{
    c->in_multi = false;
    c->multi_dirty = false;
    c->multi_n = 0;
    buf_free(&c->multi_cmds);
}

long client_multi_exec(client_t *c)
{
    long n = c->multi_n;
    /* EXEC is not queued, so no EXEC runs while another's commands do. */
    buf_free(&c->exec_cmds);
    c->exec_cmds = c->multi_cmds;
    c->exec_off = 0;
    c->multi_cmds = (buf_t){0};
    client_multi_reset(c);
    return n;
}

static bool exec_pending(const client_t *c)
{
    return c->exec_off < c->exec_cmds.len;
}

/* Run EXEC's next queued command (process_input checked it may start). */
static void run_command(client_t *c, uint64_t *clock);

static void exec_next(client_t *c, uint64_t *clock)
{
    size_t used = 0;
    int st = resp_feed(&c->exec_parser, c->exec_cmds.data + c->exec_off,
                       c->exec_cmds.len - c->exec_off, &used);
    c->exec_off += used;
    if (st == RESP_DONE) {
        srv.total_commands++;
        c->args = &c->exec_parser;
        run_command(c, clock); /* timed and slow-logged as any command */
        c->args = &c->parser;
        resp_next_command(&c->exec_parser);
    }
    /* Our own encoding: never an error, never partial; but bounded anyway. */
    if (st != RESP_DONE || !exec_pending(c)) {
        buf_free(&c->exec_cmds);
        c->exec_off = 0;
    }
}

/* ---------------------------------------------------------------------------
 * Replies and slots
 * ------------------------------------------------------------------------- */

/* Slots are kept for reuse with a small buffer, so a reply that waits on
 * Redis allocates nothing here. */
#define SLOT_POOL_MAX 1024
#define SLOT_BUF_KEEP 4096

static list_t slot_pool; /* slot_t by node */
static size_t slots_pooled;
static bool slots_closed; /* server_close_clients ran: orphans are freed, not kept */

static void slot_release(slot_t *s)
{
    list_remove(&s->node);
    if (!slots_closed && slots_pooled < SLOT_POOL_MAX && s->buf.cap <= SLOT_BUF_KEEP) {
        buf_t b = s->buf;
        buf_reset(&b);
        *s = (slot_t){.buf = b};
        list_push_front(&slot_pool, &s->node);
        slots_pooled++;
        return;
    }
    buf_free(&s->buf);
    free(s);
}

static void slot_pool_free(void)
{
    slot_t *s;
    while ((s = list_first_entry(&slot_pool, slot_t, node))) {
        list_remove(&s->node);
        buf_free(&s->buf);
        free(s);
    }
    slots_pooled = 0;
}

static slot_t *first_slot(const client_t *c)
{
    return list_first_entry(&c->slots, slot_t, node);
}

static const sink_ops_t slot_sink_ops;

static slot_t *slot_new(client_t *c, bool done)
{
    slot_t *s = list_first_entry(&slot_pool, slot_t, node);
    if (s) {
        list_remove(&s->node);
        slots_pooled--;
    } else {
        s = xcalloc(1, sizeof(*s));
    }
    s->c = c;
    s->done = done;
    s->sink.ops = &slot_sink_ops;
    s->sink.proto = c->proto;
    list_push_back(&c->slots, &s->node);
    return s;
}

buf_t *client_reply_buf(client_t *c)
{
    if (list_empty(&c->slots)) {
        queue_flush(c);
        return &c->out;
    }
    /* Earlier replies are still pending: queue behind them. */
    return &slot_new(c, true)->buf;
}

buf_t *slot_out(slot_t *s)
{
    client_t *c = s->c;
    /* At the head, every earlier reply is in c->out already, and no later
     * one can be written there before this slot finishes. */
    if (c && !c->closing && first_slot(c) == s && !s->done && s->buf.len == 0) {
        if (!s->direct) {
            s->direct = true;
            s->direct_from = c->out.len;
        }
        queue_flush(c);
        return &c->out;
    }
    return &s->buf;
}

slot_t *client_defer(client_t *c)
{
    c->pending++;
    slot_t *s = slot_new(c, false);
    if (c->cmd_idx && !c->cmd_deferred) {
        /* the command being dispatched answers here: time it to the end */
        c->cmd_deferred = true;
        s->timed_cmd = c->cmd_idx;
        s->start_ns = c->cmd_start_ns;
    }
    return s;
}

/* Move finished slots at the head of the queue into the output buffer. */
static void drain_slots(client_t *c)
{
    slot_t *s;
    while ((s = first_slot(c)) && s->done) {
        list_remove(&s->node);
        c->held_bytes -= s->held;
        if (c->out.len == 0 && s->buf.len > 4096) {
            /* Large reply: hand over the memory instead of copying it. */
            buf_t tmp = c->out;
            c->out = s->buf;
            s->buf = tmp;
        } else {
            buf_append(&c->out, s->buf.data, s->buf.len);
        }
        slot_release(s);
    }
    queue_flush(c);
}

static void on_spin(uv_idle_t *h);

void slot_hold_input(slot_t *s)
{
    if (s->holds_input || !s->c) return;
    s->holds_input = true;
    s->c->input_holds++;
}

void slot_release_input(slot_t *s)
{
    if (!s->holds_input) return;
    s->holds_input = false;
    client_t *c = s->c;
    if (!c || --c->input_holds > 0 || !c->paused) return;
    /* resume from the check phase, not from inside this callback */
    c->yielded = true;
    uv_idle_start(&srv.spinner, on_spin);
}

void slot_finish(slot_t *s)
{
    slot_release_input(s);
    if (s->timed_cmd) {
        uint64_t now = lat_clock_valid ? lat_clock_ns : lat_now_ns();
        lat_hist_observe(&cmd_stats_hist[s->timed_cmd - 1],
                         now > s->start_ns ? now - s->start_ns : 0);
    }
    client_t *c = s->c;
    if (!c) { /* client gone: nobody will read this */
        slot_release(s);
        return;
    }
    s->done = true;
    c->pending--;
    /* A decaying maximum: one large reply makes the client wait for room
     * for the next ones; a run of small ones lets its pipeline widen. */
    size_t len = s->buf.len;
    if (s->direct) len = c->out.len > s->direct_from ? c->out.len - s->direct_from : 0;
    size_t decayed = c->reply_est - c->reply_est / 8;
    c->reply_est = len > decayed ? len : decayed;
    if (s == first_slot(c)) {
        drain_slots(c);
    } else {
        /* Held until the slots ahead finish: it counts toward the output
         * limit, checked when the client is next flushed. */
        s->held = s->buf.len;
        c->held_bytes += s->held;
        queue_flush(c);
    }
}

/* ---------------------------------------------------------------------------
 * Sinks (sink.h): slots and immediate replies, for the layers below
 * ------------------------------------------------------------------------- */

static slot_t *sink_slot(sink_t *k)
{
    return list_entry(k, slot_t, sink);
}

static buf_t *slot_sink_out(sink_t *k)
{
    return slot_out(sink_slot(k));
}

static void slot_sink_finish(sink_t *k)
{
    slot_finish(sink_slot(k));
}

static void slot_sink_hold(sink_t *k)
{
    slot_hold_input(sink_slot(k));
}

static void slot_sink_release(sink_t *k)
{
    slot_release_input(sink_slot(k));
}

static const sink_ops_t slot_sink_ops = {
    .out = slot_sink_out,
    .finish = slot_sink_finish,
    .hold_input = slot_sink_hold,
    .release_input = slot_sink_release,
};

static buf_t *now_sink_out(sink_t *k)
{
    return client_reply_buf(list_entry(k, client_t, now));
}

static void now_sink_finish(sink_t *k)
{
    LC_UNUSED(k); /* an immediate reply is in place once written */
}

static const sink_ops_t now_sink_ops = {.out = now_sink_out, .finish = now_sink_finish};

sink_t *client_sink(client_t *c)
{
    c->now.ops = &now_sink_ops;
    c->now.proto = c->proto;
    return &c->now;
}

void slot_finish_ok(slot_t *s, const char *err)
{
    if (err)
        reply_error(&s->buf, "%s", err);
    else
        reply_ok(&s->buf);
    slot_finish(s);
}

void client_close_after_reply(client_t *c)
{
    c->close_after_reply = true;
    queue_flush(c);
}

/* ---------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------- */

static void queue_flush(client_t *c)
{
    if (c->flush_queued || c->closing) return;
    c->flush_queued = true;
    list_push_front(&srv.flush_list, &c->flush_node);
}

static void flush(client_t *c);

static void on_write(uv_write_t *req, int status)
{
    client_t *c = req->data;
    c->writing = false;
    c->last_active_ms = uv_now(srv.loop); /* it took its output */
    if (c->wbuf.cap > KEEP_BUFFER_MAX)
        buf_free(&c->wbuf);
    else
        buf_reset(&c->wbuf);
    if (status < 0) {
        if (status != UV_ECANCELED)
            log_debug("client %llu: write failed: %s", (unsigned long long)c->id,
                      uv_strerror(status));
        client_close(c);
        return;
    }
    flush(c);
}

/* Output bytes this client makes us hold: collected, not yet taken by the
 * kernel from the write in flight (wbuf also holds the part uv_try_write
 * already sent), and finished but queued behind an unfinished reply. */
static size_t held_output(const client_t *c)
{
    size_t unsent = c->writing ? uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp) : 0;
    return c->out.len + unsent + c->held_bytes;
}

static void flush(client_t *c)
{
    if (c->closing) return;
    if (c->killed) {
        client_close(c);
        return;
    }
    /* Checked before the write-in-flight test: a client that does not read
     * keeps its write in flight forever while its replies pile up in out. */
    if (held_output(c) > cfg.output_limit) {
        log_warn("client %llu: output buffer over --output-limit (%zu bytes), closing",
                 (unsigned long long)c->id, cfg.output_limit);
        client_close(c);
        return;
    }
    if (c->writing) return;
    size_t sent = 0;
    if (c->out.len > 0) {
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            client_close(c);
            return;
        }
        if (n > 0) sent = (size_t)n;
    }
    if (sent < c->out.len) {
        /* The socket is full: hand the rest to libuv and keep collecting.
         * The rest is written from where it lies; moving it to the front
         * after every partial write would copy a slow reader's whole
         * backlog each time (quadratic). */
        buf_t tmp = c->wbuf;
        c->wbuf = c->out;
        c->out = tmp;
        c->writing = true;
        c->wreq.data = c;
        uv_buf_t b = uv_buf_init(c->wbuf.data + sent, (unsigned)(c->wbuf.len - sent));
        int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
        if (rc < 0) {
            c->writing = false;
            client_close(c);
        }
        return;
    }
    buf_reset(&c->out);
    if (c->out.cap > KEEP_BUFFER_MAX) buf_free(&c->out); /* don't keep a big buffer idle */
    if (c->close_after_reply && c->pending == 0 && list_empty(&c->slots)) client_close(c);
}

/* ---------------------------------------------------------------------------
 * Reading and dispatch
 * ------------------------------------------------------------------------- */

static void pause_reading(client_t *c)
{
    if (!c->paused) {
        c->paused = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

/* Back-pressure starts here; the client is closed only at the whole limit. */
static size_t soft_output_limit(void)
{
    return cfg.output_limit / 2;
}

/* A reply answered at once but queued behind an unfinished one is held
 * too: count it (its slot was filled after client_reply_buf() returned). */
static void count_tail(client_t *c)
{
    list_node_t *last = list_last(&c->slots);
    slot_t *t = last ? list_entry(last, slot_t, node) : NULL;
    if (t && t->done && !t->held && t != first_slot(c)) {
        t->held = t->buf.len;
        c->held_bytes += t->held;
    }
}

/* May this client start another command now? Not while its output plus
 * what its pending replies will likely add reaches the soft limit: it is
 * not read from until that drains. One command may always start once the
 * output is below the limit, so a client that reads never stalls. */
static bool may_start(client_t *c)
{
    if (c->input_holds > 0 || c->pending >= cfg.max_pending) return false;
    count_tail(c);
    size_t soft = soft_output_limit(), held = held_output(c);
    if (held >= soft) return false;
    size_t est = c->reply_est ? c->reply_est : 1;
    if (c->pending == 0) {
        /* The first reply in flight may take the output past the soft
         * limit, not (as far as we can tell) past the hard one; with
         * nothing held it always may, or a client whose replies are
         * larger than that would never get one. */
        return held == 0 || est <= cfg.output_limit - held;
    }
    size_t room = soft - held < IN_FLIGHT_BYTES ? soft - held : IN_FLIGHT_BYTES;
    return (size_t)c->pending + 1 <= room / est;
}

/* Enforce --output-limit after every command, as Redis does, so one read
 * of small requests cannot pile up huge replies before the next flush. */
static bool over_output_limit(client_t *c)
{
    count_tail(c);
    if (held_output(c) <= cfg.output_limit) return false;
    log_warn("client %llu: output buffer over --output-limit (%zu bytes), closing",
             (unsigned long long)c->id, cfg.output_limit);
    client_close(c);
    return true;
}

static void on_spin(uv_idle_t *h)
{
    LC_UNUSED(h); /* its being active is the point: see on_check */
}

/* A command that held the loop past --slowlog-slower-than (us), as Redis
 * logs one: its own run, not the wait for Redis or the origin (a slow
 * fetch is logged by itself). Commands allowed before AUTH are not logged:
 * their arguments may hold the password. */
static void log_slow(client_t *c, uint64_t us)
{
    slowlog_arg_t argv[SLOWLOG_MAX_ARGS];
    long argc = client_argc(c);
    for (long i = 0; i < argc && i < SLOWLOG_MAX_ARGS; i++)
        argv[i].s = client_arg(c, i, &argv[i].len);
    char addr[64];
    client_addr(c, false, addr, sizeof(addr));
    slowlog_push((int)argc, argv, us, addr, c->name);
}

/* Dispatch one parsed command, timing it from here to its reply (at once,
 * or when the slot it took finishes: client_defer). */
/* *clock: the end of the previous command of this batch, 0 for none (a
 * command starts where the one before it ended: one clock read each). */
static void run_command(client_t *c, uint64_t *clock)
{
    c->cmd_idx = 0;
    c->cmd_deferred = false;
    c->slowlog_skip = false;
    uint64_t t0 = *clock ? *clock : lat_now_ns();
    c->cmd_start_ns = t0;
    srv.dispatch(c);
    uint64_t t1 = lat_now_ns();
    *clock = t1;
    unsigned idx = c->cmd_idx;
    c->cmd_idx = 0;
    if (!idx) return;
    uint64_t took = t1 - t0;
    if (!c->cmd_deferred) lat_hist_observe(&cmd_stats_hist[idx - 1], took);
    if (slowlog_is_slow_ns(took) && !c->slowlog_skip) log_slow(c, took / 1000);
}

/* Parse and run commands from data; what cannot be run now (client paused
 * by back-pressure, or out of its per-iteration budget) is kept in
 * c->inbuf. */
static void process_input(client_t *c, const char *data, size_t len)
{
    long budget = COMMANDS_PER_ITERATION;
    uint64_t clock = 0;
    while ((len > 0 || exec_pending(c)) && !c->closing && !c->close_after_reply) {
        if (budget == 0 || !may_start(c)) {
            if (budget == 0) {
                c->yielded = true;
                uv_idle_start(&srv.spinner, on_spin);
            }
            pause_reading(c);
            if (len > 0) buf_append(&c->inbuf, data, len);
            return;
        }
        if (exec_pending(c)) { /* EXEC's commands come before the next ones */
            budget--;
            exec_next(c, &clock);
            if (over_output_limit(c)) return;
            continue;
        }
        size_t used = 0;
        c->parser.lim.unauthenticated = !c->authed;
        int st = resp_feed(&c->parser, data, len, &used);
        data += used;
        len -= used;
        if (st == RESP_ERROR) {
            reply_error(client_reply_buf(c), "%s", c->parser.errmsg);
            client_close_after_reply(c);
            return;
        }
        if (st == RESP_DONE) {
            budget--;
            srv.total_commands++;
            run_command(c, &clock);
            resp_next_command(&c->parser);
            if (over_output_limit(c)) return;
        }
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    LC_UNUSED(h);
    LC_UNUSED(suggested);
    /* One shared buffer: every read is parsed before the next one starts. */
    *b = uv_buf_init(srv.readbuf, sizeof(srv.readbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    client_t *c = s->data;
    if (nread < 0) {
        /* The client closed its sending side (`nc -q1` after its input):
         * answer what it already asked, then close, as a half-close allows. */
        if (nread == UV_EOF && !c->closing &&
            (c->pending > 0 || !list_empty(&c->slots) || c->out.len || c->writing)) {
            uv_read_stop(s);
            client_close_after_reply(c);
            return;
        }
        client_close(c);
        return;
    }
    if (nread == 0) return;
    c->last_active_ms = uv_now(srv.loop);
    process_input(c, b->base, (size_t)nread);
    /* Fairness: a client that filled our whole buffer yields to the others
     * until the next loop iteration. */
    if (!c->closing && !c->paused && (size_t)nread >= READ_BUDGET_PER_ITERATION) {
        pause_reading(c);
        queue_flush(c);
    }
}

/* Resume a paused client once its backlog has drained. Runs from the check
 * phase, never from inside another callback, so commands run from a clean
 * stack. */
static void maybe_resume(client_t *c)
{
    if (!c->paused || c->closing) return;
    c->yielded = false;
    if (!may_start(c)) return;
    if (c->inbuf.len > 0 || exec_pending(c)) {
        buf_t in = c->inbuf;
        c->inbuf = (buf_t){0};
        c->paused = false; /* process_input re-pauses if needed */
        process_input(c, in.data, in.len);
        buf_free(&in);
        if (c->paused || c->closing) return;
        c->paused = true;
    }
    c->paused = false;
    if (!c->close_after_reply) uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_check(uv_check_t *h)
{
    LC_UNUSED(h);
    /* Resuming may run commands that queue more flushes: loop until quiet,
     * but visit each paused client once per iteration. maybe_resume may
     * close c (never another client). */
    bool yielded = false;
    list_foreach_safe(&srv.clients, n, nx)
    {
        client_t *c = list_entry(n, client_t, node);
        if (c->paused) maybe_resume(c);
        if (c->yielded) yielded = true;
    }
    /* A client that yielded resumes next iteration even if no I/O comes:
     * the idle handle keeps the poll phase from blocking until then. */
    if (!yielded) uv_idle_stop(&srv.spinner);
    while (!list_empty(&srv.flush_list)) {
        /* Flushes queued by these flushes wait for the next round. A
         * client closed meanwhile takes itself off the batch. */
        list_t batch = {0};
        list_splice_back(&batch, &srv.flush_list);
        client_t *c;
        while ((c = list_first_entry(&batch, client_t, flush_node))) {
            list_remove(&c->flush_node);
            c->flush_queued = false;
            flush(c);
        }
    }
}

/* ---------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------- */

static void on_close(uv_handle_t *h)
{
    client_t *c = h->data;
    resp_parser_free(&c->parser);
    resp_parser_free(&c->exec_parser);
    buf_free(&c->multi_cmds);
    buf_free(&c->exec_cmds);
    buf_free(&c->out);
    buf_free(&c->wbuf);
    buf_free(&c->inbuf);
    free(c->name);
    free(c);
}

static void client_close(client_t *c)
{
    if (c->closing) return;
    c->closing = true;
    /* Orphan unfinished slots (their owners free them); free finished ones. */
    list_foreach_safe(&c->slots, n, nx)
    {
        slot_t *s = list_entry(n, slot_t, node);
        list_remove(n);
        if (s->done) {
            slot_release(s);
        } else {
            s->c = NULL;
        }
    }
    list_remove(&c->node);
    /* Off the flush list, or on_check's batch, whichever it is on. */
    list_remove(&c->flush_node);
    c->flush_queued = false;
    srv.nclients--;
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void reject_client(uv_stream_t *listener)
{
    uv_tcp_t *t = xmalloc(sizeof(*t));
    uv_tcp_init(srv.loop, t);
    if (uv_accept(listener, (uv_stream_t *)t) == 0) {
        static const char msg[] = "-ERR max number of clients reached\r\n";
        uv_buf_t b = uv_buf_init((char *)msg, sizeof(msg) - 1);
        uv_try_write((uv_stream_t *)t, &b, 1);
    }
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void on_connection(uv_stream_t *listener, int status)
{
    if (status < 0) {
        log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    if ((long)srv.nclients >= cfg.maxclients) {
        reject_client(listener);
        return;
    }
    client_t *c = xcalloc(1, sizeof(*c));
    uv_tcp_init(srv.loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    resp_limits_t lim = {cfg.max_inline, cfg.max_bulk, cfg.max_args, cfg.max_request, false};
    resp_parser_init(&c->parser, &lim);
    resp_parser_init(&c->exec_parser, &lim);
    c->args = &c->parser;
    c->id = ++srv.next_id;
    c->authed = cfg.requirepass == NULL;
    c->reply_est = INITIAL_REPLY_EST;
    c->proto = SINK_RESP2;
    c->last_active_ms = uv_now(srv.loop);
    c->created_ms = c->last_active_ms;
    list_push_front(&srv.clients, &c->node);
    srv.nclients++;
    srv.total_connections++;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_idle_timer(uv_timer_t *t)
{
    LC_UNUSED(t);
    if (cfg.timeout_s <= 0) return;
    uint64_t now = uv_now(srv.loop);
    uint64_t limit = (uint64_t)cfg.timeout_s * 1000;
    list_foreach_safe(&srv.clients, n, nx)
    {
        client_t *c = list_entry(n, client_t, node);
        /* A slow reader taking its output is not idle, even while it is
         * paused and sends nothing. */
        size_t unsent = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
        if (c->writing && unsent != c->last_unsent) c->last_active_ms = now;
        c->last_unsent = unsent;
        /* A client waiting on its own replies is not idle. */
        if (c->pending == 0 && now - c->last_active_ms > limit) client_close(c);
    }
}

int server_start(uv_loop_t *loop, server_dispatch_cb dispatch, char *err, size_t errlen)
{
    srv.loop = loop;
    srv.dispatch = dispatch;
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(cfg.bind, cfg.port, (struct sockaddr_in *)&addr);
    if (rc != 0) rc = uv_ip6_addr(cfg.bind, cfg.port, (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        snprintf(err, errlen, "--bind '%s' is not an IPv4 or IPv6 address", cfg.bind);
        return -1;
    }
    uv_tcp_init(loop, &srv.listener);
    srv.listening = true;
    rc = uv_tcp_bind(&srv.listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&srv.listener, 511, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg.bind, cfg.port, uv_strerror(rc));
        server_stop_listening();
        return -1;
    }
    uv_check_init(loop, &srv.flusher);
    uv_check_start(&srv.flusher, on_check);
    uv_unref((uv_handle_t *)&srv.flusher);
    uv_idle_init(loop, &srv.spinner);
    uv_unref((uv_handle_t *)&srv.spinner);
    uv_timer_init(loop, &srv.idle_timer);
    uv_timer_start(&srv.idle_timer, on_idle_timer, 1000, 1000);
    uv_unref((uv_handle_t *)&srv.idle_timer);
    return 0;
}

void server_stop_listening(void)
{
    if (!srv.listening) return;
    srv.listening = false;
    uv_close((uv_handle_t *)&srv.listener, NULL);
}

void server_close_clients(void)
{
    client_t *c;
    while ((c = list_first_entry(&srv.clients, client_t, node)))
        client_close(c);
    slots_closed = true;
    slot_pool_free();
    if (uv_is_active((uv_handle_t *)&srv.flusher) || !uv_is_closing((uv_handle_t *)&srv.flusher)) {
        if (srv.flusher.loop) uv_close((uv_handle_t *)&srv.flusher, NULL);
    }
    if (srv.idle_timer.loop) uv_close((uv_handle_t *)&srv.idle_timer, NULL);
    if (srv.spinner.loop) uv_close((uv_handle_t *)&srv.spinner, NULL);
}

long server_pending_replies(void)
{
    long n = 0;
    list_foreach_safe(&srv.clients, p, nx) n += list_entry(p, client_t, node)->pending;
    return n;
}

/* ---------------------------------------------------------------------------
 * Introspection
 * ------------------------------------------------------------------------- */

client_t *server_first_client(void)
{
    return list_first_entry(&srv.clients, client_t, node);
}

client_t *server_next_client(client_t *c)
{
    list_node_t *n = c->node.next;
    return n && n != &srv.clients.head ? list_entry(n, client_t, node) : NULL;
}

void client_kill(client_t *c, client_t *self)
{
    if (c->closing) return;
    if (c == self) {
        client_close_after_reply(c);
        return;
    }
    /* No more of its input runs; its pending replies are dropped with it. */
    c->killed = true;
    c->close_after_reply = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->flush_queued = false;
    list_remove(&c->flush_node);
    queue_flush(c);
}

void client_addr(const client_t *c, bool local, char *dst, size_t n)
{
    struct sockaddr_storage sa;
    int len = sizeof(sa);
    dst[0] = '\0';
    int rc = local ? uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&sa, &len)
                   : uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &len);
    if (rc != 0) return;
    char ip[64] = "";
    int port = 0;
    if (sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&sa;
        uv_ip6_name(a, ip, sizeof(ip));
        port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&sa;
        uv_ip4_name(a, ip, sizeof(ip));
        port = ntohs(a->sin_port);
    }
    snprintf(dst, n, sa.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port); /* as Redis */
}

size_t client_input_pending(const client_t *c)
{
    return c->inbuf.len + c->parser.line.len + c->parser.arena.len;
}

size_t client_output_pending(const client_t *c)
{
    return held_output(c);
}

size_t server_blocked_clients(void)
{
    size_t n = 0;
    list_foreach_safe(&srv.clients, p, nx) n += list_entry(p, client_t, node)->pending > 0;
    return n;
}
