/* config.c: the settings, from the command line and a --config file. Every
 * option has a default that works for a local demo and a bound that keeps
 * a hostile client from hurting others. One table (options[]) names them
 * all: a flag is "--NAME", a config-file key is "NAME". */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "redact.h"
#include "util.h"

uint64_t lc_start_mono_ms;

#define CONFIG_DEFAULTS                                                                            \
    {                                                                                              \
        .bind = "127.0.0.1", .port = 7379, .redis_url = "redis://127.0.0.1:6379/0",                \
        .redis_url_from = "default", .policies_dir = "./policies", .prefix = "lc",                 \
        .metrics_port = 9379, .lua_path = NULL, .requirepass = NULL, .log_level = "info",          \
        .check = false, .maxclients = 10000, .timeout_s = 300, .max_inline = 64 * 1024,            \
        .max_bulk = 64 * 1024 * 1024, .max_args = 64 * 1024, .max_request = 256 * 1024 * 1024,     \
        .max_value = 64 * 1024 * 1024, .output_limit = 256 * 1024 * 1024, .max_pending = 1024,     \
        .backend_timeout_ms = 1000, .lua_memory = 64 * 1024 * 1024,                                \
        .l1_max_bytes = 64 * 1024 * 1024, .lua_budget = 100 * 1000 * 1000,                         \
        .shutdown_grace_ms = 5000, .slowlog_slower_than = 10000, .slowlog_max_len = 128,           \
        .reload_grace_ms = 5000,                                                                   \
    }

config_t cfg = CONFIG_DEFAULTS;

static void usage(FILE *f)
{
    fprintf(
        f, "usage: luacached [options]\n"
           "  --config FILE          read settings from FILE first (see 'config file' below)\n"
           "  --bind ADDR            listen address (default 127.0.0.1)\n"
           "  --port N               RESP port (default 7379)\n"
           "  --redis URL            redis://[[user]:pass@]host[:port][/db] or "
           "unix:/path[?password=P]\n"
           "                         redis+cluster://host:port[,host:port...] (Redis Cluster)\n"
           "                         redis+sentinel://host:port[,...]/master (via Sentinel)\n"
           "                         (default redis://127.0.0.1:6379/0)\n"
           "  --redis-file PATH      read the URL from a file (keeps a password out of ps)\n"
           "  --policies DIR         policy folder, one NS.lua per namespace (default ./policies)\n"
           "  --prefix P             Redis key prefix (default lc)\n"
           "  --metrics-port N       HTTP /metrics port, 0 = off (default 9379)\n"
           "  --lua-path DIR         shipped lua/ helpers (default: lua/ next to the binary,\n"
           "                         else ../share/luacached/lua, else ./lua)\n"
           "  --requirepass SECRET   require AUTH before any other command\n"
           "  --requirepass-file PATH  read that secret from a file\n"
           "  --log-level L          debug|info|warn|error (default info)\n"
           "  --check [PATH ...]     validate policies and exit: each PATH a policy file or a\n"
           "                         folder (default: --policies, itself a folder or a file);\n"
           "                         prints every error and warning as file:line: message,\n"
           "                         exits 1 if any error (warnings alone: 0)\n"
           "  --reload-grace MS      a deleted policy file unloads its namespace after MS\n"
           "                         (a deploy's rm + cp reloads instead; default 5000; RELOAD\n"
           "                         and SIGHUP unload at once)\n"
           "limits:\n"
           "  --maxclients N         (10000)      --timeout SECONDS  idle close, 0 = never (300)\n"
           "  --max-inline BYTES     (65536)      --max-bulk BYTES   (67108864)\n"
           "  --max-args N           (65536)      --max-value BYTES  (67108864)\n"
           "  --max-request BYTES    all arguments of one command (268435456)\n"
           "  --output-limit BYTES   (268435456)  --max-pending N    (1024)\n"
           "  --backend-timeout MS   (1000)       --shutdown-grace MS (5000)\n"
           "  --lua-memory BYTES     per policy (67108864)\n"
           "  --l1-max-bytes BYTES   in-process tier size (67108864)\n"
           "  --lua-budget N         VM instructions per policy call (100000000)\n"
           "  --slowlog-slower-than US  SLOWLOG threshold, -1 = off (10000)\n"
           "  --slowlog-max-len N    SLOWLOG entries kept (128)\n"
           "  --version, --help\n"
           "config file: one 'key = value' a line, the keys named as the flags without --\n"
           "  (port = 7379, redis-file = /run/credentials/luacached/redis); '#' starts a\n"
           "  comment line; a value is the rest of the line, spaces around it dropped.\n"
           "  Flags on the command line win over the file. --check, --config, --help and\n"
           "  --version are command-line only. An unknown key, a key given twice or a bad\n"
           "  value stops the start-up, naming FILE:LINE.\n"
           "secrets: the Redis URL comes from --redis, else --redis-file, else the\n"
           "  environment variable LUACACHED_REDIS_URL, else the default; the AUTH secret\n"
           "  from --requirepass, else --requirepass-file, else LUACACHED_REQUIREPASS\n"
           "  (a flag and its -file form are one setting: given on the command line, both\n"
           "  keys of the config file are ignored). A file is read once at start: one line,\n"
           "  at most 8192 bytes, trailing newline dropped. Passwords are shown as *** in\n"
           "  the log.\n");
}

