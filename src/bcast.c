/* bcast.c: the messages luacached instances sharing a Redis send each
 * other on the pub/sub channel PREFIX:#events (docs/STORAGE.md).
 *
 *   F <instance> <rkey>               a fill of rkey landed (waiters re-read)
 *   I <instance> <rkey>               rkey was invalidated (DEL, SET)
 *   K <instance> <len>:<rkey>...      several keys invalidated (PURGETAG), one
 *                                     message per batch; rkeys are binary-safe
 *   P <instance> <glob>               every rkey matching glob was invalidated (PURGE)
 *   T <instance> <tag>                the tag was purged (PURGETAG)
 *   G <instance> <ns> <gen>           namespace ns is at generation gen (FLUSHNS)
 *   B <len>:<message>...              several of the above in one PUBLISH (the
 *                                     store script's batch of F messages)
 *
 * <instance> is the sender's random id: a process ignores its own messages,
 * having applied them already. Unknown types are ignored, so an older
 * instance can share a Redis with a newer one. Messages published while a
 * subscription is down are lost; what depends on them re-syncs on
 * resubscribe (fills re-read, generations are re-read from Redis).
 *
 * What arrives is emitted on the bus (bus.h) for the modules that act on
 * it; so are the loss of the subscription and each (re)subscription. */
#include "bcast.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bcast_msg.h"
#include "bus.h"
#include "cache_int.h"
#include "keys.h"
#include "log.h"
#include "store.h"
#include "util.h"

static buf_t channel; /* PREFIX:#events, NUL-terminated for the backend */

/* key: the one key the message is about (NULL: several). */
static void publish(const buf_t *key, buf_t *msg)
{
    store_publish(key ? key->data : NULL, key ? key->len : 0, channel.data, channel.len, msg->data,
                  msg->len, NULL, NULL);
    buf_free(msg);
}

static void start(buf_t *msg, char type)
{
    buf_printf(msg, "%c %s ", type, cache_instance_id);
}

const buf_t *bcast_channel(void)
{
    return &channel;
}

void bcast_landed_msg(buf_t *out, const buf_t *rkey)
{
    /* no printf: a fill's store carries one */
    buf_append(out, "F ", 2);
    buf_append_str(out, cache_instance_id);
    buf_append(out, " ", 1);
    buf_append(out, rkey->data, rkey->len);
}

void bcast_landed(const buf_t *rkey)
{
    buf_t msg = {0};
    bcast_landed_msg(&msg, rkey);
    publish(rkey, &msg);
}

void bcast_key(const buf_t *rkey)
{
    buf_t msg = {0};
    start(&msg, 'I');
    buf_append(&msg, rkey->data, rkey->len);
    publish(rkey, &msg);
}

void bcast_keys_add(buf_t *batch, const char *rkey, size_t len)
{
    if (batch->len == 0) start(batch, 'K');
    buf_printf(batch, "%zu:", len);
    buf_append(batch, rkey, len);
}

int bcast_keys_send(buf_t *batch, store_cb cb, void *priv)
{
    if (batch->len == 0) return -1;
    /* A PUBLISH with a reply: once it comes, Redis has handed the message
     * to every subscriber (PURGETAG answers after that). */
    int rc = store_publish(NULL, 0, channel.data, channel.len, batch->data, batch->len, cb, priv);
    buf_reset(batch);
    return rc;
}

void bcast_pattern(const char *glob, size_t len)
{
    buf_t msg = {0};
    start(&msg, 'P');
    buf_append(&msg, glob, len);
    publish(NULL, &msg);
}

void bcast_tag(const char *tag, size_t len)
{
    buf_t msg = {0};
    start(&msg, 'T');
    buf_append(&msg, tag, len);
    publish(NULL, &msg);
}

int bcast_gen(const ns_t *ns, long long gen, store_cb cb, void *priv)
{
    buf_t msg = {0}, key = {0};
    start(&msg, 'G');
    buf_printf(&msg, "%s %lld", ns->name, gen);
    keys_gen(&key, ns->name);
    int rc =
        store_publish(key.data, key.len, channel.data, channel.len, msg.data, msg.len, cb, priv);
    buf_free(&msg);
    buf_free(&key);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Receiving
 * ------------------------------------------------------------------------- */

/* One message, parsed (bcast_msg.c), emitted as what it says. */
static void on_parsed(void *ctx, char type, const char *body, size_t len)
{
    LC_UNUSED(ctx);
    bus_msg_t m = {.key = body, .len = len};
    size_t ns_len;
    long long gen;
    switch (type) {
    case 'F':
        bus_emit(BUS_FILL_LANDED, &m);
        break;
    case 'I':
    case 'K': /* one key of a K message */
        bus_emit(BUS_KEY_INVALIDATED, &m);
        break;
    case 'P':
        bus_emit(BUS_KEYS_INVALIDATED, &m);
        break;
    case 'T':
        bus_emit(BUS_TAG_PURGED, &m);
        break;
    case 'G':
        if (bcast_parse_gen(body, len, &ns_len, &gen) == 0) {
            ns_t *ns = ns_find_any(body, ns_len);
            if (ns) bus_emit(BUS_GEN_SEEN, &(bus_msg_t){.ns = ns, .gen = gen});
        }
        break;
    default: /* a newer instance's: ignored */
        break;
    }
}

void bcast_on_message(const char *msg, size_t len)
{
    bcast_parse(msg, len, cache_instance_id, strlen(cache_instance_id), on_parsed, NULL);
}

/* ---------------------------------------------------------------------------
 * The subscription
 * ------------------------------------------------------------------------- */

static void on_resync(void)
{
    bus_emit(BUS_SUBSCRIBED, NULL);
}

static void on_lost(void)
{
    bus_emit(BUS_SUBSCRIBER_LOST, NULL);
}

void bcast_init(void)
{
    buf_reset(&channel);
    keys_channel(&channel);
    buf_append(&channel, "", 1);
    channel.len--; /* NUL-terminated for the backend */
    backend_on_subscriber_lost(on_lost);
    if (backend_subscribe(channel.data, bcast_on_message, on_resync) != 0)
        log_warn("cannot subscribe to %s: other instances' fills will be polled", channel.data);
}

void bcast_shutdown(void)
{
    backend_on_subscriber_lost(NULL); /* the links close next: no news from them */
}

void bcast_close(void)
{
    buf_free(&channel);
}
