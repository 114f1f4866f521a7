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
#include "log.h"
#include "util.h"

/* ------------------------------------------------------------------------ */
/* Checks                                                                   */
/* ------------------------------------------------------------------------ */

static bool cur_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                      \
            cur_failed = true;                                                                     \
        }                                                                                          \
    } while (0)

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
        backend_url_t u;
        char err[256] = "";
        int rc = backend_parse_url(cases[i].url, &u, err, sizeof(err));
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
        {"rediss://h", "TLS"},
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
        backend_url_t u;
        char err[256] = "";
        int rc = backend_parse_url(cases[i].url, &u, err, sizeof(err));
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
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);
    loop_begin();
    CHECK(start_backend(url, 1000) == 0);
    CHECK(wait_until(is_up, NULL, 3000));
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
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);
    loop_begin();
    CHECK(start_backend(url, 1000) == 0);
    CHECK(wait_until(is_up, NULL, 3000));
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
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);
    loop_begin();
    CHECK(start_backend(url, 1000) == 0);
    CHECK(wait_until(is_up, NULL, 3000));
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
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);
    loop_begin();
    CHECK(start_backend(url, 300) == 0);
    CHECK(wait_until(is_up, NULL, 3000));
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
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);
    loop_begin();
    CHECK(start_backend(url, 5000) == 0);
    CHECK(wait_until(is_up, NULL, 3000));
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
    loop_begin();
    CHECK(start_backend(url, 1000) == 0);
    CHECK(wait_until(is_up, NULL, 3000));
    CHECK(roundtrip(&r, "CLIENT LIST", NULL, NULL));
    CHECK(r.type == REDIS_REPLY_STRING && strstr(r.str, " db=2 ") != NULL);
    CHECK(roundtrip(&r, "SET %s %s", "as:k", "in-db-2"));
    CHECK(r.type == REDIS_REPLY_STATUS);
    CHECK(loop_end() == 0);

    /* TCP, AUTH user password (Redis 6+: the "default" user), SELECT 2 */
    snprintf(url, sizeof(url), "redis://default:s3cret@127.0.0.1:%d/2", port);
    loop_begin();
    CHECK(start_backend(url, 1000) == 0);
    CHECK(wait_until(is_up, NULL, 3000));
    CHECK(roundtrip(&r, "GET %s", "as:k", NULL));
    CHECK(r.type == REDIS_REPLY_STRING && strcmp(r.str, "in-db-2") == 0);
    CHECK(loop_end() == 0);

    /* unix:/// form, escaped password, db 0: the key is not there */
    snprintf(url, sizeof(url), "unix://%s?password=s3c%%72et", sock);
    loop_begin();
    CHECK(start_backend(url, 1000) == 0);
    CHECK(wait_until(is_up, NULL, 3000));
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
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);
    loop_begin();
    CHECK(start_backend(url, 5000) == 0);
    CHECK(wait_until(is_up, NULL, 3000));
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
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", main_port);
    loop_begin();
    CHECK(start_backend(url, 5000) == 0);
    CHECK(wait_until(is_up, NULL, 3000));
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

    int passed = 0, failed = 0;
    for (size_t i = 0; i < LC_ARRAY_LEN(tests); i++) {
        bool needs_main = i >= 3; /* down_at_start starts the shared Redis */
        if (argc > 1 && strcmp(argv[1], tests[i].name) != 0) continue;
        if (needs_main && main_pid == 0) {
            main_port = free_port();
            main_pid = redis_start(main_port, NULL, NULL);
        }
        fprintf(stderr, "-- %s\n", tests[i].name);
        cur_failed = false;
        tests[i].fn();
        if (cur_failed)
            failed++;
        else
            passed++;
    }
    kill_all_redis();
    char cmd[128];
    if (failed == 0) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    } else {
        fprintf(stderr, "redis logs kept in %s\n", tmpdir);
    }
    printf("backend: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
