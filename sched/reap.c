/* The reaper's pass (reap.h): loading, asking the agent about jobs, and the
 * pass's control; settle.c decides and writes per attempt. */
#include "reap.h"

#include "agent_client.h"
#include "clock.h"
#include "crash.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "notes.h"
#include "settle.h"
#include "text.h"
#include "results.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GET /jobs requests in flight at once. */
#define REAP_CONCURRENCY 32

/* What the reaper remembers about one attempt between passes. */
struct reap_memo {
    int64_t key;                /* attempt id; for an orphan, minus a hash of its bead id */
    int missed;                 /* consecutive passes without a usable answer */
    int maybe_running;          /* seen timeout/error */
};

struct reaper {
    struct session *s;
    struct throttle *throttle;
    struct owed *owed;
    struct reap_hooks hooks;
    /* Loop thread: attempts whose job gave no usable answer in the last pass
     * (with how many passes in a row), and those seen timeout/error (the
     * agent may still run). Sorted by key. */
    struct reap_memo *memo;
    size_t nmemo;
};

struct reap_pass {
    struct reaper *r;
    struct settle x;             /* recovery, loaded_ms, the POSTs owed */
    struct reap_item *items;
    size_t n, cap;
    size_t next_job, jobs_pending;
    int64_t started_ms, jobs_ms; /* phase ends, for the debug log */
};

static void reap_item_clear(struct reap_item *it)
{
    free(it->bead_id);
    free(it->status);
    free(it->assignee);
    free(it->updated_at);
    free(it->notes);
    free(it->move_note);
}

static void reap_pass_free(struct reap_pass *rp)
{
    if (!rp)
        return;
    for (size_t i = 0; i < rp->n; i++)
        reap_item_clear(&rp->items[i]);
    free(rp->items);
    picks_free(rp->x.repost);
    free(rp);
}

static struct reap_item *add_item(struct reap_pass *rp)
{
    if (rp->n == rp->cap) {
        size_t cap = rp->cap ? rp->cap * 2 : 64;
        struct reap_item *v = realloc(rp->items, cap * sizeof *v);
        if (!v)
            return NULL;
        rp->items = v;
        rp->cap = cap;
    }
    struct reap_item *it = &rp->items[rp->n++];
    memset(it, 0, sizeof *it);
    it->pass = rp;
    return it;
}

/* ------------------------------------------------------------------ */
/* Step 1: load                                                        */

static int collect_attempt(const struct store_attempt *a, void *arg)
{
    struct reap_pass *rp = arg;
    struct reap_item *it = add_item(rp);
    if (!it || !(it->bead_id = strdup(a->bead_id)))
        return BS_ENOMEM;
    it->attempt_id = a->id;
    it->attempt = a->attempt;
    it->state = a->state;
    it->dispatched_at = a->dispatched_at;
    memcpy(it->job_id, a->job_id, sizeof it->job_id);
    memcpy(it->dispatch_id, a->dispatch_id, sizeof it->dispatch_id);
    return 0;
}

static int by_bead(const void *a, const void *b)
{
    return strcmp(((const struct reap_item *)a)->bead_id, ((const struct reap_item *)b)->bead_id);
}

static struct reap_item *find_item(struct reap_pass *rp, size_t n, const char *bead_id)
{
    struct reap_item key = {.bead_id = (char *)bead_id};
    return n ? bsearch(&key, rp->items, n, sizeof key, by_bead) : NULL;
}

struct fill_ctx {
    struct reap_pass *rp;
    size_t tracked;   /* items [0, tracked) are sorted attempts */
};

static int fill_bead(const struct bead *b, void *arg)
{
    struct fill_ctx *f = arg;
    struct reap_item *it = find_item(f->rp, f->tracked, b->id);
    if (!it)
        return 0;
    it->found = 1;
    it->status = strdup(b->status);
    it->assignee = b->assignee ? strdup(b->assignee) : NULL;
    it->updated_at = strdup(b->updated_at);
    it->age_ms = b->age_s * 1000;
    it->notes = b->notes ? strdup(b->notes) : NULL;
    return (!it->status || !it->updated_at) ? BS_ENOMEM : 0;
}

