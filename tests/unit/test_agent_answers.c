/* Unit tests: what the agent service's answers mean (agent_post_verdict,
 * agent_job_meaning), job ids as path segments, job records and the
 * prompt's ids, each as a table. (The reaper's decisions are
 * test_attempt.c's tables.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "prompt.h"

static void test_post_verdicts(void **state)
{
    (void)state;
    static const struct {
        enum agent_reply_kind kind;
        long status;
        int usable;
        enum agent_post_verdict want;
    } rows[] = {
        {AR_ANSWER, 202, 1, APV_ACCEPTED},
        {AR_ANSWER, 202, 0, APV_AMBIGUOUS},    /* a 202 whose body can't be used */
        {AR_ANSWER, 200, 0, APV_AMBIGUOUS},
        {AR_TOO_LARGE, 202, 1, APV_AMBIGUOUS}, /* cut off: which job is unknown */
        {AR_NO_ANSWER, 0, 0, APV_AMBIGUOUS},   /* timeout after sending */
        {AR_NOT_SENT, 0, 0, APV_NOT_SENT},     /* connect refused */
        {AR_ANSWER, 502, 0, APV_AMBIGUOUS},    /* a proxy, after the service took it */
        {AR_ANSWER, 503, 0, APV_AMBIGUOUS},
        {AR_ANSWER, 504, 0, APV_AMBIGUOUS},
        {AR_ANSWER, 500, 0, APV_AMBIGUOUS},    /* not one the service sends on /execute */
        {AR_ANSWER, 302, 0, APV_AMBIGUOUS},
        {AR_ANSWER, 400, 0, APV_REJECTED},
        {AR_ANSWER, 422, 0, APV_REJECTED},
        {AR_ANSWER, 401, 0, APV_AUTH},
        {AR_ANSWER, 403, 0, APV_AUTH},
        {AR_ANSWER, 404, 0, APV_URL},
        {AR_ANSWER, 409, 0, APV_FULL},         /* the single-slot service, busy */
        {AR_ANSWER, 429, 0, APV_FULL},         /* queue full */
        {AR_TOO_LARGE, 429, 0, APV_FULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        enum agent_post_verdict got = agent_post_verdict(rows[i].kind, rows[i].status, rows[i].usable);
        if (got != rows[i].want)
            fail_msg("row %zu (HTTP %ld): got %s, want %s", i, rows[i].status,
                     agent_post_verdict_name(got), agent_post_verdict_name(rows[i].want));
    }
}

static void test_job_meanings(void **state)
{
    (void)state;
    assert_int_equal(agent_job_meaning(JOB_QUEUED), AJM_ALIVE);
    assert_int_equal(agent_job_meaning(JOB_RUNNING), AJM_ALIVE);
    assert_int_equal(agent_job_meaning(JOB_COMPLETED), AJM_EXITED);
    assert_int_equal(agent_job_meaning(JOB_FAILED), AJM_EXITED);
    assert_int_equal(agent_job_meaning(JOB_TIMEOUT), AJM_MAYBE_RUNNING);
    assert_int_equal(agent_job_meaning(JOB_ERROR), AJM_MAYBE_RUNNING);
}

static void test_job_ids_are_segments(void **state)
{
    (void)state;
    char path[128];
    assert_false(agent_job_id_valid("."));
    assert_false(agent_job_id_valid(".."));
    assert_false(agent_job_id_valid("a/b"));
    assert_false(agent_job_id_valid("%2e%2e"));
    assert_true(agent_job_id_valid("..."));
    assert_true(agent_job_id_valid("0123456789ab"));
    assert_int_equal(agent_job_path("0123456789ab", path, sizeof path), 0);
    assert_string_equal(path, "/jobs/0123456789ab");
    assert_int_equal(agent_job_path("a.b-c_d", path, sizeof path), 0);
    assert_string_equal(path, "/jobs/a.b-c_d");
    assert_true(agent_job_path("..", path, sizeof path) < 0);
    assert_true(agent_job_path(".", path, sizeof path) < 0);
    assert_true(agent_job_path("0123456789ab", path, 10) < 0);
    char id[AGENT_JOB_ID_MAX], why[100];
    const char *dots = "{\"job_id\":\"..\",\"status\":\"queued\"}";
    assert_true(agent_parse_execute(dots, strlen(dots), id, sizeof id, why, sizeof why) < 0);
}

