/* test_cache_races.c: the read-through cache and its fills (cache.c,
 * fill.c, bcast.c) against a scripted store (fake_store.c), so that the
 * interleavings a real Redis produces only by chance happen every run:
 *
 *  - another instance's "F" broadcast overtaking our lock reply (its
 *    subscriber link is faster than our command link);
 *  - an invalidation (DEL here, or another instance's "I") landing while a
 *    fill's fetch runs, or while its store is on the wire;
 *  - an "I" landing while a lookup's read is in flight (its value must not
 *    go to the in-process tier);
 *  - Redis going away in the middle of a fill (fail open).
 *
 * The policies run for real (Lua, the coroutine runner, ctx.sleep on the
 * loop); only Redis is scripted. Each test checks the exact store calls it
 * expects, the answers the client got and the namespace counters. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "cache.h"
#include "cache_int.h"
#include "config.h"
#include "entry.h"
#include "fake_store.h"
#include "keys.h"
#include "fill.h"
#include "invalidate.h"
#include "l1.h"
#include "l1_link.h"
#include "nsgen.h"
#include "tags.h"
#include "log.h"
#include "policy.h"
#include "util.h"
#include "check.h"

static uv_loop_t loop;
static char tmpdir[256];
static char lua_path[512];

/* ---------------------------------------------------------------------------
 * A client's answer: a sink that keeps what was written
 * ------------------------------------------------------------------------- */

typedef struct answer {
    sink_t sink;
    buf_t out;
    bool done;
} answer_t;

static buf_t *answer_out(sink_t *s)
{
    return &((answer_t *)s)->out;
}

static void answer_finish(sink_t *s)
{
    ((answer_t *)s)->done = true;
}

static const sink_ops_t answer_ops = {.out = answer_out, .finish = answer_finish};

static answer_t *answer_new(void)
{
    answer_t *a = xcalloc(1, sizeof(*a));
    a->sink.ops = &answer_ops;
    a->sink.proto = SINK_RESP2;
    return a;
}

static void answer_free(answer_t *a)
{
    buf_free(&a->out);
    free(a);
}

/* The answer is exactly this RESP text. */
static bool answered(const answer_t *a, const char *resp)
{
    if (!a->done) return false;
    size_t n = strlen(resp);
    if (a->out.len == n && memcmp(a->out.data, resp, n) == 0) return true;
    fprintf(stderr, "    answer '%.*s', want '%s'\n", (int)a->out.len, a->out.data, resp);
    return false;
}

static answer_t *read_key(cache_op_t op, const char *key)
{
    answer_t *a = answer_new();
    cache_key_t k;
    buf_t err = {0};
    if (cache_key_parse(key, strlen(key), &k, &err) != 0) {
        fprintf(stderr, "    key %s: %.*s\n", key, (int)err.len, err.data);
        abort();
    }
    buf_free(&err);
    cache_read(&a->sink, op, &k, 1, false);
    return a;
}

static answer_t *get(const char *key)
{
    return read_key(CACHE_GET, key);
}

static answer_t *del(const char *key)
{
    answer_t *a = answer_new();
    cache_key_t k;
    buf_t err = {0};
    if (cache_key_parse(key, strlen(key), &k, &err) != 0) abort();
    buf_free(&err);
    cache_del(&a->sink, &k, 1);
    return a;
}

/* ---------------------------------------------------------------------------
 * The loop, the policies, entries
 * ------------------------------------------------------------------------- */

static void tick_cb(uv_timer_t *t)
{
    LC_UNUSED(t);
}

/* Run the loop until cond() holds or ms pass; whether it held. */
static bool run_until(bool (*cond)(void *), void *arg, int ms)
{
    uv_timer_t tick;
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, tick_cb, 2, 2);
    uint64_t deadline = uv_now(&loop) + (uint64_t)ms;
    bool ok;
    while (!(ok = cond(arg)) && uv_now(&loop) < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return ok;
}

