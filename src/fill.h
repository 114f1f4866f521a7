/* fill.h: one origin fetch per missing key across instances (fill.c,
 * docs/STAMPEDE.md). */
#ifndef LC_FILL_H
#define LC_FILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cache_int.h"
#include "entry.h"
#include "policy.h"

void fills_init(void);
/* Register fill's listeners on the bus: invalidations (key, glob,
 * namespace flush) keep fetches in flight from storing; another instance's
 * landed fill and a re-established subscription re-check remote waits. */
int fill_listen(void);
void fills_shutdown(void); /* fail every fill not fetching; no new fetches */
void fills_close(void);
size_t fills_in_flight(void);
/* A miss: wait for the key's fill, starting one if none is in flight here.
 * REFRESH ops always fetch (force). stale: an expired value kept for
 * stale-if-error, or NULL. */
void fill_wait(op_t *op, const entry_t *stale);
/* A fill clients wait on is in flight here: join it. */
bool fill_join_if_running(op_t *op);
/* Stale-while-revalidate and early refresh: one background fill across all
 * instances; nobody waits on it. */
void fill_background(ns_t *ns, const buf_t *rkey, const char *id, size_t idlen,
                     const entry_t *stale);
/* tag_clock() when the oldest fetch still running or storing here started
 * (the clock now if none): a tag purged before it concerns no fetch
 * (tags_listen). */
uint64_t fills_oldest_fetch(void);

#endif
