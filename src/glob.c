/* glob.c: Redis's glob patterns (see glob.h). */
#include "glob.h"

#include <string.h>

#define NO_STAR ((size_t)-1)

/* Does the single-byte token at pat[p] (not `*`) match byte c? *tlen gets
 * its length in the pattern. Classes follow Redis: `\` escapes inside
 * them, `a-z` is a range (either order), `^` first negates, and a class
 * left open runs to the end of the pattern. */
static bool token_match(const char *pat, size_t plen, size_t p, unsigned char c, size_t *tlen)
{
    if (pat[p] == '?') {
        *tlen = 1;
        return true;
    }
    if (pat[p] == '\\' && p + 1 < plen) {
        *tlen = 2;
        return (unsigned char)pat[p + 1] == c;
    }
    if (pat[p] != '[') {
        *tlen = 1;
        return (unsigned char)pat[p] == c;
    }
    size_t q = p + 1;
    bool neg = q < plen && pat[q] == '^';
    if (neg) q++;
    bool match = false;
    for (;;) {
        if (q >= plen) { /* unterminated: the class is the rest */
            *tlen = plen - p;
            break;
        }
        if (pat[q] == '\\' && plen - q >= 2) {
            q++;
            if ((unsigned char)pat[q] == c) match = true;
        } else if (pat[q] == ']') {
            *tlen = q + 1 - p;
            break;
        } else if (plen - q >= 3 && pat[q + 1] == '-') {
            unsigned char lo = (unsigned char)pat[q], hi = (unsigned char)pat[q + 2];
            if (lo > hi) {
                unsigned char t = lo;
                lo = hi;
                hi = t;
            }
            if (c >= lo && c <= hi) match = true;
            q += 2;
        } else if ((unsigned char)pat[q] == c) {
            match = true;
        }
        q++;
    }
    return neg ? !match : match;
}

bool glob_match(const char *pat, size_t plen, const char *s, size_t slen)
{
    size_t p = 0, i = 0, star_p = NO_STAR, star_i = 0;
    while (i < slen) {
        if (p < plen && pat[p] == '*') {
            while (p < plen && pat[p] == '*')
                p++;
            if (p == plen) return true; /* a trailing star takes the rest */
            star_p = p;
            star_i = i;
            continue;
        }
        size_t tlen;
        if (p < plen && token_match(pat, plen, p, (unsigned char)s[i], &tlen)) {
            p += tlen;
            i++;
            continue;
        }
        /* Mismatch: let the last star swallow one more byte. Every other
         * token takes exactly one byte, so earlier stars never need to
         * grow (the classic linear-backtracking wildcard match). */
        if (star_p == NO_STAR) return false;
        p = star_p;
        i = ++star_i;
    }
    while (p < plen && pat[p] == '*')
        p++;
    return p == plen;
}

static bool is_meta(char c)
{
    return c == '*' || c == '?' || c == '[' || c == ']' || c == '\\';
}

void glob_escape(buf_t *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (is_meta(s[i])) buf_append(out, "\\", 1);
        buf_append(out, &s[i], 1);
    }
}

bool glob_has_meta(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (is_meta(s[i])) return true;
    return false;
}
