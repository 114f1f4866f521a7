/* del_job.c: see del_job.h. */
#include "del_job.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"
#include "util.h"

struct del_job {
    sink_t *sink;
    long n, pending;   /* pending: steps to answer, plus one until all are started */
    cache_key_t *keys; /* ids copied */
    bool *failed;
    char *first_err;
};

del_job_t *del_job_new(sink_t *sink, const cache_key_t *keys, long nkeys)
{
    del_job_t *j = xcalloc(1, sizeof(*j));
    j->sink = sink;
    j->n = nkeys;
    j->keys = xcalloc((size_t)(nkeys ? nkeys : 1), sizeof(*j->keys));
    j->failed = xcalloc((size_t)(nkeys ? nkeys : 1), sizeof(*j->failed));
    for (long i = 0; i < nkeys; i++) {
        j->keys[i] = keys[i];
        j->keys[i].id = xmemdup(keys[i].id, keys[i].idlen);
    }
    j->pending = 1;
    sink_hold_input(sink);
    return j;
}

const cache_key_t *del_job_key(const del_job_t *j, long i)
{
    return &j->keys[i];
}

void del_job_step(del_job_t *j)
{
    j->pending++;
}

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

/* Every step answered: the keys whose step succeeded leave the cache. */
static void finish(del_job_t *j)
{
    sink_release_input(j->sink);
    cache_key_t *gone = xcalloc((size_t)(j->n ? j->n : 1), sizeof(*gone));
    long k = 0;
    for (long i = 0; i < j->n; i++)
        if (!j->failed[i]) gone[k++] = j->keys[i];
    if (k > 0)
        cache_del_keys(gone, k, true, on_removed, j);
    else
        on_removed(j, 0, NULL);
    free(gone);
}

void del_job_step_done(del_job_t *j, long i, const char *err)
{
    if (err) {
        j->failed[i] = true;
        if (!j->first_err) j->first_err = xstrdup(err);
    }
    if (--j->pending == 0) finish(j);
}

void del_job_started(del_job_t *j)
{
    if (--j->pending == 0) finish(j);
}
