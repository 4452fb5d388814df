/* Unit tests: what the runner starts next (runner_choose), as a table.
 * One step at a time; recovery before anything; a reap pass that is due
 * before a cycle; an owed cycle before a probe; else sleep until the
 * earlier of the next probe and the next reap pass. While an ended cycle's
 * POSTs are out, recovery and a due reap pass wait for them, and no cycle
 * starts meanwhile; cycles and probes do not wait. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runner.h"

static void test_choose(void **state)
{
    (void)state;
    enum { NOW = 10000 };
    static const struct {
        const char *why;
        struct runner_view v;
        enum runner_step want;
        int64_t wake_at;
    } rows[] = {
        /* may_run recovered once cycle_again posts_out reap_at probe_at */
        {"standby or store lost: nothing", {0, 1, 0, 1, 0, NOW, NOW}, STEP_IDLE, 0},
        {"recovery first", {1, 0, 0, 1, 0, NOW, NOW}, STEP_RECOVER, 0},
        {"recovery first, even in once", {1, 0, 1, 0, 0, 0, 0}, STEP_RECOVER, 0},
        {"reap due before the owed cycle", {1, 1, 0, 1, 0, NOW, NOW}, STEP_REAP, 0},
        {"reap overdue", {1, 1, 0, 0, 0, NOW - 5000, NOW + 100}, STEP_REAP, 0},
        {"owed cycle before the probe", {1, 1, 0, 1, 0, NOW + 1, NOW}, STEP_CYCLE, 0},
        {"once: the owed cycle, no timers", {1, 1, 1, 1, 0, 0, 0}, STEP_CYCLE, 0},
        {"probe due", {1, 1, 0, 0, 0, NOW + 500, NOW}, STEP_PROBE, 0},
        {"nothing due: sleep to the probe", {1, 1, 0, 0, 0, NOW + 500, NOW + 200}, STEP_IDLE, NOW + 200},
        {"nothing due: sleep to the reap", {1, 1, 0, 0, 0, NOW + 100, NOW + 200}, STEP_IDLE, NOW + 100},
        {"once, done: nothing, no wake-up", {1, 1, 1, 0, 0, 0, 0}, STEP_IDLE, 0},
        {"POSTs out: the owed cycle does not wait", {1, 1, 0, 1, 1, NOW + 1, NOW}, STEP_CYCLE, 0},
        {"POSTs out: the probe does not wait", {1, 1, 0, 0, 1, NOW + 500, NOW}, STEP_PROBE, 0},
        {"POSTs out: the due reap waits, no cycle meanwhile", {1, 1, 0, 1, 1, NOW, NOW}, STEP_IDLE, 0},
        {"POSTs out: recovery waits", {1, 0, 0, 1, 1, NOW, NOW}, STEP_IDLE, 0},
        {"once, POSTs out: the owed cycle", {1, 1, 1, 1, 1, 0, 0}, STEP_CYCLE, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t wake = -1;
        enum runner_step got = runner_choose(&rows[i].v, NOW, &wake);
        if (got != rows[i].want || wake != rows[i].wake_at)
            fail_msg("row %zu (%s): got %s wake %lld, want %s wake %lld", i, rows[i].why,
                     runner_step_name(got), (long long)wake, runner_step_name(rows[i].want),
                     (long long)rows[i].wake_at);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_choose)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
