/* test_bus.c: the message bus (bus.h): listeners run in registration
 * order, several per type and one for several types, an emit nobody
 * listens to, nested emits, a listener registered during an emit (called
 * from the next emit on, not by the one under way), a full table; then two
 * of the cache layer's real listeners driven through it: the in-process
 * tier's (l1_link.c) and the purged tags' (tags.c). */
#include <string.h>

#include <uv.h>

#include "bus.h"
#include "l1.h"
#include "l1_link.h"
#include "tags.h"
#include "util.h"
#include "check.h"

/* What the listeners saw, in order: "<id>:<type>:<key>" joined by ' '. */
static char seen[1024];

static void note(int id, bus_type_t type, const bus_msg_t *msg)
{
    size_t n = strlen(seen);
    snprintf(seen + n, sizeof(seen) - n, "%s%d:%s:%.*s", n ? " " : "", id, bus_type_name(type),
             (int)msg->len, msg->key ? msg->key : "");
}

static void rec(bus_type_t type, const bus_msg_t *msg, void *priv)
{
    note((int)(intptr_t)priv, type, msg);
}

static void start(void)
{
    bus_reset();
    seen[0] = '\0';
}

static void emit_key(bus_type_t type, const char *key)
{
    bus_emit(type, &(bus_msg_t){.key = key, .len = strlen(key)});
}

static void test_registration_order(void)
{
    start();
    for (intptr_t id = 1; id <= 3; id++)
        REQUIRE(bus_on(BUS_KEY_INVALIDATED, rec, (void *)id) == 0);
    CHECK(bus_listeners(BUS_KEY_INVALIDATED) == 3);
    emit_key(BUS_KEY_INVALIDATED, "a");
    emit_key(BUS_KEY_INVALIDATED, "b");
    CHECK(strcmp(seen, "1:key_invalidated:a 2:key_invalidated:a 3:key_invalidated:a "
                       "1:key_invalidated:b 2:key_invalidated:b 3:key_invalidated:b") == 0);
    if (test_failed) fprintf(stderr, "  seen: %s\n", seen);
}

static void test_types_are_separate(void)
{
    start();
    REQUIRE(bus_on(BUS_KEY_INVALIDATED, rec, (void *)1) == 0);
    REQUIRE(bus_on(BUS_TAG_PURGED, rec, (void *)1) == 0); /* one fn, two types */
    REQUIRE(bus_on(BUS_TAG_PURGED, rec, (void *)2) == 0);
    emit_key(BUS_TAG_PURGED, "t");
    emit_key(BUS_KEYS_INVALIDATED, "g*"); /* nobody: nothing */
    emit_key(BUS_KEY_INVALIDATED, "k");
    CHECK(strcmp(seen, "1:tag_purged:t 2:tag_purged:t 1:key_invalidated:k") == 0);
    if (test_failed) fprintf(stderr, "  seen: %s\n", seen);
}

static int payload_ok;

static void check_payload(bus_type_t type, const bus_msg_t *msg, void *priv)
{
    ns_t *want = priv;
    payload_ok = type == BUS_GEN_SEEN && msg->ns == want && msg->gen == 42 && msg->key == NULL;
}

static void test_payload_and_no_listener(void)
{
    start();
    /* Nobody listens: every type is a no-op, and so are NULL messages and
     * a type out of range. */
    for (int t = 0; t < BUS_TYPES; t++) {
        CHECK(bus_listeners((bus_type_t)t) == 0);
        bus_emit((bus_type_t)t, NULL);
        emit_key((bus_type_t)t, "x");
    }
    bus_emit(BUS_TYPES, NULL);
    CHECK(seen[0] == '\0');
    static ns_t ns; /* only its address travels */
    REQUIRE(bus_on(BUS_GEN_SEEN, check_payload, &ns) == 0);
    bus_emit(BUS_GEN_SEEN, &(bus_msg_t){.ns = &ns, .gen = 42});
    CHECK(payload_ok);
    /* A NULL message reaches listeners as an empty one. */
    REQUIRE(bus_on(BUS_SUBSCRIBED, rec, (void *)7) == 0);
    bus_emit(BUS_SUBSCRIBED, NULL);
    CHECK(strcmp(seen, "7:subscribed:") == 0);
}

/* Registers another listener of the type being emitted, once. */
static void registers_during_emit(bus_type_t type, const bus_msg_t *msg, void *priv)
{
    static int added;
    note(1, type, msg);
    if (!added++) CHECK(bus_on(type, rec, (void *)9) == 0);
    LC_UNUSED(priv);
}

static void test_register_during_emit(void)
{
    start();
    REQUIRE(bus_on(BUS_FILL_LANDED, registers_during_emit, NULL) == 0);
    REQUIRE(bus_on(BUS_FILL_LANDED, rec, (void *)2) == 0);
    emit_key(BUS_FILL_LANDED, "a"); /* 9 is added now: not called by this emit */
    CHECK(bus_listeners(BUS_FILL_LANDED) == 3);
    emit_key(BUS_FILL_LANDED, "b"); /* from this one on, last */
    CHECK(strcmp(seen, "1:fill_landed:a 2:fill_landed:a "
                       "1:fill_landed:b 2:fill_landed:b 9:fill_landed:b") == 0);
    if (test_failed) fprintf(stderr, "  seen: %s\n", seen);
}

/* A listener of GEN_SEEN that emits NS_FLUSHED, as nsgen.c does. */
static void relays(bus_type_t type, const bus_msg_t *msg, void *priv)
{
    note(1, type, msg);
    LC_UNUSED(priv);
    bus_emit(BUS_NS_FLUSHED, &(bus_msg_t){.key = "inner", .len = 5});
}

