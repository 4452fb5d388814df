#ifndef BS_RUNNER_H
#define BS_RUNNER_H
/* The runner owns the scheduler's timer and serialises its steps: the
 * change probe, dispatch cycles, reap passes, start-up recovery and the
 * POSTs recovery found owed. One step runs at a time (the POSTs of a capped
 * cycle may still be out during the next cycle or a probe); when one ends,
 * runner_choose says what runs next, and the loop sleeps until the next
 * deadline (the probe interval, the reap interval, a retry).
 *
 * Threads: runner_* on the loop thread, except the getters marked "any". */
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "dolt.h"
#include "http.h"
#include "store.h"

/* The probe interval on Dolt when PROBE_INTERVAL is not set. */
#define DOLT_PROBE_INTERVAL_MS 250

/* One step at a time. */
enum runner_step { STEP_IDLE, STEP_RECOVER, STEP_REAP, STEP_POST, STEP_CYCLE, STEP_PROBE };
const char *runner_step_name(enum runner_step s);

/* What the choice of the next step reads. */
struct runner_view {
    int may_run;          /* active instance, store usable, not stopping */
    int recovered;        /* start-up (or take-over) recovery done */
    int once;             /* `once`: recovery, then cycles until one reports */
    int cycle_again;      /* a cycle is owed (after recovery, a capped cycle) */
    int posts_out;        /* POSTs of an ended cycle are still out (or not journaled) */
    int64_t reap_at;      /* next reap pass due (0: never) */
    int64_t probe_at;     /* next probe due (0: never) */
};
/* The step to start now, and (when STEP_IDLE) when to look again
 * (*wake_at, 0: only when something happens). Recovery and reap passes
 * wait until no POST is out: they would meet attempts between POST and
 * answer. Pure. */
enum runner_step runner_choose(const struct runner_view *v, int64_t now, int64_t *wake_at);

struct runner_env {
    uv_loop_t *loop;
    const struct config *cfg;
    struct store *store;        /* NULL in dry-run without a store file */
    struct dolt *dolt;
    struct dolt *notes;         /* the dispatched notes' own worker (NULL: on dolt) */
    struct http_client *http;
    int dry_run;
    /* Loop: whether work may run now (active, store usable). NULL: always. */
    int (*may_run)(void *arg);
    /* Worker: before each batch of writes (lease_check). NULL: always. */
    int (*may_write)(struct dolt_conn *c, void *arg);
    /* Loop: after each round of filling free slots; ok = Dolt and the agent
     * answered and results were journaled. */
    void (*on_cycle)(void *arg, int ok);
    void *arg;
};

struct runner;
int runner_init(struct runner **out, const struct runner_env *env);
/* Starts the timer: recovery first, then probes and reap passes. */
void runner_start(struct runner *r);
/* `once`: recovery, then one round of cycles, then on_cycle. */
void runner_once(struct runner *r);
/* Recovery runs again before the next cycle, and a full cycle after it:
 * for an instance that becomes active after standing by. Runs at once. */
void runner_recover_again(struct runner *r);
/* Dolt's connection was lost elsewhere (the lock's): noted as a failed
 * answer (log, gauge, readiness) at the next tick between steps, until a
 * step of the runner gets one. */
void runner_dolt_lost(struct runner *r);
/* Stop starting work; what is in flight finishes at a journal boundary.
 * Closes the timer. */
void runner_stop(struct runner *r);
void runner_free(struct runner *r);

/* Any thread: when Dolt last answered (ms; 0 = never). */
int64_t runner_dolt_ok_at(const struct runner *r);
/* Any thread: 1 when Dolt answered the last request made of it. */
int runner_dolt_ready(const struct runner *r);
/* Any thread: whether the agent refuses our token or URL; fills why. */
int runner_agent_refusing(const struct runner *r, char *why, size_t len);
#endif
