/* purge.c: PURGE (entries whose key matches a glob) and PURGETAG (entries
 * indexed under a tag), without ever blocking Redis (SPEC §3).
 *
 * Both walk Redis with a cursor, one batch in flight at a time: the batch's
 * UNLINKs (one per key: keys live in different cluster slots, SPEC §9) are
 * pipelined right behind the reply that listed them, and the next SCAN or
 * SSCAN goes behind those, so Redis never sees more than one batch of work
 * queued by a purge, and other clients' commands interleave between
 * batches. The whole walk is O(keys in the database) for PURGE (SCAN visits
 * every key; MATCH only filters) and O(members) for PURGETAG.
 *
 * On a Redis Cluster SCAN walks every master in turn (store_scan's cursor
 * names the node; the pattern cannot be confined to one slot, since the
 * hash tag is the whole NS:ID). A key migrating from a master not yet
 * walked to one already walked would be missed, so a walk during which a
 * slot may have changed hands (store_reshapes grew) is done again from
 * the start, up to PURGE_REWALKS times; UNLINKs are counted by what Redis
 * removed, so the count stays exact. PURGETAG's set is one key: its SSCAN
 * and UNLINKs follow redirects like any command.
 *
 * Winning over fills in flight (SPEC §3):
 *  - PURGE also matches fill locks (PREFIX:{NS:ID}:lock) and deletes them, so
 *    a fill holding one, on any instance, cannot store; and it broadcasts the
 *    glob ("P") before and after the walk, so every instance drops matching
 *    items of its in-process tier and stops matching fetches in flight from
 *    storing (also those without a lock: Redis was down, or a takeover).
 *  - A fetch's tags are only known when it returns, so PURGETAG cannot find
 *    fills in flight by their keys. Instead every instance remembers when a
 *    tag was last purged ("T" broadcast); a fetch that started before that
 *    and returns the tag is not stored (tag_purged_since). Across instances
 *    this holds once the broadcast has arrived (typically well under 1 ms).
 *    A fill indexes its tags before it stores the entry (fill.c), so a
 *    member found here may belong to a store still on its way: the lock is
 *    deleted before the entry, and the store either lands before the UNLINK
 *    or is refused.
 *  - PURGETAG answers once the UNLINKs and the "K" messages have been
 *    handled by Redis, so every instance has been sent the keys to drop
 *    from its in-process tier before the client hears the count.
 *
 * PURGETAG removes the members it handled from the tag's set (SREM) rather
 * than deleting the set at the end: an entry stored and indexed while the
 * walk runs was fetched after the purge began, and stays indexed. */
#include <stdlib.h>
#include <string.h>

#include "bcast.h"
#include "bus.h"
#include "glob.h"
#include "invalidate.h"
#include "keys.h"
#include "log.h"
#include "reply.h"
#include "store.h"
#include "util.h"

#define SCAN_COUNT    1000 /* keys SCAN looks at per call (a hint to Redis) */
#define SSCAN_COUNT   500  /* members per SSCAN */
#define PURGE_REWALKS 3    /* walks again after slots moved meanwhile */

typedef struct job {
    bool is_tag;
    ns_t *ns;   /* PURGE: the pattern's namespace */
    bool count; /* bump invalidations_purge / invalidations_tag */
    cache_inval_cb cb;
    void *priv;
    long outstanding; /* backend replies still to come */
    bool walk_done;   /* the cursor came back to 0, or the walk failed */
    bool failed;
    long long removed;
    buf_t glob;  /* PURGE: entry keys to remove, PREFIX:{NS:IDGLOB} */
    buf_t match; /* PURGE: what SCAN matches: entries and their locks */
    buf_t tkey;  /* PURGETAG: PREFIX:#tag:TAG */
    buf_t tag;
    buf_t bcast; /* PURGETAG: the batch's "K" message */
    char cursor[32];
    uint64_t reshapes; /* PURGE: store_reshapes() when the walk began */
    int rewalks;
} job_t;

typedef struct unlink_ctx {
    job_t *job;
    ns_t *ns; /* whose counter an existing entry bumps */
} unlink_ctx_t;

static void walk_next(job_t *j);

/* ---------------------------------------------------------------------------
 * Parsing PURGE's pattern
 * ------------------------------------------------------------------------- */

