/* redact.c: hide the secrets in URLs (see redact.h for the rules). */
#include "redact.h"

#include <string.h>
#include <strings.h>

#define MASK "***"

/* A bounded writer: what does not fit is dropped, the result stays a C string. */
struct out {
    char *p;
    size_t cap, n;
};

static void put(struct out *o, const char *s, size_t len)
{
    if (o->cap == 0) return;
    size_t room = o->cap - 1 - o->n;
    if (len > room) len = room;
    memcpy(o->p + o->n, s, len);
    o->n += len;
    o->p[o->n] = '\0';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* One URL (or word) s[0..len). */
static bool redact_one(struct out *o, const char *s, size_t len)
{
    bool hidden = false;
    size_t i = 0;
    const char *sep = len >= 3 ? memmem(s, len, "://", 3) : NULL;
    if (sep) {
        size_t r = (size_t)(sep - s) + 3; /* the authority starts here */
        put(o, s, r);
        size_t ae = r; /* ... and ends at the path or query, as the --redis parser has it */
        while (ae < len && s[ae] != '/' && s[ae] != '?')
            ae++;
        const char *at = memrchr(s + r, '@', len - r);
        if (at) {
            size_t a = (size_t)(at - s);
            /* An '@' past the authority means a '/' or '?' in the password was
             * not escaped: where it ends is anyone's guess, so hide it all. */
            const char *colon = a < ae ? memchr(s + r, ':', a - r) : NULL;
            if (colon) put(o, s + r, (size_t)(colon - (s + r)) + 1); /* "user:" */
            put(o, MASK "@", 4);
            i = a + 1;
            hidden = true;
        } else {
            i = r;
        }
    }
    /* password=... options, in the query or anywhere else after it. */
    while (i < len) {
        bool opt_start = i == 0 || s[i - 1] == '?' || s[i - 1] == '&';
        if (opt_start && len - i >= 9 && strncasecmp(s + i, "password=", 9) == 0) {
            put(o, s + i, 9);
            put(o, MASK, 3);
            hidden = true;
            i += 9;
            while (i < len && s[i] != '&')
                i++;
            continue;
        }
        put(o, s + i, 1);
        i++;
    }
    return hidden;
}

bool redact_url(const char *url, char *out, size_t outlen)
{
    struct out o = {out, outlen, 0};
    if (outlen) out[0] = '\0';
    return redact_one(&o, url, strlen(url));
}

bool redact_text(const char *text, size_t len, char *out, size_t outlen)
{
    struct out o = {out, outlen, 0};
    if (outlen) out[0] = '\0';
    bool hidden = false;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && is_space(text[j]))
            j++;
        put(&o, text + i, j - i);
        i = j;
        while (j < len && !is_space(text[j]))
            j++;
        if (redact_one(&o, text + i, j - i)) hidden = true;
        i = j;
    }
    return hidden;
}
