/* test_redact.c: secrets out of logged text (redact.c), the log helpers
 * that bound what an outsider can put in the log (log.c: escaping, rate
 * limiting), and --redis parse errors that never quote a password. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "log.h"
#include "redact.h"
#include "check.h"

static void url_is(const char *in, const char *want, int hidden, int line)
{
    char out[256];
    int got_hidden = redact_url(in, out, sizeof(out));
    if (strcmp(out, want) != 0 || got_hidden != hidden) {
        fprintf(stderr, "%s:%d: redact_url(\"%s\") = \"%s\" (%d), want \"%s\" (%d)\n", __FILE__,
                line, in, out, got_hidden, want, hidden);
        test_failed = 1;
    }
}
#define URL(in, want, hidden) url_is(in, want, hidden, __LINE__)

static void test_urls(void)
{
    URL("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", 0);
    URL("redis://user:secret@host:6379/2", "redis://user:***@host:6379/2", 1);
    URL("redis://:secret@host", "redis://:***@host", 1);
    URL("redis://secret@host", "redis://***@host", 1); /* redis-cli: all password */
    URL("REDIS://u:p@h", "REDIS://u:***@h", 1);
    URL("redis://u:p@ss@w@rd@host:1/0", "redis://u:***@host:1/0", 1); /* last '@' ends it */
    URL("redis://u:pa ss word@host", "redis://u:***@host", 1);        /* spaces are the URL's */
    URL("redis://[::1]:6379/0", "redis://[::1]:6379/0", 0);
    URL("redis://:pw@[::1]:6379", "redis://:***@[::1]:6379", 1);
    /* An unescaped '/' or '?' in the password: hide all up to the last '@'. */
    URL("redis://user:ab/cd@host:6379", "redis://***@host:6379", 1);
    URL("redis://user:ab?cd@host", "redis://***@host", 1);
    /* Query options. */
    URL("unix:/run/r.sock?password=secret", "unix:/run/r.sock?password=***", 1);
    URL("unix:///run/r.sock?db=1&password=s3&user=me",
        "unix:///run/r.sock?db=1&password=***&user=me", 1);
    URL("redis://host/0?PassWord=x&db=2", "redis://host/0?PassWord=***&db=2", 1);
    URL("redis://host/0?mypassword=x", "redis://host/0?mypassword=x", 0);
    URL("redis://:a@host/0?password=b", "redis://:***@host/0?password=***", 1);
    URL("", "", 0);
    /* Truncation keeps a C string and never shows the secret. */
    char small[12];
    CHECK(redact_url("redis://u:secret@host", small, sizeof(small)));
    CHECK(strcmp(small, "redis://u:*") == 0);
}

static void test_text(void)
{
    char out[256];
    const char *t = "http GET http://bob:hunter2@origin:80/x?a=1: connection refused";
    CHECK(redact_text(t, strlen(t), out, sizeof(out)));
    CHECK(strcmp(out, "http GET http://bob:***@origin:80/x?a=1: connection refused") == 0);
    t = "origin said 500\n  and\tmore";
    CHECK(!redact_text(t, strlen(t), out, sizeof(out)));
    CHECK(strcmp(out, t) == 0);
    t = "a (https://tok@h/p) b https://u:v@h2 c";
    CHECK(redact_text(t, strlen(t), out, sizeof(out)));
    CHECK(strcmp(out, "a (https://***@h/p) b https://u:***@h2 c") == 0);
    /* len is honoured: the bytes after it are not read. */
    CHECK(!redact_text("abc http://u:p@h", 3, out, sizeof(out)));
    CHECK(strcmp(out, "abc") == 0);
}

static void test_escape(void)
{
    char out[64];
    log_escape(out, sizeof(out), "plain-id_7", 10, 64);
    CHECK(strcmp(out, "plain-id_7") == 0);
    log_escape(out, sizeof(out), "a\0b\r\n'\\\xff", 8, 64);
    CHECK(strcmp(out, "a\\x00b\\x0d\\x0a\\'\\\\\\xff") == 0);
    log_escape(out, sizeof(out), "0123456789", 10, 4);
    CHECK(strcmp(out, "0123...(10 bytes)") == 0);
    /* A small buffer never holds half an escape. */
    char tiny[6];
    log_escape(tiny, sizeof(tiny), "ab\x01", 3, 64);
    CHECK(strcmp(tiny, "ab") == 0);
}

static void test_limit(void)
{
    log_limit_t l = {0};
    uint64_t report = 99, t = 5000;
    int allowed = 0;
    for (int i = 0; i < 200; i++) {
        if (log_limit_allow(&l, t + (uint64_t)i, 5, 1000, &report)) allowed++;
        CHECK(report == 0);
    }
    CHECK(allowed == 5);
    /* The next window: the first line carries the count held back. */
    CHECK(log_limit_allow(&l, t + 1000, 5, 1000, &report));
    CHECK(report == 195);
    CHECK(log_limit_allow(&l, t + 1001, 5, 1000, &report));
    CHECK(report == 0);
    /* Nothing held back: nothing to report, however much later. */
    CHECK(log_limit_allow(&l, t + 100000, 5, 1000, &report));
    CHECK(report == 0);
}

static void parse_err_is_quiet(const char *url, const char *secret, int line)
{
    redis_url_t u;
    char err[512];
    if (redis_url_parse(url, &u, err, sizeof(err)) == 0 || strstr(err, secret) ||
        !strstr(err, "not shown")) {
        fprintf(stderr, "%s:%d: %s -> \"%s\"\n", __FILE__, line, url, err);
        test_failed = 1;
    }
}

static void test_parse_errors(void)
{
    /* A base64-ish password with a raw '/': the part before it lands in the port. */
    parse_err_is_quiet("redis://default:Sekr1t/xyz@host:6379", "Sekr1t", __LINE__);
    parse_err_is_quiet("redis://u:Sekr1t?x@host", "Sekr1t", __LINE__);
    parse_err_is_quiet("redis://:pw@host/0?passwordSekr1t", "Sekr1t", __LINE__);
    parse_err_is_quiet("unix:/s?password=Sekr1t&db=x", "Sekr1t", __LINE__);
    /* Without a password the parts are still quoted, which helps. */
    redis_url_t u;
    char err[512];
    CHECK(redis_url_parse("redis://host:99999", &u, err, sizeof(err)) != 0);
    CHECK(strstr(err, "'99999'") != NULL);
}

int main(void)
{
    RUN(test_urls);
    RUN(test_text);
    RUN(test_escape);
    RUN(test_limit);
    RUN(test_parse_errors);
    return check_summary("test_redact");
}
