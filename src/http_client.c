/* http_client.c: asynchronous HTTP client for origin fetches.
 *
 * libcurl's multi-socket API driven by the libuv loop, as in curl's
 * docs/examples/multi-uv.c: curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION -> one uv_poll_t per socket) and when it next
 * needs a kick (CURLMOPT_TIMERFUNCTION -> one uv_timer_t); we hand every event
 * back through curl_multi_socket_action() and then collect finished transfers
 * from curl_multi_info_read(). One CURLM serves the whole process, so its
 * connection pool and DNS cache are shared and connections to an origin are
 * kept alive between fetches.
 *
 * Contract (see http_client.h): each call's callback runs exactly once, never
 * from inside http_start(), unless the call is cancelled. Callbacks run from
 * our completion loop, outside any libcurl callback, so they may start,
 * cancel or (at shutdown) close freely. */
#include "http_client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "list.h"
#include "log.h"
#include "util.h"

#define HTTP_DEFAULT_TIMEOUT_MS 30000L
#define HTTP_DEFAULT_MAX_BODY   ((size_t)64 * 1024 * 1024)
/* curl caps single header lines (100 KiB) but, in the versions we ship with,
 * not their total; an origin must not make us buffer headers without end. */
#define HTTP_MAX_HEADER_BYTES ((size_t)256 * 1024)

/* One watched socket. Freed in the uv_close callback, never earlier: libuv
 * still owns the handle until then. */
typedef struct http_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    list_node_t node; /* g.socks, until closed */
} http_sock_t;

struct http_call {
    list_node_t node; /* g.calls, until finished */
    CURL *easy;
    struct curl_slist *req_headers;
    char *req_body; /* our copy: CURLOPT_POSTFIELDS does not copy */
    http_cb cb;
    void *priv;
    size_t max_body;
    size_t header_bytes;
    int in_multi;       /* added to g.multi (else a deferred failure) */
    const char *fail;   /* deferred failure message when !in_multi */
    char abort_msg[96]; /* set when one of our callbacks aborted the transfer */
    http_response_t resp;
    size_t headers_cap;
    char errbuf[CURL_ERROR_SIZE];
};

static struct {
    uv_loop_t *loop;
    CURLM *multi;
    /* Heap-allocated and freed by their close callbacks, so a new client can
     * be set up before the old one's handles have finished closing. */
    uv_timer_t *timer; /* curl's single timeout */
    uv_timer_t *defer; /* delivers failures that must not run inside http_start */
    int in_timer;      /* inside on_timer (see on_curl_timer) */
    list_t calls;      /* http_call_t, newest first */
    size_t ncalls;
    list_t socks; /* http_sock_t, newest first */
} g;

/* ------------------------------------------------------------------------ */
/* Calls: bookkeeping and completion                                         */
/* ------------------------------------------------------------------------ */

static void calls_link(http_call_t *c)
{
    list_push_front(&g.calls, &c->node);
    g.ncalls++;
}

static void calls_unlink(http_call_t *c)
{
    list_remove(&c->node);
    g.ncalls--;
}

static void resp_clear_headers(http_response_t *r)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    r->nheaders = 0;
}

static void call_free(http_call_t *c)
{
    if (c->easy) curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->req_headers);
    free(c->req_body);
    resp_clear_headers(&c->resp);
    free(c->resp.headers);
    buf_free(&c->resp.body);
    free(c);
}

/* Detach the call from the client (so a callback may cancel or start other
 * calls, or close the client, without meeting it), run its callback once,
 * free it. err NULL means success. */
static void call_finish(http_call_t *c, const char *err)
{
    calls_unlink(c);
    if (c->in_multi) {
        /* Removing first returns the connection to the pool, so a request
         * started from the callback can reuse it. */
        curl_multi_remove_handle(g.multi, c->easy);
        c->in_multi = 0;
    }
    c->cb(c->priv, err, err ? NULL : &c->resp);
    call_free(c);
}

