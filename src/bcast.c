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

/* "<len>:<bytes>" repeated: fn on each item; stops at the first malformed one. */
static void each_counted(const char *p, size_t len, void (*fn)(const char *item, size_t n))
{
    const char *end = p + len;
    while (p < end) {
        const char *colon = memchr(p, ':', (size_t)(end - p) < 24 ? (size_t)(end - p) : 24);
        long long n;
        if (!colon || parse_ll(p, (size_t)(colon - p), &n) != 0 || n < 0 || n > end - (colon + 1))
            return;
        fn(colon + 1, (size_t)n);
        p = colon + 1 + n;
    }
}

static void key_invalidated(const char *rkey, size_t len)
{
    bus_emit(BUS_KEY_INVALIDATED, &(bus_msg_t){.key = rkey, .len = len});
}

static void on_gen(const char *p, size_t len)
{
    const char *sp = memchr(p, ' ', len);
    long long gen;
    if (!sp || parse_ll(sp + 1, len - (size_t)(sp + 1 - p), &gen) != 0) return;
    ns_t *ns = ns_find_any(p, (size_t)(sp - p));
    if (ns) bus_emit(BUS_GEN_SEEN, &(bus_msg_t){.ns = ns, .gen = gen});
}

/* One message of a "B <len>:<message>..." envelope, as if it came alone.
 * An envelope inside one is ignored (none is sent). */
static void enveloped(const char *msg, size_t len)
{
    if (len > 0 && msg[0] != 'B') bcast_on_message(msg, len);
}

void bcast_on_message(const char *msg, size_t len)
{
    if (len < 4 || msg[1] != ' ') return;
    if (msg[0] == 'B') {
        each_counted(msg + 2, len - 2, enveloped);
        return;
    }
    const char *inst = msg + 2;
    const char *sp = memchr(inst, ' ', len - 2);
    if (!sp) return;
    size_t ilen = (size_t)(sp - inst);
    if (ilen == strlen(cache_instance_id) && memcmp(inst, cache_instance_id, ilen) == 0)
        return; /* our own: already applied */
    const char *rest = sp + 1;
    size_t rlen = len - (size_t)(rest - msg);
    bus_msg_t m = {.key = rest, .len = rlen};
    switch (msg[0]) {
    case 'F':
        bus_emit(BUS_FILL_LANDED, &m);
        break;
    case 'I':
        bus_emit(BUS_KEY_INVALIDATED, &m);
        break;
    case 'K':
        each_counted(rest, rlen, key_invalidated);
        break;
    case 'P':
        bus_emit(BUS_KEYS_INVALIDATED, &m);
        break;
    case 'T':
        bus_emit(BUS_TAG_PURGED, &m);
        break;
    case 'G':
        on_gen(rest, rlen);
        break;
    default:
        break;
    }
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
