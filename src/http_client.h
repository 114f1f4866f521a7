/* http_client.h: asynchronous HTTP client on the event loop, built on
 * libcurl's multi-socket API driven by libuv (uv_poll per socket, one
 * uv_timer for curl's timeouts). Connections are kept alive and reused. */
#ifndef LC_HTTP_CLIENT_H
#define LC_HTTP_CLIENT_H

#include <stddef.h>
#include <uv.h>

#include "buf.h"

typedef struct http_header {
    char *name;
    char *value;
} http_header_t;

typedef struct http_request {
    const char *method; /* "GET" when NULL */
    const char *url;
    const char *const *headers; /* "Name: value" strings */
    size_t nheaders;
    const char *body; /* may be NULL */
    size_t body_len;
    long timeout_ms; /* whole transfer; <= 0 means the client default (30 s) */
    size_t max_body; /* response body cap; 0 means the client default (64 MiB) */
} http_request_t;

typedef struct http_response {
    long status;
    buf_t body;
    http_header_t *headers; /* of the final response; names as sent */
    size_t nheaders;
} http_response_t;

/* err is NULL on success (resp set), else a human-readable message such as
 * "Couldn't connect to server" or "timeout" (resp NULL). resp is owned by the
 * client and freed after the callback returns. */
typedef void (*http_cb)(void *priv, const char *err, http_response_t *resp);

typedef struct http_call http_call_t;

int http_client_init(uv_loop_t *loop); /* 0 ok, -1 on failure (logged) */
/* Cancels every call in flight (their callbacks run with err "shutdown") and
 * closes the handles; run the loop afterwards so the close callbacks fire. */
void http_client_close(void);

/* Start a request. The callback runs exactly once, never before
 * http_start returns, unless the call is cancelled. Returns NULL only for
 * an invalid request (then *err says why and the callback never runs). */
http_call_t *http_start(const http_request_t *req, http_cb cb, void *priv, const char **err);

/* Abandon a call: its callback will not run. Safe on a call whose callback
 * has not run yet; not after. */
void http_cancel(http_call_t *call);

size_t http_calls_in_flight(void);

#endif