static int fill_orphan_notes(const struct bead *b, void *arg)
{
    struct fill_ctx *f = arg;
    struct reap_pass *rp = f->rp;
    struct reap_item key = {.bead_id = (char *)b->id};
    struct reap_item *it = bsearch(&key, rp->items + f->tracked, rp->n - f->tracked, sizeof key, by_bead);
    if (!it)
        return 0;
    if (b->notes && !notes_last_dispatched_job(b->notes, it->job_id, sizeof it->job_id))
        it->job_id[0] = '\0';
    /* Another instance's attempt, to be adopted: its number and dispatch id. */
    it->attempt = notes_claims(b->notes, it->dispatch_id, sizeof it->dispatch_id);
    return 0;
}

static int add_orphan(const struct bead *b, void *arg)
{
    struct fill_ctx *f = arg;
    if (find_item(f->rp, f->tracked, b->id))
        return 0;
    struct reap_item *it = add_item(f->rp);
    if (!it)
        return BS_ENOMEM;
    it->found = 1;
    it->bead_id = strdup(b->id);
    it->status = strdup(b->status);
    it->assignee = b->assignee ? strdup(b->assignee) : NULL;
    it->updated_at = strdup(b->updated_at);
    it->age_ms = b->age_s * 1000;
    return (!it->bead_id || !it->status || !it->updated_at) ? BS_ENOMEM : 0;
}