static void call_done(http_call_t *c, CURLcode rc)
{
    if (rc == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
        c->resp.status = status;
        call_finish(c, NULL);
        return;
    }
    const char *err;
    if (c->abort_msg[0])
        err = c->abort_msg;
    else if (rc == CURLE_OPERATION_TIMEDOUT)
        err = "timeout"; /* the one message callers (and metrics) match on */
    else if (rc == CURLE_FILESIZE_EXCEEDED) {
        /* curl refused a Content-Length above CURLOPT_MAXFILESIZE up front:
         * same failure as hitting the cap while streaming. */
        snprintf(c->abort_msg, sizeof(c->abort_msg), "response body exceeds %zu bytes",
                 c->max_body);
        err = c->abort_msg;
    } else if (c->errbuf[0])
        err = c->errbuf;
    else
        err = curl_easy_strerror(rc);
    call_finish(c, err);
}

/* Drain curl's finished transfers. A callback may cancel calls whose
 * messages are still queued (curl_multi_remove_handle drops them) or close
 * the whole client, hence the re-check of g.multi on every turn. */
static void check_done(void)
{
    CURLMsg *msg;
    int pending;
    while (g.multi && (msg = curl_multi_info_read(g.multi, &pending))) {
        if (msg->msg != CURLMSG_DONE) continue;
        /* msg is invalid once the handle is removed: copy what we need. */
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        if (priv) call_done((http_call_t *)priv, rc);
    }
}

/* Failures found in http_start are delivered here, on a later loop turn.
 * Rare (curl_multi_add_handle fails only on OOM or misuse), so a linear scan
 * that restarts after every callback is fine and keeps reentrancy trivial. */
static http_call_t *first_deferred(void)
{
    for (list_node_t *n = list_first(&g.calls); n; n = list_next(&g.calls, n)) {
        http_call_t *c = list_entry(n, http_call_t, node);
        if (!c->in_multi) return c;
    }
    return NULL;
}

static void on_defer(uv_timer_t *t)
{
    LC_UNUSED(t);
    http_call_t *c;
    while ((c = first_deferred()))
        call_finish(c, c->fail);
}

/* ------------------------------------------------------------------------ */
/* libuv <-> libcurl glue                                                    */
/* ------------------------------------------------------------------------ */

