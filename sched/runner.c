#include "runner.h"

#include "clock.h"
#include "dispatch.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "owed.h"
#include "poster.h"
#include "reap.h"
#include "session.h"
#include "throttle.h"

#include <stdlib.h>
#include <string.h>

struct runner {
    struct runner_env env;
    const struct config *cfg;
    uv_timer_t timer;
    int timer_open;
    /* The parts, each with its own header. */
    struct session s;
    struct throttle throttle;
    struct owed owed;           /* worker thread */
    struct poster *poster;
    struct dispatcher *dispatcher;
    struct reaper *reaper;
    /* Loop thread. */
    enum runner_step step;
    int started;                /* the timer runs (not once) */
    int may_run;                /* the last may_run answer */
    int recovered;
    int once;
    int cycle_again;
    int recheck;                /* the owed cycle only re-checks capacity */
    int backlog;
    int64_t probe_at, reap_at;
    int64_t last_cycle_ms;
    int64_t retry_due_ms;       /* a bead's backoff ends then: cycle at the first probe after */
    int64_t probe_ms;           /* the probe interval in use */
    /* Worker thread: the probe's last value (read on the loop once the probe is done). */
    char probe_value[160];
    int probe_changed;
    int probe_is_dolt;
};

static void next(struct runner *r);

