/* Step 3 of a reap pass (reap.h): what to do with each attempt, and the
 * writes that carry it out. Worker thread. */
#include "reap_pass.h"

#include "beads.h"
#include "clock.h"
#include "crash.h"
#include "errors.h"
#include "log.h"
#include "rules.h"
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

/* The claims a bead's notes record ("auto-dispatcher claimed at <time>
 * (dispatch <id>)", ours or another instance's): how many, and the dispatch
 * id of the last one (empty when it names none, as the old CronJobs'). */
int claims_in_notes(const char *notes, char *last_dispatch, size_t len)
{
    const char *key = "auto-dispatcher claimed at ", *tag = "(dispatch ";
    int count = 0;
    last_dispatch[0] = '\0';
    for (const char *p = notes ? strstr(notes, key) : NULL; p; p = strstr(p + 1, key)) {
        count++;
        const char *eol = strchr(p, '\n');
        const char *d = strstr(p, tag);
        last_dispatch[0] = '\0';
        if (!d || (eol && d > eol))
            continue;
        d += strlen(tag);
        size_t n = strcspn(d, ") \n");
        if (n > 0 && n < len) {
            memcpy(last_dispatch, d, n);
            last_dispatch[n] = '\0';
        }
    }
    return count;
}

static enum rules_job rules_job_of(enum attempt_job j)
{
    switch (j) {
    case AJ_NONE:
        return RJ_NONE;
    case AJ_ANSWERED:
        return RJ_ANSWERED;
    case AJ_MISSING:
        return RJ_MISSING;
    case AJ_UNREACHABLE:
        return RJ_UNREACHABLE;
    case AJ_UNUSABLE:
        return RJ_UNUSABLE;
    case AJ_UNAUTHORIZED:
        return RJ_UNAUTHORIZED;
    }
    return RJ_NONE;
}


/* How long the bead has been quiet: the server's age at load plus the time
 * since (a difference of this process's clock, so its offset cancels). */
static int64_t quiet_ms(const struct reap_item *it, int64_t now)
{
    int64_t since_load = now - it->rp->loaded_ms;
    return it->age_ms + (since_load > 0 ? since_load : 0);
}

/* A duration for a note: whole minutes ("31m", as the old reaper wrote),
 * or seconds under a minute ("45s") so a short STALE_AFTER never reads
 * "0m". */
static const char *note_span(int64_t ms, char *buf, size_t len)
{
    if (ms < 0)
        ms = 0;
    if (ms < 60000)
        snprintf(buf, len, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, len, "%lldm", (long long)(ms / 60000));
    return buf;
}

/* Whether the agent's "claimed by agent <id>" note carries this attempt's
 * dispatch id (the job id the prompt gave it): proof that this attempt
 * reached the agent. The id is the scheduler's own, never the service's
 * job id. */
static int agent_reached(const struct reap_item *it)
{
    char needle[STORE_DISPATCH_ID_MAX + 24];
    snprintf(needle, sizeof needle, "claimed by agent %s", it->dispatch_id);
    return it->notes && it->dispatch_id[0] && strstr(it->notes, needle) != NULL;
}

/* For a closed bead: which attempt's agent closed it, from its notes'
 * "completed by agent <id>" (the id the prompt gave). Fills detail. */
static void credit_close(struct dolt_conn *c, const struct reap_item *it, char *detail, size_t len)
{
    struct bead b;
    snprintf(detail, len, "bead closed");
    if (beads_read(c, it->bead_id, 1, &b))
        return;
    const char *key = "completed by agent ", *last = NULL;
    for (const char *p = b.notes ? strstr(b.notes, key) : NULL; p; p = strstr(p + 1, key))
        last = p;
    if (last) {
        last += strlen(key);
        size_t n = strcspn(last, " \n\r\"");
        if (n == strlen(it->dispatch_id) && strncmp(last, it->dispatch_id, n) == 0)
            snprintf(detail, len, "bead closed by this attempt's agent (completed by agent %s)", it->dispatch_id);
        else
            snprintf(detail, len, "bead closed; the close names %.*s, not this attempt (%s)",
                     (int)(n > 64 ? 64 : n), last, it->dispatch_id);
    }
    bead_free(&b);
}

