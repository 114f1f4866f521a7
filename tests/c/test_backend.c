/* test_backend.c: backend.c against real redis-server processes.
 *
 * The test starts its own redis-server instances (free TCP ports, a unix
 * socket in a temp dir) and kills them on exit; the children also die with
 * the test through PR_SET_PDEATHSIG, so a crash leaves nothing behind.
 * Every wait is a loop run with a deadline. Every test asserts exact
 * callback counts and ends with uv_loop_close() == 0.
 *
 *   test_backend [name]   run all tests, or the one named */
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "backend.h"
#include "link.h"
#include "log.h"
#include "util.h"
#include "check.h"

/* ------------------------------------------------------------------------ */
/* redis-server processes                                                   */
/* ------------------------------------------------------------------------ */

static char tmpdir[64];
static pid_t pids[8];

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        perror("free_port");
        exit(2);
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* True when something on the port speaks RESP (-NOAUTH counts). */
static bool redis_answers(int port)
{
    struct timeval tv = {0, 200 * 1000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool ok = false;
    if (c && !c->err) {
        redisSetTimeout(c, tv);
        redisReply *r = redisCommand(c, "PING");
        ok = r != NULL;
        if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    return ok;
}

/* Starts redis-server on port (plus a unix socket and a password when
 * given) and waits up to 10 s until it answers. */
static pid_t redis_start(int port, const char *sock, const char *pass)
{
    char portstr[16], logfile[128];
    snprintf(portstr, sizeof(portstr), "%d", port);
    snprintf(logfile, sizeof(logfile), "%s/redis-%d.log", tmpdir, port);
    const char *argv[24];
    int n = 0;
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = portstr;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = tmpdir;
    argv[n++] = "--logfile";
    argv[n++] = logfile;
    if (sock) {
        argv[n++] = "--unixsocket";
        argv[n++] = sock;
        argv[n++] = "--unixsocketperm";
        argv[n++] = "700";
    }
    if (pass) {
        argv[n++] = "--requirepass";
        argv[n++] = pass;
    }
    argv[n] = NULL;

    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    for (size_t i = 0; i < LC_ARRAY_LEN(pids); i++) {
        if (pids[i] == 0) {
            pids[i] = pid;
            break;
        }
    }
    uint64_t end = mono_ms() + 10000;
    while (mono_ms() < end) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "redis-server on port %d exited at start (see %s)\n", port, logfile);
            exit(2);
        }
        if (redis_answers(port)) return pid;
        usleep(20 * 1000);
    }
    fprintf(stderr, "redis-server on port %d did not answer within 10 s\n", port);
    exit(2);
}

static void redis_kill(pid_t pid)
{
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (size_t i = 0; i < LC_ARRAY_LEN(pids); i++)
        if (pids[i] == pid) pids[i] = 0;
}

static void kill_all_redis(void)
{
    for (size_t i = 0; i < LC_ARRAY_LEN(pids); i++)
        if (pids[i] > 0) redis_kill(pids[i]);
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */
/* ------------------------------------------------------------------------ */

static uv_loop_t loop;
static uv_timer_t guard; /* a 10 ms tick so uv_run(ONCE) never blocks for long */

static void guard_cb(uv_timer_t *t)
{
    LC_UNUSED(t);
}

static void loop_begin(void)
{
    uv_loop_init(&loop);
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, guard_cb, 10, 10);
}

typedef bool (*pred_fn)(const void *arg);

static bool wait_until(pred_fn pred, const void *arg, uint64_t ms)
{
    uint64_t end = mono_ms() + ms;
    while (!pred(arg)) {
        if (mono_ms() >= end) return false;
        uv_run(&loop, UV_RUN_ONCE);
    }
    return true;
}

static bool never(const void *arg)
{
    LC_UNUSED(arg);
    return false;
}

static void run_for(uint64_t ms)
{
    wait_until(never, NULL, ms);
}

static bool is_up(const void *arg)
{
    LC_UNUSED(arg);
    return backend_up();
}

static bool is_down(const void *arg)
{
    LC_UNUSED(arg);
    return !backend_up();
}

/* Close the backend and the guard, let close callbacks run (bounded), and
 * report uv_loop_close(): 0 means no handle was left behind. */
static int loop_end(void)
{
    backend_close();
    uv_close((uv_handle_t *)&guard, NULL);
    uint64_t end = mono_ms() + 3000;
    while (uv_run(&loop, UV_RUN_NOWAIT) != 0 && mono_ms() < end)
        usleep(1000);
    int rc = uv_loop_close(&loop);
    if (rc != 0) uv_print_all_handles(&loop, stderr);
    return rc;
}

static int start_backend(const char *url, long timeout_ms)
{
    char err[256];
    backend_conf_t conf = {.url = url, .timeout_ms = timeout_ms};
    int rc = backend_init(&loop, &conf, err, sizeof(err));
    if (rc != 0) fprintf(stderr, "  backend_init(%s): %s\n", url, err);
    return rc;
}

/* A fresh loop and backend on url (timeout_ms), waited for until up. */
static void start_up(const char *url, long timeout_ms)
{
    loop_begin();
    CHECK(start_backend(url, timeout_ms) == 0);
    CHECK(wait_until(is_up, NULL, 3000));
}

/* ------------------------------------------------------------------------ */
/* Callback recorder                                                        */
/* ------------------------------------------------------------------------ */

struct rec {
    int calls, nulls;
    int type;
    long long integer;
    char str[512];
    size_t len;
    uint64_t at_ms;   /* mono_ms() at the (last) call */
    bool up_in_cb;    /* backend_up() as seen from inside the callback */
    bool try_cmd;     /* issue a command from inside the callback ... */
    int cmd_rc;       /* ... and record what backend_cmd() said */
    bool close_in_cb; /* call backend_close() from inside the callback */
    int *order;       /* when set: append seq here */
    int seq;
};

static int order_log[2048];
static int order_n;

static void rec_cb(void *priv, redisReply *r)
{
    struct rec *x = priv;
    x->calls++;
    x->at_ms = mono_ms();
    x->up_in_cb = backend_up();
    if (x->order && order_n < (int)LC_ARRAY_LEN(order_log)) order_log[order_n++] = x->seq;
    if (!r) {
        x->nulls++;
    } else {
        x->type = r->type;
        x->integer = r->integer;
        x->len = 0;
        x->str[0] = '\0';
        if (r->str) {
            x->len = r->len;
            size_t n = r->len < sizeof(x->str) - 1 ? r->len : sizeof(x->str) - 1;
            memcpy(x->str, r->str, n);
            x->str[n] = '\0';
        }
    }
    if (x->try_cmd) x->cmd_rc = backend_cmd(NULL, NULL, "PING");
    if (x->close_in_cb) backend_close();
}

static bool rec_called(const void *arg)
{
    return ((const struct rec *)arg)->calls > 0;
}

struct recs {
    struct rec *v;
    int n;
};

static bool recs_all_called(const void *arg)
{
    const struct recs *rs = arg;
    for (int i = 0; i < rs->n; i++)
        if (rs->v[i].calls == 0) return false;
    return true;
}

/* One command, waited for; the reply lands in *x. */
static bool roundtrip(struct rec *x, const char *fmt, const char *a1, const char *a2)
{
    memset(x, 0, sizeof(*x));
    if (backend_cmd(rec_cb, x, fmt, a1, a2) != 0) return false;
    return wait_until(rec_called, x, 3000);
}

static int main_port;
static pid_t main_pid;

/* start_up() on the shared Redis. */
static void start_main_up(long timeout_ms)
{
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);
    start_up(url, timeout_ms);
}

/* ------------------------------------------------------------------------ */
/* Tests                                                                    */
/* ------------------------------------------------------------------------ */

