/* commands.h: the one command table and dispatch. */
#ifndef LC_COMMANDS_H
#define LC_COMMANDS_H

#include "policy.h"
#include "server.h"

enum cmd_flags {
    CMD_NOAUTH = 1 << 0, /* allowed before AUTH */
    CMD_WRITE = 1 << 1,  /* changes the cache (for COMMAND's flag list) */
    CMD_READONLY = 1 << 2,
    CMD_ADMIN = 1 << 3,
    CMD_NOQUEUE = 1 << 4, /* runs at once inside MULTI (EXEC, DISCARD, ...) */
};

typedef void (*cmd_fn)(client_t *c);

typedef struct command {
    const char *name; /* lower case */
    int arity;        /* argc including the name; negative: at least -arity */
    int flags;
    cmd_fn fn;
} command_t;

void commands_init(void);
void commands_free(void);
void commands_dispatch(client_t *c);

/* For COMMAND: the table itself. */
const command_t *commands_table(size_t *n);

/* For handlers: the namespace named by argument i, or NULL after replying
 * the SPEC §2 error. need_policy: it must have loaded (it runs Lua). */
ns_t *ns_arg_or_reply(client_t *c, long i, bool need_policy);

/* Handlers (cmd_*.c). */
void cmd_ping(client_t *c);
void cmd_echo(client_t *c);
void cmd_quit(client_t *c);
void cmd_auth(client_t *c);
void cmd_hello(client_t *c);
void cmd_select(client_t *c);
void cmd_command(client_t *c);
void cmd_client(client_t *c);
void cmd_get(client_t *c);
void cmd_mget(client_t *c);
void cmd_set(client_t *c);
void cmd_del(client_t *c);
void cmd_exists(client_t *c);
void cmd_ttl(client_t *c);
void cmd_pttl(client_t *c);
void cmd_peek(client_t *c);
void cmd_refresh(client_t *c);
void cmd_warm(client_t *c);
void cmd_event(client_t *c);
void cmd_purge(client_t *c);
void cmd_purgetag(client_t *c);
void cmd_flushns(client_t *c);
void cmd_policies(client_t *c);
void cmd_reload(client_t *c);
void cmd_info(client_t *c);
void cmd_metrics(client_t *c);
void cmd_multi(client_t *c);
void cmd_exec(client_t *c);
void cmd_discard(client_t *c);
void cmd_watch(client_t *c);
void cmd_unwatch(client_t *c);
void cmd_slowlog(client_t *c);
/* CLIENT LIST / INFO / KILL (cmd_introspect.c): false when sub is none of
 * them. */
bool cmd_client_introspect(client_t *c, const char *sub, size_t len);
void cmd_writes(client_t *c);

#endif
