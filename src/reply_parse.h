/* reply_parse.h: a resumable RESP2 reply parser that builds redisReply
 * trees in place, for the command link (backend.c).
 *
 * hiredis's reader copies every read into its own buffer, moves what is
 * left to the front after every reply, and allocates each element: most of
 * a Redis-backed hit's cost. This parser works on the caller's (writable)
 * buffer: strings point into it, NUL-terminated in place (the '\r' after
 * each becomes the NUL), and the reply's nodes and element arrays live in
 * two arrays owned by the parser and reused. So a reply is valid until the
 * next call, and the caller must keep the bytes it used until then.
 *
 * The trees are the same as hiredis's default reader builds (types, str,
 * len, integer, elements, element), so every consumer reads them as usual
 * (tests/c/test_reply_parse.c compares the two). Limits, each a protocol
 * error: nesting deeper than REPLY_MAX_DEPTH, a bulk over 512 MiB, a
 * status/error/integer line over 1 MiB, a malformed length or integer, an
 * unknown type byte. Only RESP2 (no HELLO 3 on this link). */
#ifndef LC_REPLY_PARSE_H
#define LC_REPLY_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#define REPLY_MAX_DEPTH 8

typedef struct reply_parser {
    /* scan of the reply at the front of the buffer, resumed as bytes come */
    bool scanning;
    size_t pos;                          /* offset of the next item to scan */
    int depth;                           /* arrays open */
    long long left[REPLY_MAX_DEPTH + 1]; /* items still to come per level */
    size_t nodes, slots;                 /* what the reply needs so far */
    /* the storage of the last reply built */
    redisReply *node;
    size_t node_cap;
    redisReply **slot;
    size_t slot_cap;
    char err[80]; /* why, after -1 */
} reply_parser_t;

void reply_parser_init(reply_parser_t *p);
/* Forget a reply half scanned (the connection is gone); keep the storage. */
void reply_parser_reset(reply_parser_t *p);
void reply_parser_free(reply_parser_t *p);

/* Parse the reply starting at buf[0], of which len bytes are there.
 * 1: complete, *out is it and *used the bytes it took; 0: not complete
 * (call again with the same reply at buf[0] and more bytes; the buffer may
 * have moved); -1: protocol error, p->err says which (the stream cannot be
 * resynchronised). */
int reply_parse(reply_parser_t *p, char *buf, size_t len, size_t *used, redisReply **out);

#endif
