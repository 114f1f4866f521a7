/* test_store_batch.c: store.c's batching of fill writes, exactly, with no
 * timing: the calls of one loop turn are made before the loop runs, and a
 * fake backend (below, in place of backend.o) records what store.c sends
 * and answers it with replies parsed by hiredis's reader.
 *
 * tests/integration/fill_batch_spec.lua checks the same against the real
 * server and Redis, but there how many loop turns a pipeline or a burst of
 * fetches takes depends on the machine; here a turn is a turn.
 *
 *   test_store_batch [name]   run all tests, or the one named */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "backend.h"
#include "store.h"
#include "util.h"
#include "check.h"

/* ------------------------------------------------------------------------ */
/* The fake backend: one node, what store.c uses                             */
/* ------------------------------------------------------------------------ */

typedef struct sent {
    backend_cb cb;
    void *priv;
    char *cmd; /* RESP, NUL-terminated */
    size_t len;
} sent_t;

#define MAX_SENT 64
static sent_t sent[MAX_SENT];
static size_t nsent;

bool backend_up(void)
{
    return true;
}

void backend_on_up(void (*fn)(void))
{
    LC_UNUSED(fn); /* the link never comes up here: no SCRIPT LOADs */
}

int backend_cmd_formatted(backend_cb cb, void *priv, const char *cmd, size_t len)
{
    if (nsent == MAX_SENT) {
        fprintf(stderr, "test_store_batch: more than %d commands\n", MAX_SENT);
        exit(2);
    }
    sent[nsent++] = (sent_t){cb, priv, xmemdup(cmd, len), len};
    return 0;
}

bool backend_any_up(void)
{
    return true;
}

bool backend_clustered(void)
{
    return false;
}

unsigned backend_slot(const char *key, size_t len)
{
    LC_UNUSED(key);
    LC_UNUSED(len);
    return 0;
}

bool backend_slot_up(unsigned slot)
{
    LC_UNUSED(slot);
    return true;
}

int backend_send(unsigned slot, backend_cb cb, void *priv, const char *cmd, size_t len)
{
    LC_UNUSED(slot);
    return backend_cmd_formatted(cb, priv, cmd, len);
}

size_t backend_nodes(void)
{
    return 1;
}

int backend_send_node(size_t node, backend_cb cb, void *priv, const char *cmd, size_t len)
{
    LC_UNUSED(node);
    return backend_cmd_formatted(cb, priv, cmd, len);
}

void backend_barrier(void (*cb)(void *priv), void *priv)
{
    cb(priv);
}

void backend_flush_writes(void)
{
    /* the fake link "sends" at once */
}

void backend_cluster_stats(backend_cluster_stats_t *out)
{
    *out = (backend_cluster_stats_t){0};
}

/* Answer command i with the reply in RESP text. */
static void answer(size_t i, const char *resp)
{
    redisReader *rd = redisReaderCreate();
    redisReply *r = NULL;
    if (!rd || redisReaderFeed(rd, resp, strlen(resp)) != REDIS_OK ||
        redisReaderGetReply(rd, (void **)&r) != REDIS_OK || !r) {
        fprintf(stderr, "test_store_batch: bad reply text %s\n", resp);
        exit(2);
    }
    redisReaderFree(rd);
    if (sent[i].cb) sent[i].cb(sent[i].priv, r);
    freeReplyObject(r);
}

static void sent_reset(void)
{
    for (size_t i = 0; i < nsent; i++)
        free(sent[i].cmd);
    nsent = 0;
}

/* ------------------------------------------------------------------------ */
/* Harness                                                                   */
/* ------------------------------------------------------------------------ */

static uv_loop_t loop;
static bool is_up;

static void up(void)
{
    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "test_store_batch: uv_loop_init failed\n");
        exit(2);
    }
    store_init(&loop);
    is_up = true;
}

/* One loop turn: the prepare handle sends what the turn collected. */
static void turn(void)
{
    uv_run(&loop, UV_RUN_NOWAIT);
}

static void down(void)
{
    store_close();
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(uv_loop_close(&loop) == 0);
    sent_reset();
    is_up = false;
}

static bool sent_is(size_t i, const char *want)
{
    bool ok =
        i < nsent && sent[i].len == strlen(want) && memcmp(sent[i].cmd, want, sent[i].len) == 0;
    if (!ok) {
        fprintf(stderr, "  command %zu:\n", i);
        if (i < nsent) print_escaped("sent", sent[i].cmd, sent[i].len);
        print_escaped("want", want, strlen(want));
    }
    return ok;
}

typedef struct lock_res {
    int calls;
    store_status_t lock, entry;
    char lock_err[64], value[64];
} lock_res_t;

static void on_lock(void *priv, const store_result_t *lock, const store_result_t *entry)
{
    lock_res_t *r = priv;
    r->calls++;
    r->lock = lock->status;
    r->entry = entry->status;
    if (lock->status == STORE_ERROR)
        snprintf(r->lock_err, sizeof(r->lock_err), "%.*s", (int)lock->len, lock->str);
    if (entry->status == STORE_OK)
        snprintf(r->value, sizeof(r->value), "%.*s", (int)entry->len, entry->str);
}

