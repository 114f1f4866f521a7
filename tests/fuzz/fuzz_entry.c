/* fuzz_entry.c: the entry decoder (src/entry.c) on arbitrary Redis values,
 * then the TTL/PEEK/state/XFetch math on whatever decodes, at clocks from
 * the input (UBSan: no signed overflow anywhere, validated or not).
 * Checks: the value lies inside the input; a decoded entry re-encodes to a
 * header that decodes to the same fields; a valid entry (entry_check) has
 * a Redis TTL >= 1 and a TTL no longer than its freshness. The input's
 * first 8 bytes are the clock (little-endian int64; also read as a double
 * for the policy-side ttl math), the rest the value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "entry.h"

static int same_fields(const entry_t *a, const entry_t *b)
{
    return a->kind == b->kind && a->version == b->version && a->gen == b->gen &&
           a->fresh_until == b->fresh_until && a->stale_until == b->stale_until &&
           a->error_until == b->error_until && a->fetch_ms == b->fetch_ms &&
           a->stored_at == b->stored_at && a->len == b->len &&
           (a->len == 0 || memcmp(a->value, b->value, a->len) == 0);
}

static void math_at(const entry_t *e, int64_t now, double u)
{
    entry_state_t st = entry_state(e, now);
    int64_t left = entry_fresh_left_ms(e, now);
    int64_t ttl_ms = entry_ttl_left(e, now, 1), ttl_s = entry_ttl_left(e, now, 0);
    int64_t redis_ms = entry_redis_ttl_ms(e, now);
    if (ttl_ms < 0 || ttl_s < 0 || redis_ms < 1) abort();
    if ((st == STATE_FRESH) != (left > 0)) abort();
    if (st == STATE_FRESH && ttl_ms != left) abort();
    (void)xfetch_should_refresh(now, e->fresh_until, e->fetch_ms, 1.0, u);
    (void)xfetch_should_refresh(now, e->fresh_until, e->fetch_ms, 1e300, u);
}

/* The policy-side TTL math on the clock's bits read as doubles (NaN,
 * infinities and huge values included): never negative, never past the
 * clamp. */
static void policy_math(uint64_t bits)
{
    double d, j;
    uint64_t swapped = bits << 32 | bits >> 32;
    memcpy(&d, &bits, sizeof(d));
    memcpy(&j, &swapped, sizeof(j));
    double u = (double)(bits >> 11) / 9007199254740992.0;
    int64_t a = entry_secs_to_ms(d), b = ttl_jittered_ms(d, u, u), c = ttl_jittered_ms(d, j, u);
    if (a < 0 || a > ENTRY_TTL_MAX || b < 0 || b > ENTRY_TTL_MAX || c < 0 || c > ENTRY_TTL_MAX)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t now = 1800000000000;
    if (size >= 8) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; i--)
            v = v << 8 | data[i];
        memcpy(&now, &v, sizeof(now));
        policy_math(v);
        data += 8;
        size -= 8;
    }
    /* a copy of exactly size bytes, so ASan sees any read past the value */
    char *buf = malloc(size ? size : 1);
    if (!buf) abort();
    if (size) memcpy(buf, data, size);
    entry_t e;
    if (entry_decode(buf, size, &e) == 0) {
        if (e.value < buf || e.value + e.len != buf + size) abort();
        buf_t out = {0};
        entry_encode(&out, &e);
        entry_t d;
        if (entry_decode(out.data, out.len, &d) != 0 || !same_fields(&e, &d)) abort();
        buf_free(&out);
        double u = (double)(now & 0xffff) / 65536.0;
        math_at(&e, now, u);
        math_at(&e, INT64_MAX, u);
        math_at(&e, INT64_MIN, 1e-300);
        entry_fault_t f = entry_check(&e, now);
        if (entry_fault_text(f) == NULL) abort();
        if (f == ENTRY_OK && now >= 0 && now <= ENTRY_TIME_MAX) {
            /* within range, the plain arithmetic is exact too */
            if (entry_fresh_left_ms(&e, now) != e.fresh_until - now) abort();
            if (e.stored_at > now + ENTRY_FUTURE_MS) abort();
        }
    }
    free(buf);
    return 0;
}
