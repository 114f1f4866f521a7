/* bus.c: the handler registry of bus.h: per type, a fixed array of
 * listeners, called in order. */
#include "bus.h"

#include <stdbool.h>

typedef struct listener {
    bus_fn fn;
    void *priv;
} listener_t;

static struct {
    listener_t l[BUS_MAX_LISTENERS];
    size_t n;
} table[BUS_TYPES];

static const char *const names[BUS_TYPES] = {
    [BUS_KEY_INVALIDATED] = "key_invalidated",
    [BUS_KEYS_INVALIDATED] = "keys_invalidated",
    [BUS_FILL_LANDED] = "fill_landed",
    [BUS_TAG_PURGED] = "tag_purged",
    [BUS_GEN_SEEN] = "gen_seen",
    [BUS_NS_FLUSHED] = "ns_flushed",
    [BUS_SUBSCRIBER_LOST] = "subscriber_lost",
    [BUS_SUBSCRIBED] = "subscribed",
};

static bool valid(bus_type_t type)
{
    return (unsigned)type < BUS_TYPES;
}

int bus_on(bus_type_t type, bus_fn fn, void *priv)
{
    if (!valid(type) || !fn || table[type].n == BUS_MAX_LISTENERS) return -1;
    table[type].l[table[type].n++] = (listener_t){fn, priv};
    return 0;
}

void bus_emit(bus_type_t type, const bus_msg_t *msg)
{
    if (!valid(type)) return;
    static const bus_msg_t empty;
    if (!msg) msg = &empty;
    /* Those registered now: one added by a listener waits for the next
     * emit (bus.h). Listeners are never removed while the loop runs, so
     * the array does not shift under this walk. */
    size_t n = table[type].n;
    for (size_t i = 0; i < n; i++)
        table[type].l[i].fn(type, msg, table[type].l[i].priv);
}

size_t bus_listeners(bus_type_t type)
{
    return valid(type) ? table[type].n : 0;
}

const char *bus_type_name(bus_type_t type)
{
    return valid(type) ? names[type] : "unknown";
}

void bus_reset(void)
{
    for (size_t t = 0; t < BUS_TYPES; t++)
        table[t].n = 0;
}
