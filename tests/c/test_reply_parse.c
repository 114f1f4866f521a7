/* test_reply_parse.c: the command link's reply parser (src/reply_parse.c)
 * must build the trees hiredis's own reader builds, for every kind of
 * reply, in any split of the input, and stop at the same reply on a
 * protocol error. Each stream is fed to hiredis's reader and to the parser
 * (the way backend.c drives it: bytes accumulate, complete replies are
 * consumed from the front); every reply is rendered as text. The parser
 * always gets an exact-size copy of its bytes, so ASan sees any read or
 * write past them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "buf.h"
#include "reply_parse.h"
#include "util.h"
#include "check.h"
#include "reply_render.h"

/* hiredis's reader: s[0..n) in chunks of chunk bytes (0: whole). */
static void run_hiredis(const char *s, size_t n, size_t chunk, buf_t *out)
{
    run_reader(NULL, s, n, chunk, false, out);
}

/* The parser, as backend.c drives it; err gets the last error text. */
static void run_parser(const char *s, size_t n, size_t chunk, buf_t *out, char *err, size_t errlen)
{
    reply_parser_t p;
    reply_parser_init(&p);
    buf_t have = {0};
    buf_reset(out);
    if (err) err[0] = '\0';
    size_t pos = 0;
    while (pos < n) {
        size_t take = chunk && n - pos > chunk ? chunk : n - pos;
        buf_append(&have, s + pos, take);
        pos += take;
        for (int guard = 0; guard < 10000 && have.len; guard++) {
            char *copy = xmalloc(have.len);
            memcpy(copy, have.data, have.len);
            size_t used = 0;
            redisReply *reply = NULL;
            int rc = reply_parse(&p, copy, have.len, &used, &reply);
            if (rc == 1) {
                CHECK(used > 0 && used <= have.len);
                render(reply, out);
                buf_consume(&have, used);
            } else if (rc < 0) {
                buf_append_str(out, "!");
                if (err) snprintf(err, errlen, "%s", p.err);
                pos = n;
            }
            free(copy);
            if (rc != 1) break;
        }
    }
    buf_free(&have);
    reply_parser_free(&p);
    buf_append(out, "", 1);
    out->len--;
}

static int agree(const char *s, size_t n)
{
    buf_t want = {0}, got = {0};
    int bad = 0;
    for (size_t chunk = 0; chunk <= n && chunk < 64; chunk++) {
        run_hiredis(s, n, chunk, &want);
        run_parser(s, n, chunk, &got, NULL, 0);
        if ((want.len != got.len || memcmp(want.data, got.data, want.len) != 0) && bad++ < 2) {
            print_escaped("default reader", want.data, want.len);
            print_escaped("arena reader  ", got.data, got.len);
        }
    }
    buf_free(&want);
    buf_free(&got);
    return bad == 0;
}

#define AGREE(lit) CHECK(agree((lit), sizeof(lit) - 1))

static void test_every_type(void)
{
    AGREE("+OK\r\n-ERR wrong\r\n:42\r\n:-7\r\n$3\r\nabc\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n");
    AGREE("$5\r\na\0b\r\n\r\n");  /* binary, with a CRLF inside */
    AGREE("+a\nb\r\n-\r\n+\r\n"); /* a bare LF in a status; empty lines */
}

static void test_arrays(void)
{
    /* an MGET: entries and nils */
    AGREE("*4\r\n$3\r\nLC1\r\n$-1\r\n$5\r\nhello\r\n$0\r\n\r\n");
    /* a SCAN reply: cursor, then an array of names */
    AGREE("*2\r\n$2\r\n17\r\n*3\r\n$1\r\na\r\n$2\r\nbb\r\n$3\r\nccc\r\n");
    /* nested, mixed, empty inside */
    AGREE("*3\r\n*0\r\n*2\r\n:1\r\n*1\r\n+x\r\n-e\r\n");
    AGREE("*2\r\n*-1\r\n$-1\r\n");
}

