/* The reaper and start-up recovery: reconcile every attempt the store has
 * in flight with Dolt (bead state) and the agent (job state).
 *
 * A pass runs in three steps, never interleaved with a dispatch cycle:
 *   1. load (worker): the store's non-terminal attempts, their beads read in
 *      chunks, and the agent-assigned in_progress beads the store does not
 *      track (orphans);
 *   2. jobs (loop): GET /jobs/{id} for every dispatched attempt whose bead is
 *      still in progress, at most REAP_CONCURRENCY at once;
 *   3. apply (worker): decide per attempt and write. Every Dolt write is a
 *      compare-and-swap on the status and updated_at read in step 1, so a
 *      bead closed or moved meanwhile is never overwritten; a lost race is
 *      recorded and the next pass re-reads. Dolt is written before the
 *      store: a crash in between leaves a state the next pass resolves.
 * Start-up recovery is the same pass before the first cycle; it also
 * resolves the states only a crash leaves behind (claiming, claimed). */
#include "clock.h"
#include "crash.h"
#include "errors.h"
#include "log.h"
#include "rules.h"
#include "sched_internal.h"
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* GET /jobs requests in flight at once. */
#define REAP_CONCURRENCY 32
/* Job records are read whole up to this size (the service returns every
 * output line); a bigger one is an unusable reply, never "unreachable". */
#define JOB_RECORD_MAX (64u << 20)
/* Passes in a row without a usable answer before the stale rule applies. */
#define MIN_MISSED_PASSES 2
/* Retry backoff doubles per attempt up to this. */
#define BACKOFF_CAP_MS (60LL * 60 * 1000)

int64_t retry_backoff_ms(const struct dispatcher *d, int used)
{
    int64_t backoff = (int64_t)d->cfg->retry_backoff_ms;
    for (int i = 1; i < used && backoff < BACKOFF_CAP_MS; i++)
        backoff *= 2;
    if (backoff > BACKOFF_CAP_MS)
        backoff = BACKOFF_CAP_MS;
    return backoff > 0 ? backoff : 1;
}

struct reap_item {
    struct reap_pass *rp;
    int64_t attempt_id;          /* 0: an orphan bead the store does not track */
    int attempt;
    enum attempt_state state;
    char *bead_id;
    char job_id[STORE_JOB_ID_MAX];
    char dispatch_id[STORE_DISPATCH_ID_MAX];
    int64_t dispatched_at;
    /* the bead as step 1 read it */
    int found;
    char *status, *assignee, *updated_at, *notes;
    int64_t age_ms;              /* since updated_at, by the server's clock, at load */
    /* the job as step 2 saw it */
    enum rules_job job;
    enum agent_job_status job_status;
    int64_t job_finished_ms;
    char job_line[300];          /* agent_job_describe, for notes */
    /* remembered from earlier passes (set on the loop before apply) */
    int missed;
    int seen_maybe_running;
    /* what step 3 did, for the log */
    const char *reason;          /* metrics label; NULL = nothing to do */
    char detail[300];
};

struct reap_pass {
    struct dispatcher *d;
    int recovery;
    struct reap_item *items;
    size_t n, cap;
    size_t next_job, jobs_pending;
    struct cycle *repost;        /* claimed attempts whose POST is still owed */
    int64_t started_ms, loaded_ms, jobs_ms; /* phase ends, for the debug log */
};

static void reap_item_clear(struct reap_item *it)
{
    free(it->bead_id);
    free(it->status);
    free(it->assignee);
    free(it->updated_at);
    free(it->notes);
}

void reap_pass_free(struct reap_pass *rp)
{
    if (!rp)
        return;
    for (size_t i = 0; i < rp->n; i++)
        reap_item_clear(&rp->items[i]);
    free(rp->items);
    if (rp->repost) {
        picks_free(rp->repost->picks);
        free(rp->repost);
    }
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
    it->rp = rp;
    return it;
}

