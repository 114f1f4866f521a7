/* test_list.c: the intrusive list (list.h): order, O(1) removal from any
 * position and from whichever list a node is on, zeroed lists and nodes,
 * splicing, and the iteration that survives removing the current node. */
#include <string.h>

#include "list.h"
#include "check.h"

typedef struct item {
    int v;
    list_node_t node;
} item_t;

#define ITEM(n) list_entry(n, item_t, node)

/* Is l exactly want[0..n), front to back, and the same backwards? */
static int list_is(const list_t *l, const int *want, int n)
{
    int i = 0;
    for (list_node_t *p = list_first(l); p; p = list_next(l, p), i++)
        if (i >= n || ITEM(p)->v != want[i]) return 0;
    if (i != n) return 0;
    /* the prev links agree */
    const list_node_t *p = &l->head;
    for (i = n - 1; i >= 0; i--) {
        p = p->prev;
        if (p == &l->head || ITEM(p)->v != want[i]) return 0;
    }
    return n == 0 ? list_empty(l) : p->prev == &l->head;
}
#define IS(l, ...)                                                                                 \
    list_is(l, (const int[]){__VA_ARGS__}, (int)(sizeof((int[]){__VA_ARGS__}) / sizeof(int)))

static void fill(item_t *it, int n)
{
    for (int i = 0; i < n; i++)
        it[i] = (item_t){.v = i};
}

static void test_zeroed_and_init(void)
{
    list_t z;
    memset(&z, 0, sizeof(z));
    CHECK(list_empty(&z));
    CHECK(list_first(&z) == NULL && list_last(&z) == NULL);
    CHECK(list_first_entry(&z, item_t, node) == NULL);
    int visited = 0;
    list_foreach_safe(&z, n, nx)
    {
        (void)n;
        visited++;
    }
    CHECK(visited == 0);

    list_t l;
    list_init(&l);
    CHECK(list_empty(&l));
    CHECK(list_first(&l) == NULL);
    list_foreach_safe(&l, n, nx)
    {
        (void)n;
        visited++;
    }
    CHECK(visited == 0);

    item_t a = {.v = 7};
    CHECK(!list_linked(&a.node));
    list_remove(&a.node); /* unlinked: nothing happens */
    CHECK(!list_linked(&a.node));
    list_push_back(&z, &a.node); /* a zeroed list takes a push */
    CHECK(!list_empty(&z) && list_linked(&a.node));
    CHECK(list_first_entry(&z, item_t, node) == &a);
    CHECK(IS(&z, 7));
    list_remove(&a.node);
    CHECK(list_empty(&z) && !list_linked(&a.node));
    list_remove(&a.node); /* twice: still nothing */
    CHECK(list_empty(&z));
}

static void test_push_order(void)
{
    item_t it[5];
    fill(it, 5);
    list_t l = {0};
    list_push_back(&l, &it[1].node);
    list_push_back(&l, &it[2].node);
    list_push_front(&l, &it[0].node);
    list_push_back(&l, &it[3].node);
    list_push_front(&l, &it[4].node);
    CHECK(IS(&l, 4, 0, 1, 2, 3));
    CHECK(ITEM(list_first(&l))->v == 4);
    CHECK(ITEM(list_last(&l))->v == 3);
    CHECK(list_next(&l, list_last(&l)) == NULL);
}

static void test_remove_positions(void)
{
    item_t it[5];
    fill(it, 5);
    list_t l = {0};
    for (int i = 0; i < 5; i++)
        list_push_back(&l, &it[i].node);
    list_remove(&it[2].node); /* middle */
    CHECK(IS(&l, 0, 1, 3, 4));
    list_remove(&it[0].node); /* first */
    CHECK(IS(&l, 1, 3, 4));
    list_remove(&it[4].node); /* last */
    CHECK(IS(&l, 1, 3));
    CHECK(!list_linked(&it[0].node) && !list_linked(&it[2].node) && !list_linked(&it[4].node));
    list_push_front(&l, &it[4].node); /* a removed node goes back on */
    CHECK(IS(&l, 4, 1, 3));
    list_remove(&it[1].node);
    list_remove(&it[3].node);
    list_remove(&it[4].node);
    CHECK(list_empty(&l) && list_first(&l) == NULL);
    list_push_back(&l, &it[2].node); /* emptied, not zeroed: still usable */
    CHECK(IS(&l, 2));
}

/* A node is removed without naming its list, whichever list it is on. */
static void test_remove_from_any_list(void)
{
    item_t it[4];
    fill(it, 4);
    list_t a = {0}, b = {0};
    list_push_back(&a, &it[0].node);
    list_push_back(&a, &it[1].node);
    list_push_back(&b, &it[2].node);
    list_push_back(&b, &it[3].node);
    list_remove(&it[1].node);
    list_remove(&it[2].node);
    CHECK(IS(&a, 0));
    CHECK(IS(&b, 3));
}

static void test_splice(void)
{
    item_t it[6];
    fill(it, 6);
    list_t a = {0}, b = {0}, c = {0};
    list_push_back(&a, &it[0].node);
    list_push_back(&a, &it[1].node);
    list_push_back(&b, &it[2].node);
    list_push_back(&b, &it[3].node);
    list_splice_back(&a, &b);
    CHECK(IS(&a, 0, 1, 2, 3));
    CHECK(list_empty(&b));
    list_push_back(&b, &it[4].node);
    list_push_back(&b, &it[5].node);
    list_splice_front(&a, &b);
    CHECK(IS(&a, 4, 5, 0, 1, 2, 3));
    CHECK(list_empty(&b));
    list_splice_back(&a, &b); /* empty source: nothing moves */
    CHECK(IS(&a, 4, 5, 0, 1, 2, 3));
    list_splice_back(&c, &a); /* into a zeroed list */
    CHECK(IS(&c, 4, 5, 0, 1, 2, 3));
    CHECK(list_empty(&a));
    /* a node moved by a splice is removed from its new list */
    list_remove(&it[0].node);
    CHECK(IS(&c, 4, 5, 1, 2, 3));
    list_t d = {0};
    list_splice_front(&d, &c);
    CHECK(IS(&d, 4, 5, 1, 2, 3));
}

static void test_foreach_removing(void)
{
    item_t it[6];
    fill(it, 6);
    list_t l = {0};
    for (int i = 0; i < 6; i++)
        list_push_back(&l, &it[i].node);
    int seen[6], n_seen = 0;
    list_foreach_safe(&l, n, nx)
    {
        item_t *x = ITEM(n);
        seen[n_seen++] = x->v;
        if (x->v % 2 == 0) list_remove(n);
    }
    CHECK(n_seen == 6);
    for (int i = 0; i < n_seen && i < 6; i++)
        CHECK(seen[i] == i);
    CHECK(IS(&l, 1, 3, 5));
    n_seen = 0;
    list_foreach_safe(&l, n, nx)
    {
        n_seen++;
        list_remove(n); /* every node, down to empty */
    }
    CHECK(n_seen == 3);
    CHECK(list_empty(&l));
    for (int i = 0; i < 6; i++)
        CHECK(!list_linked(&it[i].node));
}

int main(void)
{
    RUN(test_zeroed_and_init);
    RUN(test_push_order);
    RUN(test_remove_positions);
    RUN(test_remove_from_any_list);
    RUN(test_splice);
    RUN(test_foreach_removing);
    return check_summary("test_list");
}