static void test_url_good(void)
{
    static const struct {
        const char *url;
        bool is_unix;
        const char *host;
        int port;
        const char *path;
        int db;
        const char *user, *pass;
    } cases[] = {
        {"redis://127.0.0.1", false, "127.0.0.1", 6379, "", 0, "", ""},
        {"redis://localhost:6380/2", false, "localhost", 6380, "", 2, "", ""},
        {"REDIS://h:1/", false, "h", 1, "", 0, "", ""},
        {"redis://:s3cret@h:7000/1", false, "h", 7000, "", 1, "", "s3cret"},
        {"redis://alice:pw@redis.example.com/3", false, "redis.example.com", 6379, "", 3, "alice",
         "pw"},
        {"redis://secret@h", false, "h", 6379, "", 0, "", "secret"},
        {"redis://u:p%40ss%3Aw%2Fd@h", false, "h", 6379, "", 0, "u", "p@ss:w/d"},
        {"redis://:a@b@h:1", false, "h", 1, "", 0, "", "a@b"},
        {"redis://[::1]:6390/4", false, "::1", 6390, "", 4, "", ""},
        {"redis://[::1]", false, "::1", 6379, "", 0, "", ""},
        {"redis://h?db=5", false, "h", 6379, "", 5, "", ""},
        {"redis://h/2147483647", false, "h", 6379, "", 2147483647, "", ""},
        {"unix:/tmp/r.sock", true, "", 0, "/tmp/r.sock", 0, "", ""},
        {"unix:///tmp/r.sock?db=3", true, "", 0, "/tmp/r.sock", 3, "", ""},
        {"unix:/tmp/r.sock?password=x%26y&db=1", true, "", 0, "/tmp/r.sock", 1, "", "x&y"},
        {"unix:/tmp/r.sock?user=bob&password=pw", true, "", 0, "/tmp/r.sock", 0, "bob", "pw"},
        {"unix:relative.sock", true, "", 0, "relative.sock", 0, "", ""},
    };
    for (size_t i = 0; i < LC_ARRAY_LEN(cases); i++) {
        redis_url_t u;
        char err[256] = "";
        int rc = redis_url_parse(cases[i].url, &u, err, sizeof(err));
        if (rc != 0) fprintf(stderr, "  %s: %s\n", cases[i].url, err);
        CHECK(rc == 0);
        if (rc != 0) continue;
        bool ok = u.is_unix == cases[i].is_unix && strcmp(u.host, cases[i].host) == 0 &&
                  u.port == cases[i].port && strcmp(u.path, cases[i].path) == 0 &&
                  u.db == cases[i].db && strcmp(u.user, cases[i].user) == 0 &&
                  strcmp(u.pass, cases[i].pass) == 0;
        if (!ok)
            fprintf(stderr, "  %s -> unix=%d host=%s port=%d path=%s db=%d user=%s pass=%s\n",
                    cases[i].url, u.is_unix, u.host, u.port, u.path, u.db, u.user, u.pass);
        CHECK(ok);
    }
}

static void test_url_bad(void)
{
    static char long_unix[300];
    memcpy(long_unix, "unix:/", 6);
    memset(long_unix + 6, 'x', 200);
    static const struct {
        const char *url, *want;
    } cases[] = {
        {"", "empty URL"},
        {"http://x", "want redis://"},
        {"127.0.0.1:6379", "want redis://"},
        {"redis://", "missing host"},
        {"redis://:6379", "missing host"},
        {"redis://:hunter2@", "missing host"},
        {"redis://h:0", "bad port '0'"},
        {"redis://:hunter2@h:65536", "bad port '65536'"},
        {"redis://h:12ab", "bad port"},
        {"redis://h:", "bad port"},
        {"redis://h:-1", "bad port"},
        {"redis://h/x", "bad db number 'x'"},
        {"redis://h/-1", "bad db"},
        {"redis://h/1/2", "bad db"},
        {"redis://h/99999999999", "bad db"},
        {"redis://h/1?db=2", "db given twice"},
        {"redis://:p@h?password=q", "password given twice"},
        {"redis://h?foo=1", "unknown option 'foo'"},
        {"redis://h?db", "needs a value"},
        {"redis://::1:6379", "brackets"},
        {"redis://[::1", "missing ']'"},
        {"redis://[zz]:1", "bad IPv6"},
        {"redis://[::1]x", "after the IPv6"},
        {"redis://h h", "bad character"},
        {"redis://u:hunter2%4@h", "bad %-escape in the password"},
        {"redis://u:p%00@h", "%00"},
        {"redis://alice:@h", "without a password"},
        {"unix:", "missing socket path"},
        {"unix:?db=1", "missing socket path"},
        {"unix://tmp/x", "absolute path"},
        {"unix:/tmp/x?db=a", "bad db"},
        {long_unix, "too long"},
    };
    for (size_t i = 0; i < LC_ARRAY_LEN(cases); i++) {
        redis_url_t u;
        char err[256] = "";
        int rc = redis_url_parse(cases[i].url, &u, err, sizeof(err));
        bool ok = rc == -1 && strncmp(err, "--redis: ", 9) == 0 && strstr(err, cases[i].want) &&
                  !strstr(err, "hunter2") && u.pass[0] == '\0';
        if (!ok) fprintf(stderr, "  '%.40s': rc=%d err='%s'\n", cases[i].url, rc, err);
        CHECK(ok);
    }
    /* backend_init refuses a bad URL and starts nothing. */
    loop_begin();
    char err[256] = "";
    backend_conf_t conf = {.url = "redis://h:0", .timeout_ms = 100};
    CHECK(backend_init(&loop, &conf, err, sizeof(err)) == -1);
    CHECK(strstr(err, "--redis: bad port") != NULL);
    /* TLS parses, and is refused with the hiredis version that would do it. */
    conf.url = "rediss://h";
    CHECK(backend_init(&loop, &conf, err, sizeof(err)) == -1);
    CHECK(strstr(err, "hiredis 1.0.0") != NULL && strstr(err, "0.14") != NULL);
    CHECK(!backend_up());
    CHECK(backend_cmd(rec_cb, NULL, "PING") == -1);
    CHECK(loop_end() == 0);
}

/* Redis down at start: not fatal, commands refused at once, and the backend
 * comes up by itself when Redis starts. This Redis stays for later tests. */
static void test_down_at_start(void)
{
    main_port = free_port();
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", main_port);
    loop_begin();
    CHECK(start_backend(url, 1000) == 0);
    uint64_t err0 = backend_errors_total(), out0 = backend_outages_total();
    CHECK(!backend_up());
    struct rec r = {0};
    CHECK(backend_cmd(rec_cb, &r, "PING") == -1);
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    CHECK(backend_cmd_argv(rec_cb, &r, 1, argv, lens) == -1);
    run_for(400); /* attempts at ~0, ~100, ~300 ms */
    CHECK(r.calls == 0);
    CHECK(backend_errors_total() - err0 >= 2);
    CHECK(backend_outages_total() - out0 == 1);
    CHECK(!backend_up());

    main_pid = redis_start(main_port, NULL, NULL);
    CHECK(wait_until(is_up, NULL, 8000));
    CHECK(backend_outages_total() - out0 == 1); /* one outage, however many retries */
    struct rec p;
    CHECK(roundtrip(&p, "PING", NULL, NULL));
    CHECK(p.calls == 1 && p.nulls == 0 && p.type == REDIS_REPLY_STATUS);
    CHECK(strcmp(p.str, "PONG") == 0);
    CHECK(r.calls == 0); /* the refused commands never call back */
    CHECK(loop_end() == 0);
}

