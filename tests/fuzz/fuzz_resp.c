/* fuzz_resp.c: the RESP request parser (src/resp.c) on arbitrary bytes cut
 * into arbitrary reads (fuzz_split.h). Checks, beyond the sanitizers:
 *  - resp_feed consumes all input on RESP_NEED_MORE, never more than given,
 *    and at least one byte on RESP_DONE;
 *  - the commands parsed and the final status (or error text) are the same
 *    whatever the split: the same bytes fed in one piece give the same
 *    transcript.
 * Flag bits (first byte >> 3): 1 unauthenticated limits, 2 small caps. */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fuzz_split.h"
#include "resp.h"

/* Append every command to t (argc, then each argument length-prefixed),
 * then how the stream ended. */
static void transcript(const resp_limits_t *lim, fuzz_split_t *split, buf_t *t)
{
    resp_parser_t p;
    resp_parser_init(&p, lim);
    int st = RESP_NEED_MORE;
    const uint8_t *chunk;
    size_t n;
    while (st != RESP_ERROR && (n = fuzz_split_next(split, &chunk)) > 0) {
        const char *in = (const char *)chunk;
        while (st != RESP_ERROR) {
            size_t used = 0;
            st = resp_feed(&p, in, n, &used);
            if (used > n) abort();
            in += used;
            n -= used;
            if (st == RESP_NEED_MORE) {
                if (n != 0) abort(); /* NEED_MORE must consume everything */
                break;
            }
            if (st == RESP_DONE) {
                if (used == 0) abort(); /* a command takes bytes */
                buf_printf(t, "cmd %ld:", p.argc);
                for (long i = 0; i < p.argc; i++) {
                    size_t alen;
                    const char *a = resp_arg(&p, i, &alen);
                    if (!a || a[alen] != '\0') abort();
                    buf_printf(t, " %zu:", alen);
                    buf_append(t, a, alen);
                }
                if (resp_arg(&p, p.argc, NULL) != NULL) abort();
                buf_append(t, "\n", 1);
                resp_next_command(&p);
                if (n == 0) break;
            }
        }
    }
    if (st == RESP_ERROR) {
        size_t used = 1;
        if (resp_feed(&p, "x", 1, &used) != RESP_ERROR || used != 0) abort(); /* sticky */
        buf_printf(t, "error %s\n", p.errmsg);
    } else {
        buf_printf(t, "end %d\n", st == RESP_DONE ? 0 : p.reqtype);
    }
    resp_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_split_t split, whole;
    unsigned flags;
    fuzz_split_init(&split, data, size, &flags);
    whole = split;
    whole.nsizes = 0; /* the same stream in one piece */
    resp_limits_t lim = {0};
    lim.unauthenticated = flags & 1;
    if (flags & 2) {
        lim.max_inline = 64;
        lim.max_bulk = 32;
        lim.max_args = 8;
        lim.max_request = 96;
    }
    buf_t a = {0}, b = {0};
    transcript(&lim, &split, &a);
    transcript(&lim, &whole, &b);
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) {
        fprintf(stderr, "split transcript:\n%.*s\nwhole transcript:\n%.*s\n", (int)a.len, a.data,
                (int)b.len, b.data);
        abort();
    }
    buf_free(&a);
    buf_free(&b);
    return 0;
}