/* Whether the bead's notes hold our own "released for retry" note for this
 * attempt's job (a pass that wrote Dolt and died before its store commit). */
static int released_by_us(struct dolt_conn *c, const struct reap_item *it)
{
    struct bead b;
    if (beads_read(c, it->bead_id, 1, &b))
        return 0;
    char needle[STORE_JOB_ID_MAX + 32];
    snprintf(needle, sizeof needle, "reaper: job %s ", it->job_id);
    const char *p = b.notes ? strstr(b.notes, needle) : NULL;
    const char *eol = p ? strchr(p, '\n') : NULL;
    const char *rel = p ? strstr(p, "released for retry") : NULL;
    int ours = rel && (!eol || rel < eol);
    bead_free(&b);
    if (!ours && !p) {
        /* Full notes: the release note lives only in the move's events row
         * (the bead is open again, so this job's reaper note released it). */
        snprintf(needle, sizeof needle, "reaper: job %s ", it->job_id);
        ours = beads_has_mark(c, it->bead_id, NULL, needle) == 1;
    }
    return ours;
}

/* A guarded move of the bead, then the store transition. Returns 0 when
 * both happened, 1 when the bead changed meanwhile (recorded, left for the
 * next pass), or a negative error. */
static int move_and_record(struct reaper *d, struct dolt_conn *c, struct reap_item *it,
                           const char *to, const char *note, const char *verb,
                           enum attempt_state next, const char *outcome, int64_t retry_at)
{
    struct store *s = d->s->store;
    int64_t now = clock_now_ms();
    char now_dt[32] = "";
    struct bead_move m = {
        .id = it->bead_id, .assignee = d->s->cfg->assignee, .from = "in_progress", .to = to,
        .expect_updated_at = it->updated_at, .note = note, .event_type = "status_changed",
        .verb = verb, .wrote_updated_at = now_dt,
    };
    int rc = beads_move(c, &d->s->schema, &d->s->writer, &m);
    if (rc == BS_ESTATE || rc == BS_ECONFLICT) {
        /* Someone moved the bead after we read it: record, re-read next pass. */
        store_event_add(s, it->bead_id, it->attempt_id, "lost_race", it->job_id[0] ? it->job_id : NULL,
                        "reaper: the bead changed between read and write; not overwritten", now);
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
    if (rc)
        return rc;
    CRASH_POINT("after_reap_dolt_write");
    if (!it->attempt_id) {
        rc = store_event_add(s, it->bead_id, 0, "orphan_blocked", NULL, note, now);
    } else {
        struct store_transition t = {.outcome = outcome, .detail = note, .bead_updated_at = now_dt};
        if ((rc = store_begin(s)))
            return rc;
        if ((rc = store_attempt_transition(s, it->attempt_id, it->state, next, &t, now)) ||
            (retry_at && (rc = store_bead_set_retry(s, it->bead_id, retry_at)))) {
            store_rollback(s);
            return rc;
        }
        rc = store_commit(s);
    }
    if (rc == 0)
        CRASH_POINT("after_reap_commit");
    return rc;
}

/* Ends an attempt in the store only (the bead is not ours to write). */
static int record_only(struct reaper *d, struct reap_item *it, enum attempt_state next,
                       const char *reason, const char *detail)
{
    struct store_transition t = {.detail = detail};
    int rc = store_attempt_transition(d->s->store, it->attempt_id, it->state, next, &t, clock_now_ms());
    if (rc == 0) {
        it->reason = reason;
        set_detail(it, detail);
    }
    return rc;
}

/* The agent stopped without finishing: another attempt if any are left
 * (bead back to open, backoff doubling from RETRY_BACKOFF, capped at 1 h),
 * else blocked. what says how the attempt ended ("job abc failed", ...). */
static int retry_or_give_up(struct reaper *d, struct dolt_conn *c, struct reap_item *it,
                            const char *what)
{
    int used = 0;
    int rc = store_bead_attempts_used(d->s->store, it->bead_id, &used);
    if (rc)
        return rc;
    long max = (long)d->s->cfg->max_attempts;
    char note[900];
    if (used < max) {
        snprintf(note, sizeof note, "reaper: %s, bead still in_progress; released for retry "
                 "(attempt %d/%ld)", what, used, max);
        rc = move_and_record(d, c, it, "open", note, "release", AS_RETRYING, "retrying",
                             clock_now_ms() + attempt_backoff_ms((int64_t)d->s->cfg->retry_backoff_ms, used, FULL_BACKOFF_CAP_MS));
        if (rc == 0)
            it->reason = "retrying";
    } else {
        snprintf(note, sizeof note, "reaper: %s; attempts exhausted (%d/%ld), blocking", what, used, max);
        rc = move_and_record(d, c, it, "blocked", note, "block", AS_GAVE_UP, "gave_up", 0);
        if (rc == 0)
            it->reason = "gave_up";
    }
    if (rc == 0)
        set_detail(it, note);
    return rc;
}

/* The old reaper's rule, once rules.c decided it applies: no bead update
 * for STALE_AFTER -> blocked, with its note text (users grep for it). */
static int stale_rule(struct reaper *d, struct dolt_conn *c, struct reap_item *it, int64_t now)
{
    int64_t age = quiet_ms(it, now);
    if (age < (int64_t)d->s->cfg->stale_after_ms)
        return 0;
    char note[256];
    char a[24], t[24];
    snprintf(note, sizeof note, "reaper: no progress for %s (threshold %s) — blocking",
             note_span(age, a, sizeof a), note_span((int64_t)d->s->cfg->stale_after_ms, t, sizeof t));
    int rc = move_and_record(d, c, it, "blocked", note, "block", AS_BLOCKED, "stale", 0);
    if (rc == 0) {
        it->reason = "stale";
        set_detail(it, note);
    }
    return rc;
}

/* A claimed attempt whose POST never left: queue it to be sent now. */
static int queue_repost(struct reaper *d, struct dolt_conn *c, struct reap_pass *rp,
                        struct reap_item *it)
{
    (void)d;
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
    p->state = PICK_CLAIMED;
    p->next = rp->repost;
    rp->repost = p;
    it->reason = "recovered";
    snprintf(it->detail, sizeof it->detail, "claimed but never posted: posting now");
    return 0;
}

/* Decides and acts for one tracked attempt whose bead was read. */
int settle_attempt(struct reaper *d, struct dolt_conn *c, struct reap_pass *rp,
                        struct reap_item *it, int64_t now)
{
    char detail[700];
    if (!it->found)
        return record_only(d, it, AS_RELEASED, "reopened", "bead no longer exists");
    int mine = it->assignee && strcmp(it->assignee, d->s->cfg->assignee) == 0;
    int in_progress = strcmp(it->status, "in_progress") == 0;
    /* Our claim: the dispatch id in the notes, or in the claim's events row
     * when the note did not fit. */
    int ours_claimed = 0;
    if (in_progress && mine) {
        int rc = beads_has_mark(c, it->bead_id, it->notes, it->dispatch_id);
        if (rc < 0)
            return rc;
        ours_claimed = rc;
    }

