/* slowlog.c: a ring of the newest slow entries (slowlog.h). */
#include "slowlog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "util.h"

static struct {
    slowlog_entry_t **ring; /* cap slots; head is the next to write */
    size_t cap, len, head;
    uint64_t next_id;
} S;

/* The argument as kept: cut at SLOWLOG_MAX_ARG_LEN with Redis's note. */
static size_t kept_len(const slowlog_arg_t *a, char *note, size_t notelen)
{
    note[0] = '\0';
    if (a->len <= SLOWLOG_MAX_ARG_LEN) return a->len;
    snprintf(note, notelen, "... (%zu more bytes)", a->len - SLOWLOG_MAX_ARG_LEN);
    return SLOWLOG_MAX_ARG_LEN;
}

void slowlog_push(int argc, const slowlog_arg_t *argv, uint64_t duration_us, const char *addr,
                  const char *name)
{
    if (cfg.slowlog_max_len <= 0) return;
    if (S.cap != (size_t)cfg.slowlog_max_len) slowlog_reset();
    if (!S.ring) {
        S.cap = (size_t)cfg.slowlog_max_len;
        S.ring = xcalloc(S.cap, sizeof(*S.ring));
    }
    int kept = argc > SLOWLOG_MAX_ARGS ? SLOWLOG_MAX_ARGS : argc;
    slowlog_arg_t args[SLOWLOG_MAX_ARGS];
    for (int i = 0; i < kept; i++)
        args[i] = argv[i].s ? argv[i] : (slowlog_arg_t){"", 0};
    char more[64];
    if (argc > SLOWLOG_MAX_ARGS) {
        snprintf(more, sizeof(more), "... (%d more arguments)", argc - SLOWLOG_MAX_ARGS + 1);
        args[SLOWLOG_MAX_ARGS - 1] = (slowlog_arg_t){more, strlen(more)};
    }
    /* One block: the entry, its argument array, then every string. */
    size_t addr_len = strlen(addr ? addr : ""), name_len = strlen(name ? name : "");
    size_t size =
        sizeof(slowlog_entry_t) + (size_t)kept * sizeof(slowlog_arg_t) + addr_len + name_len + 2;
    char note[64];
    for (int i = 0; i < kept; i++)
        size += kept_len(&args[i], note, sizeof(note)) + strlen(note) + 1;
    slowlog_entry_t *e = xmalloc(size);
    e->argv = (slowlog_arg_t *)(e + 1);
    char *p = (char *)(e->argv + kept);
    for (int i = 0; i < kept; i++) {
        size_t n = kept_len(&args[i], note, sizeof(note)), nl = strlen(note);
        memcpy(p, args[i].s, n);
        memcpy(p + n, note, nl + 1);
        e->argv[i] = (slowlog_arg_t){p, n + nl};
        p += n + nl + 1;
    }
    e->addr = p;
    memcpy(p, addr ? addr : "", addr_len + 1);
    p += addr_len + 1;
    e->name = p;
    memcpy(p, name ? name : "", name_len + 1);
    e->id = S.next_id++;
    e->time_s = now_ms() / 1000;
    e->duration_us = duration_us;
    e->argc = kept;
    free(S.ring[S.head]); /* the oldest, when full */
    S.ring[S.head] = e;
    S.head = (S.head + 1) % S.cap;
    if (S.len < S.cap) S.len++;
}

size_t slowlog_len(void)
{
    return S.len;
}

const slowlog_entry_t *slowlog_at(size_t i)
{
    return S.ring[(S.head + S.cap - 1 - i) % S.cap];
}

/* Drops every entry; ids go on from where they were, as in Redis. */
void slowlog_reset(void)
{
    for (size_t i = 0; i < S.cap; i++)
        free(S.ring[i]);
    free(S.ring);
    S.ring = NULL;
    S.cap = S.len = S.head = 0;
}

void slowlog_push_fetch(const char *ns, const char *id, size_t idlen, uint64_t duration_us)
{
    buf_t key = {0};
    buf_printf(&key, "%s:", ns);
    buf_append(&key, id, idlen);
    slowlog_arg_t argv[2] = {{"FETCH", 5}, {key.data, key.len}};
    slowlog_push(2, argv, duration_us, "", "");
    buf_free(&key);
}
