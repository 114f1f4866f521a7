/* l1.h: the in-process tier in front of Redis (a policy's l1_ttl).
 *
 * A hit here costs a hash lookup and no Redis round trip. An item lives
 * l1_ttl seconds (never past its entry's freshness); invalidations in this
 * process drop it at once and those from other instances arrive by the
 * pub/sub broadcast (SPEC §3: within 100 ms). Total size is capped; the
 * oldest items go first. */
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
void l1_put(const char *key, size_t klen, const entry_t *e, uint64_t expires_mono);
void l1_del(const char *key, size_t klen);
/* Drop every item whose key matches a Redis glob (PURGE): O(items). */
void l1_del_matching(const char *glob, size_t len);
void l1_clear(void);

size_t l1_entries(void);
size_t l1_bytes(void);

#endif
