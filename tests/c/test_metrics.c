/* test_metrics.c: unit tests of the Prometheus renderer (src/metrics.c) and
 * of the HTTP endpoint (src/metrics_http.c) on a loop of its own.
 *
 * Renderer: exact sample lines for fake namespaces with known counters,
 * histogram cumulation, label escaping, number formatting, and a validator
 * of the whole text against the 0.0.4 exposition grammar (HELP and TYPE once
 * per family, before its samples; samples only of declared families).
 * Endpoint: real TCP clients on the same loop; each test ends with every
 * handle closed and uv_loop_close() == 0. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "buf.h"
#include "config.h"
#include "metrics.h"
#include "metrics_http.h"
#include "metrics_http_req.h"
#include "stats.h"
#include "util.h"
#include "check.h"

/* The text must contain want (whole lines: want starts after a newline or
 * at the start, and ends with one). */
#define CHECK_LINES(text, want)                                                                    \
    do {                                                                                           \
        if (!has_lines((text), (want))) {                                                          \
            fprintf(stderr, "%s:%d: lines not found:\n%s--- in ---\n%s\n", __FILE__, __LINE__,     \
                    (want), (text));                                                               \
            test_failed = 1;                                                                       \
        }                                                                                          \
    } while (0)

static bool has_lines(const char *text, const char *want)
{
    size_t wl = strlen(want);
    for (const char *p = text; (p = strstr(p, want)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && want[wl - 1] == '\n') return true;
    return false;
}

static size_t count_occurrences(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* ------------------------------------------------------------------------
 * Exposition grammar (text format 0.0.4), enough to catch our mistakes
 * ---------------------------------------------------------------------- */

#define MAX_FAMILIES 64

typedef struct family {
    char name[128];
    char type[16];
} family_t;

static bool is_name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* Parse {k="v",...}; returns the position after '}' or NULL. */
static const char *parse_labels(const char *p, const char *end)
{
    if (p >= end || *p != '{') return p;
    p++;
    for (;;) {
        if (p < end && *p == '}') return p + 1;
        if (p >= end || !is_name_char(*p, true)) return NULL;
        while (p < end && is_name_char(*p, false))
            p++;
        if (p + 1 >= end || p[0] != '=' || p[1] != '"') return NULL;
        p += 2;
        while (p < end && *p != '"') {
            if (*p == '\n') return NULL;
            if (*p == '\\') {
                if (p + 1 >= end || (p[1] != '\\' && p[1] != '"' && p[1] != 'n')) return NULL;
                p++;
            }
            p++;
        }
        if (p >= end) return NULL;
        p++; /* closing quote */
        if (p < end && *p == ',')
            p++;
        else if (p >= end || *p != '}')
            return NULL;
    }
}

/* Checks the whole text; fills fams. Returns NULL or the reason it is bad. */
static const char *validate(const char *text, family_t *fams, size_t *nfams)
{
    static char why[256];
    size_t n = 0;
    const char *cur = NULL; /* family of the last TYPE line */
    const char *cur_type = NULL;
    const char *p = text;
    if (!*p) return "empty";
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (!nl) return "last line has no newline";
        if (strncmp(p, "# HELP ", 7) == 0) {
            const char *name = p + 7, *sp = memchr(name, ' ', (size_t)(nl - name));
            if (!sp) return "HELP without text";
            size_t len = (size_t)(sp - name);
            if (n == MAX_FAMILIES || len >= sizeof(fams[0].name)) return "too many families";
            for (size_t i = 0; i < n; i++)
                if (strlen(fams[i].name) == len && memcmp(fams[i].name, name, len) == 0) {
                    snprintf(why, sizeof(why), "family %.*s declared twice", (int)len, name);
                    return why;
                }
            memcpy(fams[n].name, name, len);
            fams[n].name[len] = '\0';
            /* TYPE must follow at once */
            const char *t = nl + 1;
            char want[160];
            snprintf(want, sizeof(want), "# TYPE %s ", fams[n].name);
            if (strncmp(t, want, strlen(want)) != 0) return "HELP not followed by its TYPE";
            const char *ty = t + strlen(want), *tnl = strchr(t, '\n');
            if (!tnl || (size_t)(tnl - ty) >= sizeof(fams[n].type)) return "bad TYPE line";
            memcpy(fams[n].type, ty, (size_t)(tnl - ty));
            fams[n].type[tnl - ty] = '\0';
            if (strcmp(fams[n].type, "counter") && strcmp(fams[n].type, "gauge") &&
                strcmp(fams[n].type, "histogram"))
                return "unknown TYPE";
            cur = fams[n].name;
            cur_type = fams[n].type;
            n++;
            p = tnl + 1;
            continue;
        }
        if (*p == '#') return "comment other than HELP/TYPE";
        /* a sample: name[{labels}] value */
        const char *q = p;
        if (!is_name_char(*q, true)) return "sample does not start with a name";
        while (q < nl && is_name_char(*q, false))
            q++;
        size_t nlen = (size_t)(q - p);
        if (!cur) return "sample before any TYPE";
        size_t clen = strlen(cur);
        bool ok = nlen == clen && memcmp(p, cur, clen) == 0;
        if (!ok && strcmp(cur_type, "histogram") == 0 && nlen > clen && memcmp(p, cur, clen) == 0) {
            const char *suf = p + clen;
            size_t sl = nlen - clen;
            ok = (sl == 7 && memcmp(suf, "_bucket", 7) == 0) ||
                 (sl == 4 && memcmp(suf, "_sum", 4) == 0) ||
                 (sl == 6 && memcmp(suf, "_count", 6) == 0);
        }
        if (!ok) {
            snprintf(why, sizeof(why), "sample %.*s outside its family (%s)", (int)nlen, p, cur);
            return why;
        }
        q = parse_labels(q, nl);
        if (!q || q >= nl || *q != ' ') return "bad labels";
        q++;
        char *endp;
        char val[64];
        size_t vl = (size_t)(nl - q);
        if (vl == 0 || vl >= sizeof(val)) return "bad value";
        memcpy(val, q, vl);
        val[vl] = '\0';
        if (strcmp(val, "+Inf") && strcmp(val, "-Inf") && strcmp(val, "NaN")) {
            strtod(val, &endp);
            if (*endp) return "value is not a number";
        }
        p = nl + 1;
    }
    *nfams = n;
    return NULL;
}

/* ------------------------------------------------------------------------
 * Renderer
 * ---------------------------------------------------------------------- */

static metrics_globals_t sample_globals(void)
{
    metrics_globals_t g = {
        .version = "9.8.7",
        .backend_up = true,
        .backend_errors_total = 3,
        .backend_outages_total = 1,
        .connected_clients = 5,
        .connections_total = 40,
        .commands_total = 1234,
        .l1_entries = 17,
        .l1_bytes = 4096,
        .fills_in_flight = 2,
        .fetches_in_flight = 1,
        .uptime_seconds = 12.5,
    };
    return g;
}

static void test_format_double(void)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0, "0"},
        {0.005, "0.005"},
        {0.01, "0.01"},
        {0.025, "0.025"},
        {1, "1"},
        {2.5, "2.5"},
        {10, "10"},
        {30, "30"},
        {12.5, "12.5"},
        {1e6, "1e+06"},
        {6.3274e-05, "6.3274e-05"},
        {0.1 + 0.2, "0.30000000000000004"},
        {-1.5, "-1.5"},
        {123456.789, "123456.789"},
    };
    char got[64];
    for (size_t i = 0; i < LC_ARRAY_LEN(cases); i++) {
        metrics_format_double(got, sizeof(got), cases[i].v);
        if (strcmp(got, cases[i].want) != 0) {
            fprintf(stderr, "  format %.17g: got %s, wanted %s\n", cases[i].v, got, cases[i].want);
            test_failed = 1;
        }
    }
    metrics_format_double(got, sizeof(got), 1.0 / 0.0);
    CHECK(strcmp(got, "+Inf") == 0);
    metrics_format_double(got, sizeof(got), -1.0 / 0.0);
    CHECK(strcmp(got, "-Inf") == 0);
    metrics_format_double(got, sizeof(got), 0.0 / 0.0);
    CHECK(strcmp(got, "NaN") == 0);
}

