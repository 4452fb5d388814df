/* Step 3 of a reap pass (reap.h): for each attempt, the facts (the bead as
 * step 1 read it, the evidence in its notes and events, the job as step 2
 * saw it), attempt_decide's decision, and the writes that carry it out.
 * Worker thread. */
#include "settle.h"

#include "beads.h"
#include "clock.h"
#include "crash.h"
#include "errors.h"
#include "log.h"
#include "notes.h"
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies text into it->detail, cut at a UTF-8 boundary. */
static void set_detail(struct reap_item *it, const char *text)
{
    size_t n = text_utf8_prefix(text, strlen(text), sizeof it->detail - 1);
    memcpy(it->detail, text, n);
    it->detail[n] = '\0';
}

/* How long the bead has been quiet: the server's age at load plus the time
 * since (a difference of this process's clock, so its offset cancels). */
static int64_t quiet_ms(const struct settle *d, const struct reap_item *it, int64_t now)
{
    int64_t since_load = now - d->loaded_ms;
    return it->age_ms + (since_load > 0 ? since_load : 0);
}

static enum attempt_bead bead_of(const struct reap_item *it)
{
    if (!it->found)
        return AB_GONE;
    static const struct {
        const char *word;
        enum attempt_bead b;
    } words[] = {{"open", AB_OPEN}, {"in_progress", AB_IN_PROGRESS}, {"blocked", AB_BLOCKED}, {"closed", AB_CLOSED}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strcmp(it->status, words[i].word) == 0)
            return words[i].b;
    }
    return AB_OTHER;
}

/* Whether the bead's notes (or, when they were full, the move's events row)
 * hold our own "released for retry" note for this attempt's job: a pass
 * that wrote Dolt and died before its store commit. */
static int released_by_us(struct dolt_conn *c, const struct reap_item *it)
{
    struct bead b;
    char mark[STORE_JOB_ID_MAX + 32];
    if (beads_read(c, it->bead_id, 1, &b))
        return 0;
    int ours = notes_released_for_retry(b.notes, it->job_id);
    notes_reaper_job_mark(mark, sizeof mark, it->job_id);
    int any = b.notes && strstr(b.notes, mark);
    bead_free(&b);
    if (!ours && !any) /* the bead is open again, so this job's reaper note released it */
        ours = beads_has_mark(c, it->bead_id, NULL, mark) == 1;
    return ours;
}

/* The facts about one item, gathering only the evidence its state can use
 * (each costs a read). Negative: an error reading them. */
static int gather(struct settle *d, struct dolt_conn *c, struct reap_item *it, int64_t now,
                  struct attempt_facts *f)
{
    struct store *s = d->s->store;
    *f = (struct attempt_facts){
        .event = AE_RECONCILE, .tracked = it->attempt_id != 0, .state = it->state,
        .has_job_id = it->job_id[0] != 0, .dispatched_ms = it->dispatched_at, .recovery = d->recovery,
        .bead = bead_of(it), .mine = it->assignee && strcmp(it->assignee, d->s->cfg->assignee) == 0,
        .quiet_since_ms = now - quiet_ms(d, it, now), .notes_read = it->notes && it->notes[0],
        .job = it->job_id[0] ? it->job : AJ_NONE, .job_status = it->job_status,
        .job_finished_ms = it->job_finished_ms, .missed_passes = it->missed,
        .seen_maybe_running = it->seen_maybe_running, .now_ms = now,
    };
    int ours_in_progress = f->bead == AB_IN_PROGRESS && f->mine;
    if (!f->tracked) {
        f->adoptable = it->dispatch_id[0] && it->attempt > 0 && s;
        return 0;
    }
    if (it->state == AS_CLAIMING && ours_in_progress) {
        /* Our claim: the dispatch id in the notes, or in the claim's events
         * row when the note did not fit. */
        int rc = beads_has_mark(c, it->bead_id, it->notes, it->dispatch_id);
        if (rc < 0)
            return rc;
        f->claim_landed = rc;
    }
    if (it->state == AS_POSTING || it->state == AS_UNKNOWN)
        f->agent_reached = it->dispatch_id[0] && notes_agent_claimed(it->notes, it->dispatch_id);
    if (it->state == AS_DISPATCHED && ours_in_progress && it->notes) {
        char last[STORE_DISPATCH_ID_MAX];
        f->claimed_again = notes_claims(it->notes, last, sizeof last) > 0 && last[0] &&
                           strcmp(last, it->dispatch_id) != 0;
    }
    if (f->has_job_id && f->notes_read)
        f->dispatched_note = notes_has_dispatched(it->notes, it->job_id);
    if (f->bead == AB_OPEN && f->mine && f->has_job_id && it->state >= AS_POSTING)
        f->released_by_us = released_by_us(c, it);
    if (ours_in_progress || f->released_by_us) {
        int used = 0;
        if (store_bead_attempts_used(s, it->bead_id, &used))
            used = 1; /* can't tell: the first delay */
        f->attempts_used = used;
    }
    return 0;
}

