#include "dispatch.h"

#include "agent.h"
#include "beads.h"
#include "clock.h"
#include "crash.h"
#include "errors.h"
#include "log.h"
#include "prompt.h"
#include "text.h"
#include "sched_internal.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void owed_free(struct owed_note *n)
{
    while (n) {
        struct owed_note *next = n->next;
        free(n->bead_id);
        free(n->note);
        free(n);
        n = next;
    }
}

void pick_free(struct pick *p)
{
    free(p->bead_id);
    free(p->cand_updated_at);
    free(p->body);
    bead_free(&p->bead);
    free(p);
}

void picks_free(struct pick *p)
{
    while (p) {
        struct pick *n = p->next;
        pick_free(p);
        p = n;
    }
}

int dispatcher_init(struct dispatcher **out, const struct dispatch_env *env)
{
    struct dispatcher *d = calloc(1, sizeof *d);
    if (!d)
        return BS_ENOMEM;
    d->env = *env;
    d->cfg = env->cfg;
    d->dolt_ok = -1;
    d->health_ok = -1;
    d->recovered = env->dry_run; /* a dry run writes nothing, so recovers nothing */
    snprintf(d->author, sizeof d->author, "%s <%s>", d->cfg->actor, d->cfg->actor_email);
    d->writer.actor = d->cfg->actor;
    d->writer.author = d->author;
    *out = d;
    return 0;
}

void dispatcher_stop(struct dispatcher *d) { d->stopping = 1; }

void dispatcher_free(struct dispatcher *d)
{
    if (!d)
        return;
    picks_free(d->results);
    owed_free(d->owed_notes);
    owed_free(d->deferred);
    free(d->memo);
    free(d);
}

int64_t dispatcher_dolt_ok_at(const struct dispatcher *d) { return d->dolt_ok_ms; }

int dispatcher_dolt_ready(const struct dispatcher *d) { return d->dolt_ok; }
int dispatcher_agent_refusing(const struct dispatcher *d, char *why, size_t len)
{
    switch ((enum agent_gate)d->gate_reason) {
    case GATE_TOKEN:
        snprintf(why, len, "agent refuses our token (HTTP 401/403): check AGENT_TOKEN");
        return 1;
    case GATE_URL:
        snprintf(why, len, "agent URL answers 404 on /execute: check AGENT_URL");
        return 1;
    default:
        return 0;
    }
}

void count_dolt_error(int rc)
{
    if (rc == BS_ECONN)
        metrics_count(MC_DOLT_ERRORS, "connection", 1);
    else if (rc == BS_ECONFLICT)
        metrics_count(MC_DOLT_ERRORS, "conflict", 1);
    else if (rc == BS_EIO)
        metrics_count(MC_DOLT_ERRORS, "io", 1);
}

void bead_write_failed(struct dispatcher *d, struct dolt_conn *c, const char *bead_id,
                       int64_t attempt_id, const char *what, int rc)
{
    char detail[STORE_DETAIL_MAX];
    snprintf(detail, sizeof detail, "%s not written to the bead: %s%s%.300s", what, bs_strerror(rc),
             c ? ": " : "", c ? dolt_conn_error(c) : "");
    count_dolt_error(rc);
    log_warn("bead write failed; only this bead is affected", "bead", bead_id, "write", what,
             "error", bs_strerror(rc), "detail", c ? dolt_conn_error(c) : NULL);
    if (d->env.store && !d->env.dry_run)
        store_event_add(d->env.store, bead_id, attempt_id, "write_failed", NULL, detail, clock_now_ms());
}

/* Whether this session's writes end with a Dolt commit. Worker thread. */
void refresh_writer(struct dispatcher *d)
{
    d->writer.dolt_commit = d->cfg->dolt_commit == DOLT_COMMIT_ON ||
                            (d->cfg->dolt_commit == DOLT_COMMIT_AUTO && d->schema.is_dolt);
}

void note_dolt_state(struct dispatcher *d, int rc)
{
    int ok = rc == 0;
    metrics_gauge_set(MG_DOLT_UP, ok);
    if (ok)
        d->dolt_ok_ms = clock_now_ms();
    else
        count_dolt_error(rc);
    if (ok == d->dolt_ok)
        return;
    if (ok)
        log_info("dolt reachable");
    else
        log_warn("dolt unreachable; dispatch waits", "error", bs_strerror(rc));
    d->dolt_ok = ok;
}

static void flush_results(struct dispatcher *d);

/* ------------------------------------------------------------------ */
/* Probe                                                               */

static int probe_work(struct dolt_conn *c, void *arg)
{
    struct probe *p = arg;
    struct dispatcher *d = p->d;
    char value[sizeof d->probe_value];
    int rc = beads_schema_detect(c, &d->schema);
    if (rc == 0)
        rc = beads_probe(c, &d->schema, d->cfg->assignee, value, sizeof value);
    if (rc)
        return rc;
    p->changed = strcmp(value, d->probe_value) != 0;
    memcpy(d->probe_value, value, sizeof value);
    return 0;
}

static void probe_done(int rc, void *arg)
{
    struct probe *p = arg;
    struct dispatcher *d = p->d;
    d->probe_in_flight = 0;
    metrics_count(MC_CYCLES, "probe", 1);
    note_dolt_state(d, rc);
    int64_t now = clock_now_ms();
    int due = now - d->last_cycle_ms >= (int64_t)d->cfg->dispatch_interval_ms ||
              (d->retry_due_ms && now >= d->retry_due_ms);
    if (rc == 0 && (p->changed || due))
        dispatcher_cycle(d);
    else if (rc == 0 && (d->backlog || d->health_ok == 0 || d->gate == GATE_TOKEN || d->gate == GATE_URL ||
                         d->full_until_ms))
        start_cycle(d, 1); /* capacity may have freed up, or the agent come back */
    free(p);
}

void dispatcher_tick(struct dispatcher *d)
{
    /* POST results that could not be journaled yet: try again. */
    if (d->results && !d->flush_in_flight && !d->stopping && clock_now_ms() >= d->results_retry_at)
        flush_results(d);
    if (d->stopping || d->probe_in_flight || d->cycle_running || d->reap_running)
        return;
    if (!d->recovered) {
        /* No dispatch before every attempt left by the last run is settled. */
        reaper_start(d, 1);
        return;
    }
    struct probe *p = calloc(1, sizeof *p);
    if (!p)
        return;
    p->d = d;
    if (dolt_submit(d->env.dolt, probe_work, probe_done, p)) {
        free(p);
        return;
    }
    d->probe_in_flight = 1;
}

/* ------------------------------------------------------------------ */
/* Cycle: health, then select and claim on the worker                  */


/* Is dispatching paused (config or the store's flag)? Worker thread. */
static int paused_now(struct dispatcher *d)
{
    char v[16];
    if (d->cfg->paused)
        return 1;
    if (d->env.store && store_setting_get(d->env.store, "paused", v, sizeof v) == 0)
        return strcmp(v, "1") == 0;
    return 0;
}

int dispatch_bead_waits(struct store *s, const struct config *cfg, const char *bead_id,
                        int64_t now, int64_t *retry_at)
{
    if (!s)
        return 0;
    struct store_bead b;
    if (store_bead_get(s, bead_id, &b))
        return 1; /* can't tell: don't risk a duplicate */
    if (b.next_retry_at > now) {
        if (retry_at)
            *retry_at = b.next_retry_at;
        return 1;
    }
    int used = 0;
    if (store_bead_attempts_used(s, bead_id, &used) || used >= cfg->max_attempts)
        return 1;
    struct store_attempt a;
    int rc = store_attempt_latest(s, bead_id, &a);
    if (rc == 0 && !attempt_state_terminal(a.state))
        return 1;
    return rc != 0 && rc != BS_ENOTFOUND;
}