static void test_escape_label(void)
{
    buf_t b = {0};
    metrics_escape_label(&b, "plain-ns_1.x");
    buf_append(&b, "", 1);
    CHECK(strcmp(b.data, "plain-ns_1.x") == 0);
    buf_reset(&b);
    metrics_escape_label(&b, "a\"b\\c\nd\\");
    buf_append(&b, "", 1);
    CHECK(strcmp(b.data, "a\\\"b\\\\c\\nd\\\\") == 0);
    buf_reset(&b);
    metrics_escape_label(&b, "");
    CHECK(b.len == 0);
    buf_free(&b);
}

static void test_counters_exact(void)
{
    ns_stats_t a = {0}, z = {0};
    a.requests_get = 7;
    a.requests_mget = 2;
    a.requests_set = 3;
    a.requests_del = 4;
    a.requests_peek = 5;
    a.requests_ttl = 6;
    a.requests_refresh = 8;
    a.requests_other = 9;
    a.hits_l1 = 11;
    a.hits_redis = 12;
    a.misses = 13;
    a.negative_hits = 14;
    a.stale_revalidate = 15;
    a.stale_error = 16;
    a.fetch_ok = 17;
    a.fetch_not_found = 18;
    a.fetch_error = 19;
    a.fetch_timeout = 20;
    a.coalesced = 21;
    a.invalidations_del = 22;
    a.invalidations_event = 23;
    a.invalidations_purge = 24;
    a.invalidations_tag = 25;
    a.invalidations_flush = 26;
    a.invalidations_race = 27;
    a.lock_waits = 28;
    a.lock_takeovers = 29;
    a.early_refreshes = 30;
    a.reloads_ok = 31;
    a.reloads_error = 32;
    a.stores = 33;
    a.store_errors = 34;
    a.requests_get = 18446744073709551615ULL; /* a full uint64 prints whole */
    metrics_ns_t ns[] = {{"alpha", &a, true, 7}, {"zeta", &z, false, 0}};
    metrics_globals_t g = sample_globals();
    buf_t b = {0};
    metrics_render_from(&b, ns, 2, &g);
    buf_append(&b, "", 1);
    const char *t = b.data;

    CHECK_LINES(t, "# TYPE luacached_requests_total counter\n"
                   "luacached_requests_total{ns=\"alpha\",cmd=\"get\"} 18446744073709551615\n"
                   "luacached_requests_total{ns=\"alpha\",cmd=\"mget\"} 2\n"
                   "luacached_requests_total{ns=\"alpha\",cmd=\"set\"} 3\n"
                   "luacached_requests_total{ns=\"alpha\",cmd=\"del\"} 4\n"
                   "luacached_requests_total{ns=\"alpha\",cmd=\"peek\"} 5\n"
                   "luacached_requests_total{ns=\"alpha\",cmd=\"ttl\"} 6\n"
                   "luacached_requests_total{ns=\"alpha\",cmd=\"refresh\"} 8\n"
                   "luacached_requests_total{ns=\"alpha\",cmd=\"other\"} 9\n"
                   "luacached_requests_total{ns=\"zeta\",cmd=\"get\"} 0\n");
    CHECK_LINES(t, "luacached_hits_total{ns=\"alpha\",tier=\"l1\"} 11\n"
                   "luacached_hits_total{ns=\"alpha\",tier=\"redis\"} 12\n"
                   "luacached_hits_total{ns=\"zeta\",tier=\"l1\"} 0\n"
                   "luacached_hits_total{ns=\"zeta\",tier=\"redis\"} 0\n");
    CHECK_LINES(t, "# TYPE luacached_misses_total counter\n"
                   "luacached_misses_total{ns=\"alpha\"} 13\n"
                   "luacached_misses_total{ns=\"zeta\"} 0\n");
    CHECK_LINES(t, "luacached_negative_hits_total{ns=\"alpha\"} 14\n");
    CHECK_LINES(t, "luacached_stale_served_total{ns=\"alpha\",reason=\"revalidate\"} 15\n"
                   "luacached_stale_served_total{ns=\"alpha\",reason=\"error\"} 16\n");
    CHECK_LINES(t, "luacached_fetches_total{ns=\"alpha\",result=\"ok\"} 17\n"
                   "luacached_fetches_total{ns=\"alpha\",result=\"not_found\"} 18\n"
                   "luacached_fetches_total{ns=\"alpha\",result=\"error\"} 19\n"
                   "luacached_fetches_total{ns=\"alpha\",result=\"timeout\"} 20\n");
    CHECK_LINES(t, "luacached_coalesced_total{ns=\"alpha\"} 21\n");
    CHECK_LINES(t, "luacached_invalidations_total{ns=\"alpha\",kind=\"del\"} 22\n"
                   "luacached_invalidations_total{ns=\"alpha\",kind=\"event\"} 23\n"
                   "luacached_invalidations_total{ns=\"alpha\",kind=\"purge\"} 24\n"
                   "luacached_invalidations_total{ns=\"alpha\",kind=\"tag\"} 25\n"
                   "luacached_invalidations_total{ns=\"alpha\",kind=\"flush\"} 26\n"
                   "luacached_invalidations_total{ns=\"alpha\",kind=\"race\"} 27\n");
    CHECK_LINES(t, "luacached_lock_waits_total{ns=\"alpha\"} 28\n");
    CHECK_LINES(t, "luacached_lock_takeovers_total{ns=\"alpha\"} 29\n");
    CHECK_LINES(t, "luacached_early_refreshes_total{ns=\"alpha\"} 30\n");
    CHECK_LINES(t, "luacached_policy_reloads_total{ns=\"alpha\",result=\"ok\"} 31\n"
                   "luacached_policy_reloads_total{ns=\"alpha\",result=\"error\"} 32\n");
    CHECK_LINES(t, "luacached_stores_total{ns=\"alpha\"} 33\n");
    CHECK_LINES(t, "luacached_store_errors_total{ns=\"alpha\"} 34\n");
    CHECK_LINES(t, "# TYPE luacached_policy_loaded gauge\n"
                   "luacached_policy_loaded{ns=\"alpha\"} 1\n"
                   "luacached_policy_loaded{ns=\"zeta\"} 0\n");

    /* process-wide */
    CHECK_LINES(t, "# TYPE luacached_backend_up gauge\nluacached_backend_up 1\n");
    CHECK_LINES(t, "# TYPE luacached_backend_errors_total counter\n"
                   "luacached_backend_errors_total 3\n");
    CHECK_LINES(t, "luacached_backend_outages_total 1\n");
    CHECK_LINES(t, "# TYPE luacached_connected_clients gauge\nluacached_connected_clients 5\n");
    CHECK_LINES(t, "luacached_connections_total 40\n");
    CHECK_LINES(t, "luacached_commands_total 1234\n");
    CHECK_LINES(t, "# TYPE luacached_l1_entries gauge\nluacached_l1_entries 17\n");
    CHECK_LINES(t, "luacached_l1_bytes 4096\n");
    CHECK_LINES(t, "luacached_fills_in_flight 2\n");
    CHECK_LINES(t, "luacached_fetches_in_flight 1\n");
    CHECK_LINES(t, "# TYPE luacached_uptime_seconds gauge\nluacached_uptime_seconds 12.5\n");
    CHECK_LINES(t, "luacached_build_info{version=\"9.8.7\"} 1\n");

    family_t fams[MAX_FAMILIES];
    size_t nfams = 0;
    const char *why = validate(t, fams, &nfams);
    if (why) {
        fprintf(stderr, "  invalid exposition: %s\n", why);
        test_failed = 1;
    }
    buf_free(&b);
}

