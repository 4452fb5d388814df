/* Journaling what happened to claimed attempts (Dolt worker thread): the
 * request bodies, the journal moves of a batch, and the POST results
 * (results.h). */
#include "results.h"

#include "agent.h"
#include "attempt.h"
#include "clock.h"
#include "crash.h"
#include "errors.h"
#include "log.h"
#include "notes.h"
#include "prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Worker: bodies and journal moves                                    */

/* "attempt N of M" counts what may reach the agent: the attempts used so
 * far (refusals that were not the bead's fault don't count), plus this
 * one. */
static int shown_attempt(struct session *s, const char *bead_id)
{
    int used = 0;
    if (!s->store || store_bead_attempts_used(s->store, bead_id, &used))
        used = 0;
    int max = (int)s->cfg->max_attempts;
    return used + 1 > max ? max : used + 1;
}

/* The body of one pick (its bead read, its shown attempt number set). */
static char *pick_body(const struct config *cfg, const struct pick *p)
{
    if (cfg->mode == MODE_BEADBOARD)
        return agent_beadboard_body(p->bead_id); /* BeadBoard builds the prompt itself */
    const char *tmpl = cfg->prompt_template ? cfg->prompt_template : prompt_default_template;
    char *prompt = prompt_render(tmpl, &p->bead, p->dispatch_id, p->shown, (int)cfg->max_attempts, cfg->bd_db);
    char *body = prompt ? agent_execute_body(prompt, cfg->agent_name, cfg->job_budget_usd,
                                             (long)(cfg->job_timeout_ms / 1000), p->bead_id,
                                             p->dispatch_id, p->attempt)
                        : NULL;
    free(prompt);
    return body;
}

void results_prepare_bodies(struct session *s, struct pick *const *of, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (of[i]->bead.id && !of[i]->body)
            of[i]->shown = shown_attempt(s, of[i]->bead_id);
}

int results_render_bodies(const struct config *cfg, struct pick *list)
{
    int rc = 0;
    for (struct pick *p = list; p; p = p->next)
        if (p->bead.id && p->shown > 0 && !p->body && !(p->body = pick_body(cfg, p)))
            rc = BS_ENOMEM;
    return rc;
}

int results_build_bodies(struct session *s, struct pick *list)
{
    for (struct pick *p = list; p; p = p->next) {
        if (p->state != AS_CLAIMED)
            continue;
        if (!p->body) {
            p->shown = shown_attempt(s, p->bead_id);
            if (!(p->body = pick_body(s->cfg, p)))
                return BS_ENOMEM;
        }
        bead_free(&p->bead); /* the body holds what the agent needs */
    }
    return 0;
}

/* Where results_journal moves p: to, or its decision's first step. */
static enum attempt_state journal_next(const struct pick *p, enum attempt_state to)
{
    if (to != AS_STATE_COUNT)
        return to;
    return p->dec.via != AS_STATE_COUNT ? p->dec.via : p->dec.next;
}

