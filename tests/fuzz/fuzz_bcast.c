/* fuzz_bcast.c: the channel message reader (src/bcast_msg.c) on arbitrary
 * bytes, as anyone who can PUBLISH to the Redis could send them.
 * Checks: every body yielded lies inside the input; the types are the
 * input's bytes (a K message's keys come as 'K'); no envelope letter 'B'
 * is yielded (an envelope inside one is skipped); nothing is yielded for a
 * message of our own instance; a G body that parses names a namespace
 * inside it. The first input byte picks our instance id's length (0..7 of
 * "abcdefg"), so messages "from us" are reachable. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bcast_msg.h"

static const char *in_start, *in_end;
static size_t yielded;

static void visit(void *ctx, char type, const char *body, size_t len)
{
    (void)ctx;
    if (body < in_start || body > in_end || len > (size_t)(in_end - body)) abort();
    if (type == 'B') abort();
    yielded++;
    if (type == 'G') {
        size_t ns_len;
        long long gen;
        if (bcast_parse_gen(body, len, &ns_len, &gen) == 0 && ns_len >= len) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t self_len = data[0] % 8;
    /* a copy of exactly the message, so reading past it is a heap overflow */
    size_t len = size - 1;
    char *msg = malloc(len ? len : 1);
    if (!msg) return 0;
    memcpy(msg, data + 1, len);
    in_start = msg;
    in_end = msg + len;
    yielded = 0;
    bcast_parse(msg, len, "abcdefg", self_len, visit, NULL);
    /* a lone message from us yields nothing */
    if (len >= 4 && msg[0] != 'B' && msg[1] == ' ' && (size_t)(len - 2) > self_len &&
        memcmp(msg + 2, "abcdefg", self_len) == 0 && msg[2 + self_len] == ' ' && yielded != 0)
        abort();
    free(msg);
    return 0;
}
