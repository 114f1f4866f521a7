/* store.c: typed Redis operations over backend.c (see store.h).
 *
 * Commands are formatted here, once, straight into RESP (no printf-style
 * formatting per hit). Reads are collected for the loop turn in one
 * growing MGET and sent from a prepare handle, which runs just before the
 * loop polls: hiredis would not write any earlier, so the batch adds no
 * latency. */
#include "store.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "buf.h"
#include "log.h"
#include "reply.h"
#include "util.h"

/* ---------------------------------------------------------------------------
 * RESP formatting
 * ------------------------------------------------------------------------- */

/* A request's arguments are bulk strings, as replies are: the reply
 * encoders (integers formatted by hand) build them. */
static void fmt_count(buf_t *b, size_t n)
{
    reply_array(b, (long)n);
}

static void fmt_arg(buf_t *b, const char *p, size_t len)
{
    reply_bulk(b, p, len);
}

static void fmt_str(buf_t *b, const char *s)
{
    fmt_arg(b, s, strlen(s));
}

/* A key of a batched read, "$<len>\r\n<key>\r\n", written in place with
 * one reservation: every hit adds one to an MGET. */
static void fmt_key(buf_t *b, const char *key, size_t len)
{
    char digits[24];
    size_t nd = 0;
    size_t v = len;
    do {
        digits[nd++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_reserve(b, len + nd + 5);
    char *d = b->data + b->len;
    *d++ = '$';
    while (nd)
        *d++ = digits[--nd];
    *d++ = '\r';
    *d++ = '\n';
    memcpy(d, key, len);
    d += len;
    *d++ = '\r';
    *d++ = '\n';
    b->len = (size_t)(d - b->data);
}

static void fmt_ll(buf_t *b, long long v)
{
    reply_bulk_ll(b, v);
}

/* ---------------------------------------------------------------------------
 * Results
 * ------------------------------------------------------------------------- */

static void decode(const redisReply *r, store_result_t *out)
{
    *out = (store_result_t){.status = STORE_DOWN};
    if (!r) return;
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        out->status = STORE_OK;
        out->str = r->str;
        out->len = r->len;
        break;
    case REDIS_REPLY_INTEGER:
        out->status = STORE_OK;
        out->integer = r->integer;
        break;
    case REDIS_REPLY_NIL:
        out->status = STORE_NIL;
        break;
    case REDIS_REPLY_ERROR:
        out->status = STORE_ERROR;
        out->str = r->str;
        out->len = r->len;
        break;
    default: /* an array: none of our single-key calls expect one */
        out->status = STORE_OK;
        break;
    }
}

typedef struct call {
    store_cb cb;
    void *priv;
} call_t;

static void on_reply(void *priv, redisReply *reply)
{
    call_t *c = priv;
    store_result_t r;
    decode(reply, &r);
    store_cb cb = c->cb;
    void *cpriv = c->priv;
    free(c);
    cb(cpriv, &r);
}

static store_stats_t stats;
static buf_t scratch; /* commands are formatted here; backend copies them */

static void flush_reads(void);
static void flush_writes(void);
/* Send whichever batch is open (at most one is), so a call issued now
 * comes after it. */
static void flush_pending(void)
{
    flush_reads();
    flush_writes();
}

/* Send the open batch ahead of the command already formatted in scratch
 * (the order of calls). Sending a batch of stores formats its own script
 * call in scratch (script_send), so the command is set aside meanwhile:
 * otherwise both would leave as one request, and every later reply on the
 * link would go to the wrong caller. */
static void flush_pending_before_scratch(void)
{
    buf_t cmd = scratch;
    scratch = (buf_t){0};
    flush_pending();
    buf_free(&scratch);
    scratch = cmd;
}

/* Send the command in scratch, about keys of slot; cb may be NULL (fire
 * and forget). */
static int send_cmd(unsigned slot, store_cb cb, void *priv)
{
    flush_pending_before_scratch();
    int rc;
    if (!cb) {
        rc = backend_send(slot, NULL, NULL, scratch.data, scratch.len);
    } else {
        call_t *c = xmalloc(sizeof(*c));
        *c = (call_t){cb, priv};
        rc = backend_send(slot, on_reply, c, scratch.data, scratch.len);
        if (rc != 0) free(c);
    }
    buf_reset(&scratch);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Scripts: loaded when the link comes up, called by their SHA-1
 * ------------------------------------------------------------------------- */

enum script_id {
    SC_SET_UNLOCK,
    SC_SET_COND,
    SC_DEL_UNLOCK,
    SC_RELEASE,
    SC_TAG_ADD,
    SC_GEN_SYNC,
    SC_GEN_FLUSH,
    SC_PUT_BATCH,
    SC_PUBLISH,
    SC_COUNT
};

/* The generation key may hold anything (another program, a bug): only a
 * decimal integer in [0, 2^53-1] (ENTRY_GEN_MAX) is a generation. Anything
 * else (not a number, negative, fractional, too large, another Redis type)
 * counts as absent, i.e. 0, and is overwritten with a valid generation by
 * the next sync or flush, so a poisoned key cannot take the namespace down
 * (docs/STORAGE.md). Redis's Lua numbers are doubles: 2^53-1 keeps every
 * generation exact, and '%.0f' writes it back without an exponent.
 * READ_GEN sets g (0 if absent or poisoned) and bad. */
#define GEN_MAX_LUA "9007199254740991"
#define READ_GEN                                                                                   \
    "local g,bad=0,false local t=redis.call('type',KEYS[1]).ok "                                   \
    "if t=='string' then local s=redis.call('get',KEYS[1]) "                                       \
    "if #s<=16 and string.match(s,'^%d+$') and tonumber(s)<=" GEN_MAX_LUA " then "                 \
    "g=tonumber(s) else bad=true end elseif t~='none' then bad=true end "                          \
    "local m=tonumber(ARGV[1]) "

static struct script {
    const char *text;
    char sha[41];
} scripts[SC_COUNT] = {
    /* SET and DEL change the entry and delete its fill lock in one script
     * (both share the key's hash tag): a fill's store, which needs the lock,
     * lands before them or not at all. Two commands would let it land
     * between and survive the invalidation. */
    [SC_SET_UNLOCK] = {"redis.call('del',KEYS[2]) "
                       "return redis.call('set',KEYS[1],ARGV[1],'px',ARGV[2])"},
    /* SET's NX, XX, GET and KEEPTTL (store_set_cond): read the old entry,
     * decide and write in one script, so no other write lands between the
     * decision and the store. An old entry is live when it is a value of
     * the caller's policy version (ARGV[4]) and generation (ARGV[5]) that
     * no deadline has passed at ARGV[6] (the rule of cache.c's PEEK, for
     * values; the header layout is entry.h's). ARGV[3]: 'n' NX, 'x' XX,
     * 'k' KEEPTTL (the new entry takes the old one's three deadlines and
     * its PTTL). Returns {stored 1/0, the old live value or nil}; a store
     * deletes the fill lock, as SC_SET_UNLOCK. */
    [SC_SET_COND] = {"local o=false if redis.call('type',KEYS[1]).ok=='string' then "
                     "o=redis.call('get',KEYS[1]) end local live,old,f,s,e=false,false "
                     "if o then local k,v,g,f1,s1,e1,at=string.match(o,"
                     "'^LC1 (%a) (%-?%d+) (%d+) (%d+) (%d+) (%d+) %d+ %d+\\n()') "
                     "if k=='v' and v==ARGV[4] and g==ARGV[5] and "
                     "math.max(tonumber(s1),tonumber(e1))>tonumber(ARGV[6]) then "
                     "live,old,f,s,e=true,string.sub(o,at),f1,s1,e1 end end local m=ARGV[3] "
                     "if (string.find(m,'n') and live) or (string.find(m,'x') and not live) then "
                     "return {0,old} end local val,px=ARGV[1],ARGV[2] "
                     "if live and string.find(m,'k') then "
                     "local p,t=string.match(val,'^(LC1 %a %-?%d+ %d+ )%d+ %d+ %d+( .*)$') "
                     "val=p..f..' '..s..' '..e..t px=redis.call('pttl',KEYS[1]) "
                     "if px<1 then px=1 end end redis.call('del',KEYS[2]) "
                     "redis.call('set',KEYS[1],val,'px',px) return {1,old}"},
    [SC_DEL_UNLOCK] = {"redis.call('del',KEYS[2]) return redis.call('del',KEYS[1])"},
    /* Release a lock only if it is still ours. */
    [SC_RELEASE] = {"if redis.call('get',KEYS[1])==ARGV[1] then "
                    "return redis.call('del',KEYS[1]) end return 0"},
    /* Index an entry under a tag, and make the set live at least as long as
     * the entry, so the index never expires before its members (one key per
     * script: the set and the entry may live in different cluster slots). */
    [SC_TAG_ADD] = {"redis.call('sadd',KEYS[1],ARGV[1]) "
                    "if redis.call('pttl',KEYS[1])<tonumber(ARGV[2]) then "
                    "redis.call('pexpire',KEYS[1],ARGV[2]) end return 1"},
    /* Read; raise to the caller's known generation if Redis holds less, and
     * repair a poisoned key. */
    [SC_GEN_SYNC] = {READ_GEN "if bad or g<m then "
                              "redis.call('set',KEYS[1],string.format('%.0f',m)) return m end "
                              "return g"},
    /* One above both Redis's and the caller's known generation (a Redis
     * that lost the key must not hand out a generation already used). */
    [SC_GEN_FLUSH] = {READ_GEN "if m>g then g=m end g=g+1 if g>" GEN_MAX_LUA " then "
                               "return redis.error_reply('namespace generation at its maximum') "
                               "end redis.call('set',KEYS[1],string.format('%.0f',g)) return g"},
    /* A turn's stores if locked: ARGV[1] the channel; for each pair of
     * keys (entry, lock), args token, value, px, message: store while the
     * lock holds token and drop the lock (1), else 0. Then the messages
     * (those not empty) are published, in one PUBLISH: a lone one as it
     * is, several as "B <len>:<message>..." (docs/STORAGE.md), which
     * receivers unpack (bcast_msg.c). A PUBLISH per key cost Redis about 1 us
     * of the batch's ~5.5 per key (docs/PERFORMANCE.md); subscribers see
     * none of them before the script ends either way. */
    [SC_PUT_BATCH] = {"local r,c,m={},ARGV[1],{} for n=1,#KEYS/2 do "
                      "local k,l,a=KEYS[2*n-1],KEYS[2*n],4*n-2 "
                      "local g=redis.pcall('get',l) "
                      "if type(g)=='table' and g.err then r[n]=g elseif g==ARGV[a] then "
                      "local s=redis.pcall('set',k,ARGV[a+1],'px',ARGV[a+2]) "
                      "if type(s)=='table' and s.err then r[n]=s else "
                      "redis.call('del',l) r[n]=1 end else r[n]=0 end "
                      "if #ARGV[a+3]>0 then m[#m+1]=ARGV[a+3] end end "
                      "if #m==1 then redis.pcall('publish',c,m[1]) elseif #m>1 then "
                      "for i=1,#m do m[i]=#m[i]..':'..m[i] end "
                      "redis.pcall('publish',c,'B '..table.concat(m)) end return r"},
    /* PUBLISH on the node of KEYS[1] (cluster only, see store_publish). */
    [SC_PUBLISH] = {"return redis.call('publish',ARGV[1],ARGV[2])"},
};

static void load_script(enum script_id id)
{
    fmt_count(&scratch, 3);
    fmt_str(&scratch, "SCRIPT");
    fmt_str(&scratch, "LOAD");
    fmt_str(&scratch, scripts[id].text);
    backend_cmd_formatted(NULL, NULL, scratch.data, scratch.len);
    buf_reset(&scratch);
}

/* The link came up: nothing is queued on it yet, so the scripts are there
 * before the first EVALSHA. */
static unsigned loads; /* times the scripts were loaded */

static void on_link_up(void)
{
    loads++;
    for (int i = 0; i < SC_COUNT; i++)
        load_script(i);
}

/* A script call in flight keeps its arguments, in RESP, for the one retry
 * with the text that a NOSCRIPT answer needs. */
typedef struct script_call {
    store_cb cb;
    void (*raw)(void *priv, const redisReply *r); /* instead of cb: a batch's array */
    void *priv;
    enum script_id id;
    unsigned slot;  /* of its keys */
    unsigned loads; /* `loads` when it was sent */
    int argc;       /* after the script: numkeys, keys, args */
    buf_t args;
} script_call_t;

static int script_send(script_call_t *sc, bool by_text);

static void on_script_reply(void *priv, redisReply *reply)
{
    script_call_t *sc = priv;
    if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0) {
        stats.noscript++;
        /* Once per flush, not once per call that was in flight: those
         * were sent before the reload, so they carry its old count. */
        if (sc->loads == loads) {
            log_warn("redis forgot our scripts (SCRIPT FLUSH?): calling by text and reloading");
            on_link_up(); /* all of them: a flush empties the whole script cache */
        }
        if (script_send(sc, true) == 0) return;
        reply = NULL; /* the link went down meanwhile */
    }
    if (sc->raw) {
        void (*raw)(void *, const redisReply *) = sc->raw;
        void *rpriv = sc->priv;
        buf_free(&sc->args);
        free(sc);
        raw(rpriv, reply);
        return;
    }
    store_result_t r;
    decode(reply, &r);
    store_cb cb = sc->cb;
    void *cpriv = sc->priv;
    buf_free(&sc->args);
    free(sc);
    if (cb) cb(cpriv, &r);
}

static int script_send(script_call_t *sc, bool by_text)
{
    flush_pending(); /* before formatting: a batch sent now uses scratch too */
    fmt_count(&scratch, 2 + (size_t)sc->argc);
    if (by_text) {
        fmt_str(&scratch, "EVAL");
        fmt_str(&scratch, scripts[sc->id].text);
    } else {
        fmt_str(&scratch, "EVALSHA");
        fmt_arg(&scratch, scripts[sc->id].sha, 40);
    }
    buf_append(&scratch, sc->args.data, sc->args.len);
    sc->loads = loads;
    int rc = backend_send(sc->slot, on_script_reply, sc, scratch.data, scratch.len);
    buf_reset(&scratch);
    return rc;
}

/* Start a script call: numkeys is written here; the caller appends keys
 * and args to the returned call's args, counting them in argc, then calls
 * script_go(). */
static script_call_t *script_begin(enum script_id id, unsigned slot, int numkeys, store_cb cb,
                                   void *priv)
{
    script_call_t *sc = xcalloc(1, sizeof(*sc));
    sc->slot = slot;
    sc->cb = cb;
    sc->priv = priv;
    sc->id = id;
    fmt_ll(&sc->args, numkeys);
    sc->argc = 1;
    return sc;
}

static void script_arg(script_call_t *sc, const char *p, size_t len)
{
    fmt_arg(&sc->args, p, len);
    sc->argc++;
}

static void script_arg_ll(script_call_t *sc, long long v)
{
    fmt_ll(&sc->args, v);
    sc->argc++;
}

static int script_go(script_call_t *sc)
{
    if (!backend_slot_up(sc->slot) || script_send(sc, false) != 0) {
        buf_free(&sc->args);
        free(sc);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Batched reads
 * ------------------------------------------------------------------------- */

/* Most keys one MGET carries. Redis's cost per command is mostly paid
 * once per MGET, so 16 keys take most of the gain; more would hold the
 * first key's answer back behind the others', and hiredis holds a whole
 * reply in memory before it hands over any of it. */
#define READ_BATCH_MAX 16
/* And about this many bytes of values: with large values a batch gets
 * fewer keys (at least one), as a reply that size is held twice (read
 * buffer and parsed reply) until it is answered. */
#define READ_BATCH_BYTES (4 * 1024 * 1024)
/* Room kept in front of the keys for "*N\r\n$4\r\nMGET\r\n", written once
 * the count is known. */
#define HEADER_ROOM 32

typedef struct read_batch {
    size_t n;
    call_t w[];
} read_batch_t;

static struct {
    uv_prepare_t prepare;
    bool ready; /* store_init ran */
    bool armed;
    unsigned slot; /* in a cluster, a batch's keys share one slot */
    buf_t cmd;     /* HEADER_ROOM bytes, then the keys in RESP */
    call_t *w;
    size_t n, cap;
    size_t limit;     /* keys per batch now: READ_BATCH_BYTES / value_est */
    size_t value_est; /* decaying maximum of the values read lately */
} reads;

/* Learn the size of the values a batch brought, and size the next ones. */
static void learn_sizes(size_t biggest)
{
    size_t decayed = reads.value_est - reads.value_est / 8;
    reads.value_est = biggest > decayed ? biggest : decayed;
    size_t fit = READ_BATCH_BYTES / (reads.value_est ? reads.value_est : 1);
    reads.limit = fit < 1 ? 1 : fit > READ_BATCH_MAX ? READ_BATCH_MAX : fit;
}

static void answer_batch(read_batch_t *b, const redisReply *reply)
{
    store_result_t r;
    size_t biggest = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->n == 1)
            decode(reply, &r);
        else if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == b->n)
            decode(reply->element[i], &r);
        else if (reply && reply->type == REDIS_REPLY_ERROR)
            decode(reply, &r); /* every key gets the error, as its own GET would */
        else
            r = (store_result_t){.status = STORE_DOWN};
        if (r.status == STORE_OK && r.len > biggest) biggest = r.len;
        b->w[i].cb(b->w[i].priv, &r);
    }
    learn_sizes(biggest);
}