static void test_backend_down_and_no_namespaces(void)
{
    metrics_globals_t g = sample_globals();
    g.backend_up = false;
    buf_t b = {0};
    metrics_render_from(&b, NULL, 0, &g);
    buf_append(&b, "", 1);
    CHECK_LINES(b.data, "luacached_backend_up 0\n");
    /* every family still declared, even with no samples */
    CHECK_LINES(b.data, "# TYPE luacached_requests_total counter\n");
    CHECK_LINES(b.data, "# TYPE luacached_fetch_duration_seconds histogram\n");
    CHECK(strstr(b.data, "{ns=") == NULL);
    family_t fams[MAX_FAMILIES];
    size_t nfams = 0;
    CHECK(validate(b.data, fams, &nfams) == NULL);
    buf_free(&b);
}

/* The SPEC §7 families, each declared exactly once with its type. */
static void test_spec_families(void)
{
    static const char *const want[][2] = {
        {"luacached_requests_total", "counter"},
        {"luacached_hits_total", "counter"},
        {"luacached_misses_total", "counter"},
        {"luacached_negative_hits_total", "counter"},
        {"luacached_stale_served_total", "counter"},
        {"luacached_fetches_total", "counter"},
        {"luacached_fetch_duration_seconds", "histogram"},
        {"luacached_coalesced_total", "counter"},
        {"luacached_invalidations_total", "counter"},
        {"luacached_backend_up", "gauge"},
        {"luacached_backend_errors_total", "counter"},
        {"luacached_policy_reloads_total", "counter"},
        {"luacached_connected_clients", "gauge"},
        {"luacached_l1_entries", "gauge"},
    };
    ns_stats_t s = {0};
    metrics_ns_t ns[] = {{"w", &s, true, 0}};
    metrics_globals_t g = sample_globals();
    buf_t b = {0};
    metrics_render_from(&b, ns, 1, &g);
    buf_append(&b, "", 1);
    family_t fams[MAX_FAMILIES];
    size_t nfams = 0;
    const char *why = validate(b.data, fams, &nfams);
    CHECK(why == NULL);
    for (size_t i = 0; i < LC_ARRAY_LEN(want); i++) {
        bool found = false;
        for (size_t j = 0; j < nfams; j++)
            if (strcmp(fams[j].name, want[i][0]) == 0) {
                found = true;
                if (strcmp(fams[j].type, want[i][1]) != 0) {
                    fprintf(stderr, "  %s has type %s\n", want[i][0], fams[j].type);
                    test_failed = 1;
                }
            }
        if (!found) {
            fprintf(stderr, "  family %s missing\n", want[i][0]);
            test_failed = 1;
        }
        char help[160];
        snprintf(help, sizeof(help), "# HELP %s ", want[i][0]);
        CHECK(count_occurrences(b.data, help) == 1);
    }
    buf_free(&b);
}