/* dispatch_bead_waits for a candidate of this cycle; a backoff's end is
 * folded into cy->next_retry_at so the dispatcher comes back for it. */
static int candidate_waits(struct dispatcher *d, struct cycle *cy, const char *bead_id, int64_t now)
{
    int64_t retry_at = 0;
    int waits = dispatch_bead_waits(d->env.store, d->cfg, bead_id, now, &retry_at);
    if (retry_at && (cy->next_retry_at == 0 || retry_at < cy->next_retry_at))
        cy->next_retry_at = retry_at;
    return waits;
}

/* Notes once on each open, agent-assigned bead without acceptance criteria
 * that it is skipped and why; again only after the bead changes. */
static void note_unready(struct dispatcher *d, struct dolt_conn *c, struct cycle *cy, int64_t now)
{
    char now_dt[32];
    /* Page through all of them: the ones already noted stay in the list (a
     * person has not added criteria yet), so a fixed first page could hide
     * newer ones for ever. */
    for (size_t offset = 0; offset < CANDIDATE_SCAN_MAX && !d->stopping;) {
        struct candidate *v = NULL;
        size_t n = 0;
        if (beads_candidates(c, &d->schema, cy->ready, d->cfg->assignee, 0, offset, CANDIDATE_PAGE, &v, &n))
            return;
        if (d->env.dry_run) {
            /* Keep them for the dry-run printout (one page is plenty). */
            if (offset == 0) {
                cy->unready = v;
                cy->nunready = n;
            } else {
                candidates_free(v, n);
            }
            return;
        }
        for (size_t i = 0; i < n && !d->stopping; i++) {
            struct store_bead sb;
            if (store_bead_get(d->env.store, v[i].id, &sb) || strcmp(sb.skip_noted_at, v[i].updated_at) == 0)
                continue;
            char note[256];
            snprintf(note, sizeof note,
                     "auto-dispatcher: skipped, no acceptance criteria. Add them (bd update %.100s "
                     "--acceptance \"...\") and the bead will be dispatched.", v[i].id);
            struct bead_move m = {
                .id = v[i].id, .assignee = d->cfg->assignee, .from = "open", .to = "open",
                .expect_updated_at = v[i].updated_at, .note = note, .event_type = "updated",
                .verb = "note", .wrote_updated_at = now_dt,
            };
            int mrc = beads_move(c, &d->schema, &d->writer, &m);
            if (mrc) {
                if (mrc != BS_ESTATE && mrc != BS_ECONFLICT)
                    bead_write_failed(d, c, v[i].id, 0, "skip note", mrc);
                continue; /* changed meanwhile or Dolt trouble: next cycle */
            }
            if (store_bead_set_skip_noted(d->env.store, v[i].id, now_dt) == 0)
                store_event_add(d->env.store, v[i].id, 0, "skipped_no_acceptance", NULL,
                                "noted on the bead: no acceptance criteria", now);
            log_info("bead skipped: no acceptance criteria (noted)", "bead", v[i].id);
        }
        candidates_free(v, n);
        if (n < CANDIDATE_PAGE)
            break;
        offset += n;
    }
}

/* Chooses up to cy->want beads to dispatch, in eligibility order. */
static int choose(struct dispatcher *d, struct dolt_conn *c, struct cycle *cy, int64_t now)
{
    struct pick **tail = &cy->picks;
    long chosen = 0;
    for (size_t offset = 0; chosen < cy->want && offset < CANDIDATE_SCAN_MAX;) {
        struct candidate *v = NULL;
        size_t n = 0;
        int rc = beads_candidates(c, &d->schema, cy->ready, d->cfg->assignee, 1, offset, CANDIDATE_PAGE, &v, &n);
        if (rc)
            return rc;
        for (size_t i = 0; i < n && chosen < cy->want; i++) {
            if (candidate_waits(d, cy, v[i].id, now))
                continue;
            struct pick *p = calloc(1, sizeof *p);
            if (!p) {
                candidates_free(v, n);
                return BS_ENOMEM;
            }
            p->d = d;
            p->bead_id = v[i].id;
            p->cand_updated_at = v[i].updated_at;
            p->priority = v[i].priority;
            v[i].id = v[i].updated_at = NULL;
            *tail = p;
            tail = &p->next;
            chosen++;
            cy->chosen = chosen;
        }
        candidates_free(v, n);
        if (n < CANDIDATE_PAGE)
            break;
        offset += n;
    }
    /* What the cycle found ready, up to what it looked for: with free slots
     * and ready beads, a dispatch follows; the alert on "ready but nothing
     * dispatched" reads this. */
    metrics_gauge_set(MG_READY_BEADS, (double)chosen);
    return 0;
}

/* Claims one bead in Dolt: open -> in_progress, guarded by the status and
 * updated_at just read. Sets p->state. */
static void claim_one(struct dispatcher *d, struct dolt_conn *c, struct pick *p, int64_t now)
{
    char iso[32];
    (void)now;
    int rc = beads_read(c, p->bead_id, 0, &p->bead);
    if (rc == BS_ENOTFOUND) {
        p->state = PICK_LOST;
        snprintf(p->detail, sizeof p->detail, "bead no longer exists");
        return;
    }
    if (rc) {
        p->state = PICK_NOT_CLAIMED;
        snprintf(p->detail, sizeof p->detail, "not claimed: reading the bead failed (%s)", bs_strerror(rc));
        return;
    }
    if (strcmp(p->bead.status, "open") != 0 || !p->bead.assignee ||
        strcmp(p->bead.assignee, d->cfg->assignee) != 0) {
        p->state = PICK_LOST;
        snprintf(p->detail, sizeof p->detail, "bead changed before the claim (status %.32s)", p->bead.status);
        return;
    }
    /* The note's time is the server's, like every time written to a bead. */
    if ((rc = beads_server_now(c, NULL, 0, iso, sizeof iso)) == BS_ECONN) {
        p->state = PICK_NOT_CLAIMED;
        snprintf(p->detail, sizeof p->detail, "not claimed: reading the server's clock failed");
        return;
    }
    char note[256];
    snprintf(note, sizeof note, "auto-dispatcher claimed at %s (dispatch %s)", rc ? "?" : iso, p->dispatch_id);
    struct bead_move m = {
        .id = p->bead_id, .assignee = d->cfg->assignee, .from = "open", .to = "in_progress",
        .expect_updated_at = p->bead.updated_at, .note = note, .event_type = "claimed",
        .verb = "claim", .set_started = 1, .wrote_updated_at = p->claim_dt,
    };
    rc = beads_move(c, &d->schema, &d->writer, &m);
    if (rc == 0) {
        p->state = PICK_CLAIMED;
        return;
    }
    if (rc == BS_ECONN) {
        /* The COMMIT may or may not have landed: leave the attempt in
         * claiming; recovery reads the bead and decides. */
        p->state = PICK_UNCERTAIN;
        snprintf(p->detail, sizeof p->detail, "connection lost during the claim");
        return;
    }
    if (rc == BS_ESTATE || rc == BS_ECONFLICT) {
        /* Lost the race: re-read and record it unless the bead is ours. */
        if (rc == BS_ECONFLICT)
            metrics_count(MC_DOLT_ERRORS, "conflict", 1);
        struct bead now_b;
        if (beads_read(c, p->bead_id, 1, &now_b) == 0) {
            int ours = strcmp(now_b.status, "in_progress") == 0 &&
                       beads_has_mark(c, p->bead_id, now_b.notes, p->dispatch_id) == 1;
            if (ours)
                snprintf(p->claim_dt, sizeof p->claim_dt, "%s", now_b.updated_at);
            snprintf(p->detail, sizeof p->detail, "lost race%s: bead is %.32s",
                     rc == BS_ECONFLICT ? " (Dolt conflict 1213)" : "", now_b.status);
            bead_free(&now_b);
            if (ours) {
                p->state = PICK_CLAIMED;
                return;
            }
        } else {
            snprintf(p->detail, sizeof p->detail, "lost race%s", rc == BS_ECONFLICT ? " (Dolt conflict 1213)" : "");
        }
        p->state = PICK_LOST;
        return;
    }
    p->state = PICK_NOT_CLAIMED;
    snprintf(p->detail, sizeof p->detail, "not claimed: %s: %.200s", bs_strerror(rc), dolt_conn_error(c));
    bead_write_failed(d, NULL, p->bead_id, 0, "claim", rc);
}

