#include "daemon.h"

#include "admin.h"
#include "clock.h"
#include "runner.h"
#include "dolt.h"
#include "errors.h"
#include "http.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "retention.h"
#include "store.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

struct daemon {
    uv_loop_t loop;
    const struct config *cfg;
    struct daemon_opts opts;
    struct store *store;
    struct http_client *http;
    struct dolt *dolt;
    struct dolt *notes;       /* the dispatched notes' worker (NULL: a dry run) */
    struct runner *runner;
    struct lease *lease;      /* NULL: SINGLE_ACTIVE off, or a dry run */
    int role_decided;         /* `once`: the lock's first answer came */
    uv_signal_t sigterm, sigint;
    uv_signal_t sighup, sigusr1, sigusr2, sigalrm; /* logged, never fatal */
    uv_timer_t heartbeat;     /* proves to /healthz that the loop turns */
    uv_timer_t prune_timer;   /* retention, off the hot path */
    uv_timer_t watchdog;      /* bounds an orderly stop */
    int prune_in_flight;
    int prune_deleted;
    _Atomic int64_t beat_ms;
    struct admin *admin;
    _Atomic int stopping;     /* read by the admin thread */
    _Atomic int store_lost;   /* the store file is not the one opened: no work */
    char store_lost_why[384]; /* written before store_lost is set, on the loop */
    int exit_status;
};

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void on_lease_stopped(void *arg)
{
    struct daemon *d = arg;
    d->lease = NULL;
}

/* The notes worker has stopped (after the Dolt worker, whose last results
 * may still have handed it notes): only now may the lease go, whose check
 * both workers call before every batch of writes (may_write). */
static void on_notes_stopped(void *arg)
{
    struct daemon *d = arg;
    d->notes = NULL;
    if (d->lease)
        lease_stop(d->lease, on_lease_stopped, d);
}

/* The Dolt worker has stopped: then the notes worker, then the lease. */
static void on_dolt_stopped(void *arg)
{
    struct daemon *d = arg;
    d->dolt = NULL;
    if (d->notes)
        dolt_stop(d->notes, on_notes_stopped, d);
    else
        on_notes_stopped(d);
}

static void on_http_closed(void *arg)
{
    struct daemon *d = arg;
    d->http = NULL;
}

/* Starts an orderly stop: no new work; HTTP requests in flight are
 * cancelled (their attempts stay in posting, which recovery reconciles),
 * queued journal writes finish on the worker, then every handle closes. */
static void daemon_stop(struct daemon *d)
{
    if (d->stopping)
        return;
    d->stopping = 1;
    if (d->runner)
        runner_stop(d->runner);
    uv_timer_stop(&d->heartbeat);
    uv_close((uv_handle_t *)&d->heartbeat, on_handle_closed);
    uv_timer_stop(&d->prune_timer);
    uv_close((uv_handle_t *)&d->prune_timer, on_handle_closed);
    uv_close((uv_handle_t *)&d->sigterm, on_handle_closed);
    uv_close((uv_handle_t *)&d->sigint, on_handle_closed);
    uv_close((uv_handle_t *)&d->sighup, on_handle_closed);
    uv_close((uv_handle_t *)&d->sigusr1, on_handle_closed);
    uv_close((uv_handle_t *)&d->sigusr2, on_handle_closed);
    uv_close((uv_handle_t *)&d->sigalrm, on_handle_closed);
    if (d->http)
        http_client_close(d->http, on_http_closed, d);
    if (d->dolt)
        dolt_stop(d->dolt, on_dolt_stopped, d); /* then the notes worker, then the lease */
    else
        on_dolt_stopped(d);
}

/* An orderly stop waits for the step in flight; a Dolt call stuck on a dead
 * server could hold it up to the read timeout. The stop must end within
 * 10 s (the pod's grace period is sized on it), so after SHUTDOWN_LIMIT_MS
 * leave anyway: every journal state is one a restart recovers from. */
#define SHUTDOWN_LIMIT_MS 9000

