/* fuzz_metrics_http.c: the metrics endpoint's request path
 * (src/metrics_http_req.c: http-parser, the header cap, routing) on
 * arbitrary bytes cut into arbitrary reads (fuzz_split.h). Checks: the
 * answer is one of the documented ones (metrics_http.h), its head is well
 * formed, and the split does not change it: the same bytes in one piece
 * get the same answer (or both still wait for more). */
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fuzz_split.h"
#include "metrics_http.h"
#include "metrics_http_req.h"

/* The answer's status, 0 if none was chosen by the end of the stream. */
static int run(fuzz_split_t *split, metrics_http_answer_t *a)
{
    metrics_http_req_t r;
    metrics_http_req_init(&r);
    const uint8_t *chunk;
    size_t n;
    int status = 0;
    while ((n = fuzz_split_next(split, &chunk)) > 0) {
        if (metrics_http_req_feed(&r, (const char *)chunk, n, a)) {
            status = a->status;
            break;
        }
    }
    if (r.url.len > METRICS_HTTP_MAX_HEADER) abort();
    metrics_http_req_free(&r);
    return status;
}

static void check_answer(const metrics_http_answer_t *a)
{
    switch (a->status) {
    case 200:
    case 400:
    case 404:
    case 405:
    case 431:
        break;
    default:
        abort();
    }
    if (a->status != 200 && !a->text) abort(); /* only a 200 renders metrics */
    if (a->head_only && a->status != 200) abort();
    if ((a->status == 405) != (a->extra_headers != NULL)) abort();
    buf_t head = {0};
    size_t blen = a->text ? strlen(a->text) : 1234;
    metrics_http_format_head(&head, a, blen);
    char want[64];
    int w = snprintf(want, sizeof(want), "HTTP/1.1 %d ", a->status);
    if (head.len < (size_t)w + 4 || memcmp(head.data, want, (size_t)w) != 0 ||
        memcmp(head.data + head.len - 4, "\r\n\r\n", 4) != 0)
        abort();
    if (memmem(head.data, head.len - 4, "\r\n\r\n", 4) != NULL) abort(); /* one blank line */
    snprintf(want, sizeof(want), "Content-Length: %zu\r\n", blen);
    if (!memmem(head.data, head.len, want, strlen(want))) abort();
    buf_free(&head);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_split_t split, whole;
    unsigned flags;
    fuzz_split_init(&split, data, size, &flags);
    whole = split;
    whole.nsizes = 0;
    metrics_http_answer_t a, b;
    int sa = run(&split, &a), sb = run(&whole, &b);
    if (sa != sb) {
        fprintf(stderr, "split answered %d, whole %d\n", sa, sb);
        abort();
    }
    if (sa) {
        check_answer(&a);
        if ((a.text == NULL) != (b.text == NULL) || a.head_only != b.head_only) abort();
    }
    return 0;
}
