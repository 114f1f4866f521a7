/* cluster_map.h: which Redis Cluster master serves which hash slot, as
 * learnt from CLUSTER SLOTS and corrected by MOVED redirections. Pure data:
 * the routing code (backend) owns the links to the nodes, this only names
 * them by address.
 *
 * Nodes are kept by index, stable for the life of the map (an index is
 * never reused for another address), so a link per index can be kept
 * across refreshes of the map. */
#ifndef LC_CLUSTER_MAP_H
#define LC_CLUSTER_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "hashslot.h"

#define CLUSTER_MAX_NODES 64
#define CLUSTER_NO_NODE   0xFFFF

typedef struct cluster_node {
    char host[256]; /* IP literal or name, IPv6 without brackets */
    int port;
} cluster_node_t;

typedef struct cluster_map {
    uint16_t owner[HASHSLOT_COUNT]; /* node index, or CLUSTER_NO_NODE */
    cluster_node_t nodes[CLUSTER_MAX_NODES];
    size_t nnodes;
    size_t covered; /* slots with an owner */
} cluster_map_t;

void cluster_map_init(cluster_map_t *m); /* no slot owned, no node */

/* The index of the node at host:port, added if new; -1 when the table is
 * full or the host does not fit. */
int cluster_map_node(cluster_map_t *m, const char *host, size_t hlen, int port);

/* Replace every slot's owner by what a CLUSTER SLOTS reply says (masters
 * only: the first address of each range). An empty endpoint ("" or "?",
 * which Redis sends when it does not know its own address) means the node
 * that was asked, asked_host:asked_port. 0 on success; -1 with err filled
 * when the reply is not a slot map; then m is unchanged. */
int cluster_map_load(cluster_map_t *m, const redisReply *r, const char *asked_host, int asked_port,
                     char *err, size_t errlen);

/* The owner of slot, or CLUSTER_NO_NODE. */
static inline unsigned cluster_map_owner(const cluster_map_t *m, unsigned slot)
{
    return m->owner[slot & (HASHSLOT_COUNT - 1)];
}

/* A -MOVED or -ASK error: "MOVED 3999 127.0.0.1:6381", "ASK 3999 [::1]:6381".
 * true when text is one, with its parts filled (host NUL-terminated). */
typedef struct cluster_redirect {
    bool ask; /* ASK: this one command goes there (after ASKING); MOVED: the slot moved */
    unsigned slot;
    char host[256];
    int port;
} cluster_redirect_t;
bool cluster_parse_redirect(const char *text, size_t len, cluster_redirect_t *out);

#endif
