/* resp.c: resumable RESP2 request parser (multibulk and inline).
 *
 * Modelled on Redis's processMultibulkBuffer/processInlineBuffer, with one
 * difference: Redis keeps a query buffer per client and re-scans it, while
 * this parser consumes every byte it is given exactly once and carries the
 * partial state itself. A header or inline line split across reads is kept
 * in p->line; bulk bytes go straight into p->arena as they arrive. Every scan
 * is a memchr over the bytes given, never past them, and every length is
 * capped before anything is buffered, so a client cannot make us hold more
 * than max_inline bytes of line or max_bulk bytes per argument.
 *
 * State machine of the command being parsed:
 *   reqtype NONE                     -> the first byte picks INLINE or MULTIBULK
 *   INLINE                           -> gather one line, split it like sdssplitargs
 *   MULTIBULK, mb_left == 0          -> read the "*N" line
 *   MULTIBULK, bulk_len == -1        -> read a "$len" line
 *   MULTIBULK, bulk_len >= 0         -> copy len bytes plus CRLF into the arena */
#include "resp.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum { REQ_NONE = 0, REQ_INLINE = 1, REQ_MULTIBULK = 2 };

/* Internal results of one parsing step, beyond the public enum. A step
 * always consumes at least one byte unless it fails, which bounds the loop
 * in resp_feed by the input length. */
enum { STEP_MORE = RESP_NEED_MORE, STEP_DONE = RESP_DONE, STEP_ERROR = RESP_ERROR, STEP_SKIP = 3 };

#define DEFAULT_MAX_INLINE (64 * 1024)
#define DEFAULT_MAX_BULK   ((size_t)512 * 1024 * 1024)
#define DEFAULT_MAX_ARGS   (1024L * 1024)

/* One huge command must not pin its memory for the life of the connection
 * (Redis shrinks idle query buffers for the same reason), so buffers above
 * these sizes are released between commands. Below them they are reused. */
#define ARENA_KEEP (1024 * 1024)
#define ARGS_KEEP  4096

#define ERR_MBULK_LEN      "Protocol error: invalid multibulk length"
#define ERR_BULK_LEN       "Protocol error: invalid bulk length"
#define ERR_UNAUTH_MBULK   "Protocol error: unauthenticated multibulk length"
#define ERR_UNAUTH_BULK    "Protocol error: unauthenticated bulk length"
#define ERR_REQ_TOO_BIG    "Protocol error: request too large"
#define UNAUTH_MAX_ARGS    10
#define UNAUTH_MAX_BULK    16384
#define ERR_MBULK_TOO_BIG  "Protocol error: too big mbulk count string"
#define ERR_BULK_TOO_BIG   "Protocol error: too big bulk count string"
#define ERR_INLINE_TOO_BIG "Protocol error: too big inline request"
#define ERR_QUOTES         "Protocol error: unbalanced quotes in request"
#define ERR_BULK_CRLF      "Protocol error: expected CRLF after bulk data"

/* ---------------------------------------------------------------- helpers */

static int fail(resp_parser_t *p, const char *msg)
{
    p->errmsg = msg;
    return STEP_ERROR;
}

/* Strict decimal like Redis's string2ll: optional '-', no '+', no spaces,
 * no leading zeros, no overflow. Clients never send anything else, and
 * accepting "007" or " 7" would only hide framing bugs. */
static int parse_count(const char *s, size_t n, long long *out)
{
    size_t i = 0;
    int neg = 0;
    if (n > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n || n - i > 19) return -1;
    if (s[i] == '0') {
        if (n - i != 1 || neg) return -1;
        *out = 0;
        return 0;
    }
    unsigned long long v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned)(s[i] - '0'); /* 19 digits cannot wrap uint64 */
    }
    if (v > (unsigned long long)9223372036854775807LL) return -1;
    *out = neg ? -(long long)v : (long long)v;
    return 0;
}

/* Make room for argument number argc; the arrays only ever grow here. */
static void ensure_arg_slot(resp_parser_t *p)
{
    if (p->argc < p->arg_cap) return;
    long cap = p->arg_cap ? p->arg_cap * 2 : 8;
    p->arg_off = xrealloc(p->arg_off, (size_t)cap * sizeof(*p->arg_off));
    p->arg_len = xrealloc(p->arg_len, (size_t)cap * sizeof(*p->arg_len));
    p->arg_cap = cap;
}

