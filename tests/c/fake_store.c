/* fake_store.c: see fake_store.h. Definitions of every store.h function and
 * of the backend.h functions the cache layer uses, so the linker takes
 * these instead of store.o and backend.o from luacached_core. */
#include "fake_store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "util.h"

static fs_call_t **calls;
static size_t ncalls, cap;
static bool up = true, subscribed = true;
static uint64_t reshapes;
static store_stats_t stats;

static void drop_all(void)
{
    for (size_t i = 0; i < ncalls; i++) {
        free(calls[i]->key);
        free(calls[i]->val);
        free(calls[i]);
    }
    ncalls = 0;
}

void fs_reset(void)
{
    drop_all();
    up = subscribed = true;
}

void fs_set_up(bool u)
{
    up = u;
}

void fs_set_subscribed(bool s)
{
    subscribed = s;
}

void fs_reshape(void)
{
    reshapes++;
}

uint64_t store_reshapes(void)
{
    return reshapes;
}

size_t fs_count(void)
{
    return ncalls;
}

fs_call_t *fs_at(size_t i)
{
    return i < ncalls ? calls[i] : NULL;
}

static bool is(const fs_call_t *c, fs_kind_t kind, const char *key)
{
    return c->kind == kind && (!key || strcmp(c->key, key) == 0);
}

fs_call_t *fs_next(fs_kind_t kind, const char *key)
{
    for (size_t i = 0; i < ncalls; i++)
        if (!calls[i]->answered && is(calls[i], kind, key)) return calls[i];
    return NULL;
}

size_t fs_count_kind(fs_kind_t kind, const char *key)
{
    size_t n = 0;
    for (size_t i = 0; i < ncalls; i++)
        n += is(calls[i], kind, key);
    return n;
}

