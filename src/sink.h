/* sink.h: where an answer goes, and in which protocol version.
 *
 * The layers below the server answer requests without knowing about
 * clients: they get a sink_t, take its buffer once with sink_out(), write
 * the whole answer there and call sink_finish(), without returning to the
 * loop in between. The server implements sinks for its reply slots and for
 * a client's immediate replies (server.h).
 *
 * A sink carries the client's protocol version, so the encodings that
 * differ between RESP2 and RESP3 (null, map) are chosen where the answer is
 * written, by sink_null() and sink_map(); every other encoder of reply.h is
 * the same in both. Only RESP2 is spoken today (HELLO 3 is refused), so
 * proto is always SINK_RESP2; RESP3 becomes a mode of these two functions,
 * not a rewrite of their callers. */
#ifndef LC_SINK_H
#define LC_SINK_H

#include "buf.h"

typedef enum sink_proto { SINK_RESP2 = 2, SINK_RESP3 = 3 } sink_proto_t;

typedef struct sink sink_t;

typedef struct sink_ops {
    buf_t *(*out)(sink_t *s);         /* where the answer is written (once per answer) */
    void (*finish)(sink_t *s);        /* the answer is complete; s may be gone after */
    void (*hold_input)(sink_t *s);    /* optional: the client's next commands wait ... */
    void (*release_input)(sink_t *s); /* ... until this (or finish) */
} sink_ops_t;

struct sink {
    const sink_ops_t *ops;
    sink_proto_t proto;
};

static inline buf_t *sink_out(sink_t *s)
{
    return s->ops->out(s);
}

static inline void sink_finish(sink_t *s)
{
    s->ops->finish(s);
}

/* For a command whose effect must come before the client's next commands
 * while it works out what to do (server.h, slot_hold_input). */
static inline void sink_hold_input(sink_t *s)
{
    if (s->ops->hold_input) s->ops->hold_input(s);
}

static inline void sink_release_input(sink_t *s)
{
    if (s->ops->release_input) s->ops->release_input(s);
}

/* The encodings that depend on the protocol version. */
void sink_null(sink_proto_t proto, buf_t *b);        /* RESP2 $-1, RESP3 _ */
void sink_map(sink_proto_t proto, buf_t *b, long n); /* n pairs follow: RESP2 *2n, RESP3 %n */

#endif
