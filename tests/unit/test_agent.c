/* Unit tests: agent API codec, prompt rendering, text helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "errors.h"
#include "prompt.h"
#include "text.h"

static void test_health(void **state)
{
    (void)state;
    struct agent_health h;
    char why[200];
    const char *ok = "{\"status\":\"ok\",\"busy\":false,\"active\":3,\"queued\":2,\"capacity\":10}";
    assert_int_equal(agent_parse_health(ok, strlen(ok), &h, why, sizeof why), 0);
    assert_int_equal(h.capacity, 10);
    assert_int_equal(agent_free_slots(&h), 5);
    const char *full = "{\"busy\":true,\"active\":10,\"queued\":7,\"capacity\":10}";
    assert_int_equal(agent_parse_health(full, strlen(full), &h, why, sizeof why), 0);
    assert_int_equal(agent_free_slots(&h), 0);

    /* The older single-slot service: busy only. */
    const char *single = "{\"status\":\"ok\",\"busy\":false}";
    assert_int_equal(agent_parse_health(single, strlen(single), &h, why, sizeof why), 0);
    assert_true(h.single_slot);
    assert_int_equal(agent_free_slots(&h), 1);
    const char *single_busy = "{\"status\":\"ok\",\"busy\":true}";
    assert_int_equal(agent_parse_health(single_busy, strlen(single_busy), &h, why, sizeof why), 0);
    assert_int_equal(agent_free_slots(&h), 0);

    const char *bad[] = {"", "not json", "[]", "{\"busy\":false,\"active\":1}", "{\"busy\":1}",
                         "{\"busy\":\"no\",\"active\":1,\"queued\":0,\"capacity\":1}",
                         "{\"busy\":false,\"active\":-1,\"queued\":0,\"capacity\":1}",
                         "{\"busy\":false,\"active\":1.5,\"queued\":0,\"capacity\":1}",
                         "{\"busy\":false,\"active\":1,\"queued\":0,\"capacity\":1",
                         "{\"busy\":false,\"busy\":true,\"active\":1,\"queued\":0,\"capacity\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        assert_int_equal(agent_parse_health(bad[i], strlen(bad[i]), &h, why, sizeof why), BS_EINVAL);
        assert_true(why[0] != '\0');
    }
}

static void test_execute_reply(void **state)
{
    (void)state;
    char id[AGENT_JOB_ID_MAX], why[200];
    const char *ok = "{\"job_id\":\"0123456789ab\",\"status\":\"queued\"}";
    assert_int_equal(agent_parse_execute(ok, strlen(ok), id, sizeof id, why, sizeof why), 0);
    assert_string_equal(id, "0123456789ab");
    const char *bad[] = {"{}", "{\"job_id\":12}", "{\"job_id\":\"\"}", "{\"job_id\":\"../../etc\"}",
                         "{\"job_id\":\"a b\"}", "{\"job_id\":\"x\\n\"}", "<html>",
                         "{\"job_id\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(agent_parse_execute(bad[i], strlen(bad[i]), id, sizeof id, why, sizeof why), BS_EINVAL);
}

static void test_job_reply(void **state)
{
    (void)state;
    struct agent_job j;
    char why[200];
    const char *ok = "{\"job_id\":\"ab\",\"status\":\"failed\",\"error\":\"exit 3\",\"exit_code\":3}";
    assert_int_equal(agent_parse_job(ok, strlen(ok), &j, why, sizeof why), 0);
    assert_int_equal(j.status, JOB_FAILED);
    assert_true(agent_job_status_terminal(j.status));
    assert_string_equal(j.error, "exit 3");
    const char *run = "{\"status\":\"running\",\"error\":null}";
    assert_int_equal(agent_parse_job(run, strlen(run), &j, why, sizeof why), 0);
    assert_false(agent_job_status_terminal(j.status));
    const char *bad = "{\"status\":\"exploded\"}";
    assert_int_equal(agent_parse_job(bad, strlen(bad), &j, why, sizeof why), BS_EINVAL);
}

static void test_execute_body_escapes(void **state)
{
    (void)state;
    const char *prompt = "quote \" backslash \\ newline \n nul-free \x01 and bad utf8 \xff\xfe end";
    char *body = agent_execute_body(prompt, "beads-task-runner", 5.0, 2700, "x'; DROP TABLE issues; --",
                                    "d-1", 2);
    assert_non_null(body);
    json_error_t e;
    json_t *o = json_loads(body, 0, &e);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "agent")), "beads-task-runner");
    assert_int_equal(json_integer_value(json_object_get(o, "timeout_seconds")), 2700);
    assert_true(json_real_value(json_object_get(o, "max_budget_usd")) == 5.0);
    json_t *m = json_object_get(o, "metadata");
    assert_string_equal(json_string_value(json_object_get(m, "bead_id")), "x'; DROP TABLE issues; --");
    assert_string_equal(json_string_value(json_object_get(m, "dispatch_id")), "d-1");
    assert_int_equal(json_integer_value(json_object_get(m, "attempt")), 2);
    const char *p = json_string_value(json_object_get(o, "prompt"));
    assert_non_null(strstr(p, "quote \" backslash \\ newline \n"));
    assert_non_null(strstr(p, "\xef\xbf\xbd\xef\xbf\xbd end")); /* invalid bytes replaced */
    json_decref(o);
    free(body);
}

