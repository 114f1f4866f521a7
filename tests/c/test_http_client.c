/* test_http_client.c: http_client against a tiny HTTP/1.1 origin that runs
 * on the same libuv loop (no child process, no fixed ports). Every wait is
 * bounded; every test asserts exact callback counts; the run ends with
 * uv_loop_close() == 0, i.e. no handle left behind. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "buf.h"
#include "http_client.h"
#include "util.h"

static uv_loop_t loop;

/* ------------------------------------------------------------------------ */
/* The origin                                                                */
/* ------------------------------------------------------------------------ */

#define BIG_LEN (1024 * 1024)

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t delay;
    buf_t in;
    buf_t delayed; /* response held back by a slow route */
    int busy;      /* a delayed response is pending: stop parsing */
    int closing;
    int nclosed;
} conn_t;

typedef struct wreq {
    uv_write_t req;
    conn_t *conn;
    char *data;
    int close_after;
} wreq_t;

static uv_tcp_t server;
static int server_port;
static int server_accepts;
static int server_requests;
static int server_conns_open;

static void conn_process(conn_t *c);

static void on_conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (++c->nclosed < 2) return;
    buf_free(&c->in);
    buf_free(&c->delayed);
    server_conns_open--;
    free(c);
}

static void conn_close(conn_t *c)
{
    if (c->closing) return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->delay, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_written(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    if (status < 0 || w->close_after) conn_close(w->conn);
    free(w->data);
    free(w);
}

static void conn_write(conn_t *c, buf_t *b, int close_after)
{
    if (c->closing) {
        buf_free(b);
        return;
    }
    wreq_t *w = xcalloc(1, sizeof(*w));
    w->conn = c;
    w->data = b->data; /* ownership moves to the write request */
    w->close_after = close_after;
    uv_buf_t ub = uv_buf_init(w->data, (unsigned)b->len);
    b->data = NULL;
    b->len = b->cap = 0;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, on_written) < 0) {
        free(w->data);
        free(w);
        conn_close(c);
    }
}

static void on_delay(uv_timer_t *t)
{
    conn_t *c = t->data;
    c->busy = 0;
    conn_write(c, &c->delayed, 0);
    conn_process(c); /* a request may have queued up behind */
}

/* Value of header name in the raw header block, or "-". */
static void header_value(const char *hdrs, size_t len, const char *name, char *out, size_t outsz)
{
    size_t nlen = strlen(name);
    const char *p = hdrs, *end = hdrs + len;
    snprintf(out, outsz, "-");
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (v < eol && *v == ' ')
                v++;
            snprintf(out, outsz, "%.*s", (int)(eol - v), v);
            return;
        }
        p = eol + 2;
    }
}

/* Routes:
 *   /hello    200 "hello world" with X-Test: yes
 *   /missing  404
 *   /echo     a 103 interim response (its header must not leak), then 200
 *             echoing the body, the method, X-Req and Content-Type
 *   /delay    200 "ok" after 200 ms;  /slow: 200 after 2 s
 *   /big      1 MiB with Content-Length;  /stream: 1 MiB until close */
