/* l1_link.h: when the in-process tier may be used, by the state of the two
 * Redis links (docs/STORAGE.md, "The channel").
 *
 * The tier is safe only while this process hears other instances'
 * invalidations, i.e. while its subscription is up. So:
 *  - subscriber up: the tier is read and written as usual;
 *  - subscriber lost while the command link is up: the whole tier is
 *    dropped at that moment (as Redis client-side caching flushes on a lost
 *    invalidation connection): it is not read or written from then on, and
 *    it is emptied once the command link has shown Redis is up (below),
 *    within 100 ms + one round trip; it stays unused until the subscription
 *    is confirmed again, when it is dropped once more (reads sent while
 *    deaf may still answer);
 *  - both links down (Redis down, or this host cut off from it): the tier
 *    keeps serving what it held when Redis went away (fail-open, SPEC §6),
 *    provided the command link was never up meanwhile without the
 *    subscriber. A crash of Redis is seen on both sockets, in either order
 *    and not always in one loop turn: when the subscriber's loss comes
 *    first, a command link lost within 100 ms is the same outage (keep);
 *    else a PING on it decides (answered: Redis is up, drop; failed or
 *    timed out: Redis is gone, keep). */
#ifndef LC_L1_LINK_H
#define LC_L1_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

/* After l1_init(). */
void l1_link_init(uv_loop_t *loop);
/* Register the tier's listeners on the bus (bus.h): an invalidation, here
 * or from another instance, drops the key's item (or the glob's) and keeps
 * reads sent before it out of the tier (l1_forbid); another instance's
 * landed fill drops the key's item; the subscription's loss and return
 * are handled as below. */
int l1_link_listen(void);
/* Closes its timer (the loop must run once more); a PING still out is
 * ignored when it answers, a later loss of the subscriber too. */
void l1_link_close(void);
/* The subscription is (re)established: drop the tier (broadcasts were
 * missed) and keep reads sent before now from refilling it. */
void l1_link_resync(void);
/* May the tier be read and written now? Drops it when the links say it
 * may hold items whose invalidation was missed. Cheap: the hit path calls
 * it. */
bool l1_link_usable(void);

/* Bumped by every invalidation this process applies and by each loss and
 * return of the subscription: an entry read from Redis while one happened
 * may predate it and does not go to the tier (the readers in cache.c and
 * fill.c compare it before and after). */
extern uint64_t cache_inval_epoch;

#endif
