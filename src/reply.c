/* reply.c: RESP2 reply encoders over a buf_t.
 *
 * Like Redis's addReply* family these only append bytes; they never fail
 * (buf growth aborts on OOM) and never touch a socket. Integers are
 * formatted by hand because they are in every reply header and printf's
 * parsing would dominate small replies. */
#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* Error codes a message may already start with (then no "ERR " is added).
 * A short fixed list rather than "any capitalised word", so that an
 * arbitrary text such as a policy's error message cannot change the code
 * clients see. */
static const char *const known_codes[] = {
    "ERR",  "NOAUTH",  "WRONGPASS", "WRONGTYPE", "NOPROTO",   "NOPERM",
    "BUSY", "LOADING", "READONLY",  "NOSCRIPT",  "EXECABORT",
};

/* Append prefix, v in decimal, CRLF: the shape of every length header.
 * Written in place; lengths under 10,000 (most of them, on every hit)
 * without the general loop. */
static void put_number_line(buf_t *b, char prefix, long long v)
{
    buf_reserve(b, 24); /* prefix, sign, 19 digits, CRLF */
    char *p = b->data + b->len;
    *p++ = prefix;
    if (v >= 0 && v < 10000) {
        int u = (int)v;
        if (u >= 1000) *p++ = (char)('0' + u / 1000);
        if (u >= 100) *p++ = (char)('0' + u / 100 % 10);
        if (u >= 10) *p++ = (char)('0' + u / 10 % 10);
        *p++ = (char)('0' + u % 10);
    } else {
        char tmp[24];
        char *end = tmp + sizeof(tmp), *q = format_ll_back(end, v);
        memcpy(p, q, (size_t)(end - q));
        p += end - q;
    }
    *p++ = '\r';
    *p++ = '\n';
    b->len = (size_t)(p - b->data);
}

/* Replace CR and LF in b->data[from..len) by spaces: an error or status
 * text is one line, and a stray newline would desynchronise the client. */
static void sanitize_tail(buf_t *b, size_t from)
{
    for (size_t i = from; i < b->len; i++) {
        if (b->data[i] == '\r' || b->data[i] == '\n') b->data[i] = ' ';
    }
}

static void put_line(buf_t *b, char prefix, const char *s)
{
    buf_append(b, &prefix, 1);
    size_t from = b->len;
    buf_append_str(b, s);
    sanitize_tail(b, from);
    buf_append(b, "\r\n", 2);
}

static int starts_with_code(const char *s, size_t n)
{
    for (size_t i = 0; i < LC_ARRAY_LEN(known_codes); i++) {
        size_t k = strlen(known_codes[i]);
        if (n > k && s[k] == ' ' && memcmp(s, known_codes[i], k) == 0) return 1;
    }
    return 0;
}

void reply_status(buf_t *b, const char *s)
{
    put_line(b, '+', s);
}

void reply_ok(buf_t *b)
{
    buf_append(b, "+OK\r\n", 5);
}

/* Formats straight into b after a tentative "-ERR ", then drops the "ERR "
 * if the text carries its own code: no temporary buffer, any length. */
void reply_error(buf_t *b, const char *fmt, ...)
{
    size_t start = b->len;
    buf_append(b, "-ERR ", 5);
    size_t msg = b->len;
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        buf_reserve(b, (size_t)n + 1);
        vsnprintf(b->data + msg, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
    if (starts_with_code(b->data + msg, b->len - msg)) {
        memmove(b->data + start + 1, b->data + msg, b->len - msg);
        b->len -= 4;
        msg = start + 1;
    }
    sanitize_tail(b, msg);
    buf_append(b, "\r\n", 2);
}

void reply_error_code(buf_t *b, const char *code, const char *msg)
{
    buf_append(b, "-", 1);
    size_t from = b->len;
    buf_append_str(b, code && *code ? code : "ERR");
    buf_append(b, " ", 1);
    buf_append_str(b, msg ? msg : "");
    sanitize_tail(b, from);
    buf_append(b, "\r\n", 2);
}

void reply_int(buf_t *b, long long v)
{
    put_number_line(b, ':', v);
}

void reply_bulk(buf_t *b, const void *p, size_t n)
{
    put_number_line(b, '$', (long long)n);
    buf_reserve(b, n + 2);
    char *q = b->data + b->len;
    if (n) memcpy(q, p, n);
    q[n] = '\r';
    q[n + 1] = '\n';
    b->len += n + 2;
}

void reply_bulk_str(buf_t *b, const char *s)
{
    if (!s) {
        reply_nil(b);
        return;
    }
    reply_bulk(b, s, strlen(s));
}

void reply_nil(buf_t *b)
{
    buf_append(b, "$-1\r\n", 5);
}

void reply_array(buf_t *b, long n)
{
    put_number_line(b, '*', n);
}

void reply_bulk_ll(buf_t *b, long long v)
{
    char tmp[24];
    char *end = tmp + sizeof(tmp), *q = format_ll_back(end, v);
    reply_bulk(b, q, (size_t)(end - q));
}