/* ------------------------------------------------------------------------
 * The table of options
 * ---------------------------------------------------------------------- */

enum kind {
    K_STR,         /* const char * */
    K_LOGLEVEL,    /* const char *, one of log.h's names */
    K_INT,         /* int, in [min, max] */
    K_LONG,        /* long, in [min, max] */
    K_SIZE,        /* size_t, in [min, max] */
    K_U64,         /* uint64_t, in [min, max] */
    K_BOOL,        /* bool; a flag without a value */
    K_REDIS,       /* the Redis URL: a secret, kept out of argv */
    K_REQUIREPASS, /* the AUTH secret, the same */
};

/* Options that are one setting: a secret and the file it can come from.
 * One of them on the command line masks both in the config file. */
enum group { G_NONE, G_REDIS, G_REQUIREPASS };

typedef struct option {
    const char *name; /* the flag without "--", and the config file's key */
    enum kind kind;
    size_t off; /* the field of config_t */
    long long min, max;
    enum group group;
    bool cli_only; /* not a config-file key */
} option_t;

#define OFF(f) offsetof(config_t, f)
#define STR(n, f)                                                                                  \
    {                                                                                              \
        n, K_STR, OFF(f), 0, 0, G_NONE, false                                                      \
    }
#define NUM(n, k, f, lo, hi)                                                                       \
    {                                                                                              \
        n, k, OFF(f), lo, hi, G_NONE, false                                                        \
    }

