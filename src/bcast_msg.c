/* bcast_msg.c: reading the messages of PREFIX:#events (bcast_msg.h). */
#include "bcast_msg.h"

#include <string.h>

#include "util.h"

typedef struct parse {
    const char *self;
    size_t self_len;
    bcast_visit_fn fn;
    void *ctx;
} parse_t;

/* "<len>:<bytes>" repeated: each(pr, item, n); stops at the first
 * malformed item (a length is looked for in its first 24 bytes). */
static void each_counted(const parse_t *pr, const char *p, size_t len,
                         void (*each)(const parse_t *pr, const char *item, size_t n))
{
    const char *end = p + len;
    while (p < end) {
        size_t room = (size_t)(end - p);
        const char *colon = memchr(p, ':', room < 24 ? room : 24);
        long long n;
        if (!colon || parse_ll(p, (size_t)(colon - p), &n) != 0 || n < 0 || n > end - (colon + 1))
            return;
        each(pr, colon + 1, (size_t)n);
        p = colon + 1 + n;
    }
}

static void one_key(const parse_t *pr, const char *rkey, size_t len)
{
    pr->fn(pr->ctx, 'K', rkey, len);
}

/* One message "<type> <instance> <body>" (not an envelope). */
static void one_message(const parse_t *pr, const char *msg, size_t len)
{
    if (len < 4 || msg[1] != ' ' || msg[0] == 'B') return;
    const char *inst = msg + 2;
    const char *sp = memchr(inst, ' ', len - 2);
    if (!sp) return;
    size_t ilen = (size_t)(sp - inst);
    if (ilen == pr->self_len && memcmp(inst, pr->self, ilen) == 0) return; /* ours: applied */
    const char *body = sp + 1;
    size_t blen = len - (size_t)(body - msg);
    if (msg[0] == 'K')
        each_counted(pr, body, blen, one_key);
    else
        pr->fn(pr->ctx, msg[0], body, blen);
}

void bcast_parse(const char *msg, size_t len, const char *self, size_t self_len, bcast_visit_fn fn,
                 void *ctx)
{
    parse_t pr = {.self = self, .self_len = self_len, .fn = fn, .ctx = ctx};
    if (len >= 2 && msg[0] == 'B' && msg[1] == ' ')
        each_counted(&pr, msg + 2, len - 2, one_message);
    else
        one_message(&pr, msg, len);
}

int bcast_parse_gen(const char *body, size_t len, size_t *ns_len, long long *gen)
{
    const char *sp = memchr(body, ' ', len);
    if (!sp || parse_ll(sp + 1, len - (size_t)(sp + 1 - body), gen) != 0) return -1;
    *ns_len = (size_t)(sp - body);
    return 0;
}
