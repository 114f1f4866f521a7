/* test_resp.c: unit tests of the RESP2 request parser (src/resp.c).
 *
 * Most tests go through run_stream(), which feeds a byte stream to a fresh
 * parser in a given chunking and renders everything it parsed as text:
 * "[3:GET,7:user:42]" per command (lengths make it binary-safe) and
 * "!<errmsg>" for a protocol error. A stream must render the same whatever
 * the chunking, so the check_splits() tests feed it whole, one byte at a
 * time, in every chunk size and at every two-way split. Each chunk is copied
 * into a malloc block of exactly its size so that ASan catches any read past
 * the bytes given. Every loop is bounded by the stream length or a constant. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "resp.h"
#include "util.h"
#include "check.h"

/* Small limits so the caps are cheap to reach. */
static const resp_limits_t small = {.max_inline = 32, .max_bulk = 16, .max_args = 4};
static const resp_limits_t roomy = {.max_inline = 1024, .max_bulk = 1024, .max_args = 64};

/* ------------------------------------------------------------- harness */

/* Render the finished command into out as [len:bytes,...]. */
static void render_command(const resp_parser_t *p, buf_t *out)
{
    buf_append(out, "[", 1);
    for (long i = 0; i < p->argc; i++) {
        size_t len;
        const char *a = resp_arg(p, i, &len);
        if (!a) {
            buf_append_str(out, "<null>");
            continue;
        }
        if (a[len] != '\0') buf_append_str(out, "<unterminated>");
        buf_printf(out, "%s%zu:", i ? "," : "", len);
        buf_append(out, a, len);
    }
    buf_append(out, "]", 1);
}

/* Feed one chunk (copied to an exact-size block), draining every command.
 * Returns 0 to go on, -1 after a protocol error. */
static int feed_chunk(resp_parser_t *p, const char *s, size_t n, buf_t *out)
{
    char *chunk = xmalloc(n);
    memcpy(chunk, s, n);
    size_t pos = 0;
    int ret = 0;
    for (size_t guard = 0; guard <= n; guard++) { /* each DONE consumes >= 1 byte */
        size_t used = 0;
        int rc = resp_feed(p, chunk + pos, n - pos, &used);
        CHECK(used <= n - pos);
        pos += used;
        if (rc == RESP_DONE) {
            render_command(p, out);
            resp_next_command(p);
            continue;
        }
        if (rc == RESP_ERROR) {
            buf_printf(out, "!%s", p->errmsg);
            ret = -1;
        } else {
            CHECK(rc == RESP_NEED_MORE && pos == n); /* NEED_MORE eats everything */
        }
        break;
    }
    free(chunk);
    return ret;
}

/* Parse s[0..n) cut at the given ascending offsets; render into out
 * (NUL-terminated). */
static void run_cuts(const resp_limits_t *lim, const char *s, size_t n, const size_t *cuts,
                     size_t ncuts, buf_t *out)
{
    resp_parser_t p;
    resp_parser_init(&p, lim);
    buf_reset(out);
    size_t from = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        if (to > from && feed_chunk(&p, s + from, to - from, out) != 0) break;
        from = to;
    }
    buf_append(out, "", 1);
    out->len--;
    resp_parser_free(&p);
}

static void run_stream(const resp_limits_t *lim, const char *s, size_t n, size_t chunk, buf_t *out)
{
    size_t cuts[4096];
    size_t ncuts = 0;
    for (size_t c = chunk; chunk && c < n && ncuts < LC_ARRAY_LEN(cuts); c += chunk) {
        cuts[ncuts++] = c;
    }
    run_cuts(lim, s, n, cuts, ncuts, out);
}

/* Print bytes readably (C escapes) for failure messages. */
static int same(const buf_t *out, const char *want, size_t wlen)
{
    return out->len == wlen && memcmp(out->data, want, wlen) == 0;
}

