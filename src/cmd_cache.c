/* cmd_cache.c: the cache commands (SPEC §3): argument checks, then cache.c.
 * Every key of a command is validated before any work starts, so a bad key
 * fails the whole command with one clear error. */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "commands.h"
#include "config.h"
#include "reply.h"
#include "util.h"
#include "warm.h"
#include "write_behind.h"
#include "write_through.h"

/* Parse arguments first..first+n-1 as keys; replies the error on failure. */
static cache_key_t *parse_keys_or_reply(client_t *c, long first, long n)
{
    cache_key_t *keys = xmalloc((size_t)n * sizeof(*keys));
    for (long i = 0; i < n; i++) {
        size_t len;
        const char *k = client_arg(c, first + i, &len);
        buf_t err = {0};
        if (cache_key_parse(k, len, &keys[i], &err) != 0) {
            buf_append(client_reply_buf(c), err.data, err.len);
            buf_free(&err);
            free(keys);
            return NULL;
        }
    }
    return keys;
}

ns_t *ns_arg_or_reply(client_t *c, long i, bool need_policy)
{
    size_t len;
    const char *name = client_arg(c, i, &len);
    ns_t *ns = len <= 128 && ns_name_valid(name, len) ? ns_find(name, len) : NULL;
    if (!ns) {
        reply_error(client_reply_buf(c), "unknown namespace '%.*s'", (int)(len > 128 ? 128 : len),
                    name);
        return NULL;
    }
    if (need_policy && !ns->cur) {
        reply_error(client_reply_buf(c), "namespace '%s' failed to load: %s", ns->name,
                    ns->last_error);
        return NULL;
    }
    return ns;
}

static void read_keys(client_t *c, cache_op_t op, long first, long n, bool as_array)
{
    cache_key_t *keys = parse_keys_or_reply(c, first, n);
    if (!keys) return;
    cache_read(slot_sink(client_defer(c)), op, keys, n, as_array);
    free(keys);
}

void cmd_get(client_t *c)
{
    size_t len;
    const char *k = client_arg(c, 1, &len);
    cache_key_t key;
    buf_t err = {0};
    if (cache_key_parse(k, len, &key, &err) != 0) {
        buf_append(client_reply_buf(c), err.data, err.len);
        buf_free(&err);
        return;
    }
    if (cache_try_l1(client_sink(c), &key)) return;
    cache_read(slot_sink(client_defer(c)), CACHE_GET, &key, 1, false);
}

void cmd_mget(client_t *c)
{
    read_keys(c, CACHE_GET, 1, client_argc(c) - 1, true);
}

void cmd_peek(client_t *c)
{
    read_keys(c, CACHE_PEEK, 1, 1, false);
}

void cmd_ttl(client_t *c)
{
    read_keys(c, CACHE_TTL, 1, 1, false);
}

void cmd_pttl(client_t *c)
{
    read_keys(c, CACHE_PTTL, 1, 1, false);
}

void cmd_refresh(client_t *c)
{
    read_keys(c, CACHE_REFRESH, 1, 1, false);
}

/* SET's options after key and value, parsed (set_opts.h); replies the
 * error on failure. */
static int parse_set_opts_or_reply(client_t *c, set_opts_t *o)
{
    long n = client_argc(c) - 3;
    /* n is bounded by --max-args; repeats (NX NX) are valid, as in Redis */
    const char **args = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(*args));
    size_t *lens = xmalloc((size_t)(n > 0 ? n : 1) * sizeof(*lens));
    for (long i = 0; i < n; i++)
        args[i] = client_arg(c, 3 + i, &lens[i]);
    const char *err = NULL;
    int rc = set_opts_parse(args, lens, n, o, &err);
    if (rc != 0) reply_error(client_reply_buf(c), "%s", err);
    free(args);
    free(lens);
    return rc;
}

