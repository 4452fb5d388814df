/* Unit tests of the configuration table: parsing, precedence, validation
 * messages, secret redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "errors.h"
#include "util.h"

static void test_durations(void **state)
{
    (void)state;
    uint64_t ms;
    assert_int_equal(config_parse_duration("500ms", &ms), 0);
    assert_int_equal(ms, 500);
    assert_int_equal(config_parse_duration("90s", &ms), 0);
    assert_int_equal(ms, 90000);
    assert_int_equal(config_parse_duration("2m", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(config_parse_duration("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(config_parse_duration("30d", &ms), 0);
    assert_int_equal(ms, 30ULL * 86400000);
    assert_int_equal(config_parse_duration("1h30m", &ms), 0);
    assert_int_equal(ms, 5400000);
    const char *bad[] = {"", "abc", "10", "1x", "-5s", "s", "1.5s", " 1s", "1s ", "99999999999999999999h"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(config_parse_duration(bad[i], &ms), BS_EINVAL);

    char buf[32];
    config_format_duration(120000, buf, sizeof buf);
    assert_string_equal(buf, "2m");
    config_format_duration(1500, buf, sizeof buf);
    assert_string_equal(buf, "1500ms");
    config_format_duration(0, buf, sizeof buf);
    assert_string_equal(buf, "0ms");
    config_format_duration(86400000, buf, sizeof buf);
    assert_string_equal(buf, "1d");
}

static void test_dolt_url(void **state)
{
    (void)state;
    struct dolt_target t;
    char err[256];
    assert_int_equal(config_parse_dolt_url("mysql://beads:s%40cret@dolt.beads-server.svc:3307/code", &t, err, sizeof err), 0);
    assert_string_equal(t.user, "beads");
    assert_string_equal(t.password, "s@cret");
    assert_string_equal(t.host, "dolt.beads-server.svc");
    assert_int_equal(t.port, 3307);
    assert_string_equal(t.database, "code");
    assert_null(t.socket);
    dolt_target_free(&t);

    assert_int_equal(config_parse_dolt_url("mysql://root@localhost/code?socket=%2Frun%2Fmysqld%2Fmysqld.sock", &t, err, sizeof err), 0);
    assert_null(t.password);
    assert_int_equal(t.port, 3306);
    assert_string_equal(t.socket, "/run/mysqld/mysqld.sock");
    dolt_target_free(&t);

    struct { const char *url; const char *why; } bad[] = {
        {"http://u@h/db", "scheme"},
        {"mysql://u@h", "database"},
        {"mysql://u@h/", "database"},
        {"mysql://h/db", "user"},
        {"mysql://u:topsecret@h:99999/db", "port"},
        {"mysql://u@h/db?tls=1", "tls"},
        {"not a url", "URL"},
        {"mysql://u@h/db/extra", "database"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(config_parse_dolt_url(bad[i].url, &t, err, sizeof err), BS_EINVAL);
        if (!strstr(err, bad[i].why))
            fail_msg("%s: error '%s' does not mention '%s'", bad[i].url, err, bad[i].why);
        assert_null(strstr(err, "topsecret"));
    }
}

/* Runs config_load on a fixed argv/env; returns its rc. */
static int load(struct config *cfg, char **env, int *argc, char **argv, char *err, size_t len)
{
    err[0] = '\0';
    return config_load(cfg, argc, argv, env, err, len);
}

static void test_defaults(void **state)
{
    (void)state;
    struct config cfg;
    char err[256];
    char *env[] = {NULL};
    char *argv[] = {"beads-sched", "config", NULL};
    int argc = 2;
    assert_int_equal(load(&cfg, env, &argc, argv, err, sizeof err), 0);
    assert_string_equal(cfg.store, "./beads-sched.db");
    assert_string_equal(cfg.assignee, "agent");
    assert_string_equal(cfg.agent_name, "beads-task-runner");
    assert_string_equal(cfg.actor, "beads-sched");
    assert_int_equal(cfg.probe_interval_ms, 1000);
    assert_int_equal(cfg.dispatch_interval_ms, 120000);
    assert_int_equal(cfg.reap_interval_ms, 60000);
    assert_int_equal(cfg.stale_after_ms, 1800000);
    assert_int_equal(cfg.max_attempts, 3);
    assert_int_equal(cfg.retry_backoff_ms, 60000);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 9464);
    assert_int_equal(cfg.paused, 0);
    assert_int_equal(cfg.dolt_commit, DOLT_COMMIT_AUTO);
    assert_int_equal(cfg.log_level, LL_INFO);
    assert_int_equal(cfg.log_format, LF_LOGFMT);
    assert_int_equal(argc, 2);
    /* Nothing required for `config`, but run needs Dolt and the agent. */
    assert_int_equal(config_require(&cfg, CONFIG_NEED_NONE, err, sizeof err), 0);
    assert_int_equal(config_require(&cfg, CONFIG_NEED_DOLT, err, sizeof err), BS_EINVAL);
    assert_non_null(strstr(err, "BEADS_SCHED_DOLT_URL"));
    config_free(&cfg);
}

