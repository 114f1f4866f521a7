/* l1.c: the in-process tier (see l1.h): a hash table plus an age-ordered
 * list for eviction. Items are immutable copies of an entry; put replaces. */
#include "l1.h"

#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "glob.h"
#include "util.h"

typedef struct item {
    struct item *prev, *next; /* oldest first */
    entry_t e;                /* e.value points at data */
    uint64_t expires;
    size_t size; /* bytes accounted */
    size_t klen;
    char data[]; /* value bytes, then the key */
} item_t;

static struct {
    dict_t map;
    item_t *oldest, *newest;
    size_t bytes, max_bytes;
    bool ready;
} l1;

void l1_init(size_t max_bytes)
{
    dict_init(&l1.map);
    l1.max_bytes = max_bytes;
    l1.ready = true;
}

static void unlink_item(item_t *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        l1.oldest = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        l1.newest = it->prev;
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
    if (!l1.ready || l1.map.count == 0) return false;
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
    /* Approximate footprint: item, value, key and the table entry. */
    size_t size = sizeof(item_t) + e->len + 2 * klen + sizeof(dict_entry_t) + 16;
    l1_del(key, klen);                   /* first: an older item must not outlive a newer value */
    if (size > l1.max_bytes / 8) return; /* one item may not flush the tier */
    while (l1.oldest && l1.bytes + size > l1.max_bytes)
        drop(l1.oldest);
    item_t *it = xmalloc(sizeof(*it) + e->len + klen);
    it->e = *e;
    if (e->len) memcpy(it->data, e->value, e->len);
    it->e.value = it->data;
    memcpy(it->data + e->len, key, klen);
    it->klen = klen;
    it->expires = expires_mono;
    it->size = size;
    it->next = NULL;
    it->prev = l1.newest;
    if (l1.newest)
        l1.newest->next = it;
    else
        l1.oldest = it;
    l1.newest = it;
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
    item_t *it = l1.oldest;
    while (it) {
        item_t *next = it->next;
        if (glob_match(glob, len, it->data + it->e.len, it->klen)) drop(it);
        it = next;
    }
}

void l1_clear(void)
{
    while (l1.oldest)
        drop(l1.oldest);
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
    dict_free(&l1.map);
    l1.ready = false;
}
