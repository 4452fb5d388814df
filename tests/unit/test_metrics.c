/* Unit tests: the metrics registry (sched/metrics.c) and its Prometheus text
 * rendering, checked line by line, for internal consistency, against the
 * fixed label sets, under concurrent updates, and by the real promtool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "promtool.h"

/* The exposition contract, written out independently of metrics.c. */
struct series_rule {
    const char *name;
    const char *type;
    const char *label;              /* the one label allowed, or NULL */
    const char *const values[16];   /* allowed values of label (NULL-terminated); empty: any */
};

static const struct series_rule rules[] = {
    {"beads_sched_dispatches_total", "counter", "outcome",
     {"dispatched", "refused", "unknown", "lost_race", "released", "given_back", NULL}},
    {"beads_sched_reaps_total", "counter", "reason",
     {"alive", "closed", "blocked", "reopened", "retrying", "gave_up", "stale", "adopted",
      "lost_race", "recovered", "write_failed", "reached", "noted", NULL}},
    {"beads_sched_dolt_errors_total", "counter", "kind", {"connection", "conflict", "io", NULL}},
    {"beads_sched_agent_errors_total", "counter", "kind",
     {"refused", "unknown", "http_4xx", "http_5xx", "malformed", "unreachable", "unusable",
      "unauthorized", "full", NULL}},
    {"beads_sched_cycles_total", "counter", "kind", {"dispatch", "reap", "probe", NULL}},
    {"beads_sched_in_flight_attempts", "gauge", NULL, {NULL}},
    {"beads_sched_paused", "gauge", NULL, {NULL}},
    {"beads_sched_agent_free_slots", "gauge", NULL, {NULL}},
    {"beads_sched_last_successful_cycle_timestamp_seconds", "gauge", NULL, {NULL}},
    {"beads_sched_active", "gauge", NULL, {NULL}},
    {"beads_sched_role_since_timestamp_seconds", "gauge", NULL, {NULL}},
    {"beads_sched_store_ok", "gauge", NULL, {NULL}},
    {"beads_sched_store_bytes", "gauge", NULL, {NULL}},
    {"beads_sched_dolt_up", "gauge", NULL, {NULL}},
    {"beads_sched_ready_beads", "gauge", NULL, {NULL}},
    {"process_resident_memory_bytes", "gauge", NULL, {NULL}},
    {"beads_sched_agent_token_refused", "gauge", NULL, {NULL}},
    {"beads_sched_agent_url_wrong", "gauge", NULL, {NULL}},
    {"beads_sched_agent_full_backoff_seconds", "gauge", NULL, {NULL}},
    {"beads_sched_cycle_duration_seconds", "histogram", "le", {NULL}},
    {"beads_sched_dispatch_latency_seconds", "histogram", "le", {NULL}},
    {"beads_sched_build_info", "gauge", "version", {BEADS_SCHED_VERSION, NULL}},
    {"beads_sched_start_time_seconds", "gauge", NULL, {NULL}},
};
#define NRULES (sizeof rules / sizeof rules[0])

static const double cycle_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double latency_bounds[] = {0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300};

static int reset(void **state)
{
    (void)state;
    metrics_reset();
    return 0;
}

static char *render(void)
{
    char *t = metrics_render();
    assert_non_null(t);
    return t;
}

/* True when text has line as one whole line. */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

static void assert_line(const char *text, const char *line)
{
    if (!has_line(text, line))
        fail_msg("missing line: %s\n--- rendered ---\n%s", line, text);
}

