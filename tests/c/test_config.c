/* test_config.c: the option table of src/config.c, read from the command
 * line and from config-file text: values and bounds, the command line
 * winning over the file, a secret and its file as one setting, and every
 * error naming its flag or FILE:LINE without quoting a secret. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "config.h"
#include "check.h"

static char err[2048];

/* argv from a NULL-terminated list, in writable copies (config.c
 * overwrites a secret's bytes in argv, as the kernel's argv allows). */
static char *args_buf[32];
static int nargs;

static char **make_argv(const char *const *list)
{
    for (int i = 0; i < nargs; i++)
        free(args_buf[i]);
    nargs = 0;
    args_buf[nargs++] = strdup("luacached");
    for (int i = 0; list[i]; i++)
        args_buf[nargs++] = strdup(list[i]);
    args_buf[nargs] = NULL;
    return args_buf;
}

static int args(const char *const *list)
{
    err[0] = '\0';
    char **argv = make_argv(list);
    return config_parse_args(nargs, argv, err, sizeof(err));
}

static int text(const char *t)
{
    err[0] = '\0';
    return config_parse_text("test.conf", t, strlen(t), err, sizeof(err));
}

static bool has(const char *s)
{
    return strstr(err, s) != NULL;
}

static void test_defaults_and_every_kind(void)
{
    config_reset();
    CHECK(cfg.port == 7379 && cfg.metrics_port == 9379 && !cfg.check);
    CHECK(strcmp(cfg.redis_url_from, "default") == 0);
    REQUIRE(text("# a comment\n"
                 "\n"
                 "port = 7000\n"
                 "  metrics-port=0  \n"
                 "\tbind\t=\t0.0.0.0\t\n"
                 "policies = /etc/luacached/policies\r\n"
                 "prefix = my cache\n" /* inner spaces are part of the value */
                 "log-level = warn\n"
                 "timeout = 0\n"
                 "max-value = 1048576\n"
                 "lua-budget = 5000\n"
                 "backend-timeout = 250\n"
                 "lua-path = /usr/share/luacached/lua") == 0); /* no final newline */
    CHECK(cfg.port == 7000);
    CHECK(cfg.metrics_port == 0);
    CHECK(strcmp(cfg.bind, "0.0.0.0") == 0);
    CHECK(strcmp(cfg.policies_dir, "/etc/luacached/policies") == 0);
    CHECK(strcmp(cfg.prefix, "my cache") == 0);
    CHECK(strcmp(cfg.log_level, "warn") == 0);
    CHECK(cfg.timeout_s == 0);
    CHECK(cfg.max_value == 1048576);
    CHECK(cfg.lua_budget == 5000);
    CHECK(cfg.backend_timeout_ms == 250);
    CHECK(strcmp(cfg.lua_path, "/usr/share/luacached/lua") == 0);
    CHECK(cfg.maxclients == 10000); /* untouched keys keep their defaults */
    config_reset();
    CHECK(cfg.port == 7379 && cfg.lua_path == NULL && strcmp(cfg.bind, "127.0.0.1") == 0);
}

static void test_file_errors_name_file_and_line(void)
{
    config_reset();
    REQUIRE(text("port = 1\n# x\nbogus = 3\n") == -1);
    CHECK(has("test.conf:3: unknown key 'bogus'"));
    CHECK(has("--help"));

    config_reset();
    REQUIRE(text("--port = 3\n") == -1); /* the key is the flag without -- */
    CHECK(has("test.conf:1: unknown key '--port'"));

    config_reset();
    REQUIRE(text("\n\nport = 65536\n") == -1);
    CHECK(has("test.conf:3: port wants a whole number from 0 to 65535, got '65536'"));

    config_reset();
    REQUIRE(text("maxclients = 0\n") == -1);
    CHECK(has("test.conf:1: maxclients wants a whole number from 1 to 1000000"));

    config_reset();
    REQUIRE(text("max-bulk = 12k\n") == -1);
    CHECK(has("test.conf:1: max-bulk wants a whole number"));

    config_reset();
    REQUIRE(text("log-level = verbose\n") == -1);
    CHECK(has("test.conf:1: log-level wants debug, info, warn or error, got 'verbose'"));

    config_reset();
    REQUIRE(text("port = 1\nport = 2\n") == -1);
    CHECK(has("test.conf:2: port given twice (first at line 1)"));

    config_reset();
    REQUIRE(text("port =\n") == -1);
    CHECK(has("test.conf:1: port needs a value"));

    for (int i = 0; i < 2; i++) {
        config_reset();
        REQUIRE(text(i ? "config = /etc/other.conf\n" : "check = true\n") == -1);
        CHECK(has(i ? "test.conf:1: config can only be given on the command line"
                    : "test.conf:1: check can only be given on the command line (--check)"));
    }

    /* a line without '=' is not quoted: it may be a mistyped secret */
    config_reset();
    REQUIRE(text("port = 1\nrequirepass hunter2\n") == -1);
    CHECK(has("test.conf:2: expected 'key = value'"));
    CHECK(!has("hunter2"));

    config_reset();
    REQUIRE(config_parse_text("nul.conf", "port = 1\0x", 10, err, sizeof(err)) == -1);
    CHECK(has("nul.conf: holds a NUL byte"));
}

