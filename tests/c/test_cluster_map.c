/* test_cluster_map.c: the slot map (src/cluster_map.c) loaded from CLUSTER
 * SLOTS replies as Redis 7 sends them (parsed by hiredis's own reader from
 * RESP text), bad replies refused without touching the map, and MOVED /
 * ASK redirections. */
#include <string.h>

#include <hiredis/hiredis.h>

#include "cluster_map.h"
#include "check.h"

static cluster_map_t map;

/* RESP text -> a reply tree (freeReplyObject it). */
static redisReply *parse(const char *resp)
{
    redisReader *rd = redisReaderCreate();
    redisReaderFeed(rd, resp, strlen(resp));
    void *r = NULL;
    if (redisReaderGetReply(rd, &r) != REDIS_OK) r = NULL;
    redisReaderFree(rd);
    return r;
}

/* Three masters (with a replica each), as redis-cli --cluster create makes. */
static const char *three =
    "*3\r\n"
    "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$3\r\nid1\r\n"
    "*3\r\n$9\r\n127.0.0.1\r\n:7004\r\n$3\r\nid5\r\n"
    "*4\r\n:5461\r\n:10922\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$3\r\nid2\r\n"
    "*3\r\n$9\r\n127.0.0.1\r\n:7005\r\n$3\r\nid6\r\n"
    "*3\r\n:10923\r\n:16383\r\n*3\r\n$0\r\n\r\n:7002\r\n$3\r\nid3\r\n";

static void test_load(void)
{
    cluster_map_init(&map);
    CHECK(cluster_map_owner(&map, 0) == CLUSTER_NO_NODE);
    redisReply *r = parse(three);
    REQUIRE(r);
    char err[256] = "";
    REQUIRE(cluster_map_load(&map, r, "10.1.1.1", 7002, err, sizeof(err)) == 0);
    freeReplyObject(r);
    CHECK(map.covered == HASHSLOT_COUNT);
    CHECK(map.nnodes == 3); /* masters only */
    unsigned a = cluster_map_owner(&map, 0), b = cluster_map_owner(&map, 5461),
             c = cluster_map_owner(&map, 16383);
    CHECK(a != b && b != c && a != c);
    CHECK(map.nodes[a].port == 7000 && strcmp(map.nodes[a].host, "127.0.0.1") == 0);
    CHECK(map.nodes[b].port == 7001);
    /* the empty endpoint is the node that was asked */
    CHECK(map.nodes[c].port == 7002 && strcmp(map.nodes[c].host, "10.1.1.1") == 0);
    CHECK(cluster_map_owner(&map, 5460) == a && cluster_map_owner(&map, 10922) == b);
    /* a key routes by its hash tag */
    CHECK(cluster_map_owner(&map, hashslot_of("lc:{widget:42}", 14)) == a); /* slot 1135 */
}

/* A refresh after a reshard keeps node indexes: links stay keyed by them. */
static void test_reload_keeps_indexes(void)
{
    unsigned before = cluster_map_owner(&map, 0);
    redisReply *r = parse("*2\r\n"
                          "*3\r\n:0\r\n:100\r\n*2\r\n$9\r\n127.0.0.1\r\n:7001\r\n"
                          "*3\r\n:101\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n");
    REQUIRE(r);
    char err[256];
    REQUIRE(cluster_map_load(&map, r, "127.0.0.1", 7000, err, sizeof(err)) == 0);
    freeReplyObject(r);
    CHECK(map.nnodes == 3);
    CHECK(cluster_map_owner(&map, 101) == before); /* 7000 kept its index */
    CHECK(map.nodes[cluster_map_owner(&map, 0)].port == 7001);
}

