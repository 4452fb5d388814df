/* Process-wide metrics registry and its Prometheus text rendering (format
 * 0.0.4). One mutex guards all values: updates come from the loop and the
 * Dolt worker at most a few thousand times a second, and rendering copies a
 * snapshot under the lock and formats it outside, so a scrape never holds
 * up an update for longer than a memcpy. */
#include "metrics.h"
#include "clock.h"
#include "log.h"
#include "strbuf.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef BEADS_SCHED_VERSION
#define BEADS_SCHED_VERSION "unknown"
#endif

/* Most label values any counter has; one more slot holds "other". */
#define LABELS_MAX 13
#define OTHER_LABEL "other"
/* Most finite bucket bounds any histogram has; one more slot is +Inf. */
#define BOUNDS_MAX 11

struct counter_def {
    const char *name;
    const char *help;
    const char *label;                     /* label name */
    const char *const values[LABELS_MAX + 1]; /* NULL-terminated */
};

static const struct counter_def counter_defs[MC_COUNT] = {
    [MC_DISPATCHES] = {"beads_sched_dispatches_total",
                       "Dispatch attempts by how they ended.", "outcome",
                       {"dispatched", "refused", "unknown", "lost_race", "released", "given_back", NULL}},
    [MC_REAPS] = {"beads_sched_reaps_total",
                  "Reaper decisions about in-flight attempts, by reason.", "reason",
                  {"alive", "closed", "blocked", "reopened", "retrying", "gave_up", "stale",
                   "adopted", "lost_race", "recovered", "write_failed", "reached", "noted",
                   NULL}},
    [MC_DOLT_ERRORS] = {"beads_sched_dolt_errors_total", "Failed Dolt statements, by kind.",
                        "kind", {"connection", "conflict", "io", NULL}},
    [MC_AGENT_ERRORS] = {"beads_sched_agent_errors_total",
                         "Failed agent service requests, by kind.", "kind",
                         {"refused", "unknown", "http_4xx", "http_5xx", "malformed", "unreachable",
                          "unusable", "unauthorized", "full", NULL}},
    [MC_CYCLES] = {"beads_sched_cycles_total", "Cycles run, by kind.", "kind",
                   {"dispatch", "reap", "probe", NULL}},
};

struct gauge_def {
    const char *name;
    const char *help;
};

static const struct gauge_def gauge_defs[MG_COUNT] = {
    [MG_IN_FLIGHT] = {"beads_sched_in_flight_attempts",
                      "Dispatch attempts in the journal that are not finished yet."},
    [MG_PAUSED] = {"beads_sched_paused", "1 while dispatching is paused, else 0."},
    [MG_AGENT_FREE_SLOTS] = {"beads_sched_agent_free_slots",
                             "Free slots the agent service reported at its last health check."},
    [MG_LAST_CYCLE_SUCCESS] = {"beads_sched_last_successful_cycle_timestamp_seconds",
                               "Unix time the last dispatch cycle completed without error."},
    [MG_ACTIVE] = {"beads_sched_active",
                   "1 while this instance holds the single-active lock and dispatches, 0 on standby."},
    [MG_ROLE_SINCE] = {"beads_sched_role_since_timestamp_seconds",
                       "Unix time the current role (active or standby) began."},
    [MG_STORE_OK] = {"beads_sched_store_ok",
                     "1 while the file at STORE is the store this process opened, else 0."},
    [MG_STORE_BYTES] = {"beads_sched_store_bytes", "Size of the store file and its WAL, in bytes."},
    [MG_DOLT_UP] = {"beads_sched_dolt_up",
                    "1 when Dolt answered the last request made of it, else 0."},
    [MG_READY_BEADS] = {"beads_sched_ready_beads",
                        "Ready beads (by bd ready's rules and the scheduler's own) the last "
                        "dispatch cycle could take, up to its free slots."},
    [MG_AGENT_TOKEN_REFUSED] = {"beads_sched_agent_token_refused",
                                "1 while the agent service refuses our token (401/403): no claims."},
    [MG_AGENT_URL_WRONG] = {"beads_sched_agent_url_wrong",
                            "1 while the agent URL answers 404 on /execute: no claims."},
    [MG_AGENT_FULL_BACKOFF] = {"beads_sched_agent_full_backoff_seconds",
                               "Backoff after the agent service said it is full (409/429), 0 when none."},
};

struct histogram_def {
    const char *name;
    const char *help;
    size_t nbounds;
    const double bounds[BOUNDS_MAX]; /* ascending upper bounds, +Inf implied */
};

