/* list.h: the one doubly linked intrusive list.
 *
 * A struct that goes on a list embeds a list_node_t and is found back from
 * it with list_entry() (container-of). Nothing is allocated here.
 *
 * The head is a circular sentinel: a list_t holds one node whose next is
 * the first element and whose prev is the last. Every linked node then has
 * two real neighbours, so list_remove() needs neither the list nor a test
 * for "first" or "last": one node can be taken off whichever list it is on
 * (a client's flush batch on the stack, or the global one) in O(1). A
 * head/tail pair with NULL ends would need the list passed to every remove.
 *
 * Two conveniences over the textbook sentinel, because most of our structs
 * come from xcalloc() or zeroed statics:
 *  - a zeroed list_t is a valid empty list (it becomes circular on the
 *    first push), so no list_init() call is needed for zeroed storage;
 *  - a node that is on no list has NULL links: zeroed nodes start
 *    unlinked, list_remove() clears the links, and removing an unlinked
 *    node does nothing.
 * A list_t that has been pushed to must not be copied or moved (its nodes
 * point at it): hand its elements over with list_splice_back(). */
#ifndef LC_LIST_H
#define LC_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct list_node {
    struct list_node *prev, *next; /* NULL, NULL when on no list */
} list_node_t;

typedef struct list {
    list_node_t head; /* the sentinel; zeroed: empty, not yet circular */
} list_t;

/* The struct of type `type` whose member `member` is the node at ptr. */
#define list_entry(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void list_init(list_t *l)
{
    l->head.prev = l->head.next = &l->head;
}

static inline bool list_empty(const list_t *l)
{
    return l->head.next == NULL || l->head.next == &l->head;
}

/* Is n on a list (any list)? */
static inline bool list_linked(const list_node_t *n)
{
    return n->next != NULL;
}

/* Put n between the neighbours a and b (a->next == b). */
static inline void list_insert_(list_node_t *n, list_node_t *a, list_node_t *b)
{
    n->prev = a;
    n->next = b;
    a->next = n;
    b->prev = n;
}

/* n must be on no list. */
static inline void list_push_back(list_t *l, list_node_t *n)
{
    if (!l->head.next) list_init(l);
    list_insert_(n, l->head.prev, &l->head);
}

static inline void list_push_front(list_t *l, list_node_t *n)
{
    if (!l->head.next) list_init(l);
    list_insert_(n, &l->head, l->head.next);
}

/* Take n off the list it is on, if any. O(1). */
static inline void list_remove(list_node_t *n)
{
    if (!n->next) return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

/* The first (oldest pushed back) node, or NULL when empty. */
static inline list_node_t *list_first(const list_t *l)
{
    return list_empty(l) ? NULL : l->head.next;
}

static inline list_node_t *list_last(const list_t *l)
{
    return list_empty(l) ? NULL : l->head.prev;
}

/* The node after n on l, or NULL when n is the last. */
static inline list_node_t *list_next(const list_t *l, const list_node_t *n)
{
    return n->next == &l->head ? NULL : n->next;
}

/* Move every node of src, in order, to the back of dst; src ends empty. */
static inline void list_splice_back(list_t *dst, list_t *src)
{
    if (list_empty(src)) return;
    if (!dst->head.next) list_init(dst);
    list_node_t *first = src->head.next, *last = src->head.prev;
    first->prev = dst->head.prev;
    dst->head.prev->next = first;
    last->next = &dst->head;
    dst->head.prev = last;
    list_init(src);
}

/* The same, to the front of dst: src's nodes come before dst's. */
static inline void list_splice_front(list_t *dst, list_t *src)
{
    if (list_empty(src)) return;
    if (!dst->head.next) list_init(dst);
    list_node_t *first = src->head.next, *last = src->head.prev;
    last->next = dst->head.next;
    dst->head.next->prev = last;
    first->prev = &dst->head;
    dst->head.next = first;
    list_init(src);
}

/* The first node's container, or NULL when empty. */
#define list_first_entry(l, type, member)                                                          \
    (list_empty(l) ? (type *)NULL : list_entry((l)->head.next, type, member))

/* for (each node n of l, front to back): the body may remove n, but no
 * other node of l (nx already holds the next one). Nodes it pushes onto l
 * meanwhile may or may not be visited. */
#define list_foreach_safe(l, n, nx)                                                                \
    for (list_node_t *n = list_first(l), *nx = n ? n->next : NULL; n && n != &(l)->head;           \
         n = nx, nx = n->next)

#endif
