/* test_sink.c: unit tests of the reply sink (src/sink.h, src/sink.c): the
 * version-dependent encodings byte for byte, and that the inline calls
 * reach the sink's operations (a sink without hold/release may be held). */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "check.h"
#include "sink.h"

/* b must hold exactly the string want; it is then emptied. */
static int buf_is(buf_t *b, const char *want)
{
    int ok = b->len == strlen(want) && memcmp(b->data, want, b->len) == 0;
    if (!ok) fprintf(stderr, "got '%.*s', wanted '%s'\n", (int)b->len, b->data, want);
    buf_reset(b);
    return ok;
}

static void test_null(void)
{
    buf_t b = {0};
    sink_null(SINK_RESP2, &b);
    CHECK(buf_is(&b, "$-1\r\n"));
    sink_null(SINK_RESP3, &b);
    CHECK(buf_is(&b, "_\r\n"));
    buf_free(&b);
}

static void test_map(void)
{
    buf_t b = {0};
    sink_map(SINK_RESP2, &b, 7); /* HELLO's: seven pairs */
    CHECK(buf_is(&b, "*14\r\n"));
    sink_map(SINK_RESP2, &b, 0);
    CHECK(buf_is(&b, "*0\r\n"));
    sink_map(SINK_RESP3, &b, 7);
    CHECK(buf_is(&b, "%7\r\n"));
    sink_map(SINK_RESP3, &b, 123456789);
    CHECK(buf_is(&b, "%123456789\r\n"));
    buf_free(&b);
}

static void test_double(void)
{
    buf_t b = {0};
    sink_double(SINK_RESP3, &b, 60);
    CHECK(buf_is(&b, ",60\r\n"));
    sink_double(SINK_RESP3, &b, 0.1); /* the shortest text that reads back */
    CHECK(buf_is(&b, ",0.1\r\n"));
    sink_double(SINK_RESP3, &b, 1.0 / 3);
    CHECK(buf_is(&b, ",0.3333333333333333\r\n"));
    sink_double(SINK_RESP3, &b, -2.5e-300);
    CHECK(buf_is(&b, ",-2.5e-300\r\n"));
    sink_double(SINK_RESP3, &b, 1.0 / 0.0);
    CHECK(buf_is(&b, ",inf\r\n"));
    sink_double(SINK_RESP3, &b, -1.0 / 0.0);
    CHECK(buf_is(&b, ",-inf\r\n"));
    sink_double(SINK_RESP3, &b, 0.0 / 0.0);
    CHECK(buf_is(&b, ",nan\r\n"));
    sink_double(SINK_RESP2, &b, 1.5);
    CHECK(buf_is(&b, "$3\r\n1.5\r\n"));
    buf_free(&b);
}

static void test_verbatim(void)
{
    buf_t b = {0};
    sink_verbatim(SINK_RESP3, &b, "a:1\r\n", 5);
    CHECK(buf_is(&b, "=9\r\ntxt:a:1\r\n\r\n"));
    sink_verbatim(SINK_RESP2, &b, "a:1\r\n", 5);
    CHECK(buf_is(&b, "$5\r\na:1\r\n\r\n"));
    sink_verbatim(SINK_RESP3, &b, "", 0);
    CHECK(buf_is(&b, "=4\r\ntxt:\r\n"));
    buf_free(&b);
}

/* A sink over one buffer that counts its calls. */
typedef struct test_sink {
    sink_t sink; /* first: the ops cast back */
    buf_t buf;
    int outs, finishes, holds, releases;
} test_sink_t;

static buf_t *t_out(sink_t *s)
{
    test_sink_t *t = (test_sink_t *)s;
    t->outs++;
    return &t->buf;
}

static void t_finish(sink_t *s)
{
    ((test_sink_t *)s)->finishes++;
}

static void t_hold(sink_t *s)
{
    ((test_sink_t *)s)->holds++;
}

static void t_release(sink_t *s)
{
    ((test_sink_t *)s)->releases++;
}

static void test_ops(void)
{
    static const sink_ops_t full = {t_out, t_finish, t_hold, t_release};
    static const sink_ops_t bare = {.out = t_out, .finish = t_finish};
    test_sink_t t = {.sink = {.ops = &full, .proto = SINK_RESP2}};
    sink_hold_input(&t.sink);
    sink_null(t.sink.proto, sink_out(&t.sink));
    sink_release_input(&t.sink);
    sink_finish(&t.sink);
    CHECK(t.outs == 1 && t.finishes == 1 && t.holds == 1 && t.releases == 1);
    CHECK(buf_is(&t.buf, "$-1\r\n"));
    t.sink.ops = &bare; /* no input to hold: the calls do nothing */
    sink_hold_input(&t.sink);
    sink_release_input(&t.sink);
    CHECK(t.holds == 1 && t.releases == 1);
    buf_free(&t.buf);
}

int main(void)
{
    RUN(test_null);
    RUN(test_map);
    RUN(test_double);
    RUN(test_verbatim);
    RUN(test_ops);
    return check_summary("sink");
}
