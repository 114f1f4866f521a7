/* reply.h: RESP2 reply encoders over a buf_t. Pure functions: the client
 * layer decides which buffer (the socket's, or a deferred slot) they fill.
 * The "-ERR " prefix is added in exactly one place: reply_error(). */
#ifndef LC_REPLY_H
#define LC_REPLY_H

#include <stddef.h>

#include "buf.h"

void reply_status(buf_t *b, const char *s); /* +s\r\n */
/* -ERR msg\r\n. A message that already starts with one of the known error
 * codes followed by a space (ERR, NOAUTH, WRONGPASS, WRONGTYPE, NOPROTO,
 * NOPERM, BUSY, LOADING, READONLY, NOSCRIPT, EXECABORT) gets no ERR prefix,
 * as Redis's addReplyError does for "-CODE ..." texts; any other text, even
 * one in capitals, is prefixed. CR and LF in the message (and in status
 * texts) are replaced by spaces so the framing stays intact. */
void reply_error(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* -CODE msg\r\n, e.g. ("NOAUTH", "Authentication required."); CR/LF sanitised. */
void reply_error_code(buf_t *b, const char *code, const char *msg);
void reply_int(buf_t *b, long long v);
void reply_bulk(buf_t *b, const void *p, size_t n);
void reply_bulk_str(buf_t *b, const char *s); /* NULL s: nil */
void reply_bulk_ll(buf_t *b, long long v);    /* v in decimal, as a bulk string */
void reply_nil(buf_t *b);                     /* $-1 */
void reply_array(buf_t *b, long n);           /* *n header; the n elements follow */
void reply_ok(buf_t *b);                      /* +OK */

#endif
