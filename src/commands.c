/* commands.c: the one command table and dispatch. Arity and authentication
 * are checked here, once, before any handler runs; names are looked up
 * case-insensitively in a hash built from the table at start. */
#include "commands.h"

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "dict.h"
#include "reply.h"
#include "stats.h"
#include "util.h"

static const command_t command_table[] = {
    /* connection */
    {"ping", -1, CMD_READONLY, cmd_ping},
    {"echo", 2, CMD_READONLY, cmd_echo},
    {"quit", -1, CMD_NOAUTH | CMD_NOQUEUE, cmd_quit},
    {"auth", -2, CMD_NOAUTH, cmd_auth},
    {"hello", -1, CMD_NOAUTH, cmd_hello},
    {"select", 2, CMD_READONLY, cmd_select},
    {"command", -1, CMD_READONLY, cmd_command},
    {"client", -2, CMD_READONLY, cmd_client},
    /* queued batches (cmd_multi.c) */
    {"multi", 1, CMD_READONLY | CMD_NOQUEUE, cmd_multi},
    {"exec", 1, CMD_READONLY | CMD_NOQUEUE, cmd_exec},
    {"discard", 1, CMD_READONLY | CMD_NOQUEUE, cmd_discard},
    {"watch", -2, CMD_READONLY | CMD_NOQUEUE, cmd_watch},
    {"unwatch", 1, CMD_READONLY, cmd_unwatch},
    /* cache */
    {"get", 2, CMD_READONLY, cmd_get},
    {"mget", -2, CMD_READONLY, cmd_mget},
    {"set", -3, CMD_WRITE, cmd_set},
    {"del", -2, CMD_WRITE, cmd_del},
    {"exists", -2, CMD_READONLY, cmd_exists},
    {"ttl", 2, CMD_READONLY, cmd_ttl},
    {"pttl", 2, CMD_READONLY, cmd_pttl},
    {"peek", 2, CMD_READONLY, cmd_peek},
    {"refresh", 2, CMD_WRITE, cmd_refresh},
    {"warm", -2, CMD_WRITE, cmd_warm},
    /* invalidation */
    {"event", -3, CMD_WRITE, cmd_event},
    {"purge", 2, CMD_WRITE, cmd_purge},
    {"purgetag", 2, CMD_WRITE, cmd_purgetag},
    {"flushns", 2, CMD_WRITE, cmd_flushns},
    /* administration */
    {"policies", 1, CMD_ADMIN, cmd_policies},
    {"reload", -1, CMD_ADMIN, cmd_reload},
    {"info", -1, CMD_ADMIN, cmd_info},
    {"stats", -1, CMD_ADMIN, cmd_info},
    {"metrics", 1, CMD_ADMIN, cmd_metrics},
    {"slowlog", -2, CMD_ADMIN, cmd_slowlog},
    {"writes", -2, CMD_ADMIN, cmd_writes},
};

static dict_t by_name;

const command_t *commands_table(size_t *n)
{
    *n = LC_ARRAY_LEN(command_table);
    return command_table;
}

/* luacached_command_duration_seconds has one histogram per row. */
_Static_assert(LC_ARRAY_LEN(command_table) <= CMD_STATS_MAX, "raise CMD_STATS_MAX");

void commands_init(void)
{
    for (size_t i = 0; i < LC_ARRAY_LEN(command_table); i++)
        cmd_stats_name[i] = command_table[i].name;
    cmd_stats_count = LC_ARRAY_LEN(command_table);
    dict_init(&by_name);
    for (size_t i = 0; i < LC_ARRAY_LEN(command_table); i++)
        dict_set(&by_name, command_table[i].name, strlen(command_table[i].name),
                 (void *)&command_table[i]);
}

void commands_free(void)
{
    dict_free(&by_name);
}

static const command_t *lookup(const char *name, size_t len)
{
    char lower[32];
    if (len >= sizeof(lower)) return NULL;
    for (size_t i = 0; i < len; i++) { /* ASCII only, as Redis: no locale lookup per command */
        char ch = name[i];
        lower[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch + ('a' - 'A')) : ch;
    }
    return dict_get(&by_name, lower, len);
}

/* Redis's text: "unknown command 'x', with args beginning with: 'a' 'b' ". */
static void reply_unknown(client_t *c, const char *name, size_t len)
{
    buf_t msg = {0};
    buf_printf(&msg,
               "unknown command '%.*s', with args beginning with: ", (int)(len > 128 ? 128 : len),
               name);
    for (long i = 1; i < client_argc(c) && msg.len < 512; i++) {
        size_t alen;
        const char *a = client_arg(c, i, &alen);
        buf_printf(&msg, "'%.*s' ", (int)(alen > 128 ? 128 : alen), a);
    }
    buf_append(&msg, "", 1);
    reply_error(client_reply_buf(c), "%s", msg.data);
    buf_free(&msg);
}

/* A command refused before it ran: inside MULTI, EXEC will abort. */
static void refused(client_t *c)
{
    if (c->in_multi) c->multi_dirty = true;
}

void commands_dispatch(client_t *c)
{
    size_t len;
    const char *name = client_arg(c, 0, &len);
    const command_t *cmd = lookup(name, len);
    if (!c->authed && !(cmd && (cmd->flags & CMD_NOAUTH))) {
        reply_error_code(client_reply_buf(c), "NOAUTH", "Authentication required.");
        refused(c);
        return;
    }
    if (!cmd) {
        reply_unknown(c, name, len);
        refused(c);
        return;
    }
    /* timed and shown (CLIENT LIST cmd=) under its row */
    c->cmd_idx = (unsigned)(cmd - command_table) + 1;
    c->last_cmd = cmd->name;
    c->slowlog_skip = (cmd->flags & CMD_NOAUTH) != 0;
    long argc = client_argc(c);
    if ((cmd->arity > 0 && argc != cmd->arity) || (cmd->arity < 0 && argc < -cmd->arity)) {
        reply_error(client_reply_buf(c), "wrong number of arguments for '%s' command", cmd->name);
        refused(c);
        return;
    }
    if (c->in_multi && !(cmd->flags & CMD_NOQUEUE)) {
        if (client_multi_queue(c)) {
            reply_status(client_reply_buf(c), "QUEUED");
        } else {
            reply_error(client_reply_buf(c), "queued commands exceed --output-limit (%zu bytes)",
                        cfg.output_limit);
            refused(c);
        }
        return;
    }
    cmd->fn(c);
}