static void conn_handle(conn_t *c, const char *method, const char *path, const char *hdrs,
                        size_t hlen, const char *body, size_t blen)
{
    buf_t out = {0};
    server_requests++;
    int head = strcmp(method, "HEAD") == 0;
    if (strcmp(path, "/hello") == 0) {
        buf_printf(&out, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Test: yes\r\n\r\n%s",
                   head ? "" : "hello world");
    } else if (strcmp(path, "/echo") == 0) {
        char xreq[128], ctype[128];
        header_value(hdrs, hlen, "X-Req", xreq, sizeof(xreq));
        header_value(hdrs, hlen, "Content-Type", ctype, sizeof(ctype));
        buf_printf(&out, "HTTP/1.1 103 Early Hints\r\nX-Interim: 1\r\n\r\n");
        buf_printf(&out,
                   "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nX-Echo: %s\r\nX-Method: %s\r\n"
                   "X-CT: %s\r\nX-Folded: a\r\n b\r\n\r\n",
                   blen, xreq, method, ctype);
        buf_append(&out, body, blen);
    } else if (strcmp(path, "/delay") == 0 || strcmp(path, "/slow") == 0) {
        buf_printf(&c->delayed, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        c->busy = 1;
        uv_timer_start(&c->delay, on_delay, path[1] == 'd' ? 200 : 2000, 0);
        return;
    } else if (strcmp(path, "/big") == 0 || strcmp(path, "/stream") == 0) {
        int stream = path[1] == 's';
        if (stream)
            buf_printf(&out, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        else
            buf_printf(&out, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG_LEN);
        buf_reserve(&out, BIG_LEN);
        memset(out.data + out.len, 'x', BIG_LEN);
        out.len += BIG_LEN;
        conn_write(c, &out, stream);
        return;
    } else {
        buf_printf(&out, "HTTP/1.1 404 Not Found\r\nContent-Length: 8\r\n\r\n%s",
                   head ? "" : "not here");
    }
    conn_write(c, &out, 0);
}

static void conn_process(conn_t *c)
{
    while (!c->busy && !c->closing) {
        char *end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
        if (!end) return;
        size_t hdr_len = (size_t)(end - c->in.data) + 4;
        char method[16], path[256];
        char *head = xmemdup(c->in.data, hdr_len); /* sscanf wants a C string */
        int ok = sscanf(head, "%15s %255s", method, path) == 2;
        free(head);
        if (!ok) {
            conn_close(c);
            return;
        }
        char clen[32];
        header_value(c->in.data, hdr_len, "Content-Length", clen, sizeof(clen));
        size_t blen = clen[0] == '-' ? 0 : (size_t)strtoul(clen, NULL, 10);
        if (c->in.len < hdr_len + blen) return;
        conn_handle(c, method, path, c->in.data, hdr_len, c->in.data + hdr_len, blen);
        buf_consume(&c->in, hdr_len + blen);
    }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    conn_t *c = h->data;
    LC_UNUSED(hint);
    buf_reserve(&c->in, 65536);
    *b = uv_buf_init(c->in.data + c->in.len, 65536);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    LC_UNUSED(b);
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->in.len += (size_t)n;
    conn_process(c);
}

static void on_connection(uv_stream_t *srv, int status)
{
    if (status < 0) return;
    conn_t *c = xcalloc(1, sizeof(*c));
    uv_tcp_init(&loop, &c->tcp);
    uv_timer_init(&loop, &c->delay);
    c->tcp.data = c->delay.data = c;
    server_conns_open++;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    server_accepts++;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static int server_start(void)
{
    struct sockaddr_in addr;
    struct sockaddr_storage name;
    int namelen = sizeof(name);
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(&loop, &server);
    if (uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) < 0) return -1;
    if (uv_listen((uv_stream_t *)&server, 256, on_connection) < 0) return -1;
    uv_tcp_getsockname(&server, (struct sockaddr *)&name, &namelen);
    server_port = ntohs(((struct sockaddr_in *)&name)->sin_port);
    return 0;
}

/* A port nobody listens on: bind one, note it, close it. */
static int free_port(void)
{
    uv_tcp_t t;
    struct sockaddr_in addr;
    struct sockaddr_storage name;
    int namelen = sizeof(name);
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(&loop, &t);
    uv_tcp_bind(&t, (const struct sockaddr *)&addr, 0);
    uv_tcp_getsockname(&t, (struct sockaddr *)&name, &namelen);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT); /* let the close complete before t goes */
    return ntohs(((struct sockaddr_in *)&name)->sin_port);
}

/* ------------------------------------------------------------------------ */
/* Harness                                                                   */
/* ------------------------------------------------------------------------ */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

static uv_timer_t tick;

static void on_tick(uv_timer_t *t)
{
    LC_UNUSED(t);
}

/* Run the loop until *counter >= target or ms elapse; a ticking timer keeps
 * UV_RUN_ONCE from blocking past the deadline. */
static int run_until(const int *counter, int target, uint64_t ms)
{
    uint64_t deadline = mono_ms() + ms;
    uv_timer_start(&tick, on_tick, 5, 5);
    while (*counter < target && mono_ms() < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&tick);
    return *counter >= target;
}

static void run_for(uint64_t ms)
{
    static const int never = 0;
    run_until(&never, 1, ms);
}

typedef struct result {
    int calls;
    int has_err;
    char err[256];
    long status;
    buf_t body;
    buf_t headers; /* "name: value\n" lines */
    /* optional: cancel this call from the callback */
    http_call_t **cancel;
} result_t;

static void result_reset(result_t *r)
{
    buf_free(&r->body);
    buf_free(&r->headers);
    memset(r, 0, sizeof(*r));
}

static void on_result(void *priv, const char *err, http_response_t *resp)
{
    result_t *r = priv;
    r->calls++;
    if (err) {
        r->has_err = 1;
        snprintf(r->err, sizeof(r->err), "%s", err);
        if (resp) r->status = -999; /* resp must be NULL on error */
    } else {
        r->status = resp->status;
        buf_append(&r->body, resp->body.data, resp->body.len);
        for (size_t i = 0; i < resp->nheaders; i++)
            buf_printf(&r->headers, "%s: %s\n", resp->headers[i].name, resp->headers[i].value);
    }
    if (r->cancel && *r->cancel) {
        http_cancel(*r->cancel);
        *r->cancel = NULL;
    }
}

static int body_is(const result_t *r, const char *s)
{
    return r->body.len == strlen(s) &&
           (r->body.len == 0 || memcmp(r->body.data, s, r->body.len) == 0);
}

static int has_header(const result_t *r, const char *line)
{
    buf_t tmp = {0};
    buf_append(&tmp, r->headers.data, r->headers.len);
    buf_append(&tmp, "", 1);
    int found = strstr(tmp.data, line) != NULL;
    buf_free(&tmp);
    return found;
}

static char *url(const char *path)
{
    static char u[8][128];
    static int i;
    char *p = u[i++ % 8];
    snprintf(p, sizeof(u[0]), "http://127.0.0.1:%d%s", server_port, path);
    return p;
}

static http_call_t *start(const http_request_t *req, result_t *r)
{
    const char *err = NULL;
    http_call_t *c = http_start(req, on_result, r, &err);
    if (!c) fprintf(stderr, "http_start: %s\n", err);
    return c;
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */
/* ------------------------------------------------------------------------ */

static int test_get(void)
{
    result_t r = {0};
    http_request_t req = {.url = url("/hello")};
    CHECK(start(&req, &r));
    CHECK(r.calls == 0); /* never from inside http_start */
    CHECK(http_calls_in_flight() == 1);
    CHECK(run_until(&r.calls, 1, 5000));
    run_for(20);
    CHECK(r.calls == 1);
    CHECK(!r.has_err);
    CHECK(r.status == 200);
    CHECK(body_is(&r, "hello world"));
    CHECK(has_header(&r, "X-Test: yes\n"));
    CHECK(has_header(&r, "Content-Length: 11\n"));
    CHECK(http_calls_in_flight() == 0);
    result_reset(&r);
    return 0;
}

static int test_keepalive_and_head(void)
{
    /* Sequential requests ride one kept-alive connection. */
    int accepts = server_accepts;
    for (int i = 0; i < 5; i++) {
        result_t r = {0};
        http_request_t req = {.url = url("/hello"), .method = i == 4 ? "HEAD" : NULL};
        CHECK(start(&req, &r));
        CHECK(run_until(&r.calls, 1, 5000));
        CHECK(!r.has_err && r.status == 200);
        CHECK(body_is(&r, i == 4 ? "" : "hello world"));
        result_reset(&r);
    }
    CHECK(server_accepts - accepts <= 1);
    return 0;
}

static int test_404(void)
{
    result_t r = {0};
    http_request_t req = {.url = url("/missing")};
    CHECK(start(&req, &r));
    CHECK(run_until(&r.calls, 1, 5000));
    CHECK(!r.has_err);
    CHECK(r.status == 404);
    CHECK(body_is(&r, "not here"));
    result_reset(&r);
    return 0;
}

static int test_post_echo(void)
{
    static const char *const hdrs[] = {"X-Req: abc 123"};
    result_t r = {0};
    http_request_t req = {.method = "POST",
                          .url = url("/echo"),
                          .headers = hdrs,
                          .nheaders = 1,
                          .body = "ping\0pong",
                          .body_len = 9};
    CHECK(start(&req, &r));
    CHECK(run_until(&r.calls, 1, 5000));
    CHECK(!r.has_err);
    CHECK(r.status == 200);
    CHECK(r.body.len == 9 && memcmp(r.body.data, "ping\0pong", 9) == 0);
    CHECK(has_header(&r, "X-Echo: abc 123\n"));
    CHECK(has_header(&r, "X-Method: POST\n"));
    CHECK(has_header(&r, "X-CT: -\n")); /* no implicit form content type */
    CHECK(has_header(&r, "X-Folded: a b\n"));
    CHECK(!has_header(&r, "X-Interim")); /* the 103's headers were dropped */
    result_reset(&r);

    /* A custom method with a body and an explicit content type. */
    static const char *const hdrs2[] = {"Content-Type: application/json"};
    http_request_t put = {.method = "PUT",
                          .url = url("/echo"),
                          .headers = hdrs2,
                          .nheaders = 1,
                          .body = "{}",
                          .body_len = 2};
    CHECK(start(&put, &r));
    CHECK(run_until(&r.calls, 1, 5000));
    CHECK(!r.has_err && r.status == 200 && body_is(&r, "{}"));
    CHECK(has_header(&r, "X-Method: PUT\n"));
    CHECK(has_header(&r, "X-CT: application/json\n"));
    result_reset(&r);
    return 0;
}

static int test_timeout(void)
{
    result_t r = {0};
    http_request_t req = {.url = url("/slow"), .timeout_ms = 200};
    uint64_t t0 = mono_ms();
    CHECK(start(&req, &r));
    CHECK(run_until(&r.calls, 1, 5000));
    uint64_t took = mono_ms() - t0;
    CHECK(r.has_err);
    CHECK(strcmp(r.err, "timeout") == 0);
    CHECK(r.status == 0); /* resp was NULL */
    CHECK(took >= 150 && took < 1500);
    run_for(20);
    CHECK(r.calls == 1);
    result_reset(&r);
    return 0;
}

static int test_refused(void)
{
    char u[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/", free_port());
    result_t r = {0};
    http_request_t req = {.url = u, .timeout_ms = 2000};
    CHECK(start(&req, &r));
    CHECK(r.calls == 0);
    CHECK(run_until(&r.calls, 1, 5000));
    CHECK(r.has_err && r.err[0]);
    CHECK(r.status == 0);
    CHECK(strcmp(r.err, "timeout") != 0);
    result_reset(&r);

    /* Disallowed protocol: fails through the callback, not synchronously. */
    http_request_t ftp = {.url = "ftp://127.0.0.1/x"};
    CHECK(start(&ftp, &r));
    CHECK(r.calls == 0);
    CHECK(run_until(&r.calls, 1, 5000));
    CHECK(r.has_err && r.err[0]);
    result_reset(&r);
    return 0;
}

static int test_max_body(void)
{
    const char *paths[] = {"/big", "/stream"};
    for (int i = 0; i < 2; i++) {
        result_t r = {0};
        http_request_t req = {.url = url(paths[i]), .max_body = 1000};
        CHECK(start(&req, &r));
        CHECK(run_until(&r.calls, 1, 5000));
        CHECK(r.has_err);
        CHECK(strcmp(r.err, "response body exceeds 1000 bytes") == 0);
        result_reset(&r);
    }
    /* Under the default cap the same body arrives whole. */
    result_t r = {0};
    http_request_t req = {.url = url("/big")};
    CHECK(start(&req, &r));
    CHECK(run_until(&r.calls, 1, 5000));
    CHECK(!r.has_err && r.status == 200 && r.body.len == BIG_LEN);
    result_reset(&r);
    return 0;
}

static int test_concurrent(void)
{
    enum { N = 100 };
    static result_t rs[N];
    int done = 0;
    uint64_t t0 = mono_ms();
    for (int i = 0; i < N; i++) {
        http_request_t req = {.url = url("/delay")};
        CHECK(start(&req, &rs[i]));
    }
    CHECK(http_calls_in_flight() == N);
    uint64_t deadline = t0 + 3000;
    uv_timer_start(&tick, on_tick, 5, 5);
    while (mono_ms() < deadline) {
        done = 0;
        for (int i = 0; i < N; i++)
            done += rs[i].calls;
        if (done >= N) break;
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&tick);
    uint64_t took = mono_ms() - t0;
    fprintf(stderr, "  %d concurrent 200 ms requests took %llu ms\n", N, (unsigned long long)took);
    CHECK(done == N);
    CHECK(took < 3000);
    run_for(20);
    for (int i = 0; i < N; i++) {
        CHECK(rs[i].calls == 1);
        CHECK(!rs[i].has_err && rs[i].status == 200 && body_is(&rs[i], "ok"));
        result_reset(&rs[i]);
    }
    CHECK(http_calls_in_flight() == 0);
    return 0;
}

static int test_cancel(void)
{
    result_t a = {0}, b = {0}, fast = {0}, slow = {0};
    http_request_t delay = {.url = url("/delay")};
    http_request_t hello = {.url = url("/hello")};

    /* Cancelled before the loop ever ran. */
    http_call_t *ca = start(&delay, &a);
    CHECK(ca);
    http_cancel(ca);

    /* Cancelled mid-flight, once the origin holds the request. */
    int reqs = server_requests;
    http_call_t *cb = start(&delay, &b);
    CHECK(cb);
    CHECK(run_until(&server_requests, reqs + 1, 5000));
    http_cancel(cb);

    /* Cancelled from inside another call's callback. */
    http_call_t *cs = start(&delay, &slow);
    CHECK(cs);
    fast.cancel = &cs;
    CHECK(start(&hello, &fast));
    CHECK(run_until(&fast.calls, 1, 5000));
    CHECK(cs == NULL);
    CHECK(http_calls_in_flight() == 0);

    run_for(400); /* well past the 200 ms the origin takes */
    CHECK(a.calls == 0 && b.calls == 0 && slow.calls == 0);
    CHECK(fast.calls == 1 && fast.status == 200);
    result_reset(&fast);

    /* The client still works afterwards. */
    CHECK(start(&hello, &a));
    CHECK(run_until(&a.calls, 1, 5000));
    CHECK(a.status == 200);
    result_reset(&a);
    return 0;
}

static int test_invalid(void)
{
    result_t r = {0};
    const char *err = NULL;
    static const char *const bad_hdr[] = {"X-A: 1\r\nX-B: 2"};
    http_request_t no_url = {.url = NULL};
    http_request_t bad_method = {.url = url("/hello"), .method = "GET /x HTTP/1.1\r\n"};
    http_request_t bad_header = {.url = url("/hello"), .headers = bad_hdr, .nheaders = 1};
    CHECK(http_start(&no_url, on_result, &r, &err) == NULL && err);
    err = NULL;
    CHECK(http_start(&bad_method, on_result, &r, &err) == NULL && err);
    err = NULL;
    CHECK(http_start(&bad_header, on_result, &r, &err) == NULL && err);
    run_for(20);
    CHECK(r.calls == 0);
    CHECK(http_calls_in_flight() == 0);
    return 0;
}

/* A "shutdown" callback that tries to start another call: that one must be
 * failed too (or refused), never left dangling. */
static result_t restarted;
static void on_shutdown_restart(void *priv, const char *err, http_response_t *resp)
{
    on_result(priv, err, resp);
    http_request_t req = {.url = url("/hello")};
    const char *e = NULL;
    if (!http_start(&req, on_result, &restarted, &e)) restarted.calls = 100;
}

static int test_close(void)
{
    enum { N = 5 };
    result_t rs[N + 1];
    memset(rs, 0, sizeof(rs));
    int reqs = server_requests;
    for (int i = 0; i < N; i++) {
        http_request_t req = {.url = url("/delay")};
        CHECK(start(&req, &rs[i]));
    }
    CHECK(run_until(&server_requests, reqs + N, 5000)); /* all in flight */
    /* One more that has not even connected yet. */
    http_request_t req = {.url = url("/delay")};
    const char *err = NULL;
    CHECK(http_start(&req, on_shutdown_restart, &rs[N], &err));
    CHECK(http_calls_in_flight() == N + 1);

    http_client_close();
    for (int i = 0; i <= N; i++) {
        CHECK(rs[i].calls == 1);
        CHECK(rs[i].has_err && strcmp(rs[i].err, "shutdown") == 0);
    }
    CHECK(restarted.calls == 1 || restarted.calls == 100);
    CHECK(restarted.calls == 100 || strcmp(restarted.err, "shutdown") == 0);
    CHECK(http_calls_in_flight() == 0);
    CHECK(http_start(&req, on_result, &rs[0], &err) == NULL && err);
    http_client_close(); /* idempotent */

    run_for(300);
    for (int i = 0; i <= N; i++)
        CHECK(rs[i].calls == 1);
    for (int i = 0; i <= N; i++)
        result_reset(&rs[i]);
    result_reset(&restarted);
    return 0;
}

int main(void)
{
    static const struct {
        const char *name;
        int (*fn)(void);
    } tests[] = {
        {"get", test_get},           {"keepalive_and_head", test_keepalive_and_head},
        {"404", test_404},           {"post_echo", test_post_echo},
        {"timeout", test_timeout},   {"refused", test_refused},
        {"max_body", test_max_body}, {"concurrent", test_concurrent},
        {"cancel", test_cancel},     {"invalid", test_invalid},
        {"close", test_close}, /* last: it shuts the client down */
    };
    int passed = 0, failed = 0;

    signal(SIGPIPE, SIG_IGN); /* the origin writes to clients that gave up */
    uv_loop_init(&loop);
    uv_timer_init(&loop, &tick);
    if (server_start() < 0 || http_client_init(&loop) < 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    for (size_t i = 0; i < LC_ARRAY_LEN(tests); i++) {
        int rc = tests[i].fn();
        fprintf(stderr, "%s %s\n", rc == 0 ? "ok  " : "FAIL", tests[i].name);
        if (rc == 0)
            passed++;
        else
            failed++;
    }
    http_client_close(); /* no-op if test_close ran */

    /* Tear down the origin and check that nothing is left on the loop. */
    uv_close((uv_handle_t *)&server, NULL);
    uv_close((uv_handle_t *)&tick, NULL);
    for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT); i++) {
        /* Open origin connections close once their peer (curl) is gone. */
        if (server_conns_open == 0) continue;
        uv_sleep(10);
    }
    int lc = uv_loop_close(&loop);
    if (lc != 0) {
        fprintf(stderr, "uv_loop_close: %s (origin conns open: %d)\n", uv_strerror(lc),
                server_conns_open);
        failed++;
    }
    printf("http_client: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
