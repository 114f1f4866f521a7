/* sink.c: the encodings of sink.h that depend on the protocol version. */
#include "sink.h"

#include <stdio.h>

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