static void test_nested_emit(void)
{
    start();
    REQUIRE(bus_on(BUS_GEN_SEEN, relays, NULL) == 0);
    REQUIRE(bus_on(BUS_GEN_SEEN, rec, (void *)2) == 0);
    REQUIRE(bus_on(BUS_NS_FLUSHED, rec, (void *)3) == 0);
    emit_key(BUS_GEN_SEEN, "outer");
    /* The inner emit runs to its end before the outer goes on. */
    CHECK(strcmp(seen, "1:gen_seen:outer 3:ns_flushed:inner 2:gen_seen:outer") == 0);
    if (test_failed) fprintf(stderr, "  seen: %s\n", seen);
}

static void test_full_table_and_bad_calls(void)
{
    start();
    for (intptr_t i = 0; i < BUS_MAX_LISTENERS; i++)
        REQUIRE(bus_on(BUS_SUBSCRIBER_LOST, rec, (void *)i) == 0);
    CHECK(bus_on(BUS_SUBSCRIBER_LOST, rec, (void *)99) == -1);
    CHECK(bus_listeners(BUS_SUBSCRIBER_LOST) == BUS_MAX_LISTENERS);
    CHECK(bus_on(BUS_TYPES, rec, NULL) == -1);
    CHECK(bus_on(BUS_SUBSCRIBED, NULL, NULL) == -1);
    CHECK(bus_listeners(BUS_SUBSCRIBED) == 0);
    bus_emit(BUS_SUBSCRIBER_LOST, NULL);
    CHECK(strstr(seen, "99:") == NULL);
    bus_reset();
    CHECK(bus_listeners(BUS_SUBSCRIBER_LOST) == 0);
    /* Every type has a name of its own. */
    for (int a = 0; a < BUS_TYPES; a++) {
        CHECK(strcmp(bus_type_name((bus_type_t)a), "unknown") != 0);
        for (int b = 0; b < a; b++)
            CHECK(strcmp(bus_type_name((bus_type_t)a), bus_type_name((bus_type_t)b)) != 0);
    }
    CHECK(strcmp(bus_type_name(BUS_TYPES), "unknown") == 0);
}

/* ---------------------------------------------------------------------------
 * Real listeners
 * ------------------------------------------------------------------------- */

static entry_t value_entry(const char *v, int64_t stored_at)
{
    return (entry_t){.kind = ENTRY_VALUE,
                     .version = 1,
                     .stored_at = stored_at,
                     .fresh_until = now_ms() + 60000,
                     .value = v,
                     .len = strlen(v)};
}

static bool have(const char *key)
{
    entry_t e;
    return l1_get(key, strlen(key), 0, false, &e);
}

/* The tier's listener: an invalidation drops the key's item, bumps the
 * epoch, and refuses an entry stored before it; a glob does the same for
 * every matching key; another instance's landed fill drops the item. */
static void test_tier_listens(void)
{
    start();
    l1_init(1 << 20);
    l1_link_init(uv_default_loop());
    REQUIRE(l1_link_listen() == 0);
    int64_t before = now_ms() - 10;
    entry_t e = value_entry("v", before);
    l1_put("k1", 2, &e, 60000);
    l1_put("k2", 2, &e, 60000);
    l1_put("other", 5, &e, 60000);
    l1_put("landed", 6, &e, 60000);
    REQUIRE(have("k1") && have("k2") && have("other") && have("landed"));

    uint64_t epoch = cache_inval_epoch;
    emit_key(BUS_KEY_INVALIDATED, "k1");
    CHECK(cache_inval_epoch == epoch + 1);
    CHECK(!have("k1") && have("k2"));
    l1_put("k1", 2, &e, 60000); /* a read sent before the DEL answers late */
    CHECK(!have("k1"));

    emit_key(BUS_KEYS_INVALIDATED, "k*");
    CHECK(cache_inval_epoch == epoch + 2);
    CHECK(!have("k2") && have("other"));

    emit_key(BUS_FILL_LANDED, "landed");
    CHECK(cache_inval_epoch == epoch + 2); /* a landed fill is no invalidation */
    CHECK(!have("landed") && have("other"));

    /* A re-established subscription drops the whole tier. */
    bus_emit(BUS_SUBSCRIBED, NULL);
    CHECK(cache_inval_epoch == epoch + 3);
    CHECK(l1_entries() == 0);

    l1_link_close();
    uv_run(uv_default_loop(), UV_RUN_DEFAULT); /* the timer's close */
    l1_close();
}

static uint64_t oldest_fetch;

static uint64_t oldest(void)
{
    return oldest_fetch;
}

/* The purged tags' listener: a BUS_TAG_PURGED (ours or another
 * instance's "T") concerns fetches started before it, not after. */
static void test_tags_listen(void)
{
    start();
    REQUIRE(tags_listen(oldest) == 0);
    uint64_t fetch_started = tag_clock();
    emit_key(BUS_TAG_PURGED, "red");
    CHECK(tag_purged_since("red", 3, fetch_started));
    CHECK(!tag_purged_since("red", 3, tag_clock())); /* a fetch started after it */
    CHECK(!tag_purged_since("blue", 4, fetch_started));
    tags_close();
}

int main(void)
{
    RUN(test_registration_order);
    RUN(test_types_are_separate);
    RUN(test_payload_and_no_listener);
    RUN(test_register_during_emit);
    RUN(test_nested_emit);
    RUN(test_full_table_and_bad_calls);
    RUN(test_tier_listens);
    RUN(test_tags_listen);
    bus_reset();
    return check_summary("test_bus");
}