typedef struct put_res {
    int calls;
    store_status_t status;
    long long integer;
    char err[64];
} put_res_t;

static void on_put(void *priv, const store_result_t *r)
{
    put_res_t *p = priv;
    p->calls++;
    p->status = r->status;
    p->integer = r->integer;
    if (r->status == STORE_ERROR) snprintf(p->err, sizeof(p->err), "%.*s", (int)r->len, r->str);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                     */
/* ------------------------------------------------------------------------ */

/* Four fills' locks in one turn: four SET NX, then ONE MGET of the four
 * entries, sent when the turn ends; each fill gets its own lock answer
 * and its own entry, once the MGET's reply is in. */
static void test_lock_reads_one_turn(void)
{
    up();
    lock_res_t r[4] = {0};
    const char *locks[4] = {"L1", "L2", "L3", "L4"}, *keys[4] = {"E1", "E2", "E3", "E4"};
    for (int i = 0; i < 4; i++)
        REQUIRE(store_lock_read(locks[i], 2, "tok", 500, keys[i], 2, on_lock, &r[i]) == 0);
    CHECK(nsent == 0); /* held for the rest of the turn */
    turn();
    REQUIRE(nsent == 5);
    for (int i = 0; i < 4; i++) {
        char want[96];
        snprintf(
            want, sizeof(want),
            "*6\r\n$3\r\nSET\r\n$2\r\n%s\r\n$3\r\ntok\r\n$2\r\nNX\r\n$2\r\nPX\r\n$3\r\n500\r\n",
            locks[i]);
        CHECK(sent_is((size_t)i, want));
    }
    CHECK(sent_is(4, "*5\r\n$4\r\nMGET\r\n$2\r\nE1\r\n$2\r\nE2\r\n$2\r\nE3\r\n$2\r\nE4\r\n"));
    answer(0, "+OK\r\n");
    answer(1, "$-1\r\n"); /* another fill holds it */
    answer(2, "+OK\r\n");
    answer(3, "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    for (int i = 0; i < 4; i++)
        CHECK(r[i].calls == 0); /* each needs its entry too */
    answer(4, "*4\r\n$2\r\nv1\r\n$-1\r\n$2\r\nv3\r\n$2\r\nv4\r\n");
    for (int i = 0; i < 4; i++)
        CHECK(r[i].calls == 1);
    CHECK(r[0].lock == STORE_OK && r[0].entry == STORE_OK && strcmp(r[0].value, "v1") == 0);
    CHECK(r[1].lock == STORE_NIL && r[1].entry == STORE_NIL);
    CHECK(r[2].lock == STORE_OK && r[2].entry == STORE_OK && strcmp(r[2].value, "v3") == 0);
    CHECK(r[3].lock == STORE_ERROR && strncmp(r[3].lock_err, "WRONGTYPE", 9) == 0);
    CHECK(r[3].entry == STORE_OK && strcmp(r[3].value, "v4") == 0);
    down();
}

/* Each turn its own batch: two turns, two MGETs (a lone key: a GET). */
static void test_lock_reads_per_turn(void)
{
    up();
    lock_res_t r[3] = {0};
    REQUIRE(store_lock_read("L1", 2, "t", 9, "E1", 2, on_lock, &r[0]) == 0);
    REQUIRE(store_lock_read("L2", 2, "t", 9, "E2", 2, on_lock, &r[1]) == 0);
    turn();
    REQUIRE(nsent == 3);
    CHECK(sent_is(2, "*3\r\n$4\r\nMGET\r\n$2\r\nE1\r\n$2\r\nE2\r\n"));
    REQUIRE(store_lock_read("L3", 2, "t", 9, "E3", 2, on_lock, &r[2]) == 0);
    turn();
    REQUIRE(nsent == 5);
    CHECK(sent_is(4, "*2\r\n$3\r\nGET\r\n$2\r\nE3\r\n"));
    answer(0, "+OK\r\n");
    answer(1, "+OK\r\n");
    answer(2, "*2\r\n$-1\r\n$2\r\nv2\r\n");
    answer(3, "+OK\r\n");
    answer(4, "$2\r\nv3\r\n");
    CHECK(r[0].calls == 1 && r[0].lock == STORE_OK && r[0].entry == STORE_NIL);
    CHECK(r[1].calls == 1 && strcmp(r[1].value, "v2") == 0);
    CHECK(r[2].calls == 1 && r[2].lock == STORE_OK && strcmp(r[2].value, "v3") == 0);
    down();
}

/* Three fills' stores in one turn: one script call carrying the three
 * (entry, lock) pairs; each key's result is its own element. */
static void test_puts_one_turn(void)
{
    up();
    put_res_t r[3] = {0};
    const char *keys[3] = {"E1", "E2", "E3"}, *locks[3] = {"L1", "L2", "L3"};
    for (int i = 0; i < 3; i++)
        REQUIRE(store_put_if_locked(keys[i], 2, locks[i], 2, "tok", "val", 3, 60000, "ch", 2, "F",
                                    1, on_put, &r[i]) == 0);
    CHECK(nsent == 0);
    turn();
    REQUIRE(nsent == 1);
    /* EVALSHA sha 6 E1 L1 E2 L2 E3 L3 ch, then (tok val px msg) per key */
    const char *c = sent[0].cmd;
    CHECK(strncmp(c, "*22\r\n$7\r\nEVALSHA\r\n$40\r\n", 23) == 0);
    CHECK(strstr(c, "\r\n$1\r\n6\r\n$2\r\nE1\r\n$2\r\nL1\r\n$2\r\nE2\r\n$2\r\nL2\r\n$2\r\nE3\r\n$"
                    "2\r\nL3\r\n$2\r\nch\r\n") != NULL);
    answer(0, "*3\r\n:1\r\n:0\r\n-WRONGTYPE Operation against a key\r\n");
    CHECK(r[0].calls == 1 && r[0].status == STORE_OK && r[0].integer == 1);
    CHECK(r[1].calls == 1 && r[1].status == STORE_OK && r[1].integer == 0);
    CHECK(r[2].calls == 1 && r[2].status == STORE_ERROR && strncmp(r[2].err, "WRONGTYPE", 9) == 0);
    down();
}

static void on_unlinked(void *priv, const store_result_t *r)
{
    put_res_t *u = priv;
    u->calls++;
    u->status = r->status;
    u->integer = r->integer;
}

/* A plain command issued while a batch of stores is open: the batch goes
 * first, as its own request, and the command as the next one, each with
 * its own callback (the command was once appended to the batch's request,
 * shifting every later reply on the link to the wrong caller). */
static void test_command_after_open_puts(void)
{
    up();
    put_res_t p = {0}, u = {0};
    REQUIRE(store_put_if_locked("E1", 2, "L1", 2, "tok", "val", 3, 60000, "ch", 2, "F", 1, on_put,
                                &p) == 0);
    REQUIRE(store_unlink("K9", 2, on_unlinked, &u) == 0);
    REQUIRE(nsent == 2);
    CHECK(strncmp(sent[0].cmd, "*10\r\n$7\r\nEVALSHA\r\n", 18) == 0);
    CHECK(strstr(sent[0].cmd, "UNLINK") == NULL);
    CHECK(sent_is(1, "*2\r\n$6\r\nUNLINK\r\n$2\r\nK9\r\n"));
    answer(0, "*1\r\n:1\r\n");
    answer(1, ":1\r\n");
    CHECK(p.calls == 1 && p.status == STORE_OK && p.integer == 1);
    CHECK(u.calls == 1 && u.status == STORE_OK && u.integer == 1);
    down();
}

/* In a cluster a SET NX that was redirected (ASK during a slot migration)
 * answers from the node it was sent on to, after the MGET that the old
 * node answered at once: each fill still gets its own entry, kept until
 * the last lock answer is in (it was once answered as Redis down). */
static void test_lock_reads_redirected_lock(void)
{
    up();
    lock_res_t r[2] = {0};
    REQUIRE(store_lock_read("L1", 2, "t", 9, "E1", 2, on_lock, &r[0]) == 0);
    REQUIRE(store_lock_read("L2", 2, "t", 9, "E2", 2, on_lock, &r[1]) == 0);
    turn();
    REQUIRE(nsent == 3);
    answer(0, "+OK\r\n");
    answer(2, "*2\r\n$2\r\nv1\r\n-ERR some error\r\n"); /* the MGET, first */
    CHECK(r[0].calls == 0 && r[1].calls == 0);
    answer(1, "+OK\r\n"); /* the redirected SET NX, last */
    CHECK(r[0].calls == 1 && r[0].lock == STORE_OK && r[0].entry == STORE_OK);
    CHECK(strcmp(r[0].value, "v1") == 0);
    CHECK(r[1].calls == 1 && r[1].lock == STORE_OK && r[1].entry == STORE_ERROR);
    down();
}

typedef struct test {
    const char *name;
    void (*fn)(void);
} test_t;

static const test_t tests[] = {
    {"lock_reads_one_turn", test_lock_reads_one_turn},
    {"lock_reads_per_turn", test_lock_reads_per_turn},
    {"lock_reads_redirected_lock", test_lock_reads_redirected_lock},
    {"puts_one_turn", test_puts_one_turn},
    {"command_after_open_puts", test_command_after_open_puts},
};

int main(int argc, char **argv)
{
    for (size_t i = 0; i < LC_ARRAY_LEN(tests); i++) {
        if (argc > 1 && strcmp(argv[1], tests[i].name) != 0) continue;
        test_failed = 0;
        tests[i].fn();
        if (is_up) down(); /* a test that failed half-way */
        if (!check_end_test()) fprintf(stderr, "FAIL %s\n", tests[i].name);
    }
    return check_summary("store_batch");
}
