/* server.h: the TCP listener and clients.
 *
 * Replies leave in request order. A command that answers at once writes to
 * client_reply_buf(); a command that must wait takes a slot with
 * client_defer(), fills slot->buf later and calls slot_finish(). Slots queue
 * in request order; finished slots at the head move to the output buffer.
 * If the client goes away first, its unfinished slots are orphaned
 * (slot->c == NULL) and slot_finish() frees them. Output is flushed once per
 * loop iteration (uv_check), so a burst of completions costs one write.
 *
 * Back-pressure comes before the work: a client whose unsent output, plus
 * what its pending replies are likely to add, reaches half of
 * --output-limit is not read from (nor are its buffered commands started)
 * until that drains below it. Only a client whose output still exceeds the
 * whole limit is closed, as Redis closes one. */
#ifndef LC_SERVER_H
#define LC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "list.h"
#include "resp.h"
#include "sink.h"

typedef struct client client_t;

typedef struct slot {
    list_node_t node; /* in c->slots, until it moves to the output or is orphaned */
    client_t *c;      /* NULL once the client has gone */
    buf_t buf;
    bool done;
    size_t held;        /* bytes counted in c->held_bytes (finished, not at the head) */
    bool holds_input;   /* the client's next command waits (slot_hold_input) */
    bool direct;        /* its answer went straight into c->out (slot_out) */
    size_t direct_from; /* c->out.len then */
    sink_t sink;        /* the slot as the cache layer sees it (slot_sink) */
    unsigned timed_cmd; /* command table index + 1 whose duration ends here; 0: none */
    uint64_t start_ns;  /* uv_hrtime() at its dispatch */
} slot_t;

struct client {
    uv_tcp_t tcp;
    uint64_t id;
    resp_parser_t parser;
    buf_t out;  /* ordered bytes not yet handed to the socket */
    buf_t wbuf; /* bytes of the write in flight */
    uv_write_t wreq;
    bool writing;
    list_t slots;      /* slot_t, in request order */
    long pending;      /* slots not yet finished */
    size_t held_bytes; /* replies finished but queued behind an unfinished one */
    size_t reply_est;  /* likely bytes of one pending reply (back-pressure) */
    buf_t inbuf;       /* input held back while reading is paused */
    bool paused;       /* reading stopped: back-pressure, or yielding the loop */
    bool yielded;      /* paused for fairness only: resume next iteration */
    int input_holds;   /* slots holding the next commands back (slot_hold_input) */
    bool close_after_reply;
    bool closing;
    bool authed;
    bool flush_queued;
    /* MULTI/EXEC (cmd_multi.c): queued while in_multi, run by process_input
     * from exec_cmds once EXEC has answered the array's header. */
    bool in_multi;
    bool multi_dirty;          /* a command was refused while queuing: EXEC aborts */
    long multi_n;              /* commands queued */
    buf_t multi_cmds;          /* them, re-encoded in RESP */
    buf_t exec_cmds;           /* EXEC's commands not yet run ... */
    size_t exec_off;           /* ... from here */
    resp_parser_t exec_parser; /* parses exec_cmds */
    resp_parser_t *args;       /* the command being run: &parser, or &exec_parser */
    char *name;                /* CLIENT SETNAME */
    sink_proto_t proto;        /* RESP version spoken: 2 (HELLO 3 is refused) */
    sink_t now;                /* client_sink: the immediate replies */
    uint64_t last_active_ms;
    size_t last_unsent; /* write queue at the last idle check */
    /* Introspection (CLIENT LIST) and timing: the commands layer sets
     * cmd_idx (table index + 1, 0: none) and last_cmd as it dispatches. */
    unsigned cmd_idx;
    const char *last_cmd; /* the table's name: static */
    uint64_t cmd_start_ns;
    bool cmd_deferred; /* the command took a slot: its duration ends there */
    bool slowlog_skip; /* its arguments may hold a secret: not slow-logged */
    bool killed;       /* CLIENT KILL: closed at its next flush */
    uint64_t created_ms;
    list_node_t node;       /* srv.clients */
    list_node_t flush_node; /* srv.flush_list (or on_check's batch) while flush_queued */
};