static void on_batch(void *priv, redisReply *reply)
{
    read_batch_t *b = priv;
    answer_batch(b, reply);
    free(b);
}

static void flush_reads(void)
{
    if (reads.n == 0) return;
    size_t n = reads.n;
    read_batch_t *b = xmalloc(sizeof(*b) + n * sizeof(call_t));
    b->n = n;
    memcpy(b->w, reads.w, n * sizeof(call_t));
    reads.n = 0;
    char head[HEADER_ROOM];
    int hl = n == 1 ? snprintf(head, sizeof(head), "*2\r\n$3\r\nGET\r\n")
                    : snprintf(head, sizeof(head), "*%zu\r\n$4\r\nMGET\r\n", n + 1);
    char *start = reads.cmd.data + HEADER_ROOM - hl;
    memcpy(start, head, (size_t)hl);
    size_t len = reads.cmd.len - (HEADER_ROOM - (size_t)hl);
    stats.batches++;
    stats.batched_keys += n;
    int rc = backend_send(reads.slot, on_batch, b, start, len);
    buf_reset(&reads.cmd);
    if (rc != 0) { /* the link went down since these were queued */
        answer_batch(b, NULL);
        free(b);
    }
}

static void on_prepare(uv_prepare_t *h)
{
    uv_prepare_stop(h);
    reads.armed = false;
    flush_pending();
    /* Out before the loop polls, whether link.c's prepare callback
     * ran before this one or not. */
    backend_flush_writes();
}