static const option_t options[] = {
    {"config", K_STR, OFF(config_file), 0, 0, G_NONE, true},
    {"check", K_BOOL, OFF(check), 0, 0, G_NONE, true},
    STR("bind", bind),
    NUM("port", K_INT, port, 0, 65535),
    {"redis", K_REDIS, OFF(redis_url), 0, 0, G_REDIS, false},
    {"redis-file", K_STR, OFF(redis_file), 0, 0, G_REDIS, false},
    STR("policies", policies_dir),
    STR("prefix", prefix),
    NUM("metrics-port", K_INT, metrics_port, 0, 65535),
    STR("lua-path", lua_path),
    {"requirepass", K_REQUIREPASS, OFF(requirepass), 0, 0, G_REQUIREPASS, false},
    {"requirepass-file", K_STR, OFF(requirepass_file), 0, 0, G_REQUIREPASS, false},
    {"log-level", K_LOGLEVEL, OFF(log_level), 0, 0, G_NONE, false},
    NUM("maxclients", K_LONG, maxclients, 1, 1000000),
    NUM("timeout", K_LONG, timeout_s, 0, 31536000),
    NUM("max-inline", K_SIZE, max_inline, 64, 16LL << 20),
    NUM("max-bulk", K_SIZE, max_bulk, 1024, 1LL << 30),
    NUM("max-args", K_LONG, max_args, 8, 1 << 20),
    NUM("max-request", K_SIZE, max_request, 1024, 16LL << 30),
    /* Redis takes bulks up to 512 MiB (proto-max-bulk-len) and an entry is
     * the value plus a header: leave the header room. */
    NUM("max-value", K_SIZE, max_value, 1024, (512LL << 20) - 4096),
    NUM("output-limit", K_SIZE, output_limit, 1 << 20, 16LL << 30),
    NUM("max-pending", K_LONG, max_pending, 1, 1 << 20),
    NUM("backend-timeout", K_LONG, backend_timeout_ms, 10, 600000),
    NUM("shutdown-grace", K_LONG, shutdown_grace_ms, 0, 600000),
    NUM("slowlog-slower-than", K_LONG, slowlog_slower_than, -1, 1LL << 40),
    NUM("slowlog-max-len", K_LONG, slowlog_max_len, 0, 1 << 20),
    NUM("reload-grace", K_LONG, reload_grace_ms, 0, 3600000),
    NUM("lua-memory", K_SIZE, lua_memory, 1 << 20, 64LL << 30),
    NUM("l1-max-bytes", K_SIZE, l1_max_bytes, 0, 64LL << 30),
    NUM("lua-budget", K_U64, lua_budget, 1000, 1LL << 40),
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

static const option_t *find_option(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strlen(options[i].name) == len && memcmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

/* ------------------------------------------------------------------------
 * State of one parse
 * ---------------------------------------------------------------------- */

static bool on_cli[NOPTIONS];   /* given on the command line */
static int file_line[NOPTIONS]; /* the config file's line that gave it, 0: none */

/* The URL / the password given as such (not from its file or the
 * environment), and whether on the command line; these win over
 * --redis-file / --requirepass-file / the environment. */
static bool redis_direct, redis_on_cli, requirepass_direct, requirepass_on_cli;

/* A config file holding a secret that every user may read: warned about
 * once the log is set up (config_load_secrets). */
static bool file_secret_exposed;
static unsigned file_mode;

/* Every string this file allocated, freed by config_reset(). */
static char **owned;
static size_t nowned, owned_cap;

static char *own(char *s)
{
    if (nowned == owned_cap) {
        owned_cap = owned_cap ? owned_cap * 2 : 16;
        owned = xrealloc(owned, owned_cap * sizeof(*owned));
    }
    owned[nowned++] = s;
    return s;
}

void config_reset(void)
{
    for (size_t i = 0; i < nowned; i++) {
        explicit_bzero(owned[i], strlen(owned[i])); /* some are secrets */
        free(owned[i]);
    }
    free(owned);
    owned = NULL;
    nowned = owned_cap = 0;
    free(cfg.check_paths);
    cfg = (config_t)CONFIG_DEFAULTS;
    memset(on_cli, 0, sizeof(on_cli));
    memset(file_line, 0, sizeof(file_line));
    redis_direct = redis_on_cli = requirepass_direct = requirepass_on_cli = false;
    file_secret_exposed = false;
}

static bool masked_by_cli(const option_t *o)
{
    if (on_cli[o - options]) return true;
    if (o->group == G_NONE) return false;
    for (size_t i = 0; i < NOPTIONS; i++)
        if (options[i].group == o->group && on_cli[i]) return true;
    return false;
}

/* A secret given as a flag value sits in argv, which anyone can read in
 * ps and /proc/PID/cmdline. Keep a copy and overwrite argv's bytes with the
 * redacted text (NUL-padded; the kernel shows that as spaces), so it is
 * visible only for the moment before start-up reached this point. */
static const char *keep_secret(const char *v, bool whole_secret)
{
    char *copy = own(xstrdup(v));
    size_t len = strlen(v);
    char shown[4096];
    if (whole_secret)
        snprintf(shown, sizeof(shown), "***");
    else if (!redact_url(v, shown, sizeof(shown)))
        return copy; /* nothing to hide: argv stays as typed */
    size_t n = strlen(shown);
    if (n > len) n = 0;    /* the redacted form is longer: leave nothing */
    char *dst = (char *)v; /* argv's own bytes, writable */
    memcpy(dst, shown, n);
    memset(dst + n, '\0', len - n);
    return copy;
}

/* Check v for o; on success *n holds a number's value. label names the
 * setting in the error: "--port" or "FILE:LINE: port". */
static int check_value(const option_t *o, const char *v, const char *label, long long *n, char *err,
                       size_t errlen)
{
    enum log_level lvl;
    switch (o->kind) {
    case K_INT:
    case K_LONG:
    case K_SIZE:
    case K_U64:
        if (parse_ll(v, strlen(v), n) != 0 || *n < o->min || *n > o->max) {
            snprintf(err, errlen, "%s wants a whole number from %lld to %lld, got '%.64s'", label,
                     o->min, o->max, v);
            return -1;
        }
        return 0;
    case K_LOGLEVEL:
        if (log_level_parse(v, &lvl) != 0) {
            snprintf(err, errlen, "%s wants debug, info, warn or error, got '%.64s'", label, v);
            return -1;
        }
        return 0;
    case K_BOOL:
        if (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "1") == 0)
            *n = 1;
        else if (strcmp(v, "false") == 0 || strcmp(v, "no") == 0 || strcmp(v, "0") == 0)
            *n = 0;
        else {
            snprintf(err, errlen, "%s wants true or false, got '%.64s'", label, v);
            return -1;
        }
        return 0;
    default:
        return 0;
    }
}

/* Store a checked value. From the command line a string points into argv
 * (which lives as long as the process); from the file it is a copy. */
static void assign(const option_t *o, const char *v, long long n, bool cli, const char *file)
{
    void *dst = (char *)&cfg + o->off;
    switch (o->kind) {
    case K_STR:
    case K_LOGLEVEL:
        *(const char **)dst = cli ? v : own(xstrdup(v));
        break;
    case K_INT:
        *(int *)dst = (int)n;
        break;
    case K_LONG:
        *(long *)dst = (long)n;
        break;
    case K_SIZE:
        *(size_t *)dst = (size_t)n;
        break;
    case K_U64:
        *(uint64_t *)dst = (uint64_t)n;
        break;
    case K_BOOL:
        *(bool *)dst = n != 0;
        break;
    case K_REDIS:
        cfg.redis_url = cli ? keep_secret(v, false) : own(xstrdup(v));
        cfg.redis_url_from = cli ? "--redis" : own(xstrdup(file));
        redis_direct = true;
        redis_on_cli = cli;
        break;
    case K_REQUIREPASS:
        cfg.requirepass = cli ? keep_secret(v, true) : own(xstrdup(v));
        requirepass_direct = true;
        requirepass_on_cli = cli;
        break;
    }
}

/* ------------------------------------------------------------------------
 * The command line
 * ---------------------------------------------------------------------- */

static int parse_args(int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--version") == 0) {
            printf("luacached " LUACACHED_VERSION "\n");
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            /* --check's files and folders; refused below without --check */
            cfg.check_paths = xrealloc(cfg.check_paths, (cfg.ncheck_paths + 1) * sizeof(char *));
            cfg.check_paths[cfg.ncheck_paths++] = a;
            continue;
        }
        /* "--flag value" or "--flag=value"; a boolean flag takes none. */
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const option_t *o = find_option(a + 2, nlen - 2);
        if (!o) {
            snprintf(err, errlen, "unknown option '%.*s' (try --help)",
                     (int)(nlen > 200 ? 200 : nlen), a);
            return -1;
        }
        char label[64];
        snprintf(label, sizeof(label), "--%s", o->name);
        const char *v = NULL;
        if (o->kind == K_BOOL) {
            if (eq) {
                snprintf(err, errlen, "%s takes no value (try --help)", label);
                return -1;
            }
            v = "true";
        } else if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            snprintf(err, errlen, "%s needs a value (try --help)", label);
            return -1;
        }
        long long n = 0;
        if (check_value(o, v, label, &n, err, errlen) != 0) return -1;
        assign(o, v, n, true, NULL);
        on_cli[o - options] = true;
    }
    if (cfg.ncheck_paths && !cfg.check) {
        snprintf(err, errlen,
                 "unexpected argument '%.200s' (only --check takes file names; try "
                 "--help)",
                 cfg.check_paths[0]);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Files: the config file and the secret files
 * ---------------------------------------------------------------------- */

#define SECRET_FILE_MAX 8192
#define CONFIG_FILE_MAX (1 << 20)

/* The whole of a regular file (or a pipe, a credential), NUL-terminated, at
 * most max bytes; NULL with *why set (strerror, or our text in whybuf). */
static char *read_bounded(const char *path, size_t max, size_t *len, unsigned *mode,
                          const char **why, char *whybuf, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        *why = strerror(errno);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        *why = strerror(errno);
        close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        *why = "is a directory";
        close(fd);
        return NULL;
    }
    *mode = S_ISREG(st.st_mode) ? (unsigned)(st.st_mode & 07777) : 0;
    size_t cap = max + 1, n = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            *why = strerror(errno);
            break;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n > max) {
            snprintf(whybuf, whylen, "larger than %zu bytes", max);
            *why = whybuf;
            break;
        }
    }
    close(fd);
    if (*why) {
        explicit_bzero(buf, cap + 1);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    *e = '\0';
    return s;
}

