/* cmd_inval.c: the invalidation commands (SPEC §3): PURGE, PURGETAG,
 * FLUSHNS and EVENT. Arguments are checked here; the work is in purge.c,
 * nsgen.c and cache.c (invalidate.h). Each answers from a reply slot once
 * Redis has done its part. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "commands.h"
#include "invalidate.h"
#include "reply.h"
#include "util.h"

/* A reply slot for an invalidation walk: the client's next commands wait
 * until it is done, so a pipelined GET after it never reads what it
 * removes (Redis runs one client's commands in order). Other clients go
 * on. */
static slot_t *deferred_in_order(client_t *c)
{
    slot_t *s = client_defer(c);
    slot_hold_input(s);
    return s;
}

/* PURGE NS:IDGLOB */
void cmd_purge(client_t *c)
{
    size_t len;
    const char *pattern = client_arg(c, 1, &len);
    ns_t *ns;
    const char *idglob;
    size_t idlen;
    buf_t err = {0};
    if (purge_parse(pattern, len, &ns, &idglob, &idlen, &err) != 0) {
        buf_append(client_reply_buf(c), err.data, err.len);
        buf_free(&err);
        return;
    }
    ns->stats.requests_other++;
    purge_pattern(ns, idglob, idlen, true, cache_reply_removed, slot_sink(deferred_in_order(c)));
}

/* PURGETAG tag */
void cmd_purgetag(client_t *c)
{
    size_t len;
    const char *tag = client_arg(c, 1, &len);
    purge_tag(tag, len, true, cache_reply_removed, slot_sink(deferred_in_order(c)));
}

static void on_flushed(void *priv, long long removed, const char *err)
{
    LC_UNUSED(removed);
    slot_finish_ok(priv, err);
}

/* FLUSHNS ns: also for a namespace whose policy failed to load (its
 * entries may predate the failure). */
void cmd_flushns(client_t *c)
{
    ns_t *ns = ns_arg_or_reply(c, 1, false);
    if (!ns) return;
    ns->stats.requests_other++;
    flush_ns(ns, true, on_flushed, deferred_in_order(c));
}

/* ---------------------------------------------------------------------------
 * EVENT ns name [payload]
 *
 * on_event runs as a budgeted coroutine (policy_hooks.c); every key and pattern it
 * returns is checked before anything is invalidated, so a bad result
 * changes nothing. Then keys (DEL semantics) and tags (PURGETAG) run at
 * once, patterns one after another (each is a walk over the keyspace), and
 * the flush (FLUSHNS of ns). The reply sums the entries removed; a flush
 * adds 0 (it does not enumerate entries). The entries count in ns's
 * invalidations_event (not again as del/purge/tag); a flush counts as
 * flush.
 * ------------------------------------------------------------------------- */

typedef struct event_job {
    slot_t *slot;
    ns_t *ns;
    long pending;
    long long removed;
    char *err;
    ns_t **pat_ns; /* the patterns' namespaces and id globs, run in order */
    str_list_t patterns;
    size_t *pat_off;
    size_t next_pattern;
} event_job_t;

static void event_part_done(void *priv, long long removed, const char *err);
static void event_pattern_done(void *priv, long long removed, const char *err);

static void event_finish(event_job_t *j)
{
    j->ns->stats.invalidations_event += (uint64_t)j->removed;
    if (j->err)
        reply_error(&j->slot->buf, "%s", j->err);
    else
        reply_int(&j->slot->buf, j->removed);
    slot_finish(j->slot);
    free(j->err);
    free(j->pat_ns);
    free(j->pat_off);
    str_list_free(&j->patterns);
    free(j);
}

static void event_next_pattern(event_job_t *j)
{
    if (j->next_pattern >= j->patterns.n) return;
    size_t i = j->next_pattern++;
    const char *p = j->patterns.v[i];
    j->pending++;
    purge_pattern(j->pat_ns[i], p + j->pat_off[i], j->patterns.len[i] - j->pat_off[i], false,
                  event_pattern_done, j);
}

static void event_part_done(void *priv, long long removed, const char *err)
{
    event_job_t *j = priv;
    j->removed += removed;
    if (err && !j->err) j->err = xstrdup(err);
    if (--j->pending == 0) event_finish(j);
}

/* A pattern's walk ended: start the next. (A walk may end synchronously,
 * when Redis is down: then this recurses once per pattern, 100 at most.) */
