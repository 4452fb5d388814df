#include "poster.h"

#include "agent_client.h"
#include "attempt.h"
#include "clock.h"
#include "crash.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "notes.h"
#include "prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A batch of results that could not be journaled is retried after this. */
#define RESULTS_RETRY_MS 1000

struct poster {
    struct session *s;
    struct throttle *throttle;
    struct owed *owed;
    struct poster_hooks hooks;
    int once;
    /* Loop thread. */
    int sending;                /* a poster_send is not done yet */
    size_t pending;             /* POSTs in flight */
    int rc;                     /* first journaling error of this send */
    struct pick *results;       /* answered, waiting to be journaled */
    int flush_in_flight;
    int64_t retry_at;           /* a failed batch is retried then */
    int failing;                /* the last batch failed (logged once per run of failures) */
};

struct flush {
    struct poster *p;
    struct pick *list;
};

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

int poster_init(struct poster **out, struct session *s, struct throttle *t, struct owed *owed,
                const struct poster_hooks *hooks)
{
    struct poster *p = calloc(1, sizeof *p);
    if (!p)
        return BS_ENOMEM;
    p->s = s;
    p->throttle = t;
    p->owed = owed;
    p->hooks = *hooks;
    *out = p;
    return 0;
}

void poster_free(struct poster *p)
{
    if (!p)
        return;
    picks_free(p->results);
    free(p);
}

void poster_set_once(struct poster *p, int once) { p->once = once; }

int poster_has_results(const struct poster *p) { return p->results != NULL; }

/* ------------------------------------------------------------------ */
/* Worker: bodies and journal moves                                    */

int poster_build_bodies(struct session *s, struct pick *list)
{
    const struct config *cfg = s->cfg;
    const char *tmpl = cfg->prompt_template ? cfg->prompt_template : prompt_default_template;
    for (struct pick *p = list; p; p = p->next) {
        if (p->state != AS_CLAIMED || p->body)
            continue;
        if (cfg->mode == MODE_BEADBOARD) {
            /* BeadBoard builds the prompt itself. */
            if (!(p->body = agent_beadboard_body(p->bead_id)))
                return BS_ENOMEM;
            continue;
        }
        /* "attempt N of M" counts what may reach the agent: the attempts
         * used so far (refusals that were not the bead's fault don't
         * count), plus this one. */
        int used = 0;
        if (!s->store || store_bead_attempts_used(s->store, p->bead_id, &used))
            used = 0;
        int shown = used + 1 > (int)cfg->max_attempts ? (int)cfg->max_attempts : used + 1;
        char *prompt = prompt_render(tmpl, &p->bead, p->dispatch_id, shown, (int)cfg->max_attempts, cfg->bd_db);
        p->body = prompt ? agent_execute_body(prompt, cfg->agent_name, cfg->job_budget_usd,
                                              (long)(cfg->job_timeout_ms / 1000), p->bead_id,
                                              p->dispatch_id, p->attempt)
                         : NULL;
        free(prompt);
        if (!p->body)
            return BS_ENOMEM;
        bead_free(&p->bead); /* the body holds what the agent needs */
    }
    return 0;
}

/* Where poster_journal moves p: to, or its decision's first step. */
static enum attempt_state journal_next(const struct pick *p, enum attempt_state to)
{
    if (to != AS_STATE_COUNT)
        return to;
    return p->dec.via != AS_STATE_COUNT ? p->dec.via : p->dec.next;
}

int poster_journal(struct session *s, struct pick *list, enum attempt_state from, enum attempt_state to,
                   int64_t now)
{
    int rc = store_begin(s->store);
    if (rc)
        return rc;
    for (struct pick *p = list; p; p = p->next) {
        enum attempt_state next = journal_next(p, to);
        if (p->state != from || next == from)
            continue;
        struct store_transition t = {
            .detail = p->detail[0] ? p->detail : NULL,
            .bead_updated_at = next == AS_CLAIMED ? p->claim_dt : NULL,
        };
        if ((rc = store_attempt_transition(s->store, p->attempt_id, from, next, &t, now))) {
            store_rollback(s->store);
            return rc;
        }
    }
    if ((rc = store_commit(s->store)))
        return rc;
    for (struct pick *p = list; p; p = p->next) {
        if (p->state == from)
            p->state = journal_next(p, to);
    }
    return 0;
}

