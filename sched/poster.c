#include "poster.h"

#include "results.h"
#include "agent_client.h"
#include "attempt.h"
#include "clock.h"
#include "crash.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "notes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A batch of results that could not be journaled is retried after this. */
#define RESULTS_RETRY_MS 1000
/* The answers of one send are journaled together (one transaction, one Dolt
 * commit for their notes) once all are in, or once the first has waited
 * this long for slower ones. */
#define RESULTS_GATHER_MS 200

struct poster {
    struct session *s;
    struct throttle *throttle;
    struct owed *owed;
    struct poster_hooks hooks;
    int once;
    /* Loop thread. */
    int sending;                /* a poster_send is not done yet */
    size_t pending;             /* POSTs in flight */
    size_t announced;           /* POSTs about to be sent (poster_announce) */
    int rc;                     /* first journaling error of this send */
    struct pick *results;       /* answered, waiting to be journaled */
    int flush_in_flight;
    int64_t retry_at;           /* a failed batch is retried then */
    int64_t first_result_ms;    /* when the oldest result waiting arrived */
    int failing;                /* the last batch failed (logged once per run of failures) */
    int notes_out;              /* batches of dispatched notes not written (or owed) yet */
    /* Notes worker: its connection's schema, and how it writes. */
    struct beads_schema notes_schema;
    struct beads_writer notes_writer;
};

struct flush {
    struct poster *p;
    struct pick *list;
};

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
    p->notes_writer = s->writer; /* actor and author; dolt_commit is the notes connection's */
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

int poster_busy(const struct poster *p) { return p->sending; }

size_t poster_in_flight(const struct poster *p) { return p->pending + p->announced; }

/* Whether poster_send sends p (else it frees it: a claimed pick not sent
 * because of shutdown stays in posting). */
static int will_send(const struct poster *ps, const struct pick *p)
{
    return p->state == AS_POSTING && !session_stopping(ps->s);
}

void poster_announce(struct poster *ps, const struct pick *list)
{
    ps->sending = 1;
    ps->announced = 0;
    for (const struct pick *p = list; p; p = p->next)
        ps->announced += will_send(ps, p) != 0;
}

int poster_failing(const struct poster *p) { return p->failing; }


/* Worker: the batch's journaling (results.c). */
static int record_results(struct dolt_conn *c, void *arg)
{
    struct flush *f = arg;
    return results_record(f->p->s, f->p->owed, c, f->list);
}

/* ------------------------------------------------------------------ */
/* Loop: sending and the results                                       */

static void flush(struct poster *ps);
static void maybe_flush(struct poster *ps);

static void maybe_done(struct poster *ps)
{
    if (!ps->sending || ps->pending || ps->flush_in_flight || ps->results || ps->notes_out)
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

/* ------------------------------------------------------------------ */
/* The dispatched notes, on the notes' own worker                      */

/* The picks of one journaled batch whose dispatched notes are due. */
struct notes_job {
    struct poster *p;
    struct pick *list;
    char err[300];              /* the server's text of the first failure */
};

static void notes_job_end(struct notes_job *j)
{
    struct poster *ps = j->p;
    picks_free(j->list);
    free(j);
    ps->notes_out--;
    maybe_done(ps);
}

/* Notes worker: one batch's notes, on its own connection (schema and the
 * lock checked there as on the Dolt worker). */
static int notes_work(struct dolt_conn *c, void *arg)
{
    struct notes_job *j = arg;
    struct poster *ps = j->p;
    struct session *s = ps->s;
    int rc = session_writer_refresh(s->cfg, c, &ps->notes_schema, &ps->notes_writer);
    if (rc == 0 && s->may_write)
        rc = s->may_write(c, s->may_write_arg);
    if (rc) {
        log_warn("dispatched notes not written; retried later", "error", bs_strerror(rc));
        if (rc == BS_ECONN)
            atomic_store(&s->dolt_lost, 1);
        results_notes_not_written(j->list, rc == BS_ECONN ? BS_ECONN : BS_ECONFLICT);
        return 0;
    }
    results_write_notes(s, &ps->notes_schema, &ps->notes_writer, c, j->list, j->err, sizeof j->err);
    return 0;
}

/* Dolt worker: the notes that failed are owed (the owed list and the
 * store are the worker's). */
static int owe_work(struct dolt_conn *c, void *arg)
{
    (void)c;
    struct notes_job *j = arg;
    results_owe_notes(j->p->s, j->p->owed, j->list, j->err);
    return 0;
}

static void owe_done(int rc, void *arg)
{
    (void)rc;
    notes_job_end(arg);
}

static void notes_done(int rc, void *arg)
{
    struct notes_job *j = arg;
    results_notes_not_written(j->list, rc ? rc : BS_ECONN); /* the work never ran */
    size_t owe = 0;
    for (struct pick *p = j->list; p; p = p->next)
        owe += results_note_owed(p->note_rc);
    /* Not once stopping: the Dolt worker stops (and is freed) before the
     * notes worker, and owed notes live in memory only anyway; start-up
     * recovery writes a dispatched note that is missing. */
    if (owe && !session_stopping(j->p->s) && dolt_submit(j->p->s->dolt, owe_work, owe_done, j) == 0)
        return;
    if (owe)
        log_warn("dispatched notes not written; start-up recovery writes them", "beads", LOG_INT(owe));
    notes_job_end(j);
}

/* Takes the picks of list whose dispatched notes are due to the notes
 * worker; returns the others. */
static struct pick *send_notes(struct poster *ps, struct pick *list)
{
    struct pick *rest = NULL, *due = NULL, **rest_end = &rest, **due_end = &due;
    for (struct pick *p = list, *next; p; p = next) {
        next = p->next;
        p->next = NULL;
        struct pick ***end = p->note_due ? &due_end : &rest_end;
        **end = p;
        *end = &p->next;
    }
    if (!due)
        return rest;
    struct notes_job *j = ps->s->notes ? calloc(1, sizeof *j) : NULL;
    if (j) {
        j->p = ps;
        j->list = due;
        if (dolt_submit(ps->s->notes, notes_work, notes_done, j) == 0) {
            ps->notes_out++;
            return rest;
        }
        free(j);
    }
    log_warn("dispatched notes dropped: the notes worker is gone", "first", due->bead_id);
    picks_free(due);
    return rest;
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
    picks_free(send_notes(ps, f->list));
    free(f);
    maybe_flush(ps);
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

/* Flushes the waiting results when it is time: all answers of the send
 * are in or the oldest has waited RESULTS_GATHER_MS; after a failure, at
 * the retry time. */
static void maybe_flush(struct poster *ps)
{
    int64_t now = clock_now_ms();
    if (!ps->results || ps->flush_in_flight || session_stopping(ps->s))
        return;
    if (ps->failing ? now >= ps->retry_at : ps->pending == 0 || now - ps->first_result_ms >= RESULTS_GATHER_MS)
        flush(ps);
}

void poster_retry(struct poster *ps) { maybe_flush(ps); }

static void queue_result(struct poster *ps, struct pick *p)
{
    if (!ps->results)
        ps->first_result_ms = clock_now_ms();
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
    maybe_flush(ps);
    maybe_done(ps);
}

void poster_send(struct poster *ps, struct pick *list)
{
    ps->sending = 1;
    ps->announced = 0;
    for (struct pick *p = list, *next; p; p = next) {
        next = p->next;
        p->next = NULL;
        p->poster = ps;
        if (!will_send(ps, p)) {
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
    maybe_flush(ps);
    maybe_done(ps);
}