static void test_histogram_cumulative(void)
{
    ns_stats_t s = {0};
    /* 0.001 -> le 0.005; 0.005 exactly -> le 0.005 (le is inclusive);
     * 0.3 -> le 0.5; 0.3 again; 7 -> le 10; 100 -> +Inf only */
    ns_stats_observe_fetch(&s, 0.001);
    ns_stats_observe_fetch(&s, 0.005);
    ns_stats_observe_fetch(&s, 0.3);
    ns_stats_observe_fetch(&s, 0.3);
    ns_stats_observe_fetch(&s, 7);
    ns_stats_observe_fetch(&s, 100);
    metrics_ns_t ns[] = {{"h", &s, true, 0}};
    metrics_globals_t g = sample_globals();
    buf_t b = {0};
    metrics_render_from(&b, ns, 1, &g);
    buf_append(&b, "", 1);
    CHECK_LINES(b.data, "# TYPE luacached_fetch_duration_seconds histogram\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"0.005\"} 2\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"0.01\"} 2\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"0.025\"} 2\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"0.05\"} 2\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"0.1\"} 2\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"0.25\"} 2\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"0.5\"} 4\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"1\"} 4\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"2.5\"} 4\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"5\"} 4\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"10\"} 5\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"30\"} 5\n"
                        "luacached_fetch_duration_seconds_bucket{ns=\"h\",le=\"+Inf\"} 6\n"
                        "luacached_fetch_duration_seconds_sum{ns=\"h\"} 107.606\n"
                        "luacached_fetch_duration_seconds_count{ns=\"h\"} 6\n");
    buf_free(&b);
}

