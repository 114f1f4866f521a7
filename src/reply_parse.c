/* reply_parse.c: resumable RESP2 reply parser, trees built in place (see
 * reply_parse.h).
 *
 * Two passes per reply. The scan checks the framing item by item and
 * counts the nodes and element slots the tree needs; it stops at the first
 * item that is not all there and resumes from it when called with more
 * bytes, so a large reply arriving in many reads is scanned once. Arrays
 * need no recursion to know when the reply ends: left[d] counts the items
 * still to come at depth d. Once the scan reaches the end, the build walks
 * the same bytes again (now known to be well formed) and fills the nodes. */
#include "reply_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MAX_BULK  ((long long)512 * 1024 * 1024)
#define MAX_LINE  (1024 * 1024)
#define MAX_ITEMS ((long long)0x7fffffff) /* hiredis's element count is an int */

void reply_parser_init(reply_parser_t *p)
{
    memset(p, 0, sizeof(*p));
}

void reply_parser_reset(reply_parser_t *p)
{
    p->scanning = false;
}

void reply_parser_free(reply_parser_t *p)
{
    free(p->node);
    free(p->slot);
    reply_parser_init(p);
}

static int fail(reply_parser_t *p, const char *what, char type)
{
    if (type)
        snprintf(p->err, sizeof(p->err), "protocol error: %s (type byte 0x%02x)", what,
                 (unsigned char)type);
    else
        snprintf(p->err, sizeof(p->err), "protocol error: %s", what);
    return -1;
}

/* The number line of the item at buf[at] (':', '$', '*'): read in place,
 * no search for its end. 1: *n, *next past its "\r\n"; 0: not all there;
 * -1: not a decimal (optional '-', 1 to 19 digits, within int64) followed by "\r\n". */
static int number_line(const char *buf, size_t len, size_t at, long long *n, size_t *next)
{
    size_t i = at + 1;
    bool neg = i < len && buf[i] == '-';
    i += neg;
    size_t first = i;
    unsigned long long v = 0;
    while (i < len && (unsigned char)(buf[i] - '0') <= 9 && i - first < 20) {
        v = v * 10 + (unsigned)(buf[i] - '0');
        i++;
    }
    size_t digits = i - first;
    if (digits > 19) return -1;
    if (i == len) return 0;
    if (digits == 0 || buf[i] != '\r') return -1;
    if (i + 1 == len) return 0;
    if (buf[i + 1] != '\n' || v > (unsigned long long)9223372036854775807LL + neg) return -1;
    *n = neg ? (long long)(0 - v) : (long long)v;
    *next = i + 2;
    return 1;
}

/* The line of the item at buf[at]: its content is buf[at+1 .. *cr), and
 * "\r\n" follows. 1 found, 0 not all there, -1 too long. */
static int find_line(const char *buf, size_t len, size_t at, size_t *cr)
{
    size_t from = at + 1;
    for (;;) {
        const char *nl = from < len ? memchr(buf + from, '\n', len - from) : NULL;
        if (!nl) return len - at > MAX_LINE ? -1 : 0;
        size_t i = (size_t)(nl - buf);
        if (i > at + 1 && buf[i - 1] == '\r') {
            if (i - at > MAX_LINE) return -1;
            *cr = i - 1;
            return 1;
        }
        from = i + 1; /* a bare '\n' inside a status line: Redis sends none, hiredis skips it */
    }
}

