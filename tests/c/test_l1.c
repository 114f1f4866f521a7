/* test_l1.c: the in-process tier and the hash table under it. */
#include <stdio.h>
#include <string.h>

#include "dict.h"
#include "l1.h"
#include "check.h"

static entry_t value_entry(const char *v)
{
    entry_t e = {
        .kind = ENTRY_VALUE, .version = 1, .fresh_until = 1000, .value = v, .len = strlen(v)};
    return e;
}

/* "k", NUL, then the number: keys with an embedded NUL. */
static int binkey(char *out, size_t size, int i)
{
    int n = snprintf(out + 2, size - 2, "%d", i);
    out[0] = 'k';
    out[1] = '\0';
    return n + 2;
}

static void test_dict(void)
{
    dict_t d;
    dict_init(&d);
    static int vals[5000];
    char key[32];
    for (int i = 0; i < 5000; i++) {
        int n = binkey(key, sizeof(key), i); /* binary keys */
        REQUIRE(dict_set(&d, key, (size_t)n, &vals[i]) == NULL);
    }
    REQUIRE(d.count == 5000);
    for (int i = 0; i < 5000; i++) {
        int n = binkey(key, sizeof(key), i);
        REQUIRE(dict_get(&d, key, (size_t)n) == &vals[i]);
    }
    REQUIRE(dict_get(&d, "k", 1) == NULL);
    REQUIRE(dict_set(&d,
                     "k\0"
                     "7",
                     3, &vals[1]) == &vals[7]); /* replace returns old */
    REQUIRE(dict_del(&d,
                     "k\0"
                     "7",
                     3) == &vals[1]);
    REQUIRE(dict_del(&d,
                     "k\0"
                     "7",
                     3) == NULL);
    size_t i, seen = 0;
    for (dict_entry_t *e = dict_first(&d, &i); e; e = dict_next(&d, &i, e))
        seen++;
    REQUIRE(seen == 4999);
    dict_free(&d);
}

static void test_get_put_expire(void)
{
    l1_init(1 << 20);
    entry_t e = value_entry("hello"), out;
    l1_put("ns:a", 4, &e, 100);
    REQUIRE(l1_get("ns:a", 4, 99, false, &out));
    REQUIRE(out.len == 5 && memcmp(out.value, "hello", 5) == 0 && out.fresh_until == 1000);
    REQUIRE(l1_get("ns:a", 4, 150, true, &out));   /* Redis down: served past l1 expiry */
    REQUIRE(!l1_get("ns:a", 4, 100, false, &out)); /* expired: dropped */
    REQUIRE(l1_entries() == 0 && l1_bytes() == 0);
    l1_put("ns:a", 4, &e, 100);
    entry_t e2 = value_entry("world!");
    l1_put("ns:a", 4, &e2, 200); /* replace */
    REQUIRE(l1_entries() == 1);
    REQUIRE(l1_get("ns:a", 4, 150, false, &out) && out.len == 6);
    l1_del("ns:a", 4);
    REQUIRE(!l1_get("ns:a", 4, 0, false, &out) && l1_entries() == 0);
    l1_close();
}

static void test_eviction_oldest_first(void)
{
    l1_init(64 * 1024);
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    entry_t e = value_entry(big), out;
    char key[16];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(key, sizeof(key), "k%d", i);
        l1_put(key, (size_t)n, &e, 1000);
        REQUIRE(l1_bytes() <= 64 * 1024);
    }
    REQUIRE(l1_entries() < 100 && l1_entries() > 10);
    REQUIRE(!l1_get("k0", 2, 0, false, &out)); /* oldest went first */
    REQUIRE(l1_get("k99", 3, 0, false, &out)); /* newest stays */
    /* an item over 1/8 of the tier is not cached at all */
    static char huge[10000];
    memset(huge, 'y', sizeof(huge) - 1);
    entry_t h = value_entry(huge);
    l1_put("huge", 4, &h, 1000);
    REQUIRE(!l1_get("huge", 4, 0, false, &out));
    l1_clear();
    REQUIRE(l1_entries() == 0 && l1_bytes() == 0);
    l1_close();
}