/* Moves every pick in `from` pick-state to journal state `to`, in one store
 * transaction. */
int journal_picks(struct dispatcher *d, struct cycle *cy, enum pick_state which,
                         enum attempt_state from, enum attempt_state to, int64_t now)
{
    struct store *s = d->env.store;
    int rc = store_begin(s);
    if (rc)
        return rc;
    for (struct pick *p = cy->picks; p; p = p->next) {
        if (p->state != which)
            continue;
        struct store_transition t = {
            .detail = p->detail[0] ? p->detail : NULL,
            .bead_updated_at = which == PICK_CLAIMED ? p->claim_dt : NULL,
        };
        if ((rc = store_attempt_transition(s, p->attempt_id, from, to, &t, now))) {
            store_rollback(s);
            return rc;
        }
    }
    return store_commit(s);
}

/* Builds the request body of every claimed pick (from its bead text, read
 * at claim time). Worker thread. BS_ENOMEM leaves the picks claimed. */
int build_bodies(struct dispatcher *d, struct cycle *cy)
{
    const char *tmpl = d->cfg->prompt_template ? d->cfg->prompt_template : prompt_default_template;
    for (struct pick *p = cy->picks; p; p = p->next) {
        if (p->state != PICK_CLAIMED || p->body)
            continue;
        if (d->cfg->mode == MODE_BEADBOARD) {
            /* BeadBoard builds the prompt itself. */
            if (!(p->body = agent_beadboard_body(p->bead_id)))
                return BS_ENOMEM;
            continue;
        }
        /* "attempt N of M" counts what may reach the agent: the attempts
         * used so far (refusals that were not the bead's fault don't
         * count), plus this one. */
        int used = 0;
        if (!d->env.store || store_bead_attempts_used(d->env.store, p->bead_id, &used))
            used = 0;
        int shown = used + 1 > (int)d->cfg->max_attempts ? (int)d->cfg->max_attempts : used + 1;
        char *prompt = prompt_render(tmpl, &p->bead, p->dispatch_id, shown, (int)d->cfg->max_attempts,
                                     d->cfg->bd_db);
        p->body = prompt ? agent_execute_body(prompt, d->cfg->agent_name, d->cfg->job_budget_usd,
                                              (long)(d->cfg->job_timeout_ms / 1000), p->bead_id,
                                              p->dispatch_id, p->attempt)
                         : NULL;
        free(prompt);
        if (!p->body)
            return BS_ENOMEM;
        bead_free(&p->bead); /* the body holds what the agent needs */
    }
    return 0;
}

static int select_and_claim(struct dolt_conn *c, void *arg)
{
    struct cycle *cy = arg;
    struct dispatcher *d = cy->d;
    int64_t now = clock_now_ms();
    int rc = beads_schema_detect(c, &d->schema);
    if (rc)
        return rc;
    refresh_writer(d);
    int paused = paused_now(d);
    metrics_gauge_set(MG_PAUSED, paused);
    if (paused) {
        cy->paused = 1;
        return 0;
    }
    if (d->cfg->max_in_flight > 0 && d->env.store) {
        int64_t active = 0;
        if ((rc = store_attempts_active_count(d->env.store, &active)))
            return rc;
        long room = (long)(d->cfg->max_in_flight - active);
        if (room < cy->want)
            cy->want = room > 0 ? room : 0;
    }
    /* bd's blocked set and deferred parents, once for the whole cycle. */
    if ((rc = beads_ready_load(c, &d->schema, d->cfg->assignee, &cy->ready)))
        return rc;
    /* The service takes jobs again: beads deferred while it was full wait no more. */
    for (struct owed_note *n = cy->undefer; n; n = n->next)
        store_bead_set_retry(d->env.store, n->bead_id, 0);
    note_unready(d, c, cy, now);
    if (cy->want > 0)
        rc = choose(d, c, cy, now);
    else
        metrics_gauge_set(MG_READY_BEADS, 0); /* MAX_IN_FLIGHT reached: nothing it could take */
    beads_ready_free(cy->ready);
    cy->ready = NULL;
    if (rc || cy->want <= 0 || !cy->picks || d->env.dry_run)
        return rc;

    TEST_PAUSE("CLAIM"); /* a window between choosing and claiming, for tests */
    if (d->env.may_write && (rc = d->env.may_write(c, d->env.arg))) {
        picks_free(cy->picks); /* nothing recorded yet: they never happened */
        cy->picks = NULL;
        return rc == BS_ESTATE ? 0 : rc;
    }
    /* 1. Intent: one journal row per bead, state claiming. */
    struct store *s = d->env.store;
    if ((rc = store_begin(s)))
        return rc;
    for (struct pick *p = cy->picks; p; p = p->next) {
        struct store_attempt a;
        text_uuid4(p->dispatch_id);
        if ((rc = store_attempt_create(s, p->bead_id, p->dispatch_id, now, &a))) {
            store_rollback(s);
            return rc;
        }
        p->attempt_id = a.id;
        p->attempt = a.attempt;
        p->state = PICK_CLAIMING;
    }
    if ((rc = store_commit(s)))
        return rc;
    CRASH_POINT("after_claiming_commit");

    /* 2. The claims in Dolt. */
    for (struct pick *p = cy->picks; p; p = p->next) {
        claim_one(d, c, p, clock_now_ms());
        if (p->state == PICK_CLAIMED)
            CRASH_POINT("after_dolt_claim");
    }

    /* 3. Record what the claims did. */
    now = clock_now_ms();
    if ((rc = journal_picks(d, cy, PICK_CLAIMED, AS_CLAIMING, AS_CLAIMED, now)) ||
        (rc = journal_picks(d, cy, PICK_LOST, AS_CLAIMING, AS_LOST_RACE, now)) ||
        (rc = journal_picks(d, cy, PICK_NOT_CLAIMED, AS_CLAIMING, AS_RELEASED, now)))
        return rc;
    CRASH_POINT("after_claimed_commit");

    /* 4. Build the requests, then record that they are about to go out. */
    if ((rc = build_bodies(d, cy)))
        return rc; /* claimed stays: recovery posts it */
    if ((rc = journal_picks(d, cy, PICK_CLAIMED, AS_CLAIMED, AS_POSTING, clock_now_ms())))
        return rc;
    CRASH_POINT("after_posting_commit");
    return 0;
}

