/* config.c: command-line parsing. Every flag has a default that works for a
 * local demo and a bound that keeps a hostile client from hurting others. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "redact.h"
#include "util.h"

uint64_t lc_start_mono_ms;

config_t cfg = {
    .bind = "127.0.0.1",
    .port = 7379,
    .redis_url = "redis://127.0.0.1:6379/0",
    .redis_url_from = "default",
    .policies_dir = "./policies",
    .prefix = "lc",
    .metrics_port = 9379,
    .lua_path = NULL,
    .requirepass = NULL,
    .log_level = "info",
    .check = false,
    .maxclients = 10000,
    .timeout_s = 300,
    .max_inline = 64 * 1024,
    .max_bulk = 64 * 1024 * 1024,
    .max_args = 64 * 1024,
    .max_request = 256 * 1024 * 1024,
    .max_value = 64 * 1024 * 1024,
    .output_limit = 256 * 1024 * 1024,
    .max_pending = 1024,
    .backend_timeout_ms = 1000,
    .lua_memory = 64 * 1024 * 1024,
    .l1_max_bytes = 64 * 1024 * 1024,
    .lua_budget = 100 * 1000 * 1000,
    .shutdown_grace_ms = 5000,
};

static void usage(FILE *f)
{
    fprintf(
        f, "usage: luacached [options]\n"
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
           "  --lua-path DIR         shipped lua/ helpers (default: lua/ next to the binary)\n"
           "  --requirepass SECRET   require AUTH before any other command\n"
           "  --requirepass-file PATH  read that secret from a file\n"
           "  --log-level L          debug|info|warn|error (default info)\n"
           "  --check                validate every policy, print errors, exit non-zero on any\n"
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
           "  --version, --help\n"
           "secrets: the Redis URL comes from --redis, else --redis-file, else the\n"
           "  environment variable LUACACHED_REDIS_URL, else the default; the AUTH secret\n"
           "  from --requirepass, else --requirepass-file, else LUACACHED_REQUIREPASS.\n"
           "  A file is read once at start: one line, at most 8192 bytes, trailing newline\n"
           "  dropped. Passwords are shown as *** in the log.\n");
}

/* Set on the command line (as opposed to from a file, the environment or
 * the default): these win over --redis-file / --requirepass-file / env. */
static bool redis_flag, requirepass_flag;

/* A secret given as a flag value sits in argv, which anyone can read in
 * ps and /proc/PID/cmdline. Keep a copy and overwrite argv's bytes with the
 * redacted text (NUL-padded; the kernel shows that as spaces), so it is
 * visible only for the moment before start-up reached this point. */
