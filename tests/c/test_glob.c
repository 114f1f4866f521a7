/* test_glob.c: Redis glob semantics (PURGE matches locally what SCAN MATCH
 * matches in Redis). */
#include <stdio.h>
#include <string.h>

#include "glob.h"
#include "check.h"

static void check(const char *pat, const char *s, size_t slen, bool want, int line)
{
    bool got = glob_match(pat, strlen(pat), s, slen);
    if (got == want) {
        tests_passed++;
        return;
    }
    tests_failed++;
    fprintf(stderr, "%s:%d: glob_match(\"%s\", \"%.*s\") = %d, want %d\n", __FILE__, line, pat,
            (int)slen, s, got, want);
}

#define YES(p, s) check(p, s, strlen(s), true, __LINE__)
#define NO(p, s)  check(p, s, strlen(s), false, __LINE__)

static void test_basics(void)
{
    YES("", "");
    NO("", "a");
    YES("abc", "abc");
    NO("abc", "abd");
    NO("abc", "ab");
    NO("ab", "abc");
    YES("*", "");
    YES("*", "anything");
    YES("a*", "a");
    YES("a*c", "abbbc");
    NO("a*c", "abbbd");
    YES("a*b*c", "aXbYc");
    YES("a*b*c", "abbbbc");
    NO("a*b*c", "acb");
    YES("***", "x");
    YES("?", "x");
    NO("?", "");
    NO("?", "xy");
    YES("a?c", "abc");
    YES("*?", "x");
    NO("*??", "x");
}

static void test_classes(void)
{
    YES("[abc]", "b");
    NO("[abc]", "d");
    YES("[^abc]", "d");
    NO("[^abc]", "a");
    YES("[a-c]x", "bx");
    YES("[c-a]x", "bx"); /* reversed range, as Redis */
    NO("[a-c]x", "dx");
    YES("[\\]]", "]");
    YES("[a\\-z]", "-");
    NO("[a\\-z]", "b");
    NO("[]", "a");
    YES("[^]", "a");
    YES("x[ab", "xa"); /* unterminated: the class runs to the end */
    NO("x[ab", "xc");
}

static void test_escapes(void)
{
    YES("\\*", "*");
    NO("\\*", "a");
    YES("a\\?", "a?");
    NO("a\\?", "ab");
    YES("\\", "\\"); /* a trailing backslash is literal */
    YES("lc:{user_widgets:5:*}", "lc:{user_widgets:5:12}");
    NO("lc:{user_widgets:5:*}", "lc:{user_widgets:50:1}");
    NO("lc:{user_widgets:5:*}", "lc:{user_widgets:5:12}:lock");
}

static void test_binary(void)
{
    check("a*z", "a\0\0z", 4, true, __LINE__);
    check("a?z", "a\0z", 3, true, __LINE__);
    check("a\\*", "a\0", 2, false, __LINE__);
}

static void test_long_no_blowup(void)
{
    /* Exponential in a recursive matcher; linear backtracking here. */
    char s[4001];
    memset(s, 'a', 4000);
    s[4000] = '\0';
    NO("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", s);
    YES("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a", s);
}

static void test_escape_roundtrip(void)
{
    const char *raw = "pre*fix?[x]\\";
    buf_t b = {0};
    glob_escape(&b, raw, strlen(raw));
    bool ok = glob_match(b.data, b.len, raw, strlen(raw)) &&
              !glob_match(b.data, b.len, "prefix", 6) && glob_has_meta(raw, strlen(raw)) &&
              !glob_has_meta("lc", 2);
    if (ok)
        tests_passed++;
    else {
        tests_failed++;
        fprintf(stderr, "%s:%d: escape round trip failed: %.*s\n", __FILE__, __LINE__, (int)b.len,
                b.data);
    }
    buf_free(&b);
}

int main(void)
{
    test_basics();
    test_classes();
    test_escapes();
    test_binary();
    test_long_no_blowup();
    test_escape_roundtrip();
    return check_summary("glob");
}
