/* l1.c: the in-process tier (see l1.h): an open-addressing hash table of
 * compact items, evicted oldest first. Items are immutable copies of an
 * entry; put replaces.
 * Invalidations leave a tombstone per key (and one floor for patterns) for
 * a while, so a Redis read that was in flight cannot put back what they
 * removed. */
#include "l1.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "glob.h"
#include "keys.h"
#include "list.h"
#include "util.h"

/* An item is one allocation: a small header, then its bytes, packed:
 *
 *     varint klen, varint vlen, key, value,
 *     kind, then varints (zigzag) of version, gen, stored_at,
 *     fresh_until - stored_at, stale_until - fresh_until,
 *     error_until - fresh_until, fetch_ms
 *
 * The times of an entry are close to each other, so their differences
 * take a few bytes instead of eight each (docs/PERFORMANCE.md, issue 7:
 * about 60 bytes per item besides its key and value, from 235). The table
 * holds item pointers (open addressing), and the age order is the
 * insertion number: eviction scans for the oldest (evict_pass), which a
 * list would do for 16 bytes more per item. */
typedef struct item {
    uint32_t expires; /* mono ms, from l1.base */
    uint32_t seq;     /* insertion number (wraps): the oldest go first */
    uint8_t data[];
} item_t;

#define ITEM_HEAD offsetof(item_t, data)

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
    item_t **slots; /* open addressing, linear probing; NULL: empty */
    size_t cap;     /* a power of two, or 0 */
    size_t count;
    uint32_t next_seq; /* the next item's insertion number */
    uint32_t lo;       /* no live item is older (a lower bound, for evict_pass) */
    uint64_t base;     /* mono ms that items' expires count from */
    size_t bytes, max_bytes;
    dict_t tombs;
    list_t tomb_list;  /* tomb_t, oldest first */
    int64_t all_floor; /* a pattern invalidation's floor, for every key */
    uint64_t all_floor_expires;
    uint64_t now;  /* the latest mono time a caller gave */
    dict_t per_ns; /* namespace name -> size_t items (luacached_l1_ns_entries) */
    bool ready;
} l1;

void l1_init(size_t max_bytes)
{
    memset(&l1, 0, sizeof(l1)); /* a fresh tier, clock included (tests re-init) */
    dict_init(&l1.tombs);
    dict_init(&l1.per_ns);
    l1.max_bytes = max_bytes;
    l1.all_floor = INT64_MIN;
    l1.ready = true;
}

/* ---------------------------------------------------------------------------
 * Packing
 * ------------------------------------------------------------------------- */

static uint8_t *put_uv(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Only our own bytes are read back: no bounds to check but the 10 bytes a
 * 64-bit varint may take. */
static uint64_t get_uv(const uint8_t **pp)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) break;
    }
    *pp = p;
    return v;
}

/* Signed values (differences may be negative) as zigzag varints; the
 * differences are taken in unsigned arithmetic, which wraps, so any two
 * int64 values round-trip. */
static uint8_t *put_sv(uint8_t *p, int64_t v)
{
    uint64_t u = (uint64_t)v;
    return put_uv(p, (u << 1) ^ (v < 0 ? UINT64_MAX : 0));
}

static int64_t get_sv(const uint8_t **pp)
{
    uint64_t u = get_uv(pp);
    return (int64_t)((u >> 1) ^ (0 - (u & 1)));
}

static int64_t diff(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a - (uint64_t)b);
}

static int64_t add(int64_t a, int64_t d)
{
    return (int64_t)((uint64_t)a + (uint64_t)d);
}

/* The key and value of an item. */
static const char *item_key(const item_t *it, size_t *klen, size_t *vlen)
{
    const uint8_t *p = it->data;
    *klen = (size_t)get_uv(&p);
    *vlen = (size_t)get_uv(&p);
    return (const char *)p;
}