static void print_dry_run(struct cycle *cy)
{
    if (cy->paused) {
        printf("dry-run: dispatching is paused; nothing would be dispatched\n");
        return;
    }
    if (cy->capped)
        printf("dry-run: agent has more free slots than one cycle takes; showing the first %d\n",
               MAX_PICKS_PER_CYCLE);
    else
        printf("dry-run: agent has %ld free slot(s)\n", cy->want);
    for (struct pick *p = cy->picks; p; p = p->next)
        printf("dry-run: would dispatch %s (priority %ld, updated %s)\n", p->bead_id, p->priority,
               p->cand_updated_at);
    for (size_t i = 0; i < cy->nunready; i++)
        printf("dry-run: would note %s: no acceptance criteria\n", cy->unready[i].id);
    fflush(stdout);
}

static void claimed_done(int rc, void *arg)
{
    struct cycle *cy = arg;
    struct dispatcher *d = cy->d;
    /* A claim that lost its connection is a Dolt failure even when the
     * cycle as a whole went on: readiness must not count it as an answer. */
    int conn_lost = rc == BS_ECONN;
    for (struct pick *p = cy->picks; p && !conn_lost; p = p->next)
        conn_lost = p->state == PICK_UNCERTAIN;
    note_dolt_state(d, conn_lost ? BS_ECONN : 0);
    if (rc) {
        log_error("dispatch cycle failed", "error", bs_strerror(rc));
        cy->rc = rc;
    }
    for (struct pick *p = cy->picks; p; p = p->next) {
        if (p->state == PICK_LOST) {
            metrics_count(MC_DISPATCHES, "lost_race", 1);
            log_info("lost race", "bead", p->bead_id, "attempt", LOG_INT(p->attempt), "dispatch",
                     p->dispatch_id, "detail", p->detail);
        } else if (p->state == PICK_NOT_CLAIMED || p->state == PICK_UNCERTAIN) {
            if (p->state == PICK_NOT_CLAIMED)
                metrics_count(MC_DISPATCHES, "released", 1);
            log_warn("claim failed", "bead", p->bead_id, "attempt", LOG_INT(p->attempt),
                     "dispatch", p->dispatch_id, "detail", p->detail);
        }
    }
    /* Every slot taken (or none free): more beads may be waiting. */
    /* A dry run claims nothing, so what it saw is still there: no backlog. */
    d->backlog = rc == 0 && !cy->paused && !d->env.dry_run && cy->chosen >= cy->want;
    if (d->backlog && cy->capped)
        d->cycle_again = 1; /* more slots than one cycle takes: go on at once */
    if (rc == 0 && !cy->paused)
        d->retry_due_ms = cy->next_retry_at;
    if (d->env.dry_run)
        print_dry_run(cy);
    if (rc || d->env.dry_run) {
        finish_cycle(d, rc == 0);
        return;
    }
    post_all(cy);
}

/* ------------------------------------------------------------------ */
/* POST /execute and its results                                       */

/* The agent error a POST result counts as, or NULL for none. */
static const char *agent_error_kind(const struct pick *p)
{
    switch (p->verdict) {
    case APV_ACCEPTED:
        return NULL;
    case APV_NOT_SENT:
        return "unreachable";
    case APV_AMBIGUOUS:
        return p->status >= 200 && p->status < 300 ? "malformed" : "unknown";
    case APV_FULL:
        return "full";
    case APV_AUTH:
    case APV_URL:
        return "unauthorized";
    case APV_REJECTED:
        return "http_4xx";
    }
    return NULL;
}

/* A reply body as one line for a note: UTF-8 safe, capped, marked when cut. */
static void body_line(const struct http_response *r, char *out, size_t len)
{
    size_t keep = text_utf8_prefix(r->body, r->body_len, REFUSAL_BODY_MAX);
    char *clean = text_utf8_clean(r->body, keep);
    snprintf(out, len, "%s%s", clean ? clean : "", keep < r->body_len ? " [...]" : "");
    for (char *c = out; *c; c++) {
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    }
    free(clean);
}

static void classify(struct pick *p, const struct http_response *r)
{
    char why[160] = "";
    enum agent_reply_kind kind = AR_ANSWER;
    int usable = 0;
    p->status = r->status;
    switch (r->outcome) {
    case HTTP_CANCELLED:
        p->result = POST_CANCELLED;
        return;
    case HTTP_REFUSED:
        kind = AR_NOT_SENT;
        break;
    case HTTP_UNKNOWN:
        kind = AR_NO_ANSWER;
        break;
    case HTTP_TOO_LARGE:
        kind = AR_TOO_LARGE;
        snprintf(why, sizeof why, "too large");
        break;
    case HTTP_RESPONSE:
        if (r->status >= 200 && r->status < 300)
            usable = agent_parse_execute(r->body, r->body_len, p->job_id, sizeof p->job_id, why,
                                         sizeof why) == 0;
        break;
    }
    p->verdict = agent_post_verdict(kind, r->status, usable);
    switch (p->verdict) {
    case APV_ACCEPTED:
        p->result = POST_DISPATCHED;
        break;
    case APV_AMBIGUOUS:
        /* The service may have the job: never re-POST; the reaper watches
         * the bead (the agent's claim note carries our dispatch id). */
        p->result = POST_UNKNOWN;
        if (kind == AR_NO_ANSWER)
            snprintf(p->detail, sizeof p->detail, "no answer after sending: %.200s", r->error);
        else if (r->status >= 200 && r->status < 300)
            snprintf(p->detail, sizeof p->detail, "HTTP %ld but the reply is unusable: %s", r->status, why);
        else {
            char body[REFUSAL_BODY_MAX + 16];
            body_line(r, body, sizeof body);
            snprintf(p->detail, sizeof p->detail, "HTTP %ld (the service may have taken the job): %s",
                     r->status, body);
        }
        break;
    case APV_REJECTED:
        p->result = POST_REFUSED;
        body_line(r, p->detail, sizeof p->detail);
        break;
    case APV_NOT_SENT:
        p->result = POST_GIVEN_BACK;
        snprintf(p->detail, sizeof p->detail, "agent unreachable: %.200s", r->error);
        break;
    case APV_FULL:
    case APV_AUTH:
    case APV_URL: {
        char body[REFUSAL_BODY_MAX + 16];
        body_line(r, body, sizeof body);
        p->result = POST_GIVEN_BACK;
        snprintf(p->detail, sizeof p->detail, "%s: HTTP %ld: %s",
                 p->verdict == APV_FULL ? "agent full" : p->verdict == APV_AUTH ? "token refused" : "wrong URL",
                 r->status, body);
        break;
    }
    }
}

void cycle_maybe_done(struct dispatcher *d)
{
    struct cycle *cy = d->cur;
    if (cy && cy->posts_pending == 0 && !d->flush_in_flight && !d->results)
        finish_cycle(d, cy->rc == 0);
}

static void post_done(const struct http_response *r, void *arg)
{
    struct pick *p = arg;
    struct dispatcher *d = p->d;
    classify(p, r);
    const char *kind = p->result == POST_CANCELLED ? NULL : agent_error_kind(p);
    if (kind)
        metrics_count(MC_AGENT_ERRORS, kind, 1);
    CRASH_POINT("after_post_response");
    if (p->result == POST_CANCELLED) {
        /* Shutdown: the attempt stays in posting; recovery decides. */
        pick_free(p);
    } else {
        p->next = d->results;
        d->results = p;
    }
    d->cur->posts_pending--;
    flush_results(d);
    cycle_maybe_done(d);
}