/* Send the open batch before the loop next polls. */
static void arm_prepare(void)
{
    if (!reads.armed && reads.ready) {
        reads.armed = true;
        uv_prepare_start(&reads.prepare, on_prepare);
    }
}

int store_get(const char *key, size_t len, store_cb cb, void *priv)
{
    unsigned slot = backend_slot(key, len);
    if (!backend_slot_up(slot)) return -1;
    flush_writes(); /* one batch open at a time: the order of calls */
    if (reads.n && slot != reads.slot) flush_reads();
    reads.slot = slot;
    if (reads.cmd.len == 0) {
        buf_reserve(&reads.cmd, HEADER_ROOM + 64);
        reads.cmd.len = HEADER_ROOM;
    }
    fmt_key(&reads.cmd, key, len);
    if (reads.n == reads.cap) {
        reads.cap = reads.cap ? 2 * reads.cap : 64;
        reads.w = xrealloc(reads.w, reads.cap * sizeof(call_t));
    }
    reads.w[reads.n++] = (call_t){cb, priv};
    if (reads.n >= reads.limit || !reads.ready) /* !ready: no loop to wait for (unit tests) */
        flush_reads();
    else
        arm_prepare();
    return 0;
}

/* ---------------------------------------------------------------------------
 * Batched fill writes
 *
 * Besides its read, a miss costs two writes: taking the fill lock (with a
 * read of the entry after it) and the store if the lock is still ours
 * (with its "F" broadcast). Those issued in one loop turn are collected
 * and sent when the loop is about to poll, as reads are:
 *  - locks: one SET NX PX per key, then one MGET of all their entries
 *    (each key's read still comes after its own lock; a key's commands
 *    never meet another key's);
 *  - stores: one script call for the batch, each key checked, stored and
 *    unlocked in turn, then one PUBLISH of the batch's messages.
 * Measured (docs/PERFORMANCE.md, issue 7): Redis pays for a call inside a
 * script about what it pays for a command, so the locks stay commands and
 * only their reads are merged; the store, a script anyway, pays its
 * set-up once per batch, and its PUBLISH rides along. Order is kept as
 * for reads: one batch (reads, locks or stores) is open at a time, and
 * any other call sends it first. Each key's result is its own: the store
 * script runs each key's commands with redis.pcall, so one key's error (a
 * wrong type) is that key's answer alone, as its own call's was. In a
 * cluster a batch's keys share one hash slot (a key of another slot
 * closes the batch), and a redirected SET NX may answer after its MGET:
 * the entries are then held until the last lock answer is in.
 * ------------------------------------------------------------------------- */

