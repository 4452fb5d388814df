/* Unit tests: the string builder (common/strbuf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static void test_put_puts_printf(void **state)
{
    (void)state;
    struct strbuf b = STRBUF_INIT;
    strbuf_put(&b, "abcdef", 3);
    strbuf_puts(&b, "-");
    strbuf_printf(&b, "%d/%s", 42, "x");
    assert_true(strbuf_ok(&b));
    assert_int_equal(b.len, 8);
    assert_string_equal(b.p, "abc-42/x");
    char *s = strbuf_take(&b);
    assert_string_equal(s, "abc-42/x");
    free(s);
    /* take leaves an empty buffer that can be used again */
    assert_null(b.p);
    assert_int_equal(b.len, 0);
    strbuf_puts(&b, "again");
    assert_string_equal(b.p, "again");
    strbuf_free(&b);
    assert_null(b.p);
}

static void test_empty_take_is_empty_string(void **state)
{
    (void)state;
    struct strbuf b = STRBUF_INIT;
    char *s = strbuf_take(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
    /* appending nothing still gives "" */
    strbuf_put(&b, "", 0);
    s = strbuf_take(&b);
    assert_string_equal(s, "");
    free(s);
}

static void test_embedded_nul_and_growth(void **state)
{
    (void)state;
    struct strbuf b = STRBUF_INIT;
    strbuf_put(&b, "a\0b", 3);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.p, "a\0b", 4);
    /* many small appends grow past the first allocation, contents intact */
    for (int i = 0; i < 10000; i++)
        strbuf_put(&b, "0123456789" + i % 10, 1);
    assert_int_equal(b.len, 10003);
    assert_true(b.cap > b.len);
    assert_int_equal(b.p[b.len], '\0');
    for (int i = 0; i < 10000; i++)
        assert_int_equal(b.p[3 + i], '0' + i % 10);
    strbuf_free(&b);
}

static void test_printf_longer_than_stack_buffer(void **state)
{
    (void)state;
    char big[5000];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct strbuf b = STRBUF_INIT;
    strbuf_puts(&b, "<");
    strbuf_printf(&b, "%s>%d", big, 7);
    assert_true(strbuf_ok(&b));
    assert_int_equal(b.len, 1 + 4999 + 2);
    assert_int_equal(b.p[0], '<');
    assert_int_equal(b.p[4999], 'z');
    assert_string_equal(b.p + 5000, ">7");
    strbuf_free(&b);
}

/* A cap: what fits is kept, the rest is dropped, the overflow flag is set
 * and later appends do nothing, so the text stays a clean prefix. */
static void test_cap_overflow(void **state)
{
    (void)state;
    struct strbuf b;
    strbuf_init(&b, 8);
    strbuf_puts(&b, "12345");
    assert_true(strbuf_ok(&b));
    strbuf_puts(&b, "678"); /* exactly at the cap: still fine */
    assert_true(strbuf_ok(&b));
    assert_string_equal(b.p, "12345678");
    strbuf_puts(&b, "9");
    assert_false(strbuf_ok(&b));
    assert_int_equal(b.overflow, 1);
    assert_int_equal(b.nomem, 0);
    assert_string_equal(b.p, "12345678");
    char *s = strbuf_take(&b); /* overflowed text is handed over, cut */
    assert_string_equal(s, "12345678");
    free(s);
    assert_int_equal(b.max, 8); /* the cap survives take */
    assert_true(strbuf_ok(&b));

    strbuf_puts(&b, "abcdef");
    strbuf_printf(&b, "%s", "ghijk");
    assert_string_equal(b.p, "abcdefgh");
    assert_int_equal(b.overflow, 1);
    strbuf_puts(&b, "more");
    strbuf_printf(&b, "%d", 1);
    strbuf_put(&b, "x", 1);
    assert_string_equal(b.p, "abcdefgh");
    assert_int_equal(b.len, 8);
    strbuf_free(&b);
}

/* The cut at the cap never splits a UTF-8 sequence. */
static void test_cap_cuts_at_utf8_boundary(void **state)
{
    (void)state;
    static const struct {
        size_t max;
        const char *in;
        const char *kept;
    } cases[] = {
        {4, "ab\xc3\xa9z", "ab\xc3\xa9"},      /* é fits whole */
        {3, "ab\xc3\xa9", "ab"},               /* é would be cut: left out */
        {5, "a\xe2\x82\xac\xe2\x82\xac", "a\xe2\x82\xac"}, /* € (3 bytes) */
        {4, "\xf0\x9f\x98\x80!", "\xf0\x9f\x98\x80"},      /* 4-byte emoji fits */
        {3, "\xf0\x9f\x98\x80", ""},                      /* and does not */
        {3, "\x80\x80\x80\x80\x80", "\x80\x80\x80"},      /* not UTF-8: byte cut */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct strbuf b;
        strbuf_init(&b, cases[i].max);
        strbuf_puts(&b, cases[i].in);
        assert_int_equal(b.overflow, 1);
        char *s = strbuf_take(&b);
        assert_string_equal(s, cases[i].kept);
        free(s);
    }
}

/* A caller whose own piece failed to allocate marks the buffer: take then
 * gives NULL, never a string with a hole in it. */
static void test_set_nomem(void **state)
{
    (void)state;
    struct strbuf b = STRBUF_INIT;
    strbuf_puts(&b, "start");
    strbuf_set_nomem(&b);
    assert_false(strbuf_ok(&b));
    strbuf_puts(&b, "ignored");
    assert_string_equal(b.p, "start");
    assert_null(strbuf_take(&b));
    assert_null(b.p);
    assert_true(strbuf_ok(&b)); /* take empties it, flags included */
    strbuf_set_nomem(&b);
    assert_null(strbuf_take(&b)); /* nothing appended, still NULL */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_puts_printf),
        cmocka_unit_test(test_empty_take_is_empty_string),
        cmocka_unit_test(test_embedded_nul_and_growth),
        cmocka_unit_test(test_printf_longer_than_stack_buffer),
        cmocka_unit_test(test_cap_overflow),
        cmocka_unit_test(test_cap_cuts_at_utf8_boundary),
        cmocka_unit_test(test_set_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