static void watchdog_fired(uv_timer_t *t)
{
    (void)t;
    log_warn("stop is taking too long; exiting now, the journal is consistent",
             "limit_ms", LOG_INT(SHUTDOWN_LIMIT_MS));
    _exit(0);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;
    const char *name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
    if (d->stopping) {
        /* Second signal: leave now. The journal makes this as safe as kill -9. */
        log_warn("second signal, exiting at once", "signal", name);
        _exit(1);
    }
    log_info("stopping", "signal", name);
    daemon_stop(d);
    uv_timer_start(&d->watchdog, watchdog_fired, SHUTDOWN_LIMIT_MS, 0);
    uv_unref((uv_handle_t *)&d->watchdog); /* never what keeps the loop alive */
}

/* Signals an operator may send by habit or by mistake. Their default
 * action would end the process without a word (SIGHUP, SIGUSR1/2, SIGALRM
 * all terminate); here each leaves a log line and changes nothing. */
static void on_other_signal(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;
    switch (signum) {
    case SIGHUP:
        log_info("SIGHUP: nothing to reload, configuration is read at start; restart to change it",
                 "signal", "SIGHUP");
        break;
    case SIGUSR1:
        log_info("status", "signal", "SIGUSR1", "store", d->store_lost ? "lost" : "ok", "dolt",
                 d->runner && runner_dolt_ready(d->runner) ? "ok" : "unreachable",
                 "paused", d->cfg->paused ? "true" : "false");
        break;
    default:
        log_info("signal ignored", "signal", signum == SIGUSR2 ? "SIGUSR2" : "SIGALRM");
        break;
    }
}

/* Whether the store may take more work: the file at its path must still be
 * the one open. Logs the change either way, once. */
static int store_usable(struct daemon *d)
{
    if (!d->store)
        return 1; /* a dry run without a store journals nothing */
    char why[sizeof d->store_lost_why];
    int bad = store_file_check(d->store, why, sizeof why) != 0;
    metrics_gauge_set(MG_STORE_OK, !bad);
    metrics_gauge_set(MG_STORE_BYTES, (double)store_file_bytes(d->cfg->store));
    if (bad && !d->store_lost) {
        memcpy(d->store_lost_why, why, sizeof why);
        d->store_lost = 1;
        log_error("store file gone or replaced; dispatching and reaping stopped until it is "
                  "back (or restart to open the new file)", "error", why);
    } else if (!bad && d->store_lost) {
        d->store_lost = 0;
        log_info("store file back; work resumes", "store", d->cfg->store);
    }
    return !bad;
}

/* Whether the runner may start work: not stopping, the store usable, the
 * active instance. */
static int may_run(void *arg)
{
    struct daemon *d = arg;
    return !d->stopping && store_usable(d) && lease_active(d->lease);
}

#define HEARTBEAT_MS 1000

static void heartbeat_tick(uv_timer_t *t)
{
    struct daemon *d = t->data;
    d->beat_ms = clock_now_ms();
}

/* /healthz, on the admin thread: the loop turned within a few beats. */
static int admin_healthy(void *arg, char *why, size_t len)
{
    struct daemon *d = arg;
    int64_t age = clock_now_ms() - d->beat_ms;
    if (d->stopping) {
        snprintf(why, len, "stopping");
        return 0;
    }
    if (age > 5 * HEARTBEAT_MS) {
        snprintf(why, len, "event loop stalled for %lld ms", (long long)age);
        return 0;
    }
    return 1;
}

/* /readyz, on the admin thread: the store open and still the file at its
 * path, and Dolt answered the last request made of it, within the last
 * three probe intervals (at least 3 s). An active instance asks through its
 * dispatcher; a standby sends Dolt nothing but the lock's upkeep, so that
 * is what counts for it. Ready in either role: a standby that is not ready
 * would stall a StatefulSet rollout. And the agent must take our token. */
