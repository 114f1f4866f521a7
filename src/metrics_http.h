/* metrics_http.h: the HTTP endpoint for Prometheus on --bind:--metrics-port
 * (SPEC §1, §7, §8), on the server's libuv loop.
 *
 *   GET|HEAD /metrics  200, text/plain; version=0.0.4 (the METRICS text)
 *   GET|HEAD /healthz  200 "ok"
 *   other paths        404;  other methods on those two paths: 405
 *   malformed request  400;  request line + headers over 16 KiB: 431
 *
 * Requests are parsed by http-parser (nodejs, 2.9). One request per
 * connection (the answer says Connection: close). Bounded: at most
 * METRICS_HTTP_MAX_CONNS connections (more get 503 and are closed), a
 * request must arrive whole within METRICS_HTTP_TIMEOUT_MS of the accept,
 * and the answer must be taken within the same time. Never authenticated:
 * it listens on the --bind address only, like the RESP port. */
#ifndef LC_METRICS_HTTP_H
#define LC_METRICS_HTTP_H

#include <stddef.h>
#include <uv.h>

#define METRICS_HTTP_MAX_CONNS  64
#define METRICS_HTTP_MAX_HEADER (16 * 1024)
#define METRICS_HTTP_TIMEOUT_MS 10000

/* Listen on cfg.bind:cfg.metrics_port; does nothing when the port is 0.
 * -1 with the reason in err (e.g. the port is in use). */
int metrics_http_start(uv_loop_t *loop, char *err, size_t errlen);
/* Close the listener and every connection (shutdown). Idempotent. */
void metrics_http_stop(void);

#endif
