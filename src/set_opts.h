/* set_opts.h: SET's options (SPEC §3), parsed once into a small struct:
 *
 *   SET key value [NX | XX] [GET] [EX s | PX ms | EXAT unix-s | PXAT unix-ms | KEEPTTL]
 *
 * in any order, with Redis's own error texts: "syntax error" for an
 * unknown option, a missing number or a bad combination (NX with XX, two
 * expire options, an expire option with KEEPTTL), "invalid expire time in
 * 'set' command" for a number that is not a positive integer in range.
 * Pure: no I/O, so the unit tests run it directly. */
#ifndef LC_SET_OPTS_H
#define LC_SET_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum set_expire {
    SET_EXP_NONE,
    SET_EXP_EX,
    SET_EXP_PX,
    SET_EXP_EXAT,
    SET_EXP_PXAT
} set_expire_t;

typedef struct set_opts {
    bool nx, xx;  /* only if no live entry / only if one */
    bool get;     /* answer the old value (nil if none) */
    bool keepttl; /* keep the old entry's deadlines */
    set_expire_t expire;
    long long n; /* the expire option's number */
} set_opts_t;

/* Parse the n options args[0..n) (lens[i] their lengths). 0, or -1 with
 * *err set to the error text (without "ERR "). */
int set_opts_parse(const char *const *args, const size_t *lens, long n, set_opts_t *o,
                   const char **err);

/* Milliseconds the new entry stays fresh at wall-clock time now_ms: >= 0,
 * an absolute time already past giving 0; -1 when no expire option was
 * given (the policy's TTL). */
long long set_opts_ttl_ms(const set_opts_t *o, int64_t now_ms);

/* NX, XX, GET or KEEPTTL: the SET must read the old entry, in Redis, in
 * the same script as it writes (store.h, store_set_cond). */
static inline bool set_opts_conditional(const set_opts_t *o)
{
    return o->nx || o->xx || o->get || o->keepttl;
}

#endif
