/* The life of an attempt: attempt_decide and its rules. Pure; the rows of
 * the README's failure table, one branch each. See attempt.h. */
#include "attempt.h"

#include <stddef.h>

static const char *const rule_names[AR_RULE_COUNT] = {
    [AR_NONE] = "none",
    [AR_CLAIM_NOT_MADE] = "claim_not_made",
    [AR_CLAIM_LOST] = "claim_lost",
    [AR_CLAIM_FAILED] = "claim_failed",
    [AR_CLAIM_UNCERTAIN] = "claim_uncertain",
    [AR_CLAIMED] = "claimed",
    [AR_NOT_POSTED_MOVED] = "not_posted_moved",
    [AR_ACCEPTED] = "accepted",
    [AR_AMBIGUOUS] = "ambiguous",
    [AR_REFUSED] = "refused",
    [AR_GIVEN_BACK_FULL] = "given_back_full",
    [AR_GIVEN_BACK_AUTH] = "given_back_auth",
    [AR_BEAD_GONE] = "bead_gone",
    [AR_CLOSED] = "closed",
    [AR_REASSIGNED] = "reassigned",
    [AR_SET_BLOCKED] = "set_blocked",
    [AR_SUPERSEDED] = "superseded",
    [AR_RELEASED_EARLIER] = "released_earlier",
    [AR_MOVED_BY_OTHERS] = "moved_by_others",
    [AR_REACHED] = "reached",
    [AR_NO_ANSWER_QUIET] = "no_answer_quiet",
    [AR_ALIVE] = "alive",
    [AR_EXITED] = "exited",
    [AR_MAYBE_RUNNING_QUIET] = "maybe_running_quiet",
    [AR_JOB_MISSING] = "job_missing",
    [AR_HARD_LIMIT] = "hard_limit",
    [AR_STALE] = "stale",
    [AR_ADOPTED] = "adopted",
};

const char *attempt_rule_name(enum attempt_rule r)
{
    return (unsigned)r < AR_RULE_COUNT ? rule_names[r] : "?";
}

int64_t attempt_backoff_ms(int64_t base_ms, int steps, int64_t cap_ms)
{
    int64_t backoff = base_ms;
    for (int i = 1; i < steps && backoff < cap_ms; i++)
        backoff *= 2;
    if (backoff > cap_ms)
        backoff = cap_ms;
    return backoff > 0 ? backoff : 1;
}

int64_t attempt_quiet_since(const struct attempt_facts *f)
{
    return f->job_finished_ms > f->quiet_since_ms ? f->job_finished_ms : f->quiet_since_ms;
}

/* A non-terminal state of the table (common/attempt_states.h). */
static int in_flight(enum attempt_state st)
{
    switch (st) {
#define STATE_IN_FLIGHT(e, word, terminal, next) case e: return !(terminal);
        ATTEMPT_STATES(STATE_IN_FLIGHT)
#undef STATE_IN_FLIGHT
    case AS_STATE_COUNT:
        break;
    }
    return 0;
}

/* The bead has been quiet (and the job over, if it ended) for STALE_AFTER. */
static int quiet(const struct attempt_facts *f, const struct attempt_limits *l)
{
    return f->now_ms - attempt_quiet_since(f) >= l->stale_after_ms;
}

/* ------------------------------------------------------------------ */
/* The shapes of a decision                                            */

static void record(struct attempt_decision *d, enum attempt_rule rule, enum attempt_state next,
                   const char *reason)
{
    d->act = AA_RECORD;
    d->rule = rule;
    d->next = next;
    d->reason = reason;
}

static void move(struct attempt_decision *d, enum attempt_rule rule, const char *bead_to,
                 enum attempt_state next, const char *outcome, const char *reason)
{
    d->act = AA_MOVE;
    d->rule = rule;
    d->bead_to = bead_to;
    d->next = next;
    d->outcome = outcome;
    d->reason = reason;
}

static void post(struct attempt_decision *d, enum attempt_state via, const char *reason)
{
    d->act = AA_POST;
    d->rule = AR_CLAIMED;
    d->via = via;
    d->next = AS_POSTING;
    d->reason = reason;
}

