/* tags.c: when each tag was last purged, by the purge clock (tags.h).
 *
 * PURGETAG cannot find fills in flight by their keys: a fetch's tags are
 * known only when it returns. So every instance notes each purge of a tag
 * (its own and the "T" broadcasts of others), and a fetch that started
 * before the last purge of one of its tags does not store (fill.c,
 * overtaken). Purges older than every fetch in flight concern none and are
 * pruned: the table holds only purges that may still concern a fetch. */
#include "tags.h"

#include <stdint.h>
#include <stdlib.h>

#include "buf.h"
#include "bus.h"
#include "dict.h"
#include "util.h"

#define TAGS_PRUNE_MIN 256

static dict_t purged; /* tag -> tag_clock() of its last purge, as a pointer-sized integer */
static bool purged_ready;
static uint64_t (*oldest_fetch)(void); /* fills_oldest_fetch, from tags_listen */
static size_t prune_at = TAGS_PRUNE_MIN;
static uint64_t clock_ticks; /* purges noted */

uint64_t tag_clock(void)
{
    return clock_ticks;
}

/* Forget purges older than every fetch in flight: they cannot concern any. */
static void prune(void)
{
    uint64_t oldest = oldest_fetch ? oldest_fetch() : 0; /* unwired: forget none */
    size_t i, n = 0;
    dict_entry_t **old = xmalloc(purged.count * sizeof(*old));
    for (dict_entry_t *e = dict_first(&purged, &i); e; e = dict_next(&purged, &i, e))
        if ((uint64_t)(uintptr_t)e->value <= oldest) old[n++] = e;
    buf_t key = {0};
    for (size_t k = 0; k < n; k++) {
        /* copy: dict_del frees the entry holding the key */
        buf_reset(&key);
        buf_append(&key, old[k]->key, old[k]->klen);
        dict_del(&purged, key.data, key.len);
    }
    buf_free(&key);
    free(old);
    prune_at = purged.count * 2 > TAGS_PRUNE_MIN ? purged.count * 2 : TAGS_PRUNE_MIN;
}

void tag_note_purged(const char *tag, size_t len)
{
    if (!purged_ready) {
        dict_init(&purged);
        purged_ready = true;
    }
    dict_set(&purged, tag, len, (void *)(uintptr_t)++clock_ticks);
    if (purged.count >= prune_at) prune();
}

bool tag_purged_since(const char *tag, size_t len, uint64_t since_clock)
{
    if (!purged_ready || purged.count == 0) return false;
    uintptr_t t = (uintptr_t)dict_get(&purged, tag, len);
    return t && (uint64_t)t > since_clock;
}

void tags_close(void)
{
    if (purged_ready) dict_free(&purged);
    purged_ready = false;
}

static void on_tag_purged(bus_type_t type, const bus_msg_t *msg, void *priv)
{
    LC_UNUSED(type);
    LC_UNUSED(priv);
    tag_note_purged(msg->key, msg->len);
}

int tags_listen(uint64_t (*oldest)(void))
{
    oldest_fetch = oldest;
    return bus_on(BUS_TAG_PURGED, on_tag_purged, NULL);
}