static int admin_ready(void *arg, char *why, size_t len)
{
    struct daemon *d = arg;
    int64_t window = 3 * (int64_t)d->cfg->probe_interval_ms;
    if (window < 3000)
        window = 3000;
    if (d->stopping) {
        snprintf(why, len, "stopping"); /* and the lease may be going */
        return 0;
    }
    if (!d->store) {
        snprintf(why, len, "store not open");
        return 0;
    }
    if (d->store_lost) {
        snprintf(why, len, "%s", d->store_lost_why);
        return 0;
    }
    int standby = d->lease && !lease_active(d->lease);
    int64_t ok_at = standby ? lease_dolt_ok_ms(d->lease)
                            : d->runner ? runner_dolt_ok_at(d->runner) : 0;
    int answered = standby ? lease_dolt_ok(d->lease)
                           : d->runner && runner_dolt_ready(d->runner);
    if (!standby && ok_at == 0 && d->lease && lease_dolt_ok(d->lease)) {
        /* Just became active: the lock's connection speaks for Dolt until
         * the dispatcher's first probe. */
        ok_at = lease_dolt_ok_ms(d->lease);
        answered = 1;
    }
    if (ok_at == 0) {
        snprintf(why, len, "dolt not reached yet");
        return 0;
    }
    if (!answered) {
        snprintf(why, len, "dolt did not answer the last request");
        return 0;
    }
    if (clock_now_ms() - ok_at > window) {
        snprintf(why, len, "dolt not reached for %lld ms", (long long)(clock_now_ms() - ok_at));
        return 0;
    }
    if (d->runner && runner_agent_refusing(d->runner, why, len))
        return 0;
    return 1;
}

/* Retention: every PRUNE_EVERY_MS a batch of at most PRUNE_BATCH old
 * attempts goes, on the worker between cycles; while batches come back full
 * the next follows at once. Nothing due means nothing is written. */
#define PRUNE_EVERY_MS (10 * 60 * 1000)
#define PRUNE_BATCH 200

static int prune_work(struct dolt_conn *c, void *arg)
{
    (void)c;
    struct daemon *d = arg;
    d->prune_deleted = 0;
    return store_prune(d->store, clock_now_ms(), (int64_t)d->cfg->retain_ms,
                       (int64_t)d->cfg->retain_failed_ms, PRUNE_BATCH, &d->prune_deleted);
}

static void prune_tick(uv_timer_t *t);

static void prune_done(int rc, void *arg)
{
    struct daemon *d = arg;
    d->prune_in_flight = 0;
    if (rc) {
        log_warn("retention: pruning failed; next try later", "error", bs_strerror(rc));
        return;
    }
    if (d->prune_deleted > 0) {
        log_info("retention: pruned old attempts", "deleted", LOG_INT(d->prune_deleted));
        if (d->prune_deleted >= PRUNE_BATCH && !d->stopping)
            uv_timer_start(&d->prune_timer, prune_tick, 0, PRUNE_EVERY_MS);
    }
}

static void prune_tick(uv_timer_t *t)
{
    struct daemon *d = t->data;
    if (d->stopping || d->prune_in_flight)
        return;
    if (dolt_submit(d->dolt, prune_work, prune_done, d) == 0)
        d->prune_in_flight = 1;
}

static void on_cycle(void *arg, int ok)
{
    struct daemon *d = arg;
    if (d->opts.once) {
        /* `once` says whether it could do its work: a cycle that failed
         * (Dolt or the agent unreachable, results not journaled) or an
         * agent refusing our token or URL (nothing could be claimed at all)
         * is exit status 1. A bead the service refused or found full is
         * work done: its outcome is in the journal and on the bead. */
        char why[160] = "";
        int refusing = d->runner && runner_agent_refusing(d->runner, why, sizeof why);
        if (ok && refusing)
            log_error("once: nothing could be handed to the agent", "reason", why);
        d->exit_status = ok && !refusing ? 0 : 1;
        daemon_stop(d);
    }
}

/* The role is kept in the store's settings for `beads-sched status`,
 * written on the Dolt worker (the store's only writer thread) and only when
 * it changes, so an idle instance stays write-free. */
struct role_note {
    struct daemon *d;
    int active;
    int64_t since_ms;
};

static int role_note_work(struct dolt_conn *c, void *arg)
{
    (void)c;
    struct role_note *n = arg;
    char since[24];
    snprintf(since, sizeof since, "%lld", (long long)n->since_ms);
    int rc = store_setting_set(n->d->store, "role", n->active ? "active" : "standby", n->since_ms);
    return rc ? rc : store_setting_set(n->d->store, "role_since", since, n->since_ms);
}

