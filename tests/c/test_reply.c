/* test_reply.c: unit tests of the RESP2 reply encoders (src/reply.c).
 * Every reply is compared byte for byte, lengths included, so embedded NULs
 * and CRLFs count. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "reply.h"
#include "util.h"
#include "check.h"

/* The buffer must hold exactly the literal want (which may contain NULs);
 * it is then emptied for the next check. */
#define CHECK_BUF(b, want)                                                                         \
    do {                                                                                           \
        if ((b)->len != sizeof(want) - 1 || memcmp((b)->data, (want), sizeof(want) - 1) != 0) {    \
            fprintf(stderr, "%s:%d: buffer differs\n", __FILE__, __LINE__);                        \
            print_escaped("got   ", (b)->data, (b)->len);                                          \
            print_escaped("wanted", (want), sizeof(want) - 1);                                     \
            test_failed = 1;                                                                       \
        }                                                                                          \
        buf_reset(b);                                                                              \
    } while (0)

static void test_status(void)
{
    buf_t b = {0};
    reply_status(&b, "PONG");
    CHECK_BUF(&b, "+PONG\r\n");
    reply_status(&b, "");
    CHECK_BUF(&b, "+\r\n");
    reply_ok(&b);
    CHECK_BUF(&b, "+OK\r\n");
    buf_free(&b);
}

static void test_status_sanitised(void)
{
    buf_t b = {0};
    reply_status(&b, "a\r\nb\nc\rd");
    CHECK_BUF(&b, "+a  b c d\r\n");
    buf_free(&b);
}

static void test_error_prefix(void)
{
    buf_t b = {0};
    reply_error(&b, "unknown command '%s'", "FOO");
    CHECK_BUF(&b, "-ERR unknown command 'FOO'\r\n");
    reply_error(&b, "wrong number of arguments for '%s' command", "get");
    CHECK_BUF(&b, "-ERR wrong number of arguments for 'get' command\r\n");
    reply_error(&b, "%s", "");
    CHECK_BUF(&b, "-ERR \r\n");
    buf_free(&b);
}

static void test_error_known_code_kept(void)
{
    buf_t b = {0};
    reply_error(&b, "NOAUTH Authentication required.");
    CHECK_BUF(&b, "-NOAUTH Authentication required.\r\n");
    reply_error(&b, "%s", "WRONGPASS invalid username-password pair");
    CHECK_BUF(&b, "-WRONGPASS invalid username-password pair\r\n");
    reply_error(&b, "ERR %s", "already prefixed");
    CHECK_BUF(&b, "-ERR already prefixed\r\n");
    reply_error(&b, "BUSY %d", 1);
    CHECK_BUF(&b, "-BUSY 1\r\n");
    buf_free(&b);
}

static void test_error_unknown_code_prefixed(void)
{
    buf_t b = {0};
    reply_error(&b, "TIMEOUT fetching origin"); /* not in the list */
    CHECK_BUF(&b, "-ERR TIMEOUT fetching origin\r\n");
    reply_error(&b, "NOAUTH"); /* a code needs a following space */
    CHECK_BUF(&b, "-ERR NOAUTH\r\n");
    reply_error(&b, "NOAUTHX y");
    CHECK_BUF(&b, "-ERR NOAUTHX y\r\n");
    reply_error(&b, "noauth lower case");
    CHECK_BUF(&b, "-ERR noauth lower case\r\n");
    buf_free(&b);
}

static void test_error_sanitised(void)
{
    buf_t b = {0};
    reply_error(&b, "bad\r\nthing: %s", "x\ny");
    CHECK_BUF(&b, "-ERR bad  thing: x y\r\n");
    reply_error(&b, "NOAUTH a\rb");
    CHECK_BUF(&b, "-NOAUTH a b\r\n");
    buf_free(&b);
}

static void test_error_appends_after_existing(void)
{
    /* the prefix removal must work on a buffer that already holds replies */
    buf_t b = {0};
    reply_ok(&b);
    reply_error(&b, "NOAUTH x");
    reply_error(&b, "y");
    CHECK_BUF(&b, "+OK\r\n-NOAUTH x\r\n-ERR y\r\n");
    buf_free(&b);
}