/* For a closed bead: which attempt's agent closed it, from its notes'
 * "completed by agent <id>" (the id the prompt gave). */
static void credit_close(struct dolt_conn *c, const struct reap_item *it, char *detail, size_t len)
{
    struct bead b;
    char id[STORE_DISPATCH_ID_MAX + 32];
    snprintf(detail, len, "bead closed");
    if (beads_read(c, it->bead_id, 1, &b))
        return;
    if (notes_agent_completed(b.notes, id, sizeof id)) {
        if (strcmp(id, it->dispatch_id) == 0)
            snprintf(detail, len, "bead closed by this attempt's agent (completed by agent %s)", it->dispatch_id);
        else
            snprintf(detail, len, "bead closed; the close names %.64s, not this attempt (%s)", id,
                     it->dispatch_id);
    }
    bead_free(&b);
}

/* The journal detail of a decision that only records. */
static void record_detail(struct dolt_conn *c, const struct reap_item *it, enum attempt_rule rule,
                          char *out, size_t len)
{
    char last[STORE_DISPATCH_ID_MAX];
    switch (rule) {
    case AR_BEAD_GONE:
        snprintf(out, len, "bead no longer exists");
        return;
    case AR_CLAIM_NOT_MADE:
        snprintf(out, len, "claim not made (bead %s)", it->found ? it->status : "gone");
        return;
    case AR_NOT_POSTED_MOVED:
        snprintf(out, len, "bead is %s before dispatch; not posted", it->status);
        return;
    case AR_CLOSED:
        credit_close(c, it, out, len);
        return;
    case AR_REASSIGNED:
        snprintf(out, len, "bead reassigned to %.100s; stopped tracking", it->assignee ? it->assignee : "nobody");
        return;
    case AR_SET_BLOCKED:
        snprintf(out, len, "bead set blocked (by the agent or a person)");
        return;
    case AR_SUPERSEDED:
        notes_claims(it->notes, last, sizeof last);
        snprintf(out, len, "superseded: the bead was claimed again (dispatch %s); stopped tracking", last);
        return;
    case AR_RELEASED_EARLIER:
        snprintf(out, len, "released for retry (found after a restart)");
        return;
    case AR_REACHED:
        snprintf(out, len, "reached the agent (its claim note carries dispatch %s); job id unknown, "
                 "supervised by the bead's activity", it->dispatch_id);
        return;
    default:
        snprintf(out, len, "bead moved to %.32s by someone else; stopped tracking", it->status);
        return;
    }
}

/* The note of a decision that moves the bead. */
static void move_note(const struct settle *d, const struct reap_item *it, const struct attempt_facts *f,
                      const struct attempt_decision *dec, char *out, size_t len)
{
    const struct config *cfg = d->s->cfg;
    int64_t quiet = f->now_ms - attempt_quiet_since(f);
    char what[NOTES_MAX + 1];
    switch (dec->rule) {
    case AR_HARD_LIMIT:
        notes_reap_hard_limit(out, len, it->job_id, agent_job_status_name(it->job_status),
                              f->now_ms - it->dispatched_at, (int64_t)(cfg->job_timeout_ms + cfg->stale_after_ms));
        return;
    case AR_STALE:
        notes_reap_stale(out, len, quiet_ms(d, it, f->now_ms), (int64_t)cfg->stale_after_ms);
        return;
    case AR_NO_ANSWER_QUIET:
        notes_why_no_job_id(what, sizeof what, it->dispatch_id, f->agent_reached, quiet);
        break;
    case AR_JOB_MISSING:
        notes_why_missing(what, sizeof what, it->job_id, it->seen_maybe_running);
        break;
    case AR_MAYBE_RUNNING_QUIET:
        notes_why_maybe_running(what, sizeof what, it->job_line, quiet);
        break;
    default: /* AR_EXITED */
        snprintf(what, sizeof what, "%s", it->job_line);
        break;
    }
    if (dec->give_up)
        notes_reap_give_up(out, len, what, f->attempts_used, (int)cfg->max_attempts);
    else
        notes_reap_retry(out, len, what, f->attempts_used, (int)cfg->max_attempts);
}

/* The outcome of one item's move in the batch: 0 moved, 1 the bead changed
 * meanwhile or refused the write (recorded, left for the next pass), or a
 * negative error that ends the pass. */
