/* l1_link.c: the in-process tier's view of the Redis links (see l1_link.h).
 *
 * A lost subscriber is either Redis going away (a crash is seen on both
 * sockets, in either order and not always in one loop turn) or this process
 * going deaf while Redis answers (CLIENT KILL, the pub/sub output limit, a
 * dead path to the subscriber's socket). A PING on the command link tells
 * them apart: an answer means Redis was up after the loss, so drop the
 * tier; no answer (the command link lost or timed out) means it is gone,
 * so fail open with what the tier holds.
 *
 * mark is the command link's outage (as counted by backend_outages_total)
 * during which the tier may serve what it holds with the subscriber down.
 * A different count means the command link came back meanwhile while this
 * process was deaf: what the tier holds may have been invalidated unheard,
 * so it goes. */
#include "l1_link.h"

#include <stdint.h>

#include "backend.h"
#include "cache_int.h"
#include "l1.h"

static struct {
    bool pending;  /* a loss with the command link up, its PING not answered */
    uint64_t loss; /* counts losses (and close), so a late PING of an older one is ignored */
    uint64_t mark;
} g;

static void on_ping(void *priv, redisReply *reply)
{
    if ((uint64_t)(uintptr_t)priv != g.loss || !g.pending) return;
    g.pending = false;
    if (backend_subscribed()) return; /* resynced meanwhile: dropped there */
    if (!reply || backend_up() == false) {
        g.mark = backend_outages_total(); /* Redis is gone: one outage, fail open */
        return;
    }
    l1_clear(); /* Redis answers and we did not hear it */
    g.mark = backend_outages_total() + 1;
}

static void on_subscriber_lost(void)
{
    cache_inval_epoch++; /* reads in flight must not refill the tier */
    g.loss++;
    g.pending = false;
    if (!backend_up()) {
        g.mark = backend_outages_total(); /* Redis went away: fail open */
        return;
    }
    g.mark = backend_outages_total() + 1;
    g.pending = backend_cmd(on_ping, (void *)(uintptr_t)g.loss, "PING") == 0;
    if (!g.pending) l1_clear(); /* cannot ask: err on the safe side */
}

void l1_link_init(void)
{
    g.pending = false;
    g.mark = 0;
    backend_on_subscriber_lost(on_subscriber_lost);
}

void l1_link_close(void)
{
    backend_on_subscriber_lost(NULL);
    g.loss++;
    g.pending = false;
}

void l1_link_resync(void)
{
    cache_inval_epoch++; /* a read sent while deaf may answer after this */
    g.pending = false;
    l1_clear();
}

bool l1_link_usable(void)
{
    if (backend_subscribed()) return true;
    uint64_t outages = backend_outages_total();
    if (backend_up()) {
        /* Deaf while Redis answers: read Redis. What the tier holds goes
         * (at once, unless the PING is still out: then Redis may be dying). */
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