static bool is_done(void *a)
{
    return ((answer_t *)a)->done;
}

typedef struct pending {
    fs_kind_t kind;
    const char *key;
} pending_t;

static bool has_pending(void *p)
{
    pending_t *w = p;
    return fs_next(w->kind, w->key) != NULL;
}

/* The next unanswered call of kind on key, waiting up to 2 s of loop time
 * for it (a fetch runs on the loop before its store goes out). */
static fs_call_t *expect(fs_kind_t kind, const char *key)
{
    pending_t w = {kind, key};
    run_until(has_pending, &w, 2000);
    return fs_next(kind, key);
}

static void write_file(const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* "w": fetches at once; ids starting with "slow" sleep 50 ms first, on the
 * loop, so the test can act while the fetch runs. */
static const char *policy_w = "return {\n"
                              "  ttl = 60, l1_ttl = 30,\n"
                              "  fetch = function(id, ctx)\n"
                              "    if id:sub(1, 4) == 'slow' then ctx.sleep(0.05) end\n"
                              "    return 'fetched-' .. id\n"
                              "  end,\n"
                              "}\n";

static ns_t *ns_w;

static char rkey_buf[256];
static const char *rkey_of(const char *id)
{
    buf_t b = {0};
    keys_entry(&b, "w", 1, id, strlen(id));
    snprintf(rkey_buf, sizeof(rkey_buf), "%.*s", (int)b.len, b.data);
    buf_free(&b);
    return rkey_buf;
}

static char lock_buf[300];
static const char *lock_of(const char *id)
{
    buf_t e = {0}, l = {0};
    keys_entry(&e, "w", 1, id, strlen(id));
    keys_lock(&l, e.data, e.len);
    snprintf(lock_buf, sizeof(lock_buf), "%.*s", (int)l.len, l.data);
    buf_free(&e);
    buf_free(&l);
    return lock_buf;
}

/* A fresh value entry of ns_w as another instance would have stored it. */
static void fresh_entry(buf_t *out, const char *value)
{
    int64_t now = now_ms();
    entry_t e = {
        .kind = ENTRY_VALUE,
        .version = ns_w->cur->conf.version,
        .gen = ns_w->gen,
        .fresh_until = now + 60000,
        .stale_until = now + 60000,
        .error_until = now + 60000,
        .fetch_ms = 1,
        .stored_at = now,
        .value = value,
        .len = strlen(value),
    };
    entry_encode(out, &e);
}

/* Answer the next read of id with a fresh entry holding value. */
static void answer_read(const char *id, const char *value)
{
    fs_call_t *c = expect(FS_GET, rkey_of(id));
    if (!c) {
        fprintf(stderr, "    no read of %s to answer\n", id);
        test_failed = 1;
        return;
    }
    buf_t e = {0};
    fresh_entry(&e, value);
    fs_answer_value(c, e.data, e.len);
    buf_free(&e);
}

/* Another instance's broadcast on the events channel. */
static void broadcast(char type, const char *rkey)
{
    char msg[400];
    int n = snprintf(msg, sizeof(msg), "%c 00000000deadbeef %s", type, rkey);
    fs_deliver(msg, (size_t)n);
}

/* Answer every namespace-generation read with generation 0. */
static void answer_gen_syncs(void)
{
    fs_call_t *c;
    while ((c = fs_next(FS_GEN_SYNC, NULL)))
        fs_answer_int(c, 0);
}

/* A fill's store: its tag adds (none here) then the entry, answered "stored". */
static void answer_store(fs_call_t *c)
{
    fs_answer_int(c, 1);
}

static void setup(void)
{
    log_min_level = LOG_ERROR;
    uv_loop_init(&loop);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lc-races-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(2);
    }
    const char *lp = getenv("LUACACHED_LUA_PATH");
    snprintf(lua_path, sizeof(lua_path), "%s",
             lp ? lp : (access("../lua/luacached", F_OK) == 0 ? "../lua" : "lua"));
    write_file("w.lua", policy_w);
    engine_conf_t ec = {.policies_dir = tmpdir, .lua_path = lua_path, .mem_limit = 32u << 20};
    char err[512];
    if (engine_init(&loop, &ec, err, sizeof(err)) != 0 || engine_load_all() != 0) {
        fprintf(stderr, "engine: %s\n", err);
        exit(2);
    }
    ns_w = ns_find("w", 1);
    if (!ns_w || !ns_w->cur) {
        fprintf(stderr, "policy w did not load\n");
        exit(2);
    }
    store_init(&loop);
    cache_init(&loop);
    /* the listeners main.c wires, in its order */
    if (l1_link_listen() != 0 || fill_listen() != 0 || nsgen_listen() != 0 ||
        tags_listen(fills_oldest_fetch) != 0) {
        fprintf(stderr, "wiring the listeners failed\n");
        exit(2);
    }
    answer_gen_syncs();
}

