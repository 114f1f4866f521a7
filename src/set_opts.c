/* set_opts.c: SET's options (see set_opts.h). */
#include "set_opts.h"

#include "util.h"

/* Largest numbers accepted: 10,000 years as a duration (as before), and
 * 2^53 ms as an absolute time (entry.h, ENTRY_TIME_MAX). */
#define MAX_EX_S    315360000000LL
#define MAX_PX_MS   315360000000000LL
#define MAX_PXAT_MS 9007199254740992LL

static const char SYNTAX[] = "syntax error";
static const char BAD_EXPIRE[] = "invalid expire time in 'set' command";

int set_opts_parse(const char *const *args, const size_t *lens, long n, set_opts_t *o,
                   const char **err)
{
    *o = (set_opts_t){0};
    for (long i = 0; i < n; i++) {
        const char *a = args[i];
        size_t len = lens[i];
        set_expire_t exp = SET_EXP_NONE;
        if (eq_nocase(a, len, "nx") && !o->xx) {
            o->nx = true;
        } else if (eq_nocase(a, len, "xx") && !o->nx) {
            o->xx = true;
        } else if (eq_nocase(a, len, "get")) {
            o->get = true;
        } else if (eq_nocase(a, len, "keepttl") && o->expire == SET_EXP_NONE) {
            o->keepttl = true;
        } else if (eq_nocase(a, len, "ex")) {
            exp = SET_EXP_EX;
        } else if (eq_nocase(a, len, "px")) {
            exp = SET_EXP_PX;
        } else if (eq_nocase(a, len, "exat")) {
            exp = SET_EXP_EXAT;
        } else if (eq_nocase(a, len, "pxat")) {
            exp = SET_EXP_PXAT;
        } else {
            *err = SYNTAX;
            return -1;
        }
        if (exp == SET_EXP_NONE) continue;
        /* One expire option, not with KEEPTTL, and its number follows. */
        if (o->expire != SET_EXP_NONE || o->keepttl || i + 1 >= n) {
            *err = SYNTAX;
            return -1;
        }
        long long v;
        long long max = exp == SET_EXP_EX     ? MAX_EX_S
                        : exp == SET_EXP_PX   ? MAX_PX_MS
                        : exp == SET_EXP_EXAT ? MAX_PXAT_MS / 1000
                                              : MAX_PXAT_MS;
        i++;
        if (parse_ll(args[i], lens[i], &v) != 0 || v <= 0 || v > max) {
            *err = BAD_EXPIRE;
            return -1;
        }
        o->expire = exp;
        o->n = v;
    }
    return 0;
}

long long set_opts_ttl_ms(const set_opts_t *o, int64_t now_ms)
{
    long long ms;
    switch (o->expire) {
    case SET_EXP_EX:
        return o->n * 1000;
    case SET_EXP_PX:
        return o->n;
    case SET_EXP_EXAT:
        ms = o->n * 1000 - now_ms;
        break;
    case SET_EXP_PXAT:
        ms = o->n - now_ms;
        break;
    default:
        return -1;
    }
    return ms > 0 ? ms : 0;
}