/* The stream must render as want whole, in every chunk size and at every
 * two-way split point. Returns how many runs disagreed (0 is good). */
static int check_splits_n(const resp_limits_t *lim, const char *s, size_t n, const char *want,
                          size_t wlen)
{
    buf_t out = {0};
    int bad = 0;
    char label[48];
    for (size_t chunk = 0; chunk < n && n <= 4096; chunk++) { /* 0: whole */
        run_stream(lim, s, n, chunk, &out);
        if (!same(&out, want, wlen) && bad++ < 3) {
            snprintf(label, sizeof(label), "chunk size %zu: got", chunk);
            print_escaped(label, out.data, out.len);
        }
    }
    for (size_t cut = 1; cut < n; cut++) {
        run_cuts(lim, s, n, &cut, 1, &out);
        if (!same(&out, want, wlen) && bad++ < 6) {
            snprintf(label, sizeof(label), "split at %zu: got", cut);
            print_escaped(label, out.data, out.len);
        }
    }
    if (bad) print_escaped("wanted", want, wlen);
    buf_free(&out);
    return bad;
}

/* lit and want must be string literals: their sizes give the lengths, so
 * both may hold NUL bytes. */
#define check_splits(lim, lit, want)                                                               \
    CHECK(check_splits_n((lim), (lit), sizeof(lit) - 1, (want), sizeof(want) - 1) == 0)

/* Expected renderings of each protocol error. */
#define E_MBULK_LEN  "!Protocol error: invalid multibulk length"
#define E_BULK_LEN   "!Protocol error: invalid bulk length"
#define E_QUOTES     "!Protocol error: unbalanced quotes in request"
#define E_INLINE_BIG "!Protocol error: too big inline request"
#define E_MBULK_BIG  "!Protocol error: too big mbulk count string"
#define E_BULK_BIG   "!Protocol error: too big bulk count string"
#define E_BULK_CRLF  "!Protocol error: expected CRLF after bulk data"

/* Run s once in the given chunk size and compare with a literal. */
#define check_run(lim, s, n, chunk, want)                                                          \
    do {                                                                                           \
        buf_t o_ = {0};                                                                            \
        run_stream((lim), (s), (n), (chunk), &o_);                                                 \
        if (!same(&o_, (want), sizeof(want) - 1)) {                                                \
            print_escaped("got", o_.data, o_.len);                                                 \
            CHECK(!"output as wanted");                                                            \
        }                                                                                          \
        buf_free(&o_);                                                                             \
    } while (0)

/* ---------------------------------------------------------------- inline */

static void test_inline_simple(void)
{
    check_splits(&roomy, "GET user:42\r\n", "[3:GET,7:user:42]");
    check_splits(&roomy, "PING\r\n", "[4:PING]");
}

static void test_inline_missing_cr(void)
{
    check_splits(&roomy, "GET a\nGET b\r\n", "[3:GET,1:a][3:GET,1:b]");
}

static void test_inline_whitespace(void)
{
    check_splits(&roomy, "  GET \t a   b \t\r\n", "[3:GET,1:a,1:b]");
    /* a lone \r inside the line separates words, as in sdssplitargs */
    check_splits(&roomy, "GET a\rb\r\n", "[3:GET,1:a,1:b]");
}

static void test_inline_empty_lines_skipped(void)
{
    check_splits(&roomy, "\r\n\n   \t \r\n\nPING\r\n\r\n", "[4:PING]");
    /* a stream of only blank lines yields nothing and no error */
    check_splits(&roomy, "\r\n\r\n \n", "");
}

