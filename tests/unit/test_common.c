/* Unit tests: the UTC formatter (common/clock.c) and the UTF-8 prefix
 * (common/text.c), each the one copy of its kind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "clock.h"
#include "text.h"

static void test_clock_utc_forms(void **state)
{
    (void)state;
    static const struct {
        int64_t ms;
        enum clock_utc_form form;
        const char *want;
    } cases[] = {
        {1795237228888LL, CLOCK_UTC_ISO, "2026-11-21T05:00:28Z"},
        {1795237228888LL, CLOCK_UTC_ISO_MS, "2026-11-21T05:00:28.888Z"},
        {1795237228888LL, CLOCK_UTC_SQL, "2026-11-21 05:00:28"},
        {0, CLOCK_UTC_ISO_MS, "1970-01-01T00:00:00.000Z"},
        {0, CLOCK_UTC_SQL, "1970-01-01 00:00:00"},
        {5, CLOCK_UTC_ISO_MS, "1970-01-01T00:00:00.005Z"},
        /* before the epoch: rounds towards the past, never "-.123" */
        {-1, CLOCK_UTC_ISO_MS, "1969-12-31T23:59:59.999Z"},
        {-1, CLOCK_UTC_SQL, "1969-12-31 23:59:59"},
        {951782400000LL, CLOCK_UTC_ISO, "2000-02-29T00:00:00Z"}, /* leap day */
        {4102444799999LL, CLOCK_UTC_ISO_MS, "2099-12-31T23:59:59.999Z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[CLOCK_UTC_MAX];
        memset(buf, 'x', sizeof buf);
        clock_utc(cases[i].ms, cases[i].form, buf, sizeof buf);
        assert_string_equal(buf, cases[i].want);
    }
}

static void test_clock_utc_cut_to_buffer(void **state)
{
    (void)state;
    char small[11];
    clock_utc(1795237228888LL, CLOCK_UTC_SQL, small, sizeof small);
    assert_string_equal(small, "2026-11-21");
    char none[1] = {'x'};
    clock_utc(1795237228888LL, CLOCK_UTC_ISO, none, 0); /* len 0: untouched */
    assert_int_equal(none[0], 'x');
}

static void test_clock_now_advances(void **state)
{
    (void)state;
    int64_t a = clock_real_ms();
    /* after 2020-01-01 and not in the far future */
    assert_true(a > 1577836800000LL);
    assert_true(a < 4102444800000LL);
    assert_true(clock_real_ms() >= a);
}

static void test_utf8_prefix(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t max;
        size_t want;
    } cases[] = {
        {"abc", 10, 3},                     /* fits */
        {"abc", 3, 3},
        {"abcdef", 4, 4},                   /* ASCII: plain cut */
        {"ab\xc3\xa9", 3, 2},               /* cut inside é: step back */
        {"ab\xc3\xa9", 4, 4},
        {"\xe2\x82\xac\xe2\x82\xac", 4, 3}, /* inside the second € */
        {"\xe2\x82\xac\xe2\x82\xac", 5, 3},
        {"\xf0\x9f\x98\x80", 3, 0},         /* inside a 4-byte sequence */
        {"\xf0\x9f\x98\x80", 1, 0},
        {"a\xf0\x9f\x98\x80", 4, 1},
        {"\x80\x80\x80\x80\x80", 2, 2},     /* not UTF-8: byte cut */
        {"a\x80\x80\x80\x80", 4, 4},        /* 4 continuation bytes: byte cut */
        {"ab", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(text_utf8_prefix(cases[i].s, strlen(cases[i].s), cases[i].max),
                         cases[i].want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clock_utc_forms),
        cmocka_unit_test(test_clock_utc_cut_to_buffer),
        cmocka_unit_test(test_clock_now_advances),
        cmocka_unit_test(test_utf8_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
