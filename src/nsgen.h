/* nsgen.h: namespace generations, which make FLUSHNS O(1) (nsgen.c,
 * docs/STORAGE.md). FLUSHNS itself is flush_ns (invalidate.h). */
#ifndef LC_NSGEN_H
#define LC_NSGEN_H

#include "policy.h"

/* Register on the bus: a generation seen (BUS_GEN_SEEN) is learnt, and
 * every namespace's is read again when the subscription is re-established
 * (a "G" may have been missed). */
int nsgen_listen(void);
/* A newer generation is taken, and emitted as BUS_NS_FLUSHED. */
void nsgen_learn(ns_t *ns, long long gen);
void nsgen_sync(ns_t *ns); /* read (and repair) ns's generation in Redis */
void nsgen_sync_all(void);

#endif
