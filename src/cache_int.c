/* cache_int.c: what cache.c and fill.c share (cache_int.h): the loop, the
 * instance id, the random draws, when an entry read from Redis may be used,
 * and when it may go to the in-process tier. */
#include "cache_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend.h"
#include "bus.h"
#include "l1.h"
#include "l1_link.h"
#include "log.h"
#include "util.h"

uv_loop_t *cache_loop;
const char *cache_instance_id;
static char instance_id_buf[24];
static uint64_t rng_state;

/* xorshift64*: fast, good enough for jitter and early-refresh draws. */
double cache_rand(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

void cache_int_init(uv_loop_t *loop)
{
    cache_loop = loop;
    rng_state = (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    if (!rng_state) rng_state = 1;
    snprintf(instance_id_buf, sizeof(instance_id_buf), "%016" PRIx64,
             (uint64_t)(cache_rand() * 18446744073709551615.0));
    cache_instance_id = instance_id_buf;
}

/* A bad entry is logged once per kind, then at most once a minute per kind
 * with how many more were seen: Redis full of foreign data must not flood
 * the log. The key is shown with unprintable bytes as '?'. */
#define BAD_ENTRY_LOG_EVERY_MS 60000

static void log_bad_entry(const ns_t *ns, const buf_t *rkey, entry_fault_t f)
{
    static struct {
        bool logged;
        uint64_t last;
        unsigned long suppressed;
    } seen[ENTRY_FAULTS];
    uint64_t now = mono_ms();
    if (seen[f].logged && now - seen[f].last < BAD_ENTRY_LOG_EVERY_MS) {
        seen[f].suppressed++;
        return;
    }
    char key[201];
    size_t n = rkey->len < sizeof(key) - 1 ? rkey->len : sizeof(key) - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)rkey->data[i];
        key[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    key[n] = '\0';
    log_warn("[%s] ignoring the entry at %s%s in Redis: %s; treated as absent, the next fill "
             "overwrites it (%lu more of this kind since the last report)",
             ns->name, key, n < rkey->len ? "..." : "", entry_fault_text(f), seen[f].suppressed);
    seen[f].logged = true;
    seen[f].last = now;
    seen[f].suppressed = 0;
}

/* An entry of another policy version counts as absent, and so does one of
 * an older namespace generation (FLUSHNS), and one that fails validation
 * (entry_check: foreign or corrupt data). */
bool entry_usable(ns_t *ns, const buf_t *rkey, const char *data, size_t len, entry_t *e)
{
    entry_fault_t f = entry_decode(data, len, e) != 0 ? ENTRY_BAD_HEADER : entry_check(e, now_ms());
    if (f != ENTRY_OK) {
        log_bad_entry(ns, rkey, f);
        return false;
    }
    if (!ns->cur || e->version != ns->cur->conf.version) return false;
    if (e->gen > ns->gen) /* we missed a FLUSHNS: nsgen.c learns it */
        bus_emit(BUS_GEN_SEEN, &(bus_msg_t){.ns = ns, .gen = e->gen});
    return e->gen == ns->gen;
}

void cache_l1_store(const ns_t *ns, const buf_t *rkey, const entry_t *e)
{
    double l1_ttl = ns->cur ? ns->cur->conf.l1_ttl : 0;
    int64_t fresh_left = ms_sub_sat(e->fresh_until, now_ms());
    if (!l1_link_usable()) return; /* deaf: the tier holds nothing now */
    if (!(l1_ttl > 0) || e->kind == ENTRY_ERROR || fresh_left <= 0) {
        l1_del(rkey->data, rkey->len); /* whatever it held is older than e */
        return;
    }
    /* While Redis is down the tier is all there is: keep the item for the
     * entry's whole freshness (SPEC §6, "the in-process tier keeps
     * serving"). */
    int64_t life = key_backend_up(rkey) ? entry_secs_to_ms(l1_ttl) : fresh_left;
    if (life > fresh_left) life = fresh_left;
    l1_put(rkey->data, rkey->len, e, uv_now(cache_loop) + (uint64_t)life);
}