    if (it->state == AS_CLAIMING) {
        /* Intent only: did the claim reach Dolt before the crash? */
        if (!ours_claimed) {
            snprintf(detail, sizeof detail, "claim not made (bead %s)", it->status);
            return record_only(d, it, AS_LOST_RACE, "lost_race", detail);
        }
        struct store_transition t = {.bead_updated_at = it->updated_at};
        int rc = store_attempt_transition(d->s->store, it->attempt_id, AS_CLAIMING, AS_CLAIMED, &t, now);
        if (rc)
            return rc;
        it->state = AS_CLAIMED;
        return queue_repost(d, c, rp, it);
    }
    if (it->state == AS_CLAIMED) {
        /* The POST never left: send it, unless the bead moved meanwhile. */
        if (in_progress && mine)
            return queue_repost(d, c, rp, it);
        snprintf(detail, sizeof detail, "bead is %s before dispatch; not posted", it->status);
        return record_only(d, it, AS_RELEASED, "reopened", detail);
    }

    /* posting, unknown, dispatched: the agent may have the job. */
    if (strcmp(it->status, "closed") == 0)
    {
        credit_close(c, it, detail, sizeof detail);
        return record_only(d, it, AS_CLOSED, "closed", detail);
    }
    if (!mine) {
        snprintf(detail, sizeof detail, "bead reassigned to %.100s; stopped tracking",
                 it->assignee ? it->assignee : "nobody");
        return record_only(d, it, AS_RELEASED, "reopened", detail);
    }
    if (strcmp(it->status, "blocked") == 0)
        return record_only(d, it, AS_BLOCKED, "blocked", "bead set blocked (by the agent or a person)");
    if (in_progress && it->notes && it->state == AS_DISPATCHED) {
        /* Claimed again since (another instance took over while this one
         * stood by): that attempt is the bead's now, not this one. */
        char last[STORE_DISPATCH_ID_MAX];
        if (claims_in_notes(it->notes, last, sizeof last) > 0 && last[0] &&
            strcmp(last, it->dispatch_id) != 0) {
            snprintf(detail, sizeof detail, "superseded: the bead was claimed again (dispatch %s); "
                     "stopped tracking", last);
            return record_only(d, it, AS_RELEASED, "reopened", detail);
        }
    }
    if (!in_progress) {
        if (strcmp(it->status, "open") == 0 && it->job_id[0] && released_by_us(c, it)) {
            /* Our own release, from a pass that died before recording it. */
            int used = 0;
            if (store_bead_attempts_used(d->s->store, it->bead_id, &used))
                used = 1; /* can't tell: the first delay */
            int rc = store_bead_set_retry(d->s->store, it->bead_id, now + attempt_backoff_ms((int64_t)d->s->cfg->retry_backoff_ms, used, FULL_BACKOFF_CAP_MS));
            return rc ? rc : record_only(d, it, AS_RETRYING, "retrying",
                                         "released for retry (found after a restart)");
        }
        snprintf(detail, sizeof detail, "bead moved to %.32s by someone else; stopped tracking", it->status);
        return record_only(d, it, AS_RELEASED, "reopened", detail);
    }

