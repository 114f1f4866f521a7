/* cmd_conn.c: connection commands that standard Redis clients send on
 * connect (PING, AUTH, HELLO, SELECT, CLIENT, COMMAND), answered as Redis
 * answers them so redis-cli and client libraries work unchanged. */
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "reply.h"
#include "sink.h"
#include "util.h"

void cmd_ping(client_t *c)
{
    buf_t *b = client_reply_buf(c);
    if (client_argc(c) > 2) {
        reply_error(b, "wrong number of arguments for 'ping' command");
    } else if (client_argc(c) == 2) {
        size_t len;
        const char *msg = client_arg(c, 1, &len);
        reply_bulk(b, msg, len);
    } else {
        reply_status(b, "PONG");
    }
}

void cmd_echo(client_t *c)
{
    size_t len;
    const char *msg = client_arg(c, 1, &len);
    reply_bulk(client_reply_buf(c), msg, len);
}

void cmd_quit(client_t *c)
{
    reply_ok(client_reply_buf(c));
    client_close_after_reply(c);
}

/* Constant-time compare so AUTH does not leak the secret's prefix length. */
static int secret_equal(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < alen; i++)
        diff |= (unsigned char)(a[i] ^ b[i % (blen ? blen : 1)]);
    return diff == 0;
}

/* AUTH pass | AUTH user pass (user must be "default", as in Redis 6+). */
static int check_auth(client_t *c, long user_arg, long pass_arg, buf_t *b)
{
    if (!cfg.requirepass) {
        reply_error(b, "AUTH <password> called without any password configured for the default "
                       "user. Are you sure your configuration is correct?");
        return -1;
    }
    size_t ulen = 0, plen;
    const char *user = user_arg > 0 ? client_arg(c, user_arg, &ulen) : NULL;
    const char *pass = client_arg(c, pass_arg, &plen);
    if ((user && !eq_nocase(user, ulen, "default")) || !secret_equal(pass, plen, cfg.requirepass)) {
        reply_error_code(b, "WRONGPASS", "invalid username-password pair or user is disabled.");
        return -1;
    }
    c->authed = true;
    return 0;
}

void cmd_auth(client_t *c)
{
    long argc = client_argc(c);
    buf_t *b = client_reply_buf(c);
    if (argc > 3) {
        reply_error(b, "syntax error");
        return;
    }
    if (check_auth(c, argc == 3 ? 1 : 0, argc - 1, b) == 0) reply_ok(b);
}

/* CLIENT SETNAME's rules: no spaces or special characters; "" clears. */
static int set_client_name(client_t *c, long arg, buf_t *b)
{
    size_t nlen;
    const char *name = client_arg(c, arg, &nlen);
    for (size_t i = 0; i < nlen; i++) {
        if (name[i] <= ' ' || name[i] > '~') {
            reply_error(b, "Client names cannot contain spaces, newlines or special characters.");
            return -1;
        }
    }
    free(c->name);
    c->name = nlen ? xmemdup(name, nlen) : NULL;
    return 0;
}

/* HELLO [protover [AUTH user pass] [SETNAME name]]: 2 or 3 switches the
 * connection to RESP2 or RESP3, once authenticated; the answer is in the
 * new version, as Redis answers it. */
void cmd_hello(client_t *c)
{
    long argc = client_argc(c);
    buf_t *b = client_reply_buf(c);
    long long ver = 0; /* 0: keep the one spoken */
    if (argc >= 2) {
        size_t len;
        const char *v = client_arg(c, 1, &len);
        if (parse_ll(v, len, &ver) != 0) {
            reply_error(b, "Protocol version is not an integer or out of range");
            return;
        }
        if (ver != SINK_RESP2 && ver != SINK_RESP3) {
            reply_error_code(b, "NOPROTO", "unsupported protocol version");
            return;
        }
    }
    long setname = 0; /* applied only once authenticated */
    for (long i = 2; i < argc; i++) {
        size_t len;
        const char *opt = client_arg(c, i, &len);
        if (eq_nocase(opt, len, "auth") && i + 2 < argc) {
            if (check_auth(c, i + 1, i + 2, b) != 0) return;
            i += 2;
        } else if (eq_nocase(opt, len, "setname") && i + 1 < argc) {
            setname = ++i;
        } else {
            reply_error(b, "syntax error in HELLO option '%.*s'", (int)(len > 64 ? 64 : len), opt);
            return;
        }
    }
    if (!c->authed) {
        reply_error_code(b, "NOAUTH",
                         "HELLO must be called with the client already "
                         "authenticated, otherwise the HELLO <proto> AUTH <user> "
                         "<pass> option can be used to authenticate the client and "
                         "select the RESP protocol version at the same time");
        return;
    }
    if (setname && set_client_name(c, setname, b) != 0) return;
    if (ver) c->proto = (sink_proto_t)ver;
    sink_map(c->proto, b, 7); /* a map in RESP3 */
    reply_bulk_str(b, "server");
    reply_bulk_str(b, "luacached");
    reply_bulk_str(b, "version");
    reply_bulk_str(b, LUACACHED_VERSION);
    reply_bulk_str(b, "proto");
    reply_int(b, c->proto);
    reply_bulk_str(b, "id");
    reply_int(b, (long long)c->id);
    reply_bulk_str(b, "mode");
    reply_bulk_str(b, "standalone");
    reply_bulk_str(b, "role");
    reply_bulk_str(b, "master");
    reply_bulk_str(b, "modules");
    reply_array(b, 0);
}