/* Items per write batch, as for reads; and about this many bytes of
 * values per store batch (at least one), so a large value goes alone. */
#define WRITE_BATCH_MAX   16
#define WRITE_BATCH_BYTES (1024 * 1024)

typedef enum write_kind { W_NONE, W_LOCKS, W_PUTS } write_kind_t;

typedef struct write_item {
    store_lock_cb lock_cb; /* W_LOCKS */
    store_cb put_cb;       /* W_PUTS */
    void *priv;
    size_t off, len;        /* W_LOCKS: its SET NX in writes.cmds */
    store_status_t lock;    /* W_LOCKS: the SET NX's answer ... */
    char *err;              /* ... and its error text */
    struct write_batch *of; /* W_LOCKS, while sent */
} write_item_t;

typedef struct write_batch {
    write_kind_t kind;
    unsigned slot;
    size_t n;
    size_t pending; /* W_LOCKS: replies still to come (the SET NXs, the MGET) */
    /* W_LOCKS: the entries, copied, when the MGET answered before a SET NX
     * (in a cluster a redirected SET NX answers later, from the node it
     * was sent on to, while an ASK-free MGET answers at once). */
    store_result_t *held;
    write_item_t w[];
} write_batch_t;

static struct {
    write_kind_t kind; /* the open batch; W_NONE when none is */
    buf_t cmds;        /* W_LOCKS: SET NX commands back to back; W_PUTS: keys */
    buf_t args;        /* W_LOCKS: HEADER_ROOM, then the entry keys; W_PUTS: args */
    int nkeys, nargs;  /* W_PUTS */
    unsigned slot;     /* in a cluster, a batch's keys share one slot */
    write_item_t *w;
    size_t n, cap;
} writes;

