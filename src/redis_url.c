/* redis_url.c: the --redis URL parser (redis_url.h). Errors name the part
 * that is wrong and how to write it, but never quote a part that may hold
 * password bytes. */
#include "redis_url.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Set while parsing a URL whose parts may be password bytes: then no part
 * is quoted in errors. That is when an '@' comes after the host (a '/' or
 * '?' in the password was not %-escaped, so password bytes land where a
 * port, db or option is expected), or when the URL says "password" at all
 * (a raw '&' in a password= value, or a typo like "?passwordS3cret"). */
static bool url_quiet;
#define SHOWN(len, s) (url_quiet ? 3 : (int)(len)), (url_quiet ? "***" : (s))

static bool url_parts_may_be_secret(const char *url)
{
    const char *s = strstr(url, "://");
    if (s && strchr(s + 3 + strcspn(s + 3, "/?"), '@')) return true;
    return strcasestr(url, "password") != NULL;
}

static int url_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int url_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        int n = snprintf(err, errlen, "--redis: ");
        if (n >= 0 && (size_t)n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
            size_t used = strlen(err);
            if (url_quiet)
                snprintf(err + used, errlen - used,
                         " (parts not shown: the URL holds a password; write a '/' or '?' in it "
                         "as %%2F or %%3F)");
        }
    }
    return -1;
}

static bool has_prefix_nocase(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* %-decode s[0..len) into dst. Fails on a bad escape, an embedded NUL (it
 * would silently truncate a password) or when dst is too small. */
static int pct_decode(const char *s, size_t len, char *dst, size_t dstsize, const char *what,
                      char *err, size_t errlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 1 < len ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < len ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) return url_err(err, errlen, "bad %%-escape in the %s", what);
            c = hi * 16 + lo;
            if (c == 0) return url_err(err, errlen, "%%00 is not allowed in the %s", what);
            i += 2;
        }
        if (o + 1 >= dstsize)
            return url_err(err, errlen, "%s too long (max %zu bytes)", what, dstsize - 1);
        dst[o++] = (char)c;
    }
    dst[o] = '\0';
    return 0;
}

/* A whole run of ASCII digits, at most max. Signs and spaces are refused. */
static int parse_uint(const char *s, size_t len, long max, long *out)
{
    if (len == 0 || len > 10) return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max) return -1;
    *out = v;
    return 0;
}

static int parse_db(const char *s, size_t len, redis_url_t *out, char *err, size_t errlen)
{
    long v;
    if (parse_uint(s, len, INT_MAX, &v) != 0)
        return url_err(err, errlen, "bad db number '%.*s' (want 0 or more)", SHOWN(len, s));
    out->db = (int)v;
    return 0;
}

/* One option that holds text: where it goes, and whether it was given. */
typedef struct text_opt {
    const char *name;
    char *dst;
    size_t size;
    bool given;
    bool sentinel_only;
} text_opt_t;

/* "k=v&k=v" after the '?'. Each option may be given once, and not also in
 * the path or userinfo: a URL that says two things is a mistake. */
static int parse_query(const char *q, redis_url_t *out, bool have_db, char *err, size_t errlen)
{
    text_opt_t opts[] = {
        {"user", out->user, sizeof(out->user), out->user[0] != '\0', false},
        {"password", out->pass, sizeof(out->pass), out->pass[0] != '\0', false},
        {"sentinel_user", out->sentinel_user, sizeof(out->sentinel_user), false, true},
        {"sentinel_password", out->sentinel_pass, sizeof(out->sentinel_pass), false, true},
    };
    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        if (!eq) return url_err(err, errlen, "option '%.*s' needs a value", SHOWN(len, q));
        size_t klen = (size_t)(eq - q), vlen = len - klen - 1;
        const char *v = eq + 1;
        text_opt_t *o = NULL;
        for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
            if (strlen(opts[i].name) == klen && strncasecmp(q, opts[i].name, klen) == 0)
                o = &opts[i];
        if (klen == 2 && strncasecmp(q, "db", 2) == 0) {
            if (have_db) return url_err(err, errlen, "db given twice");
            if (parse_db(v, vlen, out, err, errlen) != 0) return -1;
            have_db = true;
        } else if (o) {
            if (o->sentinel_only && out->mode != REDIS_MODE_SENTINEL)
                return url_err(err, errlen, "option %s is for redis+sentinel:// URLs", o->name);
            if (o->given) return url_err(err, errlen, "%s given twice", o->name);
            if (pct_decode(v, vlen, o->dst, o->size, o->name, err, errlen) != 0) return -1;
            o->given = true;
        } else {
            return url_err(
                err, errlen, "unknown option '%.*s' (want db, user or password%s)", SHOWN(klen, q),
                out->mode == REDIS_MODE_SENTINEL ? ", sentinel_user or sentinel_password" : "");
        }
        q += len;
        if (*q == '&') q++;
    }
    return 0;
}

static bool host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