static void test_precedence_and_flags(void **state)
{
    (void)state;
    struct config cfg;
    char err[256];
    char *env[] = {"BEADS_SCHED_PROBE_INTERVAL=5s", "BEADS_SCHED_MAX_ATTEMPTS=4",
                   "BEADS_SCHED_DOLT_URL=mysql://beads:pw@127.0.0.1:3306/code",
                   "BEADS_SCHED_AGENT_URL=http://agent.local:8080/", "BEADS_SCHED_AGENT_TOKEN=tok",
                   "OTHER=1", NULL};
    char *argv[] = {"beads-sched", "--probe-interval=250ms", "run", "--max-attempts", "7",
                    "--dry-run", NULL};
    int argc = 6;
    assert_int_equal(load(&cfg, env, &argc, argv, err, sizeof err), 0);
    assert_int_equal(cfg.probe_interval_ms, 250);
    assert_int_equal(cfg.max_attempts, 7);
    assert_string_equal(cfg.agent_url, "http://agent.local:8080"); /* trailing slash trimmed */
    assert_string_equal(cfg.dolt.password, "pw");
    /* config flags consumed, the rest kept in order */
    assert_int_equal(argc, 3);
    assert_string_equal(argv[1], "run");
    assert_string_equal(argv[2], "--dry-run");
    assert_null(argv[3]);
    assert_int_equal(config_require(&cfg, CONFIG_NEED_DOLT | CONFIG_NEED_AGENT, err, sizeof err), 0);
    config_free(&cfg);
}

static void expect_error(char **env, char **argv, int argc, const char *name, const char *secret)
{
    struct config cfg;
    char err[256];
    assert_int_equal(load(&cfg, env, &argc, argv, err, sizeof err), BS_EINVAL);
    if (strncmp(err, name, strlen(name)) != 0)
        fail_msg("error '%s' does not start with '%s'", err, name);
    if (secret)
        assert_null(strstr(err, secret));
}

static void test_errors_name_the_variable(void **state)
{
    (void)state;
    char *argv[] = {"beads-sched", "run", NULL};
    char *e1[] = {"BEADS_SCHED_PROBE_INTERVAL=abc", NULL};
    expect_error(e1, argv, 2, "BEADS_SCHED_PROBE_INTERVAL", NULL);
    char *e2[] = {"BEADS_SCHED_PROBE_INTERVAL=10ms", NULL}; /* below minimum */
    expect_error(e2, argv, 2, "BEADS_SCHED_PROBE_INTERVAL", NULL);
    char *e3[] = {"BEADS_SCHED_MAX_ATTEMPTS=three", NULL};
    expect_error(e3, argv, 2, "BEADS_SCHED_MAX_ATTEMPTS", NULL);
    char *e4[] = {"BEADS_SCHED_DOLT_COMMIT=sometimes", NULL};
    expect_error(e4, argv, 2, "BEADS_SCHED_DOLT_COMMIT", NULL);
    char *e5[] = {"BEADS_SCHED_DOLT_URL=postgres://u:hunter2@h/db", NULL};
    expect_error(e5, argv, 2, "BEADS_SCHED_DOLT_URL", "hunter2");
    char *e6[] = {"BEADS_SCHED_AGENT_URL=ftp://x/", NULL};
    expect_error(e6, argv, 2, "BEADS_SCHED_AGENT_URL", NULL);
    char *e7[] = {"BEADS_SCHED_LISTEN=nonsense", NULL};
    expect_error(e7, argv, 2, "BEADS_SCHED_LISTEN", NULL);
    char *e8[] = {"BEADS_SCHED_PAUSED=maybe", NULL};
    expect_error(e8, argv, 2, "BEADS_SCHED_PAUSED", NULL);
    char *e9[] = {"BEADS_SCHED_AGENT_TOKEN_FILE=/nonexistent/token", NULL};
    expect_error(e9, argv, 2, "BEADS_SCHED_AGENT_TOKEN_FILE", NULL);
    char *e10[] = {"BEADS_SCHED_AGENT_TOKEN=x", "BEADS_SCHED_AGENT_TOKEN_FILE=/etc/hostname", NULL};
    expect_error(e10, argv, 2, "BEADS_SCHED_AGENT_TOKEN_FILE", NULL);
    char *e11[] = {"BEADS_SCHED_STORE=", NULL};
    expect_error(e11, argv, 2, "BEADS_SCHED_STORE", NULL);
    /* A flag's error names the flag. */
    char *none[] = {NULL};
    char *fl[] = {"beads-sched", "--reap-interval=soon", "run", NULL};
    expect_error(none, fl, 3, "--reap-interval", NULL);
    char *fl2[] = {"beads-sched", "run", "--reap-interval", NULL};
    expect_error(none, fl2, 3, "--reap-interval", NULL);
    /* A bare flag never swallows the next flag (found by fuzzing: the next
     * one's value, a token, was echoed in the error). */
    char *fl3[] = {"beads-sched", "--dolt-commit", "--agent-token=tok-secret-9", "config", NULL};
    expect_error(none, fl3, 4, "--dolt-commit", "tok-secret-9");
}

