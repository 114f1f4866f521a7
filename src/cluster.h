/* cluster.h: routing commands over a Redis Cluster (backend internal).
 *
 * One pipelined direct link per master, made as the slot map names them;
 * each command goes to the owner of its key's slot. The map is learnt
 * from CLUSTER SLOTS on the seed nodes, and re-learnt after a MOVED, after
 * a node link is lost (until every slot has a live owner again) and every
 * CLUSTER_REFRESH_MS anyway. Redirections are followed here, so callers
 * never see them: MOVED updates the slot's owner and resends the command
 * there; ASK sends ASKING and the command to the node named, once; after
 * CLUSTER_MAX_REDIRECTS the caller gets the redirection as an error.
 * -TRYAGAIN and -CLUSTERDOWN reach the caller as errors (fail open).
 *
 * Per-node fail-open: a key whose master is unreachable fails at once
 * (cluster_link() NULL), the others are served as usual. */
#ifndef LC_CLUSTER_H
#define LC_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "link.h"

#define CLUSTER_MAX_REDIRECTS 5
#define CLUSTER_REFRESH_MS    10000

/* Start learning the map from url's hosts. on_up runs as each node link
 * comes up (before anything else is queued on it). */
void cluster_start(uv_loop_t *loop, const redis_url_t *url, long timeout_ms,
                   void (*on_up)(struct redis_link *link));
void cluster_close(void);

/* The up link of slot's master, or NULL. */
struct redis_link *cluster_link(unsigned slot);
/* Any up master link (round robin), or NULL: for commands with no key. */
struct redis_link *cluster_any(void);
/* The i-th master of the map as it is now (0 <= i < cluster_masters()),
 * its link when up, else NULL. */
size_t cluster_masters(void);
struct redis_link *cluster_master(size_t i);

/* Every slot has an owner whose link is up. */
bool cluster_up(void);
/* Sums over the node links. */
uint64_t cluster_errors_total(void);
uint64_t cluster_outages_total(void);
uint64_t cluster_redirects_total(void);
uint64_t cluster_refreshes_total(void);
/* Grows whenever a slot may have changed hands: a map load that moved
 * one, or a MOVED/ASK (a migration under way). A walk over every master
 * (PURGE's SCAN) that saw it grow may have missed a key in transit. */
uint64_t cluster_reshapes_total(void);

/* An address of a node of the cluster to subscribe on: the turn-th node
 * known (wrapping). false when none is known yet. */
bool cluster_node_addr(unsigned turn, char *host, size_t hostlen, int *port);

/* cb(priv) once every master link has answered everything sent to it
 * before this call (or is down): a broadcast about keys written on
 * several nodes must not overtake those writes. */
void cluster_barrier(void (*cb)(void *priv), void *priv);

#endif
