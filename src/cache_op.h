/* cache_op.h: what a read asks of the cache, shared by the cache's API
 * (cache.h) and the files behind it (cache_int.h), which do not include
 * the API they implement. */
#ifndef LC_CACHE_OP_H
#define LC_CACHE_OP_H

typedef enum cache_op {
    CACHE_GET,
    CACHE_REFRESH,
    CACHE_PEEK,
    CACHE_TTL,
    CACHE_PTTL,
    CACHE_EXISTS, /* is there a live value: counted, no fill (cache_exists) */
} cache_op_t;

#endif
