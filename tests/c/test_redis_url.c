/* test_redis_url.c: the --redis URL forms of src/redis_url.c that name a
 * Redis Cluster or a Sentinel deployment, TLS, and their errors. (The
 * single-server forms are checked in test_backend.c.) */
#include <string.h>

#include "redis_url.h"
#include "check.h"

static redis_url_t u;
static char err[512];

static int parse(const char *url)
{
    err[0] = '\0';
    return redis_url_parse(url, &u, err, sizeof(err));
}

static void test_cluster(void)
{
    REQUIRE(parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002") == 0);
    CHECK(u.mode == REDIS_MODE_CLUSTER && !u.tls && !u.is_unix);
    CHECK(u.nhosts == 3);
    CHECK(strcmp(u.hosts[0].host, "10.0.0.1") == 0 && u.hosts[0].port == 7000);
    CHECK(strcmp(u.hosts[1].host, "10.0.0.2") == 0 && u.hosts[1].port == 7001);
    CHECK(strcmp(u.hosts[2].host, "::1") == 0 && u.hosts[2].port == 7002);
    CHECK(strcmp(u.host, "10.0.0.1") == 0 && u.port == 7000); /* the first host */
    CHECK(u.db == 0);

    REQUIRE(parse("redis+cluster://alice:p%40ss@h1,h2:7001?password=") == -1);
    CHECK(strstr(err, "password given twice") != NULL);
    REQUIRE(parse("REDIS+CLUSTER://alice:pw@h1,h2:7001") == 0);
    CHECK(strcmp(u.user, "alice") == 0 && strcmp(u.pass, "pw") == 0);
    CHECK(u.hosts[0].port == 6379 && u.hosts[1].port == 7001);
    CHECK(strcmp(redis_mode_name(u.mode), "cluster") == 0);
    REQUIRE(parse("rediss+cluster://h:1") == 0);
    CHECK(u.tls && u.mode == REDIS_MODE_CLUSTER);
}

static void test_sentinel(void)
{
    REQUIRE(parse("redis+sentinel://s1:26379,s2:26380/mymaster") == 0);
    CHECK(u.mode == REDIS_MODE_SENTINEL);
    CHECK(u.nhosts == 2 && u.hosts[1].port == 26380);
    CHECK(strcmp(u.master, "mymaster") == 0);
    CHECK(u.db == 0 && u.pass[0] == '\0');

    REQUIRE(parse("redis+sentinel://:datapw@s1:26379/cache-1/3?sentinel_password=s%26p") == 0);
    CHECK(strcmp(u.master, "cache-1") == 0 && u.db == 3);
    CHECK(strcmp(u.pass, "datapw") == 0);
    CHECK(strcmp(u.sentinel_pass, "s&p") == 0 && u.sentinel_user[0] == '\0');
    REQUIRE(parse("redis+sentinel://s1/m?sentinel_user=mon&sentinel_password=x&db=2") == 0);
    CHECK(strcmp(u.sentinel_user, "mon") == 0 && u.db == 2);
}

static const struct {
    const char *url, *want;
} bad[] = {
    {"redis://h1,h2", "needs redis+cluster://"},
    {"redis+cluster://h1,,h2", "empty host"},
    {"redis+cluster://h1,", "empty host"},
    {"redis+cluster://", "missing host"},
    {"redis+cluster://h:7000/2", "only db 0"},
    {"redis+cluster://h:7000?db=1", "only db 0"},
    {"redis+cluster://h:0", "bad port"},
    {"redis+cluster://a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "too many hosts"},
    {"redis+sentinel://s1:26379", "name the master"},
    {"redis+sentinel://s1:26379/", "name the master"},
    {"redis+sentinel://s1:26379/bad name", "bad character in master"},
    {"redis+sentinel://s1/m/x", "bad db"},
    {"redis+sentinel://s1/m?sentinel_user=mon", "without a sentinel_password"},
    {"redis+sentinel://s1/m?sentinel_password=a&sentinel_password=b", "given twice"},
    {"redis+sentinel://s1/m?foo=1", "sentinel_user or sentinel_password"},
    {"redis://h?sentinel_password=x", "for redis+sentinel://"},
    {"redis+sentinal://h", "want redis://"},
};

static void test_bad(void)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i].url);
        bool ok = rc == -1 && strncmp(err, "--redis: ", 9) == 0 && strstr(err, bad[i].want) &&
                  u.nhosts == 0 && u.pass[0] == '\0';
        if (!ok) fprintf(stderr, "    '%s': rc=%d err='%s'\n", bad[i].url, rc, err);
        CHECK(ok);
    }
}

/* A password never shows in an error, whatever else is wrong. */
static void test_secret_not_echoed(void)
{
    CHECK(parse("redis+sentinel://s1/m?sentinel_password=hunter2&sentinel_password=x") == -1);
    CHECK(strstr(err, "hunter2") == NULL);
    CHECK(parse("redis+cluster://u:hunter2/x@h1,h2") == -1);
    CHECK(strstr(err, "hunter2") == NULL);
}

int main(void)
{
    RUN(test_cluster);
    RUN(test_sentinel);
    RUN(test_bad);
    RUN(test_secret_not_echoed);
    return check_summary("redis_url");
}