static void test_roundtrip(void)
{
    start_main_up(1000);
    uint64_t err0 = backend_errors_total();

    struct rec set = {0}, get = {0}, miss = {0}, bset = {0}, bget = {0};
    CHECK(backend_cmd(rec_cb, &set, "SET %s %s", "rt:k", "v1") == 0);
    CHECK(backend_cmd(rec_cb, &get, "GET %s", "rt:k") == 0);
    CHECK(backend_cmd(rec_cb, &miss, "GET %s", "rt:missing") == 0);
    /* Binary-safe argv: a value with a NUL inside. */
    const char *sargv[] = {"SET", "rt:bin", "a\0b"};
    size_t slens[] = {3, 6, 3};
    const char *gargv[] = {"GET", "rt:bin"};
    size_t glens[] = {3, 6};
    CHECK(backend_cmd_argv(rec_cb, &bset, 3, sargv, slens) == 0);
    CHECK(backend_cmd_argv(rec_cb, &bget, 2, gargv, glens) == 0);
    struct rec *v[] = {&set, &get, &miss, &bset, &bget};
    uint64_t end = mono_ms() + 3000;
    while (mono_ms() < end && bget.calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    run_for(100); /* any second callback would show up now */
    for (size_t i = 0; i < LC_ARRAY_LEN(v); i++)
        CHECK(v[i]->calls == 1 && v[i]->nulls == 0);
    CHECK(set.type == REDIS_REPLY_STATUS && strcmp(set.str, "OK") == 0);
    CHECK(get.type == REDIS_REPLY_STRING && strcmp(get.str, "v1") == 0);
    CHECK(miss.type == REDIS_REPLY_NIL);
    CHECK(bget.type == REDIS_REPLY_STRING && bget.len == 3 && memcmp(bget.str, "a\0b", 3) == 0);
    CHECK(backend_errors_total() == err0);
    CHECK(backend_up());
    CHECK(loop_end() == 0);
}

/* -ERR replies reach the callback as replies; they are not backend errors. */
static void test_reply_errors(void)
{
    start_main_up(1000);
    uint64_t err0 = backend_errors_total();
    struct rec r;
    CHECK(roundtrip(&r, "SET %s %s", "re:str", "notanumber"));
    CHECK(roundtrip(&r, "INCR %s", "re:str", NULL));
    CHECK(r.calls == 1 && r.nulls == 0 && r.type == REDIS_REPLY_ERROR);
    CHECK(strstr(r.str, "not an integer") != NULL);
    CHECK(roundtrip(&r, "NOSUCHCOMMAND", NULL, NULL));
    CHECK(r.calls == 1 && r.type == REDIS_REPLY_ERROR);
    CHECK(backend_errors_total() == err0);
    CHECK(backend_up());
    CHECK(loop_end() == 0);
}

/* 1000 pipelined commands: each answered exactly once, in order. */
static void test_pipeline(void)
{
    enum { N = 1000 };
    start_main_up(1000);
    struct rec d;
    CHECK(roundtrip(&d, "DEL %s", "pl:ctr", NULL));

    struct rec *rs = xcalloc(N, sizeof(*rs));
    order_n = 0;
    int queued = 0;
    for (int i = 0; i < N; i++) {
        rs[i].order = order_log;
        rs[i].seq = i;
        queued += backend_cmd(rec_cb, &rs[i], "INCR %s", "pl:ctr") == 0;
    }
    CHECK(queued == N);
    struct recs all = {rs, N};
    CHECK(wait_until(recs_all_called, &all, 5000));
    run_for(50);
    int exact = 0, in_order = 0, values = 0;
    for (int i = 0; i < N; i++) {
        exact += rs[i].calls == 1 && rs[i].nulls == 0;
        values += rs[i].type == REDIS_REPLY_INTEGER && rs[i].integer == i + 1;
        in_order += i < order_n && order_log[i] == i;
    }
    CHECK(order_n == N);
    CHECK(exact == N);
    CHECK(values == N);
    CHECK(in_order == N);
    free(rs);
    CHECK(loop_end() == 0);
}

/* No reply within the timeout: the callback gets NULL on time, the link is
 * dropped and the backend reconnects by itself once Redis answers again. */
static void test_timeout(void)
{
    start_main_up(300);
    uint64_t err0 = backend_errors_total(), out0 = backend_outages_total();

    struct rec p, g = {0}, g2 = {0};
    CHECK(roundtrip(&p, "CLIENT PAUSE %s", "1500", NULL));
    CHECK(p.type == REDIS_REPLY_STATUS);
    g.try_cmd = true;
    uint64_t t0 = mono_ms();
    CHECK(backend_cmd(rec_cb, &g, "GET %s", "to:k") == 0);
    CHECK(backend_cmd(rec_cb, &g2, "GET %s", "to:k") == 0);
    CHECK(wait_until(rec_called, &g2, 3000));
    uint64_t took = g.at_ms - t0;
    CHECK(g.calls == 1 && g.nulls == 1);
    CHECK(g2.calls == 1 && g2.nulls == 1);
    CHECK(took >= 250 && took < 1200);
    CHECK(!g.up_in_cb);    /* down before the callbacks run ... */
    CHECK(g.cmd_rc == -1); /* ... so nothing queues on the dying link */
    CHECK(backend_errors_total() - err0 >= 2);
    CHECK(backend_outages_total() - out0 == 1);
    CHECK(!backend_up());

    /* The pause ends 1.5 s after it began; handshakes time out until then. */
    CHECK(wait_until(is_up, NULL, 6000));
    CHECK(mono_ms() - t0 >= 1000);
    struct rec r;
    CHECK(roundtrip(&r, "SET %s %s", "to:k", "after"));
    CHECK(roundtrip(&r, "GET %s", "to:k", NULL));
    CHECK(r.calls == 1 && r.type == REDIS_REPLY_STRING && strcmp(r.str, "after") == 0);
    CHECK(backend_outages_total() - out0 == 1);
    CHECK(g.calls == 1 && g2.calls == 1);
    CHECK(loop_end() == 0);
}

/* SIGKILL Redis with commands in flight: they fail at once (well before the
 * timeout), the backend is down, and comes back when Redis restarts. */
static void test_kill_restart(void)
{
    start_main_up(5000);
    uint64_t err0 = backend_errors_total(), out0 = backend_outages_total();

    struct rec b = {0}, g = {0};
    b.try_cmd = true;
    CHECK(backend_cmd(rec_cb, &b, "BLPOP %s 0", "kr:nolist") == 0);
    CHECK(backend_cmd(rec_cb, &g, "GET %s", "kr:k") == 0);
    run_for(100); /* both written; BLPOP blocks, GET waits behind it */
    CHECK(b.calls == 0 && g.calls == 0);

    redis_kill(main_pid);
    main_pid = 0;
    uint64_t t0 = mono_ms();
    CHECK(wait_until(rec_called, &g, 3000));
    CHECK(mono_ms() - t0 < 2000);
    CHECK(b.calls == 1 && b.nulls == 1 && g.calls == 1 && g.nulls == 1);
    CHECK(!b.up_in_cb && b.cmd_rc == -1);
    CHECK(wait_until(is_down, NULL, 1000));
    struct rec r = {0};
    CHECK(backend_cmd(rec_cb, &r, "PING") == -1);
    CHECK(backend_errors_total() - err0 >= 2);
    CHECK(backend_outages_total() - out0 == 1);
    run_for(500); /* a few failed reconnects: still one outage */
    CHECK(backend_outages_total() - out0 == 1);
    CHECK(!backend_up());

    main_pid = redis_start(main_port, NULL, NULL);
    t0 = mono_ms();
    CHECK(wait_until(is_up, NULL, 6000));
    CHECK(mono_ms() - t0 < 6000);
    CHECK(roundtrip(&r, "PING", NULL, NULL));
    CHECK(r.calls == 1 && r.type == REDIS_REPLY_STATUS);
    CHECK(backend_outages_total() - out0 == 1);
    CHECK(b.calls == 1 && g.calls == 1 && r.calls == 1);
    CHECK(loop_end() == 0);
}

/* AUTH (password, user+password) and SELECT, over TCP and a unix socket;
 * failing AUTH/SELECT keeps the backend down without harm. */
static void test_auth_select(void)
{
    char sock[128], url[256];
    int port = free_port();
    snprintf(sock, sizeof(sock), "%s/aux.sock", tmpdir);
    pid_t pid = redis_start(port, sock, "s3cret");
    struct rec r;

    /* unix socket, password and db as options */
    snprintf(url, sizeof(url), "unix:%s?password=s3cret&db=2", sock);
    start_up(url, 1000);
    CHECK(roundtrip(&r, "CLIENT LIST", NULL, NULL));
    CHECK(r.type == REDIS_REPLY_STRING && strstr(r.str, " db=2 ") != NULL);
    CHECK(roundtrip(&r, "SET %s %s", "as:k", "in-db-2"));
    CHECK(r.type == REDIS_REPLY_STATUS);
    CHECK(loop_end() == 0);

    /* TCP, AUTH user password (Redis 6+: the "default" user), SELECT 2 */
    snprintf(url, sizeof(url), "redis://default:s3cret@127.0.0.1:%d/2", port);
    start_up(url, 1000);
    CHECK(roundtrip(&r, "GET %s", "as:k", NULL));
    CHECK(r.type == REDIS_REPLY_STRING && strcmp(r.str, "in-db-2") == 0);
    CHECK(loop_end() == 0);

    /* unix:/// form, escaped password, db 0: the key is not there */
    snprintf(url, sizeof(url), "unix://%s?password=s3c%%72et", sock);
    start_up(url, 1000);
    CHECK(roundtrip(&r, "GET %s", "as:k", NULL));
    CHECK(r.type == REDIS_REPLY_NIL);
    CHECK(loop_end() == 0);

    /* no password, a wrong one, a db out of range: never up, no crash */
    const char *bad[3] = {"redis://127.0.0.1:%d", "redis://:wrong@127.0.0.1:%d",
                          "redis://:s3cret@127.0.0.1:%d/100000"};
    for (int i = 0; i < 3; i++) {
        snprintf(url, sizeof(url), bad[i], port);
        loop_begin();
        CHECK(start_backend(url, 1000) == 0);
        uint64_t err0 = backend_errors_total();
        CHECK(!wait_until(is_up, NULL, 400));
        CHECK(backend_errors_total() - err0 >= 2);
        CHECK(backend_outages_total() == 1);
        CHECK(backend_cmd(rec_cb, &r, "PING") == -1);
        CHECK(loop_end() == 0);
    }
    redis_kill(pid);
    unlink(sock);
}

/* backend_close() with commands in flight: each gets NULL exactly once,
 * right away; closing is not counted as an error. */
static void test_close_inflight(void)
{
    start_main_up(5000);
    uint64_t err0 = backend_errors_total();
    struct rec rs[4] = {{0}};
    rs[0].try_cmd = true;
    CHECK(backend_cmd(rec_cb, &rs[0], "BLPOP %s 0", "ci:nolist") == 0);
    CHECK(backend_cmd(rec_cb, &rs[1], "BLPOP %s 0", "ci:nolist") == 0);
    CHECK(backend_cmd(rec_cb, &rs[2], "GET %s", "ci:k") == 0);
    run_for(50);
    CHECK(backend_cmd(rec_cb, &rs[3], "GET %s", "ci:k") == 0); /* still in the out buffer */
    backend_close();
    for (int i = 0; i < 4; i++)
        CHECK(rs[i].calls == 1 && rs[i].nulls == 1);
    CHECK(rs[0].cmd_rc == -1);
    CHECK(!backend_up());
    CHECK(backend_cmd(rec_cb, &rs[0], "PING") == -1);
    CHECK(backend_errors_total() == err0);
    backend_close(); /* idempotent */
    CHECK(loop_end() == 0);
    for (int i = 0; i < 4; i++)
        CHECK(rs[i].calls == 1);
}

/* backend_close() from inside a reply callback: hiredis defers the free
 * until the callback returns; the rest still get NULL exactly once. */
static void test_close_in_callback(void)
{
    start_main_up(5000);
    struct rec rs[3] = {{0}};
    rs[0].close_in_cb = true;
    rs[1].try_cmd = true;
    CHECK(backend_cmd(rec_cb, &rs[0], "PING") == 0);
    CHECK(backend_cmd(rec_cb, &rs[1], "BLPOP %s 0", "cc:nolist") == 0);
    CHECK(backend_cmd(rec_cb, &rs[2], "GET %s", "cc:k") == 0);
    struct recs all = {rs, 3};
    CHECK(wait_until(recs_all_called, &all, 3000));
    CHECK(rs[0].calls == 1 && rs[0].nulls == 0 && strcmp(rs[0].str, "PONG") == 0);
    CHECK(rs[1].calls == 1 && rs[1].nulls == 1 && rs[1].cmd_rc == -1);
    CHECK(rs[2].calls == 1 && rs[2].nulls == 1);
    CHECK(!backend_up());
    CHECK(loop_end() == 0);
    for (int i = 0; i < 3; i++)
        CHECK(rs[i].calls == 1);
}

/* Host names go through uv_getaddrinfo; closing while a lookup, a connect
 * or a backoff is pending leaves no handle behind; a missing unix socket
 * is just an outage. */
static void test_resolve_and_close(void)
{
    char url[128];
    snprintf(url, sizeof(url), "redis://localhost:%d", main_port);
    loop_begin();
    CHECK(start_backend(url, 1000) == 0);
    /* localhost may resolve to ::1 first, which this Redis does not serve;
     * the backend then moves on to the next address. */
    CHECK(wait_until(is_up, NULL, 5000));
    struct rec r;
    CHECK(roundtrip(&r, "PING", NULL, NULL));
    CHECK(r.calls == 1 && r.type == REDIS_REPLY_STATUS);
    CHECK(loop_end() == 0);

    loop_begin(); /* close during the lookup */
    CHECK(start_backend(url, 1000) == 0);
    CHECK(loop_end() == 0);

    loop_begin(); /* close during the connect */
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);
    CHECK(start_backend(url, 1000) == 0);
    CHECK(!backend_up());
    CHECK(loop_end() == 0);

    loop_begin(); /* close during the backoff */
    snprintf(url, sizeof(url), "unix:%s/nonexistent.sock", tmpdir);
    CHECK(start_backend(url, 1000) == 0);
    CHECK(!backend_up());
    CHECK(backend_outages_total() == 1);
    CHECK(backend_errors_total() == 1);
    run_for(150);
    CHECK(backend_errors_total() >= 2);
    CHECK(backend_outages_total() == 1);
    CHECK(loop_end() == 0);
}