static void test_inline_double_quotes(void)
{
    check_splits(&roomy, "SET \"a b\" \"\"\r\n", "[3:SET,3:a b,0:]");
    check_splits(&roomy, "SET k \"\\n\\r\\t\\b\\a\\\\\\\"\"\n", "[3:SET,1:k,7:\n\r\t\b\a\\\"]");
    check_splits(&roomy, "X \"\\x41\\x7a\\x00!\"\n", "[1:X,4:Az\0!]");
    /* \x without two hex digits is just x; unknown escapes stand for the char */
    check_splits(&roomy, "X \"\\xZ1\\q\"\n", "[1:X,4:xZ1q]");
    check_splits(&roomy, "X \"\\x4\"\n", "[1:X,2:x4]");
    /* a quote may open mid-word */
    check_splits(&roomy, "SET a\"b c\" x\n", "[3:SET,4:ab c,1:x]");
}

static void test_inline_single_quotes(void)
{
    check_splits(&roomy, "SET 'a b' 'it\\'s' 'x\\ny'\r\n", "[3:SET,3:a b,4:it's,4:x\\ny]");
    check_splits(&roomy, "SET '' x\n", "[3:SET,0:,1:x]");
}

static void test_inline_unbalanced_quotes(void)
{
    check_splits(&roomy, "GET \"abc\r\n", E_QUOTES);
    check_splits(&roomy, "GET 'abc\r\n", E_QUOTES);
    check_splits(&roomy, "GET \"abc\"def\r\n", E_QUOTES);
    check_splits(&roomy, "GET 'abc'def\n", E_QUOTES);
    check_splits(&roomy, "GET \"ab\\\"\n", E_QUOTES); /* the escaped quote does not close */
    /* the error stops the stream: nothing after it is parsed */
    check_splits(&roomy, "PING\nGET \"x\nPING\n", "[4:PING]" E_QUOTES);
}

static void test_inline_nul_bytes(void)
{
    check_splits(&roomy, "SET k a\0b\n", "[3:SET,1:k,3:a\0b]");
}

static void test_inline_too_long(void)
{
    /* max_inline 32: 32 bytes without newline wait for more; 33 fail */
    char line[64];
    memset(line, 'a', sizeof(line));
    check_run(&small, line, 32, 0, "");
    check_run(&small, line, 32, 1, "");
    check_run(&small, line, 33, 0, E_INLINE_BIG);
    check_run(&small, line, 33, 1, E_INLINE_BIG);
    check_run(&small, line, 33, 5, E_INLINE_BIG);
    /* the cap holds even when the newline is in the same read */
    line[40] = '\n';
    check_run(&small, line, 41, 0, E_INLINE_BIG);
    /* exactly at the cap, with its newline: fine */
    line[32] = '\n';
    check_run(&small, line, 33, 0, "[32:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]");
    check_run(&small, line, 33, 1, "[32:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]");
}

static void test_inline_too_many_args(void)
{
    check_splits(&small, "a b c d\n", "[1:a,1:b,1:c,1:d]");
    check_splits(&small, "a b c d e\n", E_MBULK_LEN);
}

/* ------------------------------------------------------------- multibulk */

static void test_multibulk_simple(void)
{
    check_splits(&roomy, "*2\r\n$3\r\nGET\r\n$7\r\nuser:42\r\n", "[3:GET,7:user:42]");
    check_splits(&roomy, "*1\r\n$0\r\n\r\n", "[0:]");
}

static void test_multibulk_binary(void)
{
    check_splits(&roomy, "*2\r\n$3\r\nSET\r\n$7\r\na\0\r\nb*$\r\n", "[3:SET,7:a\0\r\nb*$]");
    check_splits(&roomy, "*1\r\n$2\r\n\r\n\r\n", "[2:\r\n]");
}

static void test_multibulk_header_missing_cr(void)
{
    /* headers tolerate a bare \n like inline lines; bulk data does not */
    check_splits(&roomy, "*1\n$4\nPING\r\n", "[4:PING]");
}

static void test_multibulk_empty_skipped(void)
{
    check_splits(&roomy, "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n*0\r\n", "[4:PING]");
    /* after a skipped "*0" the next line is a new request, here an inline one */
    check_splits(&roomy, "*0\r\nPING\r\n*-1\nGET k\n", "[4:PING][3:GET,1:k]");
}