/* The agent stopped (or never answered) without finishing: another attempt
 * if any are left (bead open, after the backoff), else blocked. */
static void retry_or_give_up(const struct attempt_facts *f, const struct attempt_limits *l,
                             struct attempt_decision *d, enum attempt_rule rule)
{
    if (f->attempts_used < l->max_attempts) {
        move(d, rule, "open", AS_RETRYING, "retrying", "retrying");
        d->retry_at = f->now_ms + attempt_backoff_ms(l->retry_backoff_ms, f->attempts_used,
                                                     ATTEMPT_BACKOFF_CAP_MS);
    } else {
        move(d, rule, "blocked", AS_GAVE_UP, "gave_up", "gave_up");
        d->give_up = 1;
    }
}

/* The old reaper's rule: blocked, "reaper: no progress for ...". */
static void stale(struct attempt_decision *d, enum attempt_state next)
{
    move(d, AR_STALE, "blocked", next, "stale", "stale");
}

/* The agent can't say (unreachable, unusable): the stale rule, once it has
 * been silent for min_missed_passes passes in a row and the bead is quiet. */
static int cant_say_stale(const struct attempt_facts *f, const struct attempt_limits *l)
{
    return f->missed_passes >= l->min_missed_passes && quiet(f, l);
}

/* ------------------------------------------------------------------ */
/* AE_CLAIMED: the claim's compare-and-swap ran                        */

static void claimed(const struct attempt_facts *f, struct attempt_decision *d)
{
    switch (f->claim) {
    case AC_DONE:
    case AC_OURS_AFTER_ALL:
        post(d, AS_CLAIMED, NULL);
        return;
    case AC_LOST:
        record(d, AR_CLAIM_LOST, AS_LOST_RACE, "lost_race");
        return;
    case AC_FAILED:
        record(d, AR_CLAIM_FAILED, AS_RELEASED, "released");
        return;
    case AC_UNCERTAIN:
        d->rule = AR_CLAIM_UNCERTAIN; /* recovery reads the bead and decides */
        return;
    }
}

/* ------------------------------------------------------------------ */
/* AE_ANSWERED: POST /execute got its answer                           */

static void answered(const struct attempt_facts *f, const struct attempt_limits *l,
                     struct attempt_decision *d)
{
    switch (f->verdict) {
    case APV_ACCEPTED:
        record(d, AR_ACCEPTED, AS_DISPATCHED, "dispatched");
        d->owe_dispatched_note = 1;
        d->service = AV_TAKES_JOBS;
        return;
    case APV_AMBIGUOUS:
        /* The service may have the job: never re-POSTed; the reaper watches. */
        record(d, AR_AMBIGUOUS, AS_UNKNOWN, "unknown");
        return;
    case APV_REJECTED:
        /* The bead's own refusal: an attempt, noted; blocked once used up. */
        if (f->attempts_used >= l->max_attempts) {
            move(d, AR_REFUSED, "blocked", AS_GAVE_UP, "gave_up", "refused");
            d->give_up = 1;
        } else {
            move(d, AR_REFUSED, "open", AS_RETRYING, "rejected", "refused");
        }
        d->retry_at = f->now_ms + attempt_backoff_ms(l->retry_backoff_ms, f->attempts_used,
                                                     ATTEMPT_BACKOFF_CAP_MS);
        return;
    case APV_NOT_SENT:
    case APV_FULL:
        /* Not the bead's problem: given back without a note, not an attempt. */
        move(d, AR_GIVEN_BACK_FULL, "open", AS_REFUSED,
             f->verdict == APV_FULL ? "agent_full" : "not_sent", "given_back");
        d->retry_at = f->now_ms + ATTEMPT_DEFER_MS;
        d->service = AV_FULL;
        return;
    case APV_AUTH:
    case APV_URL:
        move(d, AR_GIVEN_BACK_AUTH, "open", AS_REFUSED, "agent_auth", "given_back");
        /* BeadBoard holds the token: its 401/403/404 mean back off, no gate. */
        d->service = f->beadboard ? AV_FULL : f->verdict == APV_AUTH ? AV_TOKEN_REFUSED : AV_URL_WRONG;
        return;
    }
}