static void free_batch(write_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->w[i].err);
        if (b->held) free((char *)b->held[i].str);
    }
    free(b->held);
    free(b);
}

/* Entry i of a lock batch from reply (the MGET's, or GET's for one key;
 * NULL: none came). */
static void lock_entry(const write_batch_t *b, const redisReply *reply, size_t i,
                       store_result_t *er)
{
    if (b->n == 1)
        decode(reply, er);
    else if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == b->n)
        decode(reply->element[i], er);
    else if (reply && reply->type == REDIS_REPLY_ERROR)
        decode(reply, er);
    else
        *er = (store_result_t){.status = STORE_DOWN};
}

/* The locks' answers, with their entries from reply (the MGET's; NULL:
 * none came). */
static void answer_locks(write_batch_t *b, const redisReply *reply)
{
    for (size_t i = 0; i < b->n; i++) {
        write_item_t *it = &b->w[i];
        store_result_t lr = {
            .status = it->lock, .str = it->err, .len = it->err ? strlen(it->err) : 0};
        store_result_t er;
        if (b->held)
            er = b->held[i];
        else
            lock_entry(b, reply, i, &er);
        it->lock_cb(it->priv, &lr, &er);
    }
    free_batch(b);
}

static void on_lock_set(void *priv, redisReply *reply)
{
    write_item_t *it = priv;
    store_result_t r;
    decode(reply, &r);
    it->lock = r.status;
    if (r.status == STORE_ERROR) it->err = xmemdup(r.str, r.len);
    write_batch_t *b = it->of;
    if (--b->pending == 0) answer_locks(b, NULL); /* the MGET answered first, or was not sent */
}

static void on_lock_reads(void *priv, redisReply *reply)
{
    write_batch_t *b = priv;
    /* The SET NXs went first on the link, so their answers are in, unless
     * one was redirected: then keep the entries until it answers. */
    if (--b->pending == 0) {
        answer_locks(b, reply);
        return;
    }
    b->held = xcalloc(b->n, sizeof(*b->held));
    for (size_t i = 0; i < b->n; i++) {
        store_result_t *h = &b->held[i];
        lock_entry(b, reply, i, h);
        h->str = h->str ? xmemdup(h->str, h->len) : NULL;
    }
}

static void answer_puts(write_batch_t *b, const redisReply *reply)
{
    bool whole = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == b->n;
    for (size_t i = 0; i < b->n; i++) {
        store_result_t r;
        if (whole)
            decode(reply->element[i], &r);
        else if (reply && reply->type == REDIS_REPLY_ERROR)
            decode(reply, &r); /* the batch failed: each key gets the error */
        else
            r = (store_result_t){.status = STORE_DOWN};
        b->w[i].put_cb(b->w[i].priv, &r);
    }
}

static void on_puts(void *priv, const redisReply *reply)
{
    write_batch_t *b = priv;
    answer_puts(b, reply);
    free_batch(b);
}

static void send_locks(write_batch_t *b)
{
    size_t n = b->n;
    b->pending = n + 1;
    for (size_t i = 0; i < n; i++) {
        write_item_t *it = &b->w[i];
        it->of = b;
        if (backend_send(b->slot, on_lock_set, it, writes.cmds.data + it->off, it->len) != 0) {
            it->lock = STORE_DOWN;
            b->pending--;
        }
    }
    char head[HEADER_ROOM];
    int hl = n == 1 ? snprintf(head, sizeof(head), "*2\r\n$3\r\nGET\r\n")
                    : snprintf(head, sizeof(head), "*%zu\r\n$4\r\nMGET\r\n", n + 1);
    char *start = writes.args.data + HEADER_ROOM - hl;
    memcpy(start, head, (size_t)hl);
    size_t len = writes.args.len - (HEADER_ROOM - (size_t)hl);
    if (backend_send(b->slot, on_lock_reads, b, start, len) != 0 && --b->pending == 0)
        answer_locks(b, NULL); /* none of it went out */
}

static void send_puts(write_batch_t *b)
{
    script_call_t *sc = xcalloc(1, sizeof(*sc));
    sc->raw = on_puts;
    sc->priv = b;
    sc->id = SC_PUT_BATCH;
    sc->slot = b->slot;
    /* in one allocation, not a doubling per kilobyte of values */
    buf_reserve(&sc->args, 32 + writes.cmds.len + writes.args.len);
    fmt_ll(&sc->args, writes.nkeys);
    buf_append(&sc->args, writes.cmds.data, writes.cmds.len);
    buf_append(&sc->args, writes.args.data, writes.args.len);
    sc->argc = 1 + writes.nkeys + writes.nargs;
    if (!backend_slot_up(sc->slot) || script_send(sc, false) != 0) { /* the link went down */
        buf_free(&sc->args);
        free(sc);
        answer_puts(b, NULL);
        free_batch(b);
    }
}

static void flush_writes(void)
{
    if (writes.n == 0) return;
    size_t n = writes.n;
    write_batch_t *b = xmalloc(sizeof(*b) + n * sizeof(write_item_t));
    b->held = NULL;
    b->kind = writes.kind;
    b->slot = writes.slot;
    b->n = n;
    memcpy(b->w, writes.w, n * sizeof(write_item_t));
    /* Closed before sending (script_send sends what is open first); the
     * buffers are reset once sent. */
    writes.n = 0;
    writes.kind = W_NONE;
    if (b->kind == W_LOCKS)
        send_locks(b);
    else
        send_puts(b);
    writes.nkeys = writes.nargs = 0;
    buf_reset(&writes.cmds);
    buf_reset(&writes.args);
}

