/* bus.h: messages between the modules of the cache layer, with a handler
 * registry (docs/ARCHITECTURE.md, "Messages").
 *
 * A module that learns something others must act on (a key was
 * invalidated, a namespace moved to a newer generation, the subscription
 * was lost) emits a message; the modules that act on it registered a
 * listener for its type at start-up (main.c does the wiring). The emitter
 * does not know who listens, so it does not include them: the cache layer's
 * modules call down, and news goes out through here.
 *
 * The rules:
 *  - emit is synchronous: every listener has run when bus_emit returns, so
 *    an emitter may rely on the effects (entry_usable reads ns->gen after
 *    BUS_GEN_SEEN);
 *  - listeners of a type run in the order they were registered;
 *  - a listener may emit (any type, nested); a listener registered while
 *    its type is being emitted is not called by that emit, only by later
 *    ones;
 *  - a type with no listener is a no-op;
 *  - msg and the bytes it points to are valid only during the call. */
#ifndef LC_BUS_H
#define LC_BUS_H

#include <stddef.h>

#include "policy.h"

typedef enum bus_type {
    /* key (an entry key, PREFIX:{NS:ID}) was invalidated here or by another
     * instance (DEL, SET, a PURGETAG member, "I", "K"): a fill of it in
     * flight must not store, the tier must not keep or take it. */
    BUS_KEY_INVALIDATED,
    /* every entry key matching the Redis glob key was invalidated (PURGE,
     * "P"). */
    BUS_KEYS_INVALIDATED,
    /* another instance's fill of key landed ("F"): what the tier holds of
     * it is outdated, and fills waiting on that instance re-read. */
    BUS_FILL_LANDED,
    /* the tag key was purged here or elsewhere (PURGETAG, "T"): fetches
     * started before now that return it must not store. */
    BUS_TAG_PURGED,
    /* namespace ns is at generation gen or later: seen in an entry, in a
     * "G", read from Redis. The generation's owner (nsgen.c) learns it. */
    BUS_GEN_SEEN,
    /* ns moved to a newer generation (FLUSHNS here or elsewhere): what is
     * in flight for it belongs to the old one. */
    BUS_NS_FLUSHED,
    /* the subscription to the events channel was lost: broadcasts from now
     * on are missed. */
    BUS_SUBSCRIBER_LOST,
    /* the subscription is (re)established, the first time included:
     * broadcasts may have been missed meanwhile. */
    BUS_SUBSCRIBED,
    BUS_TYPES
} bus_type_t;

typedef struct bus_msg {
    const char *key; /* the rkey, glob or tag named above; not NUL-terminated */
    size_t len;
    ns_t *ns;      /* BUS_GEN_SEEN, BUS_NS_FLUSHED */
    long long gen; /* BUS_GEN_SEEN */
} bus_msg_t;

typedef void (*bus_fn)(bus_type_t type, const bus_msg_t *msg, void *priv);

/* Listeners per type: the wiring of one process, fixed at start-up. */
#define BUS_MAX_LISTENERS 8

/* Call fn(type, msg, priv) for every message of type emitted from now on.
 * -1 (and nothing registered) when type is not a type or its table is
 * full. */
int bus_on(bus_type_t type, bus_fn fn, void *priv);
void bus_emit(bus_type_t type, const bus_msg_t *msg);
size_t bus_listeners(bus_type_t type);
const char *bus_type_name(bus_type_t type);
/* Forget every listener (shutdown, tests); never from a listener. */
void bus_reset(void);

#endif
