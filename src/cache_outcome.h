/* cache_outcome.h: how the read of one key through its fill ended, as
 * fill.c tells its waiters (cache_int.h) and WARM's callback (cache.h).
 * Only the request layer (cache.c) turns an outcome into a reply, in its
 * sink's protocol version: a fill knows nothing of RESP. */
#ifndef LC_CACHE_OUTCOME_H
#define LC_CACHE_OUTCOME_H

#include <stddef.h>

typedef enum outcome_kind {
    OUTCOME_VALUE,     /* data: the value */
    OUTCOME_NOT_FOUND, /* the origin has none (negative entry or fetch) */
    OUTCOME_ERROR,     /* data: the error text (the reply adds "fetch failed: ") */
    OUTCOME_STALE,     /* data: an expired value, served for stale-if-error */
} outcome_kind_t;

typedef struct outcome {
    outcome_kind_t kind;
    const char *data; /* valid during the callback only */
    size_t len;
} outcome_t;

#endif