static void test_large_replies(void)
{
    /* Large elements and many small ones, whole and in 1000-byte reads. */
    buf_t s = {0};
    buf_append_str(&s, "*3\r\n");
    for (int i = 0; i < 3; i++) {
        buf_printf(&s, "$%d\r\n", 20000 + i);
        for (int j = 0; j < 20000 + i; j++)
            buf_append(&s, &"xyz"[j % 3], 1);
        buf_append_str(&s, "\r\n");
    }
    buf_append_str(&s, "*500\r\n");
    for (int i = 0; i < 500; i++)
        buf_printf(&s, "$%d\r\n%0*d\r\n", i % 40, i % 40, 0);
    buf_t want = {0}, got = {0};
    run_hiredis(s.data, s.len, 0, &want);
    run_parser(s.data, s.len, 0, &got, NULL, 0);
    CHECK(want.len == got.len && memcmp(want.data, got.data, want.len) == 0);
    run_parser(s.data, s.len, 1000, &got, NULL, 0);
    CHECK(want.len == got.len && memcmp(want.data, got.data, want.len) == 0);
    buf_free(&s);
    buf_free(&want);
    buf_free(&got);
}

static void test_malformed(void)
{
    AGREE("?what\r\n");
    AGREE("*2\r\n$3\r\nabc\r\n!x\r\n"); /* an error half way through an array */
    AGREE("*2\r\n*1\r\n$1\r\na\r\n@\r\n");
    AGREE("$3\r\nab"); /* incomplete: nothing */
    AGREE("*3\r\n$1\r\na\r\n");
    AGREE(":1\r\n$-2\r\n");
}

/* What the parser refuses on its own terms, with its reasons. */
static int refuses(const char *s, size_t n, const char *why, size_t chunks)
{
    buf_t out = {0};
    char err[128];
    int ok = 1;
    for (size_t chunk = 0; chunk < chunks && ok; chunk++) {
        run_parser(s, n, chunk, &out, err, sizeof(err));
        ok = out.len && out.data[out.len - 1] == '!' && strstr(err, why) != NULL;
        if (!ok) print_escaped(err, out.data, out.len);
    }
    buf_free(&out);
    return ok;
}

#define REFUSES(lit, why) CHECK(refuses((lit), sizeof(lit) - 1, (why), 8))

static void test_limits(void)
{
    REFUSES(":12a\r\n", "bad integer");
    REFUSES(":\r\n", "bad integer");
    REFUSES(":99999999999999999999\r\n", "bad integer");
    REFUSES("$x\r\n", "bad length");
    REFUSES("$536870913\r\n", "bulk too long");
    REFUSES("*-2\r\n", "bad length");
    REFUSES("*2147483648\r\n", "array too long");
    REFUSES("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "too deep");
    REFUSES("%1\r\n", "unknown reply type");
    REFUSES("$3\r\nabcXY", "no CRLF after a bulk"); /* hiredis 0.14 skips any two bytes */
    /* eight levels are fine */
    buf_t out = {0};
    const char deep[] = "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n";
    run_parser(deep, sizeof(deep) - 1, 0, &out, NULL, 0);
    CHECK(strcmp(out.data, "*1[*1[*1[*1[*1[*1[*1[*1[:1;];];];];];];];];") == 0);
    /* a status line that never ends is refused once it passes 1 MiB */
    buf_t big = {0};
    buf_append_str(&big, "+");
    for (int i = 0; i < 1024 * 1024 + 8; i++)
        buf_append(&big, "x", 1);
    CHECK(refuses(big.data, big.len, "line too long", 1));
    buf_free(&big);
    buf_free(&out);
    /* INT64 edges */
    AGREE(":9223372036854775807\r\n:-9223372036854775808\r\n");
}

int main(void)
{
    RUN(test_every_type);
    RUN(test_arrays);
    RUN(test_large_replies);
    RUN(test_limits);
    RUN(test_malformed);
    return check_summary("reply_parse");
}