static void test_command_line(void)
{
    config_reset();
    REQUIRE(args((const char *const[]){"--port", "8000", "--metrics-port=0", "--check",
                                       "--log-level", "debug", NULL}) == 0);
    CHECK(cfg.port == 8000 && cfg.metrics_port == 0 && cfg.check);
    CHECK(strcmp(cfg.log_level, "debug") == 0);

    /* a mistyped boolean flag is unknown, wherever it stands */
    config_reset();
    REQUIRE(args((const char *const[]){"--chek", NULL}) == -1);
    CHECK(has("unknown option '--chek'"));
    config_reset();
    REQUIRE(args((const char *const[]){"--chek", "--port", "1", NULL}) == -1);
    CHECK(has("unknown option '--chek'"));
    config_reset();
    REQUIRE(args((const char *const[]){"--check=yes", NULL}) == -1);
    CHECK(has("--check takes no value"));

    config_reset();
    REQUIRE(args((const char *const[]){"--port", NULL}) == -1);
    CHECK(has("--port needs a value"));
    config_reset();
    REQUIRE(args((const char *const[]){"--port", "x1", NULL}) == -1);
    CHECK(has("--port wants a whole number from 0 to 65535, got 'x1'"));
    config_reset();
    REQUIRE(args((const char *const[]){"--log-level=loud", NULL}) == -1);
    CHECK(has("--log-level wants debug, info, warn or error, got 'loud'"));
    config_reset();
    REQUIRE(args((const char *const[]){"port", NULL}) == -1);
    CHECK(has("unexpected argument 'port'"));
    CHECK(has("only --check takes file names"));

    /* --check's files and folders, before or after it */
    config_reset();
    REQUIRE(args((const char *const[]){"p/a.lua", "--check", "q/", NULL}) == 0);
    REQUIRE(cfg.check && cfg.ncheck_paths == 2);
    CHECK(strcmp(cfg.check_paths[0], "p/a.lua") == 0 && strcmp(cfg.check_paths[1], "q/") == 0);
    config_reset();
    CHECK(cfg.ncheck_paths == 0 && cfg.check_paths == NULL);

    /* the grace of a deleted policy file: a flag and a config-file key */
    CHECK(cfg.reload_grace_ms == 5000);
    REQUIRE(args((const char *const[]){"--reload-grace", "250", NULL}) == 0);
    CHECK(cfg.reload_grace_ms == 250);
    config_reset();
    REQUIRE(text("reload-grace = 0\n") == 0);
    CHECK(cfg.reload_grace_ms == 0);
    config_reset();
    REQUIRE(args((const char *const[]){"--reload-grace", "-1", NULL}) == -1);
    CHECK(has("--reload-grace wants a whole number from 0 to 3600000"));
}

static void test_command_line_wins(void)
{
    config_reset();
    REQUIRE(args((const char *const[]){"--port", "8000", "--prefix=cli", NULL}) == 0);
    REQUIRE(text("port = 9000\nprefix = file\nbind = ::1\n") == 0);
    CHECK(cfg.port == 8000);
    CHECK(strcmp(cfg.prefix, "cli") == 0);
    CHECK(strcmp(cfg.bind, "::1") == 0); /* not on the command line: the file's */

    /* a key the command line overrides is still checked */
    config_reset();
    REQUIRE(args((const char *const[]){"--port", "8000", NULL}) == 0);
    REQUIRE(text("port = many\n") == -1);
    CHECK(has("test.conf:1: port wants a whole number"));
}