/* ------------------------------------------------------------------------ */
/* Pub/sub                                                                  */
/* ------------------------------------------------------------------------ */

#define MSG_CAP 512

/* What the subscriber callbacks saw. */
static struct {
    int n; /* messages, including any beyond MSG_CAP */
    char *v[MSG_CAP];
    size_t len[MSG_CAP];
    uint64_t last_at_ms;
    int resyncs;
    bool subscribed_in_resync; /* backend_subscribed() inside on_resync */
    bool close_in_msg;         /* backend_close() from inside on_msg ... */
    bool close_in_resync;      /* ... or on_resync */
} msgs;

static void msgs_reset(void)
{
    for (int i = 0; i < MSG_CAP; i++)
        free(msgs.v[i]);
    memset(&msgs, 0, sizeof(msgs));
}

static void msg_cb(const char *m, size_t len)
{
    if (msgs.n < MSG_CAP) {
        msgs.v[msgs.n] = xmemdup(m, len);
        msgs.len[msgs.n] = len;
    }
    msgs.n++;
    msgs.last_at_ms = mono_ms();
    if (msgs.close_in_msg) backend_close();
}

static void resync_cb(void)
{
    msgs.resyncs++;
    msgs.subscribed_in_resync = backend_subscribed();
    if (msgs.close_in_resync) backend_close();
}