/* A host or master name of len bytes into dst, every byte checked. */
static int copy_name(char *dst, size_t size, const char *s, size_t len, bool (*ok)(char),
                     const char *what, char *err, size_t errlen)
{
    if (len >= size) return url_err(err, errlen, "%s too long (max %zu)", what, size - 1);
    for (size_t i = 0; i < len; i++)
        if (!ok(s[i]))
            return url_err(err, errlen, "bad character in %s '%.*s'", what, SHOWN(len, s));
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

/* host[:port] or [v6][:port], len bytes, into a. */
static int parse_hostport(const char *host, size_t hlen, redis_addr_t *a, char *err, size_t errlen)
{
    a->port = REDIS_URL_DEFAULT_PORT;
    const char *port = NULL;
    size_t portlen = 0;
    if (hlen > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', hlen);
        if (!close) return url_err(err, errlen, "missing ']' after the IPv6 address");
        size_t ilen = (size_t)(close - host - 1);
        char tmp[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        if (ilen == 0 || ilen >= sizeof(tmp))
            return url_err(err, errlen, "bad IPv6 address '%.*s'", SHOWN(ilen, host + 1));
        memcpy(tmp, host + 1, ilen);
        tmp[ilen] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return url_err(err, errlen, "bad IPv6 address '%.*s'", SHOWN(strlen(tmp), tmp));
        memcpy(a->host, tmp, ilen + 1);
        const char *after = close + 1;
        size_t rest = hlen - (size_t)(after - host);
        if (rest > 0) {
            if (*after != ':')
                return url_err(err, errlen, "unexpected '%.*s' after the IPv6 address",
                               SHOWN(rest, after));
            port = after + 1;
            portlen = rest - 1;
        }
    } else {
        const char *colon = memchr(host, ':', hlen);
        size_t namelen = colon ? (size_t)(colon - host) : hlen;
        if (colon) {
            port = colon + 1;
            portlen = hlen - namelen - 1;
            if (memchr(port, ':', portlen))
                return url_err(err, errlen, "put an IPv6 address in brackets: redis://[::1]:6379");
        }
        if (namelen == 0) return url_err(err, errlen, "missing host");
        if (copy_name(a->host, sizeof(a->host), host, namelen, host_char_ok, "host", err, errlen) !=
            0)
            return -1;
    }
    if (port) {
        long p;
        if (parse_uint(port, portlen, 65535, &p) != 0 || p == 0)
            return url_err(err, errlen, "bad port '%.*s' (want 1-65535)", SHOWN(portlen, port));
        a->port = (int)p;
    }
    return 0;
}

/* The userinfo before the last '@' (so an unescaped '@' in a password
 * works): "pass", ":pass" or "user:pass". */
static int parse_userinfo(const char *s, size_t ulen, redis_url_t *out, char *err, size_t errlen)
{
    const char *colon = memchr(s, ':', ulen);
    if (!colon) return pct_decode(s, ulen, out->pass, sizeof(out->pass), "password", err, errlen);
    if (pct_decode(s, (size_t)(colon - s), out->user, sizeof(out->user), "user", err, errlen) != 0)
        return -1;
    return pct_decode(colon + 1, (size_t)(s + ulen - colon - 1), out->pass, sizeof(out->pass),
                      "password", err, errlen);
}

/* A comma-separated list of hosts (one only for a single server). */
static int parse_hosts(const char *s, size_t len, redis_url_t *out, char *err, size_t errlen)
{
    if (len == 0) return url_err(err, errlen, "missing host");
    if (out->mode == REDIS_MODE_SINGLE && memchr(s, ',', len))
        return url_err(err, errlen,
                       "a list of hosts needs redis+cluster:// (Redis Cluster) or "
                       "redis+sentinel:// (Sentinel)");
    const char *end = s + len;
    while (s <= end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        size_t n = comma ? (size_t)(comma - s) : (size_t)(end - s);
        if (out->nhosts == REDIS_URL_MAX_HOSTS)
            return url_err(err, errlen, "too many hosts (max %d)", REDIS_URL_MAX_HOSTS);
        if (n == 0) return url_err(err, errlen, "empty host in the list");
        if (parse_hostport(s, n, &out->hosts[out->nhosts], err, errlen) != 0) return -1;
        out->nhosts++;
        if (!comma) break;
        s = comma + 1;
    }
    memcpy(out->host, out->hosts[0].host, sizeof(out->host));
    out->port = out->hosts[0].port;
    return 0;
}

static bool master_char_ok(char c)
{
    return host_char_ok(c) || c == ':';
}

/* Sentinel: "/master[/db]" after the hosts. */
static int parse_master(const char **sp, redis_url_t *out, bool *have_db, char *err, size_t errlen)
{
    const char *s = *sp;
    if (*s != '/')
        return url_err(err, errlen,
                       "name the master: redis+sentinel://host:port[,host:port]/mastername");
    s++;
    size_t mlen = strcspn(s, "/?");
    if (mlen == 0)
        return url_err(err, errlen,
                       "name the master: redis+sentinel://host:port[,host:port]/mastername");
    if (copy_name(out->master, sizeof(out->master), s, mlen, master_char_ok, "master name", err,
                  errlen) != 0)
        return -1;
    s += mlen;
    if (*s == '/') {
        s++;
        size_t dlen = strcspn(s, "?");
        if (dlen > 0) {
            if (parse_db(s, dlen, out, err, errlen) != 0) return -1;
            *have_db = true;
        }
        s += dlen;
    }
    *sp = s;
    return 0;
}

/* s points after "scheme://". */
static int parse_tcp_url(const char *s, redis_url_t *out, char *err, size_t errlen)
{
    size_t alen = strcspn(s, "/?"); /* authority: [userinfo@]host[:port][,host[:port]...] */
    const char *at = memrchr(s, '@', alen);
    const char *host = s;
    if (at) {
        if (parse_userinfo(s, (size_t)(at - s), out, err, errlen) != 0) return -1;
        host = at + 1;
    }
    if (parse_hosts(host, (size_t)(s + alen - host), out, err, errlen) != 0) return -1;

    s += alen;
    bool have_db = false;
    if (out->mode == REDIS_MODE_SENTINEL) {
        if (parse_master(&s, out, &have_db, err, errlen) != 0) return -1;
    } else if (*s == '/') {
        s++;
        size_t dlen = strcspn(s, "?");
        if (dlen > 0) {
            if (parse_db(s, dlen, out, err, errlen) != 0) return -1;
            have_db = true;
        }
        s += dlen;
    }
    if (*s == '?' && parse_query(s + 1, out, have_db, err, errlen) != 0) return -1;
    if (out->mode == REDIS_MODE_CLUSTER && out->db != 0)
        return url_err(err, errlen, "Redis Cluster has only db 0 (remove the /%d)", out->db);
    return 0;
}

/* s points after "unix:". */
static int parse_unix_url(const char *s, redis_url_t *out, char *err, size_t errlen)
{
    out->is_unix = true;
    out->port = 0;
    if (s[0] == '/' && s[1] == '/') {
        /* unix://host/path would be a URL with an authority; we have none. */
        if (s[2] != '/')
            return url_err(err, errlen, "unix:// takes an absolute path: unix:///path/to/socket");
        s += 2;
    }
    size_t plen = strcspn(s, "?");
    if (plen == 0) return url_err(err, errlen, "missing socket path after unix:");
    if (plen >= sizeof(out->path))
        return url_err(err, errlen, "unix socket path too long (max %zu bytes)",
                       sizeof(out->path) - 1);
    memcpy(out->path, s, plen);
    out->path[plen] = '\0';
    s += plen;
    if (*s == '?' && parse_query(s + 1, out, false, err, errlen) != 0) return -1;
    return 0;
}

static const struct {
    const char *scheme;
    redis_mode_t mode;
    bool tls;
} schemes[] = {
    {"redis://", REDIS_MODE_SINGLE, false},
    {"rediss://", REDIS_MODE_SINGLE, true},
    {"redis+cluster://", REDIS_MODE_CLUSTER, false},
    {"rediss+cluster://", REDIS_MODE_CLUSTER, true},
    {"redis+sentinel://", REDIS_MODE_SENTINEL, false},
    {"rediss+sentinel://", REDIS_MODE_SENTINEL, true},
};

int redis_url_parse(const char *url, redis_url_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->port = REDIS_URL_DEFAULT_PORT;
    if (err && errlen) err[0] = '\0';
    int rc = 1;
    url_quiet = url && url_parts_may_be_secret(url);
    if (!url || !url[0]) rc = url_err(err, errlen, "empty URL");
    for (size_t i = 0; rc == 1 && i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (!has_prefix_nocase(url, schemes[i].scheme)) continue;
        out->mode = schemes[i].mode;
        out->tls = schemes[i].tls;
        rc = parse_tcp_url(url + strlen(schemes[i].scheme), out, err, errlen);
    }
    if (rc == 1 && has_prefix_nocase(url, "unix:")) rc = parse_unix_url(url + 5, out, err, errlen);
    if (rc == 1)
        rc = url_err(err, errlen,
                     "want redis://[[user]:password@]host[:port][/db], unix:/path/to/socket, "
                     "redis+cluster://host:port[,host:port...] or "
                     "redis+sentinel://host:port[,host:port...]/mastername");
    if (rc == 0 && out->user[0] && !out->pass[0])
        rc = url_err(err, errlen, "user '%s' given without a password", out->user);
    if (rc == 0 && out->sentinel_user[0] && !out->sentinel_pass[0])
        rc = url_err(err, errlen, "sentinel_user '%s' given without a sentinel_password",
                     out->sentinel_user);
    if (rc != 0) {
        /* Leave no half-parsed secret behind in the caller's struct. */
        memset(out, 0, sizeof(*out));
        return -1;
    }
    return 0;
}

const char *redis_mode_name(redis_mode_t mode)
{
    switch (mode) {
    case REDIS_MODE_CLUSTER:
        return "cluster";
    case REDIS_MODE_SENTINEL:
        return "sentinel";
    default:
        return "single";
    }
}
