/* write_through.h: SET and DEL of a namespace whose policy has write /
 * delete functions: the origin first, then the cache (docs/POLICIES.md,
 * "Write-through").
 *
 * SET runs write(id, value, ctx); on success what it returned (or the value
 * given) is stored and broadcast as by a plain SET (cache_set), which also
 * deletes the fill lock in the same script: a fill that began before the
 * write cannot store the older origin value over it, here or on another
 * instance (its token-checked store finds no lock), and a fill that begins
 * after reads the new entry. On failure the client gets "-ERR write failed:
 * ..." and the cache is not touched. A result over --max-value cannot be
 * cached: the old entry is dropped (the origin has the new value) and the
 * client gets an error saying so. DEL runs delete(id, ctx) for each key
 * whose namespace has one; keys whose origin delete failed stay cached,
 * and the reply is the first failure. Until the origin answers, the
 * client's next commands wait, so they see the write, as after a plain
 * SET. */
#ifndef LC_WRITE_THROUGH_H
#define LC_WRITE_THROUGH_H

#include <stdbool.h>
#include <stddef.h>

#include "cache.h"
#include "sink.h"

/* The key's policy writes through. */
bool write_through_set_wanted(const cache_key_t *key);
bool write_through_del_wanted(const cache_key_t *keys, long nkeys);

void write_through_set(sink_t *sink, const cache_key_t *key, const char *value, size_t vlen,
                       long long ttl_ms);
void write_through_del(sink_t *sink, const cache_key_t *keys, long nkeys);

#endif
