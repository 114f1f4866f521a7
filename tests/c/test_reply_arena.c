/* test_reply_arena.c: hiredis replies built by src/reply_arena.c must be
 * the same trees hiredis's default reader builds, for every kind of reply,
 * in any split of the input, and a protocol error must be one for both.
 * Each stream is fed to two readers (default and arena) and every reply is
 * rendered as text; run under ASan, this also checks that the arena frees
 * everything and never writes past a block. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "buf.h"
#include "reply_arena.h"
#include "check.h"
#include "reply_render.h"

static void run(redisReplyObjectFunctions *fns, const char *s, size_t n, size_t chunk, buf_t *out)
{
    run_reader(fns, s, n, chunk, true, out);
}

static int agree(const char *s, size_t n)
{
    buf_t want = {0}, got = {0};
    int bad = 0;
    for (size_t chunk = 0; chunk <= n && chunk < 64; chunk++) {
        run(NULL, s, n, chunk, &want);
        run(&reply_arena_fns, s, n, chunk, &got);
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
    AGREE("$5\r\na\0b\r\n\r\n"); /* binary, with a CRLF inside */
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

static void test_large_replies_chain_blocks(void)
{
    /* Elements far bigger than the first block's guess, and many small
     * ones: both need chained blocks. */
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
    run(NULL, s.data, s.len, 0, &want);
    run(&reply_arena_fns, s.data, s.len, 0, &got);
    CHECK(want.len == got.len && memcmp(want.data, got.data, want.len) == 0);
    run(&reply_arena_fns, s.data, s.len, 1000, &got);
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
    AGREE("$3\r\nab"); /* incomplete: nothing, and the reader frees what it holds */
    AGREE("*3\r\n$1\r\na\r\n");
    AGREE("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"); /* too deep */
}

int main(void)
{
    RUN(test_every_type);
    RUN(test_arrays);
    RUN(test_large_replies_chain_blocks);
    RUN(test_malformed);
    return check_summary("reply_arena");
}
