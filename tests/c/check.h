/* check.h: the check-and-count machinery shared by the C unit tests.
 *
 *  - CHECK(cond): on failure, report it and mark the running test failed,
 *    then carry on with the test;
 *  - REQUIRE(cond): the same, then return from the (void) function;
 *  - RUN(t): run the test function t() and count it as passed or failed
 *    (a failed one is named on stderr);
 *  - check_end_test(): count the running test (for files with a test table
 *    of their own); check_summary(name): print "<name>: N passed, M failed"
 *    and return the exit status (1 if any failed).
 *
 * Everything is static to the including test file. */
#ifndef LC_TESTS_CHECK_H
#define LC_TESTS_CHECK_H

#include <stdio.h>
#include <stddef.h>

static int test_failed;                /* the running test had a failing check */
static int tests_passed, tests_failed; /* tests counted so far */

#define CHECK_REPORT_(what) fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, what)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            CHECK_REPORT_(#cond);                                                                  \
            test_failed = 1;                                                                       \
        }                                                                                          \
    } while (0)

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            CHECK_REPORT_(#cond);                                                                  \
            test_failed = 1;                                                                       \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Count the test that just ran; true if it passed. */
static inline int check_end_test(void)
{
    if (test_failed)
        tests_failed++;
    else
        tests_passed++;
    return !test_failed;
}

#define RUN(t)                                                                                     \
    do {                                                                                           \
        test_failed = 0;                                                                           \
        t();                                                                                       \
        if (!check_end_test()) fprintf(stderr, "FAIL %s\n", #t);                                   \
    } while (0)

static inline int check_summary(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, tests_passed, tests_failed);
    return tests_failed ? 1 : 0;
}

/* Print s[0..n) to stderr as a C-ish string literal, after a label. */
static inline void print_escaped(const char *label, const char *s, size_t n)
{
    fprintf(stderr, "  %s \"", label);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            fputs("\\r", stderr);
        else if (c == '\n')
            fputs("\\n", stderr);
        else if (c < 32 || c > 126)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fputs("\"\n", stderr);
}

#endif