static void test_prompt(void **state)
{
    (void)state;
    char why[128];
    assert_int_equal(prompt_template_check(prompt_default_template, why, sizeof why), 0);
    assert_int_equal(prompt_template_check("{{id}} {{nope}}", why, sizeof why), BS_EINVAL);
    assert_non_null(strstr(why, "nope"));
    assert_int_equal(prompt_template_check("{{id", why, sizeof why), BS_EINVAL);

    size_t big = PROMPT_FIELD_MAX + 5000;
    char *desc = malloc(big + 1);
    memset(desc, 'd', big);
    desc[big] = '\0';
    struct bead b = {.id = "code-1", .title = "Fix {{id}} injection", .description = desc,
                     .acceptance = "tests pass", .issue_type = "bug", .priority = 1};
    char *out = prompt_render("[{{id}}|{{title}}|P{{priority}}|{{type}}|{{acceptance_criteria}}|"
                              "{{dispatch_id}}|{{attempt}}/{{max_attempts}}] {{description}}",
                              &b, "disp-9", 2, 3, "/workspace/.beads");
    assert_non_null(out);
    /* Placeholders inside bead text are not expanded again. */
    assert_non_null(strstr(out, "[code-1|Fix {{id}} injection|P1|bug|tests pass|disp-9|2/3] "));
    assert_non_null(strstr(out, "[... cut: 5000 more bytes]"));
    assert_true(strlen(out) < PROMPT_FIELD_MAX + 200);
    free(out);
    free(desc);
}

static void test_text(void **state)
{
    (void)state;
    /* "é" is 2 bytes: a cut in its middle steps back. */
    assert_int_equal(text_utf8_prefix("ab\xc3\xa9", 4, 3), 2);
    assert_int_equal(text_utf8_prefix("abc", 3, 10), 3);
    char *c = text_utf8_clean("a\xc0\x80z", 4); /* overlong NUL */
    assert_string_equal(c, "a\xef\xbf\xbd\xef\xbf\xbdz");
    free(c);
    int cut = 0;
    c = text_cap("hello world", 11, 5, &cut);
    assert_true(cut);
    assert_string_equal(c, "hello\n[... cut: 6 more bytes]");
    free(c);
    char u1[37], u2[37];
    text_uuid4(u1);
    text_uuid4(u2);
    assert_int_equal(strlen(u1), 36);
    assert_int_equal(u1[14], '4');
    assert_string_not_equal(u1, u2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health),         cmocka_unit_test(test_execute_reply),
        cmocka_unit_test(test_job_reply),      cmocka_unit_test(test_execute_body_escapes),
        cmocka_unit_test(test_prompt),         cmocka_unit_test(test_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