/* Value of the series (name plus labels, exactly as rendered); fails the
 * test when it is absent. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    fail_msg("missing series: %s", series);
    return NAN;
}

static void promtool_ok(const char *text)
{
    char *out = NULL;
    int code = test_promtool_check(text, &out);
    if (code != 0)
        fail_msg("promtool check metrics exited %d:\n%s\n--- input ---\n%s", code,
                 out ? out : "(no output)", text);
    free(out);
}

static void test_initial_render(void **state)
{
    (void)state;
    char *t = render();
    char line[256];
    for (size_t r = 0; r < NRULES; r++) {
        snprintf(line, sizeof line, "# TYPE %s %s", rules[r].name, rules[r].type);
        assert_line(t, line);
        snprintf(line, sizeof line, "# HELP %s ", rules[r].name);
        assert_non_null(strstr(t, line));
        if (strcmp(rules[r].type, "counter") == 0) {
            for (size_t v = 0; rules[r].values[v]; v++) {
                snprintf(line, sizeof line, "%s{%s=\"%s\"} 0", rules[r].name, rules[r].label,
                         rules[r].values[v]);
                assert_line(t, line);
            }
        }
    }
    assert_null(strstr(t, "\"other\""));
    assert_line(t, "beads_sched_in_flight_attempts 0");
    assert_line(t, "beads_sched_paused 0");
    assert_line(t, "beads_sched_cycle_duration_seconds_bucket{le=\"+Inf\"} 0");
    assert_line(t, "beads_sched_cycle_duration_seconds_sum 0");
    assert_line(t, "beads_sched_cycle_duration_seconds_count 0");
    assert_line(t, "beads_sched_build_info{version=\"" BEADS_SCHED_VERSION "\"} 1");
    /* Some time after 2020 and not in the future by more than a minute. */
    double start = value_of(t, "beads_sched_start_time_seconds");
    assert_true(start > 1577836800.0);
    assert_true(start < (double)time(NULL) + 60);
    promtool_ok(t);
    free(t);
    /* The checker itself rejects bad input: a parse error and a lint one. */
    assert_int_not_equal(test_promtool_check("bad metric {\n", NULL), 0);
    assert_int_not_equal(test_promtool_check("# HELP foo x\n# TYPE foo counter\nfoo 1\n", NULL), 0);
}

static void test_counts_gauges_observations(void **state)
{
    (void)state;
    metrics_count(MC_DISPATCHES, "dispatched", 3);
    metrics_count(MC_DISPATCHES, "dispatched", 2);
    metrics_count(MC_DISPATCHES, "lost_race", 1);
    metrics_count(MC_REAPS, "gave_up", 7);
    metrics_count(MC_DOLT_ERRORS, "conflict", 1);
    metrics_count(MC_AGENT_ERRORS, "http_5xx", 4);
    metrics_count(MC_CYCLES, "probe", 1000000000000ULL);
    metrics_gauge_set(MG_IN_FLIGHT, 9);
    metrics_gauge_set(MG_IN_FLIGHT, 8);
    metrics_gauge_set(MG_PAUSED, 1);
    metrics_gauge_set(MG_AGENT_FREE_SLOTS, 2);
    metrics_gauge_set(MG_LAST_CYCLE_SUCCESS, 1795237139.25);
    metrics_observe(MH_CYCLE_DURATION, 0.003);
    metrics_observe(MH_CYCLE_DURATION, 0.01);  /* on a bound: le is inclusive */
    metrics_observe(MH_CYCLE_DURATION, 0.3);
    metrics_observe(MH_CYCLE_DURATION, 20);    /* above every bound: +Inf only */
    metrics_observe(MH_DISPATCH_LATENCY, 1.5);

    char *t = render();
    assert_line(t, "beads_sched_dispatches_total{outcome=\"dispatched\"} 5");
    assert_line(t, "beads_sched_dispatches_total{outcome=\"lost_race\"} 1");
    assert_line(t, "beads_sched_dispatches_total{outcome=\"refused\"} 0");
    assert_line(t, "beads_sched_reaps_total{reason=\"gave_up\"} 7");
    assert_line(t, "beads_sched_dolt_errors_total{kind=\"conflict\"} 1");
    assert_line(t, "beads_sched_agent_errors_total{kind=\"http_5xx\"} 4");
    assert_line(t, "beads_sched_cycles_total{kind=\"probe\"} 1000000000000");
    assert_line(t, "beads_sched_in_flight_attempts 8");
    assert_line(t, "beads_sched_paused 1");
    assert_line(t, "beads_sched_agent_free_slots 2");
    assert_line(t, "beads_sched_last_successful_cycle_timestamp_seconds 1795237139.25");
    assert_line(t, "beads_sched_cycle_duration_seconds_bucket{le=\"0.005\"} 1");
    assert_line(t, "beads_sched_cycle_duration_seconds_bucket{le=\"0.01\"} 2");
    assert_line(t, "beads_sched_cycle_duration_seconds_bucket{le=\"0.25\"} 2");
    assert_line(t, "beads_sched_cycle_duration_seconds_bucket{le=\"0.5\"} 3");
    assert_line(t, "beads_sched_cycle_duration_seconds_bucket{le=\"10\"} 3");
    assert_line(t, "beads_sched_cycle_duration_seconds_bucket{le=\"+Inf\"} 4");
    assert_line(t, "beads_sched_cycle_duration_seconds_count 4");
    assert_true(fabs(value_of(t, "beads_sched_cycle_duration_seconds_sum") - 20.313) < 1e-9);
    assert_line(t, "beads_sched_dispatch_latency_seconds_bucket{le=\"1\"} 0");
    assert_line(t, "beads_sched_dispatch_latency_seconds_bucket{le=\"2\"} 1");
    assert_line(t, "beads_sched_dispatch_latency_seconds_sum 1.5");
    assert_line(t, "beads_sched_dispatch_latency_seconds_count 1");
    promtool_ok(t);
    free(t);

    /* Reset really zeroes everything. */
    metrics_reset();
    t = render();
    assert_line(t, "beads_sched_dispatches_total{outcome=\"dispatched\"} 0");
    assert_line(t, "beads_sched_paused 0");
    assert_line(t, "beads_sched_cycle_duration_seconds_count 0");
    free(t);
}

