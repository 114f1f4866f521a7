/* test_hashslot.c: Redis Cluster hash slots (src/hashslot.c). The expected
 * slots were read from a real redis-server 7.0 started with
 * --cluster-enabled yes (CLUSTER KEYSLOT), hash-tag corner cases included. */
#include <string.h>

#include "hashslot.h"
#include "keys.h"
#include "check.h"

static const struct {
    const char *key;
    unsigned slot;
} known[] = {
    {"foo", 12182},
    {"bar", 5061},
    {"hello", 866},
    {"123456789", 12739},
    {"{user1000}.following", 3443},
    {"a{}b", 13694},   /* empty tag: the whole key */
    {"x{}{y}", 14166}, /* the first "{}" is empty: the whole key, not "y" */
    {"{{a}}", 10276},  /* the tag is "{a" */
    {"lc:{widget:42}", 1135},
    {"lc:{widget:42}:lock", 1135},
    {"", 0},
    {"k{", 6188},    /* no '}': the whole key */
    {"}{a}", 15495}, /* a '}' before the '{' does not count */
};

static void test_known_slots(void)
{
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        unsigned got = hashslot_of(known[i].key, strlen(known[i].key));
        if (got != known[i].slot) {
            fprintf(stderr, "    slot of \"%s\": %u, want %u\n", known[i].key, got, known[i].slot);
            test_failed = 1;
        }
    }
}

static void test_crc_check_value(void)
{
    /* the XModem CRC16 check value */
    CHECK(hashslot_crc16("123456789", 9) == 0x31C3);
    CHECK(hashslot_crc16("", 0) == 0);
}

static void test_binary_keys(void)
{
    const char k[] = {'a', '\0', '{', 'x', '}', 'b'};
    const char *tag;
    size_t tlen;
    hashslot_tag(k, sizeof(k), &tag, &tlen);
    CHECK(tlen == 1 && tag[0] == 'x');
    CHECK(hashslot_of(k, sizeof(k)) == hashslot_of("x", 1));
    CHECK(hashslot_of(k, sizeof(k)) < HASHSLOT_COUNT);
}

/* An entry, its lock share a slot: what the fill's one script needs. */
static void test_entry_and_lock_share_a_slot(void)
{
    buf_t e = {0}, l = {0};
    keys_entry(&e, "widget", 6, "7{x}", 4);
    keys_lock(&l, e.data, e.len);
    CHECK(hashslot_of(e.data, e.len) == hashslot_of(l.data, l.len));
    buf_free(&e);
    buf_free(&l);
}

int main(void)
{
    RUN(test_known_slots);
    RUN(test_crc_check_value);
    RUN(test_binary_keys);
    RUN(test_entry_and_lock_share_a_slot);
    return check_summary("hashslot");
}