static char *dup_bytes(const char *p, size_t len)
{
    char *s = xmalloc(len + 1);
    if (len) memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

static fs_call_t *record(fs_kind_t kind, const char *key, size_t klen, store_cb cb, void *priv)
{
    if (ncalls == cap) {
        cap = cap ? 2 * cap : 64;
        calls = xrealloc(calls, cap * sizeof(*calls));
    }
    fs_call_t *c = xcalloc(1, sizeof(*c));
    c->kind = kind;
    c->key = dup_bytes(key ? key : "", key ? klen : 0);
    c->klen = key ? klen : 0;
    c->cb = cb;
    c->priv = priv;
    c->answered = !cb; /* fire and forget */
    calls[ncalls++] = c;
    return c;
}

/* A call that carries a value (stored, added or published). */
static fs_call_t *record_val(fs_kind_t kind, const char *key, size_t klen, const char *val,
                             size_t vlen, long long px, store_cb cb, void *priv)
{
    fs_call_t *c = record(kind, key, klen, cb, priv);
    c->val = dup_bytes(val, vlen);
    c->vlen = vlen;
    c->px = px;
    return c;
}

void fs_answer(fs_call_t *c, store_status_t status, const char *str, size_t len, long long integer)
{
    if (!c || c->answered) abort(); /* a test bug: say so loudly */
    c->answered = true;
    store_result_t r = {.status = status, .str = str, .len = len, .integer = integer};
    if (c->cb) c->cb(c->priv, &r);
}

void fs_answer_nil(fs_call_t *c)
{
    fs_answer(c, STORE_NIL, NULL, 0, 0);
}

void fs_answer_ok(fs_call_t *c)
{
    fs_answer(c, STORE_OK, NULL, 0, 0);
}

void fs_answer_int(fs_call_t *c, long long v)
{
    fs_answer(c, STORE_OK, NULL, 0, v);
}

void fs_answer_value(fs_call_t *c, const char *v, size_t len)
{
    fs_answer(c, STORE_OK, v, len, 0);
}

void fs_answer_scan(fs_call_t *c, const char *cursor, const char *const *names, size_t n)
{
    if (!c || c->answered || !c->scan_cb) abort();
    c->answered = true;
    size_t lens[16];
    if (n > 16) abort();
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(names[i]);
    store_scan_t s = {.status = STORE_OK, .cursor = cursor, .n = n, .items = names, .lens = lens};
    c->scan_cb(c->priv, &s);
}

void fs_answer_down(fs_call_t *c)
{
    fs_answer(c, STORE_DOWN, NULL, 0, 0);
}

/* ---------------------------------------------------------------------------
 * store.h
 * ------------------------------------------------------------------------- */

void store_init(uv_loop_t *loop)
{
    LC_UNUSED(loop);
}

void store_close(void)
{
    drop_all();
    free(calls);
    calls = NULL;
    cap = 0;
}

const store_stats_t *store_stats(void)
{
    return &stats;
}

int store_get(const char *key, size_t len, store_cb cb, void *priv)
{
    if (!up) return -1;
    record(FS_GET, key, len, cb, priv);
    return 0;
}

int store_set_unlock(const char *key, size_t len, const char *lock, size_t llen, const char *val,
                     size_t vlen, long long px, store_cb cb, void *priv)
{
    LC_UNUSED(lock);
    LC_UNUSED(llen);
    if (!up) return -1;
    record_val(FS_SET_UNLOCK, key, len, val, vlen, px, cb, priv);
    return 0;
}

/* SET's conditional script is not scripted here: no race test sends one. */
int store_set_cond(const char *key, size_t len, const char *lock, size_t llen, const char *val,
                   size_t vlen, long long px, const char *mode, long long version, long long gen,
                   long long now, store_cb cb, void *priv)
{
    LC_UNUSED(key);
    LC_UNUSED(len);
    LC_UNUSED(lock);
    LC_UNUSED(llen);
    LC_UNUSED(val);
    LC_UNUSED(vlen);
    LC_UNUSED(px);
    LC_UNUSED(mode);
    LC_UNUSED(version);
    LC_UNUSED(gen);
    LC_UNUSED(now);
    LC_UNUSED(cb);
    LC_UNUSED(priv);
    return -1;
}

int store_del_unlock(const char *key, size_t len, const char *lock, size_t llen, store_cb cb,
                     void *priv)
{
    LC_UNUSED(lock);
    LC_UNUSED(llen);
    if (!up) return -1;
    record(FS_DEL_UNLOCK, key, len, cb, priv);
    return 0;
}

static void keep_token(fs_call_t *c, const char *token)
{
    size_t n = strlen(token);
    if (n >= sizeof(c->token)) n = sizeof(c->token) - 1;
    memcpy(c->token, token, n);
    c->token[n] = '\0';
}

/* store_lock_read is recorded as two calls, a LOCK and a GET, answered one
 * by one in that order (as Redis answers the pipeline); its callback runs
 * once the GET is answered, with both results. */
typedef struct lock_read {
    store_lock_cb cb;
    void *priv;
    store_result_t lock;
    char err[128];
    bool lock_answered;
} lock_read_t;

static void on_lock_part(void *priv, const store_result_t *r)
{
    lock_read_t *lr = priv;
    lr->lock = *r;
    if (r->str) { /* valid only now: keep an error's text */
        snprintf(lr->err, sizeof(lr->err), "%.*s", (int)r->len, r->str);
        lr->lock.str = lr->err;
        lr->lock.len = strlen(lr->err);
    }
    lr->lock_answered = true;
}

static void on_read_part(void *priv, const store_result_t *r)
{
    lock_read_t *lr = priv;
    if (!lr->lock_answered) abort(); /* a test bug: Redis answers in order */
    lr->cb(lr->priv, &lr->lock, r);
    free(lr);
}

int store_lock_read(const char *lock, size_t llen, const char *token, long long px, const char *key,
                    size_t len, store_lock_cb cb, void *priv)
{
    if (!up) return -1;
    lock_read_t *lr = xcalloc(1, sizeof(*lr));
    lr->cb = cb;
    lr->priv = priv;
    fs_call_t *c = record(FS_LOCK, lock, llen, on_lock_part, lr);
    keep_token(c, token);
    c->px = px;
    record(FS_GET, key, len, on_read_part, lr);
    return 0;
}

int store_release(const char *lock, size_t llen, const char *token)
{
    if (!up) return -1;
    keep_token(record(FS_RELEASE, lock, llen, NULL, NULL), token);
    return 0;
}

int store_put_if_locked(const char *key, size_t len, const char *lock, size_t llen,
                        const char *token, const char *val, size_t vlen, long long px,
                        const char *channel, size_t clen, const char *msg, size_t mlen, store_cb cb,
                        void *priv)
{
    LC_UNUSED(lock);
    LC_UNUSED(llen);
    if (up && msg) /* the "F" that goes with the store, recorded after it */
        record_val(FS_PUBLISH, channel, clen, msg, mlen, 0, NULL, NULL);
    if (!up) return -1;
    keep_token(record_val(FS_PUT_IF_LOCKED, key, len, val, vlen, px, cb, priv), token);
    return 0;
}

int store_put(const char *key, size_t len, const char *val, size_t vlen, long long px, bool nx,
              store_cb cb, void *priv)
{
    if (!up) return -1;
    record_val(FS_PUT, key, len, val, vlen, px, cb, priv)->nx = nx;
    return 0;
}

int store_tag_add(const char *tag, size_t tlen, const char *member, size_t mlen, long long px,
                  store_cb cb, void *priv)
{
    if (!up) return -1;
    record_val(FS_TAG_ADD, tag, tlen, member, mlen, px, cb, priv);
    return 0;
}

int store_tag_remove(const char *tag, size_t tlen, const char *const *members, const size_t *lens,
                     size_t n)
{
    LC_UNUSED(members);
    LC_UNUSED(lens);
    if (!up) return -1;
    record(FS_TAG_REMOVE, tag, tlen, NULL, NULL)->px = (long long)n;
    return 0;
}

int store_del(const char *key, size_t len)
{
    if (!up) return -1;
    record(FS_DEL, key, len, NULL, NULL);
    return 0;
}

int store_unlink(const char *key, size_t len, store_cb cb, void *priv)
{
    if (!up) return -1;
    record(FS_UNLINK, key, len, cb, priv);
    return 0;
}

int store_scan(const char *cursor, const char *glob, size_t glen, int count, store_scan_cb cb,
               void *priv)
{
    LC_UNUSED(cursor);
    LC_UNUSED(count);
    if (!up) return -1;
    fs_call_t *c = record(FS_SCAN, glob, glen, NULL, priv);
    c->answered = false;
    c->scan_cb = cb;
    return 0;
}

int store_sscan(const char *set, size_t slen, const char *cursor, int count, store_scan_cb cb,
                void *priv)
{
    LC_UNUSED(cursor);
    LC_UNUSED(count);
    if (!up) return -1;
    fs_call_t *c = record(FS_SSCAN, set, slen, NULL, priv);
    c->answered = false;
    c->scan_cb = cb;
    return 0;
}

int store_gen_sync(const char *key, size_t len, long long known, store_cb cb, void *priv)
{
    if (!up) return -1;
    record(FS_GEN_SYNC, key, len, cb, priv)->px = known;
    return 0;
}

int store_gen_flush(const char *key, size_t len, long long known, store_cb cb, void *priv)
{
    if (!up) return -1;
    record(FS_GEN_FLUSH, key, len, cb, priv)->px = known;
    return 0;
}

int store_publish(const char *key, size_t klen, const char *channel, size_t clen, const char *msg,
                  size_t len, store_cb cb, void *priv)
{
    LC_UNUSED(key);
    LC_UNUSED(klen);
    if (!up) return -1;
    record_val(FS_PUBLISH, channel, clen, msg, len, 0, cb, priv);
    return 0;
}

/* ---------------------------------------------------------------------------
 * backend.h, as far as the cache layer uses it
 * ------------------------------------------------------------------------- */

bool backend_up(void)
{
    return up;
}

bool backend_any_up(void)
{
    return up;
}

bool backend_slot_up(unsigned slot)
{
    LC_UNUSED(slot);
    return up;
}

unsigned backend_slot(const char *key, size_t len)
{
    LC_UNUSED(key);
    LC_UNUSED(len);
    return 0;
}

bool backend_subscribed(void)
{
    return up && subscribed;
}

uint64_t backend_outages_total(void)
{
    return 0;
}

uint64_t backend_subscriber_outages_total(void)
{
    return 0;
}

uint64_t backend_errors_total(void)
{
    return 0;
}

static backend_msg_cb msg_cb;
static backend_resync_cb resync_cb;

int backend_subscribe(const char *channel, backend_msg_cb on_msg, backend_resync_cb on_resync)
{
    LC_UNUSED(channel);
    msg_cb = on_msg;
    resync_cb = on_resync;
    return 0;
}

void fs_deliver(const char *msg, size_t len)
{
    if (!msg_cb) abort(); /* nobody subscribed: a test bug */
    msg_cb(msg, len);
}

void fs_resync(void)
{
    if (resync_cb) resync_cb();
}

void backend_on_subscriber_lost(backend_lost_cb cb)
{
    LC_UNUSED(cb);
}

void backend_on_up(void (*fn)(void))
{
    LC_UNUSED(fn);
}

int backend_cmd(backend_cb cb, void *priv, const char *fmt, ...)
{
    LC_UNUSED(cb);
    LC_UNUSED(priv);
    LC_UNUSED(fmt);
    return -1; /* nothing above the store layer should need this in a test */
}
