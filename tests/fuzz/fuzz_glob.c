/* fuzz_glob.c: the glob matcher (src/glob.c) against a reference written
 * from glob.h's definition: a memoised search over (pattern position,
 * string position), where `*` may take any run, so it is right by
 * construction and slow, while glob_match backtracks to the last star only.
 * Also: glob_escape(s) matches s and only s; "*" + escape(s) + "*" matches
 * anything holding s. Input: byte 0 is the pattern's length (mod the rest),
 * then the pattern, then the string. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "glob.h"

/* The token at p, not `*`: its length, and whether it matches byte c.
 * Rules of glob.h: `?` any byte; `\x` the byte x (a lone `\` at the end is
 * itself); `[...]` a class where `\` escapes, `a-z` is a range in either
 * order, a leading `^` negates and an unclosed class takes the rest of the
 * pattern; anything else is itself. */
static size_t ref_token(const unsigned char *pat, size_t plen, size_t p, unsigned char c,
                        int *match)
{
    if (pat[p] == '?') {
        *match = 1;
        return 1;
    }
    if (pat[p] == '\\') {
        if (p + 1 == plen) {
            *match = c == '\\';
            return 1;
        }
        *match = pat[p + 1] == c;
        return 2;
    }
    if (pat[p] != '[') {
        *match = pat[p] == c;
        return 1;
    }
    size_t q = p + 1, end = plen;
    int neg = 0, in = 0;
    if (q < plen && pat[q] == '^') {
        neg = 1;
        q++;
    }
    while (q < plen) {
        if (pat[q] == ']') {
            end = q + 1;
            break;
        }
        if (pat[q] == '\\' && q + 1 < plen) {
            in |= pat[q + 1] == c;
            q += 2;
        } else if (q + 2 < plen && pat[q + 1] == '-') {
            unsigned char a = pat[q], b = pat[q + 2];
            in |= (a <= b) ? (c >= a && c <= b) : (c >= b && c <= a);
            q += 3;
        } else {
            in |= pat[q] == c;
            q++;
        }
    }
    *match = neg ? !in : in;
    return end - p;
}

/* memo[p * (slen + 1) + i]: 0 unknown, 1 no, 2 yes */
static int ref_match(const unsigned char *pat, size_t plen, const unsigned char *s, size_t slen,
                     size_t p, size_t i, unsigned char *memo)
{
    unsigned char *m = &memo[p * (slen + 1) + i];
    if (*m) return *m == 2;
    int r;
    if (p == plen) {
        r = i == slen;
    } else if (pat[p] == '*') {
        r = ref_match(pat, plen, s, slen, p + 1, i, memo) ||
            (i < slen && ref_match(pat, plen, s, slen, p, i + 1, memo));
    } else if (i == slen) {
        r = 0;
    } else {
        int tm;
        size_t tl = ref_token(pat, plen, p, s[i], &tm);
        r = tm && ref_match(pat, plen, s, slen, p + tl, i + 1, memo);
    }
    *m = r ? 2 : 1;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096) return 0;
    size_t plen = data[0] % size;
    const char *pat = (const char *)data + 1;
    const char *s = pat + plen;
    size_t slen = size - 1 - plen;
    /* exact-size copies, so ASan catches any read past either */
    char *pc = malloc(plen + 1), *sc = malloc(slen + 1);
    if (!pc || !sc) abort();
    memcpy(pc, pat, plen);
    memcpy(sc, s, slen);
    bool got = glob_match(pc, plen, sc, slen);
    unsigned char *memo = calloc((plen + 1) * (slen + 1), 1);
    if (!memo) abort();
    int want =
        ref_match((const unsigned char *)pc, plen, (const unsigned char *)sc, slen, 0, 0, memo);
    free(memo);
    if (got != (want != 0)) abort();

    buf_t esc = {0};
    glob_escape(&esc, sc, slen);
    if (!glob_match(esc.data, esc.len, sc, slen)) abort();
    if (glob_has_meta(esc.data, esc.len) != glob_has_meta(sc, slen)) abort();
    if (slen > 0 && glob_match(esc.data, esc.len, sc, slen - 1)) abort();
    buf_t around = {0};
    buf_append(&around, "*", 1);
    buf_append(&around, esc.data, esc.len);
    buf_append(&around, "*", 1);
    if (!glob_match(around.data, around.len, pc, plen) && memmem(pc, plen, sc, slen) != NULL)
        abort();
    if (memmem(pc, plen, sc, slen) == NULL && glob_match(around.data, around.len, pc, plen))
        abort();
    buf_free(&around);
    buf_free(&esc);
    free(pc);
    free(sc);
    return 0;
}