int purge_parse(const char *pattern, size_t len, ns_t **ns, const char **idglob, size_t *idlen,
                buf_t *err)
{
    const char *colon = memchr(pattern, ':', len);
    size_t nslen = colon ? (size_t)(colon - pattern) : len;
    if (!colon || nslen == 0 || glob_has_meta(pattern, nslen)) {
        reply_error(err, "PURGE pattern must start with a literal namespace, e.g. PURGE "
                         "user_widgets:5:*");
        return -1;
    }
    ns_t *found = nslen <= 128 && ns_name_valid(pattern, nslen) ? ns_find(pattern, nslen) : NULL;
    if (!found) {
        reply_error(err, "unknown namespace '%.*s'", (int)(nslen > 128 ? 128 : nslen), pattern);
        return -1;
    }
    *ns = found;
    *idglob = colon + 1;
    *idlen = len - nslen - 1;
    return 0;
}

/* ---------------------------------------------------------------------------
 * The job
 * ------------------------------------------------------------------------- */

static void job_free(job_t *j)
{
    buf_free(&j->glob);
    buf_free(&j->match);
    buf_free(&j->tkey);
    buf_free(&j->tag);
    buf_free(&j->bcast);
    free(j);
}

static void maybe_finish(job_t *j)
{
    if (!j->walk_done || j->outstanding > 0) return;
    if (!j->is_tag) {
        /* Again after the walk: a tier item refilled from an entry the walk
         * had not reached yet is dropped now. */
        bus_emit(BUS_KEYS_INVALIDATED, &(bus_msg_t){.key = j->glob.data, .len = j->glob.len});
        bcast_pattern(j->glob.data, j->glob.len);
    }
    j->cb(j->priv, j->removed,
          j->failed ? "backend unavailable, some entries may still be cached" : NULL);
    job_free(j);
}

static void on_unlinked(void *priv, const store_result_t *r)
{
    unlink_ctx_t *u = priv;
    job_t *j = u->job;
    if (r->status == STORE_OK) {
        j->removed += r->integer;
        if (j->count && u->ns) {
            if (j->is_tag)
                u->ns->stats.invalidations_tag += (uint64_t)r->integer;
            else
                u->ns->stats.invalidations_purge += (uint64_t)r->integer;
        }
    } else {
        j->failed = true;
    }
    free(u);
    j->outstanding--;
    maybe_finish(j);
}

static void on_keys_sent(void *priv, const store_result_t *r)
{
    job_t *j = priv;
    LC_UNUSED(r); /* lost: other instances' tiers expire by l1_ttl */
    j->outstanding--;
    maybe_finish(j);
}

static void unlink_key(job_t *j, ns_t *ns, const char *key, size_t len)
{
    unlink_ctx_t *u = xmalloc(sizeof(*u));
    u->job = j;
    u->ns = ns;
    j->outstanding++;
    if (store_unlink(key, len, on_unlinked, u) != 0) {
        j->outstanding--;
        j->failed = true;
        free(u);
    }
}

/* ---------------------------------------------------------------------------
 * PURGE
 * ------------------------------------------------------------------------- */

static bool is_lock_of_match(const job_t *j, const char *key, size_t len)
{
    return len > 5 && memcmp(key + len - 5, ":lock", 5) == 0 &&
           glob_match(j->glob.data, j->glob.len, key, len - 5);
}

static void purge_batch(job_t *j, const store_scan_t *items)
{
    for (size_t i = 0; i < items->n; i++) {
        const char *k = items->items[i];
        size_t klen = items->lens[i];
        if (glob_match(j->glob.data, j->glob.len, k, klen)) {
            unlink_key(j, j->ns, k, klen);
        } else if (is_lock_of_match(j, k, klen)) {
            /* a fill holding it, anywhere, can no longer store */
            store_del(k, klen);
        }
    }
}

/* ---------------------------------------------------------------------------
 * PURGETAG
 * ------------------------------------------------------------------------- */

/* An entry key of ours, PREFIX:{NS:ID}: its namespace (NULL if none is
 * known by that name), in *ok whether the key has that shape at all. A tag
 * set holds only keys we put there; the check keeps a set written by
 * someone else from deleting keys that are not cache entries. */
static ns_t *entry_ns(const char *key, size_t len, bool *ok)
{
    const char *ns, *id;
    size_t nslen, idlen;
    *ok = false;
    if (!keys_parse_entry(key, len, &ns, &nslen, &id, &idlen) || !ns_name_valid(ns, nslen))
        return NULL;
    *ok = true;
    return ns_find_any(ns, nslen);
}

