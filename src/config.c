/* config.c: command-line parsing. Every flag has a default that works for a
 * local demo and a bound that keeps a hostile client from hurting others. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

uint64_t lc_start_mono_ms;

config_t cfg = {
    .bind = "127.0.0.1",
    .port = 7379,
    .redis_url = "redis://127.0.0.1:6379/0",
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
           "  --redis URL            redis://[:pass@]host[:port][/db] or unix:/path\n"
           "                         (default redis://127.0.0.1:6379/0)\n"
           "  --policies DIR         policy folder, one NS.lua per namespace (default ./policies)\n"
           "  --prefix P             Redis key prefix (default lc)\n"
           "  --metrics-port N       HTTP /metrics port, 0 = off (default 9379)\n"
           "  --lua-path DIR         shipped lua/ helpers (default: lua/ next to the binary)\n"
           "  --requirepass SECRET   require AUTH before any other command\n"
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
           "  --version, --help\n");
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
        else if (strcmp(name, "--redis") == 0)
            cfg.redis_url = v;
        else if (strcmp(name, "--policies") == 0)
            cfg.policies_dir = v;
        else if (strcmp(name, "--prefix") == 0)
            cfg.prefix = v;
        else if (strcmp(name, "--lua-path") == 0)
            cfg.lua_path = v;
        else if (strcmp(name, "--requirepass") == 0)
            cfg.requirepass = v;
        else if (strcmp(name, "--log-level") == 0)
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
