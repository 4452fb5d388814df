#ifndef BS_METRICS_H
#define BS_METRICS_H
/* Process-wide metrics, rendered in the Prometheus text format by
 * metrics_render. Updates are thread-safe (the loop and the Dolt worker both
 * record) and cheap; label values come from the fixed sets below, so the
 * series count is bounded. Names carry the beads_sched_ prefix. */
#include <stddef.h>
#include <stdint.h>

enum metric_counter {
    /* beads_sched_dispatches_total{outcome=dispatched|refused|unknown|lost_race|released|given_back} */
    MC_DISPATCHES,
    /* beads_sched_reaps_total{reason=alive|closed|blocked|reopened|retrying|gave_up|stale|adopted|
     *   lost_race|recovered|reached|noted} */
    MC_REAPS,
    /* beads_sched_dolt_errors_total{kind=connection|conflict|io} */
    MC_DOLT_ERRORS,
    /* beads_sched_agent_errors_total{kind=refused|unknown|http_4xx|http_5xx|malformed|unreachable|
     *   unusable|unauthorized|full}: unusable = a job record too big or unreadable */
    MC_AGENT_ERRORS,
    /* beads_sched_cycles_total{kind=dispatch|reap|probe} */
    MC_CYCLES,
    MC_COUNT
};

enum metric_gauge {
    MG_IN_FLIGHT,          /* beads_sched_in_flight_attempts */
    MG_PAUSED,             /* beads_sched_paused (0/1) */
    MG_AGENT_FREE_SLOTS,   /* beads_sched_agent_free_slots */
    MG_LAST_CYCLE_SUCCESS, /* beads_sched_last_successful_cycle_timestamp_seconds */
    MG_ACTIVE,             /* beads_sched_active: 1 active (holds the lock), 0 standby */
    MG_ROLE_SINCE,         /* beads_sched_role_since_timestamp_seconds */
    MG_STORE_OK,           /* beads_sched_store_ok: 0 while the store file is gone or replaced */
    MG_STORE_BYTES,        /* beads_sched_store_bytes: the store file and its WAL */
    MG_DOLT_UP,            /* beads_sched_dolt_up: 1 when Dolt answered the last request */
    MG_READY_BEADS,        /* beads_sched_ready_beads: dispatchable beads the last cycle saw */
    MG_AGENT_TOKEN_REFUSED, /* beads_sched_agent_token_refused (0/1): 401/403, claims stopped */
    MG_AGENT_URL_WRONG,    /* beads_sched_agent_url_wrong (0/1): 404 on /execute, claims stopped */
    MG_AGENT_FULL_BACKOFF, /* beads_sched_agent_full_backoff_seconds: 409/429 backoff, 0 = none */
    MG_COUNT
};

enum metric_histogram {
    MH_CYCLE_DURATION,     /* beads_sched_cycle_duration_seconds */
    MH_DISPATCH_LATENCY,   /* beads_sched_dispatch_latency_seconds: bead updated_at -> POST answered */
    MH_COUNT
};

/* Records the process start time (beads_sched_start_time_seconds) if
 * nothing did yet. Optional: the first call of any function below does it
 * too; calling it early in main makes the time exact. */
void metrics_init(void);

/* Adds n to a counter series; label must be one of the counter's listed
 * values (anything else, NULL included, is counted under "other", logged
 * once per counter). */
void metrics_count(enum metric_counter c, const char *label, uint64_t n);
void metrics_gauge_set(enum metric_gauge g, double v);
/* Non-finite observations are dropped; negative ones count as 0. */
void metrics_observe(enum metric_histogram h, double seconds);

/* The whole registry as Prometheus text (HELP, TYPE, series), malloc'd (the
 * caller frees it); NULL when out of memory. */
char *metrics_render(void);
/* Resets everything to zero (tests only). */
void metrics_reset(void);
#endif
