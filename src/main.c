/* main.c: start-up, signals and graceful shutdown of luacached. */
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <uv.h>

#include "backend.h"
#include "bus.h"
#include "cache.h"
#include "commands.h"
#include "config.h"
#include "fill.h"
#include "http_client.h"
#include "l1_link.h"
#include "log.h"
#include "metrics_http.h"
#include "nsgen.h"
#include "policy.h"
#include "redact.h"
#include "server.h"
#include "store.h"
#include "tags.h"
#include "util.h"
#include "warm.h"
#include "watch.h"
#include "write_behind.h"

static uv_loop_t *loop;
static uv_signal_t sig_term, sig_int, sig_hup;
static uv_timer_t shutdown_timer;
static bool shutting_down;
static uint64_t shutdown_started;
static bool aborted_fetches;

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The shipped lua/ helpers live next to the binary (build/lua), or in
 * ../share/luacached/lua for an installed binary (cmake --install), or in
 * ./lua. NULL, with the places looked at printed, when none is a folder:
 * a copied binary would otherwise fail with a bare "./lua: No such file". */
static const char *default_lua_path(void)
{
    static char path[PATH_MAX + 32];
    char exe[PATH_MAX];
    size_t len = sizeof(exe);
    char beside[PATH_MAX + 32] = "", shared[PATH_MAX + 32] = "";
    if (uv_exepath(exe, &len) == 0) {
        char *dir = dirname(exe);
        snprintf(beside, sizeof(beside), "%s/lua", dir);
        snprintf(shared, sizeof(shared), "%s/../share/luacached/lua", dir);
    }
    const char *candidates[] = {beside, shared, "./lua"};
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
        if (candidates[i][0] && is_dir(candidates[i])) {
            snprintf(path, sizeof(path), "%s", candidates[i]);
            return path;
        }
    }
    fprintf(stderr,
            "luacached: cannot find the shipped lua/ helpers (looked in %s, %s and ./lua); "
            "use --lua-path DIR to name the folder (the lua/ of the source tree, or "
            "PREFIX/share/luacached/lua after cmake --install)\n",
            beside[0] ? beside : "<binary's folder>/lua",
            shared[0] ? shared : "<binary's folder>/../share/luacached/lua");
    return NULL;
}

/* A namespace appeared after start-up: it may have been flushed before,
 * and it warms as at start. */
static void on_ns_served(ns_t *ns)
{
    nsgen_sync(ns);
    warm_ns_served(ns);
}

/* The cache layer's modules tell each other what happened over the bus
 * (bus.h); each registers its listeners here. Listeners of a type run in
 * this order, and it matters: the tier's first, so that on a
 * (re)subscription its epoch has moved before fills re-read (their reads
 * may then fill the tier), and its item of a landed key is gone before a
 * waiting fill re-reads it. */
static int wire_cache(void)
{
    if (l1_link_listen() != 0 || fill_listen() != 0 || nsgen_listen() != 0 ||
        tags_listen(fills_oldest_fetch) != 0) {
        log_error("wiring the cache's listeners failed: more than %d per message type",
                  BUS_MAX_LISTENERS);
        return -1;
    }
    engine_set_ns_served_hook(on_ns_served);
    warm_init();
    return 0;
}

/* Shutdown grace over: fail what waits; start no new fetches. */
static void shutdown_cache(void)
{
    warm_shutdown();
    write_behind_stop();
    cache_shutdown();
}