void post_all(struct cycle *cy)
{
    struct dispatcher *d = cy->d;
    char url[2048], auth[1100];
    int beadboard = d->cfg->mode == MODE_BEADBOARD;
    snprintf(url, sizeof url, "%s%s", beadboard ? d->cfg->beadboard_url : d->cfg->agent_url,
             beadboard ? "/api/agent-dispatch" : "/execute");
    /* BeadBoard holds the agent token itself; never send ours there. */
    snprintf(auth, sizeof auth, "Authorization: Bearer %s",
             d->cfg->agent_token && !beadboard ? d->cfg->agent_token : "");
    const char *headers[] = {"Content-Type: application/json", "Accept: application/json",
                             beadboard ? NULL : auth, NULL};
    struct pick *p = cy->picks;
    cy->picks = NULL;
    while (p) {
        struct pick *next = p->next;
        p->next = NULL;
        if (p->state != PICK_CLAIMED || d->stopping) {
            /* A claimed pick not sent because of shutdown stays in posting. */
            pick_free(p);
            p = next;
            continue;
        }
        struct http_request req = {
            .method = "POST", .url = url, .body = p->body, .body_len = strlen(p->body),
            .headers = headers, .connect_timeout_ms = (long)d->cfg->http_connect_timeout_ms,
            .timeout_ms = (long)d->cfg->http_timeout_ms, .max_response = 64 * 1024,
        };
        p->posted_ms = clock_now_ms();
        if (http_request_start(d->env.http, &req, post_done, p) == 0) {
            cy->posts_pending++;
            free(p->body); /* the client copied it */
            p->body = NULL;
        } else {
            /* Never left this process: not an attempt. */
            p->result = POST_GIVEN_BACK;
            p->verdict = APV_NOT_SENT;
            p->status = 0;
            snprintf(p->detail, sizeof p->detail, "request could not be started");
            p->next = d->results;
            d->results = p;
        }
        p = next;
    }
    memset(auth, 0, sizeof auth);
    flush_results(d);
    cycle_maybe_done(d);
}

struct flush {
    struct dispatcher *d;
    struct pick *list;
};

static const char *refusal_note(struct pick *p, char *buf, size_t len)
{
    snprintf(buf, len, "dispatch failed HTTP %ld: %.900s", p->status, p->detail);
    return buf;
}

void refresh_in_flight_gauge(struct dispatcher *d)
{
    int64_t active = 0;
    if (store_attempts_active_count(d->env.store, &active) == 0)
        metrics_gauge_set(MG_IN_FLIGHT, (double)active);
}

/* Records, for `beads-sched status`, when dispatching last did something
 * and what; only cycles with results get here, so an idle daemon writes
 * nothing. Also refreshes the in-flight gauge. Worker thread. */
static void note_cycle_result(struct dispatcher *d, const struct pick *list, int64_t now)
{
    int n[POST_RESULT_COUNT] = {0};
    for (const struct pick *p = list; p; p = p->next)
        n[p->result]++;
    char at[24], result[160];
    snprintf(at, sizeof at, "%lld", (long long)now); /* status shows its age */
    /* refused: every claim given back, whether the bead's fault or not */
    snprintf(result, sizeof result, "dispatched %d, refused %d, unknown %d", n[POST_DISPATCHED],
             n[POST_REFUSED] + n[POST_GIVEN_BACK], n[POST_UNKNOWN]);
    if (store_setting_set(d->env.store, "last_cycle_at", at, now) == 0)
        store_setting_set(d->env.store, "last_cycle_result", result, now);
    refresh_in_flight_gauge(d);
}

void owe_note(struct dispatcher *d, const char *bead_id, const char *note)
{
    if (d->nowed >= OWED_NOTES_MAX) {
        log_error("too many notes owed to beads; dropping one", "bead", bead_id, "note", note);
        return;
    }
    struct owed_note *n = calloc(1, sizeof *n);
    if (!n || !(n->bead_id = strdup(bead_id)) || !(n->note = strdup(note))) {
        if (n)
            free(n->bead_id);
        free(n);
        log_error("out of memory: a note owed to a bead is dropped", "bead", bead_id, "note", note);
        return;
    }
    n->next = d->owed_notes;
    d->owed_notes = n;
    d->nowed++;
}

/* Appends a note to a bead in progress and assigned to us. */
static int add_note(struct dispatcher *d, struct dolt_conn *c, const char *bead_id, const char *note)
{
    struct bead_move m = {
        .id = bead_id, .assignee = d->cfg->assignee, .from = "in_progress", .to = "in_progress",
        .note = note, .event_type = "updated", .verb = "note",
    };
    return beads_move(c, &d->schema, &d->writer, &m);
}

void pay_owed_notes(struct dispatcher *d, struct dolt_conn *c)
{
    struct owed_note **pp = &d->owed_notes;
    while (*pp && !d->stopping) {
        struct owed_note *n = *pp;
        int rc = add_note(d, c, n->bead_id, n->note);
        if (rc == BS_ECONN || rc == BS_EIO || rc == BS_ECONFLICT) {
            pp = &n->next; /* Dolt trouble: keep it for later */
            if (rc == BS_ECONN)
                return;
            continue;
        }
        if (rc == 0)
            log_info("owed note written", "bead", n->bead_id, "note", n->note);
        else /* the bead moved on (closed, reopened): the note no longer applies */
            log_info("owed note dropped: bead no longer in progress", "bead", n->bead_id, "note", n->note);
        *pp = n->next;
        free(n->bead_id);
        free(n->note);
        free(n);
        d->nowed--;
    }
}

/* Journals a batch of POST results: dispatched and unknown in one store
 * transaction, then the dispatched notes (a failed note is owed and
 * retried later); refusals and claims given back revert the claim in Dolt
 * first, then are journaled. Each pick remembers how far it got, so a batch
 * that failed (store locked, Dolt down) is retried whole without redoing
 * anything. Worker thread. */