const char *runner_step_name(enum runner_step s)
{
    static const char *const names[] = {"idle", "recover", "reap", "post", "cycle", "probe"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

enum runner_step runner_choose(const struct runner_view *v, int64_t now, int64_t *wake_at)
{
    *wake_at = 0;
    if (!v->may_run)
        return STEP_IDLE;
    if (!v->recovered)
        return v->posts_out ? STEP_IDLE : STEP_RECOVER; /* no dispatch before the last run's attempts are settled */
    if (v->reap_at && now >= v->reap_at)
        return v->posts_out ? STEP_IDLE : STEP_REAP; /* no new cycle meanwhile: the POSTs end soon */
    if (v->cycle_again)
        return STEP_CYCLE;
    if (v->probe_at && now >= v->probe_at)
        return STEP_PROBE;
    if (v->reap_at)
        *wake_at = v->reap_at;
    if (v->probe_at && (!*wake_at || v->probe_at < *wake_at))
        *wake_at = v->probe_at;
    return STEP_IDLE;
}

/* ------------------------------------------------------------------ */
/* Step ends                                                           */

static void cycle_done(void *arg, const struct cycle_report *rep)
{
    struct runner *r = arg;
    r->step = STEP_IDLE;
    /* DISPATCH_INTERVAL counts from the last cycle that looked at Dolt. */
    if (rep->selected)
        r->last_cycle_ms = clock_now_ms();
    if (rep->retry_due >= 0)
        r->retry_due_ms = rep->retry_due;
    r->backlog = rep->backlog;
    if (rep->continues) {
        r->cycle_again = 1; /* more slots than one cycle takes: go on at once */
        r->recheck = 0;
    } else if (r->env.on_cycle) {
        r->env.on_cycle(r->env.arg, rep->ok);
        if (r->once)
            return;
    }
    next(r);
}

static void posted(void *arg, int rc)
{
    struct runner *r = arg;
    if (r->step == STEP_POST) {
        r->step = STEP_IDLE; /* recovery's owed POSTs */
        next(r);
        return;
    }
    /* A cycle's POSTs: the cycle waiting for them ends (or, when it has
     * already ended, the next cycle to report carries rc). */
    dispatcher_posted(r->dispatcher, rc);
    if (r->step == STEP_IDLE)
        next(r); /* a reap pass or recovery may have waited for them */
}

static void retry_due(void *arg, int64_t at)
{
    struct runner *r = arg;
    if (r->retry_due_ms == 0 || at < r->retry_due_ms)
        r->retry_due_ms = at;
}

static void reap_done(void *arg, int recovery, int rc, struct pick *owed)
{
    struct runner *r = arg;
    r->step = STEP_IDLE;
    if (recovery && rc == 0) {
        r->recovered = 1;
        if (r->once || r->last_cycle_ms == 0) {
            /* The first cycle of a start or a take-over does not wait for
             * the next probe tick. */
            r->cycle_again = 1;
            r->recheck = 0;
        }
    } else if (recovery && rc && r->once) {
        picks_free(owed);
        if (r->env.on_cycle)
            r->env.on_cycle(r->env.arg, 0);
        return;
    }
    if (owed && !session_stopping(&r->s)) {
        /* Send what recovery found owed, through the poster. */
        r->step = STEP_POST;
        poster_send(r->poster, owed);
        return;
    }
    picks_free(owed);
    next(r);
}

/* ------------------------------------------------------------------ */
/* Probe                                                               */

static int probe_work(struct dolt_conn *c, void *arg)
{
    struct runner *r = arg;
    char value[sizeof r->probe_value];
    int rc = session_refresh(&r->s, c);
    if (rc == 0)
        rc = beads_probe(c, &r->s.schema, r->cfg->assignee, value, sizeof value);
    if (rc)
        return rc;
    r->probe_changed = strcmp(value, r->probe_value) != 0;
    r->probe_is_dolt = r->s.schema.is_dolt;
    memcpy(r->probe_value, value, sizeof value);
    return 0;
}

static void probe_done(int rc, void *arg)
{
    struct runner *r = arg;
    r->step = STEP_IDLE;
    metrics_count(MC_CYCLES, "probe", 1);
    session_note_dolt(&r->s, rc);
    /* On Dolt the probe (dolt_hashof_db()) costs the same at any size: pick
     * up new work four times a second unless PROBE_INTERVAL says otherwise. */
    if (rc == 0 && !r->cfg->probe_interval_set)
        r->probe_ms = r->probe_is_dolt ? DOLT_PROBE_INTERVAL_MS : (int64_t)r->cfg->probe_interval_ms;
    int64_t now = clock_now_ms();
    int due = now - r->last_cycle_ms >= (int64_t)r->cfg->dispatch_interval_ms ||
              (r->retry_due_ms && now >= r->retry_due_ms);
    if (rc == 0 && (r->probe_changed || due)) {
        r->cycle_again = 1;
        r->recheck = 0;
    } else if (rc == 0 && (r->backlog || dispatcher_health_ok(r->dispatcher) == 0 ||
                           throttle_waiting(&r->throttle))) {
        r->cycle_again = 1; /* capacity may have freed up, or the agent come back */
        r->recheck = 1;
    }
    next(r);
}

/* ------------------------------------------------------------------ */
/* What runs next                                                      */

static void timer_fired(uv_timer_t *t)
{
    struct runner *r = t->data;
    r->may_run = !r->env.may_run || r->env.may_run(r->env.arg);
    /* A write or the lock lost Dolt's connection: noted between steps (a
     * step in flight reports what it met itself). */
    if (r->step == STEP_IDLE && atomic_exchange(&r->s.dolt_lost, 0))
        session_note_dolt(&r->s, BS_ECONN);
    /* POST results that could not be journaled yet: try again. */
    poster_retry(r->poster);
    next(r);
}

/* The first time after now on the grid at..., at + k * interval: probes
 * and reap passes keep the rhythm they started with, however long a step
 * that delayed them took. */
static int64_t on_grid(int64_t at, int64_t interval, int64_t now)
{
    if (interval <= 0)
        return now + 1;
    if (at <= now)
        at += ((now - at) / interval + 1) * interval;
    return at;
}

static void start_step(struct runner *r, enum runner_step step, int64_t now)
{
    r->step = step;
    switch (step) {
    case STEP_RECOVER:
    case STEP_REAP:
        if (step == STEP_REAP)
            r->reap_at = on_grid(r->reap_at, (int64_t)r->cfg->reap_interval_ms, now);
        if (r->env.dry_run || !r->env.store) {
            r->step = STEP_IDLE;
            r->recovered = 1;
        } else if (reaper_start(r->reaper, step == STEP_RECOVER)) {
            r->step = STEP_IDLE;
        }
        return;
    case STEP_CYCLE: {
        int recheck = r->recheck;
        r->cycle_again = 0;
        r->recheck = 0;
        if (dispatcher_start(r->dispatcher, recheck, r->once))
            r->step = STEP_IDLE; /* the throttle says not now */
        return;
    }
    case STEP_PROBE:
        r->probe_at = on_grid(r->probe_at, r->probe_ms, now);
        if (dolt_submit(r->env.dolt, probe_work, probe_done, r))
            r->step = STEP_IDLE;
        return;
    case STEP_IDLE:
    case STEP_POST:
        return;
    }
}

static void next(struct runner *r)
{
    int64_t now = 0, wake_at = 0;
    /* A step that ends at once (or is refused) lets the loop choose again;
     * a few rounds at most, then the timer. */
    if (session_stopping(&r->s))
        return;
    for (int round = 0; round < 4 && r->step == STEP_IDLE; round++) {
        now = clock_now_ms();
        struct runner_view v = {
            .may_run = r->may_run, .recovered = r->recovered, .once = r->once,
            .cycle_again = r->cycle_again, .posts_out = poster_busy(r->poster),
            .reap_at = r->started ? r->reap_at : 0,
            .probe_at = r->started ? r->probe_at : 0,
        };
        enum runner_step step = runner_choose(&v, now, &wake_at);
        if (step == STEP_IDLE)
            break;
        wake_at = 0;
        start_step(r, step, now);
    }
    if (!r->timer_open || !r->started)
        return;
    /* While a step runs, the timer still turns at the probe interval: POST
     * results waiting for the store are retried then (poster_retry). */
    int64_t wait = r->probe_ms;
    if (r->step == STEP_IDLE && wake_at)
        wait = wake_at - clock_now_ms();
    uv_timer_start(&r->timer, timer_fired, (uint64_t)(wait > 0 ? wait : 0), 0);
}

/* ------------------------------------------------------------------ */
/* Life                                                                */

int runner_init(struct runner **out, const struct runner_env *env)
{
    struct runner *r = calloc(1, sizeof *r);
    if (!r)
        return BS_ENOMEM;
    r->env = *env;
    r->cfg = env->cfg;
    session_init(&r->s, env->cfg);
    r->s.store = env->store;
    r->s.dolt = env->dolt;
    r->s.notes = env->notes;
    r->s.http = env->http;
    r->s.dry_run = env->dry_run;
    r->s.may_write = env->may_write;
    r->s.may_write_arg = env->arg;
    throttle_init(&r->throttle, env->cfg);
    r->recovered = env->dry_run; /* a dry run writes nothing, so recovers nothing */
    r->probe_ms = (int64_t)env->cfg->probe_interval_ms;
    r->may_run = 1;
    struct poster_hooks ph = {.retry_due = retry_due, .done = posted, .arg = r};
    struct dispatch_hooks dh = {.done = cycle_done, .arg = r};
    struct reap_hooks rh = {.done = reap_done, .arg = r};
    int rc = poster_init(&r->poster, &r->s, &r->throttle, &r->owed, &ph);
    if (rc == 0)
        rc = dispatcher_init(&r->dispatcher, &r->s, &r->throttle, r->poster, &dh);
    if (rc == 0)
        rc = reaper_init(&r->reaper, &r->s, &r->throttle, &r->owed, &rh);
    if (rc == 0 && uv_timer_init(env->loop, &r->timer))
        rc = BS_ERR;
    if (rc) {
        runner_free(r);
        return rc;
    }
    r->timer.data = r;
    r->timer_open = 1;
    *out = r;
    return 0;
}

void runner_start(struct runner *r)
{
    int64_t now = clock_now_ms();
    r->started = 1;
    r->probe_at = now;
    r->reap_at = now + (int64_t)r->cfg->reap_interval_ms;
    uv_timer_start(&r->timer, timer_fired, 0, 0);
}

void runner_once(struct runner *r)
{
    r->once = 1;
    poster_set_once(r->poster, 1);
    r->cycle_again = r->recovered;
    next(r);
}

void runner_recover_again(struct runner *r)
{
    if (!r->env.dry_run) {
        r->recovered = 0;
        r->last_cycle_ms = 0; /* and a full cycle right after: nothing was looked at meanwhile */
    }
    r->may_run = !r->env.may_run || r->env.may_run(r->env.arg);
    next(r);
}

void runner_dolt_lost(struct runner *r) { atomic_store(&r->s.dolt_lost, 1); }

static void on_timer_closed(uv_handle_t *h) { (void)h; }

void runner_stop(struct runner *r)
{
    atomic_store(&r->s.stopping, 1);
    if (r->timer_open) {
        uv_timer_stop(&r->timer);
        uv_close((uv_handle_t *)&r->timer, on_timer_closed);
        r->timer_open = 0;
    }
}

void runner_free(struct runner *r)
{
    if (!r)
        return;
    poster_free(r->poster);
    dispatcher_free(r->dispatcher);
    reaper_free(r->reaper);
    owed_free(&r->owed);
    throttle_free(&r->throttle);
    free(r);
}

int64_t runner_dolt_ok_at(const struct runner *r) { return atomic_load(&r->s.dolt_ok_ms); }

int runner_dolt_ready(const struct runner *r) { return atomic_load(&r->s.dolt_ok) != 0; }

int runner_agent_refusing(const struct runner *r, char *why, size_t len)
{
    return throttle_refusing(&r->throttle, why, len);
}
