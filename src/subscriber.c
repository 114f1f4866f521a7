/* subscriber.c: a link kept SUBSCRIBEd to one channel (see subscriber.h).
 *
 * hiredis 0.14 and pub/sub, as this code relies on it:
 *  - SUBSCRIBE does not go through the reply queue: redisAsyncCommand()
 *    files the callback under the channel name and calls it for every
 *    ["subscribe", ch, n] and ["message", ch, payload] on that channel, and
 *    once with NULL at teardown. A second SUBSCRIBE of the same channel
 *    replaces the entry (same callback) and gets its own confirmation.
 *  - Commands queued before SUBSCRIBE (our AUTH/SELECT/PING handshake) are
 *    answered through the normal queue first, so the handshake runs as on
 *    a command link and SUBSCRIBE is sent only once it is answered.
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
 * after SUB_PROBE_MS without any traffic, due within the timeout. */
#include "subscriber.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

#define SUB_PROBE_MS 1000

static void sub_reply_cb(redisAsyncContext *ac, void *r, void *privdata);

static void sub_send(subscriber_t *s)
{
    struct redis_link *link = &s->link;
    const char *argv[2] = {"SUBSCRIBE", s->channel};
    size_t lens[2] = {9, s->channel_len};
    if (redisAsyncCommandArgv(link->ac, sub_reply_cb, s, 2, argv, lens) != REDIS_OK) {
        link_lost(link, "cannot queue SUBSCRIBE", LOSS_DROP);
        return;
    }
    s->probe_out = true;
    s->probe_sent_ms = uv_now(link->loop);
    uv_timer_start(link->timer, link_timer_cb, (uint64_t)link->timeout_ms, 0);
}

/* The handshake is answered: subscribe. Runs inside a hiredis callback. */
static void sub_on_ready(struct redis_link *link)
{
    subscriber_t *s = link->owner;
    s->probe_out = false;
    sub_send(s);
}

static void sub_on_idle(struct redis_link *link)
{
    subscriber_t *s = link->owner;
    uint64_t now = uv_now(link->loop);
    if (s->probe_out) {
        uint64_t due = s->probe_sent_ms + (uint64_t)link->timeout_ms;
        if (now < due) {
            uv_timer_start(link->timer, link_timer_cb, due - now, 0);
            return;
        }
        char why[128];
        snprintf(why, sizeof(why), "no reply to SUBSCRIBE within %ld ms", link->timeout_ms);
        link_lost(link, why, LOSS_DROP);
        return;
    }
    uint64_t due = s->last_seen_ms + SUB_PROBE_MS;
    if (now < due) {
        uv_timer_start(link->timer, link_timer_cb, due - now, 0);
        return;
    }
    sub_send(s);
}

/* Every confirmation and message of our channel, and NULL at teardown. The
 * user's callbacks run last and may do anything, even close everything. */
static void sub_reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    subscriber_t *s = privdata;
    struct redis_link *link = &s->link;
    redisReply *reply = r;
    if (ac != link->ac) return; /* a context we have already given up */
    if (!reply) {               /* a teardown we did not start */
        link_lost(link, link_ac_errstr(ac), LOSS_SEEN);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING)
        return;
    s->last_seen_ms = uv_now(link->loop);
    const redisReply *kind = reply->element[0];
    if (kind->len == 7 && strncasecmp(kind->str, "message", 7) == 0) {
        const redisReply *payload = reply->element[2];
        if (payload->type == REDIS_REPLY_STRING && s->on_msg)
            s->on_msg(s, payload->str, payload->len);
        return;
    }
    if (kind->len == 9 && strncasecmp(kind->str, "subscribe", 9) == 0) {
        s->probe_out = false;
        if (link->state == LINK_UP) return; /* a liveness probe answered */
        link_up(link);
        log_debug("%s: subscribed to '%.*s'", link->name, (int)s->channel_len, s->channel);
        /* The timer ran the SUBSCRIBE deadline; now it waits for silence. */
        uv_timer_start(link->timer, link_timer_cb, SUB_PROBE_MS, 0);
        if (s->on_resync) s->on_resync(s);
    }
}

void subscriber_init(subscriber_t *s, const char *name, uv_loop_t *loop, const redis_url_t *url,
                     long timeout_ms, const char *channel)
{
    free(s->channel);
    memset(s, 0, sizeof(*s));
    link_init(&s->link, name, loop, url, timeout_ms);
    s->channel_len = strlen(channel);
    s->channel = xmemdup(channel, s->channel_len);
    s->link.owner = s;
    s->link.on_ready = sub_on_ready;
    s->link.on_idle = sub_on_idle;
}

void subscriber_start(subscriber_t *s)
{
    link_connect(&s->link);
}

void subscriber_close(subscriber_t *s)
{
    link_close(&s->link);
    free(s->channel);
    s->channel = NULL;
    s->channel_len = 0;
}

bool subscriber_up(const subscriber_t *s)
{
    return s->link.state == LINK_UP;
}