/* Records, for `beads-sched status`, when dispatching last did something
 * and what; only cycles with results get here, so an idle daemon writes
 * nothing. Also refreshes the in-flight gauge. */
static void note_cycle_result(struct session *s, const struct pick *list, int64_t now)
{
    int n[AR_RULE_COUNT] = {0};
    for (const struct pick *p = list; p; p = p->next)
        n[p->dec.rule]++;
    char at[24], result[160];
    snprintf(at, sizeof at, "%lld", (long long)now); /* status shows its age */
    /* refused: every claim given back, whether the bead's fault or not */
    snprintf(result, sizeof result, "dispatched %d, refused %d, unknown %d", n[AR_ACCEPTED],
             n[AR_REFUSED] + n[AR_GIVEN_BACK_FULL] + n[AR_GIVEN_BACK_AUTH], n[AR_AMBIGUOUS]);
    if (store_setting_set(s->store, "last_cycle_at", at, now) == 0)
        store_setting_set(s->store, "last_cycle_result", result, now);
    session_in_flight_gauge(s);
}

/* The decision on each answer not decided yet: what attempt_decide says,
 * given how many attempts the bead has used. */
static int decide_answers(struct poster *ps, struct pick *list, int64_t now)
{
    struct session *s = ps->s;
    const struct config *cfg = s->cfg;
    struct attempt_limits lim = {
        .stale_after_ms = (int64_t)cfg->stale_after_ms, .job_timeout_ms = (int64_t)cfg->job_timeout_ms,
        .retry_backoff_ms = (int64_t)cfg->retry_backoff_ms, .max_attempts = (int)cfg->max_attempts,
    };
    for (struct pick *p = list; p; p = p->next) {
        if (p->decided)
            continue;
        int rc;
        if (p->verdict == APV_REJECTED && (rc = store_bead_attempts_used(s->store, p->bead_id, &p->used)))
            return rc;
        struct attempt_facts f = {
            .event = AE_ANSWERED, .tracked = 1, .state = AS_POSTING, .attempts_used = p->used,
            .verdict = p->verdict, .beadboard = cfg->mode == MODE_BEADBOARD, .now_ms = now,
        };
        p->dec = attempt_decide(&f, &lim);
        p->decided = 1;
    }
    return 0;
}

/* Answers that only record (dispatched, unknown): one store transaction,
 * then the dispatched notes (a note that fails is owed). */
static int record_sent(struct poster *ps, struct dolt_conn *c, struct pick *list, int64_t now)
{
    struct session *s = ps->s;
    int rc = store_begin(s->store);
    if (rc)
        return rc;
    for (struct pick *p = list; p; p = p->next) {
        if (p->journaled || p->dec.act != AA_RECORD)
            continue;
        struct store_transition t = {
            .job_id = p->dec.next == AS_DISPATCHED ? p->job_id : NULL,
            .detail = p->dec.next == AS_DISPATCHED ? NULL : p->detail,
        };
        if ((rc = store_attempt_transition(s->store, p->attempt_id, AS_POSTING, p->dec.next, &t, now))) {
            store_rollback(s->store);
            return rc;
        }
    }
    if ((rc = store_commit(s->store)))
        return rc;
    CRASH_POINT("after_dispatched_commit");
    char note[NOTES_MAX + 1];
    for (struct pick *p = list; p; p = p->next) {
        if (p->journaled || p->dec.act != AA_RECORD)
            continue;
        p->journaled = 1;
        if (!p->dec.owe_dispatched_note)
            continue;
        notes_dispatched(note, sizeof note, p->job_id);
        int nrc = session_add_note(s, c, p->bead_id, note);
        if (nrc == BS_EIO) /* the bead refuses writes: its problem, on record; retried */
            session_write_failed(s, c, p->bead_id, p->attempt_id, "dispatched note", nrc);
        if (nrc == BS_ECONN || nrc == BS_EIO || nrc == BS_ECONFLICT) {
            log_warn("could not add the dispatched note; retried later", "bead", p->bead_id,
                     "job", p->job_id, "error", bs_strerror(nrc));
            owed_add(ps->owed, p->bead_id, note);
        } else if (nrc) {
            log_info("dispatched note not added: bead no longer in progress", "bead", p->bead_id,
                     "job", p->job_id);
        }
    }
    note_cycle_result(s, list, now);
    return 0;
}