static const struct histogram_def histogram_defs[MH_COUNT] = {
    [MH_CYCLE_DURATION] = {"beads_sched_cycle_duration_seconds", "Duration of dispatch cycles.",
                           11, {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}},
    [MH_DISPATCH_LATENCY] = {"beads_sched_dispatch_latency_seconds",
                             "Time from a bead's last update to the agent's answer to its POST.",
                             11, {0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300}},
};

/* Every value the registry holds; copied whole for rendering. */
struct metrics_values {
    uint64_t counters[MC_COUNT][LABELS_MAX + 1]; /* [LABELS_MAX] is "other" */
    double gauges[MG_COUNT];
    uint64_t buckets[MH_COUNT][BOUNDS_MAX + 1];  /* per bucket, not cumulative; [nbounds] is +Inf */
    double sums[MH_COUNT];
    uint64_t counts[MH_COUNT];
};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_values values;     /* guarded by metrics_lock */
static int other_warned[MC_COUNT];       /* guarded by metrics_lock */
static pthread_once_t start_once = PTHREAD_ONCE_INIT;
static double start_time;                /* written once under start_once */

static void record_start_time(void)
{
    start_time = (double)clock_now_ms() / 1000.0;
}

/* Records the process start time if nothing did yet. Idempotent and
 * thread-safe; every entry point calls it, so an early call from main only
 * makes the time more accurate. */
void metrics_init(void)
{
    pthread_once(&start_once, record_start_time);
}

/* Index of label in c's value set, or LABELS_MAX ("other") when it is not
 * one of them (NULL included). */
static size_t label_index(enum metric_counter c, const char *label)
{
    if (label) {
        for (size_t i = 0; counter_defs[c].values[i]; i++)
            if (strcmp(counter_defs[c].values[i], label) == 0)
                return i;
    }
    return LABELS_MAX;
}

void metrics_count(enum metric_counter c, const char *label, uint64_t n)
{
    metrics_init();
    if ((unsigned)c >= MC_COUNT) /* defensive: not a valid counter */
        return;
    size_t i = label_index(c, label);
    int warn = 0;
    pthread_mutex_lock(&metrics_lock);
    values.counters[c][i] += n;
    if (i == LABELS_MAX && !other_warned[c]) {
        other_warned[c] = 1;
        warn = 1;
    }
    pthread_mutex_unlock(&metrics_lock);
    /* A label outside the set is a programming error; say so once per
     * counter rather than on every update. */
    if (warn)
        log_warn("metric label not in its fixed set; counted as other", "metric",
                 counter_defs[c].name, "label", label ? label : "(null)");
}

void metrics_gauge_set(enum metric_gauge g, double v)
{
    metrics_init();
    if ((unsigned)g >= MG_COUNT) /* defensive */
        return;
    pthread_mutex_lock(&metrics_lock);
    values.gauges[g] = v;
    pthread_mutex_unlock(&metrics_lock);
}

/* Non-finite observations are dropped (they would poison _sum forever);
 * negative ones, e.g. from clock skew between Dolt and this host, count as
 * 0 so _sum never decreases. */
void metrics_observe(enum metric_histogram h, double seconds)
{
    metrics_init();
    if ((unsigned)h >= MH_COUNT || !isfinite(seconds)) /* defensive */
        return;
    if (seconds < 0)
        seconds = 0;
    const struct histogram_def *d = &histogram_defs[h];
    size_t b = 0;
    while (b < d->nbounds && seconds > d->bounds[b])
        b++;
    pthread_mutex_lock(&metrics_lock);
    values.buckets[h][b]++;
    values.sums[h] += seconds;
    values.counts[h]++;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_reset(void)
{
    metrics_init();
    pthread_mutex_lock(&metrics_lock);
    memset(&values, 0, sizeof values);
    memset(other_warned, 0, sizeof other_warned);
    pthread_mutex_unlock(&metrics_lock);
}

/* ---- rendering ---- */

/* A label value with \, " and newline escaped as the exposition format
 * requires. */
static void put_label_value(struct strbuf *t, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            strbuf_puts(t, "\\\\");
        else if (*v == '"')
            strbuf_puts(t, "\\\"");
        else if (*v == '\n')
            strbuf_puts(t, "\\n");
        else
            strbuf_put(t, v, 1);
    }
}