static void test_label_escaping_in_output(void)
{
    ns_stats_t s = {0};
    s.misses = 1;
    metrics_ns_t ns[] = {{"we\"ird\\name\nx", &s, true, 0}};
    metrics_globals_t g = sample_globals();
    g.version = "v\"1";
    buf_t b = {0};
    metrics_render_from(&b, ns, 1, &g);
    buf_append(&b, "", 1);
    CHECK_LINES(b.data, "luacached_misses_total{ns=\"we\\\"ird\\\\name\\nx\"} 1\n");
    CHECK_LINES(b.data, "luacached_fetch_duration_seconds_bucket{ns=\"we\\\"ird\\\\name\\nx\","
                        "le=\"+Inf\"} 0\n");
    CHECK_LINES(b.data, "luacached_build_info{version=\"v\\\"1\"} 1\n");
    family_t fams[MAX_FAMILIES];
    size_t nfams = 0;
    const char *why = validate(b.data, fams, &nfams);
    if (why) {
        fprintf(stderr, "  invalid exposition: %s\n", why);
        test_failed = 1;
    }
    buf_free(&b);
}

/* ------------------------------------------------------------------------
 * HTTP endpoint
 * ---------------------------------------------------------------------- */

typedef struct tclient {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    buf_t req;
    buf_t resp;
    bool connected, done, closed;
    int err; /* 0, or the libuv error that ended it (EOF is 0) */
    char rbuf[65536];
} tclient_t;

static uv_loop_t tloop;

static void tc_on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    LC_UNUSED(s);
    tclient_t *c = h->data;
    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void tc_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    tclient_t *c = st->data;
    if (n > 0) buf_append(&c->resp, b->base, (size_t)n);
    if (n < 0) {
        c->done = true;
        c->err = n == UV_EOF ? 0 : (int)n;
        uv_read_stop(st);
    }
}

static void tc_on_write(uv_write_t *w, int status)
{
    LC_UNUSED(w);
    LC_UNUSED(status); /* a reset shows up in the read */
}

static void tc_on_connect(uv_connect_t *r, int status)
{
    tclient_t *c = r->data;
    if (status < 0) {
        c->done = true;
        c->err = status;
        return;
    }
    c->connected = true;
    uv_read_start((uv_stream_t *)&c->tcp, tc_on_alloc, tc_on_read);
    if (c->req.len) {
        uv_buf_t b = uv_buf_init(c->req.data, (unsigned)c->req.len);
        uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, tc_on_write);
    }
}

static void tc_start(tclient_t *c, int port, const char *req, size_t len)
{
    memset(c, 0, sizeof(*c));
    if (req) buf_append(&c->req, req, len);
    uv_tcp_init(&tloop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&a, tc_on_connect);
}

static void tc_closed(uv_handle_t *h)
{
    tclient_t *c = h->data;
    c->closed = true;
}

static void tc_close(tclient_t *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, tc_closed);
}

static void tc_free(tclient_t *c)
{
    buf_free(&c->req);
    buf_free(&c->resp);
}

static void tick(uv_timer_t *t)
{
    LC_UNUSED(t);
}

/* Run the loop until every client in cs[0..n) is done (or, with
 * want_connected, connected), or ms pass. Returns true when they are. */
static bool run_until(tclient_t *cs, size_t n, bool want_connected, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(&tloop, &t);
    uv_timer_start(&t, tick, 5, 5);
    uint64_t deadline = mono_ms() + ms;
    bool all = false;
    while (mono_ms() < deadline) {
        all = true;
        for (size_t i = 0; i < n; i++)
            if (!(want_connected ? cs[i].connected || cs[i].done : cs[i].done)) all = false;
        if (all) break;
        uv_run(&tloop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&tloop, UV_RUN_NOWAIT);
    return all;
}

/* Let the loop turn for ms (the server accepts, reads...). */
static void spin(uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(&tloop, &t);
    uv_timer_start(&t, tick, 5, 5);
    uint64_t deadline = mono_ms() + ms;
    while (mono_ms() < deadline)
        uv_run(&tloop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&tloop, UV_RUN_NOWAIT);
}

static int free_port(void)
{
    uv_tcp_t t;
    uv_tcp_init(&tloop, &t);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&t, (const struct sockaddr *)&a, 0);
    struct sockaddr_storage got;
    int len = sizeof(got);
    uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&tloop, UV_RUN_NOWAIT);
    return ntohs(((struct sockaddr_in *)&got)->sin_port);
}