static void test_pipelined_three(void)
{
    static const char s[] = "*1\r\n$4\r\nPING\r\nGET k\r\n*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n";
    resp_parser_t p;
    resp_parser_init(&p, &roomy);
    size_t used, pos = 0, n = sizeof(s) - 1;
    CHECK(resp_feed(&p, s, n, &used) == RESP_DONE);
    CHECK(used == 14 && p.argc == 1);
    pos += used;
    resp_next_command(&p);
    CHECK(resp_feed(&p, s + pos, n - pos, &used) == RESP_DONE);
    CHECK(used == 7 && p.argc == 2);
    pos += used;
    /* no resp_next_command: the next feed starts afresh by itself */
    CHECK(resp_feed(&p, s + pos, n - pos, &used) == RESP_DONE);
    pos += used;
    CHECK(pos == n && p.argc == 2);
    size_t len;
    const char *a = resp_arg(&p, 0, &len);
    CHECK(a && len == 3 && memcmp(a, "DEL", 4) == 0);
    resp_next_command(&p);
    CHECK(resp_feed(&p, s + pos, 0, &used) == RESP_NEED_MORE && used == 0);
    resp_parser_free(&p);
}

static void test_every_split_mixed_stream(void)
{
    check_splits(&roomy,
                 "\r\n*2\r\n$3\r\nGET\r\n$7\r\nuser:42\r\nSET \"a\\x00b\" 'c d'\n*0\r\n"
                 "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\n\0\r\n\r\n\r\n  \nPING\r\n",
                 "[3:GET,7:user:42][3:SET,3:a\0b,3:c d][3:SET,1:k,5:\0\r\n\r\n][4:PING]");
}

/* ---------------------------------------------------------------- errors */

static void test_error_multibulk_length(void)
{
    check_splits(&small, "*abc\r\n", E_MBULK_LEN);
    check_splits(&small, "*\r\n", E_MBULK_LEN);
    check_splits(&small, "*+1\r\n", E_MBULK_LEN);
    check_splits(&small, "*01\r\n", E_MBULK_LEN);
    check_splits(&small, "* 1\r\n", E_MBULK_LEN);
    check_splits(&small, "*1 \r\n", E_MBULK_LEN);
    check_splits(&small, "*99999999999999999999\r\n", E_MBULK_LEN);
    check_splits(&small, "*5\r\n", E_MBULK_LEN); /* max_args is 4 */
    check_splits(&small, "*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n", "[1:a,1:b,1:c,1:d]");
}

static void test_error_bulk_length(void)
{
    check_splits(&small, "*1\r\n$-1\r\n", E_BULK_LEN);
    check_splits(&small, "*1\r\n$abc\r\n", E_BULK_LEN);
    check_splits(&small, "*1\r\n$\r\n", E_BULK_LEN);
    check_splits(&small, "*1\r\n$03\r\n", E_BULK_LEN);
    check_splits(&small, "*1\r\n$17\r\n", E_BULK_LEN); /* max_bulk is 16 */
    check_splits(&small, "*1\r\n$16\r\n0123456789abcdef\r\n", "[16:0123456789abcdef]");
}

static void test_error_expected_dollar(void)
{
    check_splits(&roomy, "*1\r\nGET\r\n", "!Protocol error: expected '$', got 'G'");
    check_splits(&roomy, "*2\r\n$1\r\na\r\n:1\r\n", "!Protocol error: expected '$', got ':'");
    check_splits(&roomy, "*1\r\n\r\n", "!Protocol error: expected '$', got ' '");
    check_splits(&roomy, "*1\r\n\x01x\r\n", "!Protocol error: expected '$', got '?'");
}

