/* test_entry.c: the stored entry format and the TTL math. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "entry.h"
#include "util.h"
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

/* The hand-written encoder writes exactly what printf would, for every
 * field at its extremes (appending after what the buffer holds). */
static void test_encode_matches_printf(void)
{
    const long long vals[] = {0,
                              1,
                              -1,
                              9,
                              10,
                              1700000000123LL,
                              -1700000000123LL,
                              9223372036854775807LL,
                              -9223372036854775807LL - 1};
    size_t nv = sizeof(vals) / sizeof(vals[0]);
    for (size_t i = 0; i < nv; i++) {
        long long a = vals[i], b = vals[(i + 3) % nv], c = vals[(i + 5) % nv];
        entry_t e = {.kind = ENTRY_ERROR,
                     .version = a,
                     .gen = b,
                     .fresh_until = c,
                     .stale_until = a,
                     .error_until = b,
                     .fetch_ms = c,
                     .stored_at = a,
                     .value = "boom",
                     .len = 4};
        buf_t got = {0}, want = {0};
        buf_append(&got, "xy", 2);
        entry_encode(&got, &e);
        buf_printf(&want, "xyLC1 e %lld %lld %lld %lld %lld %lld %lld\nboom", a, b, c, a, b, c, a);
        CHECK(got.len == want.len && memcmp(got.data, want.data, got.len) == 0);
        buf_free(&got);
        buf_free(&want);
    }
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
    /* NaN jitter or draw (found by fuzz_entry, corpus/entry/nan_jitter):
     * no jitter, never llround(NaN) */
    REQUIRE(ttl_jittered_ms(100, 0.0 / 0.0, 0.9) == 100000);
    REQUIRE(ttl_jittered_ms(2.4825424780260236e-191, 0.0 / 0.0, 0.3) == 0);
    REQUIRE(ttl_jittered_ms(100, 0.5, 0.0 / 0.0) == 100000);
    REQUIRE(ttl_jittered_ms(1.0 / 0.0, 0.5, 0.5) == ENTRY_TTL_MAX);
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

/* A header line with the given fields, decoded; 0 if it parses. */
static int decode_fields(const char *fields, entry_t *d)
{
    static char line[512];
    snprintf(line, sizeof(line), "LC1 v %s\nvalue", fields);
    return entry_decode(line, strlen(line), d);
}

#define NOW INT64_C(1800000000000)

static void test_check_accepts_our_entries(void)
{
    entry_t d;
    REQUIRE(decode_fields("1 0 1800000060000 1800000120000 1800000060000 3 1800000000000", &d) ==
            0);
    REQUIRE(entry_check(&d, NOW) == ENTRY_OK);
    /* the largest deadlines our encoder can write: now + 1e15 + 1e15 */
    entry_t e = {.kind = ENTRY_VALUE, .gen = ENTRY_GEN_MAX, .stored_at = NOW};
    e.fresh_until = NOW + ttl_jittered_ms(1e300, 0, 0.5);
    e.stale_until = e.error_until = e.fresh_until + entry_secs_to_ms(1e300);
    REQUIRE(entry_check(&e, NOW) == ENTRY_OK);
    /* stored_at a little ahead of our clock: another host's skew */
    e.stored_at = NOW + ENTRY_FUTURE_MS;
    REQUIRE(entry_check(&e, NOW) == ENTRY_OK);
}

static void test_check_rejects_extremes(void)
{
    static const struct {
        const char *fields;
        entry_fault_t want;
    } cases[] = {
        {"1 -1 10 10 10 0 0", ENTRY_BAD_GEN},
        {"1 9007199254740992 10 10 10 0 0", ENTRY_BAD_GEN},
        {"1 922337203685477579 10 10 10 0 0", ENTRY_BAD_GEN},
        {"1 0 -922337203685477579 10 10 0 0", ENTRY_BAD_TIME},
        {"1 0 922337203685477579 922337203685477579 922337203685477579 0 0", ENTRY_BAD_TIME},
        {"1 0 10 -922337203685477579 10 0 0", ENTRY_BAD_TIME},
        {"1 0 10 10 922337203685477579 0 0", ENTRY_BAD_TIME},
        {"1 0 10 10 10 -1 0", ENTRY_BAD_TIME},
        {"1 0 10 10 10 922337203685477579 0", ENTRY_BAD_TIME},
        {"1 0 10 9 10 0 0", ENTRY_BAD_ORDER},
        {"1 0 10 10 9 0 0", ENTRY_BAD_ORDER},
        {"1 0 10 10 10 0 -1", ENTRY_BAD_STORED_AT},
        {"1 0 10 10 10 0 1800000010001", ENTRY_BAD_STORED_AT},
        {"1 0 10 10 10 0 922337203685477579", ENTRY_BAD_STORED_AT},
    };
    for (size_t i = 0; i < LC_ARRAY_LEN(cases); i++) {
        entry_t d;
        CHECK(decode_fields(cases[i].fields, &d) == 0);
        if (entry_check(&d, NOW) != cases[i].want) {
            fprintf(stderr, "  %s: got %s\n", cases[i].fields,
                    entry_fault_text(entry_check(&d, NOW)));
            CHECK(!"entry_check fault");
        }
    }
    /* the version is compared for equality only: any integer is valid */
    entry_t d;
    REQUIRE(decode_fields("-922337203685477579 0 10 10 10 0 0", &d) == 0);
    REQUIRE(entry_check(&d, NOW) == ENTRY_OK);
}

static void test_saturating_math(void)
{
    REQUIRE(ms_sub_sat(INT64_MIN, 1) == INT64_MIN);
    REQUIRE(ms_sub_sat(INT64_MAX, -1) == INT64_MAX);
    REQUIRE(ms_sub_sat(-922337203685477579, NOW) == -922337203685477579 - NOW);
    REQUIRE(ms_sub_sat(INT64_MIN + 5, NOW) == INT64_MIN);
    REQUIRE(ms_sub_sat(5, 7) == -2);
    REQUIRE(ms_add_sat(INT64_MAX, 1) == INT64_MAX);
    REQUIRE(ms_add_sat(INT64_MIN, -1) == INT64_MIN);
    REQUIRE(ms_add_sat(NOW, ENTRY_FUTURE_MS) == NOW + ENTRY_FUTURE_MS);
    REQUIRE(ms_to_s_round(0) == 0 && ms_to_s_round(499) == 0 && ms_to_s_round(500) == 1);
    REQUIRE(ms_to_s_round(1499) == 1 && ms_to_s_round(1500) == 2);
    REQUIRE(ms_to_s_round(INT64_MAX) == INT64_MAX / 1000 + 1); /* no overflow */
    REQUIRE(ms_to_s_round(-1) == 0 && ms_to_s_round(-501) == -1);
    REQUIRE(entry_secs_to_ms(1.5) == 1500 && entry_secs_to_ms(0) == 0);
    REQUIRE(entry_secs_to_ms(-3) == 0 && entry_secs_to_ms(0.0 / 0.0) == 0);
    REQUIRE(entry_secs_to_ms(1e300) == ENTRY_TTL_MAX &&
            entry_secs_to_ms(1.0 / 0.0) == ENTRY_TTL_MAX);
    /* PEEK and TTL of extreme deadlines: no overflow */
    entry_t x = {.fresh_until = INT64_MIN + 5};
    REQUIRE(entry_fresh_left_ms(&x, NOW) == INT64_MIN);
    REQUIRE(entry_ttl_left(&x, NOW, 1) == 0 && entry_ttl_left(&x, NOW, 0) == 0);
    x.fresh_until = INT64_MAX;
    REQUIRE(entry_fresh_left_ms(&x, -NOW) == INT64_MAX);
    REQUIRE(entry_ttl_left(&x, -NOW, 0) == INT64_MAX / 1000 + 1);
    x.fresh_until = NOW + 1499;
    REQUIRE(entry_ttl_left(&x, NOW, 0) == 1 && entry_ttl_left(&x, NOW, 1) == 1499);
    /* Redis TTL of an entry far in the past or future: no overflow */
    entry_t e = {.fresh_until = INT64_MAX, .stale_until = 0, .error_until = 0};
    REQUIRE(entry_redis_ttl_ms(&e, -10) == INT64_MAX);
    e.fresh_until = INT64_MIN;
    REQUIRE(entry_redis_ttl_ms(&e, NOW) == 1);
}

/* Numbers of every length the 8-digit fast path splits differently, and
 * the bounds of a 64-bit field. */
static void test_decode_number_lengths(void)
{
    entry_t d;
    const char *digits = "1234567890123456789";
    for (int n = 1; n <= 19; n++) {
        char fields[256];
        snprintf(fields, sizeof(fields), "%.*s 0 1 1 1 0 0", n, digits);
        REQUIRE(decode_fields(fields, &d) == 0);
        long long want = 0;
        for (int i = 0; i < n; i++)
            want = want * 10 + (digits[i] - '0');
        REQUIRE(d.version == want);
        REQUIRE(d.len == 5 && memcmp(d.value, "value", 5) == 0);
    }
    REQUIRE(decode_fields("9223372036854775807 0 1 1 1 0 0", &d) == 0);
    REQUIRE(d.version == INT64_MAX);
    REQUIRE(decode_fields("-9223372036854775807 0 1 1 1 0 0", &d) == 0);
    REQUIRE(d.version == -INT64_MAX);
    REQUIRE(decode_fields("9223372036854775808 0 1 1 1 0 0", &d) == -1);
    REQUIRE(decode_fields("18446744073709551617 0 1 1 1 0 0", &d) == -1);
    REQUIRE(decode_fields("1 0 1800000000000 1800000000000 1800000000000 12 1799999999999", &d) ==
            0);
    REQUIRE(d.fresh_until == INT64_C(1800000000000) && d.stored_at == INT64_C(1799999999999));
    REQUIRE(d.fetch_ms == 12);
    /* a non-digit anywhere in an 8-byte block */
    const char *bad[] = {"1234567:9012 0 1 1 1 0 0", "12345678/012 0 1 1 1 0 0",
                         "1234567890123: 0 1 1 1 0 0", "12345678 0 1 1 1 0 0 x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        REQUIRE(decode_fields(bad[i], &d) == -1);
    /* a header cut short right after a number: no read past the newline */
    const char cut[] = "LC1 v 12345678 0 1 1 1 0\n";
    REQUIRE(entry_decode(cut, sizeof(cut) - 1, &d) == -1);
}

/* The reference the word-at-a-time decoder must agree with, written the
 * plain way: "LC1 " kind ' ', then seven integers (optional '-', 1 to 19
 * digits, within int64), six followed by ' ' and the last by '\n'. */
static int ref_decode(const char *d, size_t len, long long f[7], size_t *value_off)
{
    if (len < 7 || memcmp(d, "LC1 ", 4) != 0) return -1;
    if ((d[4] != 'v' && d[4] != 'n' && d[4] != 'e') || d[5] != ' ') return -1;
    size_t i = 6;
    for (int k = 0; k < 7; k++) {
        bool neg = i < len && d[i] == '-';
        i += neg;
        size_t n = 0;
        unsigned long long v = 0;
        bool wrapped = false;
        while (i < len && d[i] >= '0' && d[i] <= '9') {
            if (v > (UINT64_MAX - 9) / 10) wrapped = true;
            v = v * 10 + (unsigned)(d[i] - '0');
            i++;
            n++;
        }
        if (n == 0 || n > 19 || wrapped || v > (unsigned long long)INT64_MAX) return -1;
        if (i == len || d[i] != (k < 6 ? ' ' : '\n')) return -1;
        f[k] = neg ? -(long long)v : (long long)v;
        i++;
    }
    *value_off = i;
    return 0;
}

/* Decode data[0..len) from an exact-size copy (ASan sees any read past it)
 * with both decoders; 1 if they agree. */
static int decoders_agree(const char *data, size_t len)
{
    char *copy = xmalloc(len ? len : 1);
    memcpy(copy, data, len);
    entry_t e;
    long long f[7];
    size_t off = 0;
    int a = entry_decode(copy, len, &e), b = ref_decode(copy, len, f, &off);
    int ok = a == b;
    if (ok && a == 0) {
        long long got[7] = {e.version,     e.gen,      e.fresh_until, e.stale_until,
                            e.error_until, e.fetch_ms, e.stored_at};
        ok = memcmp(got, f, sizeof(f)) == 0 && e.value == copy + off && e.len == len - off &&
             e.kind == (entry_kind_t)copy[4];
    }
    if (!ok) print_escaped("decoders disagree on", data, len);
    free(copy);
    return ok;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* Headers with every field length from 0 to 21 digits, signs, leading
 * zeros, wrong delimiters and stray bytes, each cut at every length and
 * with a value behind it: the fast decoder matches the reference on all. */
static void test_decode_matches_reference(void)
{
    static const char alphabet[] = "0123456789- \n/:xA\0\xff";
    char h[320];
    int bad = 0;
    for (int round = 0; round < 4000 && bad < 5; round++) {
        size_t n = (size_t)snprintf(h, sizeof(h), "LC1 %c ", "vneX"[rnd(4)]);
        for (int k = 0; k < 7; k++) {
            if (rnd(8) == 0) h[n++] = '-';
            unsigned digits = rnd(22);
            if (rnd(3) == 0) digits = 13;
            for (unsigned i = 0; i < digits; i++)
                h[n++] = (char)('0' + (i == 0 && rnd(2) ? 1 + rnd(9) : rnd(10)));
            h[n++] = k < 6 ? ' ' : '\n';
        }
        if (rnd(4) == 0) h[rnd((unsigned)n)] = alphabet[rnd(sizeof(alphabet) - 1)];
        /* no value, a short one, or one long enough for 16-byte reads past the header */
        static const char *const values[] = {"", "value bytes",
                                             "a value of more than sixteen bytes, 0123456789"};
        n += (size_t)snprintf(h + n, sizeof(h) - n, "%s", values[rnd(3)]);
        if (!decoders_agree(h, n)) bad++;
        for (size_t cut = 0; cut < n && bad < 5; cut++)
            if (!decoders_agree(h, cut)) bad++;
    }
    REQUIRE(bad == 0);
    /* The edges of the word path: 8, 9, 16 and 17 digits, INT64 max and over. */
    const char *edges[] = {
        "LC1 v 12345678 99999999 1234567890123456 12345678901234567 0 9223372036854775807 1\n",
        "LC1 v 9223372036854775808 0 1 1 1 0 0\n", "LC1 v 0000000000000000001 0 1 1 1 0 0\n",
        "LC1 v 00000000000000000001 0 1 1 1 0 0\n", "LC1 v -1234567812345678 0 1 1 1 0 0\nv"};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        REQUIRE(decoders_agree(edges[i], strlen(edges[i])));
}

int main(void)
{
    RUN(test_decode_number_lengths);
    RUN(test_roundtrip_binary);
    RUN(test_negative_and_error);
    RUN(test_encode_matches_printf);
    RUN(test_decode_rejects_garbage);
    RUN(test_states);
    RUN(test_jitter);
    RUN(test_xfetch);
    RUN(test_check_accepts_our_entries);
    RUN(test_check_rejects_extremes);
    RUN(test_saturating_math);
    RUN(test_decode_matches_reference);
    return check_summary("entry");
}