/* ------------------------------------------------------------------ */
/* AE_RECONCILE: a reap pass or recovery                               */

/* A dispatched attempt whose bead is in progress and ours: the job says. */
static void dispatched_job(const struct attempt_facts *f, const struct attempt_limits *l,
                           struct attempt_decision *d)
{
    switch (f->job) {
    case AJ_ANSWERED:
        switch (agent_job_meaning(f->job_status)) {
        case AJM_ALIVE:
            if (f->job_status == JOB_RUNNING && f->dispatched_ms &&
                f->now_ms - f->dispatched_ms > l->job_timeout_ms + l->stale_after_ms)
                move(d, AR_HARD_LIMIT, "blocked", AS_BLOCKED, "hard_limit", "blocked");
            else
                d->rule = AR_ALIVE;
            return;
        case AJM_EXITED:
            retry_or_give_up(f, l, d, AR_EXITED);
            return;
        case AJM_MAYBE_RUNNING:
            /* The service does not stop a timed-out agent: wait for quiet. */
            if (quiet(f, l))
                retry_or_give_up(f, l, d, AR_MAYBE_RUNNING_QUIET);
            return;
        }
        return;
    case AJ_MISSING:
        /* Restarted service, or an expired record of a timeout/error job. */
        if (!f->seen_maybe_running || quiet(f, l))
            retry_or_give_up(f, l, d, AR_JOB_MISSING);
        return;
    case AJ_UNREACHABLE:
    case AJ_UNUSABLE:
        if (cant_say_stale(f, l))
            stale(d, AS_BLOCKED);
        return;
    case AJ_NONE:
    case AJ_UNAUTHORIZED: /* our token is wrong: not the bead's problem */
        return;
    }
}

/* posting (after a crash) or unknown (an ambiguous answer): the job id is
 * unknown. Never re-POSTed; the agent's claim note proves it got it; either
 * way the bead's activity says whether it still works. */
static void no_job_id(const struct attempt_facts *f, const struct attempt_limits *l,
                      struct attempt_decision *d)
{
    if (f->agent_reached && f->state == AS_POSTING)
        record(d, AR_REACHED, AS_UNKNOWN, "reached");
    if (!quiet(f, l))
        return;
    if (d->act == AA_RECORD)
        d->via = AS_UNKNOWN;
    retry_or_give_up(f, l, d, AR_NO_ANSWER_QUIET);
}

/* A bead that is no longer in progress, not closed, still ours. */
static void moved_on(const struct attempt_facts *f, const struct attempt_limits *l,
                     struct attempt_decision *d)
{
    if (f->bead == AB_OPEN && f->has_job_id && f->released_by_us) {
        /* Our own release, from a pass that died before recording it. */
        record(d, AR_RELEASED_EARLIER, AS_RETRYING, "retrying");
        d->retry_at = f->now_ms + attempt_backoff_ms(l->retry_backoff_ms, f->attempts_used,
                                                     ATTEMPT_BACKOFF_CAP_MS);
        return;
    }
    record(d, AR_MOVED_BY_OTHERS, AS_RELEASED, "reopened");
}