/* One line of the config file (NUL-terminated, no newline). The line's
 * text is never quoted in an error: it may hold a secret. */
static int parse_line(const char *file, int no, char *line, char *err, size_t errlen)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#') return 0;
    char *eq = strchr(s, '=');
    if (!eq) {
        snprintf(err, errlen, "%s:%d: expected 'key = value'", file, no);
        return -1;
    }
    *eq = '\0';
    const char *key = trim(s);
    const char *v = trim(eq + 1);
    const option_t *o = find_option(key, strlen(key));
    if (!o) {
        snprintf(err, errlen,
                 "%s:%d: unknown key '%.64s' (the keys are the long flags without --; see "
                 "luacached --help)",
                 file, no, key);
        return -1;
    }
    if (o->cli_only) {
        snprintf(err, errlen, "%s:%d: %s can only be given on the command line (--%s)", file, no,
                 o->name, o->name);
        return -1;
    }
    size_t i = (size_t)(o - options);
    if (file_line[i]) {
        snprintf(err, errlen, "%s:%d: %s given twice (first at line %d)", file, no, o->name,
                 file_line[i]);
        return -1;
    }
    file_line[i] = no;
    char label[1200];
    snprintf(label, sizeof(label), "%s:%d: %s", file, no, o->name);
    if (*v == '\0') {
        snprintf(err, errlen, "%s needs a value", label);
        return -1;
    }
    long long n = 0;
    if (check_value(o, v, label, &n, err, errlen) != 0) return -1;
    if (masked_by_cli(o)) return 0; /* checked, but the command line wins */
    assign(o, v, n, false, file);
    if (o->kind == K_REQUIREPASS || o->kind == K_REDIS) {
        char shown[16];
        if (o->kind == K_REQUIREPASS || redact_url(v, shown, sizeof(shown)))
            file_secret_exposed = file_mode & S_IROTH;
    }
    return 0;
}

