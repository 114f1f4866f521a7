/* cmd_introspect.c: CLIENT LIST / INFO / KILL and SLOWLOG, answered in
 * Redis's shapes so redis-cli and the tools around it read them as they
 * read Redis's. Fields we have no counterpart for (pub/sub, MULTI, ACL
 * users) are given the value a plain Redis client has. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "reply.h"
#include "slowlog.h"
#include "util.h"

static size_t slot_count(const client_t *c)
{
    size_t n = 0;
    for (const list_node_t *p = list_first(&c->slots); p && p != &c->slots.head; p = p->next)
        n++;
    return n;
}

/* One line of CLIENT LIST, as Redis 7 writes it. */
static void client_line(buf_t *o, const client_t *c, uint64_t now_ms)
{
    char addr[64], laddr[64], flags[5];
    client_addr(c, false, addr, sizeof(addr));
    client_addr(c, true, laddr, sizeof(laddr));
    uv_os_fd_t fd = -1;
    uv_fileno((const uv_handle_t *)&c->tcp, &fd);
    /* b: waiting on a reply still being worked on; c: closing after it */
    size_t nf = 0;
    if (c->pending > 0) flags[nf++] = 'b';
    if (c->close_after_reply) flags[nf++] = 'c';
    if (c->in_multi) flags[nf++] = 'x';
    if (nf == 0) flags[nf++] = 'N';
    flags[nf] = '\0';
    size_t qbuf = client_input_pending(c);
    size_t tot = sizeof(*c) + c->out.cap + c->wbuf.cap + c->inbuf.cap + c->parser.arena.cap +
                 c->parser.line.cap;
    buf_printf(o,
               "id=%llu addr=%s laddr=%s fd=%d name=%s age=%llu idle=%llu flags=%s db=0 sub=0 "
               "psub=0 ssub=0 multi=%ld qbuf=%zu qbuf-free=0 argv-mem=%zu multi-mem=%zu obl=%zu "
               "oll=%zu omem=%zu tot-mem=%zu events=%s%s cmd=%s user=default redir=-1 resp=%d\n",
               (unsigned long long)c->id, addr, laddr, (int)fd, c->name ? c->name : "",
               (unsigned long long)((now_ms - c->created_ms) / 1000),
               (unsigned long long)((now_ms - c->last_active_ms) / 1000), flags,
               c->in_multi ? c->multi_n : -1L, qbuf, c->parser.arena.len, c->multi_cmds.len,
               c->out.len, slot_count(c), client_output_pending(c) - c->out.len, tot,
               c->paused ? "" : "r", c->writing ? "w" : "", c->last_cmd ? c->last_cmd : "NULL",
               (int)c->proto);
}

static bool parse_id(client_t *c, long i, unsigned long long *id)
{
    size_t len;
    const char *s = client_arg(c, i, &len);
    long long v;
    if (parse_ll(s, len, &v) != 0 || v <= 0) {
        reply_error(client_reply_buf(c), "Invalid client ID");
        return false;
    }
    *id = (unsigned long long)v;
    return true;
}

/* CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...] */
static void client_list(client_t *c)
{
    long argc = client_argc(c);
    unsigned long long ids[64];
    long nids = 0;
    bool none = false; /* TYPE other than normal: we have only normal clients */
    for (long i = 2; i < argc; i++) {
        size_t len;
        const char *opt = client_arg(c, i, &len);
        if (eq_nocase(opt, len, "type") && i + 1 < argc) {
            size_t tl;
            const char *t = client_arg(c, ++i, &tl);
            if (eq_nocase(t, tl, "normal")) continue;
            if (!eq_nocase(t, tl, "master") && !eq_nocase(t, tl, "replica") &&
                !eq_nocase(t, tl, "slave") && !eq_nocase(t, tl, "pubsub")) {
                reply_error(client_reply_buf(c), "Unknown client type '%.*s'",
                            (int)(tl > 64 ? 64 : tl), t);
                return;
            }
            none = true;
        } else if (eq_nocase(opt, len, "id") && i + 1 < argc) {
            for (i++; i < argc; i++) {
                if (nids == (long)LC_ARRAY_LEN(ids)) {
                    reply_error(client_reply_buf(c), "too many client IDs");
                    return;
                }
                if (!parse_id(c, i, &ids[nids++])) return;
            }
        } else {
            reply_error(client_reply_buf(c), "syntax error");
            return;
        }
    }
    buf_t o = {0};
    uint64_t now = mono_ms();
    for (client_t *x = server_first_client(); x && !none; x = server_next_client(x)) {
        if (x->closing) continue;
        bool want = nids == 0;
        for (long j = 0; j < nids && !want; j++)
            want = ids[j] == x->id;
        if (want) client_line(&o, x, now);
    }
    reply_bulk(client_reply_buf(c), o.data ? o.data : "", o.len);
    buf_free(&o);
}

static bool addr_is(const client_t *x, bool local, const char *a, size_t alen)
{
    char have[64];
    client_addr(x, local, have, sizeof(have));
    return strlen(have) == alen && memcmp(have, a, alen) == 0;
}

/* CLIENT KILL addr:port (the old form: +OK, or an error when no client
 * has that address), or CLIENT KILL filter value ... with ID, ADDR, LADDR,
 * SKIPME yes|no, TYPE, USER, MAXAGE: how many were killed. SKIPME is yes
 * unless said otherwise. */