/* Gives one refused or given-back claim back in Dolt (guarded by what our
 * claim wrote): open again, or blocked once attempts are used up; a refusal
 * of the bead itself (400/422) says why in a note. */
static int revert_claim(struct session *s, struct dolt_conn *c, struct pick *p)
{
    char note[NOTES_MAX + 1];
    int refused = p->dec.rule == AR_REFUSED;
    if (refused)
        notes_refused(note, sizeof note, p->status, p->detail, p->used, (int)s->cfg->max_attempts);
    struct bead_move m = {
        .id = p->bead_id, .assignee = s->cfg->assignee, .from = "in_progress", .to = p->dec.bead_to,
        .expect_updated_at = p->claim_dt, .note = refused ? note : NULL, .event_type = "status_changed",
        .verb = p->dec.give_up ? "block" : "release",
    };
    int mrc = beads_move(c, &s->schema, &s->writer, &m);
    if (mrc == BS_ECONN)
        return mrc; /* retried: the batch stays in memory */
    if (mrc) {
        if (mrc != BS_ESTATE && mrc != BS_ECONFLICT)
            session_write_failed(s, NULL, p->bead_id, p->attempt_id, "claim release", mrc);
        size_t k = strlen(p->detail);
        snprintf(p->detail + k, sizeof p->detail - k, " (claim not reverted: %s)", bs_strerror(mrc));
    }
    p->reverted = 1;
    CRASH_POINT("after_dolt_revert");
    return 0;
}

/* Journals the claims given back (after revert_claim). */
static int record_given_back(struct session *s, struct pick *list, int64_t now)
{
    int rc = store_begin(s->store);
    if (rc)
        return rc;
    for (struct pick *p = list; p; p = p->next) {
        if (p->dec.act != AA_MOVE)
            continue;
        char detail[STORE_DETAIL_MAX];
        if (p->dec.rule == AR_REFUSED)
            snprintf(detail, sizeof detail, "HTTP %ld: %.900s", p->status, p->detail);
        else
            snprintf(detail, sizeof detail, "claim given back, not an attempt: %.900s", p->detail);
        struct store_transition t = {.detail = detail, .outcome = p->dec.outcome};
        if ((rc = store_attempt_transition(s->store, p->attempt_id, AS_POSTING, p->dec.next, &t, now)) ||
            (p->dec.retry_at && (rc = store_bead_set_retry(s->store, p->bead_id, p->dec.retry_at)))) {
            store_rollback(s->store);
            return rc;
        }
    }
    return store_commit(s->store);
}

/* Journals a batch of POST results. Each pick remembers how far it got, so
 * a batch that failed (store locked, Dolt down) is retried whole without
 * redoing anything. Worker thread. */
