/* store_stream.c: see store_stream.h. Commands are formatted as RESP by
 * the reply encoders and sent with backend_send to the queue's slot. The
 * scripts that touch both streams (bury, retry, status) go by EVAL with
 * their text: they run rarely (a batch given up, an operator's command, a
 * flush tick), so they need no SCRIPT LOAD bookkeeping. */
#include "store_stream.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "buf.h"
#include "reply.h"
#include "util.h"

#define GROUP "luacached"

/* ---- formatting ---------------------------------------------------------- */

static void arg(buf_t *b, const char *p, size_t len)
{
    reply_bulk(b, p, len);
}

static void arg_str(buf_t *b, const char *s)
{
    reply_bulk(b, s, strlen(s));
}

typedef enum reply_kind { RK_PLAIN, RK_LIST, RK_AUTOCLAIM, RK_STATUS } reply_kind_t;

typedef struct call {
    reply_kind_t kind;
    store_cb cb;
    store_xlist_cb list_cb;
    store_wb_status_cb status_cb;
    void *priv;
    bool busygroup_ok; /* XGROUP CREATE: an existing group is fine */
} call_t;

static void on_reply(void *priv, redisReply *r);

static int send_to(const char *key, size_t klen, buf_t *cmd, call_t *c)
{
    int rc = backend_send(backend_slot(key, klen), c ? on_reply : NULL, c, cmd->data, cmd->len);
    if (rc != 0) free(c);
    buf_free(cmd);
    return rc;
}

static call_t *call_new(reply_kind_t kind, void *priv)
{
    call_t *c = xcalloc(1, sizeof(*c));
    c->kind = kind;
    c->priv = priv;
    return c;
}

/* Send cmd to key's slot; cb gets the reply as a store_result_t. */
static int send_plain(const char *key, size_t klen, buf_t *cmd, store_cb cb, void *priv)
{
    call_t *c = call_new(RK_PLAIN, priv);
    c->cb = cb;
    return send_to(key, klen, cmd, c);
}

/* ---- decoding ------------------------------------------------------------ */

static bool is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static long long as_ll(const redisReply *r)
{
    if (!r) return 0;
    if (r->type == REDIS_REPLY_INTEGER) return r->integer;
    if (is_str(r)) return strtoll(r->str, NULL, 10);
    return 0;
}

/* One [sid, [field, value, ...]] into e (fields NULL when the entry is
 * gone: XREADGROUP of a deleted pending entry answers nil fields). */
static bool decode_entry(const redisReply *r, store_xentry_t *e)
{
    memset(e, 0, sizeof(*e));
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || !is_str(r->element[0]))
        return false;
    e->sid = r->element[0]->str;
    e->sidlen = r->element[0]->len;
    const redisReply *f = r->elements > 1 ? r->element[1] : NULL;
    if (!f || f->type != REDIS_REPLY_ARRAY) return true;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (!is_str(k) || !is_str(v)) continue;
        if (k->len == 2 && memcmp(k->str, "op", 2) == 0) {
            e->op = v->str;
            e->oplen = v->len;
        } else if (k->len == 2 && memcmp(k->str, "id", 2) == 0) {
            e->id = v->str;
            e->idlen = v->len;
        } else if (k->len == 5 && memcmp(k->str, "value", 5) == 0) {
            e->value = v->str;
            e->vlen = v->len;
        } else if (k->len == 5 && memcmp(k->str, "error", 5) == 0) {
            e->error = v->str;
            e->errlen = v->len;
        } else if (k->len == 8 && memcmp(k->str, "attempts", 8) == 0) {
            e->attempts = as_ll(v);
        }
    }
    return true;
}

/* An array of entries; *out is the caller's to free. */
static size_t decode_entries(const redisReply *r, store_xentry_t **out)
{
    *out = NULL;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0) return 0;
    store_xentry_t *e = xcalloc(r->elements, sizeof(*e));
    size_t n = 0;
    for (size_t i = 0; i < r->elements; i++)
        if (decode_entry(r->element[i], &e[n])) n++;
    *out = e;
    return n;
}

/* The entries of a reply by kind: XREADGROUP's [[key, entries]] (nil when
 * none), XAUTOCLAIM's [cursor, entries, deleted]. */