/* Runs one parsed command of c (main passes the command table's dispatch,
 * so this layer does not include the one above it). */
typedef void (*server_dispatch_cb)(client_t *c);

int server_start(uv_loop_t *loop, server_dispatch_cb dispatch, char *err, size_t errlen);
/* Stop accepting new connections (graceful shutdown, first step). */
void server_stop_listening(void);
/* Close every client (last step of shutdown). */
void server_close_clients(void);
size_t server_clients(void);
/* Replies still being worked on or not yet sent, over all clients (for
 * graceful shutdown). */
long server_pending_replies(void);
uint64_t server_total_connections(void);
uint64_t server_total_commands(void);

/* Arguments of the command being dispatched. */
long client_argc(const client_t *c);
const char *client_arg(const client_t *c, long i, size_t *len);

/* MULTI/EXEC: queue the command being dispatched (re-encoded; false when
 * the queue would exceed --output-limit bytes); drop the queue and leave
 * MULTI; or hand the queue to EXEC: it leaves MULTI and returns how many
 * commands were queued, which run in order right after the command now
 * being dispatched returns, before any other command of this client, each
 * answering as if sent alone (holds and back-pressure apply to them as to
 * pipelined commands). */
bool client_multi_queue(client_t *c);
void client_multi_reset(client_t *c);
long client_multi_exec(client_t *c);

buf_t *client_reply_buf(client_t *c);
slot_t *client_defer(client_t *c);
void slot_finish(slot_t *s);
/* Where the slot's answer goes: the client's output buffer itself when the
 * slot is at the head of its queue (no copy later), else slot->buf. Write
 * the whole answer and finish the slot without returning to the loop in
 * between. */
buf_t *slot_out(slot_t *s);
/* The client's next commands wait until slot_release_input (or
 * slot_finish): for a command whose effect must come before theirs while
 * it computes what to do (a policy's ttl function for SET, on_event for
 * EVENT), as Redis orders a client's commands. Its reply still leaves in
 * order whenever it finishes. Release before the slot may finish. */
void slot_hold_input(slot_t *s);
void slot_release_input(slot_t *s);
/* The slot as a sink (sink.h), for the layers below this one: sink_out is
 * slot_out, sink_finish slot_finish, hold and release as above. Its
 * protocol is the client's when the slot was taken. */
static inline sink_t *slot_sink(slot_t *s)
{
    return &s->sink;
}
/* The client's immediate replies as a sink: sink_out is client_reply_buf,
 * sink_finish does nothing. For an answer written before the command
 * returns (GET's fast path). */
sink_t *client_sink(client_t *c);
/* Answer +OK, or -ERR err when err is set, and finish the slot. */
void slot_finish_ok(slot_t *s, const char *err);

/* Protocol error: reply, then close once the reply is flushed (as Redis). */
void client_close_after_reply(client_t *c);

/* Introspection (CLIENT LIST / KILL). The first client (newest first),
 * the next one, NULL at the end. */
client_t *server_first_client(void);
client_t *server_next_client(client_t *c);
/* Close c from another client's command: it stops reading now and is
 * closed on the next flush (not at once: the loop may be walking the
 * client list). c may be the caller: then after its reply. */
void client_kill(client_t *c, client_t *self);
/* "ip:port" ("[ip]:port" for IPv6) of the peer (local: of our end) into
 * dst; "" if unknown. */
void client_addr(const client_t *c, bool local, char *dst, size_t n);
/* Bytes of input buffered and not yet run (qbuf), output queued (omem). */
size_t client_input_pending(const client_t *c);
size_t client_output_pending(const client_t *c);
/* Clients waiting on a deferred reply (INFO blocked_clients). */
size_t server_blocked_clients(void);

#endif