static int record_results(struct dolt_conn *c, void *arg)
{
    struct flush *f = arg;
    struct poster *ps = f->p;
    struct session *s = ps->s;
    int64_t now = clock_now_ms();
    int rc, any = 0, any_back = 0;
    TEST_PAUSE("RECORD_RESULTS");
    owed_pay(ps->owed, s, c);
    if ((rc = decide_answers(ps, f->list, now)))
        return rc;
    for (struct pick *p = f->list; p; p = p->next) {
        any |= p->dec.act == AA_RECORD && !p->journaled;
        any_back |= p->dec.act == AA_MOVE;
    }
    if (any && (rc = record_sent(ps, c, f->list, now)))
        return rc;
    if (!any_back)
        return 0;
    for (struct pick *p = f->list; p; p = p->next) {
        if (p->dec.act == AA_MOVE && !p->reverted && (rc = revert_claim(s, c, p)))
            return rc;
    }
    if ((rc = record_given_back(s, f->list, now)))
        return rc;
    if (!any)
        note_cycle_result(s, f->list, now);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Loop: sending and the results                                       */

static void flush(struct poster *ps);

static void maybe_done(struct poster *ps)
{
    if (!ps->sending || ps->pending || ps->flush_in_flight || ps->results)
        return;
    ps->sending = 0;
    int rc = ps->rc;
    ps->rc = 0;
    ps->hooks.done(ps->hooks.arg, rc);
}

static void log_result(struct poster *ps, struct pick *p)
{
    char ms[32];
    snprintf(ms, sizeof ms, "%.0f", (double)(clock_now_ms() - p->posted_ms));
    if (p->dec.reason)
        metrics_count(MC_DISPATCHES, p->dec.reason, 1);
    switch (p->dec.rule) {
    case AR_ACCEPTED:
        if (p->cand_updated_at) {
            int64_t since = beads_datetime_ms(p->cand_updated_at);
            if (since > 0)
                metrics_observe(MH_DISPATCH_LATENCY, (double)(clock_now_ms() - since) / 1000.0);
        }
        log_info("dispatched", "bead", p->bead_id, "attempt", LOG_INT(p->attempt), "job",
                 p->job_id, "dispatch", p->dispatch_id, "post_ms", ms);
        break;
    case AR_REFUSED:
        ps->hooks.retry_due(ps->hooks.arg, p->posted_ms + (int64_t)ps->s->cfg->retry_backoff_ms);
        log_warn("dispatch refused by the service; claim released", "bead", p->bead_id, "attempt",
                 LOG_INT(p->attempt), "dispatch", p->dispatch_id, "status", LOG_INT(p->status),
                 "detail", p->detail);
        break;
    case AR_GIVEN_BACK_FULL:
    case AR_GIVEN_BACK_AUTH:
        log_info("claim given back; not an attempt", "bead", p->bead_id, "dispatch", p->dispatch_id,
                 "verdict", agent_post_verdict_name(p->verdict), "detail", p->detail);
        if (p->verdict == APV_FULL || p->verdict == APV_NOT_SENT)
            throttle_defer(ps->throttle, p->bead_id);
        break;
    case AR_AMBIGUOUS:
        log_warn("dispatch outcome unknown; left for the reaper", "bead", p->bead_id,
                 "attempt", LOG_INT(p->attempt), "dispatch", p->dispatch_id, "detail", p->detail);
        break;
    default:
        break;
    }
    switch (p->dec.service) {
    case AV_SAME:
        break;
    case AV_TAKES_JOBS:
        throttle_accepted(ps->throttle);
        break;
    case AV_FULL:
        throttle_full(ps->throttle, p->status, p->detail);
        break;
    case AV_TOKEN_REFUSED:
        throttle_gate_close(ps->throttle, GATE_TOKEN, p->status);
        break;
    case AV_URL_WRONG:
        throttle_gate_close(ps->throttle, GATE_URL, p->status);
        break;
    }
}

static void results_done(int rc, void *arg)
{
    struct flush *f = arg;
    struct poster *ps = f->p;
    ps->flush_in_flight = 0;
    if (rc && !session_stopping(ps->s) && !ps->once) {
        /* Nothing the agent said is dropped: the batch waits in memory
         * (dispatching waits with it: the send is not over) and is tried
         * again; what was already written is not redone. */
        if (!ps->failing)
            log_error("could not journal dispatch results; keeping them and retrying", "error",
                      bs_strerror(rc));
        ps->failing = 1;
        ps->retry_at = clock_now_ms() + RESULTS_RETRY_MS;
        struct pick **tail = &f->list;
        while (*tail)
            tail = &(*tail)->next;
        *tail = ps->results;
        ps->results = f->list;
        free(f);
        return;
    }
    if (rc)
        log_error("could not journal dispatch results; recovery settles them", "error", bs_strerror(rc));
    else if (ps->failing) {
        log_info("dispatch results journaled after retrying");
        ps->failing = 0;
    }
    for (struct pick *p = f->list; p; p = p->next)
        log_result(ps, p);
    if (rc && !ps->rc)
        ps->rc = rc;
    picks_free(f->list);
    free(f);
    flush(ps);
    maybe_done(ps);
}

/* Hands the queued results to the worker, one batch at a time: results
 * that arrive while a batch is being journaled wait for the next, so a busy
 * cycle costs one fsync per batch rather than per bead. */
static void flush(struct poster *ps)
{
    if (ps->flush_in_flight || !ps->results)
        return;
    struct flush *f = calloc(1, sizeof *f);
    if (!f)
        return;
    f->p = ps;
    f->list = ps->results;
    ps->results = NULL;
    if (dolt_submit(ps->s->dolt, record_results, results_done, f)) {
        /* Worker stopped: results stay in posting, recovery reconciles. */
        picks_free(f->list);
        free(f);
        return;
    }
    ps->flush_in_flight = 1;
}

void poster_retry(struct poster *ps)
{
    if (ps->results && !ps->flush_in_flight && !session_stopping(ps->s) && clock_now_ms() >= ps->retry_at)
        flush(ps);
}

static void queue_result(struct poster *ps, struct pick *p)
{
    p->next = ps->results;
    ps->results = p;
}

static void post_done(const struct http_response *r, void *arg)
{
    struct pick *p = arg;
    struct poster *ps = p->poster;
    struct agent_post_answer a;
    agent_read_post(r, &a);
    ps->pending--;
    if (a.cancelled) {
        /* Shutdown: the attempt stays in posting; recovery decides. */
        CRASH_POINT("after_post_response");
        pick_free(p);
    } else {
        if (a.error_kind)
            metrics_count(MC_AGENT_ERRORS, a.error_kind, 1);
        CRASH_POINT("after_post_response");
        p->status = a.status;
        p->verdict = a.verdict;
        memcpy(p->job_id, a.job_id, sizeof p->job_id);
        if (a.detail[0])
            memcpy(p->detail, a.detail, sizeof p->detail);
        queue_result(ps, p);
    }
    flush(ps);
    maybe_done(ps);
}

void poster_send(struct poster *ps, struct pick *list)
{
    ps->sending = 1;
    for (struct pick *p = list, *next; p; p = next) {
        next = p->next;
        p->next = NULL;
        p->poster = ps;
        if (p->state != AS_POSTING || session_stopping(ps->s)) {
            /* A claimed pick not sent because of shutdown stays in posting. */
            pick_free(p);
            continue;
        }
        p->posted_ms = clock_now_ms();
        if (agent_request(ps->s->http, ps->s->cfg, AGENT_EXECUTE, NULL, p->body, post_done, p) == 0) {
            ps->pending++;
            free(p->body); /* the client copied it */
            p->body = NULL;
        } else {
            /* Never left this process: not an attempt. */
            p->verdict = APV_NOT_SENT;
            p->status = 0;
            snprintf(p->detail, sizeof p->detail, "request could not be started");
            queue_result(ps, p);
        }
    }
    flush(ps);
    maybe_done(ps);
}