int config_parse_text(const char *file, const char *text, size_t len, char *err, size_t errlen)
{
    if (memchr(text, '\0', len)) {
        snprintf(err, errlen, "%s: holds a NUL byte (not a text file?)", file);
        return -1;
    }
    int no = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = xmemdup(p, n);
        int rc = parse_line(file, ++no, line, err, errlen);
        explicit_bzero(line, n);
        free(line);
        if (rc != 0) return -1;
        p += n + (nl ? 1 : 0);
    }
    return 0;
}

static int read_config_file(const char *path, char *err, size_t errlen)
{
    size_t len = 0;
    const char *why = NULL;
    char whybuf[64];
    char *text =
        read_bounded(path, CONFIG_FILE_MAX, &len, &file_mode, &why, whybuf, sizeof(whybuf));
    if (!text) {
        snprintf(err, errlen, "--config %s: %s", path, why);
        return -1;
    }
    int rc = config_parse_text(path, text, len, err, errlen);
    explicit_bzero(text, len);
    free(text);
    return rc;
}

int config_parse_args(int argc, char **argv, char *err, size_t errlen)
{
    int rc = parse_args(argc, argv, err, errlen);
    if (rc != 0) return rc;
    if (cfg.config_file && read_config_file(cfg.config_file, err, errlen) != 0) return -1;
    return 0;
}