static int record_results(struct dolt_conn *c, void *arg)
{
    struct flush *f = arg;
    struct dispatcher *d = f->d;
    struct store *s = d->env.store;
    int64_t now = clock_now_ms();
    char note[1200];
    int rc = 0, any = 0;
    TEST_PAUSE("RECORD_RESULTS");
    pay_owed_notes(d, c);
    for (struct pick *p = f->list; p; p = p->next)
        any |= (p->result == POST_DISPATCHED || p->result == POST_UNKNOWN) && !p->journaled;
    if (any) {
        if ((rc = store_begin(s)))
            return rc;
        for (struct pick *p = f->list; p; p = p->next) {
            if (p->journaled)
                continue;
            if (p->result == POST_DISPATCHED) {
                struct store_transition t = {.job_id = p->job_id};
                rc = store_attempt_transition(s, p->attempt_id, AS_POSTING, AS_DISPATCHED, &t, now);
            } else if (p->result == POST_UNKNOWN) {
                struct store_transition t = {.detail = p->detail};
                rc = store_attempt_transition(s, p->attempt_id, AS_POSTING, AS_UNKNOWN, &t, now);
            }
            if (rc) {
                store_rollback(s);
                return rc;
            }
        }
        if ((rc = store_commit(s)))
            return rc;
        CRASH_POINT("after_dispatched_commit");
        for (struct pick *p = f->list; p; p = p->next) {
            if (p->result != POST_DISPATCHED && p->result != POST_UNKNOWN)
                continue;
            if (p->journaled)
                continue;
            p->journaled = 1;
            if (p->result != POST_DISPATCHED)
                continue;
            snprintf(note, sizeof note, "dispatched: job=%s", p->job_id);
            int nrc = add_note(d, c, p->bead_id, note);
            if (nrc == BS_EIO) /* the bead refuses writes: its problem, on record; retried */
                bead_write_failed(d, c, p->bead_id, p->attempt_id, "dispatched note", nrc);
            if (nrc == BS_ECONN || nrc == BS_EIO || nrc == BS_ECONFLICT) {
                log_warn("could not add the dispatched note; retried later", "bead", p->bead_id,
                         "job", p->job_id, "error", bs_strerror(nrc));
                owe_note(d, p->bead_id, note);
            } else if (nrc) {
                log_info("dispatched note not added: bead no longer in progress", "bead", p->bead_id,
                         "job", p->job_id);
            }
        }
        note_cycle_result(d, f->list, now);
    }

    /* Refusals and claims given back: revert the claim (guarded by what
     * our claim wrote), then journal. A refusal of the bead itself (400/422)
     * notes why and counts as an attempt: blocked once attempts are used up.
     * A claim given back because the service is full or refuses our token
     * is not the bead's problem: no failure note, no attempt used. */
    int any_back = 0;
    for (struct pick *p = f->list; p; p = p->next) {
        if (p->result != POST_REFUSED && p->result != POST_GIVEN_BACK)
            continue;
        any_back = 1;
        if (p->reverted)
            continue;
        int block = 0, used = 0;
        if (p->result == POST_REFUSED) {
            if ((rc = store_bead_attempts_used(s, p->bead_id, &used)))
                return rc;
            block = used >= d->cfg->max_attempts;
            refusal_note(p, note, sizeof note);
            if (block) {
                size_t k = strlen(note);
                snprintf(note + k, sizeof note - k, "; attempts exhausted (%d/%lld), blocking", used,
                         (long long)d->cfg->max_attempts);
            }
        }
        struct bead_move m = {
            .id = p->bead_id, .assignee = d->cfg->assignee, .from = "in_progress",
            .to = block ? "blocked" : "open", .expect_updated_at = p->claim_dt,
            .note = p->result == POST_REFUSED ? note : NULL, .event_type = "status_changed",
            .verb = block ? "block" : "release",
        };
        int mrc = beads_move(c, &d->schema, &d->writer, &m);
        if (mrc == BS_ECONN)
            return mrc; /* retried: the batch stays in memory */
        if (mrc) {
            if (mrc != BS_ESTATE && mrc != BS_ECONFLICT)
                bead_write_failed(d, NULL, p->bead_id, p->attempt_id, "claim release", mrc);
            size_t k = strlen(p->detail);
            snprintf(p->detail + k, sizeof p->detail - k, " (claim not reverted: %s)", bs_strerror(mrc));
        }
        p->reverted = block ? 2 : 1;
        CRASH_POINT("after_dolt_revert");
    }
    if (!any_back)
        return 0;
    if ((rc = store_begin(s)))
        return rc;
    for (struct pick *p = f->list; p; p = p->next) {
        if (p->result != POST_REFUSED && p->result != POST_GIVEN_BACK)
            continue;
        char detail[STORE_DETAIL_MAX];
        enum attempt_state to = AS_REFUSED;
        const char *outcome = "refused";
        int64_t retry_at = 0;
        if (p->result == POST_REFUSED) {
            int used = 0;
            if ((rc = store_bead_attempts_used(s, p->bead_id, &used))) {
                store_rollback(s);
                return rc;
            }
            to = p->reverted == 2 ? AS_GAVE_UP : AS_RETRYING;
            outcome = p->reverted == 2 ? "gave_up" : "rejected";
            retry_at = now + retry_backoff_ms(d, used);
            snprintf(detail, sizeof detail, "HTTP %ld: %.900s", p->status, p->detail);
        } else {
            outcome = p->verdict == APV_FULL ? "agent_full" : p->verdict == APV_NOT_SENT ? "not_sent"
                                                                                          : "agent_auth";
            if (p->verdict == APV_FULL || p->verdict == APV_NOT_SENT)
                retry_at = now + FULL_BACKOFF_CAP_MS; /* until the service takes a job again */
            snprintf(detail, sizeof detail, "claim given back, not an attempt: %.900s", p->detail);
        }
        struct store_transition t = {.detail = detail, .outcome = outcome};
        if ((rc = store_attempt_transition(s, p->attempt_id, AS_POSTING, to, &t, now)) ||
            (retry_at && (rc = store_bead_set_retry(s, p->bead_id, retry_at)))) {
            store_rollback(s);
            return rc;
        }
    }
    if ((rc = store_commit(s)))
        return rc;
    if (!any)
        note_cycle_result(d, f->list, now);
    return 0;
}

/* The service answered that it is full or could not be reached: no claims
 * for a while (doubling), then one bead at a time. Loop thread. */
static void agent_full(struct dispatcher *d, const struct pick *p)
{
    int64_t base = (int64_t)d->cfg->retry_backoff_ms;
    if (base < FULL_BACKOFF_MIN_MS)
        base = FULL_BACKOFF_MIN_MS;
    int first = d->full_backoff_ms == 0;
    if (first)
        d->full_backoff_ms = base;
    else if (clock_now_ms() >= d->full_until_ms) /* one doubling per round, not per bead */
        d->full_backoff_ms = d->full_backoff_ms * 2 > FULL_BACKOFF_CAP_MS ? FULL_BACKOFF_CAP_MS
                                                                          : d->full_backoff_ms * 2;
    d->full_until_ms = clock_now_ms() + d->full_backoff_ms;
    d->full_load = d->last_load;
    metrics_gauge_set(MG_AGENT_FULL_BACKOFF, (double)d->full_backoff_ms / 1000.0);
    if (first)
        log_warn("agent service is full or unreachable; claims given back, dispatch backs off",
                 "status", LOG_INT(p->status), "detail", p->detail,
                 "backoff_ms", LOG_INT(d->full_backoff_ms));
}

void agent_gate_close(struct dispatcher *d, enum agent_gate why, long status)
{
    if (d->gate != why) {
        log_error(why == GATE_TOKEN ? "agent service refuses our token; no claims until it accepts it"
                                    : "agent service URL answers 404 on /execute; no claims until it works",
                  "status", LOG_INT(status), "url", d->cfg->agent_url);
        d->gate_backoff_ms = GATE_BACKOFF_MS;
    } else if (d->gate_backoff_ms < GATE_BACKOFF_CAP_MS) {
        d->gate_backoff_ms *= 2;
        if (d->gate_backoff_ms > GATE_BACKOFF_CAP_MS)
            d->gate_backoff_ms = GATE_BACKOFF_CAP_MS;
    }
    d->gate = why;
    d->gate_reason = why;
    d->gate_check_at = clock_now_ms() + d->gate_backoff_ms;
    metrics_gauge_set(MG_AGENT_TOKEN_REFUSED, why == GATE_TOKEN);
    metrics_gauge_set(MG_AGENT_URL_WRONG, why == GATE_URL);
}

static void agent_gate_open(struct dispatcher *d)
{
    if (d->gate == GATE_TOKEN || d->gate == GATE_URL)
        log_info("agent service accepts our token again; claims resume");
    d->gate = GATE_OPEN;
    d->gate_reason = GATE_OPEN;
    d->gate_backoff_ms = 0;
    metrics_gauge_set(MG_AGENT_TOKEN_REFUSED, 0);
    metrics_gauge_set(MG_AGENT_URL_WRONG, 0);
}

