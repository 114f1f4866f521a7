/* sink.c: the encodings of sink.h that depend on the protocol version. */
#include "sink.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "reply.h"

void sink_null(sink_proto_t proto, buf_t *b)
{
    if (proto == SINK_RESP3)
        buf_append(b, "_\r\n", 3);
    else
        reply_nil(b);
}

void sink_map(sink_proto_t proto, buf_t *b, long n)
{
    if (proto != SINK_RESP3) {
        reply_array(b, 2 * n); /* RESP2: the pairs as a flat array */
        return;
    }
    char head[32];
    int len = snprintf(head, sizeof(head), "%%%ld\r\n", n);
    buf_append(b, head, (size_t)len);
}

void sink_double(sink_proto_t proto, buf_t *b, double v)
{
    char num[40];
    int len;
    if (isnan(v))
        len = snprintf(num, sizeof(num), "nan");
    else if (isinf(v))
        len = snprintf(num, sizeof(num), v > 0 ? "inf" : "-inf");
    else /* the fewest digits that read back as v: 0.1, not 0.10000000000000001 */
        for (int prec = 15; prec <= 17; prec++) {
            len = snprintf(num, sizeof(num), "%.*g", prec, v);
            if (strtod(num, NULL) == v) break;
        }
    if (proto != SINK_RESP3) {
        reply_bulk(b, num, (size_t)len);
        return;
    }
    buf_append(b, ",", 1);
    buf_append(b, num, (size_t)len);
    buf_append(b, "\r\n", 2);
}

void sink_verbatim(sink_proto_t proto, buf_t *b, const char *p, size_t n)
{
    if (proto != SINK_RESP3) {
        reply_bulk(b, p, n);
        return;
    }
    char head[32];
    int len = snprintf(head, sizeof(head), "=%zu\r\ntxt:", n + 4);
    buf_append(b, head, (size_t)len);
    buf_append(b, p, n);
    buf_append(b, "\r\n", 2);
}