static void put_byte(buf_t *b, char c)
{
    buf_reserve(b, 1);
    b->data[b->len++] = c;
}

/* Forget the previous command's arguments and any state of a half-parsed one. */
static void reset_command(resp_parser_t *p)
{
    p->reqtype = REQ_NONE;
    p->mb_left = 0;
    p->bulk_len = -1;
    p->argc = 0;
    buf_reset(&p->arena);
    buf_reset(&p->line);
}

/* ------------------------------------------------------------ line input */

/* Whether the line gathered so far (p->line, then in[0..take)) ends in '\r'. */
static int ends_in_cr(const resp_parser_t *p, const char *in, size_t take)
{
    if (take) return in[take - 1] == '\r';
    return p->line.len && p->line.data[p->line.len - 1] == '\r';
}

/* Gather one line ending in "\n" (a preceding "\r" is optional and
 * stripped, as memcached tolerates). Returns STEP_MORE having consumed all
 * of in if no newline is there yet, STEP_DONE with the line in *s and *slen
 * (pointing into in when the line came in one piece, else into p->line; the
 * caller resets p->line after use), or STEP_ERROR with toobig if the line
 * would exceed max_inline. *n is set to the bytes consumed. */
static int get_line(resp_parser_t *p, const char *in, size_t len, size_t *n, const char **s,
                    size_t *slen, const char *toobig)
{
    const char *nl = memchr(in, '\n', len);
    size_t take = nl ? (size_t)(nl - in) : len;
    size_t total = p->line.len + take;
    /* The cap is on the line's content: the one byte over it may only be
     * the '\r' of a "\r\n", so "\n" and "\r\n" endings get the same cap. */
    if (total > p->lim.max_inline && !(total == p->lim.max_inline + 1 && ends_in_cr(p, in, take)))
        return fail(p, toobig);
    if (!nl) {
        buf_append(&p->line, in, len);
        *n = len;
        return STEP_MORE;
    }
    *n = take + 1;
    if (p->line.len) {
        buf_append(&p->line, in, take);
        *s = p->line.data;
        *slen = p->line.len;
    } else {
        *s = in; /* the common case: the whole line is in this read, no copy */
        *slen = take;
    }
    if (*slen && (*s)[*slen - 1] == '\r') (*slen)--;
    return STEP_DONE;
}

/* ---------------------------------------------------------------- inline */

static int is_hex(int c)
{
    return isxdigit((unsigned char)c);
}