static void results_done(int rc, void *arg)
{
    struct flush *f = arg;
    struct dispatcher *d = f->d;
    d->flush_in_flight = 0;
    if (rc && !d->stopping && !d->once) {
        /* Nothing the agent said is dropped: the batch waits in memory
         * (dispatching waits with it: the cycle is not over) and is tried
         * again; what was already written is not redone. */
        if (!d->results_failing)
            log_error("could not journal dispatch results; keeping them and retrying", "error",
                      bs_strerror(rc));
        d->results_failing = 1;
        d->results_retry_at = clock_now_ms() + RESULTS_RETRY_MS;
        struct pick **tail = &f->list;
        while (*tail)
            tail = &(*tail)->next;
        *tail = d->results;
        d->results = f->list;
        free(f);
        return;
    }
    if (rc)
        log_error("could not journal dispatch results; recovery settles them", "error", bs_strerror(rc));
    else if (d->results_failing) {
        log_info("dispatch results journaled after retrying");
        d->results_failing = 0;
    }
    for (struct pick *p = f->list; p; p = p->next) {
        char ms[32];
        snprintf(ms, sizeof ms, "%.0f", (double)(clock_now_ms() - p->posted_ms));
        switch (p->result) {
        case POST_DISPATCHED:
            metrics_count(MC_DISPATCHES, "dispatched", 1);
            if (p->cand_updated_at) {
                int64_t since = beads_datetime_ms(p->cand_updated_at);
                if (since > 0)
                    metrics_observe(MH_DISPATCH_LATENCY, (double)(clock_now_ms() - since) / 1000.0);
            }
            log_info("dispatched", "bead", p->bead_id, "attempt", LOG_INT(p->attempt), "job",
                     p->job_id, "dispatch", p->dispatch_id, "post_ms", ms);
            if (d->deferred)
                d->undefer = 1;
            if (d->full_backoff_ms) {
                d->full_backoff_ms = 0;
                d->full_until_ms = 0;
                metrics_gauge_set(MG_AGENT_FULL_BACKOFF, 0);
                log_info("agent service takes jobs again");
            }
            if (d->gate != GATE_OPEN)
                agent_gate_open(d);
            break;
        case POST_REFUSED: {
            int64_t due = p->posted_ms + (int64_t)d->cfg->retry_backoff_ms;
            if (d->retry_due_ms == 0 || due < d->retry_due_ms)
                d->retry_due_ms = due;
            metrics_count(MC_DISPATCHES, "refused", 1);
            log_warn("dispatch refused by the service; claim released", "bead", p->bead_id, "attempt",
                     LOG_INT(p->attempt), "dispatch", p->dispatch_id, "status", LOG_INT(p->status),
                     "detail", p->detail);
            break;
        }
        case POST_GIVEN_BACK:
            metrics_count(MC_DISPATCHES, "given_back", 1);
            log_info("claim given back; not an attempt", "bead", p->bead_id, "dispatch", p->dispatch_id,
                     "verdict", agent_post_verdict_name(p->verdict), "detail", p->detail);
            if (d->cfg->mode == MODE_BEADBOARD && (p->verdict == APV_AUTH || p->verdict == APV_URL))
                agent_full(d, p); /* BeadBoard holds the token: back off, no gate */
            else if (p->verdict == APV_AUTH)
                agent_gate_close(d, GATE_TOKEN, p->status);
            else if (p->verdict == APV_URL)
                agent_gate_close(d, GATE_URL, p->status);
            else
                agent_full(d, p);
            if ((p->verdict == APV_FULL || p->verdict == APV_NOT_SENT) && d->ndeferred < DEFERRED_MAX) {
                struct owed_note *n = calloc(1, sizeof *n);
                if (n && (n->bead_id = strdup(p->bead_id))) {
                    n->next = d->deferred;
                    d->deferred = n;
                    d->ndeferred++;
                } else {
                    free(n);
                }
            }
            break;
        case POST_UNKNOWN:
            metrics_count(MC_DISPATCHES, "unknown", 1);
            log_warn("dispatch outcome unknown; left for the reaper", "bead", p->bead_id,
                     "attempt", LOG_INT(p->attempt), "dispatch", p->dispatch_id, "detail", p->detail);
            break;
        case POST_CANCELLED:
        case POST_RESULT_COUNT:
            break;
        }
    }
    if (rc && d->cur)
        d->cur->rc = rc;
    picks_free(f->list);
    free(f);
    flush_results(d);
    cycle_maybe_done(d);
}

/* Hands the queued POST results to the worker, one batch at a time: results
 * that arrive while a batch is being journaled wait for the next, so a busy
 * cycle costs one fsync per batch rather than per bead. */
static void flush_results(struct dispatcher *d)
{
    if (d->flush_in_flight || !d->results)
        return;
    struct flush *f = calloc(1, sizeof *f);
    if (!f)
        return;
    f->d = d;
    f->list = d->results;
    d->results = NULL;
    if (dolt_submit(d->env.dolt, record_results, results_done, f)) {
        /* Worker stopped: results stay in posting, recovery reconciles. */
        picks_free(f->list);
        free(f);
        return;
    }
    d->flush_in_flight = 1;
}

/* ------------------------------------------------------------------ */
/* Cycle start and end                                                 */

static void health_done(const struct http_response *r, void *arg)
{
    struct cycle *cy = arg;
    struct dispatcher *d = cy->d;
    struct agent_health h = {0};
    char why[200] = "";
    int ok = 0;
    if (r->outcome == HTTP_RESPONSE && r->status == 200 && d->cfg->mode == MODE_BEADBOARD) {
        /* BeadBoard tells only busy or not: one bead per cycle while free. */
        int busy = 1;
        ok = agent_parse_beadboard_status(r->body, r->body_len, &busy, why, sizeof why) == 0;
        h.capacity = 1;
        h.active = busy;
    } else if (r->outcome == HTTP_RESPONSE && r->status == 200) {
        ok = agent_parse_health(r->body, r->body_len, &h, why, sizeof why) == 0;
    }
    else if (r->outcome == HTTP_RESPONSE)
        snprintf(why, sizeof why, "HTTP %ld", r->status);
    else
        snprintf(why, sizeof why, "%s: %.150s", http_outcome_name(r->outcome), r->error);

    int64_t now = clock_now_ms();
    if (ok != d->health_ok || (!ok && now - d->health_logged_ms >= HEALTH_REMINDER_MS)) {
        if (ok)
            log_info("agent healthy", "capacity", LOG_INT(h.capacity), "active", LOG_INT(h.active),
                     "queued", LOG_INT(h.queued));
        else
            log_warn("agent health check failed; no dispatch until it answers", "error", why);
        d->health_ok = ok;
        d->health_logged_ms = now;
    }
    if (!ok && r->outcome != HTTP_CANCELLED)
        metrics_count(MC_AGENT_ERRORS, r->outcome == HTTP_RESPONSE && r->status == 200 ? "malformed"
                                       : r->outcome == HTTP_RESPONSE ? (r->status >= 500 ? "http_5xx" : "http_4xx")
                                       : "unreachable", 1);
    if (!ok || d->stopping || r->outcome == HTTP_CANCELLED) {
        finish_cycle(d, 0);
        return;
    }
    cy->want = agent_free_slots(&h);
    metrics_gauge_set(MG_AGENT_FREE_SLOTS, (double)cy->want);
    d->last_load = h.active + h.queued;
    if (d->deferred && d->last_load < d->full_load) {
        /* Jobs ended since the service said full: the beads it refused
         * then need not wait any more. */
        struct owed_note **tail = &cy->undefer;
        while (*tail)
            tail = &(*tail)->next;
        *tail = d->deferred;
        d->deferred = NULL;
        d->ndeferred = 0;
    }
    if (d->full_backoff_ms && cy->want > 1)
        cy->want = 1; /* it said full lately: one bead until it takes one */
    if (cy->want > MAX_PICKS_PER_CYCLE) {
        cy->want = MAX_PICKS_PER_CYCLE;
        cy->capped = 1;
    }
    if (cy->recheck && cy->want == 0) {
        finish_cycle(d, 1); /* still full: nothing to ask Dolt */
        return;
    }
    if (dolt_submit(d->env.dolt, select_and_claim, claimed_done, cy))
        finish_cycle(d, 0);
    else
        cy->selected = 1;
}

