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
 * the same in both. A client speaks RESP2 until it sends HELLO 3 (and
 * again after HELLO 2); a slot keeps the version of its client when it was
 * taken. */
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
/* A double: RESP3 ",v" (inf, -inf, nan as RESP3 spells them); RESP2 the
 * same digits as a bulk string, as Redis answers a score. The fewest
 * digits (15 to 17) that read back as exactly v. */
void sink_double(sink_proto_t proto, buf_t *b, double v);
/* Text meant for people (INFO): RESP3 a verbatim string "=len txt:...",
 * RESP2 a bulk string. */
void sink_verbatim(sink_proto_t proto, buf_t *b, const char *p, size_t n);

#endif
