/* buf.h: a growable byte buffer, the one output-buffer type of the core. */
#ifndef LC_BUF_H
#define LC_BUF_H

#include <stddef.h>

typedef struct buf {
    char *data;
    size_t len;
    size_t cap;
} buf_t;

void buf_reserve(buf_t *b, size_t extra);
void buf_append(buf_t *b, const void *p, size_t n);
void buf_append_str(buf_t *b, const char *s);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes. A memmove of the rest: never drain a large buffer
 * piecewise with it (server.c writes from an offset instead). */
void buf_consume(buf_t *b, size_t n);
void buf_reset(buf_t *b); /* len = 0, keep the memory */
void buf_free(buf_t *b);

#endif