static void test_error_long(void)
{
    char big[3000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_t b = {0};
    reply_error(&b, "%s", big);
    CHECK(b.len == 5 + 2999 + 2);
    CHECK(memcmp(b.data, "-ERR zzz", 8) == 0 && memcmp(b.data + b.len - 3, "z\r\n", 3) == 0);
    buf_free(&b);
}

static void test_error_code(void)
{
    buf_t b = {0};
    reply_error_code(&b, "NOAUTH", "Authentication required.");
    CHECK_BUF(&b, "-NOAUTH Authentication required.\r\n");
    reply_error_code(&b, "WRONGPASS", "bad\r\npass");
    CHECK_BUF(&b, "-WRONGPASS bad  pass\r\n");
    reply_error_code(&b, NULL, "x");
    CHECK_BUF(&b, "-ERR x\r\n");
    buf_free(&b);
}

static void test_int(void)
{
    buf_t b = {0};
    reply_int(&b, 0);
    CHECK_BUF(&b, ":0\r\n");
    reply_int(&b, -2);
    CHECK_BUF(&b, ":-2\r\n");
    reply_int(&b, 1234567890123LL);
    CHECK_BUF(&b, ":1234567890123\r\n");
    reply_int(&b, LLONG_MAX);
    CHECK_BUF(&b, ":9223372036854775807\r\n");
    reply_int(&b, LLONG_MIN);
    CHECK_BUF(&b, ":-9223372036854775808\r\n");
    buf_free(&b);
}

/* format_ll_back (util.c, behind every number in a reply or an entry
 * header) against printf, at each digit count and its edges. */
static void test_format_ll_back(void)
{
    long long vals[64];
    size_t n = 0;
    vals[n++] = LLONG_MIN;
    vals[n++] = LLONG_MAX;
    vals[n++] = LLONG_MIN + 1;
    for (long long p = 1; n + 6 <= LC_ARRAY_LEN(vals) && p <= LLONG_MAX / 10; p *= 10) {
        vals[n++] = p;
        vals[n++] = p - 1;
        vals[n++] = -p;
        vals[n++] = -(p - 1);
        vals[n++] = p + 1;
        vals[n++] = 7 * p + 3;
    }
    for (size_t i = 0; i < n; i++) {
        char tmp[24], want[24];
        char *end = tmp + sizeof(tmp), *q = format_ll_back(end, vals[i]);
        int wl = snprintf(want, sizeof(want), "%lld", vals[i]);
        if (end - q != wl || memcmp(q, want, (size_t)wl) != 0) {
            fprintf(stderr, "format_ll_back(%s): got %.*s\n", want, (int)(end - q), q);
            test_failed = 1;
        }
    }
}

static void test_bulk(void)
{
    buf_t b = {0};
    reply_bulk(&b, "a\0\r\nb", 5);
    CHECK_BUF(&b, "$5\r\na\0\r\nb\r\n");
    reply_bulk(&b, "", 0);
    CHECK_BUF(&b, "$0\r\n\r\n");
    reply_bulk_str(&b, "hello");
    CHECK_BUF(&b, "$5\r\nhello\r\n");
    reply_bulk_str(&b, NULL);
    CHECK_BUF(&b, "$-1\r\n");
    buf_free(&b);
}

static void test_bulk_large(void)
{
    size_t n = 100000;
    char *v = malloc(n);
    memset(v, 'q', n);
    buf_t b = {0};
    reply_bulk(&b, v, n);
    CHECK(b.len == 9 + n + 2); /* "$100000\r\n" is 9 bytes */
    CHECK(memcmp(b.data, "$100000\r\nq", 10) == 0 && memcmp(b.data + b.len - 3, "q\r\n", 3) == 0);
    free(v);
    buf_free(&b);
}

static void test_nil_and_array(void)
{
    buf_t b = {0};
    reply_nil(&b);
    CHECK_BUF(&b, "$-1\r\n");
    reply_array(&b, 0);
    CHECK_BUF(&b, "*0\r\n");
    reply_array(&b, -1);
    CHECK_BUF(&b, "*-1\r\n");
    reply_array(&b, 3);
    reply_bulk_str(&b, "fresh");
    reply_int(&b, 1500);
    reply_nil(&b);
    CHECK_BUF(&b, "*3\r\n$5\r\nfresh\r\n:1500\r\n$-1\r\n");
    buf_free(&b);
}

int main(void)
{
    RUN(test_status);
    RUN(test_status_sanitised);
    RUN(test_error_prefix);
    RUN(test_error_known_code_kept);
    RUN(test_error_unknown_code_prefixed);
    RUN(test_error_sanitised);
    RUN(test_error_appends_after_existing);
    RUN(test_error_long);
    RUN(test_error_code);
    RUN(test_int);
    RUN(test_format_ll_back);
    RUN(test_bulk);
    RUN(test_bulk_large);
    RUN(test_nil_and_array);
    return check_summary("reply");
}