static void on_sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void sock_close(http_sock_t *s)
{
    list_remove(&s->node);
    /* uv_close stops watching the fd at once, so curl may close it and reuse
     * the number for a new socket right away; only the memory waits. */
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    http_sock_t *s = h->data;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running;
    /* The socket callback may close s during this call; its memory lives
     * until the close callback, so reading s->fd here is safe either way. */
    curl_multi_socket_action(g.multi, s->fd, flags, &running);
    check_done();
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    LC_UNUSED(easy);
    LC_UNUSED(userp);
    http_sock_t *s = socketp;

    if (what == CURL_POLL_REMOVE) {
        /* curl deletes its own entry for fd after this returns. */
        if (s) sock_close(s);
        return 0;
    }
    if (!s) {
        s = xcalloc(1, sizeof(*s));
        int rc = uv_poll_init_socket(g.loop, &s->poll, fd);
        if (rc < 0) {
            /* The transfer on this socket stalls until its timeout. Returning
             * -1 instead would make curl abort every transfer in the multi. */
            log_error("http: cannot watch socket %d: %s", (int)fd, uv_strerror(rc));
            free(s);
            return 0;
        }
        s->fd = fd;
        s->poll.data = s;
        list_push_front(&g.socks, &s->node);
        curl_multi_assign(g.multi, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN) events |= UV_READABLE;
    if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    LC_UNUSED(t);
    int running;
    g.in_timer = 1;
    curl_multi_socket_action(g.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    g.in_timer = 0;
    check_done();
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    LC_UNUSED(multi);
    LC_UNUSED(userp);
    if (timeout_ms < 0) {
        uv_timer_stop(g.timer);
        return 0;
    }
    /* 0 means "as soon as possible". A 0 ms timer re-armed from inside its
     * own callback would run again in the same libuv timer pass (libuv < 1.45)
     * and could starve I/O, so there we wait 1 ms as curl's example does. */
    if (timeout_ms == 0 && g.in_timer) timeout_ms = 1;
    uv_timer_start(g.timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Per-transfer callbacks                                                    */
/* ------------------------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    http_call_t *c = ud;
    size_t n = size * nmemb;
    if (n > c->max_body - c->resp.body.len) {
        snprintf(c->abort_msg, sizeof(c->abort_msg), "response body exceeds %zu bytes",
                 c->max_body);
        return 0; /* any short count aborts the transfer (CURLE_WRITE_ERROR) */
    }
    buf_append(&c->resp.body, p, n);
    return n;
}

static int is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Called once per header line, status line and blank line included. Only
 * the final response's headers are kept: every status line (1xx interim
 * responses, proxy CONNECT replies) starts the set afresh. */
static size_t on_header(char *p, size_t size, size_t nitems, void *ud)
{
    http_call_t *c = ud;
    size_t n = size * nitems;
    size_t len = n;
    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
        len--;

    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        resp_clear_headers(&c->resp);
        c->header_bytes = 0;
        return n;
    }
    if (len == 0) return n; /* end of a header block */

    c->header_bytes += n;
    if (c->header_bytes > HTTP_MAX_HEADER_BYTES) {
        snprintf(c->abort_msg, sizeof(c->abort_msg), "response headers exceed %zu bytes",
                 HTTP_MAX_HEADER_BYTES);
        return 0;
    }

    http_response_t *r = &c->resp;
    if (is_ows(p[0])) {
        /* Obsolete line folding: a continuation of the previous value. */
        if (r->nheaders == 0) return n;
        size_t i = 0;
        while (i < len && is_ows(p[i]))
            i++;
        http_header_t *h = &r->headers[r->nheaders - 1];
        size_t old = strlen(h->value);
        h->value = xrealloc(h->value, old + 1 + (len - i) + 1);
        h->value[old] = ' ';
        memcpy(h->value + old + 1, p + i, len - i);
        h->value[old + 1 + len - i] = '\0';
        return n;
    }

    const char *colon = memchr(p, ':', len);
    if (!colon) return n; /* not a header; tolerate */
    size_t nlen = (size_t)(colon - p);
    while (nlen > 0 && is_ows(p[nlen - 1]))
        nlen--;
    const char *v = colon + 1;
    const char *end = p + len;
    while (v < end && is_ows(*v))
        v++;
    while (end > v && is_ows(end[-1]))
        end--;

    if (r->nheaders == c->headers_cap) {
        c->headers_cap = c->headers_cap ? c->headers_cap * 2 : 16;
        r->headers = xrealloc(r->headers, c->headers_cap * sizeof(*r->headers));
    }
    r->headers[r->nheaders].name = xmemdup(p, nlen);
    r->headers[r->nheaders].value = xmemdup(v, (size_t)(end - v));
    r->nheaders++;
    return n;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */
/* ------------------------------------------------------------------------ */

int http_client_init(uv_loop_t *loop)
{
    if (g.multi) {
        log_error("http: client already initialised");
        return -1;
    }
    memset(&g, 0, sizeof(g));
    g.loop = loop;

    /* Reference-counted by curl; paired with curl_global_cleanup in close. */
    CURLcode crc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (crc != CURLE_OK) {
        log_error("http: curl_global_init: %s", curl_easy_strerror(crc));
        return -1;
    }
    g.multi = curl_multi_init();
    if (!g.multi) {
        log_error("http: curl_multi_init failed");
        goto err;
    }
    g.timer = xmalloc(sizeof(*g.timer));
    g.defer = xmalloc(sizeof(*g.defer));
    /* uv_timer_init cannot fail on Unix; both are live from here on. */
    uv_timer_init(loop, g.timer);
    uv_timer_init(loop, g.defer);
    curl_multi_setopt(g.multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(g.multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    /* Bound the sockets (file descriptors) fetches can hold: beyond these,
     * curl queues requests until a connection frees up, so a burst of
     * misses cannot starve accept() of descriptors. */
    curl_multi_setopt(g.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 512L);
    curl_multi_setopt(g.multi, CURLMOPT_MAX_HOST_CONNECTIONS, 256L);
    return 0;

err:
    curl_global_cleanup();
    return -1;
}

void http_client_close(void)
{
    if (!g.multi) return;
    /* Calls started from a "shutdown" callback land at the head and are
     * failed by this same loop. */
    http_call_t *c;
    while ((c = list_first_entry(&g.calls, http_call_t, node)))
        call_finish(c, "shutdown");
    /* A callback may already have closed the client. */
    if (!g.multi) return;

    /* Cleanup closes pooled connections and may report CURL_POLL_REMOVE for
     * sockets it still watched; whatever remains afterwards is ours to close. */
    curl_multi_cleanup(g.multi);
    g.multi = NULL;
    http_sock_t *s;
    while ((s = list_first_entry(&g.socks, http_sock_t, node)))
        sock_close(s);
    uv_close((uv_handle_t *)g.timer, on_timer_closed);
    uv_close((uv_handle_t *)g.defer, on_timer_closed);
    g.timer = g.defer = NULL;
    curl_global_cleanup();
}

static int valid_method(const char *m)
{
    /* RFC 9110 token; anything else would be written verbatim into the
     * request line by CURLOPT_CUSTOMREQUEST. */
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (!*m) return 0;
    for (; *m; m++) {
        unsigned char ch = (unsigned char)*m;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              strchr(extra, ch)))
            return 0;
    }
    return 1;
}

/* Is header line h ("Name: value") named name? */
static int header_is(const char *h, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(h, name, n) == 0 && (h[n] == ':' || h[n] == ';');
}

http_call_t *http_start(const http_request_t *req, http_cb cb, void *priv, const char **err)
{
    const char *method = req->method ? req->method : "GET";
    if (!req->url || !*req->url) {
        *err = "missing url";
        return NULL;
    }
    if (!valid_method(method)) {
        *err = "invalid method";
        return NULL;
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        /* CR/LF would let a policy inject headers or a second request. */
        if (!req->headers[i] || strpbrk(req->headers[i], "\r\n")) {
            *err = "invalid header";
            return NULL;
        }
    }
    if (!g.multi) {
        *err = "http client not running";
        return NULL;
    }

    http_call_t *c = xcalloc(1, sizeof(*c));
    c->cb = cb;
    c->priv = priv;
    c->max_body = req->max_body ? req->max_body : HTTP_DEFAULT_MAX_BODY;
    c->easy = curl_easy_init();
    if (!c->easy) {
        /* Only on OOM; deliver it through the callback like other failures. */
        c->fail = "cannot create transfer";
        goto defer;
    }

    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     req->timeout_ms > 0 ? req->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 deprecates the bitmask form */
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "luacached");
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_body);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);

    int is_get = strcmp(method, "GET") == 0;
    int is_post = strcmp(method, "POST") == 0;
    const char *body = req->body;
    size_t body_len = req->body ? req->body_len : 0;
    /* Methods that carry a body get "Content-Length: 0" rather than none. */
    if (!body && (is_post || !strcmp(method, "PUT") || !strcmp(method, "PATCH"))) body = "";

    if (strcmp(method, "HEAD") == 0) {
        /* A custom "HEAD" would make curl wait for a body that never comes. */
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        if (body) {
            c->req_body = xmemdup(body, body_len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->req_body);
        }
        /* POSTFIELDS alone means POST; anything else is named explicitly. */
        if (!(is_get && !body) && !(is_post && body))
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    }

    int has_expect = 0, has_ctype = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *h = req->headers[i];
        if (header_is(h, "Expect")) has_expect = 1;
        if (header_is(h, "Content-Type")) has_ctype = 1;
        c->req_headers = curl_slist_append(c->req_headers, h);
    }
    if (body) {
        /* curl would otherwise send "Expect: 100-continue" for large bodies
         * (a round trip, or a 1 s stall on origins that ignore it) and label
         * every body as a url-encoded form. */
        if (!has_expect) c->req_headers = curl_slist_append(c->req_headers, "Expect:");
        if (!has_ctype) c->req_headers = curl_slist_append(c->req_headers, "Content-Type:");
    }
    if (c->req_headers) curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->req_headers);

    CURLMcode mrc = curl_multi_add_handle(g.multi, e);
    if (mrc != CURLM_OK) {
        c->fail = curl_multi_strerror(mrc);
        goto defer;
    }
    c->in_multi = 1;
    calls_link(c);
    return c;

defer:
    /* The callback must not run inside http_start: hand it to the loop. */
    calls_link(c);
    uv_timer_start(g.defer, on_defer, 0, 0);
    return c;
}

void http_cancel(http_call_t *c)
{
    if (!c) return;
    calls_unlink(c);
    if (c->in_multi) curl_multi_remove_handle(g.multi, c->easy);
    call_free(c);
}

size_t http_calls_in_flight(void)
{
    return g.ncalls;
}
