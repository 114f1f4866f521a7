/* cmd_multi.c: MULTI, EXEC, DISCARD, WATCH, UNWATCH, as redis-py's
 * default pipeline() and ioredis's multi() use them (docs/COMMANDS.md,
 * "MULTI/EXEC").
 *
 * MULTI/EXEC is a queued batch, not a Redis transaction: commands.c
 * queues what follows MULTI (answering +QUEUED, or the error that makes
 * EXEC abort), and EXEC answers the array's header and hands the queue to
 * the server, which runs the commands in order before any other command of
 * this client; each writes its own reply (at once, or in a slot filled
 * later), and replies leave in request order, so the array assembles
 * itself. Other clients' commands, fills and invalidations may run between
 * the queued commands. There is nothing to roll back: a command that fails
 * in EXEC answers its error in its place and the others still run. */
#include "commands.h"
#include "reply.h"

void cmd_multi(client_t *c)
{
    buf_t *b = client_reply_buf(c);
    if (c->in_multi) {
        reply_error(b, "MULTI calls can not be nested");
        return;
    }
    c->in_multi = true;
    reply_ok(b);
}

void cmd_exec(client_t *c)
{
    buf_t *b = client_reply_buf(c);
    if (!c->in_multi) {
        reply_error(b, "EXEC without MULTI");
    } else if (c->multi_dirty) {
        client_multi_reset(c);
        reply_error(b, "EXECABORT Transaction discarded because of previous errors.");
    } else {
        reply_array(b, client_multi_exec(c)); /* the commands' replies follow */
    }
}

void cmd_discard(client_t *c)
{
    buf_t *b = client_reply_buf(c);
    if (!c->in_multi) {
        reply_error(b, "DISCARD without MULTI");
        return;
    }
    client_multi_reset(c);
    reply_ok(b);
}

/* WATCH would promise that EXEC fails when a watched key changed; with
 * entries that fills, other instances and expiry change at any time, and
 * EXEC not being atomic, we cannot keep that promise, so we say so. */
void cmd_watch(client_t *c)
{
    buf_t *b = client_reply_buf(c);
    if (c->in_multi)
        reply_error(b, "WATCH inside MULTI is not allowed");
    else
        reply_error(b, "WATCH is not supported: MULTI/EXEC here is a queued batch, not an "
                       "optimistic transaction (docs/COMMANDS.md)");
}

/* Nothing is ever watched: clients send UNWATCH when they reset. */
void cmd_unwatch(client_t *c)
{
    reply_ok(client_reply_buf(c));
}