static void test_negative_entry(void)
{
    l1_init(1 << 20);
    entry_t n = {.kind = ENTRY_NEGATIVE, .version = 3, .fresh_until = 50}, out;
    l1_put("ns:missing", 10, &n, 40);
    REQUIRE(l1_get("ns:missing", 10, 0, false, &out));
    REQUIRE(out.kind == ENTRY_NEGATIVE && out.len == 0 && out.version == 3);
    l1_close();
}

/* PURGE drops the items whose key matches a Redis glob, and only those. */
static void test_del_matching(void)
{
    l1_init(1 << 20);
    entry_t e = value_entry("v"), out;
    l1_put("lc:{uw:5:1}", 11, &e, 1000);
    l1_put("lc:{uw:5:2}", 11, &e, 1000);
    l1_put("lc:{uw:50:1}", 12, &e, 1000);
    l1_put("lc:{w:5:1}", 10, &e, 1000);
    l1_put("lc:{w:5:1}", 10, &e, 1000); /* a replacement is one item */
    /* items per namespace, from the keys (luacached_l1_ns_entries) */
    REQUIRE(l1_ns_entries("uw", 2) == 3 && l1_ns_entries("w", 1) == 1);
    REQUIRE(l1_ns_entries("u", 1) == 0 && l1_ns_entries("x", 1) == 0);
    l1_del_matching("lc:{uw:5:*}", 11);
    REQUIRE(l1_ns_entries("uw", 2) == 1 && l1_ns_entries("w", 1) == 1);
    REQUIRE(!l1_get("lc:{uw:5:1}", 11, 0, false, &out));
    REQUIRE(!l1_get("lc:{uw:5:2}", 11, 0, false, &out));
    REQUIRE(l1_get("lc:{uw:50:1}", 12, 0, false, &out));
    REQUIRE(l1_get("lc:{w:5:1}", 10, 0, false, &out));
    REQUIRE(l1_entries() == 2);
    l1_del("lc:{w:5:1}", 10);
    REQUIRE(l1_ns_entries("w", 1) == 0);
    l1_clear();
    REQUIRE(l1_ns_entries("uw", 2) == 0);
    l1_close();
}

/* An invalidation keeps entries stored up to its floor out for a while:
 * a read that was in flight cannot put back what it removed. */
static void test_forbid(void)
{
    l1_init(1 << 20);
    entry_t old = value_entry("old"), newer = value_entry("new"), out;
    old.stored_at = 100;
    newer.stored_at = 101;
    l1_put("ns:a", 4, &old, 1000);
    l1_forbid("ns:a", 4, 100, 10, 50);
    REQUIRE(!l1_get("ns:a", 4, 10, false, &out)); /* dropped */
    REQUIRE(l1_entries() == 0);                   /* a tombstone is no item */
    l1_put("ns:a", 4, &old, 1000);                /* the read in flight */
    REQUIRE(!l1_get("ns:a", 4, 20, false, &out));
    l1_put("ns:a", 4, &newer, 1000); /* stored after it: fine */
    REQUIRE(l1_get("ns:a", 4, 20, false, &out) && out.stored_at == 101);
    l1_put("ns:a", 4, &old, 1000); /* refused, and the newer item stays */
    REQUIRE(l1_get("ns:a", 4, 20, false, &out) && out.stored_at == 101);
    /* a second invalidation raises the floor, never lowers it */
    l1_forbid("ns:b", 4, 200, 20, 60);
    l1_forbid("ns:b", 4, 150, 20, 60);
    entry_t mid = value_entry("mid");
    mid.stored_at = 180;
    l1_put("ns:b", 4, &mid, 1000);
    REQUIRE(!l1_get("ns:b", 4, 30, false, &out));
    /* after until_mono the tombstone is gone */
    REQUIRE(!l1_get("ns:b", 4, 60, false, &out));
    l1_put("ns:b", 4, &mid, 1000);
    REQUIRE(l1_get("ns:b", 4, 61, false, &out) && out.stored_at == 180);
    /* a pattern: its floor holds for every key until it expires */
    l1_put("lc:{uw:5:1}", 11, &old, 1000);
    l1_forbid_matching("lc:{uw:5:*}", 11, 100, 70, 90);
    REQUIRE(!l1_get("lc:{uw:5:1}", 11, 70, false, &out));
    l1_put("lc:{uw:5:1}", 11, &old, 1000);
    REQUIRE(!l1_get("lc:{uw:5:1}", 11, 80, false, &out));
    l1_put("lc:{uw:5:1}", 11, &newer, 1000);
    REQUIRE(l1_get("lc:{uw:5:1}", 11, 80, false, &out));
    REQUIRE(!l1_get("zz", 2, 95, false, &out)); /* the clock passes 90 */
    l1_put("lc:{uw:6:1}", 11, &old, 1000);
    REQUIRE(l1_get("lc:{uw:6:1}", 11, 96, false, &out));
    l1_close();
}

