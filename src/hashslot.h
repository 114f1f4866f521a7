/* hashslot.h: the Redis Cluster hash slot of a key (0..16383), as the
 * cluster computes it: CRC16 (XModem: polynomial 0x1021, initial value 0)
 * of the key's hash tag modulo 16384. The hash tag is the part between the
 * first '{' and the first '}' after it, when that part is not empty; else
 * the whole key. Used to route each command to the master that owns the
 * slot, and to split multi-key commands per slot. */
#ifndef LC_HASHSLOT_H
#define LC_HASHSLOT_H

#include <stddef.h>
#include <stdint.h>

#define HASHSLOT_COUNT 16384

uint16_t hashslot_crc16(const void *data, size_t len);
/* The bytes that are hashed: the hash tag if there is one, else the key. */
void hashslot_tag(const char *key, size_t len, const char **tag, size_t *tlen);
unsigned hashslot_of(const char *key, size_t len);

#endif
