/* invalidate.h: invalidating many entries at once (SPEC §3): PURGE by
 * glob, PURGETAG by tag (purge.c), FLUSHNS by namespace generation
 * (nsgen.c). Each reaches every instance sharing the Redis through the
 * broadcasts of bcast.c, and wins over fills in flight (docs/STAMPEDE.md).
 * Exact keys go through cache_del_keys (cache.h). */
#ifndef LC_INVALIDATE_H
#define LC_INVALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "cache.h"
#include "policy.h"

/* "NS:IDGLOB" with a literal, known NS. On failure writes the error reply
 * into err and returns -1; else *ns and the IDGLOB (*idglob, *idlen, which
 * point into pattern). */
int purge_parse(const char *pattern, size_t len, ns_t **ns, const char **idglob, size_t *idlen,
                buf_t *err);

/* Remove every entry of ns whose id matches idglob: SCAN MATCH in batches
 * of ~1000, one SCAN in flight, one UNLINK per matching entry (and DEL of
 * matching fill locks). cb gets the number of entries removed. count: add
 * it to ns's invalidations_purge (PURGE; EVENT counts its own). */
void purge_pattern(ns_t *ns, const char *idglob, size_t idlen, bool count, cache_inval_cb cb,
                   void *priv);

/* Remove every entry indexed under tag (any namespace): SSCAN the tag's set
 * in batches of ~500, one batch in flight, UNLINK each member and its lock,
 * SREM what was handled. count: add to each entry's namespace's
 * invalidations_tag. */
void purge_tag(const char *tag, size_t len, bool count, cache_inval_cb cb, void *priv);

/* FLUSHNS: move ns to a new generation (one INCR; O(1) of its size). cb
 * gets 0 removed (entries are not enumerated). count: bump
 * invalidations_flush. */
void flush_ns(ns_t *ns, bool count, cache_inval_cb cb, void *priv);

#endif
