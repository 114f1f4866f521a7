/* cmd_metrics.c: METRICS, the Prometheus text of GET /metrics as one bulk
 * string (SPEC §3), for hosts that can reach the RESP port only. */
#include "commands.h"
#include "metrics.h"
#include "reply.h"

void cmd_metrics(client_t *c)
{
    buf_t text = {0};
    metrics_render(&text);
    reply_bulk(client_reply_buf(c), text.data, text.len);
    buf_free(&text);
}