static bool msgs_at_least(const void *arg)
{
    return msgs.n >= *(const int *)arg;
}

static bool is_subscribed(const void *arg)
{
    LC_UNUSED(arg);
    return backend_subscribed();
}

static bool is_unsubscribed(const void *arg)
{
    LC_UNUSED(arg);
    return !backend_subscribed();
}

static bool is_up_and_subscribed(const void *arg)
{
    LC_UNUSED(arg);
    return backend_up() && backend_subscribed();
}

/* Message i: a text tag, then NUL, CR LF, and i bytes that run through
 * every byte value; so lengths and contents differ and nothing is a C
 * string. */
static size_t make_payload(int i, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "msg-%03d", i);
    size_t len = (size_t)n;
    buf[len++] = '\0';
    buf[len++] = '\r';
    buf[len++] = '\n';
    for (int k = 0; k < i && len < cap; k++)
        buf[len++] = (char)(unsigned char)(i * 7 + k * 13);
    return len;
}

static bool msg_is(int idx, const char *want, size_t len)
{
    return idx < msgs.n && idx < MSG_CAP && msgs.len[idx] == len &&
           memcmp(msgs.v[idx], want, len) == 0;
}

/* A plain client of our own, as another instance would be. */
static redisContext *ext_connect(int port, const char *pass)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!c || c->err) {
        fprintf(stderr, "  ext_connect: %s\n", c ? c->errstr : "oom");
        if (c) redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (pass) {
        redisReply *r = redisCommand(c, "AUTH %s", pass);
        if (r) freeReplyObject(r);
    }
    return c;
}

/* An integer command on the plain client; -1 on any failure. */
static long long ext_int(redisContext *c, const char *fmt, const char *a1, const char *a2,
                         size_t a2len)
{
    if (!c) return -1;
    redisReply *r = a2 ? redisCommand(c, fmt, a1, a2, a2len) : redisCommand(c, fmt, a1);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r && r->type == REDIS_REPLY_ERROR) fprintf(stderr, "  ext: %s\n", r->str);
    if (r) freeReplyObject(r);
    return v;
}

/* A command that answers +OK. */
static bool ext_ok(redisContext *c, const char *cmd)
{
    if (!c) return false;
    redisReply *r = redisCommand(c, cmd);
    bool ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
    if (r) freeReplyObject(r);
    return ok;
}

/* PUBSUB NUMSUB channel: how many connections are subscribed to it. */
static long long ext_numsub(redisContext *c, const char *channel)
{
    if (!c) return -1;
    redisReply *r = redisCommand(c, "PUBSUB NUMSUB %s", channel);
    long long v = -1;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_INTEGER)
        v = r->element[1]->integer;
    if (r) freeReplyObject(r);
    return v;
}

/* calls=N of one command in INFO commandstats; -1 when absent. */
static long long ext_cmd_calls(redisContext *c, const char *cmd)
{
    if (!c) return -1;
    redisReply *r = redisCommand(c, "INFO commandstats");
    long long v = -1;
    char key[64];
    snprintf(key, sizeof(key), "cmdstat_%s:calls=", cmd);
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, key);
        if (p) v = strtoll(p + strlen(key), NULL, 10);
    }
    if (r) freeReplyObject(r);
    return v;
}

#define CHAN "lc:test:inv"

/* A fresh loop and backend on url (timeout_ms), subscribed to chan. */
static void start_subscribed(const char *url, long timeout_ms, const char *chan)
{
    loop_begin();
    CHECK(start_backend(url, timeout_ms) == 0);
    CHECK(backend_subscribe(chan, msg_cb, resync_cb) == 0);
}

/* Payloads from..to-1 through backend_publish: how many were queued. */
static int publish_payloads(int from, int to)
{
    char buf[256];
    int queued = 0;
    for (int i = from; i < to; i++) {
        size_t len = make_payload(i, buf, sizeof(buf));
        queued += backend_publish(CHAN, buf, len) == 0;
    }
    return queued;
}

/* Payloads from..to-1 published by the plain client: how many reached a
 * subscriber. */
static int ext_publish_payloads(redisContext *c, int from, int to)
{
    char buf[256];
    int receivers = 0;
    for (int i = from; i < to; i++) {
        size_t len = make_payload(i, buf, sizeof(buf));
        receivers += ext_int(c, "PUBLISH %s %b", CHAN, buf, len) == 1;
    }
    return receivers;
}

/* How many of payloads from..to-1 arrived exactly, payload i as message
 * i + shift. */
static int payloads_arrived(int from, int to, int shift)
{
    char buf[256];
    int exact = 0;
    for (int i = from; i < to; i++) {
        size_t len = make_payload(i, buf, sizeof(buf));
        exact += msg_is(i + shift, buf, len);
    }
    return exact;
}

/* 100 messages through backend_publish arrive once each, in order, with
 * their exact bytes; resync runs once, for the first subscribe. */
static void test_pubsub_basic(void)
{
    enum { N = 100 };
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);
    msgs_reset();
    loop_begin();
    CHECK(backend_subscribe(CHAN, msg_cb, resync_cb) == -1); /* before backend_init */
    CHECK(start_backend(url, 1000) == 0);
    CHECK(backend_subscribe("", msg_cb, resync_cb) == -1);
    CHECK(backend_subscribe(CHAN, msg_cb, resync_cb) == 0);
    CHECK(backend_subscribe(CHAN, msg_cb, resync_cb) == -1); /* one subscription */
    CHECK(!backend_subscribed());
    CHECK(backend_publish(CHAN, "x", 1) == -1); /* not connected yet */
    CHECK(msgs.resyncs == 0);
    CHECK(wait_until(is_up_and_subscribed, NULL, 3000));
    CHECK(msgs.resyncs == 1 && msgs.subscribed_in_resync);

    uint64_t t0 = mono_ms();
    int queued = publish_payloads(0, N);
    CHECK(queued == N);
    int want = N;
    CHECK(wait_until(msgs_at_least, &want, 3000));
    CHECK(msgs.last_at_ms - t0 < 1000);
    run_for(100); /* a duplicate would show up now */
    CHECK(msgs.n == N);
    CHECK(payloads_arrived(0, N, 0) == N);
    CHECK(msgs.resyncs == 1);
    CHECK(backend_subscriber_outages_total() == 0);
    CHECK(backend_subscribed());
    CHECK(loop_end() == 0); /* closes with the subscription active */
    CHECK(!backend_subscribed());
    CHECK(backend_publish(CHAN, "x", 1) == -1);
    msgs_reset();
}

/* Messages from another client arrive (a 256 KiB one too), other channels'
 * do not; the idle probes re-SUBSCRIBE without duplicating the subscription,
 * delivering anything twice or calling resync again. */
