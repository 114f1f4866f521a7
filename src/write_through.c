/* write_through.c: see write_through.h. */
#include "write_through.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "del_job.h"
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
    ns_t *ns = del_job_key(d->job, d->i)->ns;
    if (err)
        ns->stats.writes_through_error++;
    else
        ns->stats.writes_through_ok++;
    policy_unref(d->p);
    del_job_t *j = d->job;
    long i = d->i;
    free(d);
    del_job_step_done(j, i, err);
}

void write_through_del(sink_t *sink, const cache_key_t *keys, long nkeys)
{
    del_job_t *j = del_job_new(sink, keys, nkeys);
    for (long i = 0; i < nkeys; i++) {
        const cache_key_t *k = del_job_key(j, i);
        policy_t *p = k->ns->cur;
        if (!p || !p->conf.has_delete) continue;
        del_one_t *d = xcalloc(1, sizeof(*d));
        *d = (del_one_t){j, i, p};
        policy_ref(p);
        del_job_step(j);
        policy_delete(p, k->id, k->idlen, on_deleted, d);
    }
    del_job_started(j);
}
