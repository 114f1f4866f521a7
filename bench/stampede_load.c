/* bench/stampede_load.c: the load generator of bench/stampede.
 *
 * N clients, one connection each, read ONE key at a fixed pace (one request
 * every --interval-us per client, phases spread at random). Latency is taken
 * from the moment a request was DUE, not from when it was sent: a client
 * stuck behind a slow answer still owes the requests it should have sent
 * meanwhile, and they count as late (as wrk2 does; a closed loop would hide
 * a 50 ms stall behind the few requests that happened to be in flight).
 *
 * Modes:
 *   lc     GET key on luacached (RESP); clients split round-robin over the
 *          --target addresses.
 *   aside  what users write without luacached: GET key on Redis; on a miss,
 *          fetch the origin over HTTP, then SETEX key TTL value, answer it.
 *
 * Requests due in [warmup, warmup + duration) are measured. When the window
 * opens it resets the origin's counters (GET /_reset); when the last request
 * is answered it reads GET /_stats. The origin's /slow/ID answers carry
 * "computed_at_ms"; each distinct one seen is one origin answer that reached
 * a client. Grouping them by time (gaps over --gap-ms) gives the expiries
 * in the window, and the largest group the worst expiry.
 *
 * Prints one line of key=value pairs. Single-threaded, epoll + timerfd.
 * Linux only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 8
#define NSEC        1000000000ull
#define TAG_MAIN    0
#define TAG_ORIGIN  1
#define TAG_CONTROL 2
#define TAG_TIMER   3
#define TICK_NS     1000000ull

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "stampede_load: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NSEC + (uint64_t)ts.tv_nsec;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------- */

static struct {
    int aside;
    struct sockaddr_in targets[MAX_TARGETS];
    int ntargets;
    struct sockaddr_in origin;
    char origin_host[64];
    const char *key;
    const char *origin_path; /* e.g. /slow/hot?delay=0.05 */
    int clients;
    double duration, warmup, drain;
    uint64_t interval_ns;
    int ttl;
    double delay_ms;
    double gap_ms;
    const char *dump; /* file: one line per measured request, and the answers seen */
} opt = {.key = "hot:key",
         .origin_path = "/slow/key?delay=0.05",
         .clients = 200,
         .duration = 30,
         .warmup = 2,
         .drain = 5,
         .interval_ns = 10000000ull,
         .ttl = 1,
         .delay_ms = 50,
         .gap_ms = 300};

static void parse_addr(const char *s, struct sockaddr_in *sa, char *host, size_t hostlen)
{
    const char *colon = strrchr(s, ':');
    if (!colon) die("address %s: want host:port", s);
    char h[64];
    size_t n = (size_t)(colon - s);
    if (n == 0 || n >= sizeof(h)) die("address %s: bad host", s);
    memcpy(h, s, n);
    h[n] = 0;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, h, &sa->sin_addr) != 1) die("address %s: want a numeric IPv4 host", s);
    if (host) snprintf(host, hostlen, "%s", s);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: stampede_load [--aside] --target HOST:PORT [--target ...] --origin HOST:PORT\n"
            "         [--key K] [--origin-path P] [--clients N] [--duration S] [--warmup S]\n"
            "         [--interval-us US] [--ttl S] [--delay-ms MS] [--gap-ms MS] [--drain S]\n"
            "         [--dump FILE]\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--aside") == 0) {
            opt.aside = 1;
            continue;
        }
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (strcmp(a, "--target") == 0) {
            if (opt.ntargets == MAX_TARGETS) die("too many targets");
            parse_addr(v, &opt.targets[opt.ntargets++], NULL, 0);
        } else if (strcmp(a, "--origin") == 0) {
            parse_addr(v, &opt.origin, opt.origin_host, sizeof(opt.origin_host));
        } else if (strcmp(a, "--key") == 0)
            opt.key = v;
        else if (strcmp(a, "--origin-path") == 0)
            opt.origin_path = v;
        else if (strcmp(a, "--clients") == 0)
            opt.clients = atoi(v);
        else if (strcmp(a, "--duration") == 0)
            opt.duration = atof(v);
        else if (strcmp(a, "--warmup") == 0)
            opt.warmup = atof(v);
        else if (strcmp(a, "--drain") == 0)
            opt.drain = atof(v);
        else if (strcmp(a, "--interval-us") == 0)
            opt.interval_ns = (uint64_t)atoll(v) * 1000ull;
        else if (strcmp(a, "--ttl") == 0)
            opt.ttl = atoi(v);
        else if (strcmp(a, "--delay-ms") == 0)
            opt.delay_ms = atof(v);
        else if (strcmp(a, "--gap-ms") == 0)
            opt.gap_ms = atof(v);
        else if (strcmp(a, "--dump") == 0)
            opt.dump = v;
        else
            usage();
    }
    if (opt.ntargets == 0 || opt.origin.sin_port == 0 || opt.clients <= 0 || opt.duration <= 0 ||
        opt.interval_ns == 0)
        usage();
}