/* The whole entry; out->value points into the item. */
static void item_entry(const item_t *it, entry_t *out)
{
    size_t klen, vlen;
    const char *key = item_key(it, &klen, &vlen);
    const uint8_t *p = (const uint8_t *)key + klen + vlen;
    out->value = key + klen;
    out->len = vlen;
    out->kind = (entry_kind_t)*p++;
    out->version = get_sv(&p);
    out->gen = get_sv(&p);
    out->stored_at = get_sv(&p);
    out->fresh_until = add(out->stored_at, get_sv(&p));
    out->stale_until = add(out->fresh_until, get_sv(&p));
    out->error_until = add(out->fresh_until, get_sv(&p));
    out->fetch_ms = get_sv(&p);
}

/* What an item of klen, vlen and this many header bytes costs: the
 * allocation with malloc's header and rounding, and its table slot at
 * the table's typical load. */
static size_t footprint(size_t klen, size_t vlen, size_t packed)
{
    size_t alloc = ITEM_HEAD + packed + klen + vlen;
    return ((alloc + 8 + 15) & ~(size_t)15) + 12;
}

static size_t item_size(const item_t *it)
{
    size_t klen, vlen;
    const char *key = item_key(it, &klen, &vlen);
    const uint8_t *p = (const uint8_t *)key + klen + vlen + 1;
    for (int i = 0; i < 7; i++)
        get_sv(&p);
    return footprint(klen, vlen, (size_t)(p - it->data) - klen - vlen);
}

/* ---------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------- */

static size_t home(const char *key, size_t klen)
{
    return (size_t)dict_hash(key, klen) & (l1.cap - 1);
}

static bool item_is(const item_t *it, const char *key, size_t klen)
{
    size_t ilen, vlen;
    const char *ikey = item_key(it, &ilen, &vlen);
    return ilen == klen && memcmp(ikey, key, klen) == 0;
}

/* The slot holding key, or the empty one where it would go. */
static size_t find(const char *key, size_t klen)
{
    size_t i = home(key, klen);
    while (l1.slots[i] && !item_is(l1.slots[i], key, klen))
        i = (i + 1) & (l1.cap - 1);
    return i;
}

static void place(item_t *it)
{
    size_t klen, vlen;
    const char *key = item_key(it, &klen, &vlen);
    size_t i = home(key, klen);
    while (l1.slots[i])
        i = (i + 1) & (l1.cap - 1);
    l1.slots[i] = it;
}

/* Room for one more at a load of at most 4/5: probes stay short, and the
 * table costs 10 to 20 bytes per item. */
static void reserve_one(void)
{
    if (l1.cap && (l1.count + 1) * 5 <= l1.cap * 4) return;
    item_t **old = l1.slots;
    size_t ocap = l1.cap;
    l1.cap = ocap ? 2 * ocap : 64;
    l1.slots = xcalloc(l1.cap, sizeof(*l1.slots));
    for (size_t i = 0; i < ocap; i++)
        if (old[i]) place(old[i]);
    free(old);
}

/* Empty slot i and move up what probed past it (no tombstones). */
static void remove_at(size_t i)
{
    size_t mask = l1.cap - 1, j = i;
    l1.slots[i] = NULL;
    for (;;) {
        j = (j + 1) & mask;
        item_t *it = l1.slots[j];
        if (!it) break;
        size_t klen, vlen;
        const char *key = item_key(it, &klen, &vlen);
        size_t h = home(key, klen);
        /* it may move to i unless its home lies cyclically in (i, j] */
        if (((j - h) & mask) >= ((j - i) & mask)) {
            l1.slots[i] = it;
            l1.slots[j] = NULL;
            i = j;
        }
    }
}

/* The item count of the namespace in key (an entry key), made on first
 * use when create; NULL for a key that is not an entry's. Counted as items
 * come and go, never on a hit. */
static size_t *ns_counter(const char *key, size_t klen, bool create)
{
    const char *ns, *id;
    size_t nslen, idlen;
    if (!keys_parse_entry(key, klen, &ns, &nslen, &id, &idlen)) return NULL;
    size_t *n = dict_get(&l1.per_ns, ns, nslen);
    if (!n && create) {
        n = xcalloc(1, sizeof(*n));
        dict_set(&l1.per_ns, ns, nslen, n);
    }
    return n;
}