/* Clients configured with a database number send SELECT; there is one. */
void cmd_select(client_t *c)
{
    size_t len;
    const char *db = client_arg(c, 1, &len);
    long long n;
    buf_t *b = client_reply_buf(c);
    if (parse_ll(db, len, &n) != 0)
        reply_error(b, "value is not an integer or out of range");
    else if (n != 0)
        reply_error(b, "DB index is out of range");
    else
        reply_ok(b);
}

static void reply_command_info(buf_t *b, const command_t *cmd)
{
    reply_array(b, 6);
    reply_bulk_str(b, cmd->name);
    reply_int(b, cmd->arity);
    int nflags = !!(cmd->flags & CMD_WRITE) + !!(cmd->flags & CMD_READONLY) +
                 !!(cmd->flags & CMD_ADMIN) + !!(cmd->flags & CMD_NOAUTH);
    reply_array(b, nflags);
    if (cmd->flags & CMD_WRITE) reply_status(b, "write");
    if (cmd->flags & CMD_READONLY) reply_status(b, "readonly");
    if (cmd->flags & CMD_ADMIN) reply_status(b, "admin");
    if (cmd->flags & CMD_NOAUTH) reply_status(b, "no_auth");
    /* first key, last key, step: our keys are argument 1 when there is one */
    int has_key = cmd->fn == cmd_get || cmd->fn == cmd_mget || cmd->fn == cmd_set ||
                  cmd->fn == cmd_del || cmd->fn == cmd_exists || cmd->fn == cmd_ttl ||
                  cmd->fn == cmd_pttl || cmd->fn == cmd_peek || cmd->fn == cmd_refresh;
    int many = cmd->fn == cmd_mget || cmd->fn == cmd_del || cmd->fn == cmd_exists;
    reply_int(b, has_key);
    reply_int(b, has_key ? (many ? -1 : 1) : 0);
    reply_int(b, has_key);
}

/* COMMAND | COMMAND COUNT | COMMAND INFO name... | COMMAND DOCS [name...] */
void cmd_command(client_t *c)
{
    size_t n;
    const command_t *table = commands_table(&n);
    buf_t *b = client_reply_buf(c);
    long argc = client_argc(c);
    size_t len = 0;
    const char *sub = argc > 1 ? client_arg(c, 1, &len) : NULL;
    /* COMMAND and COMMAND INFO without names: every command, as in Redis */
    if (argc == 1 || (argc == 2 && eq_nocase(sub, len, "info"))) {
        reply_array(b, (long)n);
        for (size_t i = 0; i < n; i++)
            reply_command_info(b, &table[i]);
        return;
    }
    if (eq_nocase(sub, len, "count")) {
        reply_int(b, (long long)n);
    } else if (eq_nocase(sub, len, "docs")) {
        reply_array(b, 0); /* redis-cli copes: it then offers no hints */
    } else if (eq_nocase(sub, len, "info")) {
        reply_array(b, argc - 2);
        for (long i = 2; i < argc; i++) {
            size_t nlen;
            const char *name = client_arg(c, i, &nlen);
            const command_t *found = NULL;
            for (size_t j = 0; j < n && !found; j++)
                if (eq_nocase(name, nlen, table[j].name)) found = &table[j];
            if (found)
                reply_command_info(b, found);
            else
                sink_null(c->proto, b);
        }
    } else {
        reply_error(b, "unknown subcommand '%.*s'. Try COMMAND HELP.", (int)(len > 64 ? 64 : len),
                    sub);
    }
}

/* CLIENT SETNAME | GETNAME | SETINFO | ID */
void cmd_client(client_t *c)
{
    size_t len;
    const char *sub = client_arg(c, 1, &len);
    long argc = client_argc(c);
    buf_t *b = client_reply_buf(c);
    if (eq_nocase(sub, len, "setname") && argc == 3) {
        if (set_client_name(c, 2, b) == 0) reply_ok(b);
    } else if (eq_nocase(sub, len, "getname") && argc == 2) {
        if (c->name)
            reply_bulk_str(b, c->name);
        else
            sink_null(c->proto, b);
    } else if (eq_nocase(sub, len, "setinfo") && argc == 4) {
        reply_ok(b); /* lib-name / lib-ver: accepted, not needed */
    } else if (eq_nocase(sub, len, "id") && argc == 2) {
        reply_int(b, (long long)c->id);
    } else if (cmd_client_introspect(c, sub, len)) {
        /* LIST, INFO, KILL */
    } else {
        reply_error(b,
                    "unknown subcommand or wrong number of arguments for '%.*s'. Try CLIENT "
                    "HELP.",
                    (int)(len > 64 ? 64 : len), sub);
    }
}