static const redisReply *entries_of(const call_t *c, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY) return NULL;
    if (c->kind == RK_AUTOCLAIM) return r->elements >= 2 ? r->element[1] : NULL;
    if (r->elements < 1) return NULL;
    const redisReply *kv = r->element[0];
    return kv->type == REDIS_REPLY_ARRAY && kv->elements >= 2 ? kv->element[1] : NULL;
}

static void answer_plain(const call_t *c, const redisReply *r)
{
    store_result_t res = {.status = STORE_DOWN};
    if (r && r->type == REDIS_REPLY_ERROR) {
        bool busy = c->busygroup_ok && strncmp(r->str, "BUSYGROUP", 9) == 0;
        res.status = busy ? STORE_OK : STORE_ERROR;
        res.str = r->str;
        res.len = r->len;
    } else if (r) {
        res.status = r->type == REDIS_REPLY_NIL ? STORE_NIL : STORE_OK;
        if (is_str(r)) {
            res.str = r->str;
            res.len = r->len;
        }
        res.integer = as_ll(r);
    }
    c->cb(c->priv, &res);
}

static void answer_list(const call_t *c, const redisReply *r)
{
    store_xlist_t l = {.status = STORE_DOWN};
    store_xentry_t *e = NULL;
    if (r && r->type == REDIS_REPLY_ERROR) {
        l.status = STORE_ERROR;
        l.err = r->str;
    } else if (r) {
        l.status = STORE_OK;
        l.n = decode_entries(entries_of(c, r), &e);
        l.e = e;
    }
    c->list_cb(c->priv, &l);
    free(e);
}

/* The status script's {depth, pending, oldest sid, dead, {entries}}. */
static void answer_status(const call_t *c, const redisReply *r)
{
    store_wb_status_t s = {.status = STORE_DOWN, .oldest_ms = -1};
    store_xentry_t *e = NULL;
    if (r && r->type == REDIS_REPLY_ERROR) {
        s.status = STORE_ERROR;
        s.err = r->str;
    } else if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 5) {
        s.status = STORE_OK;
        s.depth = as_ll(r->element[0]);
        s.pending = as_ll(r->element[1]);
        if (is_str(r->element[2]) && r->element[2]->len > 0) s.oldest_ms = as_ll(r->element[2]);
        s.dead = as_ll(r->element[3]);
        s.n = decode_entries(r->element[4], &e);
        s.e = e;
    } else if (r) {
        s.status = STORE_ERROR;
        s.err = "unexpected reply to the queue status script";
    }
    c->status_cb(c->priv, &s);
    free(e);
}

static void on_reply(void *priv, redisReply *r)
{
    call_t *c = priv;
    switch (c->kind) {
    case RK_PLAIN:
        answer_plain(c, r);
        break;
    case RK_LIST:
    case RK_AUTOCLAIM:
        answer_list(c, r);
        break;
    case RK_STATUS:
        answer_status(c, r);
        break;
    }
    free(c);
}

/* ---- operations ---------------------------------------------------------- */

int store_wb_group(const char *q, size_t qlen, store_cb cb, void *priv)
{
    buf_t b = {0};
    reply_array(&b, 6);
    arg_str(&b, "XGROUP");
    arg_str(&b, "CREATE");
    arg(&b, q, qlen);
    arg_str(&b, GROUP);
    arg_str(&b, "0");
    arg_str(&b, "MKSTREAM");
    call_t *c = call_new(RK_PLAIN, priv);
    c->cb = cb;
    c->busygroup_ok = true;
    return send_to(q, qlen, &b, c);
}

int store_wb_append(const char *q, size_t qlen, const char *id, size_t idlen, const char *value,
                    size_t vlen, store_cb cb, void *priv)
{
    buf_t b = {0};
    reply_array(&b, value ? 9 : 7);
    arg_str(&b, "XADD");
    arg(&b, q, qlen);
    arg_str(&b, "*");
    arg_str(&b, "op");
    arg_str(&b, value ? "set" : "del");
    arg_str(&b, "id");
    arg(&b, id, idlen);
    if (value) {
        arg_str(&b, "value");
        arg(&b, value, vlen);
    }
    return send_plain(q, qlen, &b, cb, priv);
}