/* Open (or join) a batch of kind for keys of slot; returns the item to
 * fill in. */
static write_item_t *write_begin(write_kind_t kind, unsigned slot)
{
    flush_reads();
    if (writes.kind != kind || (writes.n && writes.slot != slot)) flush_writes();
    writes.kind = kind;
    writes.slot = slot;
    if (writes.n == writes.cap) {
        writes.cap = writes.cap ? 2 * writes.cap : WRITE_BATCH_MAX;
        writes.w = xrealloc(writes.w, writes.cap * sizeof(write_item_t));
    }
    write_item_t *it = &writes.w[writes.n];
    *it = (write_item_t){0};
    return it;
}

static void write_queued(void)
{
    writes.n++;
    if (writes.n >= WRITE_BATCH_MAX || writes.args.len >= WRITE_BATCH_BYTES || !reads.ready)
        flush_writes();
    else
        arm_prepare();
}

int store_lock_read(const char *lock, size_t llen, const char *token, long long px, const char *key,
                    size_t len, store_lock_cb cb, void *priv)
{
    unsigned slot = backend_slot(key, len); /* the lock's too: same hash tag */
    if (!backend_slot_up(slot)) return -1;
    write_item_t *it = write_begin(W_LOCKS, slot);
    it->lock_cb = cb;
    it->priv = priv;
    it->off = writes.cmds.len;
    static const char set_head[] = "*6\r\n$3\r\nSET\r\n", nx_px[] = "$2\r\nNX\r\n$2\r\nPX\r\n";
    buf_append(&writes.cmds, set_head, sizeof(set_head) - 1);
    fmt_arg(&writes.cmds, lock, llen);
    fmt_str(&writes.cmds, token);
    buf_append(&writes.cmds, nx_px, sizeof(nx_px) - 1);
    fmt_ll(&writes.cmds, px);
    it->len = writes.cmds.len - it->off;
    if (writes.args.len == 0) {
        buf_reserve(&writes.args, HEADER_ROOM + 64);
        writes.args.len = HEADER_ROOM;
    }
    fmt_arg(&writes.args, key, len);
    write_queued();
    return 0;
}

static void put_key(const char *p, size_t len)
{
    fmt_arg(&writes.cmds, p, len);
    writes.nkeys++;
}

static void put_arg(const char *p, size_t len)
{
    fmt_arg(&writes.args, p, len);
    writes.nargs++;
}

int store_put_if_locked(const char *key, size_t len, const char *lock, size_t llen,
                        const char *token, const char *val, size_t vlen, long long px,
                        const char *channel, size_t clen, const char *msg, size_t mlen, store_cb cb,
                        void *priv)
{
    unsigned slot = backend_slot(key, len);
    if (!backend_slot_up(slot)) return -1;
    write_item_t *it = write_begin(W_PUTS, slot);
    it->put_cb = cb;
    it->priv = priv;
    if (writes.n == 0) put_arg(channel, clen);
    put_key(key, len);
    put_key(lock, llen);
    put_arg(token, strlen(token));
    put_arg(val, vlen);
    fmt_ll(&writes.args, px);
    writes.nargs++;
    put_arg(msg ? msg : "", msg ? mlen : 0);
    write_queued();
    return 0;
}

/* ---------------------------------------------------------------------------
 * Typed operations
 * ------------------------------------------------------------------------- */

int store_set_unlock(const char *key, size_t len, const char *lock, size_t llen, const char *val,
                     size_t vlen, long long px, store_cb cb, void *priv)
{
    script_call_t *sc = script_begin(SC_SET_UNLOCK, backend_slot(key, len), 2, cb, priv);
    script_arg(sc, key, len);
    script_arg(sc, lock, llen);
    script_arg(sc, val, vlen);
    script_arg_ll(sc, px);
    return script_go(sc);
}

/* SC_SET_COND's {stored, old} as one result: integer stored, str the old
 * value (NULL when none). */
typedef struct cond_call {
    store_cb cb;
    void *priv;
} cond_call_t;

static void on_set_cond(void *priv, const redisReply *reply)
{
    cond_call_t cc = *(cond_call_t *)priv;
    free(priv);
    store_result_t r;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER) {
        r = (store_result_t){.status = STORE_OK, .integer = reply->element[0]->integer};
        if (reply->element[1]->type == REDIS_REPLY_STRING) {
            r.str = reply->element[1]->str;
            r.len = reply->element[1]->len;
        }
    } else if (reply && reply->type == REDIS_REPLY_ARRAY) {
        r = (store_result_t){.status = STORE_ERROR, .str = "unexpected script reply", .len = 23};
    } else {
        decode(reply, &r);
    }
    cc.cb(cc.priv, &r);
}

int store_set_cond(const char *key, size_t len, const char *lock, size_t llen, const char *val,
                   size_t vlen, long long px, const char *mode, long long version, long long gen,
                   long long now, store_cb cb, void *priv)
{
    cond_call_t *cc = xmalloc(sizeof(*cc));
    *cc = (cond_call_t){cb, priv};
    script_call_t *sc = script_begin(SC_SET_COND, backend_slot(key, len), 2, NULL, cc);
    sc->raw = on_set_cond;
    script_arg(sc, key, len);
    script_arg(sc, lock, llen);
    script_arg(sc, val, vlen);
    script_arg_ll(sc, px);
    script_arg(sc, mode, strlen(mode));
    script_arg_ll(sc, version);
    script_arg_ll(sc, gen);
    script_arg_ll(sc, now);
    if (script_go(sc) != 0) {
        free(cc);
        return -1;
    }
    return 0;
}

int store_del_unlock(const char *key, size_t len, const char *lock, size_t llen, store_cb cb,
                     void *priv)
{
    script_call_t *sc = script_begin(SC_DEL_UNLOCK, backend_slot(key, len), 2, cb, priv);
    script_arg(sc, key, len);
    script_arg(sc, lock, llen);
    return script_go(sc);
}