static void reconcile(const struct attempt_facts *f, const struct attempt_limits *l,
                      struct attempt_decision *d)
{
    if (!in_flight(f->state))
        return; /* ended: the reaper never loads it */
    if (f->bead == AB_GONE) {
        record(d, AR_BEAD_GONE, AS_RELEASED, "reopened");
        return;
    }
    int ours_in_progress = f->bead == AB_IN_PROGRESS && f->mine;
    if (f->state == AS_CLAIMING) {
        /* Intent only: did the claim reach Dolt before the crash? */
        if (ours_in_progress && f->claim_landed)
            post(d, AS_CLAIMED, "recovered");
        else
            record(d, AR_CLAIM_NOT_MADE, AS_LOST_RACE, "lost_race");
        return;
    }
    if (f->state == AS_CLAIMED) {
        /* The POST never left: send it, unless the bead moved meanwhile. */
        if (ours_in_progress)
            post(d, AS_STATE_COUNT, "recovered");
        else
            record(d, AR_NOT_POSTED_MOVED, AS_RELEASED, "reopened");
        return;
    }
    /* posting, unknown, dispatched: the agent may have the job. */
    if (f->bead == AB_CLOSED) {
        record(d, AR_CLOSED, AS_CLOSED, "closed");
        return;
    }
    if (!f->mine) {
        record(d, AR_REASSIGNED, AS_RELEASED, "reopened");
        return;
    }
    if (f->bead == AB_BLOCKED) {
        record(d, AR_SET_BLOCKED, AS_BLOCKED, "blocked");
        return;
    }
    if (f->bead == AB_IN_PROGRESS && f->notes_read && f->state == AS_DISPATCHED && f->claimed_again) {
        /* Another instance took over while this one stood by. */
        record(d, AR_SUPERSEDED, AS_RELEASED, "reopened");
        return;
    }
    if (f->bead != AB_IN_PROGRESS) {
        moved_on(f, l, d);
        return;
    }
    if (f->state != AS_DISPATCHED) {
        no_job_id(f, l, d);
        return;
    }
    /* Recovery: a "dispatched: job=" note lost to a crash is owed. */
    if (f->recovery && f->notes_read && f->has_job_id && !f->dispatched_note) {
        d->owe_dispatched_note = 1;
        d->reason = "noted";
    }
    dispatched_job(f, l, d);
}

/* A bead in progress, assigned to us, that the journal does not track:
 * another instance's attempt is adopted; the rest (the old CronJobs' beads,
 * hand edits) are left alone while their job runs, else the stale rule. */
static void orphan(const struct attempt_facts *f, const struct attempt_limits *l,
                   struct attempt_decision *d)
{
    if (f->bead != AB_IN_PROGRESS || !f->mine)
        return;
    if (f->has_job_id && f->adoptable) {
        d->act = AA_ADOPT;
        d->rule = AR_ADOPTED;
        d->next = AS_DISPATCHED;
        d->reason = "adopted";
        return;
    }
    switch (f->has_job_id ? f->job : AJ_NONE) {
    case AJ_ANSWERED:
        if (agent_job_meaning(f->job_status) == AJM_ALIVE)
            d->rule = AR_ALIVE;
        else if (quiet(f, l))
            stale(d, AS_STATE_COUNT);
        return;
    case AJ_UNREACHABLE:
    case AJ_UNUSABLE:
        if (cant_say_stale(f, l))
            stale(d, AS_STATE_COUNT);
        return;
    case AJ_UNAUTHORIZED:
        return;
    case AJ_NONE:
    case AJ_MISSING:
        if (quiet(f, l))
            stale(d, AS_STATE_COUNT);
        return;
    }
}

/* As the store counts attempts: posted (or about to be), not given back. */
static int counts(const struct attempt_facts *f, const struct attempt_decision *d)
{
    if (!f->tracked)
        return d->act == AA_ADOPT;
    int posted = (f->state >= AS_POSTING && f->state <= AS_DISPATCHED) || d->next == AS_POSTING;
    return posted && d->next != AS_REFUSED;
}

struct attempt_decision attempt_decide(const struct attempt_facts *f, const struct attempt_limits *l)
{
    struct attempt_decision d = {
        .act = AA_NOTHING, .rule = AR_NONE, .via = AS_STATE_COUNT,
        .next = f->tracked ? f->state : AS_STATE_COUNT, .service = AV_SAME,
    };
    switch (f->event) {
    case AE_CLAIMED:
        if (f->tracked && f->state == AS_CLAIMING)
            claimed(f, &d);
        break;
    case AE_ANSWERED:
        if (f->tracked && f->state == AS_POSTING)
            answered(f, l, &d);
        break;
    case AE_RECONCILE:
        if (f->tracked)
            reconcile(f, l, &d);
        else
            orphan(f, l, &d);
        break;
    }
    d.counts = counts(f, &d);
    return d;
}