static void test_error_header_too_big(void)
{
    /* max_inline (32) also caps header lines, as PROTO_INLINE_MAX_SIZE does in Redis */
    char s[80];
    memset(s, '1', sizeof(s));
    s[0] = '*';
    check_run(&small, s, 33, 0, E_MBULK_BIG);
    check_run(&small, s, 33, 1, E_MBULK_BIG);
    check_run(&small, s, 32, 1, "");
    memcpy(s, "*1\r\n$", 5);
    check_run(&small, s, 37, 0, E_BULK_BIG);
    check_run(&small, s, 37, 3, E_BULK_BIG);
    check_run(&small, s, 36, 1, "");
}

static void test_error_missing_crlf_after_bulk(void)
{
    check_splits(&roomy, "*1\r\n$3\r\nGETX\r\n", E_BULK_CRLF);
    check_splits(&roomy, "*1\r\n$3\r\nGET\rX", E_BULK_CRLF);
    check_splits(&roomy, "*1\r\n$3\r\nGET\n", E_BULK_CRLF);
    check_splits(&roomy, "*1\r\n$3\r\nGE\r\n\r\n", E_BULK_CRLF); /* short bulk */
}

static void test_error_is_sticky(void)
{
    resp_parser_t p;
    resp_parser_init(&p, &roomy);
    size_t used;
    CHECK(resp_feed(&p, "*x\r\nPING\r\n", 10, &used) == RESP_ERROR);
    CHECK(used == 4);
    CHECK(resp_feed(&p, "PING\r\n", 6, &used) == RESP_ERROR && used == 0);
    resp_next_command(&p);
    CHECK(resp_feed(&p, "PING\r\n", 6, &used) == RESP_ERROR && used == 0);
    CHECK(p.errmsg && strcmp(p.errmsg, "Protocol error: invalid multibulk length") == 0);
    resp_parser_free(&p);
}

/* ------------------------------------------------------- caps and reuse */

static void test_bulk_cap_not_buffered(void)
{
    /* a huge declared bulk is refused at its header, before any byte of it */
    resp_parser_t p;
    resp_parser_init(&p, &small);
    size_t used;
    CHECK(resp_feed(&p, "*1\r\n$1000000000\r\n", 18, &used) == RESP_ERROR);
    CHECK(p.arena.cap < 1024);
    resp_parser_free(&p);
}

static void test_reuse_many_commands(void)
{
    static const char cmd[] = "*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$10\r\n0123456789\r\n";
    resp_parser_t p;
    resp_parser_init(&p, &roomy);
    size_t arena_cap = 0, line_cap = 0;
    long arg_cap = 0;
    int ok = 1;
    for (int i = 0; i < 2000; i++) {
        size_t used;
        /* alternate whole commands and byte-split ones so p->line is used too */
        size_t cut = (size_t)(i % 7) + 1;
        int rc = resp_feed(&p, cmd, cut, &used);
        if (rc != RESP_NEED_MORE || used != cut) ok = 0;
        rc = resp_feed(&p, cmd + cut, sizeof(cmd) - 1 - cut, &used);
        if (rc != RESP_DONE || used != sizeof(cmd) - 1 - cut || p.argc != 3) ok = 0;
        resp_next_command(&p);
        rc = resp_feed(&p, "GET \"key:1\"\r\n", 13, &used);
        if (rc != RESP_DONE || p.argc != 2) ok = 0;
        resp_next_command(&p);
        if (i == 10) {
            arena_cap = p.arena.cap;
            line_cap = p.line.cap;
            arg_cap = p.arg_cap;
        }
    }
    CHECK(ok);
    /* no growth after warm-up: the buffers are reused, not reallocated */
    CHECK(p.arena.cap == arena_cap && p.line.cap == line_cap && p.arg_cap == arg_cap);
    CHECK(arena_cap > 0 && arg_cap >= 3);
    resp_parser_free(&p);
}