/* ---------------------------------------------------------------------------
 * Buffers, sockets
 * ------------------------------------------------------------------------- */

typedef struct buf {
    char *d;
    size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->d = realloc(b->d, cap);
    if (!b->d) die("out of memory");
    b->cap = cap;
}

static void buf_add(buf_t *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->d + b->len, p, n);
    b->len += n;
    b->d[b->len] = 0;
}

static void buf_consume(buf_t *b, size_t n)
{
    memmove(b->d, b->d + n, b->len - n);
    b->len -= n;
    if (b->d) b->d[b->len] = 0;
}

static int epfd;

static uint64_t tag_of(int idx, int kind)
{
    return ((uint64_t)(uint32_t)idx << 2) | (uint64_t)kind;
}

static int connect_nb(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void ep_add(int fd, uint32_t events, uint64_t tag)
{
    struct epoll_event ev = {.events = events, .data.u64 = tag};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl add: %s", strerror(errno));
}

static void ep_mod(int fd, uint32_t events, uint64_t tag)
{
    struct epoll_event ev = {.events = events, .data.u64 = tag};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) != 0) die("epoll_ctl mod: %s", strerror(errno));
}

/* Write what we can; the rest waits for EPOLLOUT. 0 ok, -1 broken. */
static int flush_out(int fd, buf_t *out)
{
    while (out->len) {
        ssize_t n = write(fd, out->d, out->len);
        if (n > 0) {
            buf_consume(out, (size_t)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Read all that is there. 1 read something, 0 nothing, -1 EOF, -2 error. */
static int fill_in(int fd, buf_t *in)
{
    int got = 0;
    for (;;) {
        buf_reserve(in, 16384);
        ssize_t n = read(fd, in->d + in->len, in->cap - in->len - 1);
        if (n > 0) {
            in->len += (size_t)n;
            in->d[in->len] = 0;
            got = 1;
        } else if (n == 0) {
            return -1;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return got;
        } else {
            return -2;
        }
    }
}

/* ---------------------------------------------------------------------------
 * RESP replies
 * ------------------------------------------------------------------------- */

enum { R_BULK, R_NIL, R_ERROR, R_STATUS, R_INT, R_OTHER };

/* Bytes of one complete reply at the start of b, 0 if incomplete. */
static size_t resp_parse(const buf_t *b, int *type, const char **pay, size_t *paylen)
{
    if (b->len < 3) return 0;
    char *nl = memchr(b->d, '\n', b->len);
    if (!nl) return 0;
    size_t line = (size_t)(nl - b->d) + 1; /* through \n */
    *pay = b->d + 1;
    *paylen = line >= 3 ? line - 3 : 0;
    switch (b->d[0]) {
    case '+':
        *type = R_STATUS;
        return line;
    case '-':
        *type = R_ERROR;
        return line;
    case ':':
        *type = R_INT;
        return line;
    case '$': {
        long long n = atoll(b->d + 1);
        if (n < 0) {
            *type = R_NIL;
            return line;
        }
        if (b->len < line + (size_t)n + 2) return 0;
        *type = R_BULK;
        *pay = b->d + line;
        *paylen = (size_t)n;
        return line + (size_t)n + 2;
    }
    default:
        *type = R_OTHER;
        return line;
    }
}

static void resp_cmd(buf_t *out, int argc, const char **argv, const size_t *lens)
{
    char hdr[64];
    int n = snprintf(hdr, sizeof(hdr), "*%d\r\n", argc);
    buf_add(out, hdr, (size_t)n);
    for (int i = 0; i < argc; i++) {
        n = snprintf(hdr, sizeof(hdr), "$%zu\r\n", lens[i]);
        buf_add(out, hdr, (size_t)n);
        buf_add(out, argv[i], lens[i]);
        buf_add(out, "\r\n", 2);
    }
}

/* ---------------------------------------------------------------------------
 * HTTP/1.1 one request per connection (Connection: close)
 * ------------------------------------------------------------------------- */

typedef struct http_op {
    int fd;
    int connected;
    buf_t out, in;
} http_op_t;

static int http_start(http_op_t *h, const char *method, const char *path, uint64_t tag)
{
    h->fd = connect_nb(&opt.origin);
    if (h->fd < 0) return -1;
    h->connected = 0;
    h->in.len = h->out.len = 0;
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                     method, path, opt.origin_host);
    buf_add(&h->out, req, (size_t)n);
    ep_add(h->fd, EPOLLOUT, tag);
    return 0;
}

/* Drive one event. 0 in progress, 1 done (status/body parsed), -1 failed. */
static int http_event(http_op_t *h, uint32_t ev, uint64_t tag, int *status, const char **body,
                      size_t *bodylen)
{
    if (h->out.len) {
        if (ev & (EPOLLERR | EPOLLHUP)) return -1;
        h->connected = 1;
        if (flush_out(h->fd, &h->out) != 0) return -1;
        if (h->out.len == 0) ep_mod(h->fd, EPOLLIN, tag);
        return 0;
    }
    int r = fill_in(h->fd, &h->in);
    if (r == -2) return -1;
    /* Content-Length tells when we are done; EOF ends it anyway. */
    char *sep = strstr(h->in.d ? h->in.d : "", "\r\n\r\n");
    if (sep) {
        char *cl = strcasestr(h->in.d, "\r\nContent-Length:");
        size_t hdrlen = (size_t)(sep - h->in.d) + 4;
        if (cl && cl < sep) {
            size_t want = (size_t)atoll(cl + 17);
            if (h->in.len >= hdrlen + want) r = -1;
        }
        if (r == -1) {
            *status = atoi(h->in.d + 9);
            *body = h->in.d + hdrlen;
            *bodylen = h->in.len - hdrlen;
            return 1;
        }
    }
    return r == -1 ? -1 : 0;
}

static void http_close(http_op_t *h)
{
    if (h->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, h->fd, NULL);
        close(h->fd);
    }
    h->fd = -1;
}

/* ---------------------------------------------------------------------------
 * Seen values (origin answers), latencies
 * ------------------------------------------------------------------------- */

#define SEEN_CAP (1u << 18)
static int64_t *seen; /* 0 = empty */
static size_t nseen;
static uint64_t values_unparsed;

static void seen_add(const char *v, size_t len)
{
    static const char needle[] = "\"computed_at_ms\":";
    const char *p = memmem(v, len, needle, sizeof(needle) - 1);
    if (!p) {
        values_unparsed++;
        return;
    }
    p += sizeof(needle) - 1;
    while (p < v + len && *p == ' ')
        p++;
    int64_t x = 0;
    while (p < v + len && *p >= '0' && *p <= '9')
        x = x * 10 + (*p++ - '0');
    if (x <= 0 || nseen >= SEEN_CAP / 2) return;
    uint64_t h = (uint64_t)x * 0x9E3779B97F4A7C15ull;
    for (size_t i = (size_t)(h >> 46) & (SEEN_CAP - 1);; i = (i + 1) & (SEEN_CAP - 1)) {
        if (seen[i] == x) return;
        if (seen[i] == 0) {
            seen[i] = x;
            nseen++;
            return;
        }
    }
}

static uint64_t *lat;     /* ns, requests due inside the window */
static uint64_t *lat_due; /* --dump only: when each was due (mono ns) */
static size_t nlat, latcap;

static void lat_add(uint64_t ns, uint64_t due)
{
    if (nlat == latcap) {
        latcap = latcap ? latcap * 2 : 1 << 16;
        lat = realloc(lat, latcap * sizeof(*lat));
        if (!lat) die("out of memory");
        if (opt.dump) {
            lat_due = realloc(lat_due, latcap * sizeof(*lat_due));
            if (!lat_due) die("out of memory");
        }
    }
    if (opt.dump) lat_due[nlat] = due;
    lat[nlat++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(double q)
{
    if (!nlat) return 0;
    size_t i = (size_t)(q * (double)(nlat - 1) + 0.5);
    return (double)lat[i] / 1e6;
}

/* ---------------------------------------------------------------------------
 * Clients
 * ------------------------------------------------------------------------- */

enum { C_IDLE, C_GET, C_ORIGIN, C_SET, C_DEAD };

typedef struct client {
    int idx;
    int fd;
    int state;
    uint64_t due;  /* when the request in flight was due */
    uint64_t next; /* when the next one is due */
    buf_t in, out;
    http_op_t http;
    char *value; /* aside: the origin's body being stored */
    size_t vlen;
    size_t heap_pos;
} client_t;

static client_t *cl;
static uint64_t t_start, t_end; /* measurement window, mono ns */
static int64_t wall_start, wall_end;
static int stopping;
static size_t active; /* clients with a request in flight */

static struct {
    uint64_t sent, done, measured, errors, nils, hits, misses, origin_fails, conn_fails;
    char first_error[200];
} st;

/* Min-heap of idle clients by next due time. */
static client_t **heap;
static size_t nheap;

static void heap_swap(size_t a, size_t b)
{
    client_t *t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
    heap[a]->heap_pos = a;
    heap[b]->heap_pos = b;
}

static void heap_push(client_t *c)
{
    size_t i = nheap++;
    heap[i] = c;
    c->heap_pos = i;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (heap[p]->next <= heap[i]->next) break;
        heap_swap(p, i);
        i = p;
    }
}

static client_t *heap_pop(void)
{
    client_t *top = heap[0];
    heap[0] = heap[--nheap];
    heap[0]->heap_pos = 0;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < nheap && heap[l]->next < heap[m]->next) m = l;
        if (r < nheap && heap[r]->next < heap[m]->next) m = r;
        if (m == i) break;
        heap_swap(i, m);
        i = m;
    }
    return top;
}

static void note_error(const char *what, const char *msg, size_t len)
{
    st.errors++;
    if (!st.first_error[0])
        snprintf(st.first_error, sizeof(st.first_error), "%s: %.*s", what,
                 (int)(len > 150 ? 150 : len), msg);
}

static void client_send(client_t *c)
{
    if (flush_out(c->fd, &c->out) != 0) {
        note_error("write", strerror(errno), strlen(strerror(errno)));
        c->state = C_DEAD;
        return;
    }
    if (c->out.len) ep_mod(c->fd, EPOLLIN | EPOLLOUT, tag_of(c->idx, TAG_MAIN));
}

static void request_start(client_t *c)
{
    c->due = c->next;
    c->state = C_GET;
    active++;
    st.sent++;
    const char *argv[2] = {"GET", opt.key};
    size_t lens[2] = {3, strlen(opt.key)};
    resp_cmd(&c->out, 2, argv, lens);
    client_send(c);
}

static void request_done(client_t *c, uint64_t now)
{
    st.done++;
    active--;
    if (c->due >= t_start && c->due < t_end) {
        lat_add(now - c->due, c->due);
        st.measured++;
    }
    c->state = C_IDLE;
    c->next = c->due + opt.interval_ns;
    if (c->next < t_end && !stopping) heap_push(c);
}

static void origin_start(client_t *c)
{
    c->state = C_ORIGIN;
    if (http_start(&c->http, "GET", opt.origin_path, tag_of(c->idx, TAG_ORIGIN)) != 0) {
        st.origin_fails++;
        note_error("origin connect", strerror(errno), strlen(strerror(errno)));
        request_done(c, mono_ns());
    }
}

static void origin_event(client_t *c, uint32_t ev)
{
    int status = 0;
    const char *body = NULL;
    size_t blen = 0;
    int r = http_event(&c->http, ev, tag_of(c->idx, TAG_ORIGIN), &status, &body, &blen);
    if (r == 0) return;
    if (r < 0 || status != 200) {
        st.origin_fails++;
        note_error("origin", r < 0 ? "transport" : "status", r < 0 ? 9 : 6);
        http_close(&c->http);
        request_done(c, mono_ns());
        return;
    }
    /* Answer the client with the fetched value once it is stored, as a
     * cache-aside read does: fetch, SETEX, return. */
    free(c->value);
    c->value = malloc(blen + 1);
    memcpy(c->value, body, blen);
    c->vlen = blen;
    http_close(&c->http);
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", opt.ttl);
    const char *argv[4] = {"SETEX", opt.key, ttl, c->value};
    size_t lens[4] = {5, strlen(opt.key), strlen(ttl), blen};
    resp_cmd(&c->out, 4, argv, lens);
    c->state = C_SET;
    client_send(c);
}

static void main_event(client_t *c, uint32_t ev)
{
    uint64_t tag = tag_of(c->idx, TAG_MAIN);
    if ((ev & EPOLLOUT) && c->out.len) {
        if (flush_out(c->fd, &c->out) != 0) {
            c->state = C_DEAD;
            return;
        }
        if (!c->out.len) ep_mod(c->fd, EPOLLIN, tag);
    }
    if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) return;
    int r = fill_in(c->fd, &c->in);
    for (;;) {
        int type;
        const char *pay;
        size_t plen;
        size_t used = resp_parse(&c->in, &type, &pay, &plen);
        if (!used) break;
        uint64_t now = mono_ns();
        if (c->state == C_GET) {
            if (type == R_BULK) {
                if (opt.aside) st.hits++;
                seen_add(pay, plen);
                request_done(c, now);
            } else if (type == R_NIL && opt.aside) {
                st.misses++;
                origin_start(c);
            } else if (type == R_NIL) {
                st.nils++;
                note_error("GET", "nil", 3);
                request_done(c, now);
            } else {
                note_error("GET", pay, plen);
                request_done(c, now);
            }
        } else if (c->state == C_SET) {
            if (type != R_STATUS) note_error("SETEX", pay, plen);
            seen_add(c->value, c->vlen);
            request_done(c, now);
        } else {
            note_error("unexpected reply", pay, plen);
        }
        buf_consume(&c->in, used);
    }
    if (r < 0) {
        note_error("connection", r == -1 ? "closed by server" : "read error", 16);
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        if (c->state != C_IDLE) active--;
        c->state = C_DEAD;
        st.conn_fails++;
    }
}

