/* metrics_http.c: GET /metrics and /healthz over HTTP/1.1 on the server's
 * loop (contract in metrics_http.h).
 *
 * A connection lives through three states:
 *   READING   bytes go through http-parser until the headers are complete
 *             (a GET has no body we care about); then the answer is chosen
 *   WRITING   the answer is being written
 *   DRAINING  answer sent and our side shut down (FIN); what the peer still
 *             sends is read and dropped until its EOF or a short linger, so
 *             closing does not reset the connection under an unread answer
 * One timer per connection bounds each state; both handles are closed
 * together and the connection is freed when the second close completes. */
#include "metrics_http.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "list.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http_req.h"
#include "util.h"

#define LINGER_MS  1000 /* draining after the answer */
#define READ_CHUNK 4096

#define CT_TEXT "text/plain; charset=utf-8" /* the 503 below */

typedef enum mh_state { MH_READING, MH_WRITING, MH_DRAINING } mh_state_t;

typedef struct mh_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    metrics_http_req_t req; /* parsing and routing (metrics_http_req.c) */
    mh_state_t state;
    int open_handles; /* freed when both tcp and timer have closed */
    bool closing;
    bool peer_eof;    /* EOF while our answer was being written */
    buf_t head, body; /* the answer */
    char rbuf[READ_CHUNK];
    list_node_t node; /* M.conns, until closed */
} mh_conn_t;

static struct {
    uv_loop_t *loop;
    uv_tcp_t listener;
    bool listening;
    bool full_logged; /* "too many connections" logged for this episode */
    list_t conns;     /* mh_conn_t, newest first */
    size_t nconns;
} M;

/* ------------------------------------------------------------------------
 * Connection lifetime
 * ---------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    mh_conn_t *c = h->data;
    if (--c->open_handles > 0) return;
    metrics_http_req_free(&c->req);
    buf_free(&c->head);
    buf_free(&c->body);
    free(c);
}

static void conn_close(mh_conn_t *c)
{
    if (c->closing) return;
    c->closing = true;
    list_remove(&c->node);
    M.nconns--;
    if (M.nconns < METRICS_HTTP_MAX_CONNS) M.full_logged = false;
    /* Pending write/shutdown callbacks run (ECANCELED) before the close
     * callbacks, so c stays valid for them; they check c->closing. */
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data); /* request too slow, answer not taken, or linger over */
}

/* ------------------------------------------------------------------------
 * Answering
 * ---------------------------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    mh_conn_t *c = req->data;
    if (c->closing) return;
    if (status < 0) conn_close(c);
    /* else: keep draining until the peer's EOF or the linger timer */
}

static void on_written(uv_write_t *req, int status)
{
    mh_conn_t *c = req->data;
    if (c->closing) return;
    if (status < 0 || c->peer_eof) {
        conn_close(c);
        return;
    }
    c->state = MH_DRAINING;
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, LINGER_MS, 0);
}

/* Queue the answer chosen by metrics_http_req_feed. */
static void respond(mh_conn_t *c, const metrics_http_answer_t *a)
{
    c->state = MH_WRITING;
    if (a->text)
        buf_append_str(&c->body, a->text);
    else
        metrics_render(&c->body);
    metrics_http_format_head(&c->head, a, c->body.len);
    uv_buf_t bufs[2] = {uv_buf_init(c->head.data, (unsigned)c->head.len),
                        uv_buf_init(c->body.data, (unsigned)c->body.len)};
    unsigned nbufs = a->head_only || c->body.len == 0 ? 1 : 2;
    c->wreq.data = c;
    uv_timer_start(&c->timer, on_timeout, METRICS_HTTP_TIMEOUT_MS, 0); /* to take the answer */
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, nbufs, on_written) != 0) conn_close(c);
}

/* ------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    LC_UNUSED(suggested);
    mh_conn_t *c = h->data;
    *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    mh_conn_t *c = s->data;
    if (nread == 0) return;
    if (nread < 0) { /* EOF or error */
        uv_read_stop(s);
        if (c->state == MH_WRITING)
            c->peer_eof = true; /* on_written closes */
        else
            conn_close(c);
        return;
    }
    if (c->state != MH_READING) return; /* anything after the request: dropped */
    metrics_http_answer_t a;
    if (metrics_http_req_feed(&c->req, buf->base, (size_t)nread, &a)) respond(c, &a);
}

/* ------------------------------------------------------------------------
 * Listening
 * ---------------------------------------------------------------------- */

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* Over the connection cap: a best-effort 503, then close at once. */
static void reject(uv_stream_t *listener)
{
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: " CT_TEXT
                               "\r\nContent-Length: 22\r\nConnection: close\r\n\r\n"
                               "too many connections\r\n";
    uv_tcp_t *t = xmalloc(sizeof(*t));
    uv_tcp_init(M.loop, t);
    if (uv_accept(listener, (uv_stream_t *)t) == 0) {
        uv_buf_t b = uv_buf_init((char *)busy, sizeof(busy) - 1);
        uv_try_write((uv_stream_t *)t, &b, 1);
    }
    uv_close((uv_handle_t *)t, free_handle);
    if (!M.full_logged) {
        M.full_logged = true;
        log_warn("metrics endpoint: %d connections open, refusing more", METRICS_HTTP_MAX_CONNS);
    }
}

static void on_connection(uv_stream_t *listener, int status)
{
    if (status < 0) {
        log_warn("metrics endpoint: accept failed: %s", uv_strerror(status));
        return;
    }
    if (M.nconns >= METRICS_HTTP_MAX_CONNS) {
        reject(listener);
        return;
    }
    mh_conn_t *c = xcalloc(1, sizeof(*c));
    uv_tcp_init(M.loop, &c->tcp);
    uv_timer_init(M.loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    list_push_front(&M.conns, &c->node);
    M.nconns++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    metrics_http_req_init(&c->req);
    uv_timer_start(&c->timer, on_timeout, METRICS_HTTP_TIMEOUT_MS, 0); /* for the request */
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int metrics_http_start(uv_loop_t *loop, char *err, size_t errlen)
{
    if (cfg.metrics_port == 0) return 0;
    M.loop = loop;
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(cfg.bind, cfg.metrics_port, (struct sockaddr_in *)&addr);
    if (rc != 0) rc = uv_ip6_addr(cfg.bind, cfg.metrics_port, (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        snprintf(err, errlen, "--bind '%s' is not an IPv4 or IPv6 address", cfg.bind);
        return -1;
    }
    uv_tcp_init(loop, &M.listener);
    M.listening = true;
    rc = uv_tcp_bind(&M.listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&M.listener, 128, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d for --metrics-port: %s", cfg.bind,
                 cfg.metrics_port, uv_strerror(rc));
        metrics_http_stop();
        return -1;
    }
    bool v6 = strchr(cfg.bind, ':') != NULL;
    log_info("metrics on http://%s%s%s:%d/metrics", v6 ? "[" : "", cfg.bind, v6 ? "]" : "",
             cfg.metrics_port);
    return 0;
}

void metrics_http_stop(void)
{
    if (M.listening) {
        M.listening = false;
        uv_close((uv_handle_t *)&M.listener, NULL);
    }
    mh_conn_t *c;
    while ((c = list_first_entry(&M.conns, mh_conn_t, node)))
        conn_close(c);
}
