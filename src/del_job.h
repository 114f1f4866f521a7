/* del_job.h: a DEL whose keys each take a step of their own first (an
 * origin delete for write-through, a queue append for write-behind), then
 * leave the cache together (cache_del_keys): the keys whose step failed
 * stay cached, and the reply is the number removed, or the first step's
 * error. The client's next commands wait until the reply, so they see the
 * delete, as after a plain DEL. */
#ifndef LC_DEL_JOB_H
#define LC_DEL_JOB_H

#include "cache.h"
#include "sink.h"

typedef struct del_job del_job_t;

/* Copies the keys (ids included) and holds the client's input. Start each
 * key's step with del_job_step, then call del_job_started once. */
del_job_t *del_job_new(sink_t *sink, const cache_key_t *keys, long nkeys);
const cache_key_t *del_job_key(const del_job_t *j, long i); /* its id stays valid */
void del_job_step(del_job_t *j);                            /* one more step to wait for */
/* Key i's step answered; err NULL on success, else the error text (copied,
 * the first one is the reply). */
void del_job_step_done(del_job_t *j, long i, const char *err);
/* Every step is started: the job ends when the last one answers. */
void del_job_started(del_job_t *j);

#endif