static void test_secrets(void)
{
    /* from the file: the URL and where it came from */
    config_reset();
    REQUIRE(text("redis = redis://:pw@10.0.0.1:6379/2\nrequirepass = s3cret\n") == 0);
    CHECK(strcmp(cfg.redis_url, "redis://:pw@10.0.0.1:6379/2") == 0);
    CHECK(strcmp(cfg.redis_url_from, "test.conf") == 0);
    CHECK(strcmp(cfg.requirepass, "s3cret") == 0);

    /* a flag and its -file form are one setting: --redis-file on the
     * command line masks the file's redis (and its redis-file) */
    config_reset();
    REQUIRE(args((const char *const[]){"--redis-file", "/run/cred/redis", NULL}) == 0);
    REQUIRE(text("redis = redis://file-host:1/0\nrequirepass-file = /etc/pass\n") == 0);
    CHECK(strcmp(cfg.redis_url, "redis://127.0.0.1:6379/0") == 0);
    CHECK(strcmp(cfg.redis_file, "/run/cred/redis") == 0);
    CHECK(strcmp(cfg.requirepass_file, "/etc/pass") == 0); /* another setting: the file's */

    config_reset();
    REQUIRE(args((const char *const[]){"--requirepass", "cli-pass", NULL}) == 0);
    REQUIRE(text("requirepass-file = /etc/pass\nrequirepass = file-pass\n") == 0);
    CHECK(strcmp(cfg.requirepass, "cli-pass") == 0);
    CHECK(cfg.requirepass_file == NULL);
    /* argv no longer shows the secret */
    CHECK(strcmp(args_buf[2], "***") == 0);

    /* the secret file named by the config file is read by load_secrets */
    char path[] = "/tmp/test_config_secret.XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, "redis://:frompath@h:7/1\n", 24) == 24);
    close(fd);
    config_reset();
    char conf[256];
    snprintf(conf, sizeof(conf), "redis-file = %s\n", path);
    REQUIRE(text(conf) == 0);
    REQUIRE(config_load_secrets() == 0);
    CHECK(strcmp(cfg.redis_url, "redis://:frompath@h:7/1") == 0);
    CHECK(strcmp(cfg.redis_url_from, "--redis-file") == 0);
    unlink(path);
    config_reset();
}

static void test_config_flag_reads_the_file(void)
{
    char path[] = "/tmp/test_config_conf.XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    const char *body = "port = 6001\nmax-pending = 7\n";
    REQUIRE(write(fd, body, strlen(body)) == (ssize_t)strlen(body));
    close(fd);
    config_reset();
    REQUIRE(args((const char *const[]){"--max-pending", "9", "--config", path, NULL}) == 0);
    CHECK(cfg.port == 6001);
    CHECK(cfg.max_pending == 9);
    CHECK(strcmp(cfg.config_file, path) == 0);

    /* errors name the file as given */
    fd = open(path, O_WRONLY | O_TRUNC);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, "\nbogus = 1\n", 11) == 11);
    close(fd);
    config_reset();
    REQUIRE(args((const char *const[]){"--config", path, NULL}) == -1);
    char want[128];
    snprintf(want, sizeof(want), "%s:2: unknown key 'bogus'", path);
    CHECK(has(want));
    unlink(path);

    config_reset();
    REQUIRE(args((const char *const[]){"--config", "/nonexistent/luacached.conf", NULL}) == -1);
    CHECK(has("--config /nonexistent/luacached.conf: No such file or directory"));
    config_reset();
    REQUIRE(args((const char *const[]){"--config", "/tmp", NULL}) == -1);
    CHECK(has("--config /tmp: is a directory"));
    config_reset();
}

/* SLOWLOG's thresholds: Redis's defaults; -1 (off) is a value, not a flag. */
static void test_slowlog_options(void)
{
    config_reset();
    REQUIRE(args((const char *const[]){NULL}) == 0);
    CHECK(cfg.slowlog_slower_than == 10000 && cfg.slowlog_max_len == 128);
    config_reset();
    REQUIRE(args((const char *const[]){"--slowlog-slower-than", "-1", "--slowlog-max-len=0",
                                       NULL}) == 0);
    CHECK(cfg.slowlog_slower_than == -1 && cfg.slowlog_max_len == 0);
    config_reset();
    REQUIRE(args((const char *const[]){"--slowlog-slower-than", "-2", NULL}) == -1);
    CHECK(has("--slowlog-slower-than wants a whole number from -1 to"));
    config_reset();
}

int main(void)
{
    RUN(test_defaults_and_every_kind);
    RUN(test_file_errors_name_file_and_line);
    RUN(test_command_line);
    RUN(test_command_line_wins);
    RUN(test_secrets);
    RUN(test_config_flag_reads_the_file);
    RUN(test_slowlog_options);
    for (int i = 0; i < nargs; i++)
        free(args_buf[i]);
    return check_summary("test_config");
}
