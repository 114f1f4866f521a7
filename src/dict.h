/* dict.h: a small chained hash map from binary-safe byte strings to pointers.
 * Used for the command table, fills in flight and similar lookups on the hot
 * path. Keys are copied; values are the caller's. Grows by doubling. */
#ifndef LC_DICT_H
#define LC_DICT_H

#include <stddef.h>
#include <stdint.h>

typedef struct dict_entry {
    struct dict_entry *next;
    uint64_t hash;
    void *value;
    size_t klen;
    char key[]; /* klen bytes + NUL */
} dict_entry_t;

typedef struct dict {
    dict_entry_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
} dict_t;

void dict_init(dict_t *d);
void dict_free(dict_t *d); /* frees entries, not values */
void *dict_get(const dict_t *d, const void *key, size_t klen);
/* Insert or replace; returns the previous value or NULL. */
void *dict_set(dict_t *d, const void *key, size_t klen, void *value);
/* Remove; returns the removed value or NULL. */
void *dict_del(dict_t *d, const void *key, size_t klen);

/* Iterate: for (dict_entry_t *e = dict_first(d, &i); e; e = dict_next(d, &i, e)).
 * Do not modify the dict while iterating. */
dict_entry_t *dict_first(const dict_t *d, size_t *i);
dict_entry_t *dict_next(const dict_t *d, size_t *i, dict_entry_t *e);

uint64_t dict_hash(const void *key, size_t len);

#endif