int store_wb_read(const char *q, size_t qlen, const char *consumer, long count, store_xlist_cb cb,
                  void *priv)
{
    buf_t b = {0};
    reply_array(&b, 9);
    arg_str(&b, "XREADGROUP");
    arg_str(&b, "GROUP");
    arg_str(&b, GROUP);
    arg_str(&b, consumer);
    arg_str(&b, "COUNT");
    reply_bulk_ll(&b, count);
    arg_str(&b, "STREAMS");
    arg(&b, q, qlen);
    arg_str(&b, ">");
    call_t *c = call_new(RK_LIST, priv);
    c->list_cb = cb;
    return send_to(q, qlen, &b, c);
}

int store_wb_claim_idle(const char *q, size_t qlen, const char *consumer, long long min_idle_ms,
                        long count, store_xlist_cb cb, void *priv)
{
    buf_t b = {0};
    reply_array(&b, 8);
    arg_str(&b, "XAUTOCLAIM");
    arg(&b, q, qlen);
    arg_str(&b, GROUP);
    arg_str(&b, consumer);
    reply_bulk_ll(&b, min_idle_ms);
    arg_str(&b, "0-0");
    arg_str(&b, "COUNT");
    reply_bulk_ll(&b, count);
    call_t *c = call_new(RK_AUTOCLAIM, priv);
    c->list_cb = cb;
    return send_to(q, qlen, &b, c);
}

static void add_ids(buf_t *b, const char *const *sids, const size_t *lens, size_t n)
{
    for (size_t i = 0; i < n; i++)
        arg(b, sids[i], lens[i]);
}

static void eval_begin(buf_t *b, const char *script, long nargs, const char *q, size_t qlen,
                       const char *dead, size_t dlen);

/* KEYS queue, dead; ARGV group, consumer, sid... Only entries the consumer
 * still owns are claimed again: one another instance took over is its now. */
static const char touch_lua[] = "local lost=0 for i=3,#ARGV do "
                                "local p=redis.call('XPENDING',KEYS[1],ARGV[1],ARGV[i],ARGV[i],1) "
                                "if p[1] and p[1][2]==ARGV[2] then "
                                "redis.call('XCLAIM',KEYS[1],ARGV[1],ARGV[2],0,ARGV[i],'JUSTID') "
                                "else lost=lost+1 end end return lost";

int store_wb_touch(const char *q, size_t qlen, const char *dead, size_t dlen, const char *consumer,
                   const char *const *sids, const size_t *lens, size_t n, store_cb cb, void *priv)
{
    if (n == 0) return 0;
    buf_t b = {0};
    eval_begin(&b, touch_lua, (long)(n + 2), q, qlen, dead, dlen);
    arg_str(&b, GROUP);
    arg_str(&b, consumer);
    add_ids(&b, sids, lens, n);
    return send_plain(q, qlen, &b, cb, priv);
}

/* KEYS queue, dead; ARGV group, sid... Acknowledged and deleted together:
 * an entry acknowledged but left in the stream would never be delivered
 * again and would hold the queue's length and lag for ever. */
static const char done_lua[] = "local n=0 for s=2,#ARGV,1000 do local e=math.min(s+999,#ARGV) "
                               "redis.call('XACK',KEYS[1],ARGV[1],unpack(ARGV,s,e)) "
                               "n=n+redis.call('XDEL',KEYS[1],unpack(ARGV,s,e)) end return n";

int store_wb_done(const char *q, size_t qlen, const char *dead, size_t dlen,
                  const char *const *sids, const size_t *lens, size_t n, store_cb cb, void *priv)
{
    buf_t b = {0};
    eval_begin(&b, done_lua, (long)(n + 1), q, qlen, dead, dlen);
    arg_str(&b, GROUP);
    add_ids(&b, sids, lens, n);
    return send_plain(q, qlen, &b, cb, priv);
}

static void eval_begin(buf_t *b, const char *script, long nargs, const char *q, size_t qlen,
                       const char *dead, size_t dlen)
{
    reply_array(b, nargs + 5);
    arg_str(b, "EVAL");
    arg_str(b, script);
    arg_str(b, "2");
    arg(b, q, qlen);
    arg(b, dead, dlen);
}

/* KEYS queue, dead; ARGV group, error, attempts, sid... */
static const char bury_lua[] =
    "local n=0 for i=4,#ARGV do local e=redis.call('XRANGE',KEYS[1],ARGV[i],ARGV[i]) "
    "if #e>0 then local f=e[1][2] f[#f+1]='error' f[#f+1]=ARGV[2] f[#f+1]='attempts' "
    "f[#f+1]=ARGV[3] redis.call('XADD',KEYS[2],'*',unpack(f)) n=n+1 end "
    "redis.call('XACK',KEYS[1],ARGV[1],ARGV[i]) redis.call('XDEL',KEYS[1],ARGV[i]) end "
    "return n";