static void event_pattern_done(void *priv, long long removed, const char *err)
{
    event_job_t *j = priv;
    event_next_pattern(j);
    event_part_done(j, removed, err);
}

/* The message of an error reply "-ERR msg\r\n" in b. */
static void error_text(const buf_t *b, const char **msg, int *len)
{
    *msg = b->len > 7 ? b->data + 5 : "";
    *len = b->len > 7 ? (int)(b->len - 7) : 0;
}

/* Check every key and pattern; on failure reply and return -1. */
static int event_check(buf_t *out, event_result_t *ev, cache_key_t *keys, event_job_t *j)
{
    buf_t err = {0};
    const char *msg;
    int mlen;
    for (size_t i = 0; i < ev->keys.n; i++) {
        if (cache_key_parse(ev->keys.v[i], ev->keys.len[i], &keys[i], &err) != 0) {
            error_text(&err, &msg, &mlen);
            reply_error(out, "on_event failed: result keys[%zu] '%.200s': %.*s", i + 1,
                        ev->keys.v[i], mlen, msg);
            buf_free(&err);
            return -1;
        }
    }
    for (size_t i = 0; i < ev->patterns.n; i++) {
        const char *glob;
        size_t glen;
        if (purge_parse(ev->patterns.v[i], ev->patterns.len[i], &j->pat_ns[i], &glob, &glen,
                        &err) != 0) {
            error_text(&err, &msg, &mlen);
            reply_error(out, "on_event failed: result patterns[%zu] '%.200s': %.*s", i + 1,
                        ev->patterns.v[i], mlen, msg);
            buf_free(&err);
            return -1;
        }
        j->pat_off[i] = (size_t)(glob - ev->patterns.v[i]);
    }
    return 0;
}

typedef struct event_cmd {
    slot_t *slot;
    ns_t *ns;
} event_cmd_t;

/* on_event returned (or failed): invalidate what it named. */
static void on_event_result(void *priv, event_result_t *ev, const char *err)
{
    event_cmd_t *e = priv;
    slot_t *slot = e->slot;
    ns_t *ns = e->ns;
    free(e);
    if (err) {
        reply_error(&slot->buf, "%s", err);
        slot_finish(slot);
        return;
    }
    event_job_t *j = xcalloc(1, sizeof(*j));
    j->ns = ns;
    j->pat_ns = xcalloc(ev->patterns.n + 1, sizeof(*j->pat_ns));
    j->pat_off = xcalloc(ev->patterns.n + 1, sizeof(*j->pat_off));
    cache_key_t *keys = xcalloc(ev->keys.n + 1, sizeof(*keys));
    if (event_check(&slot->buf, ev, keys, j) != 0) {
        free(keys);
        free(j->pat_ns);
        free(j->pat_off);
        free(j);
        event_result_free(ev);
        slot_finish(slot);
        return;
    }
    j->slot = slot;
    j->patterns = ev->patterns; /* taken over: run one after another */
    memset(&ev->patterns, 0, sizeof(ev->patterns));
    j->pending = 1; /* held until everything is started */
    if (ev->keys.n) {
        j->pending++;
        cache_del_keys(keys, (long)ev->keys.n, false, event_part_done, j);
    }
    for (size_t i = 0; i < ev->tags.n; i++) {
        j->pending++;
        purge_tag(ev->tags.v[i], ev->tags.len[i], false, event_part_done, j);
    }
    if (ev->flush) {
        j->pending++;
        flush_ns(ns, true, event_part_done, j);
    }
    event_next_pattern(j);
    free(keys);
    event_result_free(ev);
    if (--j->pending == 0) event_finish(j);
}

void cmd_event(client_t *c)
{
    if (client_argc(c) > 4) {
        reply_error(client_reply_buf(c), "wrong number of arguments for 'event' command");
        return;
    }
    ns_t *ns = ns_arg_or_reply(c, 1, true);
    if (!ns) return;
    if (!ns->cur->conf.has_on_event) {
        reply_error(client_reply_buf(c), "namespace '%s' has no on_event", ns->name);
        return;
    }
    ns->stats.requests_other++;
    size_t nlen, plen = 0;
    const char *name = client_arg(c, 2, &nlen);
    const char *payload = client_argc(c) == 4 ? client_arg(c, 3, &plen) : NULL;
    event_cmd_t *e = xcalloc(1, sizeof(*e));
    e->slot = deferred_in_order(c); /* until everything it names is invalidated */
    e->ns = ns;
    policy_on_event(ns->cur, name, nlen, payload, plen, on_event_result, e);
}
