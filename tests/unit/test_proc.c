/* tests/support/proc: spawning, environment, redirection, waiting, stopping. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"
#include "util.h"

static void test_env_output_and_exit_code(void **state)
{
    (void)state;
    char *dir = test_tmpdir("proc");
    char out[4096];
    snprintf(out, sizeof out, "%s/out", dir);
    setenv("PROC_TEST_INHERITED", "kept", 1);
    setenv("PROC_TEST_OVERRIDE", "old", 1);
    const char *const argv[] = {"sh", "-c",
                                "echo $PROC_TEST_X $PROC_TEST_INHERITED $PROC_TEST_OVERRIDE; "
                                "echo err >&2; exit 3", NULL};
    const char *const env[] = {"PROC_TEST_X=hello", "PROC_TEST_OVERRIDE=new", NULL};
    struct proc_opts opts = {.env = env, .stdout_path = out, .stderr_path = out};
    pid_t pid = proc_spawn(argv, &opts);
    assert_true(pid > 0);
    int status = 0;
    assert_int_equal(proc_wait(pid, 5000, &status), 0);
    assert_int_equal(proc_exit_code(status), 3);
    char *text = test_read_file(out, NULL);
    assert_non_null(text);
    assert_string_equal(text, "hello kept new\nerr\n");
    free(text);
    test_rmtree(dir);
    free(dir);
}

static void test_timeout_stop_and_kill(void **state)
{
    (void)state;
    const char *const argv[] = {"sleep", "30", NULL};
    pid_t pid = proc_spawn(argv, NULL);
    assert_true(pid > 0);
    assert_int_equal(proc_wait(pid, 50, NULL), -1); /* still running */
    int status = 0;
    assert_int_equal(proc_stop(pid, SIGTERM, 5000, &status), 0);
    assert_int_equal(proc_exit_code(status), 128 + SIGTERM);
    assert_int_equal(proc_wait(pid, 0, NULL), -2); /* already reaped */

    /* A child that ignores the polite signal gets killed. */
    const char *const stubborn[] = {"sh", "-c", "trap '' TERM; exec sleep 30", NULL};
    pid = proc_spawn(stubborn, NULL);
    assert_true(pid > 0);
    proc_sleep_ms(100);
    assert_int_equal(proc_stop(pid, SIGTERM, 200, &status), 1);
    assert_int_equal(proc_exit_code(status), 128 + SIGKILL);
}

static void test_missing_program_and_wait_file(void **state)
{
    (void)state;
    const char *const argv[] = {"no-such-program-xyz", NULL};
    assert_int_equal(proc_spawn(argv, NULL), -1);
    const char *const bad[] = {"/nonexistent/bin", NULL};
    pid_t pid = proc_spawn(bad, NULL);
    assert_true(pid > 0);
    int status = 0;
    assert_int_equal(proc_wait(pid, 5000, &status), 0);
    assert_int_equal(proc_exit_code(status), 127);

    char *dir = test_tmpdir("proc");
    char path[4096], cmd[4200];
    snprintf(path, sizeof path, "%s/ready", dir);
    assert_int_equal(proc_wait_file(path, 50), -1);
    snprintf(cmd, sizeof cmd, "READY=%s", path);
    const char *const writer[] = {"sh", "-c", "sleep 0.1; echo 1 > \"$READY.tmp\" && mv \"$READY.tmp\" \"$READY\"", NULL};
    const char *const env[] = {cmd, NULL};
    struct proc_opts opts = {.env = env};
    pid = proc_spawn(writer, &opts);
    assert_int_equal(proc_wait_file(path, 5000), 0);
    assert_int_equal(proc_wait(pid, 5000, &status), 0);
    assert_int_equal(proc_exit_code(status), 0);
    test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_output_and_exit_code),
        cmocka_unit_test(test_timeout_stop_and_kill),
        cmocka_unit_test(test_missing_program_and_wait_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
