/* keys.h: every Redis key name luacached uses, built in one place. This is
 * the only module that reads cfg.prefix. The layout (docs/STORAGE.md):
 *
 *   PREFIX:{NS:ID}        entry of id ID in namespace NS
 *   PREFIX:{NS:ID}:lock   its fill lock (same hash tag, so same cluster slot)
 *   PREFIX:#tag:TAG       tag index: the entry keys carrying TAG
 *   PREFIX:#gen:NS        namespace generation (FLUSHNS)
 *   PREFIX:#events        pub/sub channel between instances
 *   PREFIX:{#wb:NS}:q     write-behind queue of NS (a Stream, consumer group)
 *   PREFIX:{#wb:NS}:dead  its dead letters (a Stream; same hash tag, same slot)
 *
 * The braces are a Redis Cluster hash tag: an entry and its lock share a
 * slot, so one script can check the lock and store the entry atomically. */
#ifndef LC_KEYS_H
#define LC_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Each appends to out. */
void keys_entry(buf_t *out, const char *ns, size_t nslen, const char *id, size_t idlen);
void keys_lock(buf_t *out, const char *entry_key, size_t len);
void keys_tag(buf_t *out, const char *tag, size_t len);
void keys_gen(buf_t *out, const char *ns);
void keys_channel(buf_t *out);
void keys_wb_queue(buf_t *out, const char *ns);
void keys_wb_dead(buf_t *out, const char *ns);
/* The Redis glob matching entry keys of ns whose id matches idglob (the
 * layout's own bytes escaped; the braces are not glob syntax in Redis). */
void keys_entry_glob(buf_t *out, const char *ns, const char *idglob, size_t idlen);

/* The parts of an entry key PREFIX:{NS:ID}: false when key is not one (a
 * tag set written by someone else, say). The namespace name is not
 * validated here. */
bool keys_parse_entry(const char *key, size_t len, const char **ns, size_t *nslen, const char **id,
                      size_t *idlen);
/* Where the id starts in an entry key of namespace nslen bytes long. */
size_t keys_entry_id_offset(size_t nslen);

#endif