/* Each test starts with nothing in flight, an empty tier and no calls. */
static void between_tests(void)
{
    run_until(is_done, &(answer_t){.done = false}, 60); /* let timers and closes run */
    if (cache_fills_in_flight() != 0) {
        /* a test left a fill behind: its waiter's answer is gone, stop here */
        fprintf(stderr, "%zu fills still in flight after a test\n", cache_fills_in_flight());
        exit(1);
    }
    l1_clear();
    fs_reset();
    memset(&ns_w->stats, 0, sizeof(ns_w->stats));
}

/* A GET of w:id that misses: its lookup answered "no entry", then the
 * fill's lock and its re-read, both still unanswered. false (the test
 * marked failed) when a call did not come. */
static bool start_fill(const char *id, answer_t **a, fs_call_t **lock, fs_call_t **lget)
{
    char key[64];
    snprintf(key, sizeof(key), "w:%s", id);
    *a = get(key);
    fs_call_t *c = expect(FS_GET, rkey_of(id));
    if (!c) {
        fprintf(stderr, "    no lookup of %s\n", key);
        test_failed = 1;
        return false;
    }
    fs_answer_nil(c);
    *lock = expect(FS_LOCK, lock_of(id));
    *lget = expect(FS_GET, rkey_of(id));
    if (!*lock || !*lget) {
        fprintf(stderr, "    no lock and re-read for %s\n", key);
        test_failed = 1;
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------- */

/* The plain miss, as a baseline: lookup, lock + re-read, fetch, store,
 * answer only once Redis confirmed the store, then an l1 hit. */
static void test_miss_fill_hit(void)
{
    answer_t *a = get("w:1");
    fs_call_t *c = expect(FS_GET, rkey_of("1"));
    REQUIRE(c);
    fs_answer_nil(c);
    fs_call_t *lock = expect(FS_LOCK, lock_of("1"));
    REQUIRE(lock);
    fs_answer_ok(lock);
    REQUIRE((c = expect(FS_GET, rkey_of("1"))));
    fs_answer_nil(c);
    fs_call_t *st = expect(FS_PUT_IF_LOCKED, rkey_of("1"));
    REQUIRE(st);
    CHECK(strcmp(st->token, lock->token) == 0);
    CHECK(!a->done); /* not before Redis has it */
    answer_store(st);
    CHECK(run_until(is_done, a, 1000));
    CHECK(answered(a, "$9\r\nfetched-1\r\n"));
    CHECK(ns_w->stats.fetch_ok == 1 && ns_w->stats.misses == 1);
    answer_free(a);

    size_t calls = fs_count();
    a = get("w:1"); /* from the tier: no store call at all */
    CHECK(answered(a, "$9\r\nfetched-1\r\n"));
    CHECK(fs_count() == calls);
    CHECK(ns_w->stats.hits_l1 == 1);
    answer_free(a);
}

/* Another instance's fill lands, and its "F" reaches us before our lock
 * reply (which says the lock is held: the reply was computed before the
 * other instance released it). No broadcast will come any more, so the
 * fill must re-read at once rather than wait out lock_timeout; and it must
 * answer from the other instance's value, fetching nothing. */
static void test_broadcast_overtakes_lock_reply(void)
{
    answer_t *a;
    fs_call_t *lock, *lget;
    if (!start_fill("2", &a, &lock, &lget)) return;
    broadcast('F', rkey_of("2")); /* overtakes both replies */
    fs_answer_nil(lock);          /* NX refused: held elsewhere */
    fs_answer_nil(lget);          /* read before the other store landed */
    /* re-read at once: no timer in between */
    fs_call_t *re = fs_next(FS_GET, rkey_of("2"));
    REQUIRE(re);
    buf_t e = {0};
    fresh_entry(&e, "theirs");
    fs_answer_value(re, e.data, e.len);
    buf_free(&e);
    CHECK(run_until(is_done, a, 1000));
    CHECK(answered(a, "$6\r\ntheirs\r\n"));
    CHECK(ns_w->stats.fetch_ok == 0);
    CHECK(fs_count_kind(FS_PUT_IF_LOCKED, NULL) == 0 && fs_count_kind(FS_PUT, NULL) == 0);
    CHECK(ns_w->stats.lock_waits == 1);
    answer_free(a);
}

/* The same broadcast arriving while the lock is still being asked for, but
 * the lock was ours after all (the "F" was of an earlier fill): the fill
 * fetches and stores as usual; the stale "F" does no harm. */
static void test_old_broadcast_while_locking(void)
{
    answer_t *a;
    fs_call_t *lock, *lget;
    if (!start_fill("3", &a, &lock, &lget)) return;
    broadcast('F', rkey_of("3"));
    fs_answer_ok(lock);
    fs_answer_nil(lget);
    fs_call_t *st = expect(FS_PUT_IF_LOCKED, rkey_of("3"));
    REQUIRE(st);
    answer_store(st);
    CHECK(run_until(is_done, a, 1000));
    CHECK(answered(a, "$9\r\nfetched-3\r\n"));
    CHECK(ns_w->stats.fetch_ok == 1);
    answer_free(a);
}

/* A DEL while the fetch runs: the fill's result answers the request that
 * was already waiting, but is never stored and never goes to the tier; the
 * next GET starts a fill of its own. */
static void test_del_during_fetch(void)
{
    answer_t *a;
    fs_call_t *lock, *lget;
    if (!start_fill("slow4", &a, &lock, &lget)) return;
    fs_answer_ok(lock);
    fs_answer_nil(lget); /* the fetch starts: it sleeps 50 ms on the loop */
    answer_t *d = del("w:slow4");
    fs_call_t *dc = expect(FS_DEL_UNLOCK, rkey_of("slow4"));
    REQUIRE(dc);
    fs_answer_int(dc, 0);
    CHECK(run_until(is_done, d, 1000));
    CHECK(answered(d, ":0\r\n"));
    CHECK(run_until(is_done, a, 2000));
    CHECK(answered(a, "$13\r\nfetched-slow4\r\n"));
    CHECK(fs_count_kind(FS_PUT_IF_LOCKED, NULL) == 0 && fs_count_kind(FS_PUT, NULL) == 0);
    CHECK(ns_w->stats.invalidations_race == 1);
    /* the lock the fill held is released (the DEL removed it anyway) */
    answer_free(a);
    answer_free(d);

    size_t before = fs_count_kind(FS_GET, rkey_of("slow4"));
    a = get("w:slow4"); /* not from the tier */
    CHECK(!a->done);
    CHECK(fs_count_kind(FS_GET, rkey_of("slow4")) == before + 1);
    answer_read("slow4", "v4");
    CHECK(run_until(is_done, a, 1000));
    CHECK(answered(a, "$2\r\nv4\r\n"));
    answer_free(a);
}

/* Another instance's "I" for the key while our store is on the wire: Redis
 * then refuses the store (the invalidation deleted our lock: the script
 * answers 0). The waiter gets the value it waited for, the tier keeps
 * nothing. */
static void test_invalidation_while_storing(void)
{
    answer_t *a;
    fs_call_t *lock, *lget;
    if (!start_fill("5", &a, &lock, &lget)) return;
    fs_answer_ok(lock);
    fs_answer_nil(lget);
    fs_call_t *st = expect(FS_PUT_IF_LOCKED, rkey_of("5"));
    REQUIRE(st);
    broadcast('I', rkey_of("5"));
    fs_answer_int(st, 0); /* lock gone: not stored */
    CHECK(run_until(is_done, a, 1000));
    CHECK(answered(a, "$9\r\nfetched-5\r\n"));
    CHECK(ns_w->stats.invalidations_race == 1);
    answer_free(a);
    a = get("w:5"); /* the tier has nothing: a lookup goes to Redis */
    CHECK(!a->done);
    answer_read("5", "v5");
    CHECK(run_until(is_done, a, 1000));
    CHECK(answered(a, "$2\r\nv5\r\n"));
    answer_free(a);
}

/* An "I" while a hit's read is in flight: the value read may predate the
 * invalidation, so it answers this GET but does not go to the tier. */
static void test_invalidation_during_lookup(void)
{
    answer_t *a = get("w:6");
    fs_call_t *c = expect(FS_GET, rkey_of("6"));
    REQUIRE(c);
    broadcast('I', rkey_of("6"));
    buf_t e = {0};
    fresh_entry(&e, "old6");
    fs_answer_value(c, e.data, e.len);
    buf_free(&e);
    CHECK(run_until(is_done, a, 1000));
    CHECK(answered(a, "$4\r\nold6\r\n"));
    answer_free(a);
    a = get("w:6");
    CHECK(!a->done); /* not from the tier, but from Redis again */
    answer_read("6", "new6");
    CHECK(run_until(is_done, a, 1000));
    CHECK(answered(a, "$4\r\nnew6\r\n"));
    answer_free(a);
    /* Nor the next while the invalidation's window is open (cache.c keeps
     * the key out of the tier for 2 backend timeouts + 1 s after it). */
    a = get("w:6");
    CHECK(!a->done);
    answer_read("6", "new6");
    CHECK(run_until(is_done, a, 1000));
    answer_free(a);
}

/* Redis goes away between the lock and its re-read: the fill fails open
 * (fetches without a lock) and stores nothing it cannot. */
static void test_redis_lost_mid_fill(void)
{
    answer_t *a;
    fs_call_t *lock, *lget;
    if (!start_fill("7", &a, &lock, &lget)) return;
    fs_set_up(false);
    fs_answer_down(lock);
    fs_answer_down(lget);
    CHECK(run_until(is_done, a, 2000));
    CHECK(answered(a, "$9\r\nfetched-7\r\n"));
    CHECK(ns_w->stats.fetch_ok == 1);
    CHECK(fs_count_kind(FS_PUT_IF_LOCKED, NULL) == 0);
    fs_set_up(true);
    answer_free(a);
}

/* Ten GETs of one missing key in one turn: one lookup batch entry per GET,
 * but one lock and one fetch for all. */
static void test_coalescing(void)
{
    answer_t *as[10];
    for (int i = 0; i < 10; i++)
        as[i] = get("w:8");
    fs_call_t *c;
    CHECK(fs_count_kind(FS_GET, rkey_of("8")) == 10); /* one lookup each */
    for (int i = 0; i < 10; i++) {
        REQUIRE((c = fs_next(FS_GET, rkey_of("8"))));
        fs_answer_nil(c); /* the first starts the fill; the others join it */
    }
    CHECK(fs_count_kind(FS_LOCK, NULL) == 1);
    fs_call_t *lock = expect(FS_LOCK, lock_of("8"));
    REQUIRE(lock);
    fs_answer_ok(lock);
    REQUIRE((c = fs_next(FS_GET, rkey_of("8"))));
    fs_answer_nil(c);
    fs_call_t *st = expect(FS_PUT_IF_LOCKED, rkey_of("8"));
    REQUIRE(st);
    answer_store(st);
    for (int i = 0; i < 10; i++) {
        CHECK(run_until(is_done, as[i], 1000));
        CHECK(answered(as[i], "$9\r\nfetched-8\r\n"));
        answer_free(as[i]);
    }
    CHECK(ns_w->stats.fetch_ok == 1);
    CHECK(ns_w->stats.coalesced == 9);
}

typedef struct purged {
    int calls;
    long long removed;
} purged_t;

static void on_purged(void *priv, long long removed, const char *err)
{
    purged_t *p = priv;
    p->calls++;
    p->removed = err ? -1 : removed;
}

static bool is_purged(void *priv)
{
    return ((purged_t *)priv)->calls > 0;
}

/* PURGE on a Redis Cluster walks every master in turn; a slot that changes
 * hands meanwhile could carry a matching key from a master not yet walked
 * to one already walked. So a walk during which the slot map changed is
 * done again from the start, and the count is what Redis removed. */
static void test_purge_walks_again_after_reshape(void)
{
    purged_t p = {0};
    purge_pattern(ns_w, "p*", 2, true, on_purged, &p);
    fs_call_t *scan = expect(FS_SCAN, NULL);
    REQUIRE(scan);
    char k1[128];
    snprintf(k1, sizeof(k1), "%s", rkey_of("p1"));
    const char *first[] = {k1};
    fs_reshape(); /* a MOVED, or a map refresh, while the walk runs */
    fs_answer_scan(scan, "0", first, 1);
    fs_call_t *u1 = expect(FS_UNLINK, k1);
    REQUIRE(u1);
    fs_answer_int(u1, 1);
    CHECK(p.calls == 0); /* not done: the walk starts over */
    fs_call_t *again = fs_next(FS_SCAN, NULL);
    REQUIRE(again && again != scan);
    char k2[128];
    snprintf(k2, sizeof(k2), "%s", rkey_of("p2")); /* it had moved to a node walked first */
    const char *second[] = {k1, k2};
    fs_answer_scan(again, "0", second, 2);
    fs_call_t *u1b = fs_next(FS_UNLINK, k1), *u2 = fs_next(FS_UNLINK, k2);
    REQUIRE(u1b && u1b != u1 && u2);
    fs_answer_int(u1b, 0); /* gone already: not counted twice */
    fs_answer_int(u2, 1);
    CHECK(run_until(is_purged, &p, 1000));
    CHECK(p.calls == 1 && p.removed == 2);
    CHECK(fs_count_kind(FS_SCAN, NULL) == 2); /* no reshape in the second walk: done */
}

int main(void)
{
    setup();
    void (*tests[])(void) = {
        test_miss_fill_hit,
        test_broadcast_overtakes_lock_reply,
        test_old_broadcast_while_locking,
        test_del_during_fetch,
        test_invalidation_while_storing,
        test_invalidation_during_lookup,
        test_redis_lost_mid_fill,
        test_coalescing,
        test_purge_walks_again_after_reshape,
    };
    const char *names[] = {
        "miss_fill_hit",
        "broadcast_overtakes_lock_reply",
        "old_broadcast_while_locking",
        "del_during_fetch",
        "invalidation_while_storing",
        "invalidation_during_lookup",
        "redis_lost_mid_fill",
        "coalescing",
        "purge_walks_again_after_reshape",
    };
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        between_tests();
        test_failed = 0;
        tests[i]();
        if (!check_end_test()) fprintf(stderr, "FAIL %s\n", names[i]);
    }
    cache_shutdown();
    cache_close();
    engine_close();
    store_close();
    uv_run(&loop, UV_RUN_NOWAIT);
    return check_summary("cache_races");
}