static void drop_at(size_t i)
{
    item_t *it = l1.slots[i];
    size_t klen, vlen;
    const char *key = item_key(it, &klen, &vlen);
    size_t *n = ns_counter(key, klen, false);
    if (n && *n) (*n)--;
    l1.bytes -= item_size(it);
    l1.count--;
    remove_at(i);
    free(it);
}

/* Drop every item for which pred holds: collected first, as removing
 * moves items between slots. */
static void drop_where(bool (*pred)(const item_t *it, const void *arg), const void *arg)
{
    if (l1.count == 0) return;
    item_t **victims = xmalloc(l1.count * sizeof(*victims));
    size_t n = 0;
    for (size_t i = 0; i < l1.cap; i++)
        if (l1.slots[i] && pred(l1.slots[i], arg)) victims[n++] = l1.slots[i];
    for (size_t k = 0; k < n; k++) {
        size_t klen, vlen;
        const char *key = item_key(victims[k], &klen, &vlen);
        drop_at(find(key, klen));
    }
    free(victims);
}

/* ---------------------------------------------------------------------------
 * Eviction: oldest first
 *
 * Every live item's insertion number lies in [lo, next_seq). A pass drops
 * the items in the oldest sixteenth of that span and raises lo to the
 * oldest survivor, so each pass frees about a sixteenth of the tier (at
 * least the oldest item) and costs one scan of the table: a few slot
 * visits per item evicted. Numbers are compared as distances from lo, so
 * they may wrap; an item that outlived 2^32 insertions (never under
 * eviction pressure meanwhile) only takes its turn out of order.
 * ------------------------------------------------------------------------- */

static bool older_than(const item_t *it, const void *arg)
{
    uint32_t w = *(const uint32_t *)arg;
    return it->seq - l1.lo < w || it->seq - l1.lo >= l1.next_seq - l1.lo;
}

static void evict_pass(void)
{
    uint32_t span = l1.next_seq - l1.lo;
    uint32_t w = span / 16 ? span / 16 : 1;
    drop_where(older_than, &w);
    uint32_t oldest = span; /* distance from lo of the oldest survivor */
    for (size_t i = 0; i < l1.cap; i++)
        if (l1.slots[i] && l1.slots[i]->seq - l1.lo < oldest) oldest = l1.slots[i]->seq - l1.lo;
    l1.lo += oldest;
}

/* ---------------------------------------------------------------------------
 * Tombstones
 * ------------------------------------------------------------------------- */

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

/* ---------------------------------------------------------------------------
 * Items
 * ------------------------------------------------------------------------- */

/* Items keep their expiry in 32 bits, as ms from l1.base. Once an expiry
 * is 2^31 ms (24 days) past the base and the clock 2^30 ms (12 days), the
 * base moves up to the clock (one pass over the items, at most every 12
 * days; what expired meanwhile reads as expiring at the new base, i.e.
 * expired). An expiry more than 2^32 ms past the base (an l1_ttl over 24
 * days) is cut to that. */
static uint32_t relative_expiry(uint64_t expires_mono)
{
    if (expires_mono > l1.base && expires_mono - l1.base > UINT32_MAX / 2) {
        uint64_t nb = l1.now;
        if (l1.count == 0 && expires_mono - UINT32_MAX / 4 > nb) nb = expires_mono - UINT32_MAX / 4;
        if (nb > l1.base && nb - l1.base >= UINT32_MAX / 4) {
            for (size_t i = 0; i < l1.cap; i++) {
                item_t *it = l1.slots[i];
                if (!it) continue;
                uint64_t abs = l1.base + it->expires;
                it->expires = abs > nb ? (uint32_t)(abs - nb) : 0;
            }
            l1.base = nb;
        }
    }
    if (expires_mono <= l1.base) return 0;
    uint64_t rel = expires_mono - l1.base;
    return rel > UINT32_MAX ? UINT32_MAX : (uint32_t)rel;
}

bool l1_get(const char *key, size_t klen, uint64_t now_mono, bool ignore_expiry, entry_t *out)
{
    if (!l1.ready) return false;
    tombs_expire(now_mono);
    if (l1.count == 0) return false;
    size_t i = find(key, klen);
    item_t *it = l1.slots[i];
    if (!it) return false;
    if (now_mono >= l1.base + it->expires && !ignore_expiry) {
        drop_at(i);
        return false;
    }
    item_entry(it, out);
    return true;
}