void dispatcher_cycle(struct dispatcher *d) { start_cycle(d, 0); }

static void send_health(struct cycle *cy)
{
    struct dispatcher *d = cy->d;
    char url[2048];
    if (d->cfg->mode == MODE_BEADBOARD)
        snprintf(url, sizeof url, "%s/api/agent-status", d->cfg->beadboard_url);
    else
        snprintf(url, sizeof url, "%s/health", d->cfg->agent_url);
    struct http_request req = {
        .method = "GET", .url = url, .connect_timeout_ms = (long)d->cfg->http_connect_timeout_ms,
        .timeout_ms = (long)d->cfg->http_timeout_ms, .max_response = 64 * 1024,
    };
    if (http_request_start(d->env.http, &req, health_done, cy)) {
        log_warn("could not start the health request");
        finish_cycle(d, 0);
    }
}

/* The token check's answer: 404 "Job not found" means the service took our
 * token (and the URL is the service's); 401/403 that it refuses it.
 * Anything else can't tell: a gate never opened goes on to /health (the
 * POST's own answer will tell), a closed one stays closed. */
static void gate_done(const struct http_response *r, void *arg)
{
    struct cycle *cy = arg;
    struct dispatcher *d = cy->d;
    d->gate_check_in_flight = 0;
    if (r->outcome == HTTP_CANCELLED || d->stopping) {
        finish_cycle(d, 0);
        return;
    }
    int answered = r->outcome == HTTP_RESPONSE;
    if (answered && r->status == 404 && (d->gate != GATE_URL || strstr(r->body, "Job not found"))) {
        agent_gate_open(d);
    } else if (answered && (r->status == 401 || r->status == 403)) {
        agent_gate_close(d, GATE_TOKEN, r->status);
    } else if (d->gate == GATE_TOKEN || d->gate == GATE_URL) {
        agent_gate_close(d, d->gate, r->status);
    }
    if (d->gate == GATE_TOKEN || d->gate == GATE_URL) {
        finish_cycle(d, 0);
        return;
    }
    send_health(cy);
}

/* Starts a cycle; with recheck it was started only because capacity or the
 * agent may have come back, and stops after /health if nothing is free. */
void start_cycle(struct dispatcher *d, int recheck)
{
    if (d->stopping)
        return;
    if (d->cycle_running || d->reap_running) {
        d->cycle_again = 1;
        return;
    }
    int agent_mode = d->cfg->mode != MODE_BEADBOARD;
    int64_t now = clock_now_ms();
    int gate_closed = d->gate == GATE_TOKEN || d->gate == GATE_URL;
    if (agent_mode && gate_closed && now < d->gate_check_at && !d->once)
        return; /* the token is refused: nothing to claim until the next check */
    if (agent_mode && d->full_until_ms && now < d->full_until_ms && !d->once)
        return; /* the service said it is full: wait out the backoff */
    struct cycle *cy = calloc(1, sizeof *cy);
    if (!cy)
        return;
    cy->d = d;
    cy->recheck = recheck;
    cy->started_ms = now;
    if (d->undefer) {
        cy->undefer = d->deferred;
        d->deferred = NULL;
        d->ndeferred = 0;
        d->undefer = 0;
    }
    d->cur = cy;
    d->cycle_running = 1;
    if (agent_mode && d->gate != GATE_OPEN && d->cfg->agent_url) {
        char url[2100], auth[1100];
        snprintf(url, sizeof url, "%s/jobs/%s", d->cfg->agent_url, GATE_PROBE_JOB_ID);
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", d->cfg->agent_token ? d->cfg->agent_token : "");
        const char *headers[] = {"Accept: application/json", auth, NULL};
        struct http_request req = {
            .method = "GET", .url = url, .headers = headers,
            .connect_timeout_ms = (long)d->cfg->http_connect_timeout_ms,
            .timeout_ms = (long)d->cfg->http_timeout_ms, .max_response = 64 * 1024,
        };
        int rc = http_request_start(d->env.http, &req, gate_done, cy);
        memset(auth, 0, sizeof auth);
        if (rc == 0) {
            d->gate_check_in_flight = 1;
            return;
        }
    }
    send_health(cy);
}

void finish_cycle(struct dispatcher *d, int ok)
{
    struct cycle *cy = d->cur;
    int cy_repost = cy && cy->repost;
    /* A capped cycle that left slots to fill goes on at once: the round of
     * filling free slots, which on_cycle reports, is not over yet. */
    int cy_continues = ok && cy && cy->capped && d->backlog && !d->stopping;
    d->cur = NULL;
    d->cycle_running = 0;
    /* DISPATCH_INTERVAL counts from the last cycle that looked at Dolt. */
    if (cy && cy->selected)
        d->last_cycle_ms = clock_now_ms();
    if (cy && cy->selected) {
        metrics_count(MC_CYCLES, "dispatch", 1);
        metrics_observe(MH_CYCLE_DURATION, (double)(clock_now_ms() - cy->started_ms) / 1000.0);
        if (ok)
            metrics_gauge_set(MG_LAST_CYCLE_SUCCESS, (double)clock_now_ms() / 1000.0);
    }
    if (cy) {
        picks_free(cy->picks);
        if (!cy->selected && cy->undefer) {
            /* Never reached the worker: the next cycle ends their wait. */
            struct owed_note **tail = &cy->undefer;
            while (*tail)
                tail = &(*tail)->next;
            *tail = d->deferred;
            d->deferred = cy->undefer;
            cy->undefer = NULL;
            d->undefer = 1;
        }
        owed_free(cy->undefer);
        candidates_free(cy->unready, cy->nunready);
        /* A big cycle's requests are gone: give the memory back. */
        if (cy->chosen > 16)
            malloc_trim(0);
        free(cy);
    }
    int repost = cy_repost;
    if (d->env.on_cycle && !repost && !cy_continues)
        d->env.on_cycle(d->env.arg, ok);
    if (d->reap_again && !d->stopping) {
        d->reap_again = 0;
        reaper_start(d, 0);
    } else if (d->cycle_again && !d->stopping) {
        d->cycle_again = 0;
        dispatcher_cycle(d);
    }
}

void dispatcher_reap(struct dispatcher *d)
{
    if (d->stopping || !d->recovered)
        return;
    if (d->cycle_running) {
        d->reap_again = 1;
        return;
    }
    reaper_start(d, 0);
}

void dispatcher_recover_again(struct dispatcher *d)
{
    if (d->env.dry_run)
        return;
    d->recovered = 0;
    d->last_cycle_ms = 0; /* and a full cycle right after: nothing was looked at meanwhile */
}

void dispatcher_once(struct dispatcher *d)
{
    d->once = 1;
    if (d->recovered)
        dispatcher_cycle(d);
    else
        reaper_start(d, 1);
}