static void test_pubsub_external(void)
{
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);
    msgs_reset();
    start_subscribed(url, 1000, CHAN);
    CHECK(wait_until(is_subscribed, NULL, 3000));
    CHECK(msgs.resyncs == 1);

    redisContext *c = ext_connect(main_port, NULL);
    CHECK(c != NULL);
    CHECK(ext_numsub(c, CHAN) == 1);
    CHECK(ext_int(c, "PUBLISH %s %b", "lc:test:other", "nope", 4) == 0);
    size_t biglen = 256 * 1024;
    char *big = xmalloc(biglen);
    for (size_t i = 0; i < biglen; i++)
        big[i] = (char)(i * 31 + (i >> 8));
    int receivers = ext_publish_payloads(c, 0, 10);
    receivers += ext_int(c, "PUBLISH %s %b", CHAN, big, biglen) == 1;
    CHECK(receivers == 11);
    int want = 11;
    CHECK(wait_until(msgs_at_least, &want, 3000));
    run_for(100);
    CHECK(msgs.n == 11);
    CHECK(payloads_arrived(0, 10, 0) == 10);
    CHECK(msg_is(10, big, biglen));

    /* Idle for 2.5 s: two or more probes go out and are answered. */
    CHECK(ext_ok(c, "CONFIG RESETSTAT"));
    run_for(2500);
    long long probes = ext_cmd_calls(c, "subscribe");
    if (probes < 2) fprintf(stderr, "  probes: %lld\n", probes);
    CHECK(probes >= 2 && probes <= 3);
    CHECK(backend_subscribed());
    CHECK(ext_numsub(c, CHAN) == 1);
    CHECK(msgs.n == 11 && msgs.resyncs == 1);
    CHECK(ext_int(c, "PUBLISH %s %b", CHAN, "after", 5) == 1);
    want = 12;
    CHECK(wait_until(msgs_at_least, &want, 3000));
    run_for(50);
    CHECK(msgs.n == 12 && msg_is(11, "after", 5));
    CHECK(msgs.resyncs == 1);
    CHECK(backend_subscriber_outages_total() == 0);
    free(big);
    if (c) redisFree(c);
    CHECK(loop_end() == 0);
    msgs_reset();
}

/* SIGKILL Redis: the subscription is down at once (one outage, however many
 * retries), back after a restart on the same port with a second resync,
 * and messages published after the restart arrive, from us and others. */
static void test_pubsub_kill_restart(void)
{
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);
    msgs_reset();
    start_subscribed(url, 1000, CHAN);
    CHECK(wait_until(is_up_and_subscribed, NULL, 3000));
    CHECK(msgs.resyncs == 1);
    CHECK(backend_publish(CHAN, "before", 6) == 0);
    int want = 1;
    CHECK(wait_until(msgs_at_least, &want, 3000));

    redis_kill(main_pid);
    main_pid = 0;
    uint64_t t0 = mono_ms();
    CHECK(wait_until(is_unsubscribed, NULL, 1000));
    CHECK(mono_ms() - t0 < 500);
    CHECK(backend_subscriber_outages_total() == 1);
    run_for(600); /* several failed reconnects */
    CHECK(!backend_subscribed());
    CHECK(backend_subscriber_outages_total() == 1);
    CHECK(msgs.resyncs == 1);
    CHECK(backend_publish(CHAN, "lost", 4) == -1);

    main_pid = redis_start(main_port, NULL, NULL);
    CHECK(wait_until(is_up_and_subscribed, NULL, 8000));
    CHECK(msgs.resyncs == 2 && msgs.subscribed_in_resync);
    CHECK(backend_subscriber_outages_total() == 1);
    CHECK(msgs.n == 1);

    CHECK(publish_payloads(0, 5) == 5);
    want = 6;
    CHECK(wait_until(msgs_at_least, &want, 3000));
    redisContext *c = ext_connect(main_port, NULL);
    CHECK(c != NULL);
    int receivers = ext_publish_payloads(c, 5, 10);
    CHECK(receivers == 5);
    want = 11;
    CHECK(wait_until(msgs_at_least, &want, 3000));
    run_for(100);
    CHECK(msgs.n == 11);
    CHECK(msg_is(0, "before", 6));
    CHECK(payloads_arrived(0, 10, 1) == 10);
    CHECK(msgs.resyncs == 2);
    if (c) redisFree(c);
    CHECK(loop_end() == 0);
    msgs_reset();
}

/* A Redis that stops answering without closing the socket (SIGSTOP): the
 * idle probe finds out within about a second plus the timeout, while the
 * idle command link cannot; back after SIGCONT, with a resync. */
static void test_pubsub_stall(void)
{
    char url[128];
    int port = free_port();
    pid_t pid = redis_start(port, NULL, NULL);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    msgs_reset();
    start_subscribed(url, 300, CHAN);
    CHECK(wait_until(is_up_and_subscribed, NULL, 3000));
    CHECK(msgs.resyncs == 1);

    kill(pid, SIGSTOP);
    uint64_t t0 = mono_ms();
    CHECK(wait_until(is_unsubscribed, NULL, 4000));
    uint64_t took = mono_ms() - t0;
    if (took < 300 || took >= 2000)
        fprintf(stderr, "  down after %llu ms\n", (unsigned long long)took);
    CHECK(took >= 300 && took < 2000); /* probe after 1 s idle, 300 ms deadline */
    CHECK(backend_subscriber_outages_total() == 1);
    run_for(800); /* handshakes time out meanwhile: still one outage */
    CHECK(!backend_subscribed());
    CHECK(backend_subscriber_outages_total() == 1);
    CHECK(msgs.resyncs == 1);

    kill(pid, SIGCONT);
    CHECK(wait_until(is_up_and_subscribed, NULL, 6000));
    CHECK(msgs.resyncs == 2);
    CHECK(backend_subscriber_outages_total() == 1);
    CHECK(backend_publish(CHAN, "resumed", 7) == 0);
    int want = 1;
    CHECK(wait_until(msgs_at_least, &want, 3000));
    run_for(50);
    CHECK(msgs.n == 1 && msg_is(0, "resumed", 7));
    redisContext *c = ext_connect(port, NULL);
    CHECK(ext_numsub(c, CHAN) == 1); /* the stalled connections are gone */
    if (c) redisFree(c);
    CHECK(loop_end() == 0);
    msgs_reset();
    redis_kill(pid);
}

/* The subscriber makes the same AUTH/SELECT handshake; a wrong password or
 * a SUBSCRIBE that an ACL refuses is one outage, retried, and harmless to
 * the command link. */
static void test_pubsub_auth(void)
{
    char sock[128], url[256];
    int port = free_port();
    snprintf(sock, sizeof(sock), "%s/ps.sock", tmpdir);
    pid_t pid = redis_start(port, sock, "s3cret");
    redisContext *c = ext_connect(port, "s3cret");
    CHECK(c != NULL);
    if (c) {
        CHECK(ext_ok(c, "ACL SETUSER lim on >pw ~* resetchannels &ok:* +@all"));
    }

    /* unix socket, password, db 2 */
    msgs_reset();
    snprintf(url, sizeof(url), "unix:%s?password=s3cret&db=2", sock);
    start_subscribed(url, 1000, CHAN);
    CHECK(wait_until(is_up_and_subscribed, NULL, 3000));
    CHECK(ext_int(c, "PUBLISH %s %b", CHAN, "auth\0ok", 7) == 1);
    int want = 1;
    CHECK(wait_until(msgs_at_least, &want, 3000));
    CHECK(msgs.n == 1 && msg_is(0, "auth\0ok", 7) && msgs.resyncs == 1);
    CHECK(loop_end() == 0);

    /* wrong password: neither link comes up */
    msgs_reset();
    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d", port);
    start_subscribed(url, 1000, CHAN);
    CHECK(!wait_until(is_subscribed, NULL, 400));
    CHECK(backend_subscriber_outages_total() == 1);
    CHECK(msgs.resyncs == 0);
    CHECK(loop_end() == 0);

    /* ACL user without the channel: SUBSCRIBE gets -NOPERM */
    msgs_reset();
    snprintf(url, sizeof(url), "redis://lim:pw@127.0.0.1:%d", port);
    start_subscribed(url, 1000, "no:chan");
    CHECK(wait_until(is_up, NULL, 3000));
    CHECK(!wait_until(is_subscribed, NULL, 500));
    CHECK(backend_subscriber_outages_total() == 1);
    CHECK(msgs.resyncs == 0);
    CHECK(backend_up());
    struct rec r;
    CHECK(roundtrip(&r, "PING", NULL, NULL));
    CHECK(r.calls == 1 && r.type == REDIS_REPLY_STATUS);
    CHECK(loop_end() == 0);

    /* the same user on a channel it may use */
    msgs_reset();
    start_subscribed(url, 1000, "ok:chan");
    CHECK(wait_until(is_up_and_subscribed, NULL, 3000));
    CHECK(backend_publish("ok:chan", "fine", 4) == 0);
    CHECK(wait_until(msgs_at_least, &want, 3000));
    CHECK(msgs.n == 1 && msg_is(0, "fine", 4));
    CHECK(loop_end() == 0);
    msgs_reset();

    if (c) redisFree(c);
    redis_kill(pid);
    unlink(sock);
}