    struct rules_facts f = {
        .job = rules_job_of(it->job), .status = it->job_status, .job_finished_ms = it->job_finished_ms,
        .missed_passes = it->missed, .seen_maybe_running = it->seen_maybe_running, .now_ms = now,
        .bead_updated_ms = now - quiet_ms(it, now), .dispatched_ms = it->dispatched_at,
    };
    struct rules_limits lim = {
        .stale_after_ms = (int64_t)d->s->cfg->stale_after_ms, .job_timeout_ms = (int64_t)d->s->cfg->job_timeout_ms,
        .min_missed_passes = MIN_MISSED_PASSES,
    };
    char quiet[24];
    note_span(now - rules_quiet_since(&f), quiet, sizeof quiet);

    if (it->state == AS_POSTING || it->state == AS_UNKNOWN) {
        /* The job id is unknown. Never re-POST: the agent may have it. Its
         * claim note with our dispatch id proves it does; either way the
         * bead's activity says whether it still works. */
        int reached = agent_reached(it);
        if (reached && it->state == AS_POSTING) {
            snprintf(detail, sizeof detail, "reached the agent (its claim note carries dispatch %s); "
                     "job id unknown, supervised by the bead's activity", it->dispatch_id);
            struct store_transition t = {.detail = detail};
            int rc = store_attempt_transition(d->s->store, it->attempt_id, AS_POSTING, AS_UNKNOWN, &t, now);
            if (rc)
                return rc;
            it->state = AS_UNKNOWN;
            it->reason = "reached";
            set_detail(it, detail);
        }
        if (rules_no_job_id(&f, &lim) != RA_RETRY)
            return 0;
        if (reached)
            snprintf(detail, sizeof detail, "the agent of dispatch %s (job id unknown) has been quiet "
                     "for %s", it->dispatch_id, quiet);
        else
            snprintf(detail, sizeof detail, "dispatch %s got no answer and no claim note from the agent "
                     "in %s", it->dispatch_id, quiet);
        return retry_or_give_up(d, c, it, detail);
    }