void l1_put(const char *key, size_t klen, const entry_t *e, uint64_t expires_mono)
{
    if (!l1.ready) return;
    /* An item it holds came after the invalidation: newer than e, keep it. */
    if (!allowed(key, klen, e->stored_at)) return;
    l1_del(key, klen); /* first: an older item must not outlive a newer value */
    uint8_t head[2 * 10], tail[1 + 7 * 10];
    uint8_t *h = put_uv(put_uv(head, klen), e->len);
    uint8_t *t = tail;
    *t++ = (uint8_t)e->kind;
    t = put_sv(t, e->version);
    t = put_sv(t, e->gen);
    t = put_sv(t, e->stored_at);
    t = put_sv(t, diff(e->fresh_until, e->stored_at));
    t = put_sv(t, diff(e->stale_until, e->fresh_until));
    t = put_sv(t, diff(e->error_until, e->fresh_until));
    t = put_sv(t, e->fetch_ms);
    size_t hl = (size_t)(h - head), tl = (size_t)(t - tail);
    size_t size = footprint(klen, e->len, hl + tl);
    if (size > l1.max_bytes / 8) return; /* one item may not flush the tier */
    while (l1.count && l1.bytes + size > l1.max_bytes)
        evict_pass();
    item_t *it = xmalloc(ITEM_HEAD + hl + klen + e->len + tl);
    it->expires = relative_expiry(expires_mono);
    it->seq = l1.next_seq++;
    uint8_t *p = it->data;
    memcpy(p, head, hl);
    p += hl;
    memcpy(p, key, klen);
    p += klen;
    if (e->len) memcpy(p, e->value, e->len);
    p += e->len;
    memcpy(p, tail, tl);
    if (l1.count == 0) l1.lo = it->seq;
    reserve_one();
    place(it);
    l1.count++;
    l1.bytes += size;
    size_t *n = ns_counter(key, klen, true);
    if (n) (*n)++;
}

void l1_del(const char *key, size_t klen)
{
    if (!l1.ready || l1.count == 0) return;
    size_t i = find(key, klen);
    if (l1.slots[i]) drop_at(i);
}

typedef struct glob_arg {
    const char *glob;
    size_t len;
} glob_arg_t;

static bool key_matches(const item_t *it, const void *arg)
{
    const glob_arg_t *g = arg;
    size_t klen, vlen;
    const char *key = item_key(it, &klen, &vlen);
    return glob_match(g->glob, g->len, key, klen);
}

void l1_del_matching(const char *glob, size_t len)
{
    if (!l1.ready) return;
    glob_arg_t g = {glob, len};
    drop_where(key_matches, &g);
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
    for (size_t i = 0; i < l1.cap; i++) {
        free(l1.slots[i]);
        l1.slots[i] = NULL;
    }
    l1.count = 0;
    l1.bytes = 0;
    size_t b;
    for (dict_entry_t *d = dict_first(&l1.per_ns, &b); d; d = dict_next(&l1.per_ns, &b, d))
        *(size_t *)d->value = 0;
}

size_t l1_entries(void)
{
    return l1.ready ? l1.count : 0;
}

size_t l1_ns_entries(const char *ns, size_t len)
{
    const size_t *n = l1.ready ? dict_get(&l1.per_ns, ns, len) : NULL;
    return n ? *n : 0;
}

size_t l1_bytes(void)
{
    return l1.bytes;
}

size_t l1_item_header_size(void)
{
    return ITEM_HEAD;
}

void l1_close(void)
{
    if (!l1.ready) return;
    l1_clear();
    free(l1.slots);
    l1.slots = NULL;
    l1.cap = 0;
    tomb_t *t;
    while ((t = oldest_tomb()))
        tomb_drop(t);
    dict_free(&l1.tombs);
    size_t b;
    for (dict_entry_t *d = dict_first(&l1.per_ns, &b); d; d = dict_next(&l1.per_ns, &b, d))
        free(d->value);
    dict_free(&l1.per_ns);
    l1.ready = false;
}
