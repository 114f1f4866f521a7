/* test_entry.c: the stored entry format and the TTL math. */
#include <stdio.h>
#include <string.h>

#include "entry.h"
#include "check.h"

static void test_roundtrip_binary(void)
{
    const char value[] = "a\0b\r\nLC1 v 1 2 3\n";
    entry_t e = {.kind = ENTRY_VALUE,
                 .version = 7,
                 .gen = 3,
                 .fresh_until = 1700000000123,
                 .stale_until = 1700000060123,
                 .error_until = 1700000600123,
                 .fetch_ms = 42,
                 .stored_at = 1699999999000,
                 .value = value,
                 .len = sizeof(value) - 1};
    buf_t b = {0};
    entry_encode(&b, &e);
    entry_t d;
    REQUIRE(entry_decode(b.data, b.len, &d) == 0);
    REQUIRE(d.kind == ENTRY_VALUE && d.version == 7 && d.gen == 3);
    REQUIRE(d.fresh_until == 1700000000123 && d.stale_until == 1700000060123);
    REQUIRE(d.error_until == 1700000600123 && d.fetch_ms == 42 && d.stored_at == 1699999999000);
    REQUIRE(d.len == sizeof(value) - 1 && memcmp(d.value, value, d.len) == 0);
    buf_free(&b);
}

static void test_negative_and_error(void)
{
    entry_t e = {.kind = ENTRY_NEGATIVE,
                 .version = 1,
                 .fresh_until = 10,
                 .stale_until = 10,
                 .error_until = 10};
    buf_t b = {0};
    entry_encode(&b, &e);
    entry_t d;
    REQUIRE(entry_decode(b.data, b.len, &d) == 0 && d.kind == ENTRY_NEGATIVE && d.len == 0);
    REQUIRE(memcmp(b.data, "LC1 n 1 0 10 10 10 0 0\n", b.len) == 0);
    buf_free(&b);
}

static void test_decode_rejects_garbage(void)
{
    entry_t d;
    const char *bad[] = {"",
                         "LC1",
                         "hello world\n",
                         "LC1 x 1 0 1 1 1 0 0\n",
                         "LC1 v 1 0 1 1 1 0\n",
                         "LC1 v 1 0 1 1 1 0 0 9\n",
                         "LC1 v a 0 1 1 1 0 0\n",
                         "LC1 v 1 0 1 1 1 0 0",
                         "LC1 v 99999999999999999999 0 1 1 1 0 0\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        REQUIRE(entry_decode(bad[i], strlen(bad[i]), &d) == -1);
}

static void test_states(void)
{
    entry_t e = {
        .kind = ENTRY_VALUE, .fresh_until = 1000, .stale_until = 2000, .error_until = 5000};
    REQUIRE(entry_state(&e, 999) == STATE_FRESH);
    REQUIRE(entry_state(&e, 1000) == STATE_STALE);
    REQUIRE(entry_state(&e, 1999) == STATE_STALE);
    REQUIRE(entry_state(&e, 2000) == STATE_STALE_ERR);
    REQUIRE(entry_state(&e, 5000) == STATE_EXPIRED);
    REQUIRE(entry_redis_ttl_ms(&e, 1000) == 4000);
    REQUIRE(entry_redis_ttl_ms(&e, 9000) == 1);
}

static void test_jitter(void)
{
    REQUIRE(ttl_jittered_ms(600, 0, 0.3) == 600000);
    REQUIRE(ttl_jittered_ms(600, 0.1, 0.0) == 540000);
    REQUIRE(ttl_jittered_ms(600, 0.1, 0.5) == 600000);
    REQUIRE(ttl_jittered_ms(600, 0.1, 0.999999) >= 659999);
    REQUIRE(ttl_jittered_ms(600, 5, 0.0) == 0); /* jitter clamped to 1 */
    REQUIRE(ttl_jittered_ms(0, 0.1, 0.9) == 0);
    REQUIRE(ttl_jittered_ms(-5, 0.1, 0.9) == 0);
    REQUIRE(ttl_jittered_ms(1e300, 0, 0.5) == 1000000000000000LL);
    REQUIRE(ttl_jittered_ms(0.0015, 0, 0.5) == 2); /* rounds, not truncates */
}

static void test_xfetch(void)
{
    /* beta 0 or no fetch time recorded: never early */
    REQUIRE(!xfetch_should_refresh(999, 1000, 100, 0, 0.01));
    REQUIRE(!xfetch_should_refresh(999, 1000, 0, 1, 0.01));
    /* past expiry: always */
    REQUIRE(xfetch_should_refresh(1000, 1000, 100, 1, 1.0));
    /* u = 1 means no head start */
    REQUIRE(!xfetch_should_refresh(999, 1000, 100, 1, 1.0));
    /* -100 * ln(0.5) = 69.3 ms head start */
    REQUIRE(xfetch_should_refresh(931, 1000, 100, 1, 0.5));
    REQUIRE(!xfetch_should_refresh(930, 1000, 100, 1, 0.5));
    /* larger beta starts earlier */
    REQUIRE(xfetch_should_refresh(862, 1000, 100, 2, 0.5));
}

int main(void)
{
    RUN(test_roundtrip_binary);
    RUN(test_negative_and_error);
    RUN(test_decode_rejects_garbage);
    RUN(test_states);
    RUN(test_jitter);
    RUN(test_xfetch);
    return check_summary("entry");
}