int results_journal(struct session *s, struct pick *list, enum attempt_state from, enum attempt_state to,
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
static int decide_answers(struct session *s, struct pick *list, int64_t now)
{
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

int results_note_owed(int rc)
{
    return rc == BS_ECONN || rc == BS_EIO || rc == BS_ECONFLICT || rc == BS_ENOMEM;
}

/* One batch of dispatched notes (at most BEADS_BATCH_MAX): one transaction,
 * one Dolt commit. Each pick's note_rc says how it went; the first failure's
 * server text goes to err (when err is still empty). */
static void notes_batch(struct session *s, const struct beads_schema *schema, const struct beads_writer *w,
                        struct dolt_conn *c, const struct bead_move *m, struct pick *const *of, size_t n,
                        char *err, size_t errlen)
{
    int rcs[BEADS_BATCH_MAX];
    beads_move_many(c, schema, w, m, n, "note", rcs);
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        struct pick *p = of[i];
        int nrc = rcs[i];
        p->note_rc = nrc;
        if (nrc == BS_ECONN)
            atomic_store(&s->dolt_lost, 1);
        if (results_note_owed(nrc)) {
            /* One line for the batch, not one per bead. */
            if (failed++ == 0) {
                log_warn("could not add the dispatched notes; retried later", "beads", LOG_INT(n), "first",
                         p->bead_id, "job", p->job_id, "error", bs_strerror(nrc));
                if (!err[0])
                    snprintf(err, errlen, "%s", dolt_conn_error(c));
            }
        } else if (nrc) {
            log_info("dispatched note not added: bead no longer in progress", "bead", p->bead_id,
                     "job", p->job_id);
        }
    }
    CRASH_POINT("after_notes_batch");
}

void results_notes_not_written(struct pick *list, int rc)
{
    for (struct pick *p = list; p; p = p->next) {
        if (p->note_due) {
            p->note_due = 0;
            p->note_rc = rc;
        }
    }
}

void results_write_notes(struct session *s, const struct beads_schema *schema, const struct beads_writer *w,
                         struct dolt_conn *c, struct pick *list, char *err, size_t errlen)
{
    struct bead_move m[BEADS_BATCH_MAX];
    struct pick *of[BEADS_BATCH_MAX];
    size_t n = 0, due = 0;
    for (struct pick *p = list; p; p = p->next)
        due += p->note_due != 0;
    char (*notes)[NOTES_MAX + 1] = due ? malloc((due < BEADS_BATCH_MAX ? due : BEADS_BATCH_MAX) * sizeof *notes) : NULL;
    if (!notes) {
        results_notes_not_written(list, BS_ENOMEM); /* owed: the next batch writes them */
        return;
    }
    for (struct pick *p = list; p; p = p->next) {
        if (!p->note_due)
            continue;
        p->note_due = 0;
        notes_dispatched(notes[n], sizeof notes[n], p->job_id);
        m[n] = (struct bead_move){
            .id = p->bead_id, .assignee = s->cfg->assignee, .from = "in_progress", .to = "in_progress",
            .note = notes[n], .event_type = "updated", .verb = "note",
        };
        of[n++] = p;
        if (n == BEADS_BATCH_MAX) {
            notes_batch(s, schema, w, c, m, of, n, err, errlen);
            n = 0;
        }
    }
    if (n > 0)
        notes_batch(s, schema, w, c, m, of, n, err, errlen);
    free(notes);
}

void results_owe_notes(struct session *s, struct owed *owed, struct pick *list, const char *err)
{
    for (struct pick *p = list; p; p = p->next) {
        int rc = p->note_rc;
        p->note_rc = 0;
        if (!results_note_owed(rc))
            continue;
        if (rc == BS_EIO) /* the bead refuses writes: its problem, on record; retried */
            session_write_failed_text(s, err && err[0] ? err : NULL, p->bead_id, p->attempt_id,
                                      "dispatched note", rc);
        char one[NOTES_MAX + 1];
        notes_dispatched(one, sizeof one, p->job_id);
        owed_add(owed, p->bead_id, one);
    }
}

/* Answers that only record (dispatched, unknown): one store transaction;
 * their dispatched notes are marked due, for the poster to hand to the
 * notes worker once the batch is done. */
static int record_sent(struct session *s, struct pick *list, int64_t now)
{
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
    int64_t t1 = clock_now_ms();
    for (struct pick *p = list; p; p = p->next) {
        if (p->journaled || p->dec.act != AA_RECORD)
            continue;
        p->journaled = 1;
        p->note_due = p->dec.owe_dispatched_note;
    }
    note_cycle_result(s, list, now);
    log_debug("record steps", "journal_ms", LOG_INT(t1 - now), "result_ms", LOG_INT(clock_now_ms() - t1));
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

int results_record(struct session *s, struct owed *owed, struct dolt_conn *c, struct pick *list)
{
    int64_t now = clock_now_ms();
    int rc, any = 0, any_back = 0;
    TEST_PAUSE("RECORD_RESULTS");
    owed_pay(owed, s, c);
    if ((rc = decide_answers(s, list, now)))
        return rc;
    for (struct pick *p = list; p; p = p->next) {
        any |= p->dec.act == AA_RECORD && !p->journaled;
        any_back |= p->dec.act == AA_MOVE;
    }
    if (any && (rc = record_sent(s, list, now)))
        return rc;
    if (!any_back)
        return 0;
    for (struct pick *p = list; p; p = p->next) {
        if (p->dec.act == AA_MOVE && !p->reverted && (rc = revert_claim(s, c, p)))
            return rc;
    }
    if ((rc = record_given_back(s, list, now)))
        return rc;
    if (!any)
        note_cycle_result(s, list, now);
    return 0;
}

