/* write_through.c: see write_through.h. */
#include "write_through.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "policy.h"
#include "reply.h"
#include "util.h"

bool write_through_set_wanted(const cache_key_t *key)
{
    return key->ns->cur && key->ns->cur->conf.has_write;
}

bool write_through_del_wanted(const cache_key_t *keys, long nkeys)
{
    for (long i = 0; i < nkeys; i++)
        if (keys[i].ns->cur && keys[i].ns->cur->conf.has_delete) return true;
    return false;
}

/* ---- SET ------------------------------------------------------------------ */

typedef struct set_job {
    sink_t *sink;
    ns_t *ns;
    policy_t *p;
    char *id, *value; /* copies: the request's buffer moves on */
    size_t idlen, vlen;
    long long ttl_ms;
} set_job_t;

static void set_job_free(set_job_t *j)
{
    policy_unref(j->p);
    free(j->id);
    free(j->value);
    free(j);
}

/* The origin took a value too large to cache: the old entry must not
 * outlive it, so it goes, and the client hears both halves. */
static void on_oversize_dropped(void *priv, long long removed, const char *err)
{
    LC_UNUSED(removed);
    set_job_t *j = priv;
    reply_error(sink_out(j->sink),
                "write succeeded at the origin, but its value of %zu bytes exceeds --max-value "
                "(%zu): not cached%s",
                j->vlen, cfg.max_value, err ? "; and the old entry may still be cached" : "");
    sink_finish(j->sink);
    set_job_free(j);
}

static void on_written(void *priv, const char *value, size_t len, const char *err)
{
    set_job_t *j = priv;
    sink_release_input(j->sink); /* what follows goes out before the next command */
    if (!err && len > cfg.max_value) {
        j->ns->stats.writes_through_ok++;
        j->vlen = len; /* for the message */
        cache_key_t key = {.ns = j->ns, .id = j->id, .idlen = j->idlen};
        cache_del_keys(&key, 1, false, on_oversize_dropped, j);
        return;
    }
    if (err) {
        j->ns->stats.writes_through_error++;
        reply_error(sink_out(j->sink), "%s", err);
        sink_finish(j->sink);
    } else {
        j->ns->stats.writes_through_ok++;
        cache_key_t key = {.ns = j->ns, .id = j->id, .idlen = j->idlen};
        cache_set(j->sink, &key, value, len, j->ttl_ms);
    }
    set_job_free(j);
}

void write_through_set(sink_t *sink, const cache_key_t *key, const char *value, size_t vlen,
                       long long ttl_ms)
{
    set_job_t *j = xcalloc(1, sizeof(*j));
    j->sink = sink;
    j->ns = key->ns;
    j->p = key->ns->cur;
    policy_ref(j->p);
    j->id = xmemdup(key->id, key->idlen);
    j->idlen = key->idlen;
    j->value = xmemdup(value, vlen);
    j->vlen = vlen;
    j->ttl_ms = ttl_ms;
    sink_hold_input(sink);
    policy_write(j->p, j->id, j->idlen, j->value, j->vlen, on_written, j);
}

/* ---- DEL ------------------------------------------------------------------ */

typedef struct del_job {
    sink_t *sink;
    long n, pending;
    cache_key_t *keys; /* ids copied */
    bool *failed;
    char *first_err;
} del_job_t;

static void on_removed(void *priv, long long removed, const char *err)
{
    del_job_t *j = priv;
    buf_t *out = sink_out(j->sink);
    if (j->first_err)
        reply_error(out, "%s", j->first_err);
    else if (err)
        reply_error(out, "%s", err);
    else
        reply_int(out, removed);
    sink_finish(j->sink);
    for (long i = 0; i < j->n; i++)
        free((char *)j->keys[i].id);
    free(j->keys);
    free(j->failed);
    free(j->first_err);
    free(j);
}

/* Every origin delete answered: invalidate the keys that are gone there
 * (and those with no delete function). */
static void del_cached(del_job_t *j)
{
    sink_release_input(j->sink);
    cache_key_t *gone = xcalloc((size_t)j->n, sizeof(*gone));
    long k = 0;
    for (long i = 0; i < j->n; i++)
        if (!j->failed[i]) gone[k++] = j->keys[i];
    if (k > 0)
        cache_del_keys(gone, k, true, on_removed, j);
    else
        on_removed(j, 0, NULL);
    free(gone);
}

typedef struct del_one {
    del_job_t *job;
    long i;
    policy_t *p;
} del_one_t;

static void on_deleted(void *priv, const char *value, size_t len, const char *err)
{
    LC_UNUSED(value);
    LC_UNUSED(len);
    del_one_t *d = priv;
    del_job_t *j = d->job;
    ns_t *ns = j->keys[d->i].ns;
    if (err) {
        j->failed[d->i] = true;
        ns->stats.writes_through_error++;
        if (!j->first_err) j->first_err = xmemdup(err, strlen(err));
    } else {
        ns->stats.writes_through_ok++;
    }
    policy_unref(d->p);
    free(d);
    if (--j->pending == 0) del_cached(j);
}

void write_through_del(sink_t *sink, const cache_key_t *keys, long nkeys)
{
    del_job_t *j = xcalloc(1, sizeof(*j));
    j->sink = sink;
    j->n = nkeys;
    j->keys = xcalloc((size_t)nkeys, sizeof(*j->keys));
    j->failed = xcalloc((size_t)nkeys, sizeof(*j->failed));
    for (long i = 0; i < nkeys; i++) {
        j->keys[i] = keys[i];
        j->keys[i].id = xmemdup(keys[i].id, keys[i].idlen);
    }
    sink_hold_input(sink);
    j->pending = 1; /* held until every delete is started */
    for (long i = 0; i < nkeys; i++) {
        policy_t *p = j->keys[i].ns->cur;
        if (!p || !p->conf.has_delete) continue;
        del_one_t *d = xcalloc(1, sizeof(*d));
        *d = (del_one_t){j, i, p};
        policy_ref(p);
        j->pending++;
        policy_delete(p, j->keys[i].id, j->keys[i].idlen, on_deleted, d);
    }
    if (--j->pending == 0) del_cached(j);
}
