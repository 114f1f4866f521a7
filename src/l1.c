/* l1.c: the in-process tier (see l1.h): a hash table plus an age-ordered
 * list for eviction. Items are immutable copies of an entry; put replaces.
 * Invalidations leave a tombstone per key (and one floor for patterns) for
 * a while, so a Redis read that was in flight cannot put back what they
 * removed. */
#include "l1.h"

#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "glob.h"
#include "list.h"
#include "util.h"

typedef struct item {
    list_node_t node; /* l1.items, oldest first */
    entry_t e;        /* e.value points at data */
    uint64_t expires;
    size_t size; /* bytes accounted */
    size_t klen;
    char data[]; /* value bytes, then the key */
} item_t;

/* "Nothing stored at or before floor may enter for this key until
 * expires". Kept oldest first: they all live the same time, so the list is
 * in expiry order too. */
typedef struct tomb {
    list_node_t node; /* l1.tomb_list */
    int64_t floor;    /* wall ms, as entry_t.stored_at */
    uint64_t expires; /* mono ms */
    size_t klen;
    char key[];
} tomb_t;

/* Tombstones are small, but a DEL storm must not grow them without bound:
 * past this many the oldest goes (its read in flight is long answered). */
#define MAX_TOMBS 65536

static struct {
    dict_t map;
    list_t items; /* item_t, oldest first: eviction takes the front */
    size_t bytes, max_bytes;
    dict_t tombs;
    list_t tomb_list;  /* tomb_t, oldest first */
    int64_t all_floor; /* a pattern invalidation's floor, for every key */
    uint64_t all_floor_expires;
    uint64_t now; /* the latest mono time a caller gave */
    bool ready;
} l1;

void l1_init(size_t max_bytes)
{
    memset(&l1, 0, sizeof(l1)); /* a fresh tier, clock included (tests re-init) */
    dict_init(&l1.map);
    dict_init(&l1.tombs);
    l1.max_bytes = max_bytes;
    l1.all_floor = INT64_MIN;
    l1.ready = true;
}

static void tomb_drop(tomb_t *t)
{
    dict_del(&l1.tombs, t->key, t->klen);
    list_remove(&t->node);
    free(t);
}

static tomb_t *oldest_tomb(void)
{
    return list_first_entry(&l1.tomb_list, tomb_t, node);
}

static item_t *oldest_item(void)
{
    return list_first_entry(&l1.items, item_t, node);
}

static void tombs_expire(uint64_t now_mono)
{
    if (now_mono > l1.now) l1.now = now_mono;
    tomb_t *t;
    while ((t = oldest_tomb()) && (t->expires <= l1.now || l1.tombs.count > MAX_TOMBS))
        tomb_drop(t);
    if (l1.all_floor_expires <= l1.now) l1.all_floor = INT64_MIN;
}

/* May an entry stored at stored_at enter for key? */
static bool allowed(const char *key, size_t klen, int64_t stored_at)
{
    if (stored_at <= l1.all_floor && l1.all_floor_expires > l1.now) return false;
    if (l1.tombs.count == 0) return true;
    tomb_t *t = dict_get(&l1.tombs, key, klen);
    return !t || t->expires <= l1.now || stored_at > t->floor;
}

static void unlink_item(item_t *it)
{
    list_remove(&it->node);
    l1.bytes -= it->size;
}

static void drop(item_t *it)
{
    dict_del(&l1.map, it->data + it->e.len, it->klen);
    unlink_item(it);
    free(it);
}

bool l1_get(const char *key, size_t klen, uint64_t now_mono, bool ignore_expiry, entry_t *out)
{
    if (!l1.ready) return false;
    tombs_expire(now_mono);
    if (l1.map.count == 0) return false;
    item_t *it = dict_get(&l1.map, key, klen);
    if (!it) return false;
    if (now_mono >= it->expires && !ignore_expiry) {
        drop(it);
        return false;
    }
    *out = it->e;
    return true;
}

void l1_put(const char *key, size_t klen, const entry_t *e, uint64_t expires_mono)
{
    if (!l1.ready) return;
    /* An item it holds came after the invalidation: newer than e, keep it. */
    if (!allowed(key, klen, e->stored_at)) return;
    /* Approximate footprint: item, value, key and the table entry. */
    size_t size = sizeof(item_t) + e->len + 2 * klen + sizeof(dict_entry_t) + 16;
    l1_del(key, klen);                   /* first: an older item must not outlive a newer value */
    if (size > l1.max_bytes / 8) return; /* one item may not flush the tier */
    item_t *old;
    while ((old = oldest_item()) && l1.bytes + size > l1.max_bytes)
        drop(old);
    item_t *it = xmalloc(sizeof(*it) + e->len + klen);
    it->e = *e;
    if (e->len) memcpy(it->data, e->value, e->len);
    it->e.value = it->data;
    memcpy(it->data + e->len, key, klen);
    it->klen = klen;
    it->expires = expires_mono;
    it->size = size;
    list_push_back(&l1.items, &it->node);
    l1.bytes += size;
    dict_set(&l1.map, it->data + e->len, klen, it);
}

void l1_del(const char *key, size_t klen)
{
    if (!l1.ready || l1.map.count == 0) return;
    item_t *it = dict_get(&l1.map, key, klen);
    if (it) drop(it);
}

void l1_del_matching(const char *glob, size_t len)
{
    if (!l1.ready) return;
    list_foreach_safe(&l1.items, n, nx)
    {
        item_t *it = list_entry(n, item_t, node);
        if (glob_match(glob, len, it->data + it->e.len, it->klen)) drop(it);
    }
}

void l1_forbid(const char *key, size_t klen, int64_t floor, uint64_t now_mono, uint64_t until_mono)
{
    if (!l1.ready) return;
    l1_del(key, klen);
    tombs_expire(now_mono);
    tomb_t *t = dict_get(&l1.tombs, key, klen);
    if (t) {
        if (t->floor > floor) floor = t->floor;
        tomb_drop(t); /* re-added as the newest */
    }
    t = xmalloc(sizeof(*t) + klen);
    t->floor = floor;
    t->expires = until_mono;
    t->klen = klen;
    memcpy(t->key, key, klen);
    list_push_back(&l1.tomb_list, &t->node);
    dict_set(&l1.tombs, t->key, klen, t);
    tombs_expire(now_mono); /* keeps the count bounded */
}

void l1_forbid_matching(const char *glob, size_t len, int64_t floor, uint64_t now_mono,
                        uint64_t until_mono)
{
    if (!l1.ready) return;
    l1_del_matching(glob, len);
    tombs_expire(now_mono);
    /* One floor for every key: patterns are rare, and a key they did not
     * match only misses the tier for a moment (it is still read from Redis). */
    if (floor > l1.all_floor) l1.all_floor = floor;
    if (until_mono > l1.all_floor_expires) l1.all_floor_expires = until_mono;
}

void l1_clear(void)
{
    item_t *it;
    while ((it = oldest_item()))
        drop(it);
}

size_t l1_entries(void)
{
    return l1.ready ? l1.map.count : 0;
}

size_t l1_bytes(void)
{
    return l1.bytes;
}

void l1_close(void)
{
    if (!l1.ready) return;
    l1_clear();
    tomb_t *t;
    while ((t = oldest_tomb()))
        tomb_drop(t);
    dict_free(&l1.map);
    dict_free(&l1.tombs);
    l1.ready = false;
}
