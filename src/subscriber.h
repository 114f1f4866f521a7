/* subscriber.h: a link that stays SUBSCRIBEd to one channel (backend
 * internal: the events channel between instances, and a sentinel's
 * +switch-master).
 *
 * Same URL, AUTH/SELECT/PING handshake, backoff and once-per-outage
 * logging as any link, so a long command queue never delays a message and
 * a subscription never sits in a command FIFO or under its timeout.
 * Liveness: a dropped socket is seen at once; a Redis that stops answering
 * (hung, paused, a silently dead TCP path) is seen by re-sending SUBSCRIBE
 * for the same channel after 1 s without any traffic: Redis answers it
 * with a subscribe confirmation (a no-op for an existing subscription),
 * and no answer within the timeout drops and re-makes the link. Messages
 * published while the subscription is down are lost (Redis pub/sub keeps
 * nothing), which is what on_resync is for. */
#ifndef LC_SUBSCRIBER_H
#define LC_SUBSCRIBER_H

#include <stdbool.h>
#include <stddef.h>

#include "link.h"

typedef struct subscriber subscriber_t;

struct subscriber {
    struct redis_link link;
    char *channel; /* NULL when there is no subscription */
    size_t channel_len;
    /* A message (payload valid only during the call); may call anything. */
    void (*on_msg)(subscriber_t *s, const char *msg, size_t len);
    /* Each time the subscription is (re)established, the first included. */
    void (*on_resync)(subscriber_t *s);
    bool probe_out;         /* a SUBSCRIBE awaits its confirmation */
    uint64_t probe_sent_ms; /* uv_now() when it was sent */
    uint64_t last_seen_ms;  /* uv_now() of the last reply or message */
};

/* Set s up for channel (copied) with url; the caller may then set more
 * link hooks (on_lost, before_connect) before subscriber_start(). */
void subscriber_init(subscriber_t *s, const char *name, uv_loop_t *loop, const redis_url_t *url,
                     long timeout_ms, const char *channel);
void subscriber_start(subscriber_t *s);
void subscriber_close(subscriber_t *s);
bool subscriber_up(const subscriber_t *s);

#endif