/* backend_close() from inside on_msg (the rest of the batch is dropped) and
 * on_resync, and while the subscriber connects or backs off: no handle
 * left, nothing delivered after the close. */
static void test_pubsub_close(void)
{
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);

    msgs_reset(); /* close inside on_msg, three messages in one read */
    start_subscribed(url, 1000, CHAN);
    CHECK(wait_until(is_up_and_subscribed, NULL, 3000));
    msgs.close_in_msg = true;
    redisContext *c = ext_connect(main_port, NULL);
    CHECK(c != NULL);
    if (c) {
        CHECK(redisAppendCommand(c, "MULTI") == REDIS_OK);
        for (int i = 0; i < 3; i++)
            CHECK(redisAppendCommand(c, "PUBLISH %s m%d", CHAN, i) == REDIS_OK);
        CHECK(redisAppendCommand(c, "EXEC") == REDIS_OK);
        for (int i = 0; i < 5; i++) {
            redisReply *r = NULL;
            CHECK(redisGetReply(c, (void **)&r) == REDIS_OK);
            if (r) freeReplyObject(r);
        }
    }
    int want = 1;
    CHECK(wait_until(msgs_at_least, &want, 3000));
    run_for(100);
    CHECK(msgs.n == 1 && msg_is(0, "m0", 2));
    CHECK(!backend_subscribed() && !backend_up());
    CHECK(backend_publish(CHAN, "x", 1) == -1);
    CHECK(loop_end() == 0);
    CHECK(ext_numsub(c, CHAN) == 0);
    if (c) redisFree(c);

    msgs_reset(); /* close inside on_resync */
    msgs.close_in_resync = true;
    start_subscribed(url, 1000, CHAN);
    CHECK(!backend_subscribed());
    uint64_t end = mono_ms() + 3000;
    while (msgs.resyncs == 0 && mono_ms() < end)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK(msgs.resyncs == 1 && msgs.subscribed_in_resync);
    CHECK(!backend_subscribed() && !backend_up());
    CHECK(loop_end() == 0);

    msgs_reset(); /* close while connecting */
    start_subscribed(url, 1000, CHAN);
    CHECK(loop_end() == 0);

    msgs_reset(); /* close while the subscription is being confirmed */
    start_subscribed(url, 1000, CHAN);
    CHECK(wait_until(is_up, NULL, 3000)); /* the subscriber is about as far */
    CHECK(loop_end() == 0);

    msgs_reset(); /* close while backing off; a new backend_init may subscribe again */
    char bad[128];
    snprintf(bad, sizeof(bad), "unix:%s/nonexistent.sock", tmpdir);
    start_subscribed(bad, 1000, CHAN);
    CHECK(backend_subscriber_outages_total() == 1);
    run_for(150);
    CHECK(backend_subscriber_outages_total() == 1);
    CHECK(loop_end() == 0);
    start_subscribed(url, 1000, CHAN);
    CHECK(wait_until(is_subscribed, NULL, 3000));
    CHECK(backend_subscriber_outages_total() == 0);
    CHECK(loop_end() == 0);
    CHECK(msgs.n == 0 && msgs.resyncs == 1);
    msgs_reset();
}

/* Replies far larger than one read (a 3 MiB value, an MGET of 300 keys)
 * arrive whole, and the link's read buffer serves small ones after them. */
static void test_large_replies(void)
{
    enum { BIG = 3 * 1024 * 1024, KEYS = 300 };
    start_main_up(3000);
    char *val = xmalloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        val[i] = (char)('a' + i % 26);
    const char *sargv[] = {"SET", "lr:big", val};
    size_t slens[] = {3, 6, BIG};
    struct rec set = {0};
    CHECK(backend_cmd_argv(rec_cb, &set, 3, sargv, slens) == 0);
    CHECK(wait_until(rec_called, &set, 5000) && set.type == REDIS_REPLY_STATUS);
    /* the value itself: checked by its length and a few bytes (rec keeps 511) */
    struct rec get;
    CHECK(roundtrip(&get, "GET %s", "lr:big", NULL));
    CHECK(get.type == REDIS_REPLY_STRING && get.len == BIG && memcmp(get.str, val, 511) == 0);
    const char *margv[KEYS + 1];
    size_t mlens[KEYS + 1];
    char names[KEYS][16];
    margv[0] = "MGET";
    mlens[0] = 4;
    for (int i = 0; i < KEYS; i++) {
        struct rec r;
        snprintf(names[i], sizeof(names[i]), "lr:%d", i);
        if (i % 3) CHECK(roundtrip(&r, "SET %s %s", names[i], names[i]));
        margv[i + 1] = names[i];
        mlens[i + 1] = strlen(names[i]);
    }
    struct rec mget = {0};
    CHECK(backend_cmd_argv(rec_cb, &mget, KEYS + 1, margv, mlens) == 0);
    CHECK(wait_until(rec_called, &mget, 3000));
    CHECK(mget.type == REDIS_REPLY_ARRAY && mget.nulls == 0);
    CHECK(roundtrip(&get, "GET %s", "lr:2", NULL));
    CHECK(get.type == REDIS_REPLY_STRING && strcmp(get.str, "lr:2") == 0);
    free(val);
    CHECK(backend_up());
    CHECK(loop_end() == 0);
}

/* A fake Redis on the test's loop: it answers the handshake's PING with
 * +PONG and any later command with `answer`, counting connections. */
static struct {
    uv_tcp_t server;
    int port;
    const char *answer;
    int conns;
    uv_read_cb reader; /* what serves a connection (fake_read when NULL) */
} fake;

static void fake_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    LC_UNUSED(h);
    static char space[4096];
    *b = uv_buf_init(space, n < sizeof(space) ? (unsigned)n : sizeof(space));
}

static void fake_closed(uv_handle_t *h)
{
    free(h);
}

static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    if (n < 0) {
        uv_close((uv_handle_t *)s, fake_closed);
        return;
    }
    bool ping = n > 0 && memmem(b->base, (size_t)n, "PING", 4) != NULL;
    const char *out = ping ? "+PONG\r\n" : fake.answer;
    if (n > 0) {
        uv_buf_t w = uv_buf_init((char *)out, (unsigned)strlen(out));
        uv_try_write(s, &w, 1);
    }
}

static void fake_conn(uv_stream_t *srv, int status)
{
    if (status < 0) return;
    uv_tcp_t *c = xmalloc(sizeof(*c));
    uv_tcp_init(&loop, c);
    if (uv_accept(srv, (uv_stream_t *)c) != 0) {
        uv_close((uv_handle_t *)c, fake_closed);
        return;
    }
    fake.conns++;
    uv_read_start((uv_stream_t *)c, fake_alloc, fake.reader ? fake.reader : fake_read);
}