int store_release(const char *lock, size_t llen, const char *token)
{
    script_call_t *sc = script_begin(SC_RELEASE, backend_slot(lock, llen), 1, NULL, NULL);
    script_arg(sc, lock, llen);
    script_arg(sc, token, strlen(token));
    return script_go(sc);
}

int store_put(const char *key, size_t len, const char *val, size_t vlen, long long px, bool nx,
              store_cb cb, void *priv)
{
    unsigned slot = backend_slot(key, len);
    if (!backend_slot_up(slot)) return -1;
    fmt_count(&scratch, nx ? 6 : 5);
    fmt_str(&scratch, "SET");
    fmt_arg(&scratch, key, len);
    fmt_arg(&scratch, val, vlen);
    fmt_str(&scratch, "PX");
    fmt_ll(&scratch, px);
    if (nx) fmt_str(&scratch, "NX");
    return send_cmd(slot, cb, priv);
}

int store_tag_add(const char *tag, size_t tlen, const char *member, size_t mlen, long long px,
                  store_cb cb, void *priv)
{
    script_call_t *sc = script_begin(SC_TAG_ADD, backend_slot(tag, tlen), 1, cb, priv);
    script_arg(sc, tag, tlen);
    script_arg(sc, member, mlen);
    script_arg_ll(sc, px);
    return script_go(sc);
}

int store_tag_remove(const char *tag, size_t tlen, const char *const *members, const size_t *lens,
                     size_t n)
{
    unsigned slot = backend_slot(tag, tlen);
    if (!backend_slot_up(slot)) return -1;
    if (n == 0) return 0;
    fmt_count(&scratch, n + 2);
    fmt_str(&scratch, "SREM");
    fmt_arg(&scratch, tag, tlen);
    for (size_t i = 0; i < n; i++)
        fmt_arg(&scratch, members[i], lens[i]);
    return send_cmd(slot, NULL, NULL);
}

int store_del(const char *key, size_t len)
{
    unsigned slot = backend_slot(key, len);
    if (!backend_slot_up(slot)) return -1;
    fmt_count(&scratch, 2);
    fmt_str(&scratch, "DEL");
    fmt_arg(&scratch, key, len);
    return send_cmd(slot, NULL, NULL);
}

int store_unlink(const char *key, size_t len, store_cb cb, void *priv)
{
    unsigned slot = backend_slot(key, len);
    if (!backend_slot_up(slot)) return -1;
    fmt_count(&scratch, 2);
    fmt_str(&scratch, "UNLINK");
    fmt_arg(&scratch, key, len);
    return send_cmd(slot, cb, priv);
}

int store_gen_sync(const char *key, size_t len, long long known, store_cb cb, void *priv)
{
    script_call_t *sc = script_begin(SC_GEN_SYNC, backend_slot(key, len), 1, cb, priv);
    script_arg(sc, key, len);
    script_arg_ll(sc, known);
    return script_go(sc);
}

int store_gen_flush(const char *key, size_t len, long long known, store_cb cb, void *priv)
{
    script_call_t *sc = script_begin(SC_GEN_FLUSH, backend_slot(key, len), 1, cb, priv);
    script_arg(sc, key, len);
    script_arg_ll(sc, known);
    return script_go(sc);
}

/* In a cluster, a broadcast about several keys (a pattern, a tag, a
 * batch of keys, a generation) goes out once everything sent before it is
 * answered on every node, so no instance hears of an invalidation before
 * it is applied where the keys live. */
typedef struct late_publish {
    store_cb cb;
    void *priv;
    size_t clen, len;
    char bytes[]; /* channel, then message */
} late_publish_t;

static void publish_now(void *priv)
{
    late_publish_t *lp = priv;
    fmt_count(&scratch, 3);
    fmt_str(&scratch, "PUBLISH");
    fmt_arg(&scratch, lp->bytes, lp->clen);
    fmt_arg(&scratch, lp->bytes + lp->clen, lp->len);
    call_t *c = lp->cb ? xmalloc(sizeof(*c)) : NULL;
    if (c) *c = (call_t){lp->cb, lp->priv};
    int rc = backend_cmd_formatted(c ? on_reply : NULL, c, scratch.data, scratch.len);
    buf_reset(&scratch);
    if (rc != 0 && c) {
        free(c);
        lp->cb(lp->priv, &(store_result_t){.status = STORE_DOWN});
    }
    free(lp);
}