int store_wb_bury(const char *q, size_t qlen, const char *dead, size_t dlen,
                  const char *const *sids, const size_t *lens, size_t n, const char *err,
                  long long attempts, store_cb cb, void *priv)
{
    buf_t b = {0};
    eval_begin(&b, bury_lua, (long)(n + 3), q, qlen, dead, dlen);
    arg_str(&b, GROUP);
    arg_str(&b, err);
    reply_bulk_ll(&b, attempts);
    add_ids(&b, sids, lens, n);
    return send_plain(q, qlen, &b, cb, priv);
}

/* KEYS queue, dead; ARGV max. Only op, id and value go back. */
static const char retry_lua[] =
    "local e=redis.call('XRANGE',KEYS[2],'-','+','COUNT',tonumber(ARGV[1])) "
    "for _,x in ipairs(e) do local f,g=x[2],{} for j=1,#f,2 do "
    "if f[j]=='op' or f[j]=='id' or f[j]=='value' then g[#g+1]=f[j] g[#g+1]=f[j+1] end end "
    "if #g>0 then redis.call('XADD',KEYS[1],'*',unpack(g)) end "
    "redis.call('XDEL',KEYS[2],x[1]) end return #e";

int store_wb_retry(const char *q, size_t qlen, const char *dead, size_t dlen, long max, store_cb cb,
                   void *priv)
{
    buf_t b = {0};
    eval_begin(&b, retry_lua, 1, q, qlen, dead, dlen);
    reply_bulk_ll(&b, max);
    return send_plain(q, qlen, &b, cb, priv);
}

/* KEYS queue, dead; ARGV group, min idle ms, self. XINFO's rows are flat
 * name/value arrays (Redis 7.2 adds fields: looked up by name). */
static const char prune_lua[] =
    "local cs=redis.pcall('XINFO','CONSUMERS',KEYS[1],ARGV[1]) "
    "if type(cs)~='table' or cs.err then return 0 end local n=0 "
    "for _,c in ipairs(cs) do local f={} for j=1,#c-1,2 do f[c[j]]=c[j+1] end "
    "if f.name~=ARGV[3] and tonumber(f.pending)==0 and tonumber(f.idle)>=tonumber(ARGV[2]) then "
    "redis.call('XGROUP','DELCONSUMER',KEYS[1],ARGV[1],f.name) n=n+1 end end return n";

int store_wb_prune(const char *q, size_t qlen, const char *dead, size_t dlen, const char *self,
                   long long min_idle_ms, store_cb cb, void *priv)
{
    buf_t b = {0};
    eval_begin(&b, prune_lua, 3, q, qlen, dead, dlen);
    arg_str(&b, GROUP);
    reply_bulk_ll(&b, min_idle_ms);
    arg_str(&b, self);
    return send_plain(q, qlen, &b, cb, priv);
}

/* KEYS queue, dead; ARGV group, limit. */
static const char status_lua[] =
    "local n=redis.call('XLEN',KEYS[1]) local p=0 "
    "local x=redis.pcall('XPENDING',KEYS[1],ARGV[1]) "
    "if type(x)=='table' and x.err==nil then p=x[1] end "
    "local f=redis.call('XRANGE',KEYS[1],'-','+','COUNT',1) local o='' "
    "if #f>0 then o=f[1][1] end "
    "local l={} if tonumber(ARGV[2])>0 then "
    "l=redis.call('XRANGE',KEYS[2],'-','+','COUNT',tonumber(ARGV[2])) end "
    "return {n,p,o,redis.call('XLEN',KEYS[2]),l}";

int store_wb_status(const char *q, size_t qlen, const char *dead, size_t dlen, long limit,
                    store_wb_status_cb cb, void *priv)
{
    buf_t b = {0};
    eval_begin(&b, status_lua, 2, q, qlen, dead, dlen);
    arg_str(&b, GROUP);
    reply_bulk_ll(&b, limit);
    call_t *c = call_new(RK_STATUS, priv);
    c->status_cb = cb;
    return send_to(q, qlen, &b, c);
}
