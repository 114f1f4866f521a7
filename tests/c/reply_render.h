/* reply_render.h: for the tests of our Redis reply readers
 * (test_reply_parse.c, test_reply_arena.c): a reply tree rendered as text,
 * and a stream fed to a hiredis reader in chunks, so two readers' results
 * compare as strings. Static: each test file gets its own copy. */
#ifndef LC_TESTS_REPLY_RENDER_H
#define LC_TESTS_REPLY_RENDER_H

#include <stdbool.h>
#include <stdio.h>

#include <hiredis/hiredis.h>

#include "buf.h"
#include "check.h"

static void render(const redisReply *r, buf_t *out)
{
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        buf_printf(out, "%c%zu:",
                   r->type == REDIS_REPLY_STRING   ? '$'
                   : r->type == REDIS_REPLY_STATUS ? '+'
                                                   : '-',
                   r->len);
        buf_append(out, r->str, r->len);
        if (r->str[r->len] != '\0') buf_append_str(out, "<unterminated>");
        break;
    case REDIS_REPLY_INTEGER:
        buf_printf(out, ":%lld", r->integer);
        break;
    case REDIS_REPLY_NIL:
        buf_append_str(out, "nil");
        break;
    case REDIS_REPLY_ARRAY:
        buf_printf(out, "*%zu[", r->elements);
        for (size_t i = 0; i < r->elements; i++) {
            if (i) buf_append_str(out, ",");
            render(r->element[i], out);
        }
        buf_append_str(out, "]");
        break;
    default:
        buf_printf(out, "?%d", r->type);
    }
    buf_append_str(out, ";");
}

/* Feed s[0..n) in chunks of chunk bytes (0: whole) to a hiredis reader
 * with fns (NULL: hiredis's own), rendering each reply, and a protocol
 * error as "!" (with hiredis's text when errtext). */
static void run_reader(redisReplyObjectFunctions *fns, const char *s, size_t n, size_t chunk,
                       bool errtext, buf_t *out)
{
    redisReader *r = fns ? redisReaderCreateWithFunctions(fns) : redisReaderCreate();
    CHECK(r != NULL);
    buf_reset(out);
    size_t pos = 0;
    while (pos < n) {
        size_t take = chunk && n - pos > chunk ? chunk : n - pos;
        CHECK(redisReaderFeed(r, s + pos, take) == REDIS_OK);
        pos += take;
        for (int guard = 0; guard < 10000; guard++) {
            void *reply = NULL;
            if (redisReaderGetReply(r, &reply) != REDIS_OK) {
                buf_printf(out, "!%s", errtext ? r->errstr : "");
                pos = n;
                break;
            }
            if (!reply) break;
            render(reply, out);
            r->fn->freeObject(reply);
        }
    }
    redisReaderFree(r); /* frees a reply left half-built */
    buf_append(out, "", 1);
    out->len--;
}

#endif
