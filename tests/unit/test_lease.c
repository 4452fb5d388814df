/* The single-active lock's name: readable when it fits MySQL's 64-character
 * limit, a stable hash when it does not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "lease.h"

static void test_short_name_is_readable(void **state)
{
    (void)state;
    char buf[LEASE_NAME_MAX + 1];
    lease_name("code", "agent", buf, sizeof buf);
    assert_string_equal(buf, "beads-sched/code/agent");
}

static void test_name_at_the_limit_is_kept(void **state)
{
    (void)state;
    char db[64], buf[LEASE_NAME_MAX + 1];
    /* "beads-sched/" (12) + db + "/" + "agent" (5) = 64 with a 46-byte db. */
    memset(db, 'd', 46);
    db[46] = '\0';
    lease_name(db, "agent", buf, sizeof buf);
    assert_int_equal(strlen(buf), 64);
    assert_memory_equal(buf, "beads-sched/ddd", 15);
}

static void test_long_name_is_hashed_and_stable(void **state)
{
    (void)state;
    char db[64], a[LEASE_NAME_MAX + 1], b[LEASE_NAME_MAX + 1], c[LEASE_NAME_MAX + 1];
    memset(db, 'd', 47);
    db[47] = '\0';
    lease_name(db, "agent", a, sizeof a);
    lease_name(db, "agent", b, sizeof b);
    lease_name(db, "agent2", c, sizeof c);
    assert_true(strlen(a) <= LEASE_NAME_MAX);
    assert_memory_equal(a, "beads-sched/#", 13);
    assert_int_equal(strlen(a), 13 + 16);
    assert_string_equal(a, b);               /* every instance computes the same name */
    assert_string_not_equal(a, c);           /* another assignee, another lock */
}

static void test_database_and_assignee_are_not_confused(void **state)
{
    (void)state;
    char a[LEASE_NAME_MAX + 1], b[LEASE_NAME_MAX + 1];
    char longdb[80];
    memset(longdb, 'x', 70);
    longdb[70] = '\0';
    lease_name(longdb, "ab", a, sizeof a);
    longdb[69] = '\0';
    lease_name(longdb, "xab", b, sizeof b); /* same bytes, other split... */
    /* ...hashes "<db>/<assignee>" with the separator, so they differ. */
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_name_is_readable),
        cmocka_unit_test(test_name_at_the_limit_is_kept),
        cmocka_unit_test(test_long_name_is_hashed_and_stable),
        cmocka_unit_test(test_database_and_assignee_are_not_confused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