static const char *bad[] = {
    "+OK\r\n",
    "-CLUSTERDOWN The cluster is down\r\n",
    "-ERR This instance has cluster support disabled\r\n",
    "*1\r\n:5\r\n",
    "*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",         /* end < start */
    "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",      /* past the last slot */
    "*1\r\n*3\r\n:0\r\n:10\r\n*2\r\n$1\r\nh\r\n:0\r\n",         /* port 0 */
    "*1\r\n*3\r\n:0\r\n:10\r\n*2\r\n$1\r\nh\r\n$4\r\n7000\r\n", /* port not an integer */
    "*1\r\n*3\r\n:0\r\n:10\r\n*1\r\n$1\r\nh\r\n",               /* no port */
    "*1\r\n*2\r\n:0\r\n:10\r\n",                                /* no master */
};

static void test_bad_replies_leave_the_map(void)
{
    cluster_map_t copy = map;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *r = parse(bad[i]);
        char err[256] = "";
        if (!r) {
            fprintf(stderr, "    case %zu did not parse\n", i);
            test_failed = 1;
            continue;
        }
        int rc = cluster_map_load(&map, r, "127.0.0.1", 7000, err, sizeof(err));
        freeReplyObject(r);
        if (rc != -1 || strncmp(err, "CLUSTER SLOTS: ", 15) != 0) {
            fprintf(stderr, "    case %zu: rc %d err '%s'\n", i, rc, err);
            test_failed = 1;
        }
        CHECK(memcmp(copy.owner, map.owner, sizeof(map.owner)) == 0);
    }
    CHECK(cluster_map_load(&map, NULL, "h", 1, (char[64]){0}, 64) == -1);
}

static void test_node_table(void)
{
    cluster_map_t m;
    cluster_map_init(&m);
    CHECK(cluster_map_node(&m, "h", 1, 1) == 0);
    CHECK(cluster_map_node(&m, "h", 1, 1) == 0);
    CHECK(cluster_map_node(&m, "h", 1, 2) == 1);
    CHECK(cluster_map_node(&m, "", 0, 2) == -1);
    CHECK(cluster_map_node(&m, "h", 1, 70000) == -1);
    char name[16];
    for (int i = 2; i < CLUSTER_MAX_NODES; i++) {
        int n = snprintf(name, sizeof(name), "n%d", i);
        CHECK(cluster_map_node(&m, name, (size_t)n, 1) == i);
    }
    CHECK(cluster_map_node(&m, "full", 4, 1) == -1);
}

static void test_redirects(void)
{
    cluster_redirect_t r;
    const char *m = "MOVED 3999 127.0.0.1:6381";
    REQUIRE(cluster_parse_redirect(m, strlen(m), &r));
    CHECK(!r.ask && r.slot == 3999 && r.port == 6381 && strcmp(r.host, "127.0.0.1") == 0);
    m = "ASK 0 [::1]:7000";
    REQUIRE(cluster_parse_redirect(m, strlen(m), &r));
    CHECK(r.ask && r.slot == 0 && r.port == 7000 && strcmp(r.host, "::1") == 0);
    m = "MOVED 16383 :7002"; /* unknown endpoint: the node that answered */
    REQUIRE(cluster_parse_redirect(m, strlen(m), &r));
    CHECK(r.slot == 16383 && r.port == 7002 && r.host[0] == '\0');
    const char *no[] = {"ERR wrong",    "MOVED",       "MOVED 16384 h:1", "MOVED x h:1",
                        "MOVED 1 h",    "MOVED 1 h:0", "MOVED 1 h:99999", "ASK 1",
                        "MOVED -1 h:1", "moved 1 h:1"};
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        if (cluster_parse_redirect(no[i], strlen(no[i]), &r)) {
            fprintf(stderr, "    '%s' taken for a redirect\n", no[i]);
            test_failed = 1;
        }
    }
}

int main(void)
{
    RUN(test_load);
    RUN(test_reload_keeps_indexes);
    RUN(test_bad_replies_leave_the_map);
    RUN(test_node_table);
    RUN(test_redirects);
    return check_summary("cluster_map");
}