static void test_secrets_redacted(void **state)
{
    (void)state;
    char *dir = test_tmpdir("bs-config");
    char pwfile[4096], tokfile[4096];
    snprintf(pwfile, sizeof pwfile, "%s/pw", dir);
    snprintf(tokfile, sizeof tokfile, "%s/token", dir);
    assert_int_equal(test_write_file(pwfile, "file-password-42\n", 17), 0);
    assert_int_equal(test_write_file(tokfile, "token-from-file-77\n", 19), 0);

    char pwenv[4200], tokenv[4200];
    snprintf(pwenv, sizeof pwenv, "BEADS_SCHED_DOLT_PASSWORD_FILE=%s", pwfile);
    snprintf(tokenv, sizeof tokenv, "BEADS_SCHED_AGENT_TOKEN_FILE=%s", tokfile);
    char *env[] = {"BEADS_SCHED_DOLT_URL=mysql://beads:url-password-13@db:3306/code", pwenv, tokenv, NULL};
    char *argv[] = {"beads-sched", "config", NULL};
    int argc = 2;
    struct config cfg;
    char err[256];
    assert_int_equal(load(&cfg, env, &argc, argv, err, sizeof err), 0);
    assert_string_equal(cfg.dolt.password, "file-password-42"); /* file wins, newline stripped */
    assert_string_equal(cfg.agent_token, "token-from-file-77");

    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    config_print(&cfg, f);
    fclose(f);
    assert_null(strstr(out, "url-password-13"));
    assert_null(strstr(out, "file-password-42"));
    assert_null(strstr(out, "token-from-file-77"));
    assert_non_null(strstr(out, "BEADS_SCHED_DOLT_URL=mysql://beads:***@db:3306/code"));
    assert_non_null(strstr(out, "BEADS_SCHED_AGENT_TOKEN_FILE="));
    assert_non_null(strstr(out, "BEADS_SCHED_PROBE_INTERVAL=1s  # default"));
    free(out);
    config_free(&cfg);

    char *env2[] = {"BEADS_SCHED_AGENT_TOKEN=plain-token-99", NULL};
    argc = 2;
    assert_int_equal(load(&cfg, env2, &argc, argv, err, sizeof err), 0);
    f = open_memstream(&out, &outlen);
    config_print(&cfg, f);
    fclose(f);
    assert_null(strstr(out, "plain-token-99"));
    assert_non_null(strstr(out, "BEADS_SCHED_AGENT_TOKEN=***  # env"));
    free(out);
    config_free(&cfg);
    test_rmtree(dir);
    free(dir);
}

static void test_listen(void **state)
{
    (void)state;
    struct config cfg;
    char err[256];
    char *argv[] = {"beads-sched", "config", NULL};
    int argc = 2;
    char *env[] = {"BEADS_SCHED_LISTEN=[::1]:9000", NULL};
    assert_int_equal(load(&cfg, env, &argc, argv, err, sizeof err), 0);
    assert_string_equal(cfg.listen_host, "::1");
    assert_int_equal(cfg.listen_port, 9000);
    config_free(&cfg);
    char *env2[] = {"BEADS_SCHED_LISTEN=", NULL};
    argc = 2;
    assert_int_equal(load(&cfg, env2, &argc, argv, err, sizeof err), 0);
    assert_null(cfg.listen_host);
    config_free(&cfg);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_dolt_url),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_precedence_and_flags),
        cmocka_unit_test(test_errors_name_the_variable),
        cmocka_unit_test(test_secrets_redacted),
        cmocka_unit_test(test_listen),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