/* Copies text into it->detail, cut at a UTF-8 boundary. */
static void set_detail(struct reap_item *it, const char *text)
{
    size_t n = text_utf8_prefix(text, strlen(text), sizeof it->detail - 1);
    memcpy(it->detail, text, n);
    it->detail[n] = '\0';
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

/* The job id of the last "dispatched: job=<id>" note (ours, another
 * beads-sched's or the old CronJobs'); 0 if none. */
static int find_dispatched_note(const char *notes, char *job, size_t len)
{
    const char *key = "dispatched: job=", *last = NULL;
    for (const char *p = notes ? strstr(notes, key) : NULL; p; p = strstr(p + 1, key))
        last = p;
    if (!last)
        return 0;
    last += strlen(key);
    size_t n = 0;
    while (last[n] && last[n] != '\n' && last[n] != ' ' && last[n] != '\r' && n + 1 < len)
        n++;
    memcpy(job, last, n);
    job[n] = '\0';
    return agent_job_id_valid(job);
}

/* The claims a bead's notes record ("auto-dispatcher claimed at <time>
 * (dispatch <id>)", ours or another instance's): how many, and the dispatch
 * id of the last one (empty when it names none, as the old CronJobs'). */
static int claims_in_notes(const char *notes, char *last_dispatch, size_t len)
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

static int fill_orphan_notes(const struct bead *b, void *arg)
{
    struct fill_ctx *f = arg;
    struct reap_pass *rp = f->rp;
    struct reap_item key = {.bead_id = (char *)b->id};
    struct reap_item *it = bsearch(&key, rp->items + f->tracked, rp->n - f->tracked, sizeof key, by_bead);
    if (!it)
        return 0;
    if (b->notes && !find_dispatched_note(b->notes, it->job_id, sizeof it->job_id))
        it->job_id[0] = '\0';
    /* Another instance's attempt, to be adopted: its number and dispatch id. */
    it->attempt = claims_in_notes(b->notes, it->dispatch_id, sizeof it->dispatch_id);
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
    struct dispatcher *d = rp->d;
    int rc = beads_schema_detect(c, &d->schema);
    if (rc)
        return rc;
    refresh_writer(d);
    if ((rc = store_attempts_active(d->env.store, collect_attempt, rp)))
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
        if (st == AS_DISPATCHED && !rp->recovery)
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
        rc = beads_in_progress(c, d->cfg->assignee, add_orphan, &f);
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
    struct reap_pass *rp = it->rp;
    struct agent_job job;
    char why[160];
    rp->jobs_pending--;
    if (r->outcome == HTTP_RESPONSE && r->status == 200) {
        if (agent_parse_job(r->body, r->body_len, &job, why, sizeof why) == 0) {
            it->job = RJ_ANSWERED;
            it->job_status = job.status;
            it->job_finished_ms = job.finished_ms;
            agent_job_describe(it->job_id, &job, it->job_line, sizeof it->job_line);
        } else {
            it->job = RJ_UNUSABLE;
            metrics_count(MC_AGENT_ERRORS, "unusable", 1);
            log_warn("agent sent an unusable job record", "bead", it->bead_id, "job", it->job_id,
                     "error", why);
        }
    } else if (r->outcome == HTTP_TOO_LARGE && r->status == 200) {
        it->job = RJ_UNUSABLE;
        metrics_count(MC_AGENT_ERRORS, "unusable", 1);
        log_warn("agent sent a job record over the size limit; unusable", "bead", it->bead_id, "job",
                 it->job_id, "limit_bytes", LOG_INT(JOB_RECORD_MAX));
    } else if (r->outcome == HTTP_RESPONSE && r->status == 404) {
        it->job = RJ_MISSING;
    } else if (r->outcome == HTTP_RESPONSE && (r->status == 401 || r->status == 403)) {
        it->job = RJ_UNAUTHORIZED;
        agent_gate_close(rp->d, GATE_TOKEN, r->status);
    } else if (r->outcome != HTTP_CANCELLED) {
        it->job = RJ_UNREACHABLE;
    }
    if (rp->d->stopping) {
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
    struct dispatcher *d = rp->d;
    const struct config *cfg = d->cfg;
    char auth[1100], url[2300];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", cfg->agent_token ? cfg->agent_token : "");
    const char *headers[] = {"Accept: application/json", auth, NULL};
    while (rp->jobs_pending < REAP_CONCURRENCY && rp->next_job < rp->n && !d->stopping) {
        struct reap_item *it = &rp->items[rp->next_job++];
        if (!needs_job(it, cfg))
            continue;
        char path[STORE_JOB_ID_MAX * 3 + 16];
        if (!cfg->agent_url || agent_job_path(it->job_id, path, sizeof path)) {
            it->job = RJ_UNREACHABLE; /* BeadBoard mode without the agent's URL, or no usable id */
            continue;
        }
        snprintf(url, sizeof url, "%s%s", cfg->agent_url, path);
        struct http_request req = {
            .method = "GET", .url = url, .headers = headers,
            .connect_timeout_ms = (long)cfg->http_connect_timeout_ms,
            .timeout_ms = (long)cfg->http_timeout_ms, .max_response = JOB_RECORD_MAX,
        };
        if (http_request_start(d->env.http, &req, job_done, it) == 0)
            rp->jobs_pending++;
        else
            it->job = RJ_UNREACHABLE;
    }
    memset(auth, 0, sizeof auth);
    if (rp->jobs_pending == 0 && (rp->next_job >= rp->n || d->stopping)) {
        if (d->stopping)
            pass_done(rp, BS_EINVAL);
        else
            apply_submit(rp);
    }
}

static void load_done(int rc, void *arg)
{
    struct reap_pass *rp = arg;
    rp->loaded_ms = clock_now_ms();
    note_dolt_state(rp->d, rc == BS_ECONN ? rc : 0);
    if (rc || rp->d->stopping) {
        pass_done(rp, rc ? rc : BS_EINVAL);
        return;
    }
    start_jobs(rp);
}

/* ------------------------------------------------------------------ */
/* Step 3: apply                                                       */

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
static int move_and_record(struct dispatcher *d, struct dolt_conn *c, struct reap_item *it,
                           const char *to, const char *note, const char *verb,
                           enum attempt_state next, const char *outcome, int64_t retry_at)
{
    struct store *s = d->env.store;
    int64_t now = clock_now_ms();
    char now_dt[32] = "";
    struct bead_move m = {
        .id = it->bead_id, .assignee = d->cfg->assignee, .from = "in_progress", .to = to,
        .expect_updated_at = it->updated_at, .note = note, .event_type = "status_changed",
        .verb = verb, .wrote_updated_at = now_dt,
    };
    int rc = beads_move(c, &d->schema, &d->writer, &m);
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
        bead_write_failed(d, c, it->bead_id, it->attempt_id, verb, rc);
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
static int record_only(struct dispatcher *d, struct reap_item *it, enum attempt_state next,
                       const char *reason, const char *detail)
{
    struct store_transition t = {.detail = detail};
    int rc = store_attempt_transition(d->env.store, it->attempt_id, it->state, next, &t, clock_now_ms());
    if (rc == 0) {
        it->reason = reason;
        set_detail(it, detail);
    }
    return rc;
}

/* The agent stopped without finishing: another attempt if any are left
 * (bead back to open, backoff doubling from RETRY_BACKOFF, capped at 1 h),
 * else blocked. what says how the attempt ended ("job abc failed", ...). */
static int retry_or_give_up(struct dispatcher *d, struct dolt_conn *c, struct reap_item *it,
                            const char *what)
{
    int used = 0;
    int rc = store_bead_attempts_used(d->env.store, it->bead_id, &used);
    if (rc)
        return rc;
    long max = (long)d->cfg->max_attempts;
    char note[900];
    if (used < max) {
        snprintf(note, sizeof note, "reaper: %s, bead still in_progress; released for retry "
                 "(attempt %d/%ld)", what, used, max);
        rc = move_and_record(d, c, it, "open", note, "release", AS_RETRYING, "retrying",
                             clock_now_ms() + retry_backoff_ms(d, used));
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
static int stale_rule(struct dispatcher *d, struct dolt_conn *c, struct reap_item *it, int64_t now)
{
    int64_t age = quiet_ms(it, now);
    if (age < (int64_t)d->cfg->stale_after_ms)
        return 0;
    char note[256];
    char a[24], t[24];
    snprintf(note, sizeof note, "reaper: no progress for %s (threshold %s) — blocking",
             note_span(age, a, sizeof a), note_span((int64_t)d->cfg->stale_after_ms, t, sizeof t));
    int rc = move_and_record(d, c, it, "blocked", note, "block", AS_BLOCKED, "stale", 0);
    if (rc == 0) {
        it->reason = "stale";
        set_detail(it, note);
    }
    return rc;
}

/* A claimed attempt whose POST never left: queue it to be sent now. */
static int queue_repost(struct dispatcher *d, struct dolt_conn *c, struct reap_pass *rp,
                        struct reap_item *it)
{
    if (!rp->repost && !(rp->repost = calloc(1, sizeof *rp->repost)))
        return BS_ENOMEM;
    rp->repost->d = d;
    struct pick *p = calloc(1, sizeof *p);
    if (!p || !(p->bead_id = strdup(it->bead_id))) {
        free(p);
        return BS_ENOMEM;
    }
    p->d = d;
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
    p->next = rp->repost->picks;
    rp->repost->picks = p;
    it->reason = "recovered";
    snprintf(it->detail, sizeof it->detail, "claimed but never posted: posting now");
    return 0;
}

/* Decides and acts for one tracked attempt whose bead was read. */
static int reap_attempt(struct dispatcher *d, struct dolt_conn *c, struct reap_pass *rp,
                        struct reap_item *it, int64_t now)
{
    char detail[700];
    if (!it->found)
        return record_only(d, it, AS_RELEASED, "reopened", "bead no longer exists");
    int mine = it->assignee && strcmp(it->assignee, d->cfg->assignee) == 0;
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
        int rc = store_attempt_transition(d->env.store, it->attempt_id, AS_CLAIMING, AS_CLAIMED, &t, now);
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
            if (store_bead_attempts_used(d->env.store, it->bead_id, &used))
                used = 1; /* can't tell: the first delay */
            int rc = store_bead_set_retry(d->env.store, it->bead_id, now + retry_backoff_ms(d, used));
            return rc ? rc : record_only(d, it, AS_RETRYING, "retrying",
                                         "released for retry (found after a restart)");
        }
        snprintf(detail, sizeof detail, "bead moved to %.32s by someone else; stopped tracking", it->status);
        return record_only(d, it, AS_RELEASED, "reopened", detail);
    }

    struct rules_facts f = {
        .job = it->job, .status = it->job_status, .job_finished_ms = it->job_finished_ms,
        .missed_passes = it->missed, .seen_maybe_running = it->seen_maybe_running, .now_ms = now,
        .bead_updated_ms = now - quiet_ms(it, now), .dispatched_ms = it->dispatched_at,
    };
    struct rules_limits lim = {
        .stale_after_ms = (int64_t)d->cfg->stale_after_ms, .job_timeout_ms = (int64_t)d->cfg->job_timeout_ms,
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
            int rc = store_attempt_transition(d->env.store, it->attempt_id, AS_POSTING, AS_UNKNOWN, &t, now);
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
            owe_note(d, it->bead_id, note);
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
    if (it->job == RJ_MISSING)
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
static int reap_orphan(struct dispatcher *d, struct dolt_conn *c, struct reap_item *it, int64_t now)
{
    if (it->job_id[0] && it->dispatch_id[0] && it->attempt > 0 && d->env.store) {
        struct store_attempt a;
        int rc = store_attempt_adopt(d->env.store, it->bead_id, it->dispatch_id, it->job_id,
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
        .job = it->job_id[0] ? it->job : RJ_NONE, .status = it->job_status,
        .job_finished_ms = it->job_finished_ms, .missed_passes = it->missed, .now_ms = now,
        .bead_updated_ms = now - quiet_ms(it, now),
    };
    struct rules_limits lim = {
        .stale_after_ms = (int64_t)d->cfg->stale_after_ms, .job_timeout_ms = (int64_t)d->cfg->job_timeout_ms,
        .min_missed_passes = MIN_MISSED_PASSES,
    };
    if (rules_orphan(&f, &lim) != RA_BLOCK_STALE)
        return 0;
    return stale_rule(d, c, it, now);
}

static int reap_apply(struct dolt_conn *c, void *arg)
{
    struct reap_pass *rp = arg;
    struct dispatcher *d = rp->d;
    TEST_PAUSE("REAP_APPLY");
    int64_t now = clock_now_ms();
    if (d->env.may_write) {
        int rc = d->env.may_write(c, d->env.arg);
        if (rc)
            return rc; /* BS_ESTATE: the lock is gone, not ours to write; the pass ends here */
    }
    pay_owed_notes(d, c);
    for (size_t i = 0; i < rp->n && !d->stopping; i++) {
        struct reap_item *it = &rp->items[i];
        int rc = it->attempt_id ? reap_attempt(d, c, rp, it, now) : reap_orphan(d, c, it, now);
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
    /* For `beads-sched status`: only passes that settled something write. */
    size_t settled = 0;
    for (size_t i = 0; i < rp->n; i++)
        settled += rp->items[i].reason != NULL;
    if (settled) {
        char at[24], result[64];
        snprintf(at, sizeof at, "%lld", (long long)now); /* status shows its age */
        snprintf(result, sizeof result, "settled %zu of %zu", settled, rp->n);
        if (store_setting_set(d->env.store, "last_reap_at", at, now) == 0)
            store_setting_set(d->env.store, "last_reap_result", result, now);
    }
    refresh_in_flight_gauge(d);
    pay_owed_notes(d, c); /* those recovery found missing */

    /* Owed POSTs: record that they are about to go out, as the dispatcher does. */
    if (rp->repost && rp->repost->picks) {
        int rc = build_bodies(d, rp->repost);
        if (rc == 0)
            rc = journal_picks(d, rp->repost, PICK_CLAIMED, AS_CLAIMED, AS_POSTING, clock_now_ms());
        if (rc)
            return rc;
        CRASH_POINT("after_posting_commit");
    }
    return 0;
}

static void apply_done(int rc, void *arg)
{
    struct reap_pass *rp = arg;
    note_dolt_state(rp->d, rc == BS_ECONN ? rc : 0);
    pass_done(rp, rc);
}

/* The memo key of an item: its attempt id, or for an orphan minus a hash
 * (FNV-1a) of its bead id. */
static int64_t memo_key(const struct reap_item *it)
{
    if (it->attempt_id)
        return it->attempt_id;
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)it->bead_id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
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
    struct dispatcher *d = rp->d;
    for (size_t i = 0; i < rp->n; i++) {
        struct reap_item *it = &rp->items[i];
        struct reap_memo key = {.key = memo_key(it)};
        const struct reap_memo *m = d->nmemo ? bsearch(&key, d->memo, d->nmemo, sizeof key, by_memo_key) : NULL;
        int missed_now = it->job == RJ_UNREACHABLE || it->job == RJ_UNUSABLE;
        it->missed = missed_now ? (m ? m->missed : 0) + 1 : 0;
        it->seen_maybe_running = (m && m->maybe_running) ||
                                 (it->job == RJ_ANSWERED && agent_job_meaning(it->job_status) == AJM_MAYBE_RUNNING);
    }
}

/* Loop thread: remember, for the next pass, what this one saw. */
static void memo_store(struct reap_pass *rp)
{
    struct dispatcher *d = rp->d;
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
    if (dolt_submit(rp->d->env.dolt, reap_apply, apply_done, rp))
        pass_done(rp, BS_EINVAL);
}

/* ------------------------------------------------------------------ */
/* Pass control                                                        */

static void pass_done(struct reap_pass *rp, int rc)
{
    struct dispatcher *d = rp->d;
    size_t acted = 0, alive = 0;
    if (rp->jobs_ms)
        memo_store(rp);
    for (size_t i = 0; i < rp->n; i++) {
        struct reap_item *it = &rp->items[i];
        if (it->job == RJ_UNREACHABLE)
            metrics_count(MC_AGENT_ERRORS, "unreachable", 1);
        if (!it->reason) {
            alive += it->attempt_id != 0;
            if (it->attempt_id && it->state == AS_DISPATCHED && it->job == RJ_ANSWERED &&
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
    d->reap_running = 0;
    int64_t ended_ms = clock_now_ms();
    metrics_count(MC_CYCLES, "reap", 1);
    log_debug("reap pass done", "attempts", LOG_INT(rp->n), "settled", LOG_INT(acted),
              "ms", LOG_INT(ended_ms - rp->started_ms),
              "load_ms", LOG_INT(rp->loaded_ms - rp->started_ms),
              "jobs_ms", LOG_INT(rp->jobs_ms ? rp->jobs_ms - rp->loaded_ms : 0),
              "recovery", rp->recovery ? "true" : NULL);
    if (rc) {
        if (rc != BS_EINVAL || !d->stopping)
            log_warn(rp->recovery ? "recovery pass failed; retrying" : "reap pass failed; retrying",
                     "error", bs_strerror(rc));
    } else {
        if (rp->recovery) {
            d->recovered = 1;
            log_info("recovery done", "in_flight", LOG_INT(alive), "settled", LOG_INT(acted));
        } else if (acted) {
            log_info("reap pass", "in_flight", LOG_INT(alive), "settled", LOG_INT(acted));
        }
    }
    struct cycle *repost = rc == 0 ? rp->repost : NULL;
    if (repost)
        rp->repost = NULL;
    int recovery = rp->recovery;
    reap_pass_free(rp);

    if (repost && !d->stopping) {
        /* Send what recovery found owed, through the dispatcher's POST path. */
        repost->repost = 1;
        d->cur = repost;
        d->cycle_running = 1;
        post_all(repost);
    } else if (repost) {
        picks_free(repost->picks);
        free(repost);
    }
    if (d->env.on_reap)
        d->env.on_reap(d->env.arg, recovery, rc == 0);
    if (recovery && rc == 0 && (d->once || d->last_cycle_ms == 0))
        dispatcher_cycle(d); /* runs now, or right after the owed POSTs: the first cycle of a
                              * start or a take-over does not wait for the next probe tick */
    else if (recovery && rc && d->once && d->env.on_cycle)
        d->env.on_cycle(d->env.arg, 0);
    else if (d->cycle_again && !d->stopping && !d->cycle_running) {
        d->cycle_again = 0;
        dispatcher_cycle(d);
    }
}

void reaper_start(struct dispatcher *d, int recovery)
{
    if (d->stopping || d->reap_running || d->env.dry_run || !d->env.store)
        return;
    if (d->cycle_running) {
        d->reap_again = 1;
        return;
    }
    struct reap_pass *rp = calloc(1, sizeof *rp);
    if (!rp)
        return;
    rp->d = d;
    rp->recovery = recovery;
    rp->started_ms = clock_now_ms();
    if (dolt_submit(d->env.dolt, reap_load, load_done, rp)) {
        free(rp);
        return;
    }
    d->reap_running = 1;
}