static void role_note_done(int rc, void *arg)
{
    struct role_note *n = arg;
    if (rc)
        log_warn("could not record the role in the store", "error", bs_strerror(rc));
    free(n);
}

/* The lock's answer changed. Active: recovery runs before the first cycle
 * (another instance may have moved beads while this one stood by).
 * Standby: the lock check stops writes already; ticks stop here. */
static void on_role(void *arg, int active)
{
    struct daemon *d = arg;
    metrics_gauge_set(MG_ACTIVE, active);
    metrics_gauge_set(MG_ROLE_SINCE, (double)lease_since_ms(d->lease) / 1000.0);
    if (d->opts.once) {
        if (d->role_decided++)
            return;
        if (active) {
            runner_once(d->runner);
        } else {
            log_error(lease_dolt_ok(d->lease) ? "another beads-sched instance holds the lock; "
                                                "once does nothing"
                                              : "dolt unreachable; once does nothing");
            d->exit_status = 1;
            daemon_stop(d);
        }
        return;
    }
    if (active) {
        /* Recovery and a first cycle now, not at the next probe tick. */
        if (!d->stopping)
            runner_recover_again(d->runner);
    } else if (!lease_dolt_ok(d->lease)) {
        runner_dolt_lost(d->runner); /* the lock's connection failed: Dolt is unreachable */
    }
    struct role_note *n = d->store && d->dolt && !d->stopping ? malloc(sizeof *n) : NULL;
    if (!n)
        return;
    *n = (struct role_note){d, active, lease_since_ms(d->lease)};
    if (dolt_submit(d->dolt, role_note_work, role_note_done, n) != 0)
        free(n);
}

/* Before each batch of writes, on the Dolt worker: still the lock holder? */
static int may_write(struct dolt_conn *c, void *arg)
{
    struct daemon *d = arg;
    return lease_check(d->lease, c);
}

/* Opens the store as the mode needs: the writer's lock for real work; for a
 * dry run an existing store read-only (or none at all). */
static int open_store(struct daemon *d)
{
    char err[512];
    int rc;
    if (d->opts.dry_run) {
        if (access(d->cfg->store, F_OK) != 0)
            return 0;
        rc = store_open(&d->store, d->cfg->store, STORE_OPEN_READ, err, sizeof err);
    } else {
        rc = store_open(&d->store, d->cfg->store, STORE_OPEN_DAEMON, err, sizeof err);
    }
    if (rc)
        log_error("cannot open store", "store", d->cfg->store, "error", err);
    return rc;
}

/* The loop's own handles: timers and signals. */
static void init_handles(struct daemon *d)
{
    d->heartbeat.data = d->prune_timer.data = d;
    d->sigterm.data = d->sigint.data = d;
    d->sighup.data = d->sigusr1.data = d->sigusr2.data = d->sigalrm.data = d;
    uv_timer_init(&d->loop, &d->heartbeat);
    uv_timer_init(&d->loop, &d->prune_timer);
    uv_timer_init(&d->loop, &d->watchdog);
    d->beat_ms = clock_now_ms();
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_t *others[] = {&d->sighup, &d->sigusr1, &d->sigusr2, &d->sigalrm};
    const int other_signums[] = {SIGHUP, SIGUSR1, SIGUSR2, SIGALRM};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        uv_signal_init(&d->loop, others[i]);
        uv_signal_start(others[i], on_other_signal, other_signums[i]);
        uv_unref((uv_handle_t *)others[i]); /* never what keeps the loop alive */
    }
}

/* The clients, the scheduler, the lock and the admin endpoint. Non-zero
 * when one could not start (logged). */