static void client_kill_cmd(client_t *c)
{
    long argc = client_argc(c);
    buf_t *b = client_reply_buf(c);
    size_t alen;
    const char *a = client_arg(c, 2, &alen);
    if (argc == 3) {
        for (client_t *x = server_first_client(); x; x = server_next_client(x)) {
            if (!x->closing && addr_is(x, false, a, alen)) {
                reply_ok(b); /* before the kill: the caller may be x */
                client_kill(x, c);
                return;
            }
        }
        reply_error(b, "No such client");
        return;
    }
    unsigned long long id = 0;
    const char *addr = NULL, *laddr = NULL, *user = NULL;
    size_t addr_len = 0, laddr_len = 0, user_len = 0;
    bool skipme = true, no_match = false;
    long long maxage = 0;
    for (long i = 2; i < argc; i += 2) {
        size_t len, vlen;
        const char *opt = client_arg(c, i, &len);
        if (i + 1 >= argc) {
            reply_error(b, "syntax error");
            return;
        }
        const char *v = client_arg(c, i + 1, &vlen);
        if (eq_nocase(opt, len, "id")) {
            if (!parse_id(c, i + 1, &id)) return;
        } else if (eq_nocase(opt, len, "addr")) {
            addr = v;
            addr_len = vlen;
        } else if (eq_nocase(opt, len, "laddr")) {
            laddr = v;
            laddr_len = vlen;
        } else if (eq_nocase(opt, len, "user")) {
            user = v;
            user_len = vlen;
        } else if (eq_nocase(opt, len, "type")) {
            if (!eq_nocase(v, vlen, "normal")) no_match = true;
        } else if (eq_nocase(opt, len, "maxage")) {
            if (parse_ll(v, vlen, &maxage) != 0 || maxage < 0) {
                reply_error(b, "syntax error");
                return;
            }
        } else if (eq_nocase(opt, len, "skipme")) {
            if (eq_nocase(v, vlen, "yes")) {
                skipme = true;
            } else if (eq_nocase(v, vlen, "no")) {
                skipme = false;
            } else {
                reply_error(b, "syntax error");
                return;
            }
        } else {
            reply_error(b, "syntax error");
            return;
        }
    }
    if (user && !eq_nocase(user, user_len, "default")) no_match = true;
    long long killed = 0;
    uint64_t now = mono_ms();
    bool self = false;
    for (client_t *x = server_first_client(); x && !no_match; x = server_next_client(x)) {
        if (x->closing || (id && x->id != id) || (skipme && x == c)) continue;
        if (addr && !addr_is(x, false, addr, addr_len)) continue;
        if (laddr && !addr_is(x, true, laddr, laddr_len)) continue;
        if (maxage && (long long)((now - x->created_ms) / 1000) < maxage) continue;
        killed++;
        if (x == c)
            self = true; /* after the reply */
        else
            client_kill(x, c);
    }
    reply_int(b, killed);
    if (self) client_kill(c, c);
}

bool cmd_client_introspect(client_t *c, const char *sub, size_t len)
{
    long argc = client_argc(c);
    if (eq_nocase(sub, len, "list")) {
        client_list(c);
    } else if (eq_nocase(sub, len, "info") && argc == 2) {
        buf_t o = {0};
        client_line(&o, c, mono_ms());
        reply_bulk(client_reply_buf(c), o.data, o.len);
        buf_free(&o);
    } else if (eq_nocase(sub, len, "kill") && argc >= 3) {
        client_kill_cmd(c);
    } else {
        return false;
    }
    return true;
}

/* SLOWLOG GET [count] | LEN | RESET | HELP */
void cmd_slowlog(client_t *c)
{
    size_t len;
    const char *sub = client_arg(c, 1, &len);
    long argc = client_argc(c);
    buf_t *b = client_reply_buf(c);
    if (eq_nocase(sub, len, "get") && argc <= 3) {
        long long n = 10;
        if (argc == 3) {
            size_t nl;
            const char *ns = client_arg(c, 2, &nl);
            if (parse_ll(ns, nl, &n) != 0 || n < -1) {
                reply_error(b, "count should be greater than or equal to -1");
                return;
            }
        }
        size_t have = slowlog_len();
        size_t k = (n < 0 || (unsigned long long)n > have) ? have : (size_t)n;
        reply_array(b, (long)k);
        for (size_t i = 0; i < k; i++) {
            const slowlog_entry_t *e = slowlog_at(i);
            reply_array(b, 6);
            reply_int(b, (long long)e->id);
            reply_int(b, e->time_s);
            reply_int(b, (long long)e->duration_us);
            reply_array(b, e->argc);
            for (int j = 0; j < e->argc; j++)
                reply_bulk(b, e->argv[j].s, e->argv[j].len);
            reply_bulk_str(b, e->addr);
            reply_bulk_str(b, e->name);
        }
    } else if (eq_nocase(sub, len, "len") && argc == 2) {
        reply_int(b, (long long)slowlog_len());
    } else if (eq_nocase(sub, len, "reset") && argc == 2) {
        slowlog_reset();
        reply_ok(b);
    } else if (eq_nocase(sub, len, "help") && argc == 2) {
        static const char *const lines[] = {
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "    A slow fetch is logged as FETCH ns:id, with no client.",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
        };
        reply_array(b, (long)LC_ARRAY_LEN(lines));
        for (size_t i = 0; i < LC_ARRAY_LEN(lines); i++)
            reply_status(b, lines[i]);
    } else {
        reply_error(b,
                    "unknown subcommand or wrong number of arguments for '%.*s'. Try SLOWLOG HELP.",
                    (int)(len > 64 ? 64 : len), sub);
    }
}