/* Every field of an entry comes back as it went in, whatever its value:
 * the tier packs them (differences as zigzag varints). */
static void test_fields_roundtrip(void)
{
    l1_init(1 << 20);
    const int64_t vals[] = {0, 1, -1, 1700000000123LL, INT64_MAX, INT64_MIN, 127, 128, -129};
    size_t nv = sizeof(vals) / sizeof(vals[0]);
    for (size_t i = 0; i < nv; i++) {
        entry_t e = {.kind = ENTRY_ERROR,
                     .version = vals[i],
                     .gen = vals[(i + 1) % nv],
                     .stored_at = vals[(i + 2) % nv],
                     .fresh_until = vals[(i + 3) % nv],
                     .stale_until = vals[(i + 4) % nv],
                     .error_until = vals[(i + 5) % nv],
                     .fetch_ms = vals[(i + 6) % nv],
                     .value = "msg",
                     .len = 3},
                out;
        l1_put("ns:f", 4, &e, 100);
        REQUIRE(l1_get("ns:f", 4, 0, false, &out));
        CHECK(out.kind == ENTRY_ERROR && out.version == e.version && out.gen == e.gen);
        CHECK(out.stored_at == e.stored_at && out.fresh_until == e.fresh_until);
        CHECK(out.stale_until == e.stale_until && out.error_until == e.error_until);
        CHECK(out.fetch_ms == e.fetch_ms && out.len == 3 && memcmp(out.value, "msg", 3) == 0);
    }
    l1_close();
}

/* The open-addressing table under churn: growth, and removals in any
 * order (which move other keys within their probe runs), binary keys. */
static void test_table_churn(void)
{
    l1_init(64u << 20);
    entry_t out;
    char key[32], val[32];
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        int n = binkey(key, sizeof(key), i);
        snprintf(val, sizeof(val), "v%d", i);
        entry_t e = value_entry(val);
        l1_put(key, (size_t)n, &e, 1000);
    }
    REQUIRE(l1_entries() == N);
    for (int i = 0; i < N; i += 3) { /* a third, spread over every probe run */
        int n = binkey(key, sizeof(key), (i * 7919) % N);
        l1_del(key, (size_t)n);
    }
    size_t present = 0;
    for (int i = 0; i < N; i++) {
        int n = binkey(key, sizeof(key), i);
        bool deleted = false;
        for (int j = 0; j < N; j += 3)
            if ((j * 7919) % N == i) deleted = true;
        bool got = l1_get(key, (size_t)n, 0, false, &out);
        CHECK(got != deleted);
        if (got) {
            snprintf(val, sizeof(val), "v%d", i);
            CHECK(out.len == strlen(val) && memcmp(out.value, val, out.len) == 0);
            present++;
        }
    }
    CHECK(present == l1_entries());
    l1_clear();
    CHECK(l1_entries() == 0 && l1_bytes() == 0);
    l1_close();
}

/* Deleted items leave gaps in the insertion order: eviction still takes
 * the oldest of what is left, and the newest stay. */