static void test_job_record_details(void **state)
{
    (void)state;
    struct agent_job j;
    char why[100], line[400];
    const char *rec = "{\"status\":\"failed\",\"exit_code\":2,\"error\":null,"
                      "\"stderr\":\"warming up\\nError: bd: database locked\\n\\n\","
                      "\"finished_at\":\"2026-01-02T03:04:05.678901+00:00\",\"output\":[\"a\",\"b\"]}";
    assert_int_equal(agent_parse_job(rec, strlen(rec), &j, why, sizeof why), 0);
    assert_int_equal(j.status, JOB_FAILED);
    assert_true(j.has_exit_code);
    assert_int_equal(j.exit_code, 2);
    assert_string_equal(j.stderr_tail, "Error: bd: database locked");
    assert_int_equal(j.finished_ms, 1767323045678LL);
    agent_job_describe("abc", &j, line, sizeof line);
    assert_string_equal(line, "job abc failed (exit 2, stderr: Error: bd: database locked)");
    const char *err = "{\"status\":\"error\",\"error\":\"spawn failed:\\nno such file\",\"finished_at\":\"2026-01-02T03:04:05Z\"}";
    assert_int_equal(agent_parse_job(err, strlen(err), &j, why, sizeof why), 0);
    assert_int_equal(j.finished_ms, 1767323045000LL);
    agent_job_describe("abc", &j, line, sizeof line);
    assert_string_equal(line, "job abc error (error: spawn failed: no such file)");
    const char *run = "{\"status\":\"running\",\"finished_at\":null}";
    assert_int_equal(agent_parse_job(run, strlen(run), &j, why, sizeof why), 0);
    assert_int_equal(j.finished_ms, 0);
    agent_job_describe("abc", &j, line, sizeof line);
    assert_string_equal(line, "job abc running");
}

static void test_prompt_carries_ids(void **state)
{
    (void)state;
    struct bead b = {.id = "code-7", .title = "t", .description = "d", .acceptance = "a",
                     .issue_type = "task", .priority = 2};
    char *out = prompt_render(prompt_default_template, &b, "3f2b9c1e-8a4d-4c1b-9f0e-2d5a7b6c8e90", 3, 3,
                              "/workspace/.beads");
    assert_non_null(out);
    assert_non_null(strstr(out, "\nTask id: code-7\n"));
    assert_non_null(strstr(out, "\nJob id: 3f2b9c1e-8a4d-4c1b-9f0e-2d5a7b6c8e90\n"));
    assert_non_null(strstr(out, "\nBeads database: /workspace/.beads\n"));
    assert_non_null(strstr(out, "bd --db /workspace/.beads note code-7 \"claimed by agent "
                                "3f2b9c1e-8a4d-4c1b-9f0e-2d5a7b6c8e90\""));
    assert_non_null(strstr(out, "-r \"completed by agent 3f2b9c1e-8a4d-4c1b-9f0e-2d5a7b6c8e90\""));
    assert_non_null(strstr(out, "/workspace/scratch/3f2b9c1e-8a4d-4c1b-9f0e-2d5a7b6c8e90/"));
    assert_non_null(strstr(out, "Attempt 3 of 3."));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_verdicts),      cmocka_unit_test(test_job_meanings),
        cmocka_unit_test(test_job_ids_are_segments), cmocka_unit_test(test_job_record_details),
        cmocka_unit_test(test_prompt_carries_ids)
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