/* ---------------------------------------------------------------------------
 * Origin control: reset counters when the window opens, read them at the end
 * ------------------------------------------------------------------------- */

static http_op_t ctl = {.fd = -1};
static int ctl_state; /* 0 none, 1 reset in flight, 2 reset done, -1 reset failed */

static void control_event(uint32_t ev)
{
    int status;
    const char *body;
    size_t blen;
    int r = http_event(&ctl, ev, tag_of(0, TAG_CONTROL), &status, &body, &blen);
    if (r == 0) return;
    ctl_state = (r == 1 && status == 200) ? 2 : -1;
    http_close(&ctl);
}

/* Blocking GET /_stats once the load is over. */
static int origin_stats(long long *total, long long *max_inflight)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&opt.origin, sizeof(opt.origin)) != 0) return -1;
    char req[256];
    int n =
        snprintf(req, sizeof(req), "GET /_stats HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                 opt.origin_host);
    if (write(fd, req, (size_t)n) != n) return -1;
    buf_t in = {0};
    for (;;) {
        buf_reserve(&in, 4096);
        ssize_t k = read(fd, in.d + in.len, in.cap - in.len - 1);
        if (k <= 0) break;
        in.len += (size_t)k;
        in.d[in.len] = 0;
    }
    close(fd);
    if (!in.d) return -1;
    char *t = strstr(in.d, "\"total\":");
    char *m = strstr(in.d, "\"max_inflight\":");
    *total = t ? atoll(t + 8) : -1;
    *max_inflight = 0;
    if (m) { /* {"/path":N, ...}: the largest N */
        char *p = strchr(m, '{'), *end = p ? strchr(p, '}') : NULL;
        for (char *q = p; q && end && (q = strstr(q, "\":")) && q < end; q += 2) {
            long long v = atoll(q + 2);
            if (v > *max_inflight) *max_inflight = v;
        }
    }
    free(in.d);
    return t ? 0 : -1;
}

