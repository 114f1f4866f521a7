/* bcast.h: the messages luacached instances sharing a Redis send each
 * other on PREFIX:#events (formats in bcast.c, docs/STORAGE.md). Sending is
 * a call; what arrives is emitted on the bus (bus.h), as is the state of
 * the subscription. */
#ifndef LC_BCAST_H
#define LC_BCAST_H

#include <stddef.h>

#include "buf.h"
#include "policy.h"
#include "store.h"

/* Build the channel name, subscribe (its loss and each (re)subscription
 * are emitted: BUS_SUBSCRIBER_LOST, BUS_SUBSCRIBED). After backend_init. */
void bcast_init(void);
void bcast_shutdown(void); /* before the links close: their loss is not news */
void bcast_close(void);

void bcast_landed(const buf_t *rkey); /* F */
/* The events channel's name (PREFIX:#events). */
const buf_t *bcast_channel(void);
/* F's text appended to out, for a store that publishes it itself */
void bcast_landed_msg(buf_t *out, const buf_t *rkey);
void bcast_key(const buf_t *rkey);                               /* I */
void bcast_keys_add(buf_t *batch, const char *rkey, size_t len); /* K, built up */
/* and sent, cb told when Redis has delivered it (0); -1: nothing sent. batch reset */
int bcast_keys_send(buf_t *batch, store_cb cb, void *priv);
void bcast_pattern(const char *glob, size_t len); /* P */
void bcast_tag(const char *tag, size_t len);      /* T */
/* G, published on the node of the generation key, after its write; cb
 * (may be NULL) once Redis handed it to subscribers: 0 when queued, -1
 * (cb never runs) when Redis is down. */
int bcast_gen(const ns_t *ns, long long gen, store_cb cb, void *priv);
/* A message from the channel: emitted as what it says (unless it is ours). */
void bcast_on_message(const char *msg, size_t len);

#endif