static int move_outcome(struct settle *d, struct dolt_conn *c, struct reap_item *it, const char *verb, int rc)
{
    if (rc == BS_ESTATE || rc == BS_ECONFLICT) {
        /* Someone moved the bead after we read it: record, re-read next pass. */
        store_event_add(d->s->store, it->bead_id, it->attempt_id, "lost_race", it->job_id[0] ? it->job_id : NULL,
                        "reaper: the bead changed between read and write; not overwritten", clock_now_ms());
        it->reason = "lost_race";
        snprintf(it->detail, sizeof it->detail, "bead changed before the %s", verb);
        return 1;
    }
    if (rc && rc != BS_ECONN) {
        /* This bead's problem (e.g. a row the server refuses): recorded, left
         * for the next pass; the other beads go on. */
        session_write_failed(d->s, c, it->bead_id, it->attempt_id, verb, rc);
        it->reason = "write_failed";
        snprintf(it->detail, sizeof it->detail, "the %s could not be written: %s", verb, bs_strerror(rc));
        return 1;
    }
    return rc;
}

/* The journal entries of the moves made: one store transaction. */
static int record_moves(struct settle *d, struct reap_item **items, const int *rcs, size_t n)
{
    struct store *s = d->s->store;
    int64_t now = clock_now_ms();
    int rc = store_begin(s);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct reap_item *it = items[i];
        if (rcs[i] != 0)
            continue;
        if (!it->attempt_id) {
            rc = store_event_add(s, it->bead_id, 0, "orphan_blocked", NULL, it->move_note, now);
            continue;
        }
        struct store_transition t = {.outcome = it->dec.outcome, .detail = it->move_note,
                                     .bead_updated_at = it->wrote_dt};
        rc = store_attempt_transition(s, it->attempt_id, it->state, it->dec.next, &t, now);
        if (rc == 0 && it->dec.retry_at)
            rc = store_bead_set_retry(s, it->bead_id, it->dec.retry_at);
    }
    if (rc) {
        store_rollback(s);
        return rc;
    }
    if ((rc = store_commit(s)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] == 0) {
            items[i]->reason = items[i]->dec.reason;
            set_detail(items[i], items[i]->move_note);
        }
    }
    return 0;
}

/* One batch of at most BEADS_BATCH_MAX moves: Dolt first, then the store. */
static int move_batch(struct settle *d, struct dolt_conn *c, struct reap_item **items, size_t n)
{
    struct bead_move m[BEADS_BATCH_MAX] = {{0}};
    int rcs[BEADS_BATCH_MAX];
    for (size_t i = 0; i < n; i++) {
        struct reap_item *it = items[i];
        m[i] = (struct bead_move){
            .id = it->bead_id, .assignee = d->s->cfg->assignee, .from = "in_progress", .to = it->dec.bead_to,
            .expect_updated_at = it->updated_at, .note = it->move_note, .event_type = "status_changed",
            .verb = strcmp(it->dec.bead_to, "open") == 0 ? "release" : "block", .wrote_updated_at = it->wrote_dt,
        };
    }
    const char *verb = m[0].verb; /* release, block, or both: reap */
    for (size_t i = 1; i < n; i++) {
        if (strcmp(m[i].verb, verb) != 0)
            verb = "reap";
    }
    int rc = beads_move_many(c, &d->s->schema, &d->s->writer, m, n, verb, rcs);
    if (rc)
        return rc;
    int moved = 0;
    for (size_t i = 0; i < n; i++) {
        int orc = move_outcome(d, c, items[i], m[i].verb, rcs[i]);
        if (orc < 0)
            return orc;
        if (orc > 0)
            rcs[i] = 1;
        moved |= rcs[i] == 0;
    }
    if (!moved)
        return 0;
    CRASH_POINT("after_reap_dolt_write");
    if ((rc = record_moves(d, items, rcs, n)))
        return rc;
    CRASH_POINT("after_reap_commit");
    return 0;
}

int settle_moves(struct settle *d, struct dolt_conn *c, struct reap_item *all, size_t count)
{
    struct reap_item *items[BEADS_BATCH_MAX];
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        struct reap_item *it = &all[i];
        if (!it->move_pending)
            continue;
        it->move_pending = 0;
        items[n++] = it;
        if (n == BEADS_BATCH_MAX) {
            int rc = move_batch(d, c, items, n);
            if (rc)
                return rc;
            n = 0;
        }
    }
    return n ? move_batch(d, c, items, n) : 0;
}