/* Checks one histogram: the expected bounds in order, cumulative counts that
 * never decrease, +Inf equal to _count. Returns _count. */
static double check_histogram(const char *t, const char *name, const double *bounds, size_t n)
{
    char series[256];
    double prev = 0;
    for (size_t i = 0; i < n; i++) {
        snprintf(series, sizeof series, "%s_bucket{le=\"%g\"}", name, bounds[i]);
        double v = value_of(t, series);
        assert_true(v >= prev);
        prev = v;
    }
    snprintf(series, sizeof series, "%s_bucket{le=\"+Inf\"}", name);
    double inf = value_of(t, series);
    assert_true(inf >= prev);
    snprintf(series, sizeof series, "%s_count", name);
    assert_true(inf == value_of(t, series));
    /* Bucket lines appear in ascending order of le. */
    snprintf(series, sizeof series, "%s_bucket{le=\"", name);
    const char *p = t;
    double last = -1;
    size_t lines = 0;
    while ((p = strstr(p, series)) != NULL) {
        p += strlen(series);
        double le = strncmp(p, "+Inf", 4) == 0 ? INFINITY : strtod(p, NULL);
        assert_true(le > last);
        last = le;
        lines++;
    }
    assert_int_equal(lines, n + 1);
    return inf;
}

static void test_histograms_cumulative(void **state)
{
    (void)state;
    unsigned seed = 12345;
    double sum = 0;
    size_t in_range = 0; /* observations <= 0.5 s */
    for (int i = 0; i < 5000; i++) {
        seed = seed * 1103515245u + 12345u;
        double v = (double)(seed >> 8 & 0xffff) / 4096.0; /* 0 .. 16 s */
        metrics_observe(MH_CYCLE_DURATION, v);
        metrics_observe(MH_DISPATCH_LATENCY, v * 30);
        sum += v;
        in_range += v <= 0.5;
    }
    /* Dropped: non-finite. Counted as 0: negative. */
    metrics_observe(MH_CYCLE_DURATION, NAN);
    metrics_observe(MH_CYCLE_DURATION, INFINITY);
    metrics_observe(MH_CYCLE_DURATION, -2);
    in_range++;

    char *t = render();
    assert_true(check_histogram(t, "beads_sched_cycle_duration_seconds", cycle_bounds, 11) ==
                5001);
    assert_true(check_histogram(t, "beads_sched_dispatch_latency_seconds", latency_bounds, 11) ==
                5000);
    assert_true(value_of(t, "beads_sched_cycle_duration_seconds_bucket{le=\"0.5\"}") ==
                (double)in_range);
    assert_true(fabs(value_of(t, "beads_sched_cycle_duration_seconds_sum") - sum) < 1e-6 * sum);
    assert_null(strstr(t, "NaN"));
    promtool_ok(t);
    free(t);
}

