/* metrics_http_req.h: the request side of the metrics endpoint, without a
 * socket: bytes in (in any split), the chosen answer out. metrics_http.c
 * feeds it what a connection reads; tests/fuzz/fuzz_metrics_http.c feeds
 * it arbitrary bytes. Routing and limits are those of metrics_http.h. */
#ifndef LC_METRICS_HTTP_REQ_H
#define LC_METRICS_HTTP_REQ_H

#include <stdbool.h>
#include <stddef.h>

#include <http_parser.h>

#include "buf.h"

typedef struct metrics_http_req {
    http_parser parser;
    bool headers_done;
    size_t in_bytes; /* request bytes fed */
    buf_t url;       /* at most METRICS_HTTP_MAX_HEADER bytes kept */
} metrics_http_req_t;

typedef struct metrics_http_answer {
    int status; /* 200, 400, 404, 405, 431 */
    const char *reason;
    const char *text;          /* the body; NULL: the metrics exposition */
    const char *extra_headers; /* whole "Name: value\r\n" lines, or NULL */
    bool head_only;            /* HEAD: the body is described, not sent */
} metrics_http_answer_t;

void metrics_http_req_init(metrics_http_req_t *r);
void metrics_http_req_free(metrics_http_req_t *r);

/* Feed the next len bytes of the request. true once the answer is chosen
 * (*a is set); the caller then feeds no more. false: more bytes needed
 * (len 0 changes nothing). */
bool metrics_http_req_feed(metrics_http_req_t *r, const char *data, size_t len,
                           metrics_http_answer_t *a);

/* Append the answer's status line and headers for a body of body_len bytes
 * (the text's, or the rendered exposition's). */
void metrics_http_format_head(buf_t *head, const metrics_http_answer_t *a, size_t body_len);

#endif