static int http_port;

static bool http_up(void)
{
    CHECK(uv_loop_init(&tloop) == 0);
    char err[256];
    for (int attempt = 0; attempt < 5; attempt++) {
        cfg.bind = "127.0.0.1";
        cfg.metrics_port = http_port = free_port();
        if (metrics_http_start(&tloop, err, sizeof(err)) == 0) return true;
        spin(1);
    }
    fprintf(stderr, "  metrics_http_start: %s\n", err);
    test_failed = 1;
    return false;
}

static void http_down(void)
{
    metrics_http_stop();
    uv_run(&tloop, UV_RUN_DEFAULT); /* every close callback runs */
    int rc = uv_loop_close(&tloop);
    if (rc != 0) {
        fprintf(stderr, "  uv_loop_close: %s\n", uv_strerror(rc));
        test_failed = 1;
    }
}

/* One request on a fresh connection; the response (NUL-terminated) in out. */
static void http_exchange(const char *req, size_t len, buf_t *out, int *err)
{
    tclient_t *c = xmalloc(sizeof(*c));
    tc_start(c, http_port, req, len);
    CHECK(run_until(c, 1, false, 5000));
    *err = c->err;
    buf_append(out, c->resp.data ? c->resp.data : "", c->resp.len);
    buf_append(out, "", 1);
    tc_close(c);
    while (!c->closed)
        uv_run(&tloop, UV_RUN_ONCE);
    tc_free(c);
    free(c);
}

#define REQ(s) s, sizeof(s) - 1

static bool starts_with(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    return p ? p + 4 : "";
}