static void test_unknown_label_goes_to_other(void **state)
{
    (void)state;
    metrics_count(MC_DISPATCHES, "exploded", 2);
    metrics_count(MC_DISPATCHES, NULL, 1);
    metrics_count(MC_DISPATCHES, "Dispatched", 1); /* case matters */
    metrics_count(MC_CYCLES, "weird\"label\n", 5);
    char *t = render();
    assert_line(t, "beads_sched_dispatches_total{outcome=\"other\"} 4");
    assert_line(t, "beads_sched_dispatches_total{outcome=\"dispatched\"} 0");
    assert_line(t, "beads_sched_cycles_total{kind=\"other\"} 5");
    assert_null(strstr(t, "exploded"));
    assert_null(strstr(t, "weird"));
    assert_null(strstr(t, "reason=\"other\""));
    promtool_ok(t);
    free(t);
}

static const struct series_rule *rule_for(const char *name, size_t len)
{
    for (size_t r = 0; r < NRULES; r++) {
        size_t n = strlen(rules[r].name);
        if (strcmp(rules[r].type, "histogram") == 0) {
            static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
            for (size_t s = 0; s < 3; s++)
                if (len == n + strlen(suffixes[s]) && strncmp(name, rules[r].name, n) == 0 &&
                    strncmp(name + n, suffixes[s], len - n) == 0)
                    return &rules[r];
        } else if (len == n && strncmp(name, rules[r].name, n) == 0) {
            return &rules[r];
        }
    }
    return NULL;
}

/* Every series line names a known metric, and its label (if any) is the
 * metric's one label with a value from the fixed set ("other" allowed for
 * counters). */
static void check_label_sets(const char *t)
{
    for (const char *line = t; *line; ) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        if (*line != '#') {
            size_t name_len = strcspn(line, "{ ");
            const struct series_rule *r = rule_for(line, name_len);
            if (!r)
                fail_msg("unexpected series: %.*s", (int)(end - line), line);
            const char *p = line + name_len;
            if (*p == '{') {
                assert_non_null(r->label);
                p++;
                size_t ln = strcspn(p, "=");
                assert_int_equal(ln, strlen(r->label));
                assert_memory_equal(p, r->label, ln);
                p += ln;
                assert_int_equal(p[1], '"');
                p += 2;
                const char *close = strchr(p, '"');
                assert_non_null(close);
                assert_int_equal(close[1], '}'); /* one label only */
                size_t vn = (size_t)(close - p);
                int ok = 0;
                if (strcmp(r->label, "le") == 0)
                    ok = 1; /* bounds are checked by check_histogram */
                else if (strcmp(r->type, "counter") == 0 && vn == 5 && memcmp(p, "other", 5) == 0)
                    ok = 1;
                for (size_t v = 0; !ok && r->values[v]; v++)
                    ok = strlen(r->values[v]) == vn && memcmp(p, r->values[v], vn) == 0;
                if (!ok)
                    fail_msg("label value outside the fixed set: %.*s", (int)(end - line), line);
            } else {
                assert_true(r->label == NULL || strcmp(r->type, "histogram") == 0);
            }
        }
        line = end + 1;
    }
}

static void test_label_values_fixed(void **state)
{
    (void)state;
    const char *junk[] = {"x", "", "dispatched ", "other", "http_3xx", NULL};
    for (int c = 0; c < MC_COUNT; c++) {
        for (size_t j = 0; j < sizeof junk / sizeof junk[0]; j++)
            metrics_count((enum metric_counter)c, junk[j], 1);
        metrics_count((enum metric_counter)c, rules[c].values[0], 1);
    }
    char *t = render();
    check_label_sets(t);
    assert_line(t, "beads_sched_reaps_total{reason=\"other\"} 6");
    assert_line(t, "beads_sched_reaps_total{reason=\"alive\"} 1");
    free(t);
}