static int start_parts(struct daemon *d)
{
    const struct config *cfg = d->cfg;
    struct dolt_options dopts;
    int rc;
    config_dolt_options(cfg, &dopts);
    /* The dispatched notes have a connection of their own: a batch of them
     * is written while the next claims are (a dry run writes nothing). */
    if ((rc = http_client_init(&d->http, &d->loop)) || (rc = dolt_start(&d->dolt, &d->loop, &dopts)) ||
        (!d->opts.dry_run && (rc = dolt_start(&d->notes, &d->loop, &dopts)))) {
        log_error("cannot start clients", "error", bs_strerror(rc));
        return 1;
    }
    struct runner_env env = {
        .loop = &d->loop, .cfg = cfg, .store = d->store, .dolt = d->dolt, .notes = d->notes, .http = d->http,
        .dry_run = d->opts.dry_run, .may_run = may_run, .may_write = may_write,
        .on_cycle = on_cycle, .arg = d,
    };
    if ((rc = runner_init(&d->runner, &env))) {
        log_error("cannot start the scheduler", "error", bs_strerror(rc));
        return 1;
    }
    if (cfg->single_active && !d->opts.dry_run) {
        char name[LEASE_NAME_MAX + 1];
        lease_name(cfg->dolt.database, cfg->assignee, name, sizeof name);
        if ((rc = lease_start(&d->lease, &d->loop, &dopts, name, cfg->probe_interval_ms, on_role, d))) {
            log_error("cannot start the single-active lock", "error", bs_strerror(rc));
            return 1;
        }
    }
    if (cfg->listen_host && !d->opts.once && !d->opts.dry_run) {
        struct admin_callbacks cb = {.healthy = admin_healthy, .ready = admin_ready, .arg = d};
        char err[256];
        if (admin_start(&d->admin, cfg->listen_host, cfg->listen_port, &cb, err, sizeof err)) {
            log_error("cannot start the admin endpoint", "listen", cfg->listen, "error", err);
            return 1;
        }
    }
    return 0;
}

/* Memory a batch frees stays with the process, up to this much at the top
 * of each heap, instead of going back to the kernel only to be faulted in
 * again by the next batch (measured: about a third of the daemon's CPU for
 * batches of ten). A big cycle still gives its memory back (malloc_trim in
 * dispatch.c). */
#define HEAP_KEEP_BYTES (4 * 1024 * 1024)

int daemon_run(const struct config *cfg, const struct daemon_opts *opts)
{
    mallopt(M_TRIM_THRESHOLD, HEAP_KEEP_BYTES);
    struct daemon *d = calloc(1, sizeof *d);
    if (!d) {
        log_error("out of memory");
        return 1;
    }
    d->cfg = cfg;
    d->opts = *opts;
    if (open_store(d) || uv_loop_init(&d->loop)) {
        store_close(d->store);
        free(d);
        return 1;
    }
    init_handles(d);
    int failed = start_parts(d);
    if (failed) {
        daemon_stop(d);
    } else if (opts->once) {
        if (!d->lease)
            runner_once(d->runner); /* else on the lock's first answer */
    } else {
        /* The first probe tick runs start-up recovery; dispatching starts
         * once it has settled every attempt the last run left. */
        runner_start(d->runner);
        uv_timer_start(&d->heartbeat, heartbeat_tick, HEARTBEAT_MS, HEARTBEAT_MS);
        uv_timer_start(&d->prune_timer, prune_tick, 60 * 1000, PRUNE_EVERY_MS);
        metrics_gauge_set(MG_PAUSED, cfg->paused);
        metrics_gauge_set(MG_STORE_OK, 1);
        metrics_gauge_set(MG_ACTIVE, d->lease ? 0 : 1);
        log_info("started", "version", BEADS_SCHED_VERSION, "store", cfg->store, "schema",
                 d->store ? LOG_INT(store_schema_version(d->store)) : NULL, "dolt_host",
                 cfg->dolt.host, "dolt_db", cfg->dolt.database, "agent", cfg->agent_url,
                 "dry_run", opts->dry_run ? "true" : NULL);
    }

    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&d->watchdog, on_handle_closed);
    uv_run(&d->loop, UV_RUN_DEFAULT); /* let the close complete */
    admin_stop(d->admin);
    int closed = uv_loop_close(&d->loop);
    if (closed)
        log_error("event loop did not close cleanly", "error", uv_strerror(closed));
    runner_free(d->runner);
    store_close(d->store);
    int status = (closed || failed) ? 1 : d->exit_status;
    free(d);
    if (!opts->once)
        log_info("stopped");
    return status;
}