int config_parse(int argc, char **argv)
{
    char err[1536];
    int rc = config_parse_args(argc, argv, err, sizeof(err));
    if (rc < 0) fprintf(stderr, "luacached: %s\n", err);
    return rc;
}

/* ------------------------------------------------------------------------
 * Secrets from files and the environment
 * ---------------------------------------------------------------------- */

static char *secret_file_fail(const char *flag, const char *path, const char *why, char *buf,
                              size_t n)
{
    fprintf(stderr, "luacached: %s %s: %s\n", flag, path, why);
    if (buf) {
        explicit_bzero(buf, n);
        free(buf);
    }
    return NULL;
}

/* The whole file as one line: at most SECRET_FILE_MAX bytes, trailing CR/LF
 * dropped, no NUL and no second line (a stray second line would otherwise
 * silently become part of the password). */
static char *read_secret_file(const char *flag, const char *path)
{
    size_t n = 0;
    unsigned mode = 0;
    const char *why = NULL;
    char whybuf[64];
    char *buf = read_bounded(path, SECRET_FILE_MAX, &n, &mode, &why, whybuf, sizeof(whybuf));
    if (!buf) return secret_file_fail(flag, path, why, NULL, 0);
    if (mode & S_IROTH)
        log_warn("%s %s is readable by every user (mode %04o); chmod o-r it", flag, path, mode);
    size_t cap = n;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    if (n == 0)
        why = "is empty";
    else if (memchr(buf, '\0', n))
        why = "holds a NUL byte";
    else if (memchr(buf, '\n', n) || memchr(buf, '\r', n))
        why = "holds more than one line";
    if (why) return secret_file_fail(flag, path, why, buf, cap);
    return own(buf);
}

/* One secret setting: the value given as such (already in *value when
 * direct), else the file, else the environment. */
static int load_one(bool direct, const char *flag, const char *file_flag, const char *file,
                    const char *env, const char **value, const char **from)
{
    if (direct) {
        if (file) log_warn("%s given: %s %s not read", flag, file_flag, file);
        return 0;
    }
    if (file) {
        char *v = read_secret_file(file_flag, file);
        if (!v) return -1;
        *value = v;
        if (from) *from = file_flag;
        return 0;
    }
    const char *e = getenv(env);
    if (e && e[0]) {
        *value = e;
        if (from) *from = env;
    }
    return 0;
}

int config_load_secrets(void)
{
    if (load_one(redis_direct, "--redis", "--redis-file", cfg.redis_file, "LUACACHED_REDIS_URL",
                 &cfg.redis_url, &cfg.redis_url_from) != 0)
        return -1;
    if (load_one(requirepass_direct, "--requirepass", "--requirepass-file", cfg.requirepass_file,
                 "LUACACHED_REQUIREPASS", &cfg.requirepass, NULL) != 0)
        return -1;
    if (redis_on_cli) {
        char shown[1024];
        if (redact_url(cfg.redis_url, shown, sizeof(shown)))
            log_warn("the --redis URL holds a password, visible in ps until start-up hid it; "
                     "prefer --redis-file or LUACACHED_REDIS_URL");
    }
    if (requirepass_on_cli)
        log_warn("--requirepass is visible in ps until start-up hid it; prefer "
                 "--requirepass-file or LUACACHED_REQUIREPASS");
    if (file_secret_exposed)
        log_warn("--config %s holds a secret and is readable by every user (mode %04o); chmod "
                 "o-r it, or move the secret to redis-file / requirepass-file",
                 cfg.config_file, file_mode);
    return 0;
}
