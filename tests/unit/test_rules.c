/* Unit tests: what the agent service's answers mean (agent_post_verdict,
 * agent_job_meaning), job ids as path segments, and the reaper's decisions
 * (rules.c), each as a table. */
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
#include "rules.h"

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

#define MINUTE (60 * 1000LL)
static const struct rules_limits limits = {
    .stale_after_ms = 30 * MINUTE, .job_timeout_ms = 45 * MINUTE, .min_missed_passes = 2,
};
#define NOW (1000 * MINUTE)

struct rule_row {
    const char *what;
    struct rules_facts f;
    enum rules_action dispatched, orphan;
};

static void test_reap_rules(void **state)
{
    (void)state;
    /* Times are relative to NOW; bead_updated_ms is the bead's last update. */
    static const struct rule_row rows[] = {
        {"running, fresh", {RJ_ANSWERED, JOB_RUNNING, 0, 0, 0, NOW, NOW - 40 * MINUTE, NOW - 10 * MINUTE},
         RA_WAIT, RA_WAIT},
        {"queued for long: queue time is not run time",
         {RJ_ANSWERED, JOB_QUEUED, 0, 0, 0, NOW, NOW - 90 * MINUTE, NOW - 90 * MINUTE}, RA_WAIT, RA_WAIT},
        {"running past timeout + stale", {RJ_ANSWERED, JOB_RUNNING, 0, 0, 0, NOW, NOW - 1 * MINUTE, NOW - 76 * MINUTE},
         RA_BLOCK_HARD_LIMIT, RA_WAIT},
        {"completed, bead in progress", {RJ_ANSWERED, JOB_COMPLETED, NOW - 1 * MINUTE, 0, 0, NOW, NOW - 1 * MINUTE, NOW - 5 * MINUTE},
         RA_RETRY, RA_WAIT},
        {"failed long ago, bead quiet", {RJ_ANSWERED, JOB_FAILED, NOW - 40 * MINUTE, 0, 0, NOW, NOW - 40 * MINUTE, NOW - 50 * MINUTE},
         RA_RETRY, RA_BLOCK_STALE},
        {"timeout, agent still noting", {RJ_ANSWERED, JOB_TIMEOUT, NOW - 40 * MINUTE, 0, 0, NOW, NOW - 2 * MINUTE, NOW - 90 * MINUTE},
         RA_WAIT, RA_WAIT},
        {"timeout just now, bead quiet before", {RJ_ANSWERED, JOB_TIMEOUT, NOW - 1 * MINUTE, 0, 0, NOW, NOW - 50 * MINUTE, NOW - 90 * MINUTE},
         RA_WAIT, RA_WAIT},
        {"timeout, quiet since", {RJ_ANSWERED, JOB_TIMEOUT, NOW - 31 * MINUTE, 0, 0, NOW, NOW - 35 * MINUTE, NOW - 90 * MINUTE},
         RA_RETRY, RA_BLOCK_STALE},
        {"timeout, end unknown, quiet", {RJ_ANSWERED, JOB_TIMEOUT, 0, 0, 0, NOW, NOW - 31 * MINUTE, NOW - 90 * MINUTE},
         RA_RETRY, RA_BLOCK_STALE},
        {"error, agent noting", {RJ_ANSWERED, JOB_ERROR, NOW - 40 * MINUTE, 0, 0, NOW, NOW - 5 * MINUTE, NOW - 50 * MINUTE},
         RA_WAIT, RA_WAIT},
        {"404: the service restarted", {RJ_MISSING, JOB_QUEUED, 0, 0, 0, NOW, NOW - 1 * MINUTE, NOW - 5 * MINUTE},
         RA_RETRY, RA_WAIT},
        {"404 after timeout (evicted), agent noting", {RJ_MISSING, JOB_QUEUED, 0, 0, 1, NOW, NOW - 1 * MINUTE, NOW - 200 * MINUTE},
         RA_WAIT, RA_WAIT},
        {"404 after timeout, quiet", {RJ_MISSING, JOB_QUEUED, 0, 0, 1, NOW, NOW - 31 * MINUTE, NOW - 200 * MINUTE},
         RA_RETRY, RA_BLOCK_STALE},
        {"one missed answer, bead quiet", {RJ_UNREACHABLE, JOB_QUEUED, 0, 1, 0, NOW, NOW - 60 * MINUTE, NOW - 70 * MINUTE},
         RA_WAIT, RA_WAIT},
        {"two missed answers, bead quiet", {RJ_UNREACHABLE, JOB_QUEUED, 0, 2, 0, NOW, NOW - 60 * MINUTE, NOW - 70 * MINUTE},
         RA_BLOCK_STALE, RA_BLOCK_STALE},
        {"two missed answers, bead active", {RJ_UNREACHABLE, JOB_QUEUED, 0, 5, 0, NOW, NOW - 5 * MINUTE, NOW - 70 * MINUTE},
         RA_WAIT, RA_WAIT},
        {"record too big twice, bead quiet", {RJ_UNUSABLE, JOB_QUEUED, 0, 2, 0, NOW, NOW - 60 * MINUTE, NOW - 70 * MINUTE},
         RA_BLOCK_STALE, RA_BLOCK_STALE},
        {"record too big once", {RJ_UNUSABLE, JOB_QUEUED, 0, 1, 0, NOW, NOW - 60 * MINUTE, NOW - 70 * MINUTE},
         RA_WAIT, RA_WAIT},
        {"token refused, bead quiet", {RJ_UNAUTHORIZED, JOB_QUEUED, 0, 9, 0, NOW, NOW - 60 * MINUTE, NOW - 70 * MINUTE},
         RA_WAIT, RA_WAIT},
        {"no job id, quiet", {RJ_NONE, JOB_QUEUED, 0, 0, 0, NOW, NOW - 31 * MINUTE, 0}, RA_WAIT, RA_BLOCK_STALE},
        {"no job id, active", {RJ_NONE, JOB_QUEUED, 0, 0, 0, NOW, NOW - 29 * MINUTE, 0}, RA_WAIT, RA_WAIT},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        enum rules_action d = rules_dispatched(&rows[i].f, &limits);
        enum rules_action o = rules_orphan(&rows[i].f, &limits);
        if (d != rows[i].dispatched)
            fail_msg("%s: dispatched got %s, want %s", rows[i].what, rules_action_name(d),
                     rules_action_name(rows[i].dispatched));
        if (o != rows[i].orphan)
            fail_msg("%s: orphan got %s, want %s", rows[i].what, rules_action_name(o),
                     rules_action_name(rows[i].orphan));
    }
    /* No job id known (posting after a crash, unknown): only the bead's quiet. */
    struct rules_facts f = {.now_ms = NOW, .bead_updated_ms = NOW - 29 * MINUTE};
    assert_int_equal(rules_no_job_id(&f, &limits), RA_WAIT);
    f.bead_updated_ms = NOW - 30 * MINUTE;
    assert_int_equal(rules_no_job_id(&f, &limits), RA_RETRY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_verdicts),      cmocka_unit_test(test_job_meanings),
        cmocka_unit_test(test_job_ids_are_segments), cmocka_unit_test(test_job_record_details),
        cmocka_unit_test(test_prompt_carries_ids), cmocka_unit_test(test_reap_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
