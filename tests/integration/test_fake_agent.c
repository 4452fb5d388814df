/* The fake agent service against the real one's behaviour (CONTRACTS.md
 * section 2), including what the real one does badly: a `timeout` job whose
 * agent keeps running, records swept only when some job finishes, 429 at the
 * queue depth, the single-slot version, multi-MiB records, and an agent side
 * that writes to its bead only what its prompt tells it. Each test starts its
 * own fake; the agent-side tests use a fresh database on the test MariaDB. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fakeagent.h"
#include "proc.h"
#include "testdb.h"

#define TOKEN "tok"

static long post(struct fake_agent *fa, const char *prompt, const char *bead, char *job_id)
{
    json_t *body = json_pack("{s:s, s:s, s:{s:s}}", "prompt", prompt, "agent", "beads-task-runner",
                             "metadata", "bead_id", bead);
    char *text = json_dumps(body, JSON_COMPACT);
    json_t *reply = NULL;
    long st = fake_agent_call(fa, "POST", "/execute", text, TOKEN, &reply);
    if (job_id) {
        const char *id = json_string_value(json_object_get(reply, "job_id"));
        snprintf(job_id, 13, "%s", id ? id : "");
    }
    free(text);
    json_decref(body);
    json_decref(reply);
    return st;
}

/* GET /jobs/{id}; the record (new reference) or NULL on any other status. */
static json_t *record(struct fake_agent *fa, const char *id, long *status)
{
    char path[64];
    json_t *j = NULL;
    snprintf(path, sizeof path, "/jobs/%s", id);
    long st = fake_agent_call(fa, "GET", path, NULL, TOKEN, &j);
    if (status)
        *status = st;
    if (st != 200) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static const char *str(json_t *o, const char *key) { return json_string_value(json_object_get(o, key)); }

static char *job_status(struct fake_agent *fa, const char *id)
{
    static char buf[32];
    json_t *j = record(fa, id, NULL);
    snprintf(buf, sizeof buf, "%s", j ? str(j, "status") : "(none)");
    json_decref(j);
    return buf;
}

static json_t *health(struct fake_agent *fa)
{
    json_t *j = NULL;
    assert_int_equal(fake_agent_call(fa, "GET", "/health", NULL, NULL, &j), 200);
    return j;
}

static json_int_t num(json_t *o, const char *key) { return json_integer_value(json_object_get(o, key)); }

/* processes.<key> in /_fake/stats */
static json_t *processes(struct fake_agent *fa)
{
    json_t *s = fake_agent_stats(fa);
    assert_non_null(s);
    json_t *p = json_incref(json_object_get(s, "processes"));
    json_decref(s);
    return p;
}

static void start(struct fake_agent *fa, const char *const *args)
{
    const char *argv[32] = {"--token", TOKEN};
    int n = 2;
    for (; args && *args; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    assert_int_equal(fake_agent_start(fa, argv), 0);
}

/* ---- the service --------------------------------------------------------------- */

/* timeout marks the job and frees its slot, but the agent goes on: a second
 * job on the same bead then runs beside it, which the fake reports. */
static void test_timeout_keeps_running(void **state)
{
    (void)state;
    struct fake_agent fa;
    static const char *const args[] = {"--capacity", "1", "--timeout-ms", "200", NULL};
    start(&fa, args);
    char a[13], b[13];
    assert_int_equal(post(&fa, "p", "b1", a), 202);
    proc_sleep_ms(300);
    json_t *j = record(&fa, a, NULL);
    assert_non_null(j);
    assert_string_equal(str(j, "status"), "timeout");
    assert_non_null(json_object_get(j, "finished_at"));
    assert_null(json_object_get(j, "exit_code")); /* the agent never exited */
    assert_null(json_object_get(j, "output"));
    json_decref(j);
    json_t *h = health(&fa);
    assert_int_equal(num(h, "active"), 0); /* the slot is free */
    json_decref(h);
    json_t *p = processes(&fa);
    assert_int_equal(num(p, "alive"), 1);
    assert_int_equal(num(json_object_get(p, "alive_by_bead"), "b1"), 1);
    json_decref(p);

    assert_int_equal(post(&fa, "p", "b1", b), 202);
    j = record(&fa, b, NULL);
    assert_non_null(json_object_get(j, "started_at")); /* it started at once */
    json_decref(j);
    assert_int_equal(fake_agent_max_alive_per_bead(&fa), 2);
    p = processes(&fa);
    assert_int_equal(num(p, "max_alive_per_bead"), 2);
    assert_int_equal(num(json_object_get(p, "overlaps"), "b1"), 1);
    json_decref(p);

    /* a's agent exits at last; its record does not change */
    char path[64];
    snprintf(path, sizeof path, "/_fake/jobs/%s", a);
    assert_int_equal(fake_agent_call(&fa, "POST", path, "{\"process\":\"exit\"}", NULL, NULL), 200);
    j = record(&fa, a, NULL);
    assert_string_equal(str(j, "status"), "timeout");
    assert_null(json_object_get(j, "exit_code"));
    json_decref(j);
    p = processes(&fa);
    assert_int_equal(num(json_object_get(p, "alive_by_bead"), "b1"), 1); /* b's agent only */
    json_decref(p);
    assert_int_equal(fake_agent_stop(&fa), 0);
}

/* epoch ms of an ISO time as the fake (and the real service) writes it */
static int64_t iso_ms(const char *iso)
{
    struct tm tm = {0};
    const char *rest = strptime(iso, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_non_null(rest);
    return (int64_t)timegm(&tm) * 1000 + atoi(rest + 1) / 1000;
}

/* timeout counts run time, not time in the queue: the fourth job waits
 * three runs in the queue, longer than the timeout, and still completes. */
static void test_timeout_run_time_only(void **state)
{
    (void)state;
    struct fake_agent fa;
    static const char *const args[] = {"--capacity", "1", "--timeout-ms", "300", "--job-ms", "200", NULL};
    start(&fa, args);
    char ids[4][13];
    for (int i = 0; i < 4; i++)
        assert_int_equal(post(&fa, "p", "b", ids[i]), 202);
    proc_sleep_ms(1000);
    for (int i = 0; i < 4; i++)
        assert_string_equal(job_status(&fa, ids[i]), "completed");
    json_t *j = record(&fa, ids[3], NULL);
    assert_true(iso_ms(str(j, "finished_at")) - iso_ms(str(j, "created_at")) > 300);
    json_decref(j);
    assert_int_equal(fake_agent_stop(&fa), 0);
}

/* 429 once active + queued reaches the depth; a timed-out job holds no slot
 * and does not count. */
static void test_queue_depth(void **state)
{
    (void)state;
    struct fake_agent fa;
    static const char *const args[] = {"--capacity", "1", "--queue-limit", "2", NULL};
    start(&fa, args);
    char a[13], b[13], c[13];
    assert_int_equal(post(&fa, "p", "a", a), 202);
    assert_int_equal(post(&fa, "p", "b", b), 202);
    json_t *reply = NULL;
    char body[] = "{\"prompt\":\"p\",\"agent\":\"x\"}";
    assert_int_equal(fake_agent_call(&fa, "POST", "/execute", body, TOKEN, &reply), 429);
    assert_string_equal(str(reply, "detail"), "Queue full");
    json_decref(reply);
    json_t *h = health(&fa);
    assert_int_equal(json_object_size(h), 5);
    assert_true(json_is_true(json_object_get(h, "busy")));
    assert_int_equal(num(h, "active"), 1);
    assert_int_equal(num(h, "queued"), 1);
    assert_int_equal(num(h, "capacity"), 1);
    json_decref(h);
    assert_int_equal(fake_agent_set_job(&fa, a, "timeout"), 200); /* a's agent runs on */
    assert_string_equal(job_status(&fa, b), "running");
    assert_int_equal(post(&fa, "p", "c", c), 202);
    assert_string_equal(job_status(&fa, c), "queued");
    json_t *p = processes(&fa);
    assert_int_equal(num(p, "alive"), 2);
    json_decref(p);
    assert_int_equal(fake_agent_stop(&fa), 0);
}

/* Records are swept job_ttl_ms after finishing, only when a job finishes
 * (a timeout counts as finishing). */
static void test_ttl_sweep_on_finish(void **state)
{
    (void)state;
    struct fake_agent fa;
    static const char *const args[] = {"--job-ttl-ms", "100", NULL};
    start(&fa, args);
    char a[13], b[13];
    long st;
    assert_int_equal(post(&fa, "p", "a", a), 202);
    assert_int_equal(fake_agent_set_job(&fa, a, "completed"), 200);
    proc_sleep_ms(300);
    json_decref(record(&fa, a, &st));
    assert_int_equal(st, 200);
    assert_int_equal(fake_agent_config(&fa, "{\"timeout_ms\":50}"), 0);
    assert_int_equal(post(&fa, "p", "b", b), 202);
    proc_sleep_ms(100);
    assert_string_equal(job_status(&fa, b), "timeout");
    json_t *j = record(&fa, a, &st);
    assert_null(j);
    assert_int_equal(st, 404);
    assert_int_equal(fake_agent_stop(&fa), 0);
}

/* The older single-slot service. */
static void test_single_slot(void **state)
{
    (void)state;
    struct fake_agent fa;
    static const char *const args[] = {"--single-slot", "--job-ttl-ms", "1", NULL};
    start(&fa, args);
    json_t *h = health(&fa);
    assert_int_equal(json_object_size(h), 2);
    assert_true(json_is_false(json_object_get(h, "busy")));
    json_decref(h);

    json_t *reply = NULL;
    char body[] = "{\"prompt\":\"p\",\"agent\":\"x\",\"metadata\":{\"bead_id\":\"s1\"}}";
    assert_int_equal(fake_agent_call(&fa, "POST", "/execute", body, TOKEN, &reply), 202);
    assert_string_equal(str(reply, "status"), "running");
    char a[13];
    snprintf(a, sizeof a, "%s", str(reply, "job_id"));
    json_decref(reply);
    json_t *j = record(&fa, a, NULL);
    static const char *const keys[] = {"status", "prompt", "agent", "started_at", "metadata"};
    const char *key;
    json_t *v;
    size_t i = 0;
    json_object_foreach(j, key, v) {
        assert_true(i < 5);
        assert_string_equal(key, keys[i++]);
    }
    assert_int_equal(i, 5);
    json_decref(j);
    h = health(&fa);
    assert_true(json_is_true(json_object_get(h, "busy")));
    json_decref(h);
    assert_int_equal(fake_agent_call(&fa, "POST", "/execute", body, TOKEN, &reply), 409);
    assert_string_equal(str(reply, "detail"), "Agent is busy");
    json_decref(reply);
    assert_int_equal(fake_agent_call(&fa, "POST", "/execute", body, NULL, NULL), 401);

    /* A timeout frees the lock but the record says running for ever. */
    assert_int_equal(fake_agent_config(&fa, "{\"timeout_ms\":100}"), 0);
    assert_int_equal(fake_agent_set_job(&fa, a, "completed"), 200); /* make room */
    char b[13], c[13];
    assert_int_equal(post(&fa, "p", "s2", b), 202);
    proc_sleep_ms(200);
    j = record(&fa, b, NULL);
    assert_string_equal(str(j, "status"), "running");
    assert_null(json_object_get(j, "finished_at"));
    json_decref(j);
    h = health(&fa);
    assert_true(json_is_false(json_object_get(h, "busy")));
    json_decref(h);
    assert_int_equal(post(&fa, "p", "s3", c), 202);
    assert_int_equal(fake_agent_set_job(&fa, c, "failed"), 200);
    j = record(&fa, c, NULL);
    assert_string_equal(str(j, "status"), "failed");
    assert_non_null(json_object_get(j, "finished_at"));
    assert_null(json_object_get(j, "finished_epoch"));
    json_decref(j);
    /* no eviction in that version, even with a 1 ms TTL and jobs finishing */
    long st;
    json_decref(record(&fa, a, &st));
    assert_int_equal(st, 200);
    assert_int_equal(fake_agent_stop(&fa), 0);
}

/* 401 texts, 422 before 401, the Content-Type rule, path-segment ids. */
static void test_auth_and_validation(void **state)
{
    (void)state;
    struct fake_agent fa;
    start(&fa, NULL);
    json_t *reply = NULL;
    char good[] = "{\"prompt\":\"p\",\"agent\":\"x\"}";
    assert_int_equal(fake_agent_call(&fa, "POST", "/execute", good, NULL, &reply), 401);
    assert_string_equal(str(reply, "detail"), "Missing bearer token");
    json_decref(reply);
    assert_int_equal(fake_agent_call(&fa, "POST", "/execute", good, "nope", &reply), 401);
    assert_string_equal(str(reply, "detail"), "Invalid token");
    json_decref(reply);
    /* validation first: no token and a bad body is 422 */
    assert_int_equal(fake_agent_call(&fa, "POST", "/execute", "{\"prompt\":\"p\"}", NULL, &reply), 422);
    json_t *err = json_array_get(json_object_get(reply, "detail"), 0);
    assert_string_equal(str(err, "msg"), "field required");
    assert_string_equal(json_string_value(json_array_get(json_object_get(err, "loc"), 1)), "agent");
    json_decref(reply);
    assert_int_equal(fake_agent_call(&fa, "POST", "/execute", "", TOKEN, NULL), 422);
    assert_int_equal(fake_agent_call(&fa, "GET", "/jobs/abc", NULL, NULL, &reply), 401);
    json_decref(reply);
    assert_int_equal(fake_agent_call(&fa, "GET", "/jobs/abcdefabcdef", NULL, TOKEN, &reply), 404);
    assert_string_equal(str(reply, "detail"), "Job not found");
    json_decref(reply);
    assert_int_equal(fake_agent_call(&fa, "GET", "/jobs/", NULL, TOKEN, &reply), 404);
    assert_string_equal(str(reply, "detail"), "Not Found");
    json_decref(reply);
    assert_int_equal(fake_agent_stop(&fa), 0);

    struct fake_agent bare;
    assert_int_equal(fake_agent_start(&bare, NULL), 0);
    assert_int_equal(fake_agent_call(&bare, "POST", "/execute", good, TOKEN, &reply), 401);
    assert_string_equal(str(reply, "detail"), "Service unauthenticated");
    json_decref(reply);
    assert_int_equal(fake_agent_stop(&bare), 0);
}

/* Records of many MiB; failed and error records as the real ones. */
static void test_records(void **state)
{
    (void)state;
    struct fake_agent fa;
    start(&fa, NULL);
    char a[13], b[13], c[13];
    assert_int_equal(fake_agent_config(&fa, "{\"output_bytes\":6291456,\"exit_code\":3,"
                                            "\"stderr\":\"boom\\nlast line\\n\"}"), 0);
    assert_int_equal(post(&fa, "p", "a", a), 202);
    assert_int_equal(fake_agent_set_job(&fa, a, "failed"), 200);
    json_t *j = record(&fa, a, NULL);
    assert_non_null(j);
    assert_string_equal(str(j, "status"), "failed");
    assert_int_equal(num(j, "exit_code"), 3);
    assert_string_equal(str(j, "stderr"), "boom\nlast line\n");
    assert_null(json_object_get(j, "error"));
    json_t *out = json_object_get(j, "output");
    size_t total = 0, i;
    json_t *line;
    json_array_foreach(out, i, line) total += json_string_length(line);
    assert_int_equal(total, 6291456);
    char *text = json_dumps(j, JSON_COMPACT);
    assert_true(strlen(text) > 6291456);
    free(text);
    json_decref(j);

    assert_int_equal(fake_agent_config(&fa, "{\"error\":\"git failed (128): no repo\"}"), 0);
    assert_int_equal(post(&fa, "p", "b", b), 202);
    assert_int_equal(fake_agent_set_job(&fa, b, "error"), 200);
    j = record(&fa, b, NULL);
    assert_string_equal(str(j, "error"), "git failed (128): no repo");
    assert_null(json_object_get(j, "exit_code"));
    assert_non_null(json_object_get(j, "finished_epoch"));
    json_decref(j);

    /* an agent killed by a signal: failed, exit code -9 */
    assert_int_equal(post(&fa, "p", "c", c), 202);
    assert_int_equal(fake_agent_call(&fa, "POST", "/_fake/jobs/x", "{\"process\":\"nope\"}", NULL, NULL), 422);
    char path[64];
    snprintf(path, sizeof path, "/_fake/jobs/%s", c);
    assert_int_equal(fake_agent_call(&fa, "POST", path, "{\"process\":\"kill\"}", NULL, NULL), 200);
    j = record(&fa, c, NULL);
    assert_string_equal(str(j, "status"), "failed");
    assert_int_equal(num(j, "exit_code"), -9);
    json_decref(j);
    assert_int_equal(fake_agent_stop(&fa), 0);
}

/* A proxy's 504 after the service accepted the job: the job exists. */
static void test_proxy_status_after_accept(void **state)
{
    (void)state;
    struct fake_agent fa;
    start(&fa, NULL);
    assert_int_equal(fake_agent_config(&fa, "{\"proxy_status\":504}"), 0);
    assert_int_equal(post(&fa, "p", "b", NULL), 504);
    json_t *s = fake_agent_stats(&fa);
    assert_int_equal(num(s, "posts"), 1);
    json_t *job = json_array_get(json_object_get(s, "jobs"), 0);
    assert_string_equal(str(job, "status"), "running");
    json_decref(s);
    json_decref(health(&fa)); /* other endpoints answer as usual */
    assert_int_equal(fake_agent_config(&fa, "{\"proxy_status\":0}"), 0);
    assert_int_equal(post(&fa, "p", "b", NULL), 202);
    assert_int_equal(fake_agent_stop(&fa), 0);
}

/* ---- the agent side ------------------------------------------------------------ */

struct agent_env {
    struct testdb db;
    struct fake_agent fa;
};

static int agent_setup(void **state)
{
    struct agent_env *e = calloc(1, sizeof *e);
    if (!e || testdb_create(&e->db, TESTDB_SCHEMA_CURRENT, 1) != 0)
        return -1;
    *state = e;
    return 0;
}

static int agent_teardown(void **state)
{
    struct agent_env *e = *state;
    int rc = fake_agent_stop(&e->fa) == 0 ? 0 : -1;
    testdb_drop(&e->db);
    free(e);
    return rc;
}

static void agent_start(struct agent_env *e, const char *const *extra)
{
    const char *argv[32] = {"--token", TOKEN, "--agent-db", e->db.url};
    int n = 4;
    for (; extra && *extra; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
    assert_int_equal(fake_agent_start(&e->fa, argv), 0);
}

static void bead(struct agent_env *e, const char *id)
{
    struct testdb_bead b = {.id = id, .status = "in_progress", .assignee = "agent",
                            .acceptance = "it works", .notes = "auto-dispatcher claimed"};
    assert_int_equal(testdb_insert_bead_ex(&e->db, &b), 0);
}

static char *bead_col(struct agent_env *e, const char *id, const char *col)
{
    static char buf[8192];
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM issues WHERE id = '%s'", col, id);
    assert_true(testdb_query_str(&e->db, sql, buf, sizeof buf) >= 0);
    return buf;
}

/* Polls GET /jobs/{id} until its status is want (up to 10 s). */
static void wait_status(struct agent_env *e, const char *id, const char *want)
{
    for (int i = 0; i < 200; i++) {
        if (strcmp(job_status(&e->fa, id), want) == 0)
            return;
        proc_sleep_ms(50);
    }
    fail_msg("job %s never became %s (is %s)", id, want, job_status(&e->fa, id));
}

static const char prompt_fmt[] = "You are the beads-task-runner.\n"
                                 "Task id: %s\n"
                                 "Job id: %s\n"
                                 "Beads database: /workspace/.beads\n"
                                 "## Description\nJob id: not-this-one\n";

/* Claim note first with the prompt's id, progress notes, then the close
 * note and the close itself, all before the job reads `completed`. */
static void test_agent_claims_and_closes(void **state)
{
    struct agent_env *e = *state;
    static const char *const args[] = {"--job-ms", "400", "--agent-note-ms", "150", NULL};
    /* bd 1.0.x has close_reason (the fixture too); the agent side writes it
     * where it exists */
    agent_start(e, args);
    bead(e, "code-1");
    char prompt[512], id[13];
    snprintf(prompt, sizeof prompt, prompt_fmt, "code-1", "d-0001");
    assert_int_equal(post(&e->fa, prompt, "code-1", id), 202);
    wait_status(e, id, "completed");
    assert_string_equal(bead_col(e, "code-1", "status"), "closed");
    assert_string_equal(bead_col(e, "code-1", "closed_at IS NOT NULL"), "1");
    assert_string_equal(bead_col(e, "code-1", "close_reason"), "completed by agent d-0001");
    const char *notes = bead_col(e, "code-1", "notes");
    assert_true(strncmp(notes, "auto-dispatcher claimed\nclaimed by agent d-0001\nprogress 1",
                        strlen("auto-dispatcher claimed\nclaimed by agent d-0001\nprogress 1")) == 0);
    const char *tail = "\ncompleted by agent d-0001";
    assert_string_equal(notes + strlen(notes) - strlen(tail), tail);
    assert_null(strstr(notes, "not-this-one"));
    int64_t n = 0;
    assert_int_equal(testdb_query_int(&e->db, "SELECT COUNT(*) FROM dolt_emul_commits WHERE message = 'bd: close code-1'", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(testdb_query_int(&e->db, "SELECT COUNT(*) FROM events WHERE issue_id = 'code-1' AND event_type = 'closed'", &n), 0);
    assert_int_equal(n, 1);
    json_t *s = fake_agent_stats(&e->fa);
    json_t *job = json_array_get(json_object_get(s, "jobs"), 0);
    assert_string_equal(str(job, "task_id"), "code-1");
    assert_string_equal(str(job, "prompt_job_id"), "d-0001");
    assert_int_equal(num(json_object_get(s, "agent"), "errors"), 0);
    json_decref(s);
}

/* After a timeout the agent goes on writing, and closes the bead while the
 * record still says timeout. */
static void test_agent_after_timeout(void **state)
{
    struct agent_env *e = *state;
    static const char *const args[] = {"--job-ms", "2500", "--agent-note-ms", "100", "--timeout-ms", "200", NULL};
    agent_start(e, args);
    bead(e, "code-2");
    char prompt[512], id[13];
    snprintf(prompt, sizeof prompt, prompt_fmt, "code-2", "d-0002");
    assert_int_equal(post(&e->fa, prompt, "code-2", id), 202);
    wait_status(e, id, "timeout");
    char before[8192];
    snprintf(before, sizeof before, "%s", bead_col(e, "code-2", "notes"));
    assert_string_equal(bead_col(e, "code-2", "status"), "in_progress");
    for (int i = 0; i < 200 && strcmp(bead_col(e, "code-2", "status"), "closed") != 0; i++)
        proc_sleep_ms(50);
    assert_string_equal(bead_col(e, "code-2", "status"), "closed");
    const char *after = bead_col(e, "code-2", "notes");
    assert_true(strlen(after) > strlen(before) + strlen("\ncompleted by agent d-0002"));
    assert_string_equal(job_status(&e->fa, id), "timeout");
}

/* Block, leave, and what an agent can do when the prompt lacks ids. */
static void test_agent_outcomes_and_missing_ids(void **state)
{
    struct agent_env *e = *state;
    static const char *const args[] = {"--job-ms", "150", "--agent-outcome", "block", NULL};
    agent_start(e, args);
    char prompt[512], id[13];
    bead(e, "code-3");
    snprintf(prompt, sizeof prompt, prompt_fmt, "code-3", "d-0003");
    assert_int_equal(post(&e->fa, prompt, "code-3", id), 202);
    wait_status(e, id, "completed");
    assert_string_equal(bead_col(e, "code-3", "status"), "blocked");
    assert_non_null(strstr(bead_col(e, "code-3", "notes"), "\nblocked: "));

    assert_int_equal(fake_agent_config(&e->fa, "{\"agent_outcome\":\"leave\"}"), 0);
    bead(e, "code-4");
    assert_int_equal(post(&e->fa, "Task id: code-4\nNo job id here.\n", "code-4", id), 202);
    wait_status(e, id, "completed");
    assert_string_equal(bead_col(e, "code-4", "status"), "in_progress");
    const char *notes = bead_col(e, "code-4", "notes");
    assert_null(strstr(notes, "claimed by agent"));
    assert_non_null(strstr(notes, "orchestrator decides next"));

    /* no task id: it cannot know the bead, it writes nothing */
    assert_int_equal(fake_agent_config(&e->fa, "{\"agent_outcome\":\"close\"}"), 0);
    bead(e, "code-5");
    assert_int_equal(post(&e->fa, "Work on the bead in the metadata.\nJob id: d-5\n", "code-5", id), 202);
    wait_status(e, id, "completed");
    assert_string_equal(bead_col(e, "code-5", "notes"), "auto-dispatcher claimed");
    assert_string_equal(bead_col(e, "code-5", "status"), "in_progress");

    /* killed: no final writes */
    assert_int_equal(fake_agent_config(&e->fa, "{\"job_ms\":0}"), 0);
    bead(e, "code-6");
    snprintf(prompt, sizeof prompt, prompt_fmt, "code-6", "d-0006");
    assert_int_equal(post(&e->fa, prompt, "code-6", id), 202);
    for (int i = 0; i < 100 && !strstr(bead_col(e, "code-6", "notes"), "claimed by agent d-0006"); i++)
        proc_sleep_ms(50);
    char path[64];
    snprintf(path, sizeof path, "/_fake/jobs/%s", id);
    assert_int_equal(fake_agent_call(&e->fa, "POST", path, "{\"process\":\"kill\"}", NULL, NULL), 200);
    wait_status(e, id, "failed");
    proc_sleep_ms(200);
    assert_string_equal(bead_col(e, "code-6", "notes"), "auto-dispatcher claimed\nclaimed by agent d-0006");
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeout_keeps_running),
        cmocka_unit_test(test_timeout_run_time_only),
        cmocka_unit_test(test_queue_depth),
        cmocka_unit_test(test_ttl_sweep_on_finish),
        cmocka_unit_test(test_single_slot),
        cmocka_unit_test(test_auth_and_validation),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_proxy_status_after_accept),
        cmocka_unit_test_setup_teardown(test_agent_claims_and_closes, agent_setup, agent_teardown),
        cmocka_unit_test_setup_teardown(test_agent_after_timeout, agent_setup, agent_teardown),
        cmocka_unit_test_setup_teardown(test_agent_outcomes_and_missing_ids, agent_setup, agent_teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
