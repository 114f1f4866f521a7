/* config.h: the server's settings, from the command line and a --config
 * file (SPEC §1). */
#ifndef LC_CONFIG_H
#define LC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct config {
    const char *bind;
    int port;
    const char *redis_url;
    const char *policies_dir;
    const char *prefix;
    int metrics_port;
    const char *lua_path; /* NULL: <dir of binary>/lua */
    const char *requirepass;
    const char *redis_file;       /* --redis-file: the URL is read from it at start */
    const char *requirepass_file; /* --requirepass-file: the same for the password */
    const char *redis_url_from;   /* where redis_url came from, for the log */
    const char *log_level;
    const char *config_file; /* --config: keys named as the flags, read once at start */
    bool check;
    const char **check_paths; /* --check's files and folders (argv's); none: --policies */
    size_t ncheck_paths;
    /* limits (SPEC §8) */
    long maxclients;
    long timeout_s;          /* idle clients are closed after this; 0 = never */
    size_t max_inline;       /* bytes of one inline request */
    size_t max_bulk;         /* bytes of one bulk argument (and so of a SET value) */
    long max_args;           /* arguments in one command */
    size_t max_request;      /* all argument bytes of one command */
    size_t max_value;        /* largest value stored from a fetch */
    size_t output_limit;     /* a slow reader's pending output before it is dropped */
    long max_pending;        /* commands awaiting replies per client before reading pauses */
    long backend_timeout_ms; /* Redis command/connect timeout */
    size_t lua_memory;       /* bytes per policy Lua state */
    size_t l1_max_bytes;     /* in-process tier size */
    uint64_t lua_budget;     /* VM instructions per call into a policy */
    long shutdown_grace_ms;  /* how long in-flight requests may finish on SIGTERM */
    long reload_grace_ms;    /* a deleted policy file unloads its namespace after this */

    /* SLOWLOG: what took this many microseconds (< 0: nothing), how many */
    long slowlog_slower_than;
    long slowlog_max_len;
} config_t;

#define LUACACHED_VERSION "0.1.0"

extern config_t cfg;
extern uint64_t lc_start_mono_ms; /* when the process started (mono_ms) */

/* Parse argv into cfg, then the --config file if one was named (flags on
 * the command line win over its keys). Returns 0 to run, 1 when
 * --help/--version printed, -1 on a usage error (message printed). */
int config_parse(int argc, char **argv);

/* The same with the error in err (no "luacached: " in front) instead. */
int config_parse_args(int argc, char **argv, char *err, size_t errlen);

/* Apply config-file text (len bytes, named file in errors) to cfg, as
 * --config FILE does after the command line: keys that the command line
 * gave are checked but not applied. 0, or -1 with "FILE:LINE: ..." in err. */
int config_parse_text(const char *file, const char *text, size_t len, char *err, size_t errlen);

/* Back to the defaults, forgetting what any parse gave (the unit tests). */
void config_reset(void);

/* The secrets: the Redis URL and --requirepass, each from its flag, else
 * its file flag, else its environment variable (LUACACHED_REDIS_URL,
 * LUACACHED_REQUIREPASS), else the default. Reads the files; call once
 * after config_parse() and the log level; warns about secrets in ps
 * or in a config file every user may read. -1 with the error printed. */
int config_load_secrets(void);

#endif