static const char *keep_secret(const char *v, bool whole_secret, const char *prev)
{
    if (prev) free((char *)prev); /* the flag given twice: the last one counts */
    char *copy = xstrdup(v);
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

static int want_ll(const char *flag, const char *v, long long min, long long max, long long *out)
{
    if (parse_ll(v, strlen(v), out) != 0 || *out < min || *out > max) {
        fprintf(stderr, "luacached: %s wants a whole number from %lld to %lld, got '%s'\n", flag,
                min, max, v);
        return -1;
    }
    return 0;
}

int config_parse(int argc, char **argv)
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
        if (strcmp(a, "--check") == 0) {
            cfg.check = true;
            continue;
        }
        /* Every other flag takes a value, as "--flag value" or "--flag=value". */
        const char *v = NULL;
        char name[64];
        const char *eq = strchr(a, '=');
        if (eq && (size_t)(eq - a) < sizeof(name)) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = '\0';
            v = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", a);
            if (i + 1 < argc) v = argv[++i];
        }
        if (strncmp(name, "--", 2) != 0) {
            fprintf(stderr, "luacached: unexpected argument '%s' (try --help)\n", a);
            return -1;
        }
        if (!v) {
            fprintf(stderr, "luacached: %s needs a value (try --help)\n", name);
            return -1;
        }
        long long n = 0;
        if (strcmp(name, "--bind") == 0)
            cfg.bind = v;
        else if (strcmp(name, "--redis") == 0) {
            cfg.redis_url = keep_secret(v, false, redis_flag ? cfg.redis_url : NULL);
            cfg.redis_url_from = "--redis";
            redis_flag = true;
        } else if (strcmp(name, "--redis-file") == 0)
            cfg.redis_file = v;
        else if (strcmp(name, "--requirepass-file") == 0)
            cfg.requirepass_file = v;
        else if (strcmp(name, "--policies") == 0)
            cfg.policies_dir = v;
        else if (strcmp(name, "--prefix") == 0)
            cfg.prefix = v;
        else if (strcmp(name, "--lua-path") == 0)
            cfg.lua_path = v;
        else if (strcmp(name, "--requirepass") == 0) {
            cfg.requirepass = keep_secret(v, true, requirepass_flag ? cfg.requirepass : NULL);
            requirepass_flag = true;
        } else if (strcmp(name, "--log-level") == 0)
            cfg.log_level = v;
        else if (strcmp(name, "--port") == 0) {
            if (want_ll(name, v, 0, 65535, &n)) return -1;
            cfg.port = (int)n;
        } else if (strcmp(name, "--metrics-port") == 0) {
            if (want_ll(name, v, 0, 65535, &n)) return -1;
            cfg.metrics_port = (int)n;
        } else if (strcmp(name, "--maxclients") == 0) {
            if (want_ll(name, v, 1, 1000000, &n)) return -1;
            cfg.maxclients = (long)n;
        } else if (strcmp(name, "--timeout") == 0) {
            if (want_ll(name, v, 0, 31536000, &n)) return -1;
            cfg.timeout_s = (long)n;
        } else if (strcmp(name, "--max-inline") == 0) {
            if (want_ll(name, v, 64, 16LL << 20, &n)) return -1;
            cfg.max_inline = (size_t)n;
        } else if (strcmp(name, "--max-bulk") == 0) {
            if (want_ll(name, v, 1024, 1LL << 30, &n)) return -1;
            cfg.max_bulk = (size_t)n;
        } else if (strcmp(name, "--max-args") == 0) {
            if (want_ll(name, v, 8, 1 << 20, &n)) return -1;
            cfg.max_args = (long)n;
        } else if (strcmp(name, "--max-request") == 0) {
            if (want_ll(name, v, 1024, 16LL << 30, &n)) return -1;
            cfg.max_request = (size_t)n;
        } else if (strcmp(name, "--max-value") == 0) {
            /* Redis takes bulks up to 512 MiB (proto-max-bulk-len) and an
             * entry is the value plus a header: leave the header room. */
            if (want_ll(name, v, 1024, (512LL << 20) - 4096, &n)) return -1;
            cfg.max_value = (size_t)n;
        } else if (strcmp(name, "--output-limit") == 0) {
            if (want_ll(name, v, 1 << 20, 16LL << 30, &n)) return -1;
            cfg.output_limit = (size_t)n;
        } else if (strcmp(name, "--max-pending") == 0) {
            if (want_ll(name, v, 1, 1 << 20, &n)) return -1;
            cfg.max_pending = (long)n;
        } else if (strcmp(name, "--backend-timeout") == 0) {
            if (want_ll(name, v, 10, 600000, &n)) return -1;
            cfg.backend_timeout_ms = (long)n;
        } else if (strcmp(name, "--shutdown-grace") == 0) {
            if (want_ll(name, v, 0, 600000, &n)) return -1;
            cfg.shutdown_grace_ms = (long)n;
        } else if (strcmp(name, "--lua-memory") == 0) {
            if (want_ll(name, v, 1 << 20, 64LL << 30, &n)) return -1;
            cfg.lua_memory = (size_t)n;
        } else if (strcmp(name, "--l1-max-bytes") == 0) {
            if (want_ll(name, v, 0, 64LL << 30, &n)) return -1;
            cfg.l1_max_bytes = (size_t)n;
        } else if (strcmp(name, "--lua-budget") == 0) {
            if (want_ll(name, v, 1000, 1LL << 40, &n)) return -1;
            cfg.lua_budget = (uint64_t)n;
        } else {
            fprintf(stderr, "luacached: unknown option '%s' (try --help)\n", name);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Secrets from files and the environment
 * ---------------------------------------------------------------------- */

#define SECRET_FILE_MAX 8192

static char *secret_file_fail(const char *flag, const char *path, const char *why, char *buf,
                              size_t n, int fd)
{
    fprintf(stderr, "luacached: %s %s: %s\n", flag, path, why);
    if (buf) {
        explicit_bzero(buf, n);
        free(buf);
    }
    if (fd >= 0) close(fd);
    return NULL;
}

/* The whole file as one line: at most SECRET_FILE_MAX bytes, trailing CR/LF
 * dropped, no NUL and no second line (a stray second line would otherwise
 * silently become part of the password). */
static char *read_secret_file(const char *flag, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return secret_file_fail(flag, path, strerror(errno), NULL, 0, -1);
    struct stat st;
    if (fstat(fd, &st) != 0) return secret_file_fail(flag, path, strerror(errno), NULL, 0, fd);
    if (S_ISDIR(st.st_mode)) return secret_file_fail(flag, path, "is a directory", NULL, 0, fd);
    if (S_ISREG(st.st_mode) && (st.st_mode & S_IROTH))
        log_warn("%s %s is readable by every user (mode %04o); chmod o-r it", flag, path,
                 (unsigned)(st.st_mode & 07777));
    size_t cap = SECRET_FILE_MAX + 1, n = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return secret_file_fail(flag, path, strerror(errno), buf, cap, fd);
        if (r == 0) break;
        n += (size_t)r;
        if (n > SECRET_FILE_MAX) {
            char why[64];
            snprintf(why, sizeof(why), "larger than %d bytes", SECRET_FILE_MAX);
            return secret_file_fail(flag, path, why, buf, cap, fd);
        }
    }
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    const char *why = NULL;
    if (n == 0)
        why = "is empty";
    else if (memchr(buf, '\0', n))
        why = "holds a NUL byte";
    else if (memchr(buf, '\n', n) || memchr(buf, '\r', n))
        why = "holds more than one line";
    if (why) return secret_file_fail(flag, path, why, buf, cap, -1);
    return buf;
}

/* One secret setting: the flag (already in *value when flag_set), else
 * the file, else the environment. */
static int load_one(bool flag_set, const char *flag, const char *file_flag, const char *file,
                    const char *env, const char **value, const char **from)
{
    if (flag_set) {
        if (file) log_warn("%s given on the command line: %s %s not read", flag, file_flag, file);
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
    if (load_one(redis_flag, "--redis", "--redis-file", cfg.redis_file, "LUACACHED_REDIS_URL",
                 &cfg.redis_url, &cfg.redis_url_from) != 0)
        return -1;
    if (load_one(requirepass_flag, "--requirepass", "--requirepass-file", cfg.requirepass_file,
                 "LUACACHED_REQUIREPASS", &cfg.requirepass, NULL) != 0)
        return -1;
    if (redis_flag) {
        char shown[1024];
        if (redact_url(cfg.redis_url, shown, sizeof(shown)))
            log_warn("the --redis URL holds a password, visible in ps until start-up hid it; "
                     "prefer --redis-file or LUACACHED_REDIS_URL");
    }
    if (requirepass_flag)
        log_warn("--requirepass is visible in ps until start-up hid it; prefer "
                 "--requirepass-file or LUACACHED_REQUIREPASS");
    return 0;
}