/* ---------------------------------------------------------------------------
 * Main loop
 * ------------------------------------------------------------------------- */

static int tfd;

static void arm_timer(uint64_t at)
{
    static uint64_t armed;
    if (at == armed && at > mono_ns()) return; /* still set (one wake-up per tick) */
    armed = at;
    struct itimerspec its = {0};
    if (at == 0) at = 1; /* 0 would disarm */
    its.it_value.tv_sec = (time_t)(at / NSEC);
    its.it_value.tv_nsec = (long)(at % NSEC);
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* timers fire on time, not 50 us late */
    epfd = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epfd < 0 || tfd < 0) die("epoll/timerfd: %s", strerror(errno));
    ep_add(tfd, EPOLLIN, tag_of(0, TAG_TIMER));
    seen = calloc(SEEN_CAP, sizeof(*seen));
    cl = calloc((size_t)opt.clients, sizeof(*cl));
    heap = calloc((size_t)opt.clients, sizeof(*heap));
    srand48((long)mono_ns());

    /* Connect everyone first (blocking connect is fine before the clock runs). */
    for (int i = 0; i < opt.clients; i++) {
        client_t *c = &cl[i];
        c->idx = i;
        c->http.fd = -1;
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0) die("socket: %s", strerror(errno));
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        const struct sockaddr_in *sa = &opt.targets[i % opt.ntargets];
        if (connect(c->fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0)
            die("connect to target %d: %s", i % opt.ntargets, strerror(errno));
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        ep_add(c->fd, EPOLLIN, tag_of(i, TAG_MAIN));
    }

    uint64_t t0 = mono_ns();
    t_start = t0 + (uint64_t)(opt.warmup * 1e9);
    t_end = t_start + (uint64_t)(opt.duration * 1e9);
    uint64_t hard_end = t_end + (uint64_t)(opt.drain * 1e9);
    int64_t wall0 = wall_ms();
    wall_start = wall0 + (int64_t)((t_start - t0) / 1000000ull);
    wall_end = wall0 + (int64_t)((t_end - t0) / 1000000ull);
    /* Phases on a 1 ms grid: the clients due in one tick share one timer
     * wake-up (20,000 wake-ups a second would cost the generator more CPU
     * than the server under test), and nobody is sent late by the tick. */
    uint64_t slots = opt.interval_ns / TICK_NS ? opt.interval_ns / TICK_NS : 1;
    for (int i = 0; i < opt.clients; i++) {
        cl[i].next = t0 + (uint64_t)(drand48() * (double)slots) * TICK_NS;
        heap_push(&cl[i]);
    }

    struct epoll_event evs[256];
    int timed_out = 0;
    for (;;) {
        uint64_t now = mono_ns();
        if (ctl_state == 0 && now >= t_start) {
            ctl_state = 1;
            if (http_start(&ctl, "GET", "/_reset", tag_of(0, TAG_CONTROL)) != 0) ctl_state = -1;
        }
        while (nheap && heap[0]->next <= now) {
            client_t *c = heap_pop();
            if (c->state == C_IDLE) request_start(c);
        }
        if (now >= t_end && !stopping) stopping = 1;
        if (stopping && active == 0 && ctl_state != 1) break;
        if (now >= hard_end) {
            timed_out = 1;
            break;
        }
        uint64_t wake = nheap ? heap[0]->next : (stopping ? hard_end : t_end);
        if (ctl_state == 0 && t_start < wake) wake = t_start;
        if (!stopping && t_end < wake) wake = t_end;
        arm_timer(wake);
        int n = epoll_wait(epfd, evs, 256, 1000);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            int kind = (int)(tag & 3), idx = (int)(tag >> 2);
            if (kind == TAG_TIMER) {
                uint64_t x;
                while (read(tfd, &x, sizeof(x)) > 0) {
                }
            } else if (kind == TAG_CONTROL) {
                control_event(evs[i].events);
            } else if (kind == TAG_ORIGIN) {
                if (cl[idx].state == C_ORIGIN) origin_event(&cl[idx], evs[i].events);
            } else if (cl[idx].state != C_DEAD) {
                main_event(&cl[idx], evs[i].events);
            }
        }
    }

    /* Results. */
    if (opt.dump) { /* before sorting: "r <ms due after window start> <latency ms>" */
        FILE *f = fopen(opt.dump, "w");
        if (!f) die("%s: %s", opt.dump, strerror(errno));
        for (size_t i = 0; i < nlat; i++)
            fprintf(f, "r %.3f %.3f\n", (double)(lat_due[i] - t_start) / 1e6, (double)lat[i] / 1e6);
        for (size_t i = 0; i < SEEN_CAP; i++) /* "v <ms the origin answered, after window start>" */
            if (seen[i]) fprintf(f, "v %lld\n", (long long)(seen[i] - wall_start));
        fclose(f);
    }
    qsort(lat, nlat, sizeof(*lat), cmp_u64);
    long long origin_total = -1, origin_maxconc = -1;
    if (ctl_state != 2 || origin_stats(&origin_total, &origin_maxconc) != 0) origin_total = -1;

    /* Expiries: the origin answers seen, by when the origin got the request
     * (computed_at_ms is stamped after the delay), grouped by time. */
    int64_t *vals = malloc((nseen + 1) * sizeof(*vals));
    size_t nv = 0;
    for (size_t i = 0; i < SEEN_CAP; i++) {
        if (!seen[i]) continue;
        int64_t arrived = seen[i] - (int64_t)opt.delay_ms;
        if (arrived >= wall_start && arrived < wall_end) vals[nv++] = arrived;
    }
    qsort(vals, nv, sizeof(*vals), cmp_i64);
    size_t episodes = 0, worst = 0, cur = 0;
    for (size_t i = 0; i < nv; i++) {
        if (i == 0 || (double)(vals[i] - vals[i - 1]) > opt.gap_ms) {
            episodes++;
            cur = 0;
        }
        if (++cur > worst) worst = cur;
    }
    free(vals);

    double secs = opt.duration;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("measured=%llu sent=%llu rps=%.0f errors=%llu nils=%llu conn_fails=%llu "
           "origin_fails=%llu hits=%llu misses=%llu unfinished=%zu "
           "p50=%.3f p90=%.3f p99=%.3f p999=%.3f max=%.3f "
           "origin_reqs=%lld origin_max_conc=%lld expiries=%zu worst_expiry=%zu "
           "values_seen=%zu values_unparsed=%llu timed_out=%d load_cpu_s=%.2f",
           (unsigned long long)st.measured, (unsigned long long)st.sent, (double)st.measured / secs,
           (unsigned long long)st.errors, (unsigned long long)st.nils,
           (unsigned long long)st.conn_fails, (unsigned long long)st.origin_fails,
           (unsigned long long)st.hits, (unsigned long long)st.misses, active, pct_ms(0.50),
           pct_ms(0.90), pct_ms(0.99), pct_ms(0.999), nlat ? (double)lat[nlat - 1] / 1e6 : 0.0,
           origin_total, origin_maxconc, episodes, worst, nseen,
           (unsigned long long)values_unparsed, timed_out, cpu_s);
    if (st.first_error[0]) {
        printf(" first_error=");
        for (const char *p = st.first_error; *p; p++)
            putchar(*p == ' ' || *p == '\r' || *p == '\n' ? '_' : *p);
    }
    printf("\n");
    return 0;
}