static void test_big_bulk_released(void)
{
    const size_t big = 2 * 1024 * 1024;
    resp_limits_t lim = {.max_inline = 1024, .max_bulk = big, .max_args = 8};
    resp_parser_t p;
    resp_parser_init(&p, &lim);
    char hdr[64];
    int h = snprintf(hdr, sizeof(hdr), "*1\r\n$%zu\r\n", big);
    char *body = xmalloc(big + 2);
    memset(body, 'v', big);
    memcpy(body + big, "\r\n", 2);
    size_t used;
    CHECK(resp_feed(&p, hdr, (size_t)h, &used) == RESP_NEED_MORE);
    CHECK(resp_feed(&p, body, big / 2, &used) == RESP_NEED_MORE);
    CHECK(resp_feed(&p, body + big / 2, big - big / 2 + 2, &used) == RESP_DONE);
    size_t len;
    const char *a = resp_arg(&p, 0, &len);
    CHECK(a && len == big && a[0] == 'v' && a[big - 1] == 'v' && a[big] == '\0');
    resp_next_command(&p);
    CHECK(p.arena.cap <= 1024 * 1024); /* one big SET does not pin 2 MiB */
    CHECK(resp_feed(&p, "PING\n", 5, &used) == RESP_DONE && p.argc == 1);
    free(body);
    resp_parser_free(&p);
}

static void test_arg_accessors(void)
{
    resp_parser_t p;
    resp_parser_init(&p, &roomy);
    size_t used, len = 99;
    CHECK(resp_arg(&p, 0, &len) == NULL && len == 0);
    CHECK(resp_feed(&p, "GET k\r\n", 7, &used) == RESP_DONE);
    CHECK(resp_arg(&p, -1, &len) == NULL);
    CHECK(resp_arg(&p, 2, &len) == NULL);
    const char *a = resp_arg(&p, 1, NULL);
    CHECK(a && strcmp(a, "k") == 0);
    resp_next_command(&p);
    CHECK(p.argc == 0 && resp_arg(&p, 0, &len) == NULL);
    /* mid-command, the half-read arguments are not exposed */
    CHECK(resp_feed(&p, "*2\r\n$1\r\na\r\n", 11, &used) == RESP_NEED_MORE);
    CHECK(resp_arg(&p, 0, &len) == NULL);
    resp_next_command(&p); /* must not disturb the half-parsed command */
    CHECK(resp_feed(&p, "$1\r\nb\r\n", 7, &used) == RESP_DONE && p.argc == 2);
    resp_parser_free(&p);
}

static void test_default_limits(void)
{
    resp_parser_t p;
    resp_parser_init(&p, NULL);
    CHECK(p.lim.max_inline == 64 * 1024);
    CHECK(p.lim.max_bulk == (size_t)512 * 1024 * 1024);
    CHECK(p.lim.max_args == 1024L * 1024);
    size_t n = 64 * 1024 + 1, used;
    char *s = xmalloc(n);
    memset(s, 'x', n);
    CHECK(resp_feed(&p, s, n - 1, &used) == RESP_NEED_MORE);
    CHECK(resp_feed(&p, s, 1, &used) == RESP_ERROR);
    CHECK(p.errmsg && strcmp(p.errmsg, "Protocol error: too big inline request") == 0);
    free(s);
    resp_parser_free(&p);
}

/* Feed a whole stream to a parser with the given limits; returns the status
 * of the last feed and leaves the parser for inspection. */
static int feed_with(resp_parser_t *p, const resp_limits_t *lim, const char *s)
{
    resp_parser_init(p, lim);
    size_t used = 0, len = strlen(s);
    int st = RESP_NEED_MORE;
    while (len > 0) {
        st = resp_feed(p, s, len, &used);
        if (st != RESP_DONE) break;
        s += used;
        len -= used;
        resp_next_command(p);
    }
    return st;
}