/* SET key value [NX | XX] [GET] [EX s | PX ms | EXAT unix-s | PXAT unix-ms | KEEPTTL] */
void cmd_set(client_t *c)
{
    set_opts_t o;
    if (parse_set_opts_or_reply(c, &o) != 0) return;
    long long ttl_ms = set_opts_ttl_ms(&o, now_ms());
    size_t vlen;
    const char *value = client_arg(c, 2, &vlen);
    if (vlen > cfg.max_value) {
        reply_error(client_reply_buf(c), "value of %zu bytes exceeds --max-value (%zu)", vlen,
                    cfg.max_value);
        return;
    }
    cache_key_t *key = parse_keys_or_reply(c, 1, 1);
    if (!key) return;
    bool behind = write_behind_set_wanted(key);
    bool through = !behind && write_through_set_wanted(key);
    if ((behind || through) && set_opts_conditional(&o)) {
        /* The origin's write decides what is stored (write-through), or is
         * queued apart from the cache (write-behind): a condition on the
         * cached entry, or its old value, would not say what the origin
         * holds (docs/POLICIES.md, "Write-through", "Write-behind"). */
        reply_error(client_reply_buf(c),
                    "SET NX, XX, GET and KEEPTTL are not supported for namespace '%s': its "
                    "policy writes %s the origin",
                    key->ns->name, behind ? "behind to" : "through to");
    } else if (behind) {
        write_behind_set(slot_sink(client_defer(c)), key, value, vlen, ttl_ms);
    } else if (through) {
        write_through_set(slot_sink(client_defer(c)), key, value, vlen, ttl_ms);
    } else if (set_opts_conditional(&o)) {
        cache_set_cond(slot_sink(client_defer(c)), key, value, vlen, ttl_ms, &o);
    } else {
        cache_set(slot_sink(client_defer(c)), key, value, vlen, ttl_ms);
    }
    free(key);
}

/* EXISTS key [key ...]: live values cached, counted (a key named twice
 * counts twice, as in Redis). */
void cmd_exists(client_t *c)
{
    long n = client_argc(c) - 1;
    cache_key_t *keys = parse_keys_or_reply(c, 1, n);
    if (!keys) return;
    cache_exists(slot_sink(client_defer(c)), keys, n);
    free(keys);
}

void cmd_del(client_t *c)
{
    long n = client_argc(c) - 1;
    cache_key_t *keys = parse_keys_or_reply(c, 1, n);
    if (!keys) return;
    if (write_behind_del_wanted(keys, n))
        write_behind_del(slot_sink(client_defer(c)), keys, n);
    else if (write_through_del_wanted(keys, n))
        write_through_del(slot_sink(client_defer(c)), keys, n);
    else
        cache_del(slot_sink(client_defer(c)), keys, n);
    free(keys);
}

typedef struct warm_cmd {
    sink_t *sink;
    ns_t *ns;
} warm_cmd_t;

static void on_warm_ids(void *priv, str_list_t *ids, const char *err)
{
    warm_cmd_t *w = priv;
    if (err) {
        reply_error(sink_out(w->sink), "%s", err);
        sink_finish(w->sink);
    } else {
        warm_command(w->sink, w->ns, ids);
    }
    free(w);
}

/* WARM ns [id ...]: fetch the ids given, or those the policy's warm()
 * returns; answers how many were fetched successfully. */
void cmd_warm(client_t *c)
{
    ns_t *ns = ns_arg_or_reply(c, 1, true);
    if (!ns) return;
    long n = client_argc(c) - 2;
    if (n == 0 && !ns->cur->conf.has_warm) {
        reply_error(client_reply_buf(c),
                    "namespace '%s' has no warm (name the ids: WARM %s id ...)", ns->name,
                    ns->name);
        return;
    }
    ns->stats.requests_other++;
    if (n == 0) {
        warm_cmd_t *w = xcalloc(1, sizeof(*w));
        w->sink = slot_sink(client_defer(c));
        w->ns = ns;
        policy_warm(ns->cur, on_warm_ids, w);
        return;
    }
    str_list_t ids = {0};
    ids.v = xmalloc((size_t)n * sizeof(*ids.v));
    ids.len = xmalloc((size_t)n * sizeof(*ids.len));
    for (long i = 0; i < n; i++) {
        const char *id = client_arg(c, 2 + i, &ids.len[i]);
        ids.v[i] = xmemdup(id, ids.len[i]);
    }
    ids.n = (size_t)n;
    warm_command(slot_sink(client_defer(c)), ns, &ids);
}