/* HELP text escapes only \ and newline. */
static void put_help(struct strbuf *t, const char *name, const char *help, const char *type)
{
    strbuf_printf(t, "# HELP %s ", name);
    for (const char *h = help; *h; h++) {
        if (*h == '\\')
            strbuf_puts(t, "\\\\");
        else if (*h == '\n')
            strbuf_puts(t, "\\n");
        else
            strbuf_put(t, h, 1);
    }
    strbuf_printf(t, "\n# TYPE %s %s\n", name, type);
}

/* The shortest of %.15g/%.17g that reads back as v, or NaN/+Inf/-Inf as the
 * format spells them. out must hold 32 bytes. */
static const char *format_double(char *out, double v)
{
    if (isnan(v))
        return strcpy(out, "NaN");
    if (isinf(v))
        return strcpy(out, v > 0 ? "+Inf" : "-Inf");
    snprintf(out, 32, "%.15g", v);
    if (strtod(out, NULL) != v)
        snprintf(out, 32, "%.17g", v);
    return out;
}

static void render_counter(struct strbuf *t, const struct metrics_values *s, enum metric_counter c)
{
    const struct counter_def *d = &counter_defs[c];
    put_help(t, d->name, d->help, "counter");
    for (size_t i = 0; d->values[i]; i++) {
        strbuf_printf(t, "%s{%s=\"", d->name, d->label);
        put_label_value(t, d->values[i]);
        strbuf_printf(t, "\"} %" PRIu64 "\n", s->counters[c][i]);
    }
    /* "other" appears only once something was counted there: it flags a
     * bug, not a state dashboards need from the start. */
    if (s->counters[c][LABELS_MAX])
        strbuf_printf(t, "%s{%s=\"" OTHER_LABEL "\"} %" PRIu64 "\n", d->name, d->label,
                    s->counters[c][LABELS_MAX]);
}

static void render_gauge(struct strbuf *t, const char *name, const char *help, double v)
{
    char num[32];
    put_help(t, name, help, "gauge");
    strbuf_printf(t, "%s %s\n", name, format_double(num, v));
}

static void render_histogram(struct strbuf *t, const struct metrics_values *s,
                             enum metric_histogram h)
{
    const struct histogram_def *d = &histogram_defs[h];
    char num[32];
    uint64_t cumulative = 0;
    put_help(t, d->name, d->help, "histogram");
    for (size_t b = 0; b < d->nbounds; b++) {
        cumulative += s->buckets[h][b];
        strbuf_printf(t, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", d->name,
                    format_double(num, d->bounds[b]), cumulative);
    }
    cumulative += s->buckets[h][d->nbounds];
    strbuf_printf(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", d->name, cumulative);
    strbuf_printf(t, "%s_sum %s\n", d->name, format_double(num, s->sums[h]));
    strbuf_printf(t, "%s_count %" PRIu64 "\n", d->name, s->counts[h]);
}

char *metrics_render(void)
{
    metrics_init();
    struct metrics_values s;
    pthread_mutex_lock(&metrics_lock);
    s = values;
    pthread_mutex_unlock(&metrics_lock);

    struct strbuf t = STRBUF_INIT;
    for (int c = 0; c < MC_COUNT; c++)
        render_counter(&t, &s, (enum metric_counter)c);
    for (int g = 0; g < MG_COUNT; g++)
        render_gauge(&t, gauge_defs[g].name, gauge_defs[g].help, s.gauges[g]);
    for (int h = 0; h < MH_COUNT; h++)
        render_histogram(&t, &s, (enum metric_histogram)h);

    put_help(&t, "beads_sched_build_info", "Always 1; the version label names the build.",
                  "gauge");
    strbuf_puts(&t, "beads_sched_build_info{version=\"");
    put_label_value(&t, BEADS_SCHED_VERSION);
    strbuf_puts(&t, "\"} 1\n");
    render_gauge(&t, "beads_sched_start_time_seconds", "Unix time the process started.",
                 start_time);
    /* The process collector's usual name, so dashboards and alerts written
     * for any exporter's memory work here too. */
    long size = 0, pages = 0;
    FILE *statm = fopen("/proc/self/statm", "r");
    if (statm) {
        if (fscanf(statm, "%ld %ld", &size, &pages) != 2)
            pages = 0;
        fclose(statm);
    }
    render_gauge(&t, "process_resident_memory_bytes", "Resident memory size in bytes.",
                 (double)pages * (double)sysconf(_SC_PAGESIZE));

    return strbuf_take(&t);
}
