/* l1_link.c: the in-process tier's view of the Redis links (see l1_link.h).
 *
 * A lost subscriber is either Redis going away (a crash is seen on both
 * sockets, in either order and not always in one loop turn) or this process
 * going deaf while Redis answers (CLIENT KILL, the pub/sub output limit, a
 * dead path to the subscriber's socket). The command link tells them
 * apart: lost too within LOSS_SKEW_MS, or not answering a PING sent then
 * (lost or timed out), Redis is gone, so fail open with what the tier
 * holds; a PING answered means Redis was up after the loss: drop the tier.
 *
 * mark is the command link's outage (as counted by backend_outages_total)
 * during which the tier may serve what it holds with the subscriber down.
 * A different count means the command link came back meanwhile while this
 * process was deaf: what the tier holds may have been invalidated unheard,
 * so it goes.
 *
 * It also applies the bus's invalidations to the tier (l1_link_listen): the
 * tier is one of their listeners, next to the fills. */
#include "l1_link.h"

#include <stdint.h>
#include <stdlib.h>

#include "backend.h"
#include "bus.h"
#include "config.h"
#include "l1.h"
#include "util.h"

uint64_t cache_inval_epoch;

/* The skew between the two sockets' closing when Redis dies (measured up to
 * 30 ms on a loaded VM): a command link lost within this of the subscriber
 * is one outage, and needs no PING (whose failure would count as a backend
 * error). */
#define LOSS_SKEW_MS 100

static struct {
    uv_loop_t *loop;
    uv_timer_t *timer; /* LOSS_SKEW_MS after a loss with the command link up */
    bool pending;      /* such a loss, not decided yet */
    uint64_t loss;     /* counts losses (and close), so a late PING of an older one is ignored */
    uint64_t mark;
} g;

static void on_ping(void *priv, redisReply *reply)
{
    if ((uint64_t)(uintptr_t)priv != g.loss || !g.pending) return;
    g.pending = false;
    if (backend_subscribed()) return; /* resynced meanwhile: dropped there */
    /* Redis is gone: fail open. mark stays the outage that follows the
     * loss: if the command link came back meanwhile, what the tier holds
     * goes at the next use. */
    if (!reply || !backend_any_up()) return;
    l1_clear(); /* Redis answers and we did not hear it */
    g.mark = backend_outages_total() + 1;
}

static void weigh_loss(uv_timer_t *t)
{
    LC_UNUSED(t);
    if (!g.pending) return;
    if (backend_subscribed() || !backend_any_up()) {
        g.pending = false; /* resynced, or the command link went too (mark: on_ping) */
        return;
    }
    if (backend_cmd(on_ping, (void *)(uintptr_t)g.loss, "PING") != 0) {
        g.pending = false;
        l1_clear(); /* cannot ask: err on the safe side */
        g.mark = backend_outages_total() + 1;
    }
}

static void on_subscriber_lost(void)
{
    cache_inval_epoch++;  /* reads in flight must not refill the tier */
    if (!g.timer) return; /* closed: shutting down */
    g.loss++;
    g.pending = false;
    if (!backend_any_up()) {
        g.mark = backend_outages_total(); /* Redis went away: fail open */
        return;
    }
    g.mark = backend_outages_total() + 1;
    g.pending = true;
    uv_timer_start(g.timer, weigh_loss, LOSS_SKEW_MS, 0);
}

void l1_link_init(uv_loop_t *loop)
{
    g.pending = false;
    g.mark = 0;
    g.loop = loop;
    g.timer = xmalloc(sizeof(*g.timer));
    uv_timer_init(loop, g.timer);
}

static void free_timer(uv_handle_t *h)
{
    free(h);
}

void l1_link_close(void)
{
    g.loss++;
    g.pending = false;
    if (!g.timer) return;
    uv_close((uv_handle_t *)g.timer, free_timer);
    g.timer = NULL;
}

void l1_link_resync(void)
{
    cache_inval_epoch++; /* a read sent while deaf may answer after this */
    g.pending = false;
    if (g.timer) uv_timer_stop(g.timer);
    l1_clear();
}

bool l1_link_usable(void)
{
    if (backend_subscribed()) return true;
    uint64_t outages = backend_outages_total();
    if (backend_any_up()) {
        /* Deaf while Redis answers: read Redis. What the tier holds goes
         * (at once, unless the loss is still being weighed: Redis may be
         * dying, and then the tier is what fail-open serves). */
        if (!g.pending && l1_entries() > 0) l1_clear();
        g.mark = outages + 1;
        return false;
    }
    if (outages != g.mark) {
        /* The command link was up since the subscriber went: deaf. */
        l1_clear();
        g.mark = outages;
    }
    return true;
}

/* ---------------------------------------------------------------------------
 * The tier's listeners
 * ------------------------------------------------------------------------- */

/* How long an invalidation keeps older entries out of the in-process tier:
 * longer than a Redis read in flight can take (the backend timeout fails
 * it), so a read sent before the invalidation cannot cache what it removed. */
static uint64_t forbid_ms(void)
{
    return 2 * (uint64_t)cfg.backend_timeout_ms + 1000;
}

/* Entries stored up to this millisecond stay out of the tier for a while:
 * "up to", not "before", as stored_at has millisecond resolution and a
 * value stored in the same millisecond may be the one removed. The price is
 * that a SET's own value, too, is read from Redis for that while. */
static void on_invalidated(bus_type_t type, const bus_msg_t *msg, void *priv)
{
    LC_UNUSED(priv);
    cache_inval_epoch++;
    uint64_t now = g.loop ? uv_now(g.loop) : 0;
    if (type == BUS_KEY_INVALIDATED)
        l1_forbid(msg->key, msg->len, now_ms(), now, now + forbid_ms());
    else
        l1_forbid_matching(msg->key, msg->len, now_ms(), now, now + forbid_ms());
}

/* Another instance stored the key: what the tier holds of it is older. */
static void on_landed(bus_type_t type, const bus_msg_t *msg, void *priv)
{
    LC_UNUSED(type);
    LC_UNUSED(priv);
    l1_del(msg->key, msg->len);
}

static void on_subscription(bus_type_t type, const bus_msg_t *msg, void *priv)
{
    LC_UNUSED(msg);
    LC_UNUSED(priv);
    if (type == BUS_SUBSCRIBED)
        l1_link_resync();
    else
        on_subscriber_lost();
}

int l1_link_listen(void)
{
    if (bus_on(BUS_KEY_INVALIDATED, on_invalidated, NULL) != 0 ||
        bus_on(BUS_KEYS_INVALIDATED, on_invalidated, NULL) != 0 ||
        bus_on(BUS_FILL_LANDED, on_landed, NULL) != 0 ||
        bus_on(BUS_SUBSCRIBER_LOST, on_subscription, NULL) != 0 ||
        bus_on(BUS_SUBSCRIBED, on_subscription, NULL) != 0)
        return -1;
    return 0;
}