int store_publish(const char *key, size_t klen, const char *channel, size_t clen, const char *msg,
                  size_t len, store_cb cb, void *priv)
{
    if (!backend_clustered()) { /* one link: the order of calls is kept */
        if (!backend_up()) return -1;
        fmt_count(&scratch, 3);
        fmt_str(&scratch, "PUBLISH");
        fmt_arg(&scratch, channel, clen);
        fmt_arg(&scratch, msg, len);
        return send_cmd(0, cb, priv);
    }
    if (key) {
        /* A script that names the key runs on the key's master after the
         * write it follows, and is redirected with it if the slot moves
         * (a bare PUBLISH would be answered by the old owner at once). */
        script_call_t *sc = script_begin(SC_PUBLISH, backend_slot(key, klen), 1, cb, priv);
        script_arg(sc, key, klen);
        script_arg(sc, channel, clen);
        script_arg(sc, msg, len);
        return script_go(sc);
    }
    if (!backend_any_up()) return -1;
    flush_pending();
    late_publish_t *lp = xmalloc(sizeof(*lp) + clen + len);
    *lp = (late_publish_t){.cb = cb, .priv = priv, .clen = clen, .len = len};
    memcpy(lp->bytes, channel, clen);
    memcpy(lp->bytes + clen, msg, len);
    backend_barrier(publish_now, lp);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Scans
 * ------------------------------------------------------------------------- */

/* SCAN walks every master in turn: the cursor given to callers is the
 * node's, "N:C" for node N > 0 (node 0's is Redis's own, so with one node
 * nothing changes). When a node's walk ends the next one starts; "0" only
 * after the last. */
typedef struct scan_call {
    store_scan_cb cb;
    void *priv;
    size_t node; /* SCAN: the node walked; SIZE_MAX for SSCAN */
} scan_call_t;

static void scan_reply(const scan_call_t *c, const redisReply *reply)
{
    store_scan_t s = {.status = STORE_DOWN};
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        s.status = STORE_ERROR;
        s.err = reply->str;
        c->cb(c->priv, &s);
        return;
    }
    const redisReply *cur = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
                                ? reply->element[0]
                                : NULL;
    const redisReply *items = cur ? reply->element[1] : NULL;
    if (!cur || cur->type != REDIS_REPLY_STRING || cur->len >= 24 ||
        items->type != REDIS_REPLY_ARRAY) {
        s.status = reply ? STORE_ERROR : STORE_DOWN;
        s.err = reply ? "unexpected SCAN reply" : NULL;
        c->cb(c->priv, &s);
        return;
    }
    char cursor[32];
    bool node_done = cur->len == 1 && cur->str[0] == '0';
    if (c->node == SIZE_MAX || (node_done && c->node + 1 >= backend_nodes()))
        snprintf(cursor, sizeof(cursor), "%s", cur->str);
    else if (node_done)
        snprintf(cursor, sizeof(cursor), "%zu:0", c->node + 1);
    else if (c->node == 0)
        snprintf(cursor, sizeof(cursor), "%s", cur->str);
    else
        snprintf(cursor, sizeof(cursor), "%zu:%s", c->node, cur->str);
    const char **names = xmalloc((items->elements + 1) * sizeof(*names));
    size_t *lens = xmalloc((items->elements + 1) * sizeof(*lens));
    size_t n = 0;
    for (size_t i = 0; i < items->elements; i++) {
        const redisReply *k = items->element[i];
        if (k->type != REDIS_REPLY_STRING) continue;
        names[n] = k->str;
        lens[n] = k->len;
        n++;
    }
    s = (store_scan_t){.status = STORE_OK, .cursor = cursor, .n = n, .items = names, .lens = lens};
    c->cb(c->priv, &s);
    free(names);
    free(lens);
}

static void on_scan(void *priv, redisReply *reply)
{
    scan_call_t c = *(scan_call_t *)priv;
    free(priv);
    scan_reply(&c, reply);
}

static int send_scan(unsigned slot, size_t node, store_scan_cb cb, void *priv)
{
    flush_pending_before_scratch();
    scan_call_t *c = xmalloc(sizeof(*c));
    *c = (scan_call_t){cb, priv, node};
    int rc = node == SIZE_MAX ? backend_send(slot, on_scan, c, scratch.data, scratch.len)
                              : backend_send_node(node, on_scan, c, scratch.data, scratch.len);
    if (rc != 0) free(c);
    buf_reset(&scratch);
    return rc;
}

int store_scan(const char *cursor, const char *glob, size_t glen, int count, store_scan_cb cb,
               void *priv)
{
    size_t node = 0;
    const char *colon = strchr(cursor, ':');
    if (colon) {
        char *end;
        unsigned long n = strtoul(cursor, &end, 10);
        if (end != colon || n >= backend_nodes()) return -1; /* the cluster shrank meanwhile */
        node = n;
        cursor = colon + 1;
    }
    if (!backend_any_up()) return -1;
    fmt_count(&scratch, 6);
    fmt_str(&scratch, "SCAN");
    fmt_str(&scratch, cursor);
    fmt_str(&scratch, "MATCH");
    fmt_arg(&scratch, glob, glen);
    fmt_str(&scratch, "COUNT");
    fmt_ll(&scratch, count);
    int rc = send_scan(0, node, cb, priv);
    if (rc != 0) buf_reset(&scratch);
    return rc;
}

int store_sscan(const char *set, size_t slen, const char *cursor, int count, store_scan_cb cb,
                void *priv)
{
    unsigned slot = backend_slot(set, slen);
    if (!backend_slot_up(slot)) return -1;
    fmt_count(&scratch, 5);
    fmt_str(&scratch, "SSCAN");
    fmt_arg(&scratch, set, slen);
    fmt_str(&scratch, cursor);
    fmt_str(&scratch, "COUNT");
    fmt_ll(&scratch, count);
    return send_scan(slot, SIZE_MAX, cb, priv);
}

/* ---------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------- */

const store_stats_t *store_stats(void)
{
    return &stats;
}

uint64_t store_reshapes(void)
{
    backend_cluster_stats_t cs;
    backend_cluster_stats(&cs);
    return cs.reshapes;
}

void store_init(uv_loop_t *loop)
{
    for (int i = 0; i < SC_COUNT; i++)
        sha1_hex(scripts[i].text, strlen(scripts[i].text), scripts[i].sha);
    backend_on_up(on_link_up);
    reads.limit = READ_BATCH_MAX;
    if (loop) {
        uv_prepare_init(loop, &reads.prepare);
        reads.ready = true;
    }
}

void store_close(void)
{
    flush_pending();
    if (reads.ready) {
        uv_prepare_stop(&reads.prepare);
        uv_close((uv_handle_t *)&reads.prepare, NULL);
        reads.ready = false;
        reads.armed = false;
    }
    free(reads.w);
    reads.w = NULL;
    reads.n = reads.cap = 0;
    buf_free(&reads.cmd);
    free(writes.w);
    writes.w = NULL;
    writes.n = writes.cap = 0;
    buf_free(&writes.cmds);
    buf_free(&writes.args);
    buf_free(&scratch);
    backend_on_up(NULL);
}