    /* dispatched. Recovery: a "dispatched: job=" note lost to a crash is owed. */
    if (rp->recovery && it->notes && it->job_id[0]) {
        char note[STORE_JOB_ID_MAX + 32];
        snprintf(note, sizeof note, "dispatched: job=%s", it->job_id);
        if (!strstr(it->notes, note)) {
            owed_add(d->owed, it->bead_id, note);
            it->reason = "noted";
            snprintf(it->detail, sizeof it->detail, "dispatched note was missing: written now");
        }
    }
    switch (rules_dispatched(&f, &lim)) {
    case RA_WAIT:
        return 0;
    case RA_BLOCK_HARD_LIMIT: {
        int64_t limit = lim.job_timeout_ms + lim.stale_after_ms;
        char note[300];
        char ran[24], lim_s[24];
        snprintf(note, sizeof note, "reaper: job %s still %s after %s (limit %s) — blocking",
                 it->job_id, agent_job_status_name(it->job_status),
                 note_span(now - it->dispatched_at, ran, sizeof ran), note_span(limit, lim_s, sizeof lim_s));
        int rc = move_and_record(d, c, it, "blocked", note, "block", AS_BLOCKED, "hard_limit", 0);
        if (rc == 0) {
            it->reason = "blocked";
            set_detail(it, note);
        }
        return rc;
    }
    case RA_BLOCK_STALE:
        return stale_rule(d, c, it, now);
    case RA_RETRY:
        break;
    }
    if (it->job == AJ_MISSING)
        snprintf(detail, sizeof detail, "job %s not found at the agent (%s)", it->job_id,
                 it->seen_maybe_running ? "record expired after a timeout/error; bead quiet for "
                                          "long enough"
                                        : "restarted, or record expired");
    else if (agent_job_meaning(it->job_status) == AJM_MAYBE_RUNNING)
        snprintf(detail, sizeof detail, "%.300s; the service does not stop its agent, and the bead has "
                 "been quiet for %s since", it->job_line, quiet);
    else
        snprintf(detail, sizeof detail, "%.300s", it->job_line);
    return retry_or_give_up(d, c, it, detail);
}

/* A bead in progress, assigned to us, that the store does not track.
 * Another beads-sched instance's attempt (its claim note names a dispatch,
 * its "dispatched: job=" note the job) is adopted: from the next pass on it
 * is supervised as this instance's own, numbered on from the claims in the
 * bead's notes. The rest (the old CronJobs' beads, hand edits, a dispatch
 * this journal already knows) follow rules_orphan. */
int settle_orphan(struct reaper *d, struct dolt_conn *c, struct reap_item *it, int64_t now)
{
    if (it->job_id[0] && it->dispatch_id[0] && it->attempt > 0 && d->s->store) {
        struct store_attempt a;
        int rc = store_attempt_adopt(d->s->store, it->bead_id, it->dispatch_id, it->job_id,
                                     it->attempt, clock_now_ms(), &a);
        if (rc == 0) {
            it->reason = "adopted";
            snprintf(it->detail, sizeof it->detail, "another instance's attempt %d (dispatch %s, "
                     "job %s) is now supervised here", a.attempt, it->dispatch_id, it->job_id);
            return 0;
        }
        if (rc != BS_ESTATE && rc != BS_EINVAL)
            return rc;
    }
    struct rules_facts f = {
        .job = it->job_id[0] ? rules_job_of(it->job) : RJ_NONE, .status = it->job_status,
        .job_finished_ms = it->job_finished_ms, .missed_passes = it->missed, .now_ms = now,
        .bead_updated_ms = now - quiet_ms(it, now),
    };
    struct rules_limits lim = {
        .stale_after_ms = (int64_t)d->s->cfg->stale_after_ms, .job_timeout_ms = (int64_t)d->s->cfg->job_timeout_ms,
        .min_missed_passes = MIN_MISSED_PASSES,
    };
    if (rules_orphan(&f, &lim) != RA_BLOCK_STALE)
        return 0;
    return stale_rule(d, c, it, now);
}