static void tag_batch(job_t *j, const store_scan_t *items)
{
    buf_t lock = {0};
    for (size_t i = 0; i < items->n; i++) {
        const char *m = items->items[i];
        size_t mlen = items->lens[i];
        bool ok;
        ns_t *ns = entry_ns(m, mlen, &ok);
        if (!ok) continue;
        /* The lock first: a store in flight lands before the UNLINK or not
         * at all. */
        buf_reset(&lock);
        keys_lock(&lock, m, mlen);
        store_del(lock.data, lock.len);
        unlink_key(j, ns, m, mlen);
        bus_emit(BUS_KEY_INVALIDATED, &(bus_msg_t){.key = m, .len = mlen});
        bcast_keys_add(&j->bcast, m, mlen);
    }
    store_tag_remove(j->tkey.data, j->tkey.len, items->items, items->lens, items->n);
    j->outstanding++;
    if (bcast_keys_send(&j->bcast, on_keys_sent, j) != 0) j->outstanding--;
    buf_free(&lock);
}

/* ---------------------------------------------------------------------------
 * The walk
 * ------------------------------------------------------------------------- */

static void on_batch(void *priv, const store_scan_t *items)
{
    job_t *j = priv;
    j->outstanding--;
    size_t clen = items->status == STORE_OK ? strlen(items->cursor) : 0;
    if (items->status != STORE_OK || clen >= sizeof(j->cursor)) {
        if (items->status == STORE_ERROR)
            log_warn("%s failed: %s", j->is_tag ? "PURGETAG" : "PURGE", items->err);
        j->failed = true;
        j->walk_done = true;
    } else {
        memcpy(j->cursor, items->cursor, clen + 1);
        if (j->is_tag)
            tag_batch(j, items);
        else
            purge_batch(j, items);
        if (strcmp(j->cursor, "0") != 0) {
            walk_next(j);
        } else if (!j->is_tag && store_reshapes() != j->reshapes && j->rewalks < PURGE_REWALKS) {
            j->rewalks++;
            j->reshapes = store_reshapes();
            log_info("PURGE %.*s: cluster slots moved during the walk; walking again (%d of %d)",
                     (int)j->glob.len, j->glob.data, j->rewalks, PURGE_REWALKS);
            walk_next(j);
        } else {
            j->walk_done = true;
        }
    }
    maybe_finish(j);
}

static void walk_next(job_t *j)
{
    int rc;
    j->outstanding++;
    if (j->is_tag)
        rc = store_sscan(j->tkey.data, j->tkey.len, j->cursor, SSCAN_COUNT, on_batch, j);
    else
        rc = store_scan(j->cursor, j->match.data, j->match.len, SCAN_COUNT, on_batch, j);
    if (rc != 0) {
        j->outstanding--;
        j->failed = true;
        j->walk_done = true;
    }
}

static job_t *job_new(bool is_tag, bool count, cache_inval_cb cb, void *priv)
{
    job_t *j = xcalloc(1, sizeof(*j));
    j->is_tag = is_tag;
    j->count = count;
    j->cb = cb;
    j->priv = priv;
    memcpy(j->cursor, "0", 2);
    return j;
}

void purge_pattern(ns_t *ns, const char *idglob, size_t idlen, bool count, cache_inval_cb cb,
                   void *priv)
{
    job_t *j = job_new(false, count, cb, priv);
    j->ns = ns;
    /* The key layout's own bytes are literal; the id part is the caller's
     * glob. The braces are not glob syntax in Redis. */
    keys_entry_glob(&j->glob, ns->name, idglob, idlen);
    buf_append(&j->match, j->glob.data, j->glob.len);
    buf_append(&j->match, "*", 1); /* and PREFIX:{NS:ID}:lock */
    bus_emit(BUS_KEYS_INVALIDATED, &(bus_msg_t){.key = j->glob.data, .len = j->glob.len});
    bcast_pattern(j->glob.data, j->glob.len);
    j->reshapes = store_reshapes();
    walk_next(j);
    maybe_finish(j); /* Redis down: answers now */
}

void purge_tag(const char *tag, size_t len, bool count, cache_inval_cb cb, void *priv)
{
    job_t *j = job_new(true, count, cb, priv);
    buf_append(&j->tag, tag, len);
    keys_tag(&j->tkey, tag, len);
    bus_emit(BUS_TAG_PURGED, &(bus_msg_t){.key = tag, .len = len}); /* tags.c notes it */
    bcast_tag(tag, len);
    walk_next(j);
    maybe_finish(j);
}