static void fake_listen(uv_connection_cb on_conn)
{
    uv_tcp_init(&loop, &fake.server);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    CHECK(uv_tcp_bind(&fake.server, (const struct sockaddr *)&a, 0) == 0);
    CHECK(uv_listen((uv_stream_t *)&fake.server, 8, on_conn) == 0);
    struct sockaddr_in got;
    int len = sizeof(got);
    uv_tcp_getsockname(&fake.server, (struct sockaddr *)&got, &len);
    fake.port = ntohs(got.sin_port);
}

static void fake_start(const char *answer)
{
    memset(&fake, 0, sizeof(fake));
    fake.answer = answer;
    fake_listen(fake_conn);
}

static bool fake_reconnected(const void *arg)
{
    LC_UNUSED(arg);
    return fake.conns >= 2 && backend_up();
}

/* A reply that is not RESP (or a second reply nobody asked for) fails the
 * command with NULL, counts as an error, and the link is made anew. */
static void test_protocol_error(void)
{
    static const char *const answers[] = {"?garbage\r\n", ":12x\r\n", "+OK\r\n+EXTRA\r\n"};
    for (size_t i = 0; i < LC_ARRAY_LEN(answers); i++) {
        loop_begin();
        fake_start(answers[i]);
        char url[64];
        snprintf(url, sizeof(url), "redis://127.0.0.1:%d", fake.port);
        CHECK(start_backend(url, 1000) == 0);
        CHECK(wait_until(is_up, NULL, 3000));
        uint64_t err0 = backend_errors_total();
        struct rec r = {0}, after = {0};
        CHECK(backend_cmd(rec_cb, &r, "GET %s", "k") == 0);
        if (i == 2) CHECK(backend_cmd(rec_cb, &after, "GET %s", "k2") == 0);
        CHECK(wait_until(rec_called, &r, 3000));
        if (i < 2) {
            CHECK(r.calls == 1 && r.nulls == 1);
        } else { /* +OK answers it; +EXTRA answers the second; then all is well */
            CHECK(wait_until(rec_called, &after, 3000));
            CHECK(r.nulls == 0 && strcmp(r.str, "OK") == 0 && after.nulls == 0);
            struct rec third = {0};
            CHECK(backend_cmd(rec_cb, &third, "GET %s", "k3") == 0);
            CHECK(wait_until(rec_called, &third, 3000) && third.nulls == 0);
            /* the +EXTRA of this one arrives with nothing pending */
        }
        CHECK(wait_until(fake_reconnected, NULL, 3000));
        CHECK(backend_errors_total() > err0);
        uv_close((uv_handle_t *)&fake.server, NULL);
        CHECK(loop_end() == 0);
    }
}

/* A reply and a reset that arrive together, before the loop polls: libuv
 * reports the error and stops the poll handle itself; the read that
 * follows returns the reply, not the reset. A link that hiredis parses for
 * (the subscriber, sentinels) must still see the loss at once. The
 * adapter skipped hiredis's "watch for reads" as no change, since it still
 * thought it watched them, and the link stayed deaf until something wrote
 * on it (the subscriber's probe, about a second later). */
static struct {
    int replies, lost;
} rst;

static void rst_reply(void *priv, redisReply *r)
{
    LC_UNUSED(priv);
    if (r) rst.replies++;
}

static void rst_lost(struct redis_link *link)
{
    LC_UNUSED(link);
    rst.lost++;
}

static void rst_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    if (n < 0) {
        uv_close((uv_handle_t *)s, fake_closed);
        return;
    }
    bool ping = n > 0 && memmem(b->base, (size_t)n, "PING", 4) != NULL;
    uv_buf_t w = uv_buf_init(ping ? "+PONG\r\n" : "+OK\r\n", ping ? 7 : 5);
    if (n > 0) uv_try_write(s, &w, 1);
    if (n > 0 && !ping) { /* the reply, then a reset straight behind it */
        uv_os_fd_t fd;
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        if (uv_fileno((uv_handle_t *)s, &fd) == 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        uv_close((uv_handle_t *)s, fake_closed);
    }
}

static int rst_send(struct redis_link *link, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = link_sendv(link, rst_reply, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

static bool rst_link_up(const void *arg)
{
    return ((const struct redis_link *)arg)->state == LINK_UP;
}

static bool rst_seen(const void *arg)
{
    LC_UNUSED(arg);
    return rst.replies == 1 && rst.lost == 1;
}

/* direct: the link parses its replies itself (the command link, cluster
 * nodes) rather than through hiredis, which re-arms reading after each. */
static void reset_behind_reply(bool direct)
{
    loop_begin();
    memset(&fake, 0, sizeof(fake));
    fake.reader = rst_read;
    fake_listen(fake_conn);
    memset(&rst, 0, sizeof(rst));
    char url_text[64];
    snprintf(url_text, sizeof(url_text), "redis://127.0.0.1:%d", fake.port);
    redis_url_t url;
    char err[256];
    CHECK(redis_url_parse(url_text, &url, err, sizeof(err)) == 0);
    static struct redis_link link;
    link_init(&link, "test", &loop, &url, 5000);
    link.on_lost = rst_lost;
    link.direct = direct;
    link_connect(&link);
    CHECK(wait_until(rst_link_up, &link, 3000));
    if (direct) {
        static const char get[] = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        CHECK(link_send_formatted(&link, rst_reply, NULL, get, sizeof(get) - 1) == 0);
    } else {
        CHECK(rst_send(&link, "GET %s", "k") == 0);
    }
    CHECK(wait_until(rst_seen, NULL, 500)); /* not deaf: the loss is seen at once */
    link_close(&link);
    uv_close((uv_handle_t *)&fake.server, NULL);
    CHECK(loop_end() == 0);
}

static void test_reset_behind_reply(void)
{
    reset_behind_reply(false);
}

static void test_reset_behind_reply_direct(void)
{
    reset_behind_reply(true);
}

static const struct {
    const char *name;
    void (*fn)(void);
} tests[] = {
    {"url_good", test_url_good},
    {"url_bad", test_url_bad},
    {"down_at_start", test_down_at_start},
    {"roundtrip", test_roundtrip},
    {"reply_errors", test_reply_errors},
    {"pipeline", test_pipeline},
    {"timeout", test_timeout},
    {"kill_restart", test_kill_restart},
    {"auth_select", test_auth_select},
    {"close_inflight", test_close_inflight},
    {"close_in_callback", test_close_in_callback},
    {"resolve_and_close", test_resolve_and_close},
    {"large_replies", test_large_replies},
    {"protocol_error", test_protocol_error},
    {"reset_behind_reply", test_reset_behind_reply},
    {"reset_behind_reply_direct", test_reset_behind_reply_direct},
    {"pubsub_basic", test_pubsub_basic},
    {"pubsub_external", test_pubsub_external},
    {"pubsub_kill_restart", test_pubsub_kill_restart},
    {"pubsub_stall", test_pubsub_stall},
    {"pubsub_auth", test_pubsub_auth},
    {"pubsub_close", test_pubsub_close},
};

int main(int argc, char **argv)
{
    /* hiredis writes with write(2): a dead peer must not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    if (getenv("LC_TEST_DEBUG")) log_min_level = LOG_DEBUG;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lc-test-backend-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    atexit(kill_all_redis);

    for (size_t i = 0; i < LC_ARRAY_LEN(tests); i++) {
        bool needs_main = i >= 3; /* down_at_start starts the shared Redis */
        if (argc > 1 && strcmp(argv[1], tests[i].name) != 0) continue;
        if (needs_main && main_pid == 0) {
            main_port = free_port();
            main_pid = redis_start(main_port, NULL, NULL);
        }
        fprintf(stderr, "-- %s\n", tests[i].name);
        test_failed = 0;
        tests[i].fn();
        check_end_test();
    }
    kill_all_redis();
    char cmd[128];
    if (tests_failed == 0) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    } else {
        fprintf(stderr, "redis logs kept in %s\n", tmpdir);
    }
    return check_summary("backend");
}