static void test_eviction_after_deletes(void)
{
    l1_init(64 * 1024);
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    entry_t e = value_entry(big), out;
    char key[16];
    for (int i = 0; i < 40; i++) {
        int n = snprintf(key, sizeof(key), "k%d", i);
        l1_put(key, (size_t)n, &e, 1000);
    }
    for (int i = 0; i < 40; i += 2) { /* the even ones */
        int n = snprintf(key, sizeof(key), "k%d", i);
        l1_del(key, (size_t)n);
    }
    for (int i = 40; i < 200; i++) {
        int n = snprintf(key, sizeof(key), "k%d", i);
        l1_put(key, (size_t)n, &e, 1000);
        REQUIRE(l1_bytes() <= 64 * 1024);
    }
    REQUIRE(!l1_get("k1", 2, 0, false, &out));  /* an old odd one went */
    REQUIRE(l1_get("k199", 4, 0, false, &out)); /* the newest stays */
    /* what is left is the newest run of keys, nothing older among them */
    int oldest = 200;
    for (int i = 0; i < 200; i++) {
        int n = snprintf(key, sizeof(key), "k%d", i);
        if (l1_get(key, (size_t)n, 0, false, &out)) {
            if (i < oldest) oldest = i;
        } else {
            CHECK(i < oldest || i < 40); /* no gap after the oldest kept */
        }
    }
    CHECK(oldest > 100);
    l1_close();
}

/* Expiries are kept relative to a base that moves up every few weeks of
 * the monotonic clock: items keep theirs across the move. */
static void test_expiry_base_moves(void)
{
    l1_init(1 << 20);
    entry_t e = value_entry("v"), out;
    e.fresh_until = INT64_MAX;
    uint64_t t0 = 5000000000ULL;               /* 58 days of uptime */
    REQUIRE(!l1_get("x", 1, t0, false, &out)); /* the clock is at t0 */
    l1_put("a", 1, &e, t0 + 1000);
    l1_put("b", 1, &e, t0 + 3000000000ULL); /* 35 days: cut to 49 days past the base */
    REQUIRE(l1_get("a", 1, t0 + 999, false, &out));
    REQUIRE(!l1_get("a", 1, t0 + 1000, false, &out));
    REQUIRE(l1_get("b", 1, t0 + 1000000, false, &out));
    l1_put("d", 1, &e, t0 + 2000000000ULL); /* 23 days */
    uint64_t t1 = t0 + 1500000000ULL;       /* 17 days on: the base moves */
    REQUIRE(!l1_get("y", 1, t1, false, &out));
    l1_put("c", 1, &e, t1 + 2147483000ULL); /* 24.8 days */
    REQUIRE(l1_get("c", 1, t1 + 1999, false, &out));
    REQUIRE(l1_get("d", 1, t0 + 1999999999ULL, false, &out)); /* kept its expiry */
    REQUIRE(!l1_get("d", 1, t0 + 2000000000ULL, false, &out));
    REQUIRE(l1_get("c", 1, t1 + 2147482999ULL, false, &out));
    REQUIRE(!l1_get("c", 1, t1 + 2147483000ULL, false, &out));
    l1_close();
}

/* What an item costs besides its key and value (bench/l1_memory.sh
 * measures the process's RSS; this is the item's own share): a 16-byte
 * key and a 32-byte value with realistic times. --sizes prints it. */
static size_t item_overhead(void)
{
    l1_init(1 << 20);
    char v[33];
    memset(v, 'v', 32);
    v[32] = '\0';
    entry_t e = value_entry(v);
    e.stored_at = 1796622073504LL;
    e.fresh_until = e.stored_at + 3600 * 1000;
    e.stale_until = e.error_until = e.fresh_until;
    e.fetch_ms = 12;
    l1_put("lc:{m:123456789}", 16, &e, 1000);
    size_t per = l1_bytes() - 16 - 32;
    l1_close();
    return per;
}

static void test_item_overhead(void)
{
    CHECK(l1_item_header_size() <= 16);
    CHECK(item_overhead() <= 64);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--sizes") == 0) {
        printf("l1 item: fixed header %zu B; accounted overhead of an item (16-byte key, 32-byte "
               "value) %zu B\n",
               l1_item_header_size(), item_overhead());
        return 0;
    }
    RUN(test_dict);
    RUN(test_get_put_expire);
    RUN(test_eviction_oldest_first);
    RUN(test_negative_entry);
    RUN(test_forbid);
    RUN(test_del_matching);
    RUN(test_fields_roundtrip);
    RUN(test_table_churn);
    RUN(test_eviction_after_deletes);
    RUN(test_item_overhead);
    RUN(test_expiry_base_moves);
    return check_summary("l1");
}
