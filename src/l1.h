/* l1.h: the in-process tier in front of Redis (a policy's l1_ttl).
 *
 * A hit here costs a hash lookup and no Redis round trip. An item lives
 * l1_ttl seconds (never past its entry's freshness); invalidations in this
 * process drop it at once and those from other instances arrive by the
 * pub/sub broadcast (SPEC §3: within 100 ms). Total size is capped; the
 * oldest items go first (in batches of about a sixteenth of the tier). */
#ifndef LC_L1_H
#define LC_L1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "entry.h"

void l1_init(size_t max_bytes);
void l1_close(void);

/* Fill *out with the item for key if it has not expired at now_mono (ms);
 * out->value points into the tier and stays valid until the next l1 call.
 * ignore_expiry: serve past the item's l1 lifetime (Redis is down, so the
 * tier is all there is; the entry's own freshness still applies). */
bool l1_get(const char *key, size_t klen, uint64_t now_mono, bool ignore_expiry, entry_t *out);
/* Store a copy of e until expires_mono, unless an invalidation forbids it
 * (l1_forbid): then keep what the tier holds of the key (it is newer). */
void l1_put(const char *key, size_t klen, const entry_t *e, uint64_t expires_mono);
void l1_del(const char *key, size_t klen);
/* An invalidation of key: drop its item and, until until_mono, refuse
 * every entry stored (entry_t.stored_at, wall ms) at or before floor. A
 * Redis read sent before the invalidation may answer after it with the
 * value it removed; without this, that value would be cached again and
 * served for l1_ttl after the DEL or SET was acknowledged. */
void l1_forbid(const char *key, size_t klen, int64_t floor, uint64_t now_mono, uint64_t until_mono);
/* The same for every key matching a Redis glob (PURGE). The floor applies
 * to every key, to keep this O(items) with no per-pattern state. */
void l1_forbid_matching(const char *glob, size_t len, int64_t floor, uint64_t now_mono,
                        uint64_t until_mono);
/* Drop every item whose key matches a Redis glob (PURGE): O(items). */
void l1_del_matching(const char *glob, size_t len);
void l1_clear(void);

size_t l1_entries(void);
/* Of them, those of namespace ns (entry keys PREFIX:{NS:ID}). */
size_t l1_ns_entries(const char *ns, size_t len);
size_t l1_bytes(void);
/* Bytes of an item's fixed header (the rest is packed with its key and
 * value); for bench/l1_memory.sh and the unit test. */
size_t l1_item_header_size(void);

#endif