static void close_everything(void)
{
    uv_timer_stop(&shutdown_timer);
    uv_close((uv_handle_t *)&shutdown_timer, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    shutdown_cache(); /* before backend_close: its NULL replies must not start fetches */
    server_close_clients();
    metrics_http_stop();
    store_close(); /* its batch goes out, and fails with the rest, below */
    backend_close();
    watch_stop(); /* hot reload: before the engine it feeds */
    engine_close();
    http_client_close();
}

/* Graceful shutdown: stop accepting, let in-flight requests finish for up
 * to --shutdown-grace, then fail what is left ("shutting down") so every
 * waiting client still gets an answer, then close. */
static void on_shutdown_tick(uv_timer_t *t)
{
    LC_UNUSED(t);
    /* A write-behind batch in flight (or a queue being drained) holds the
     * exit too, until the grace is over. */
    bool idle = fetches_in_flight() == 0 && server_pending_replies() == 0 &&
                (aborted_fetches || !write_behind_busy());
    if (idle) {
        log_info("shutdown complete");
        close_everything();
        return;
    }
    if (!aborted_fetches && mono_ms() - shutdown_started >= (uint64_t)cfg.shutdown_grace_ms) {
        log_warn("shutdown grace over: failing %zu fetches still in flight", fetches_in_flight());
        aborted_fetches = true;
        shutdown_cache();
        fetch_abort_all();
    } else if (aborted_fetches && mono_ms() - shutdown_started >= (uint64_t)cfg.shutdown_grace_ms +
                                                                      2 * cfg.backend_timeout_ms) {
        log_warn("shutdown: %ld replies still pending, closing anyway", server_pending_replies());
        close_everything();
    }
}

static void on_sighup_reloaded(void *priv, const char *err)
{
    LC_UNUSED(priv);
    if (err)
        log_warn("SIGHUP reload: %s", err);
    else
        log_info("SIGHUP reload: every policy loaded");
}

static void on_signal(uv_signal_t *h, int signum)
{
    if (signum == SIGHUP) {
        /* The same path as RELOAD: read off the loop, then apply. */
        log_info("SIGHUP: reloading policies");
        watch_reload(NULL, 0, on_sighup_reloaded, NULL);
        return;
    }
    if (shutting_down) return;
    shutting_down = true;
    log_info("%s: shutting down (waiting up to %ld ms for in-flight requests)",
             signum == SIGINT ? "SIGINT" : "SIGTERM", cfg.shutdown_grace_ms);
    LC_UNUSED(h);
    server_stop_listening();
    warm_stop();          /* no new warm fetches: in-flight work finishes */
    write_behind_drain(); /* flush the write-behind queues at once */
    shutdown_started = mono_ms();
    uv_timer_start(&shutdown_timer, on_shutdown_tick, 0, 20);
}

int main(int argc, char **argv)
{
    lc_start_mono_ms = mono_ms();
    int rc = config_parse(argc, argv);
    if (rc != 0) return rc > 0 ? 0 : 2;
    enum log_level lvl;
    if (log_level_parse(cfg.log_level, &lvl) != 0) {
        fprintf(stderr, "luacached: --log-level wants debug, info, warn or error, got '%s'\n",
                cfg.log_level);
        return 2;
    }
    log_min_level = lvl;
    if (config_load_secrets() != 0) return 2;
    const char *lua_path = cfg.lua_path ? cfg.lua_path : default_lua_path();
    if (!lua_path) return 2;
    engine_conf_t econf = {
        .policies_dir = cfg.policies_dir,
        .lua_path = lua_path,
        .mem_limit = cfg.lua_memory,
        .instr_budget = cfg.lua_budget,
    };
    if (cfg.check) return engine_check(&econf, cfg.check_paths, cfg.ncheck_paths) == 0 ? 0 : 1;

    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    char err[512];
    if (engine_init(loop, &econf, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return 1;
    }
    if (http_client_init(loop) != 0) return 1;
    int failed = engine_load_all();
    log_info("loaded %zu namespaces from %s (%d failed)", ns_count(), cfg.policies_dir, failed);
    backend_conf_t bconf = {.url = cfg.redis_url, .timeout_ms = cfg.backend_timeout_ms};
    if (backend_init(loop, &bconf, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return 2;
    }
    if (backend_clustered() && strpbrk(cfg.prefix, "{}")) {
        /* Our keys' own hash tag ({NS:ID}) must be the first one Redis
         * sees, or an entry and its lock may land in different slots. */
        log_error("--prefix '%s': a prefix for a Redis Cluster must not contain '{' or '}' (the "
                  "key layout puts its own hash tag after it)",
                  cfg.prefix);
        backend_close();
        return 2;
    }
    store_init(loop); /* before the link comes up: it loads the scripts then */
    cache_init(loop);
    if (wire_cache() != 0) return 1;
    write_behind_init(loop);
    commands_init();
    if (server_start(loop, commands_dispatch, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return 1;
    }
    /* The HTTP metrics endpoint (off with --metrics-port 0). */
    if (metrics_http_start(loop, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return 1;
    }
    /* Hot reload (SPEC §4): watch the policies folder. */
    watch_start(loop, cfg.policies_dir, (uint64_t)cfg.reload_grace_ms);
    uv_timer_init(loop, &shutdown_timer);
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_hup);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_hup, on_signal, SIGHUP);
    char redis_shown[1024];
    redact_url(cfg.redis_url, redis_shown, sizeof(redis_shown));
    log_info("luacached %s listening on %s:%d, redis %s (from %s)", LUACACHED_VERSION, cfg.bind,
             cfg.port, redis_shown, cfg.redis_url_from);

    uv_run(loop, UV_RUN_DEFAULT);

    cache_close();
    write_behind_close();
    bus_reset();
    commands_free();
    int close_rc = uv_loop_close(loop);
    if (close_rc != 0) log_warn("event loop closed with handles still open");
    return 0;
}