static void test_unauthenticated_caps(void)
{
    resp_limits_t lim = {0, 0, 0, 0, true};
    resp_parser_t p;
    /* Redis 7's pre-AUTH caps: 10 arguments, 16 KiB per bulk */
    CHECK(feed_with(&p, &lim, "*11\r\n") == RESP_ERROR);
    CHECK(strcmp(p.errmsg, "Protocol error: unauthenticated multibulk length") == 0);
    resp_parser_free(&p);
    CHECK(feed_with(&p, &lim, "*2\r\n$4\r\nAUTH\r\n$16385\r\n") == RESP_ERROR);
    CHECK(strcmp(p.errmsg, "Protocol error: unauthenticated bulk length") == 0);
    resp_parser_free(&p);
    CHECK(feed_with(&p, &lim, "a b c d e f g h i j k\r\n") == RESP_ERROR);
    CHECK(strcmp(p.errmsg, "Protocol error: unauthenticated multibulk length") == 0);
    resp_parser_free(&p);
    /* within the caps: AUTH goes through */
    CHECK(feed_with(&p, &lim, "*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n") == RESP_DONE);
    resp_parser_free(&p);
    lim.unauthenticated = false;
    CHECK(feed_with(&p, &lim, "*11\r\n") == RESP_NEED_MORE);
    resp_parser_free(&p);
}

static void test_request_cap(void)
{
    resp_limits_t lim = {0, 0, 0, 100, false};
    resp_parser_t p;
    /* 60 + 60 bytes of arguments: the second bulk's header is refused
     * before any of its bytes are buffered */
    char req[256];
    snprintf(req, sizeof(req), "*3\r\n$3\r\nSET\r\n$60\r\n%060d\r\n$60\r\n", 0);
    CHECK(feed_with(&p, &lim, req) == RESP_ERROR);
    CHECK(strcmp(p.errmsg, "Protocol error: request too large") == 0);
    resp_parser_free(&p);
    snprintf(req, sizeof(req), "*3\r\n$3\r\nSET\r\n$40\r\n%040d\r\n$40\r\n%040d\r\n", 0, 1);
    CHECK(feed_with(&p, &lim, req) == RESP_DONE);
    resp_parser_free(&p);
}

/* The whole-command fast path (resp.c, fast_command) takes only complete,
 * canonical commands within every limit; for anything else the general
 * path must give exactly what it gives byte by byte. Each stream is fed
 * whole (the fast path's case), and its rendering must match the one fed
 * one byte at a time (never the fast path) and every split. */
static void check_like_bytewise(const resp_limits_t *lim, const char *s, size_t n)
{
    buf_t want = {0};
    run_stream(lim, s, n, 1, &want);
    CHECK(check_splits_n(lim, s, n, want.data, want.len) == 0);
    buf_free(&want);
}