static int reap_load(struct dolt_conn *c, void *arg)
{
    struct reap_pass *rp = arg;
    struct reaper *d = rp->r;
    int rc = session_refresh(d->s, c);
    if (rc)
        return rc;
    if ((rc = store_attempts_active(d->s->store, collect_attempt, rp)))
        return rc;
    if (rp->n)
        qsort(rp->items, rp->n, sizeof *rp->items, by_bead);
    struct fill_ctx f = {rp, rp->n};

    /* Notes are read only where they are evidence (who claimed, which job). */
    const char **with_notes = malloc((rp->n + 1) * sizeof *with_notes);
    const char **without = malloc((rp->n + 1) * sizeof *without);
    size_t nw = 0, nwo = 0;
    if (!with_notes || !without) {
        free(with_notes);
        free(without);
        return BS_ENOMEM;
    }
    for (size_t i = 0; i < rp->n; i++) {
        enum attempt_state st = rp->items[i].state;
        if (st == AS_DISPATCHED && !rp->x.recovery)
            without[nwo++] = rp->items[i].bead_id;
        else
            with_notes[nw++] = rp->items[i].bead_id;
    }
    rc = beads_read_many(c, with_notes, nw, 1, fill_bead, &f);
    if (rc == 0)
        rc = beads_read_many(c, without, nwo, 0, fill_bead, &f);
    free(with_notes);
    free(without);
    if (rc == 0)
        rc = beads_in_progress(c, d->s->cfg->assignee, add_orphan, &f);
    if (rc || rp->n == f.tracked)
        return rc;
    /* Orphans' notes: a "dispatched: job=" note lets the agent say whether
     * its job still runs (another instance's bead, the old CronJobs'). */
    qsort(rp->items + f.tracked, rp->n - f.tracked, sizeof *rp->items, by_bead);
    const char **ids = malloc((rp->n - f.tracked) * sizeof *ids);
    if (!ids)
        return BS_ENOMEM;
    for (size_t i = f.tracked; i < rp->n; i++)
        ids[i - f.tracked] = rp->items[i].bead_id;
    rc = beads_read_many(c, ids, rp->n - f.tracked, 1, fill_orphan_notes, &f);
    free(ids);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Step 2: jobs                                                        */

static void apply_submit(struct reap_pass *rp);
static void pass_done(struct reap_pass *rp, int rc);

static int needs_job(const struct reap_item *it, const struct config *cfg)
{
    return (!it->attempt_id || it->state == AS_DISPATCHED) && it->found && it->job_id[0] &&
           strcmp(it->status, "in_progress") == 0 && it->assignee &&
           strcmp(it->assignee, cfg->assignee) == 0;
}

static void start_jobs(struct reap_pass *rp);

static void job_done(const struct http_response *r, void *arg)
{
    struct reap_item *it = arg;
    struct reap_pass *rp = it->pass;
    struct agent_job_answer a;
    agent_read_job(r, it->job_id, &a);
    rp->jobs_pending--;
    it->job = a.job;
    if (a.job == AJ_ANSWERED) {
        it->job_status = a.record.status;
        it->job_finished_ms = a.record.finished_ms;
        memcpy(it->job_line, a.line, sizeof it->job_line);
    } else if (a.job == AJ_UNUSABLE) {
        metrics_count(MC_AGENT_ERRORS, "unusable", 1);
        log_warn("agent sent an unusable job record", "bead", it->bead_id, "job", it->job_id,
                 "error", a.why);
    } else if (a.job == AJ_UNAUTHORIZED) {
        throttle_gate_close(rp->r->throttle, GATE_TOKEN, r->status);
    }
    if (session_stopping(rp->r->s)) {
        if (rp->jobs_pending == 0)
            pass_done(rp, BS_EINVAL);
        return;
    }
    start_jobs(rp);
}

/* Keeps up to REAP_CONCURRENCY job requests in flight; when all are
 * answered, hands the pass to the worker. */
static void start_jobs(struct reap_pass *rp)
{
    struct reaper *d = rp->r;
    while (rp->jobs_pending < REAP_CONCURRENCY && rp->next_job < rp->n && !session_stopping(d->s)) {
        struct reap_item *it = &rp->items[rp->next_job++];
        if (!needs_job(it, d->s->cfg))
            continue;
        /* BeadBoard mode without the agent's URL, or no usable id: unreachable */
        if (agent_request(d->s->http, d->s->cfg, AGENT_JOB, it->job_id, NULL, job_done, it) == 0)
            rp->jobs_pending++;
        else
            it->job = AJ_UNREACHABLE;
    }
    if (rp->jobs_pending == 0 && (rp->next_job >= rp->n || session_stopping(d->s))) {
        if (session_stopping(d->s))
            pass_done(rp, BS_EINVAL);
        else
            apply_submit(rp);
    }
}

static void load_done(int rc, void *arg)
{
    struct reap_pass *rp = arg;
    rp->x.loaded_ms = clock_now_ms();
    session_note_dolt(rp->r->s, rc == BS_ECONN ? rc : 0);
    if (rc || session_stopping(rp->r->s)) {
        pass_done(rp, rc ? rc : BS_EINVAL);
        return;
    }
    start_jobs(rp);
}

static int reap_apply(struct dolt_conn *c, void *arg)
{
    struct reap_pass *rp = arg;
    struct reaper *d = rp->r;
    TEST_PAUSE("REAP_APPLY");
    int64_t now = clock_now_ms();
    if (d->s->may_write) {
        int rc = d->s->may_write(c, d->s->may_write_arg);
        if (rc)
            return rc; /* BS_ESTATE: the lock is gone, not ours to write; the pass ends here */
    }
    owed_pay(d->owed, d->s, c);
    for (size_t i = 0; i < rp->n && !session_stopping(d->s); i++) {
        struct reap_item *it = &rp->items[i];
        int rc = settle_item(&rp->x, c, it, now);
        if (rc == BS_ECONN || rc == BS_EFULL || rc == BS_ERDONLY)
            return rc; /* Dolt or the store is down: the next pass retries */
        /* Anything else is this bead's problem: logged, and the pass goes
         * on with the others (a bead the server refuses must not stop
         * every other bead's reaping). */
        if (rc < 0 && rc != BS_ESTATE) {
            log_warn("reaper could not settle an attempt", "bead", it->bead_id, "attempt",
                     LOG_INT(it->attempt), "error", bs_strerror(rc));
        }
    }
    if (!session_stopping(d->s)) {
        int rc = settle_moves(&rp->x, c, rp->items, rp->n);
        if (rc)
            return rc; /* Dolt or the store failed: the next pass re-reads and settles */
    }
    /* For `beads-sched status`: only passes that settled something write. */
    size_t settled = 0;
    for (size_t i = 0; i < rp->n; i++)
        settled += rp->items[i].reason != NULL;
    if (settled) {
        char at[24], result[64];
        snprintf(at, sizeof at, "%lld", (long long)now); /* status shows its age */
        snprintf(result, sizeof result, "settled %zu of %zu", settled, rp->n);
        if (store_setting_set(d->s->store, "last_reap_at", at, now) == 0)
            store_setting_set(d->s->store, "last_reap_result", result, now);
    }
    session_in_flight_gauge(d->s);
    owed_pay(d->owed, d->s, c); /* those recovery found missing */

    /* Owed POSTs: record that they are about to go out, as the dispatcher does. */
    if (rp->x.repost) {
        int rc = results_build_bodies(d->s, rp->x.repost);
        if (rc == 0)
            rc = results_journal(d->s, rp->x.repost, AS_CLAIMED, AS_POSTING, clock_now_ms());
        if (rc)
            return rc;
        CRASH_POINT("after_posting_commit");
    }
    return 0;
}

static void apply_done(int rc, void *arg)
{
    struct reap_pass *rp = arg;
    session_note_dolt(rp->r->s, rc == BS_ECONN ? rc : 0);
    pass_done(rp, rc);
}

/* The memo key of an item: its attempt id, or for an orphan minus a hash
 * (FNV-1a) of its bead id. */
static int64_t memo_key(const struct reap_item *it)
{
    if (it->attempt_id)
        return it->attempt_id;
    uint64_t h = text_fnv1a(TEXT_FNV1A_SEED, it->bead_id, strlen(it->bead_id));
    return -(int64_t)(h >> 2) - 1;
}

static int by_memo_key(const void *a, const void *b)
{
    int64_t x = ((const struct reap_memo *)a)->key, y = ((const struct reap_memo *)b)->key;
    return (x > y) - (x < y);
}

/* Loop thread: what earlier passes saw, into each item, before apply. */
static void memo_recall(struct reap_pass *rp)
{
    struct reaper *d = rp->r;
    for (size_t i = 0; i < rp->n; i++) {
        struct reap_item *it = &rp->items[i];
        struct reap_memo key = {.key = memo_key(it)};
        const struct reap_memo *m = d->nmemo ? bsearch(&key, d->memo, d->nmemo, sizeof key, by_memo_key) : NULL;
        int missed_now = it->job == AJ_UNREACHABLE || it->job == AJ_UNUSABLE;
        it->missed = missed_now ? (m ? m->missed : 0) + 1 : 0;
        it->seen_maybe_running = (m && m->maybe_running) ||
                                 (it->job == AJ_ANSWERED && agent_job_meaning(it->job_status) == AJM_MAYBE_RUNNING);
    }
}

/* Loop thread: remember, for the next pass, what this one saw. */
static void memo_store(struct reap_pass *rp)
{
    struct reaper *d = rp->r;
    size_t n = 0;
    for (size_t i = 0; i < rp->n; i++)
        n += rp->items[i].missed > 0 || rp->items[i].seen_maybe_running;
    struct reap_memo *v = n ? calloc(n, sizeof *v) : NULL;
    if (n && !v)
        return; /* keep the old memo: a pass later it is only less precise */
    size_t k = 0;
    for (size_t i = 0; i < rp->n; i++) {
        const struct reap_item *it = &rp->items[i];
        if (it->missed > 0 || it->seen_maybe_running)
            v[k++] = (struct reap_memo){.key = memo_key(it), .missed = it->missed,
                                        .maybe_running = it->seen_maybe_running};
    }
    if (n)
        qsort(v, n, sizeof *v, by_memo_key);
    free(d->memo);
    d->memo = v;
    d->nmemo = n;
}

static void apply_submit(struct reap_pass *rp)
{
    rp->jobs_ms = clock_now_ms();
    memo_recall(rp);
    if (dolt_submit(rp->r->s->dolt, reap_apply, apply_done, rp))
        pass_done(rp, BS_EINVAL);
}

/* ------------------------------------------------------------------ */
/* Pass control                                                        */

static void pass_done(struct reap_pass *rp, int rc)
{
    struct reaper *d = rp->r;
    size_t acted = 0, alive = 0;
    if (rp->jobs_ms)
        memo_store(rp);
    for (size_t i = 0; i < rp->n; i++) {
        struct reap_item *it = &rp->items[i];
        if (it->job == AJ_UNREACHABLE)
            metrics_count(MC_AGENT_ERRORS, "unreachable", 1);
        if (!it->reason) {
            alive += it->attempt_id != 0;
            if (it->attempt_id && it->state == AS_DISPATCHED && it->job == AJ_ANSWERED &&
                agent_job_meaning(it->job_status) == AJM_ALIVE)
                metrics_count(MC_REAPS, "alive", 1);
            continue;
        }
        acted++;
        metrics_count(MC_REAPS, it->reason, 1);
        log_info(it->attempt_id ? "reaped" : "orphan reaped", "bead", it->bead_id, "attempt",
                 it->attempt ? LOG_INT(it->attempt) : NULL, "job", it->job_id[0] ? it->job_id : NULL,
                 "dispatch", it->dispatch_id[0] ? it->dispatch_id : NULL, "reason", it->reason,
                 "detail", it->detail);
    }
    int64_t ended_ms = clock_now_ms();
    metrics_count(MC_CYCLES, "reap", 1);
    log_debug("reap pass done", "attempts", LOG_INT(rp->n), "settled", LOG_INT(acted),
              "ms", LOG_INT(ended_ms - rp->started_ms),
              "load_ms", LOG_INT(rp->x.loaded_ms - rp->started_ms),
              "jobs_ms", LOG_INT(rp->jobs_ms ? rp->jobs_ms - rp->x.loaded_ms : 0),
              "recovery", rp->x.recovery ? "true" : NULL);
    if (rc) {
        if (rc != BS_EINVAL || !session_stopping(d->s))
            log_warn(rp->x.recovery ? "recovery pass failed; retrying" : "reap pass failed; retrying",
                     "error", bs_strerror(rc));
    } else {
        if (rp->x.recovery) {
            log_info("recovery done", "in_flight", LOG_INT(alive), "settled", LOG_INT(acted));
        } else if (acted) {
            log_info("reap pass", "in_flight", LOG_INT(alive), "settled", LOG_INT(acted));
        }
    }
    struct pick *owed = rc == 0 ? rp->x.repost : NULL;
    if (owed)
        rp->x.repost = NULL;
    int recovery = rp->x.recovery;
    reap_pass_free(rp);
    d->hooks.done(d->hooks.arg, recovery, rc, owed);
}

int reaper_init(struct reaper **out, struct session *s, struct throttle *t, struct owed *owed,
                const struct reap_hooks *hooks)
{
    struct reaper *r = calloc(1, sizeof *r);
    if (!r)
        return BS_ENOMEM;
    r->s = s;
    r->throttle = t;
    r->owed = owed;
    r->hooks = *hooks;
    *out = r;
    return 0;
}

void reaper_free(struct reaper *r)
{
    if (!r)
        return;
    free(r->memo);
    free(r);
}

int reaper_start(struct reaper *r, int recovery)
{
    struct reap_pass *rp = calloc(1, sizeof *rp);
    if (!rp)
        return BS_ENOMEM;
    rp->r = r;
    rp->x.s = r->s;
    rp->x.owed = r->owed;
    rp->x.recovery = recovery;
    rp->started_ms = clock_now_ms();
    if (dolt_submit(r->s->dolt, reap_load, load_done, rp)) {
        free(rp);
        return BS_ESTATE;
    }
    return 0;
}
