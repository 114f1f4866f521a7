/* test_set_opts.c: SET's option parser (set_opts.c): every option, any
 * order, Redis's error texts for bad combinations and numbers, and the
 * TTL each expire option gives. */
#include <string.h>

#include "check.h"
#include "set_opts.h"

/* Parse a NULL-terminated list of options; the error text or NULL. */
static const char *parse(set_opts_t *o, const char *const *args)
{
    size_t lens[16];
    long n = 0;
    while (args[n]) {
        lens[n] = strlen(args[n]);
        n++;
    }
    const char *err = NULL;
    int rc = set_opts_parse(args, lens, n, o, &err);
    return rc == 0 ? NULL : err;
}

#define OPTS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_each_option(void)
{
    set_opts_t o;
    CHECK(parse(&o, (const char *const[]){NULL}) == NULL);
    CHECK(!set_opts_conditional(&o) && o.expire == SET_EXP_NONE);
    CHECK(set_opts_ttl_ms(&o, 1000) == -1);
    CHECK(parse(&o, OPTS("nx")) == NULL && o.nx && !o.xx && set_opts_conditional(&o));
    CHECK(parse(&o, OPTS("XX")) == NULL && o.xx && !o.nx);
    CHECK(parse(&o, OPTS("Get")) == NULL && o.get);
    CHECK(parse(&o, OPTS("keepttl")) == NULL && o.keepttl && set_opts_conditional(&o));
    CHECK(parse(&o, OPTS("EX", "10")) == NULL && o.expire == SET_EXP_EX && o.n == 10);
    CHECK(set_opts_ttl_ms(&o, 5) == 10000 && !set_opts_conditional(&o));
    CHECK(parse(&o, OPTS("px", "1500")) == NULL && set_opts_ttl_ms(&o, 5) == 1500);
    CHECK(parse(&o, OPTS("EXAT", "2000")) == NULL && o.expire == SET_EXP_EXAT);
    CHECK(set_opts_ttl_ms(&o, 1999500) == 500);
    CHECK(parse(&o, OPTS("PXAT", "2000")) == NULL && set_opts_ttl_ms(&o, 1500) == 500);
    /* an absolute time already past: stale at once, never negative */
    CHECK(set_opts_ttl_ms(&o, 9000) == 0);
}

static void test_any_order(void)
{
    set_opts_t o;
    CHECK(parse(&o, OPTS("GET", "PX", "7", "NX")) == NULL);
    CHECK(o.get && o.nx && o.expire == SET_EXP_PX && o.n == 7);
    CHECK(parse(&o, OPTS("keepttl", "xx", "get")) == NULL && o.keepttl && o.xx && o.get);
    CHECK(parse(&o, OPTS("nx", "get")) == NULL && o.nx && o.get); /* Redis 7 allows it */
}

static void test_errors(void)
{
    set_opts_t o;
    const char *syntax = "syntax error", *bad = "invalid expire time in 'set' command";
    const char *e;
    CHECK((e = parse(&o, OPTS("NX", "XX"))) && strcmp(e, syntax) == 0);
    CHECK((e = parse(&o, OPTS("XX", "NX"))) && strcmp(e, syntax) == 0);
    CHECK((e = parse(&o, OPTS("EX", "1", "PX", "1"))) && strcmp(e, syntax) == 0);
    CHECK((e = parse(&o, OPTS("EX", "1", "KEEPTTL"))) && strcmp(e, syntax) == 0);
    CHECK((e = parse(&o, OPTS("KEEPTTL", "PXAT", "1"))) && strcmp(e, syntax) == 0);
    CHECK((e = parse(&o, OPTS("EX"))) && strcmp(e, syntax) == 0);
    CHECK((e = parse(&o, OPTS("FOO"))) && strcmp(e, syntax) == 0);
    CHECK((e = parse(&o, OPTS("EXX", "1"))) && strcmp(e, syntax) == 0);
    CHECK((e = parse(&o, OPTS("EX", "0"))) && strcmp(e, bad) == 0);
    CHECK((e = parse(&o, OPTS("PX", "-5"))) && strcmp(e, bad) == 0);
    CHECK((e = parse(&o, OPTS("EXAT", "abc"))) && strcmp(e, bad) == 0);
    CHECK((e = parse(&o, OPTS("EX", "315360000001"))) && strcmp(e, bad) == 0);
    CHECK((e = parse(&o, OPTS("PXAT", "9007199254740993"))) && strcmp(e, bad) == 0);
    CHECK(parse(&o, OPTS("EX", "315360000000")) == NULL);
}

int main(void)
{
    RUN(test_each_option);
    RUN(test_any_order);
    RUN(test_errors);
    return check_summary("test_set_opts");
}