static void test_http_routes(void)
{
    if (!http_up()) return;
    buf_t r = {0};
    int err;

    http_exchange(REQ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), &r, &err);
    CHECK(err == 0);
    CHECK(starts_with(r.data, "HTTP/1.1 200 OK\r\n"));
    CHECK(strstr(r.data, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    CHECK(strstr(r.data, "\r\nConnection: close\r\n"));
    CHECK(has_lines(body_of(r.data), "# TYPE luacached_backend_up gauge\n"));
    family_t fams[MAX_FAMILIES];
    size_t nfams;
    CHECK(validate(body_of(r.data), fams, &nfams) == NULL);
    /* Content-Length is the body's length */
    const char *cl = strstr(r.data, "Content-Length: ");
    CHECK(cl && strtoul(cl + 16, NULL, 10) == strlen(body_of(r.data)));
    buf_reset(&r);

    http_exchange(REQ("GET /metrics?x=1 HTTP/1.0\r\n\r\n"), &r, &err);
    CHECK(starts_with(r.data, "HTTP/1.1 200 OK\r\n"));
    buf_reset(&r);

    http_exchange(REQ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), &r, &err);
    CHECK(starts_with(r.data, "HTTP/1.1 200 OK\r\n"));
    CHECK(strcmp(body_of(r.data), "ok") == 0);
    buf_reset(&r);

    http_exchange(REQ("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), &r, &err);
    CHECK(starts_with(r.data, "HTTP/1.1 200 OK\r\n"));
    CHECK(strcmp(body_of(r.data), "") == 0);
    cl = strstr(r.data, "Content-Length: ");
    CHECK(cl && strtoul(cl + 16, NULL, 10) > 1000);
    buf_reset(&r);

    http_exchange(REQ("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"), &r, &err);
    CHECK(starts_with(r.data, "HTTP/1.1 404 Not Found\r\n"));
    buf_reset(&r);

    http_exchange(REQ("GET /metricsx HTTP/1.1\r\n\r\n"), &r, &err);
    CHECK(starts_with(r.data, "HTTP/1.1 404 "));
    buf_reset(&r);

    http_exchange(REQ("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"), &r,
                  &err);
    CHECK(starts_with(r.data, "HTTP/1.1 405 Method Not Allowed\r\n"));
    CHECK(strstr(r.data, "\r\nAllow: GET, HEAD\r\n"));
    buf_reset(&r);

    http_exchange(REQ("DELETE /healthz HTTP/1.1\r\n\r\n"), &r, &err);
    CHECK(starts_with(r.data, "HTTP/1.1 405 "));
    buf_reset(&r);

    http_exchange(REQ("HELLO THERE\r\n\r\n"), &r, &err);
    CHECK(starts_with(r.data, "HTTP/1.1 400 Bad Request\r\n"));
    buf_reset(&r);

    buf_free(&r);
    http_down();
}

static void test_http_header_cap(void)
{
    if (!http_up()) return;
    buf_t req = {0}, r = {0};
    int err;
    buf_append_str(&req, "GET /metrics HTTP/1.1\r\nHost: x\r\n");
    while (req.len < METRICS_HTTP_MAX_HEADER + 4096)
        buf_append_str(&req, "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    buf_append_str(&req, "\r\n");
    http_exchange(req.data, req.len, &r, &err);
    /* 431, or a reset before the client read it; never a 200 */
    CHECK(starts_with(r.data, "HTTP/1.1 431 Request Header Fields Too Large\r\n") ||
          (r.len == 1 && err != 0));
    buf_reset(&r);

    /* one long URL counts too */
    buf_reset(&req);
    buf_append_str(&req, "GET /");
    while (req.len < METRICS_HTTP_MAX_HEADER + 10)
        buf_append_str(&req, "aaaaaaaaaaaaaaaa");
    buf_append_str(&req, " HTTP/1.1\r\n\r\n");
    http_exchange(req.data, req.len, &r, &err);
    CHECK(starts_with(r.data, "HTTP/1.1 431 ") || (r.len == 1 && err != 0));
    buf_reset(&r);

    /* just under the cap is fine */
    buf_reset(&req);
    buf_append_str(&req, "GET /healthz HTTP/1.1\r\n");
    while (req.len < METRICS_HTTP_MAX_HEADER - 100)
        buf_append_str(&req, "X-Pad: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    buf_append_str(&req, "\r\n");
    http_exchange(req.data, req.len, &r, &err);
    CHECK(starts_with(r.data, "HTTP/1.1 200 OK\r\n"));
    buf_reset(&r);

    /* and the endpoint still serves */
    http_exchange(REQ("GET /healthz HTTP/1.1\r\n\r\n"), &r, &err);
    CHECK(starts_with(r.data, "HTTP/1.1 200 OK\r\n"));
    buf_free(&r);
    buf_free(&req);
    http_down();
}

/* A request that arrives in pieces is parsed across reads. */
static void test_http_split_request(void)
{
    if (!http_up()) return;
    tclient_t *c = xmalloc(sizeof(*c));
    tc_start(c, http_port, NULL, 0);
    CHECK(run_until(c, 1, true, 5000));
    static const char *parts[] = {"GE", "T /hea", "lthz HTTP/1.1\r\nHo", "st: x\r\n", "\r\n"};
    uv_write_t w[5];
    for (size_t i = 0; i < 5; i++) {
        uv_buf_t b = uv_buf_init((char *)parts[i], (unsigned)strlen(parts[i]));
        uv_write(&w[i], (uv_stream_t *)&c->tcp, &b, 1, tc_on_write);
        spin(10); /* each part its own segment */
    }
    CHECK(run_until(c, 1, false, 5000));
    buf_append(&c->resp, "", 1);
    CHECK(starts_with(c->resp.data, "HTTP/1.1 200 OK\r\n"));
    CHECK(strcmp(body_of(c->resp.data), "ok") == 0);
    tc_close(c);
    while (!c->closed)
        uv_run(&tloop, UV_RUN_ONCE);
    tc_free(c);
    free(c);
    http_down();
}

/* At most METRICS_HTTP_MAX_CONNS connections; one more is turned away, and
 * a slot that frees up is usable again. Stopping closes the idle ones. */
/* The request path without a socket, fed in one piece and in 2-byte
 * reads: a malformed byte early in a request longer than the header cap is
 * a 400 either way (found by fuzz_metrics_http: one piece answered 431). */
static int req_status(const char *req, size_t len, size_t chunk)
{
    metrics_http_req_t r;
    metrics_http_req_init(&r);
    metrics_http_answer_t a;
    int status = 0;
    for (size_t off = 0; off < len && !status; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        if (metrics_http_req_feed(&r, req + off, n, &a)) status = a.status;
    }
    metrics_http_req_free(&r);
    return status;
}

static void test_http_req_split_independent(void)
{
    buf_t req = {0};
    buf_append_str(&req, "GET /m");
    for (int i = 0; i < 1900; i++)
        buf_append(&req, "b", 1);
    buf_append(&req, "\x02", 1); /* not allowed in a URL */
    for (int i = 0; i < METRICS_HTTP_MAX_HEADER; i++)
        buf_append(&req, "b", 1);
    CHECK(req_status(req.data, req.len, req.len) == 400);
    CHECK(req_status(req.data, req.len, 2) == 400);
    /* well formed but over the cap: 431 either way */
    buf_reset(&req);
    buf_append_str(&req, "GET /metrics HTTP/1.1\r\nX: ");
    for (int i = 0; i < METRICS_HTTP_MAX_HEADER; i++)
        buf_append(&req, "b", 1);
    buf_append_str(&req, "\r\n\r\n");
    CHECK(req_status(req.data, req.len, req.len) == 431);
    CHECK(req_status(req.data, req.len, 7) == 431);
    /* a body after the headers is not header bytes */
    buf_reset(&req);
    buf_append_str(&req, "POST /metrics HTTP/1.1\r\nContent-Length: 20000\r\n\r\n");
    for (int i = 0; i < 20000; i++)
        buf_append(&req, "x", 1);
    CHECK(req_status(req.data, req.len, req.len) == 405);
    buf_free(&req);
}

static void test_http_connection_cap(void)
{
    if (!http_up()) return;
    size_t n = METRICS_HTTP_MAX_CONNS;
    tclient_t *idle = xcalloc(n, sizeof(*idle));
    for (size_t i = 0; i < n; i++)
        tc_start(&idle[i], http_port, NULL, 0);
    CHECK(run_until(idle, n, true, 5000));
    spin(50); /* the server accepts them all */
    for (size_t i = 0; i < n; i++)
        CHECK(!idle[i].done);

    buf_t r = {0};
    int err;
    http_exchange(REQ("GET /healthz HTTP/1.1\r\n\r\n"), &r, &err);
    CHECK(starts_with(r.data, "HTTP/1.1 503 ") || r.len == 1); /* turned away */
    buf_reset(&r);

    tc_close(&idle[0]); /* frees one slot */
    spin(50);
    http_exchange(REQ("GET /healthz HTTP/1.1\r\n\r\n"), &r, &err);
    CHECK(starts_with(r.data, "HTTP/1.1 200 OK\r\n"));
    buf_free(&r);

    /* shutdown closes the other idle connections: they see EOF */
    metrics_http_stop();
    CHECK(run_until(idle + 1, n - 1, false, 5000));
    for (size_t i = 0; i < n; i++) {
        tc_close(&idle[i]);
    }
    uv_run(&tloop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < n; i++) {
        CHECK(idle[i].closed);
        tc_free(&idle[i]);
    }
    free(idle);
    http_down();
}

/* Stopping with a request half-read leaves nothing open. */
static void test_http_stop_mid_request(void)
{
    if (!http_up()) return;
    tclient_t *c = xmalloc(sizeof(*c));
    tc_start(c, http_port, REQ("GET /metrics HTTP/1.1\r\nHost:"));
    CHECK(run_until(c, 1, true, 5000));
    spin(20);
    CHECK(!c->done);
    metrics_http_stop();
    CHECK(run_until(c, 1, false, 5000));
    CHECK(c->resp.len == 0);
    tc_close(c);
    uv_run(&tloop, UV_RUN_DEFAULT);
    tc_free(c);
    free(c);
    http_down();
}

static void test_http_port_zero_is_off(void)
{
    CHECK(uv_loop_init(&tloop) == 0);
    cfg.metrics_port = 0;
    char err[128];
    CHECK(metrics_http_start(&tloop, err, sizeof(err)) == 0);
    CHECK(uv_run(&tloop, UV_RUN_NOWAIT) == 0); /* nothing active */
    http_down();
}

static void test_http_port_in_use(void)
{
    CHECK(uv_loop_init(&tloop) == 0);
    uv_tcp_t other;
    uv_tcp_init(&tloop, &other);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&other, (const struct sockaddr *)&a, 0);
    CHECK(uv_listen((uv_stream_t *)&other, 8, NULL) == 0);
    struct sockaddr_storage got;
    int len = sizeof(got);
    uv_tcp_getsockname(&other, (struct sockaddr *)&got, &len);
    cfg.bind = "127.0.0.1";
    cfg.metrics_port = ntohs(((struct sockaddr_in *)&got)->sin_port);
    char err[256] = "";
    CHECK(metrics_http_start(&tloop, err, sizeof(err)) == -1);
    CHECK(strstr(err, "in use") != NULL);
    CHECK(strstr(err, "--metrics-port") != NULL);
    uv_close((uv_handle_t *)&other, NULL);
    http_down();

    CHECK(uv_loop_init(&tloop) == 0);
    cfg.bind = "not-an-address";
    cfg.metrics_port = 1;
    CHECK(metrics_http_start(&tloop, err, sizeof(err)) == -1);
    CHECK(strstr(err, "--bind") != NULL);
    cfg.bind = "127.0.0.1";
    http_down();
}

int main(void)
{
    RUN(test_format_double);
    RUN(test_escape_label);
    RUN(test_counters_exact);
    RUN(test_backend_down_and_no_namespaces);
    RUN(test_spec_families);
    RUN(test_histogram_cumulative);
    RUN(test_label_escaping_in_output);
    RUN(test_http_routes);
    RUN(test_http_header_cap);
    RUN(test_http_split_request);
    RUN(test_http_req_split_independent);
    RUN(test_http_connection_cap);
    RUN(test_http_stop_mid_request);
    RUN(test_http_port_zero_is_off);
    RUN(test_http_port_in_use);
    return check_summary("metrics");
}