static int hex_val(int c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* A closing quote must end the word (Redis rejects "foo"bar). */
static int quote_closes_word(const char *s, size_t n, size_t i)
{
    return i + 1 == n || isspace((unsigned char)s[i + 1]);
}

/* Copy one double-quoted-string byte or escape at s[*i] into the arena,
 * leaving *i on the last byte used. */
static void put_dq_escape(buf_t *a, const char *s, size_t n, size_t *i)
{
    size_t j = *i;
    if (j + 3 < n && s[j + 1] == 'x' && is_hex(s[j + 2]) && is_hex(s[j + 3])) {
        put_byte(a, (char)(hex_val(s[j + 2]) * 16 + hex_val(s[j + 3])));
        *i = j + 3;
        return;
    }
    char c = s[++j];
    switch (c) {
    case 'n':
        c = '\n';
        break;
    case 'r':
        c = '\r';
        break;
    case 't':
        c = '\t';
        break;
    case 'b':
        c = '\b';
        break;
    case 'a':
        c = '\a';
        break;
    default:
        break; /* \\, \" and any other char stand for themselves */
    }
    put_byte(a, c);
    *i = j;
}

/* Read one word of an inline line starting at s[*i] (not a space) into the
 * arena, with sdssplitargs quoting rules; *i ends past the word. Returns -1
 * on unbalanced quotes. NUL bytes are ordinary bytes here. */
static int read_word(buf_t *a, const char *s, size_t n, size_t *i)
{
    int inq = 0, insq = 0;
    size_t j = *i;
    for (;; j++) {
        if (j == n) {
            if (inq || insq) return -1;
            break;
        }
        char c = s[j];
        if (inq) {
            if (c == '\\' && j + 1 < n) {
                put_dq_escape(a, s, n, &j);
            } else if (c == '"') {
                if (!quote_closes_word(s, n, j)) return -1;
                j++;
                break;
            } else {
                put_byte(a, c);
            }
        } else if (insq) {
            if (c == '\\' && j + 1 < n && s[j + 1] == '\'') {
                put_byte(a, '\'');
                j++;
            } else if (c == '\'') {
                if (!quote_closes_word(s, n, j)) return -1;
                j++;
                break;
            } else {
                put_byte(a, c);
            }
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            break;
        } else if (c == '"') {
            inq = 1; /* a quote may open mid-word: a"b c" is one word, as in Redis */
        } else if (c == '\'') {
            insq = 1;
        } else {
            put_byte(a, c);
        }
    }
    *i = j;
    return 0;
}

/* Split an inline line into the argument arrays. */
static int split_inline(resp_parser_t *p, const char *s, size_t n)
{
    size_t i = 0;
    for (;;) {
        while (i < n && isspace((unsigned char)s[i]))
            i++;
        if (i == n) return STEP_DONE;
        if (p->argc >= p->lim.max_args) return fail(p, ERR_MBULK_LEN);
        if (p->lim.unauthenticated && p->argc >= UNAUTH_MAX_ARGS) return fail(p, ERR_UNAUTH_MBULK);
        ensure_arg_slot(p);
        size_t off = p->arena.len;
        if (read_word(&p->arena, s, n, &i) != 0) return fail(p, ERR_QUOTES);
        p->arg_off[p->argc] = off;
        p->arg_len[p->argc] = p->arena.len - off;
        put_byte(&p->arena, '\0');
        p->argc++;
    }
}

static int step_inline(resp_parser_t *p, const char *in, size_t len, size_t *n)
{
    const char *s;
    size_t slen;
    int rc = get_line(p, in, len, n, &s, &slen, ERR_INLINE_TOO_BIG);
    if (rc != STEP_DONE) return rc;
    rc = split_inline(p, s, slen);
    buf_reset(&p->line);
    if (rc != STEP_DONE) return rc;
    return p->argc ? STEP_DONE : STEP_SKIP; /* blank line: not a command */
}

/* ------------------------------------------------------------- multibulk */

static int step_mbulk_count(resp_parser_t *p, const char *in, size_t len, size_t *n)
{
    const char *s;
    size_t slen;
    long long ll;
    int rc = get_line(p, in, len, n, &s, &slen, ERR_MBULK_TOO_BIG);
    if (rc != STEP_DONE) return rc;
    /* s[0] is the '*' that chose this request type */
    rc = parse_count(s + 1, slen - 1, &ll);
    buf_reset(&p->line);
    if (rc != 0 || ll > p->lim.max_args) return fail(p, ERR_MBULK_LEN);
    if (p->lim.unauthenticated && ll > UNAUTH_MAX_ARGS) return fail(p, ERR_UNAUTH_MBULK);
    if (ll <= 0) return STEP_SKIP; /* "*0" and "*-1": Redis ignores them */
    p->mb_left = (long)ll;
    p->bulk_len = -1;
    return STEP_MORE;
}

/* Redis names the offending byte; a control byte is shown as '?' so the
 * message stays one printable line. */
static int fail_expected_dollar(resp_parser_t *p, const char *s, size_t slen)
{
    char c = slen ? s[0] : ' ';
    if (!isprint((unsigned char)c)) c = '?';
    snprintf(p->errbuf, sizeof(p->errbuf), "Protocol error: expected '$', got '%c'", c);
    return fail(p, p->errbuf);
}

static int step_bulk_header(resp_parser_t *p, const char *in, size_t len, size_t *n)
{
    const char *s;
    size_t slen;
    long long ll;
    int rc = get_line(p, in, len, n, &s, &slen, ERR_BULK_TOO_BIG);
    if (rc != STEP_DONE) return rc;
    if (slen == 0 || s[0] != '$') return fail_expected_dollar(p, s, slen);
    rc = parse_count(s + 1, slen - 1, &ll);
    buf_reset(&p->line);
    if (rc != 0 || ll < 0 || (unsigned long long)ll > p->lim.max_bulk) return fail(p, ERR_BULK_LEN);
    if (p->lim.unauthenticated && ll > UNAUTH_MAX_BULK) return fail(p, ERR_UNAUTH_BULK);
    /* Refused before any of its bytes are buffered, like the bulk cap. */
    if (p->lim.max_request && p->arena.len + (unsigned long long)ll > p->lim.max_request)
        return fail(p, ERR_REQ_TOO_BIG);
    ensure_arg_slot(p);
    p->arg_off[p->argc] = p->arena.len;
    p->bulk_len = (long)ll;
    return STEP_MORE;
}

/* Copy bulk bytes and then the CRLF after them into the arena; the CRLF is
 * checked byte by byte as it arrives (it may be split across reads) and its
 * '\r' slot becomes the argument's NUL terminator. */
static int step_bulk_data(resp_parser_t *p, const char *in, size_t len, size_t *n)
{
    size_t off = p->arg_off[p->argc];
    size_t blen = (size_t)p->bulk_len;
    size_t have = p->arena.len - off;
    size_t take = blen + 2 - have;
    if (take > len) take = len;
    buf_append(&p->arena, in, take);
    *n = take;
    have += take;
    char *d = p->arena.data + off;
    if (have > blen && d[blen] != '\r') return fail(p, ERR_BULK_CRLF);
    if (have > blen + 1 && d[blen + 1] != '\n') return fail(p, ERR_BULK_CRLF);
    if (have < blen + 2) return STEP_MORE;
    d[blen] = '\0';
    p->arena.len = off + blen + 1;
    p->arg_len[p->argc++] = blen;
    p->bulk_len = -1;
    return --p->mb_left == 0 ? STEP_DONE : STEP_MORE;
}

/* -------------------------------------------------------------- fast path */

/* A short strict decimal ("*2", "$3") straight from the input: 1 to 9
 * digits, no sign, no leading zero, ending in "\r\n" inside in[0..len).
 * Sets *end past the "\r\n". Anything else is -1, and the general path
 * decides (it also knows the error texts). */
static long fast_count(const char *s, const char *lim, const char **end)
{
    if (s >= lim || (unsigned char)(*s - '1') > 8) return -1;
    long v = *s++ - '0';
    for (int d = 1; s < lim && (unsigned char)(*s - '0') <= 9; d++) {
        if (d == 9) return -1;
        v = v * 10 + (*s++ - '0');
    }
    if (lim - s < 2 || s[0] != '\r' || s[1] != '\n') return -1;
    *end = s + 2;
    return v;
}

/* "$len\r\n" at s, "$0\r\n" included: the length, *end past it; or -1. */
static long fast_bulk_header(const char *s, const char *lim, const char **end)
{
    if (s >= lim || *s != '$') return -1;
    if (lim - s >= 4 && memcmp(s, "$0\r\n", 4) == 0) {
        *end = s + 4;
        return 0;
    }
    return fast_count(s + 1, lim, end);
}

/* Almost every command arrives whole in one read ("*2\r\n$3\r\nGET\r\n$9
 * \r\nuser:4242\r\n"): parse it in one pass, without the line buffer or
 * the per-step state, and copy its arguments with one reservation. Only a
 * command that is complete, canonical and within every limit is taken:
 * for anything else (split across reads, "\n" without "\r", a count with a
 * sign or a leading zero, a cap exceeded) it returns 0 having changed
 * nothing, and the general path parses the same bytes and gives the exact
 * error. Returns the bytes used on success. */
static size_t fast_command(resp_parser_t *p, const char *in, size_t len)
{
    enum { FAST_MAX_ARGS = 16 };
    const char *lim = in + len, *q;
    long n = fast_count(in + 1, lim, &q); /* in[0] == '*' */
    if (n <= 0 || n > p->lim.max_args || n > FAST_MAX_ARGS) return 0;
    if (p->lim.unauthenticated && n > UNAUTH_MAX_ARGS) return 0;
    /* First pass: check the framing, note where each argument is. */
    const char *arg[FAST_MAX_ARGS];
    size_t alen[FAST_MAX_ARGS], total = 0;
    for (long i = 0; i < n; i++) {
        long bl = fast_bulk_header(q, lim, &q);
        if (bl < 0) return 0;
        if ((size_t)bl > p->lim.max_bulk || (p->lim.unauthenticated && bl > UNAUTH_MAX_BULK))
            return 0;
        if ((size_t)(lim - q) < (size_t)bl + 2 || q[bl] != '\r' || q[bl + 1] != '\n') return 0;
        arg[i] = q;
        alen[i] = (size_t)bl;
        total += (size_t)bl;
        q += bl + 2;
    }
    /* as step_bulk_header counts it: the arena, NULs included, before the last argument */
    if (p->lim.max_request && total + (size_t)n - 1 > p->lim.max_request) return 0;
    /* Second pass: copy, each argument NUL-terminated, as the general path
     * does. reset_command's work: no command was half-parsed (REQ_NONE). */
    p->mb_left = 0;
    p->bulk_len = -1;
    p->line.len = 0;
    p->arena.len = 0;
    while (p->arg_cap < n) {
        p->argc = p->arg_cap; /* ensure_arg_slot makes room for slot argc */
        ensure_arg_slot(p);
    }
    buf_reserve(&p->arena, total + (size_t)n);
    char *a = p->arena.data;
    size_t off = 0;
    for (long i = 0; i < n; i++) {
        memcpy(a + off, arg[i], alen[i]);
        a[off + alen[i]] = '\0';
        p->arg_off[i] = off;
        p->arg_len[i] = alen[i];
        off += alen[i] + 1;
    }
    p->arena.len = off;
    p->argc = n;
    return (size_t)(q - in);
}

/* ------------------------------------------------------------ public API */

void resp_parser_init(resp_parser_t *p, const resp_limits_t *lim)
{
    memset(p, 0, sizeof(*p));
    if (lim) p->lim = *lim;
    if (!p->lim.max_inline) p->lim.max_inline = DEFAULT_MAX_INLINE;
    if (!p->lim.max_bulk) p->lim.max_bulk = DEFAULT_MAX_BULK;
    if (p->lim.max_args <= 0) p->lim.max_args = DEFAULT_MAX_ARGS;
    p->bulk_len = -1;
}

void resp_parser_free(resp_parser_t *p)
{
    buf_free(&p->line);
    buf_free(&p->arena);
    free(p->arg_off);
    free(p->arg_len);
    p->arg_off = p->arg_len = NULL;
    p->arg_cap = p->argc = 0;
}

static int step(resp_parser_t *p, const char *in, size_t len, size_t *n)
{
    if (p->reqtype == REQ_NONE) {
        reset_command(p); /* a new command begins: the finished one is gone */
        p->reqtype = in[0] == '*' ? REQ_MULTIBULK : REQ_INLINE;
    }
    if (p->reqtype == REQ_INLINE) return step_inline(p, in, len, n);
    if (p->mb_left == 0) return step_mbulk_count(p, in, len, n);
    if (p->bulk_len < 0) return step_bulk_header(p, in, len, n);
    return step_bulk_data(p, in, len, n);
}

int resp_feed(resp_parser_t *p, const char *in, size_t len, size_t *used)
{
    size_t pos = 0;
    if (p->errmsg) {
        *used = 0;
        return RESP_ERROR;
    }
    if (p->reqtype == REQ_NONE && len > 0 && in[0] == '*') {
        size_t n = fast_command(p, in, len);
        if (n) {
            *used = n;
            return RESP_DONE;
        }
    }
    while (pos < len) {
        size_t n = 0;
        int rc = step(p, in + pos, len - pos, &n);
        pos += n;
        if (rc == STEP_DONE) p->reqtype = REQ_NONE; /* keep argc/arena for the caller */
        if (rc == STEP_SKIP) reset_command(p);
        if (rc == STEP_DONE || rc == STEP_ERROR) {
            *used = pos;
            return rc;
        }
    }
    *used = pos;
    return RESP_NEED_MORE;
}

const char *resp_arg(const resp_parser_t *p, long i, size_t *len)
{
    if (i < 0 || i >= p->argc || p->reqtype != REQ_NONE) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = p->arg_len[i];
    return p->arena.data + p->arg_off[i];
}

void resp_next_command(resp_parser_t *p)
{
    if (p->reqtype != REQ_NONE) return; /* a newer command is half-parsed: keep it */
    reset_command(p);
    if (p->arena.cap > ARENA_KEEP) buf_free(&p->arena);
    if (p->arg_cap > ARGS_KEEP) {
        free(p->arg_off);
        free(p->arg_len);
        p->arg_off = p->arg_len = NULL;
        p->arg_cap = 0;
    }
}
