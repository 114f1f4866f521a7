/* fuzz_split.h: how a fuzz input chooses the chunks it is fed in.
 *
 * The input's first byte k says how many chunk-size bytes follow
 * (k % 8; 0: one chunk, the whole rest); each of those bytes b gives a chunk
 * of b % 64 + 1 bytes, used in turn, cycling, until the rest is consumed.
 * So the fuzzer explores every way a stream can be cut into reads. Header
 * only: each harness is one translation unit. */
#ifndef LC_FUZZ_SPLIT_H
#define LC_FUZZ_SPLIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct fuzz_split {
    const uint8_t *sizes; /* chunk-size bytes */
    size_t nsizes;
    size_t next;         /* index of the next size byte */
    const uint8_t *data; /* the stream */
    size_t len, off;
} fuzz_split_t;

/* Consume the plan from in; the stream is what follows. The high bits of
 * the first byte are left to the harness (*flags gets the byte >> 3). */
static inline void fuzz_split_init(fuzz_split_t *s, const uint8_t *in, size_t len, unsigned *flags)
{
    size_t k = len ? in[0] % 8 : 0;
    *flags = len ? in[0] >> 3 : 0;
    if (len) {
        in++;
        len--;
    }
    if (k > len) k = len;
    s->sizes = in;
    s->nsizes = k;
    s->next = 0;
    s->data = in + k;
    s->len = len - k;
    s->off = 0;
}

/* The next chunk, or 0 bytes at the end of the stream. */
static inline size_t fuzz_split_next(fuzz_split_t *s, const uint8_t **chunk)
{
    size_t left = s->len - s->off, n = left;
    if (s->nsizes) {
        n = (size_t)(s->sizes[s->next] % 64) + 1;
        s->next = (s->next + 1) % s->nsizes;
        if (n > left) n = left;
    }
    *chunk = s->data + s->off;
    s->off += n;
    return n;
}

#endif
