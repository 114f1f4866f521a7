/* bcast_msg.h: reading the messages of PREFIX:#events (their format is in
 * bcast.c and docs/STORAGE.md). Pure: no I/O and no state. bcast.c acts on
 * what it yields; tests/fuzz/fuzz_bcast.c runs it on arbitrary bytes, since
 * anyone who can PUBLISH to the Redis writes these. */
#ifndef LC_BCAST_MSG_H
#define LC_BCAST_MSG_H

#include <stddef.h>

/* type: the message's letter; body: what follows "<type> <instance> ",
 * inside the message parsed. */
typedef void (*bcast_visit_fn)(void *ctx, char type, const char *body, size_t len);

/* fn on each message in msg that instance `self` did not send: msg itself,
 * or each message of a "B" envelope (an envelope inside one is skipped).
 * A K message is yielded key by key, each as type 'K'. Types it does not
 * know are yielded too (the caller ignores them); a malformed message, or
 * the rest of a malformed list, is skipped. */
void bcast_parse(const char *msg, size_t len, const char *self, size_t self_len, bcast_visit_fn fn,
                 void *ctx);

/* The body of a G message, "<ns> <gen>": 0 with the namespace's length and
 * the generation; -1 if it is not that. */
int bcast_parse_gen(const char *body, size_t len, size_t *ns_len, long long *gen);

#endif