/* Scan on from p->pos. 1: the reply ends at p->pos; 0: more bytes needed. */
static int scan(reply_parser_t *p, const char *buf, size_t len)
{
    while (p->depth > 0 || p->left[0] > 0) {
        size_t at = p->pos, cr;
        if (at >= len) return 0;
        char t = buf[at];
        if (t != '+' && t != '-' && t != ':' && t != '$' && t != '*')
            return fail(p, "unknown reply type", t);
        size_t next;
        long long n = 0;
        int rc;
        if (t == '+' || t == '-') {
            rc = find_line(buf, len, at, &cr);
            if (rc < 0) return fail(p, "line too long", t);
            next = cr + 2;
        } else {
            rc = number_line(buf, len, at, &n, &next);
            if (rc < 0) return fail(p, t == ':' ? "bad integer" : "bad length", t);
        }
        if (rc == 0) return 0;
        if (t == '$' && n >= 0) {
            if (n > MAX_BULK) return fail(p, "bulk too long", t);
            if (len - next < (size_t)n + 2) return 0;
            if (buf[next + n] != '\r' || buf[next + n + 1] != '\n')
                return fail(p, "no CRLF after a bulk", t);
            next += (size_t)n + 2;
        } else if ((t == '$' || t == '*') && n < -1) {
            return fail(p, "bad length", t);
        }
        p->pos = next;
        p->nodes++;
        p->left[p->depth]--;
        if (t == '*' && n > 0) {
            if (n > MAX_ITEMS) return fail(p, "array too long", t);
            if (p->depth == REPLY_MAX_DEPTH) return fail(p, "arrays nested too deep", t);
            p->slots += (size_t)n;
            p->left[++p->depth] = n;
            continue;
        }
        while (p->depth > 0 && p->left[p->depth] == 0)
            p->depth--;
    }
    return 1;
}

struct build {
    char *buf;
    size_t pos, len;
    redisReply *node; /* next free */
    redisReply **slot;
};

/* Build the item at b->pos (scanned: well formed). */
static redisReply *build(struct build *b)
{
    redisReply *r = b->node++;
    memset(r, 0, sizeof(*r));
    char *s = b->buf + b->pos;
    char t = s[0];
    long long n = 0;
    if (t == '+' || t == '-') {
        /* find_line sets it; gcc -O3 cannot tell (maybe-uninitialized) */
        size_t cr = 0;
        find_line(b->buf, b->len, b->pos, &cr); /* the scan found it */
        r->type = t == '+' ? REDIS_REPLY_STATUS : REDIS_REPLY_ERROR;
        r->str = s + 1;
        r->len = cr - b->pos - 1;
        b->buf[cr] = '\0';
        b->pos = cr + 2;
        return r;
    }
    /* The scan checked the number and its "\r\n": read it plainly. */
    const char *d = s + 1;
    bool neg = *d == '-';
    d += neg;
    unsigned long long v = 0;
    while (*d != '\r')
        v = v * 10 + (unsigned)(*d++ - '0');
    n = neg ? (long long)(0 - v) : (long long)v;
    b->pos = (size_t)(d + 2 - b->buf);
    switch (t) {
    case ':':
        r->type = REDIS_REPLY_INTEGER;
        r->integer = n;
        break;
    case '$':
        if (n < 0) {
            r->type = REDIS_REPLY_NIL;
            break;
        }
        r->type = REDIS_REPLY_STRING;
        r->str = b->buf + b->pos;
        r->len = (size_t)n;
        r->str[n] = '\0';
        b->pos += (size_t)n + 2;
        break;
    default: /* '*' */
        if (n < 0) {
            r->type = REDIS_REPLY_NIL;
            break;
        }
        r->type = REDIS_REPLY_ARRAY;
        r->elements = (size_t)n;
        if (n == 0) break;
        r->element = b->slot;
        b->slot += n;
        for (long long i = 0; i < n; i++)
            r->element[i] = build(b);
        break;
    }
    return r;
}

static void *grow(void *a, size_t *cap, size_t want, size_t size)
{
    if (*cap >= want) return a;
    size_t c = *cap ? *cap : 16;
    while (c < want)
        c *= 2;
    *cap = c;
    return xrealloc(a, c * size);
}

int reply_parse(reply_parser_t *p, char *buf, size_t len, size_t *used, redisReply **out)
{
    if (!p->scanning) {
        p->scanning = true;
        p->pos = 0;
        p->depth = 0;
        p->left[0] = 1;
        p->nodes = p->slots = 0;
    }
    int rc = scan(p, buf, len);
    if (rc <= 0) {
        if (rc < 0) p->scanning = false;
        return rc;
    }
    p->scanning = false;
    p->node = grow(p->node, &p->node_cap, p->nodes, sizeof(*p->node));
    p->slot = grow(p->slot, &p->slot_cap, p->slots, sizeof(*p->slot));
    struct build b = {.buf = buf, .pos = 0, .len = len, .node = p->node, .slot = p->slot};
    *out = build(&b);
    *used = b.pos;
    return 1;
}
