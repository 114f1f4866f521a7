/* dict.c: chained hash map (see dict.h). Keys here are short and chosen by
 * our own clients, and the table resizes at load 1, so chains stay short;
 * the hash takes 8 bytes a step (it runs twice on every hit: the
 * namespace, and the in-process tier's key), with a final mix so the low
 * bits the tables use depend on every byte. */
#include "dict.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

static uint64_t mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

uint64_t dict_hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 0xCBF29CE484222325ULL ^ len, w;
    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&w, p, 8);
        h = mix(h, w);
    }
    if (len) {
        w = 0;
        memcpy(&w, p, len);
        h = mix(h, w);
    }
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ULL;
    return h ^ (h >> 32);
}

void dict_init(dict_t *d)
{
    d->nbuckets = 16;
    d->buckets = xcalloc(d->nbuckets, sizeof(*d->buckets));
    d->count = 0;
}

void dict_free(dict_t *d)
{
    for (size_t i = 0; i < d->nbuckets; i++) {
        dict_entry_t *e = d->buckets[i];
        while (e) {
            dict_entry_t *next = e->next;
            free(e);
            e = next;
        }
    }
    free(d->buckets);
    d->buckets = NULL;
    d->nbuckets = d->count = 0;
}

static dict_entry_t **find_slot(const dict_t *d, const void *key, size_t klen, uint64_t h)
{
    dict_entry_t **pp = &d->buckets[h & (d->nbuckets - 1)];
    while (*pp) {
        dict_entry_t *e = *pp;
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) return pp;
        pp = &e->next;
    }
    return pp;
}

void *dict_get(const dict_t *d, const void *key, size_t klen)
{
    dict_entry_t **pp = find_slot(d, key, klen, dict_hash(key, klen));
    return *pp ? (*pp)->value : NULL;
}

static void grow(dict_t *d)
{
    size_t n = d->nbuckets * 2;
    dict_entry_t **b = xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < d->nbuckets; i++) {
        dict_entry_t *e = d->buckets[i];
        while (e) {
            dict_entry_t *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(d->buckets);
    d->buckets = b;
    d->nbuckets = n;
}

void *dict_set(dict_t *d, const void *key, size_t klen, void *value)
{
    uint64_t h = dict_hash(key, klen);
    dict_entry_t **pp = find_slot(d, key, klen, h);
    if (*pp) {
        void *old = (*pp)->value;
        (*pp)->value = value;
        return old;
    }
    dict_entry_t *e = xmalloc(sizeof(*e) + klen + 1);
    e->next = NULL;
    e->hash = h;
    e->value = value;
    e->klen = klen;
    memcpy(e->key, key, klen);
    e->key[klen] = '\0';
    *pp = e;
    if (++d->count > d->nbuckets) grow(d);
    return NULL;
}

void *dict_del(dict_t *d, const void *key, size_t klen)
{
    dict_entry_t **pp = find_slot(d, key, klen, dict_hash(key, klen));
    dict_entry_t *e = *pp;
    if (!e) return NULL;
    void *v = e->value;
    *pp = e->next;
    free(e);
    d->count--;
    return v;
}

dict_entry_t *dict_first(const dict_t *d, size_t *i)
{
    for (*i = 0; *i < d->nbuckets; (*i)++)
        if (d->buckets[*i]) return d->buckets[*i];
    return NULL;
}

dict_entry_t *dict_next(const dict_t *d, size_t *i, dict_entry_t *e)
{
    if (e->next) return e->next;
    for ((*i)++; *i < d->nbuckets; (*i)++)
        if (d->buckets[*i]) return d->buckets[*i];
    return NULL;
}