static void test_fast_path_matches_general(void)
{
    static const struct {
        const char *s;
        size_t n;
    } cases[] = {
#define C(lit) {lit, sizeof(lit) - 1}
        C("*2\r\n$3\r\nGET\r\n$3\r\nabc\r\n"),
        C("*2\r\n$3\r\nGET\r\n$0\r\n\r\n"),         /* empty argument */
        C("*2\r\n$3\r\nGET\r\n$00\r\n\r\n"),        /* leading zero: error */
        C("*2\r\n$3\r\nGET\r\n$03\r\nabc\r\n"),     /* leading zero: error */
        C("*02\r\n$3\r\nGET\r\n$3\r\nabc\r\n"),     /* leading zero in the count */
        C("*2\r\n$3\r\nGET\r\n$+3\r\nabc\r\n"),     /* sign */
        C("*2\r\n$3\r\nGET\r\n$-1\r\n"),            /* negative bulk length */
        C("*-1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), /* skipped, then a command */
        C("*0\r\n"),
        C("*2\n$3\nGET\n$1\nk\r\n"),             /* "\n" line endings */
        C("*2\r\n$3\r\nGET\r\n$1\r\nkX\n"),      /* no CRLF after the bulk */
        C("*2\r\n$3\r\nGET\r\n$1\r\nk\rX"),      /* half a CRLF */
        C("*2\r\n$3\r\nGET\r\n$1\r\n"),          /* incomplete */
        C("*2\r\n$3\r\nGET\r\n:1\r\n"),          /* not a '$' */
        C("*2\r\n$3\r\nG\0T\r\n$2\r\n\r\n\r\n"), /* binary bytes, CRLF inside */
        C("*1\r\n$1234567890\r\n"),              /* ten digits */
        C("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$17\r\n12345678901234567\r\n"),    /* over max_bulk */
        C("*5\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n$1\r\ne\r\n"), /* over max_args */
        C("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n"),            /* two commands */
        C("*1\r\n$4\r\nPING\r\nPING\r\n"),                                  /* then an inline one */
#undef C
    };
    for (size_t i = 0; i < LC_ARRAY_LEN(cases); i++) {
        check_like_bytewise(&small, cases[i].s, cases[i].n);
        check_like_bytewise(&roomy, cases[i].s, cases[i].n);
    }
    /* The caps the fast path checks itself, at their edges. */
    resp_limits_t unauth = roomy;
    unauth.unauthenticated = true;
    char many[512];
    size_t n = (size_t)snprintf(many, sizeof(many), "*11\r\n");
    for (int i = 0; i < 11; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "$1\r\n%c\r\n", 'a' + i);
    check_like_bytewise(&unauth, many, n);
    check_like_bytewise(&roomy, many, n);
    resp_limits_t req = roomy;
    req.max_request = 5;
    check_like_bytewise(&req, "*2\r\n$3\r\nGET\r\n$2\r\nab\r\n", 21);
    check_like_bytewise(&req, "*2\r\n$3\r\nGET\r\n$3\r\nabc\r\n", 22);
    /* Around the 16 arguments the fast path takes, and far more, in both
     * orders: the argument arrays grow on either path. */
    char big[4096];
    static const int counts[] = {16, 17, 70, 3, 16, 40, 1};
    n = 0;
    for (size_t c = 0; c < LC_ARRAY_LEN(counts); c++) {
        n += (size_t)snprintf(big + n, sizeof(big) - n, "*%d\r\n", counts[c]);
        for (int i = 0; i < counts[c]; i++)
            n += (size_t)snprintf(big + n, sizeof(big) - n, "$2\r\n%02d\r\n", i);
    }
    check_like_bytewise(&roomy, big, n);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
    RUN(test_inline_simple);
    RUN(test_inline_missing_cr);
    RUN(test_inline_whitespace);
    RUN(test_inline_empty_lines_skipped);
    RUN(test_inline_double_quotes);
    RUN(test_inline_single_quotes);
    RUN(test_inline_unbalanced_quotes);
    RUN(test_inline_nul_bytes);
    RUN(test_inline_too_long);
    RUN(test_inline_too_many_args);
    RUN(test_multibulk_simple);
    RUN(test_multibulk_binary);
    RUN(test_multibulk_header_missing_cr);
    RUN(test_multibulk_empty_skipped);
    RUN(test_pipelined_three);
    RUN(test_every_split_mixed_stream);
    RUN(test_error_multibulk_length);
    RUN(test_error_bulk_length);
    RUN(test_error_expected_dollar);
    RUN(test_error_header_too_big);
    RUN(test_error_missing_crlf_after_bulk);
    RUN(test_error_is_sticky);
    RUN(test_bulk_cap_not_buffered);
    RUN(test_reuse_many_commands);
    RUN(test_big_bulk_released);
    RUN(test_arg_accessors);
    RUN(test_default_limits);
    RUN(test_unauthenticated_caps);
    RUN(test_request_cap);
    RUN(test_fast_path_matches_general);
    return check_summary("resp");
}
