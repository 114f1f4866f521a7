/* metrics_http_req.c: parse a metrics endpoint request and choose its
 * answer (see metrics_http_req.h). Pure: no socket, no clock, no metrics. */
#include "metrics_http_req.h"

#include <string.h>

#include "metrics_http.h"

#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CT_TEXT    "text/plain; charset=utf-8"

static int on_url(http_parser *p, const char *at, size_t len)
{
    metrics_http_req_t *r = p->data;
    if (r->url.len + len <= METRICS_HTTP_MAX_HEADER) buf_append(&r->url, at, len);
    return 0; /* a longer URL fails the header cap in metrics_http_req_feed */
}

static int on_headers_complete(http_parser *p)
{
    metrics_http_req_t *r = p->data;
    r->headers_done = true;
    http_parser_pause(p, 1); /* the body, if any, is not ours to read */
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
};

void metrics_http_req_init(metrics_http_req_t *r)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
}

void metrics_http_req_free(metrics_http_req_t *r)
{
    buf_free(&r->url);
}

static void answer(metrics_http_answer_t *a, int status, const char *reason, const char *text)
{
    *a = (metrics_http_answer_t){.status = status, .reason = reason, .text = text};
}

static bool path_is(const char *p, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(p, lit, len) == 0;
}

/* The headers are in: pick the answer from the path, then the method. */
static void route(const metrics_http_req_t *r, metrics_http_answer_t *a)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (r->url.len == 0 || http_parser_parse_url(r->url.data, r->url.len, 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH))) {
        answer(a, 400, "Bad Request", "bad request\n");
        return;
    }
    const char *path = r->url.data + u.field_data[UF_PATH].off;
    size_t plen = u.field_data[UF_PATH].len;
    bool metrics = path_is(path, plen, "/metrics");
    if (!metrics && !path_is(path, plen, "/healthz")) {
        answer(a, 404, "Not Found", "not found\n");
        return;
    }
    enum http_method m = (enum http_method)r->parser.method;
    if (m != HTTP_GET && m != HTTP_HEAD) {
        answer(a, 405, "Method Not Allowed", "method not allowed\n");
        a->extra_headers = "Allow: GET, HEAD\r\n";
        return;
    }
    answer(a, 200, "OK", metrics ? NULL : "ok");
    a->head_only = m == HTTP_HEAD;
}

bool metrics_http_req_feed(metrics_http_req_t *r, const char *data, size_t len,
                           metrics_http_answer_t *a)
{
    if (len == 0) return false; /* http-parser would take it for EOF */
    size_t before = r->in_bytes;
    r->in_bytes += len;
    size_t done = http_parser_execute(&r->parser, &settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
    /* Only what the parser took counts toward the cap: bytes after the end
     * of the headers, or after a malformed byte, are not header bytes, so
     * the answer does not depend on how the request was split into reads. */
    size_t header_bytes = before + done;
    if (e == HPE_HEADER_OVERFLOW || header_bytes > METRICS_HTTP_MAX_HEADER) {
        answer(a, 431, "Request Header Fields Too Large", "request header fields too large\n");
        return true;
    }
    if (r->headers_done) {
        route(r, a);
        return true;
    }
    if (e != HPE_OK || done != len) {
        answer(a, 400, "Bad Request", "bad request\n");
        return true;
    }
    return false;
}

void metrics_http_format_head(buf_t *head, const metrics_http_answer_t *a, size_t body_len)
{
    buf_printf(head,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
               "Connection: close\r\n\r\n",
               a->status, a->reason, a->text ? CT_TEXT : CT_METRICS, body_len,
               a->extra_headers ? a->extra_headers : "");
}