#define THREADS 4
#define ITERATIONS 50000

static const char *const outcomes[] = {"dispatched", "refused", "unknown", "lost_race",
                                       "released"};

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < ITERATIONS; i++) {
        metrics_count(MC_CYCLES, "probe", 1);
        metrics_count(MC_DISPATCHES, outcomes[i % 5], 2);
        metrics_observe(MH_DISPATCH_LATENCY, (double)(i % 400));
        metrics_gauge_set(MG_IN_FLIGHT, (double)i);
    }
    return NULL;
}

static atomic_int stop_rendering;

/* Scrapes while the writers run: every snapshot must be consistent. */
static void *scrape(void *arg)
{
    int *renders = arg;
    while (!stop_rendering) {
        char *t = metrics_render();
        if (!t)
            continue;
        static const char inf[] = "beads_sched_dispatch_latency_seconds_bucket{le=\"+Inf\"} ";
        static const char count[] = "beads_sched_dispatch_latency_seconds_count ";
        char *p = strstr(t, inf), *q = strstr(t, count);
        if (p && q && strtod(p + sizeof inf - 1, NULL) == strtod(q + sizeof count - 1, NULL))
            ++*renders;
        else
            *renders = -1000000;
        free(t);
    }
    return NULL;
}

static void test_concurrent_increments(void **state)
{
    (void)state;
    pthread_t th[THREADS], scraper;
    int renders = 0;
    stop_rendering = 0;
    assert_int_equal(pthread_create(&scraper, NULL, scrape, &renders), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    stop_rendering = 1;
    assert_int_equal(pthread_join(scraper, NULL), 0);
    assert_true(renders >= 0); /* no inconsistent snapshot */

    char *t = render();
    assert_true(value_of(t, "beads_sched_cycles_total{kind=\"probe\"}") == THREADS * ITERATIONS);
    for (size_t i = 0; i < 5; i++) {
        char series[128];
        snprintf(series, sizeof series, "beads_sched_dispatches_total{outcome=\"%s\"}", outcomes[i]);
        assert_true(value_of(t, series) == THREADS * ITERATIONS / 5 * 2);
    }
    assert_true(value_of(t, "beads_sched_dispatch_latency_seconds_count") == THREADS * ITERATIONS);
    /* Each thread observes 0..399 in turn, 125 rounds: sum = 4 * 125 * 79800. */
    assert_true(value_of(t, "beads_sched_dispatch_latency_seconds_sum") ==
                (double)THREADS * (ITERATIONS / 400) * (399.0 * 400 / 2));
    /* 0..120 fall in le="120": 121 values per round. */
    assert_true(value_of(t, "beads_sched_dispatch_latency_seconds_bucket{le=\"120\"}") ==
                (double)THREADS * (ITERATIONS / 400) * 121);
    check_histogram(t, "beads_sched_dispatch_latency_seconds", latency_bounds, 11);
    free(t);
}

static void test_float_rendering(void **state)
{
    (void)state;
    metrics_gauge_set(MG_AGENT_FREE_SLOTS, 0.1);
    metrics_gauge_set(MG_IN_FLIGHT, 1e21);
    metrics_gauge_set(MG_PAUSED, NAN);
    metrics_gauge_set(MG_LAST_CYCLE_SUCCESS, -INFINITY);
    char *t = render();
    assert_line(t, "beads_sched_agent_free_slots 0.1");
    assert_line(t, "beads_sched_in_flight_attempts 1e+21");
    assert_line(t, "beads_sched_paused NaN");
    assert_line(t, "beads_sched_last_successful_cycle_timestamp_seconds -Inf");
    promtool_ok(t);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_initial_render, reset),
        cmocka_unit_test_setup(test_counts_gauges_observations, reset),
        cmocka_unit_test_setup(test_histograms_cumulative, reset),
        cmocka_unit_test_setup(test_unknown_label_goes_to_other, reset),
        cmocka_unit_test_setup(test_label_values_fixed, reset),
        cmocka_unit_test_setup(test_concurrent_increments, reset),
        cmocka_unit_test_setup(test_float_rendering, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
