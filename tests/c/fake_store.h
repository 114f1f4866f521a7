/* fake_store.h: a scripted stand-in for the storage layer (store.h) and the
 * parts of backend.h the cache layer calls, for unit tests of the cache and
 * its fills. Linked ahead of luacached_core, it replaces store.o and
 * backend.o, so no Redis and no hiredis take part.
 *
 * Every store_* call is recorded, in order, as a call the test answers when
 * it chooses (fs_answer): the test decides the interleaving of replies and
 * broadcasts that a real Redis only produces by chance. "Fire and forget"
 * calls are recorded already answered. While fs_set_up(false), every call
 * returns -1 (Redis unreachable) and records nothing. */
#ifndef LC_TESTS_FAKE_STORE_H
#define LC_TESTS_FAKE_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

typedef enum fs_kind {
    FS_GET,
    FS_SET_UNLOCK,
    FS_DEL_UNLOCK,
    FS_LOCK,
    FS_RELEASE,
    FS_PUT_IF_LOCKED,
    FS_PUT,
    FS_TAG_ADD,
    FS_TAG_REMOVE,
    FS_DEL,
    FS_UNLINK,
    FS_SCAN,
    FS_SSCAN,
    FS_GEN_SYNC,
    FS_GEN_FLUSH,
    FS_PUBLISH,
} fs_kind_t;

typedef struct fs_call {
    fs_kind_t kind;
    char *key; /* the key (lock for LOCK/RELEASE, channel for PUBLISH), NUL-ended */
    size_t klen;
    char *val; /* value stored, member added, message published; NUL-ended */
    size_t vlen;
    char token[64]; /* LOCK, RELEASE, PUT_IF_LOCKED */
    long long px;
    bool nx;
    bool answered;
    store_cb cb;
    store_scan_cb scan_cb;
    void *priv;
} fs_call_t;

void fs_reset(void); /* forget every call (unanswered ones are dropped unanswered) */
void fs_set_up(bool up);
void fs_set_subscribed(bool subscribed);
void fs_reshape(void); /* a cluster slot changed hands: store_reshapes() grows */

size_t fs_count(void);      /* calls recorded since the reset */
fs_call_t *fs_at(size_t i); /* the i-th, or NULL */
/* The first unanswered call of kind (for key, when key is not NULL), or NULL. */
fs_call_t *fs_next(fs_kind_t kind, const char *key);
/* Recorded calls of kind (for key, when not NULL), answered or not. */
size_t fs_count_kind(fs_kind_t kind, const char *key);

/* Run c's callback once with this result. */
void fs_answer(fs_call_t *c, store_status_t status, const char *str, size_t len, long long integer);
void fs_answer_nil(fs_call_t *c);
void fs_answer_ok(fs_call_t *c); /* a status reply ("OK") */
void fs_answer_int(fs_call_t *c, long long v);
void fs_answer_value(fs_call_t *c, const char *v, size_t len);
void fs_answer_down(fs_call_t *c);
/* A SCAN/SSCAN step: the next cursor and n names. */
void fs_answer_scan(fs_call_t *c, const char *cursor, const char *const *names, size_t n);

/* A message on the events channel, as the subscriber link hands it over
 * (another instance's broadcast); the subscription coming back. */
void fs_deliver(const char *msg, size_t len);
void fs_resync(void);

#endif