/* A claimed attempt whose POST never left: queue it to be sent now. */
static int queue_repost(struct settle *d, struct dolt_conn *c, struct reap_item *it)
{
    struct pick *p = calloc(1, sizeof *p);
    if (!p || !(p->bead_id = strdup(it->bead_id))) {
        free(p);
        return BS_ENOMEM;
    }
    p->attempt_id = it->attempt_id;
    p->attempt = it->attempt;
    memcpy(p->dispatch_id, it->dispatch_id, sizeof p->dispatch_id);
    snprintf(p->claim_dt, sizeof p->claim_dt, "%s", it->updated_at);
    int rc = beads_read(c, it->bead_id, 0, &p->bead);
    if (rc) {
        pick_free(p);
        return rc;
    }
    p->state = AS_CLAIMED;
    p->next = d->repost;
    d->repost = p;
    it->reason = "recovered";
    snprintf(it->detail, sizeof it->detail, "claimed but never posted: posting now");
    return 0;
}

/* The first step of a decision that goes through two states. */
static int record_via(struct settle *d, struct reap_item *it, const struct attempt_decision *dec, int64_t now)
{
    char detail[300];
    struct store_transition t = {0};
    if (dec->via == AS_CLAIMED) {
        t.bead_updated_at = it->updated_at;
    } else {
        record_detail(NULL, it, AR_REACHED, detail, sizeof detail);
        t.detail = detail;
    }
    int rc = store_attempt_transition(d->s->store, it->attempt_id, it->state, dec->via, &t, now);
    if (rc)
        return rc;
    it->state = dec->via;
    if (dec->via == AS_UNKNOWN) {
        it->reason = "reached";
        set_detail(it, detail);
    }
    return 0;
}

static struct attempt_limits limits_of(const struct config *cfg)
{
    return (struct attempt_limits){
        .stale_after_ms = (int64_t)cfg->stale_after_ms, .job_timeout_ms = (int64_t)cfg->job_timeout_ms,
        .retry_backoff_ms = (int64_t)cfg->retry_backoff_ms, .max_attempts = (int)cfg->max_attempts,
        .min_missed_passes = MIN_MISSED_PASSES,
    };
}

/* Carries a decision out. */
static int carry_out(struct settle *d, struct dolt_conn *c, struct reap_item *it,
                     const struct attempt_facts *f, const struct attempt_decision *dec)
{
    char text[NOTES_MAX + 1];
    int rc;
    if (dec->via != AS_STATE_COUNT && (rc = record_via(d, it, dec, f->now_ms)))
        return rc;
    if (dec->owe_dispatched_note) {
        notes_dispatched(text, sizeof text, it->job_id);
        owed_add(d->owed, it->bead_id, text);
        it->reason = "noted";
        snprintf(it->detail, sizeof it->detail, "dispatched note was missing: written now");
    }
    switch (dec->act) {
    case AA_NOTHING:
        return 0;
    case AA_POST:
        return queue_repost(d, c, it);
    case AA_MOVE:
        /* Made with the pass's other moves, in one batch (settle_moves). */
        move_note(d, it, f, dec, text, sizeof text);
        free(it->move_note);
        if (!(it->move_note = strdup(text)))
            return BS_ENOMEM;
        it->dec = *dec;
        it->move_pending = 1;
        return 0;
    case AA_RECORD: {
        record_detail(c, it, dec->rule, text, sizeof text);
        struct store_transition t = {.detail = text};
        if (dec->retry_at && (rc = store_bead_set_retry(d->s->store, it->bead_id, dec->retry_at)))
            return rc;
        rc = store_attempt_transition(d->s->store, it->attempt_id, it->state, dec->next, &t, clock_now_ms());
        if (rc == 0) {
            it->reason = dec->reason;
            set_detail(it, text);
        }
        return rc;
    }
    case AA_ADOPT: {
        struct store_attempt a;
        rc = store_attempt_adopt(d->s->store, it->bead_id, it->dispatch_id, it->job_id, it->attempt,
                                 clock_now_ms(), &a);
        if (rc == 0) {
            it->reason = dec->reason;
            snprintf(it->detail, sizeof it->detail, "another instance's attempt %d (dispatch %s, "
                     "job %s) is now supervised here", a.attempt, it->dispatch_id, it->job_id);
        }
        return rc;
    }
    }
    return 0;
}

int settle_item(struct settle *d, struct dolt_conn *c, struct reap_item *it, int64_t now)
{
    struct attempt_facts f;
    struct attempt_limits lim = limits_of(d->s->cfg);
    int rc = gather(d, c, it, now, &f);
    if (rc)
        return rc;
    struct attempt_decision dec = attempt_decide(&f, &lim);
    rc = carry_out(d, c, it, &f, &dec);
    if (dec.act == AA_ADOPT && (rc == BS_ESTATE || rc == BS_EINVAL)) {
        /* The journal knows that dispatch (or can't take it): not adopted;
         * decide as for any other orphan. */
        f.adoptable = 0;
        dec = attempt_decide(&f, &lim);
        rc = carry_out(d, c, it, &f, &dec);
    }
    return rc;
}
