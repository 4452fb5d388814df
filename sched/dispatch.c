#include "dispatch.h"

#include "agent_client.h"
#include "beads.h"
#include "candidates.h"
#include "clock.h"
#include "crash.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "notes.h"
#include "results.h"
#include "text.h"

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Health failures are logged on change, then at most this often. */
#define HEALTH_REMINDER_MS (10 * 60 * 1000)

struct cycle {
    struct dispatcher *d;
    int64_t started_ms;
    int recheck;                /* started only to re-check capacity */
    int follow_on;              /* the next cycle of a capped round (the one before went on) */
    size_t out_at_health;       /* POSTs out when /health was asked */
    int selected;               /* the eligibility query ran */
    struct selection sel;       /* free slots (want), what was chosen */
    int capped;                 /* want was cut to MAX_PICKS_PER_CYCLE */
    int paused;
    int retry_known;            /* next_retry_at is this cycle's finding */
    int waiting;                /* its report waits until the poster's sends are over */
    int rc;                     /* not 0: the cycle is not ok */
    struct pick *picks;         /* the claims, once chosen (sel.picks moved here) */
    struct bead_list *undefer;  /* beads deferred while the service was full: their wait ends now */
};

struct dispatcher {
    struct session *s;
    struct throttle *throttle;
    struct poster *poster;
    struct dispatch_hooks hooks;
    /* Loop thread. */
    struct cycle *cur;
    int posted_rc;              /* a journaling error of a send no cycle was waiting for */
    int health_ok;              /* -1: not asked yet */
    int64_t health_logged_ms;
    int backlog;
    int went_on;                /* the last cycle was a capped one with slots left */
};

int dispatcher_init(struct dispatcher **out, struct session *s, struct throttle *t, struct poster *p,
                    const struct dispatch_hooks *hooks)
{
    struct dispatcher *d = calloc(1, sizeof *d);
    if (!d)
        return BS_ENOMEM;
    d->s = s;
    d->throttle = t;
    d->poster = p;
    d->hooks = *hooks;
    d->health_ok = -1;
    *out = d;
    return 0;
}

void dispatcher_free(struct dispatcher *d) { free(d); }

int dispatcher_health_ok(const struct dispatcher *d) { return d->health_ok; }

/* ------------------------------------------------------------------ */
/* Worker: select and claim                                            */

/* Checks the bead to claim, as read (its text goes into the prompt; rc is
 * the read's): still open and ours. 0, or the claim's outcome is already
 * known (set). */
static int claim_check(const char *assignee, struct pick *p, int rc)
{
    if (rc == 0 && !p->bead.id) {
        p->claim = AC_LOST;
        snprintf(p->detail, sizeof p->detail, "bead no longer exists");
        return 1;
    }
    if (rc) {
        p->claim = AC_FAILED;
        snprintf(p->detail, sizeof p->detail, "not claimed: reading the bead failed (%s)", bs_strerror(rc));
        return 1;
    }
    if (strcmp(p->bead.status, "open") != 0 || !p->bead.assignee || strcmp(p->bead.assignee, assignee) != 0) {
        p->claim = AC_LOST;
        snprintf(p->detail, sizeof p->detail, "bead changed before the claim (status %.32s)", p->bead.status);
        return 1;
    }
    return 0;
}

/* Reads the chosen beads (at most BEADS_BATCH_MAX), one statement per
 * BEADS_READ_CHUNK, into their picks. Returns the read's error (then no
 * pick has its bead). */
static int claim_read_all(struct dolt_conn *c, struct pick *list)
{
    const char *ids[BEADS_BATCH_MAX];
    struct pick *of[BEADS_BATCH_MAX];
    struct bead *got = calloc(BEADS_BATCH_MAX, sizeof *got);
    size_t n = 0;
    if (!got)
        return BS_ENOMEM;
    for (struct pick *p = list; p && n < BEADS_BATCH_MAX; p = p->next) {
        of[n] = p;
        ids[n++] = p->bead_id;
    }
    int rc = beads_read_each(c, ids, n, got);
    for (size_t i = 0; rc == 0 && i < n; i++)
        of[i]->bead = got[i]; /* the pick owns it now */
    free(got);
    return rc;
}

/* What the claim's compare-and-swap did (rc from beads_move_many). */
static void claim_outcome(struct dispatcher *d, struct dolt_conn *c, struct pick *p, int rc)
{
    p->detail[0] = '\0';
    if (rc == 0) {
        p->claim = AC_DONE;
        return;
    }
    if (rc == BS_ECONN) {
        /* The COMMIT may or may not have landed: leave the attempt in
         * claiming; recovery reads the bead and decides. */
        p->claim = AC_UNCERTAIN;
        snprintf(p->detail, sizeof p->detail, "connection lost during the claim");
        return;
    }
    if (rc != BS_ESTATE && rc != BS_ECONFLICT) {
        p->claim = AC_FAILED;
        snprintf(p->detail, sizeof p->detail, "not claimed: %s: %.200s", bs_strerror(rc), dolt_conn_error(c));
        session_write_failed(d->s, NULL, p->bead_id, 0, "claim", rc);
        return;
    }
    /* Lost the race: re-read and record it unless the bead is ours. */
    if (rc == BS_ECONFLICT)
        metrics_count(MC_DOLT_ERRORS, "conflict", 1);
    const char *why = rc == BS_ECONFLICT ? " (Dolt conflict 1213)" : "";
    struct bead now_b;
    p->claim = AC_LOST;
    if (beads_read(c, p->bead_id, 1, &now_b) != 0) {
        snprintf(p->detail, sizeof p->detail, "lost race%s", why);
        return;
    }
    if (strcmp(now_b.status, "in_progress") == 0 && beads_has_mark(c, p->bead_id, now_b.notes, p->dispatch_id) == 1) {
        snprintf(p->claim_dt, sizeof p->claim_dt, "%s", now_b.updated_at);
        p->claim = AC_OURS_AFTER_ALL;
    }
    snprintf(p->detail, sizeof p->detail, "lost race%s: bead is %.32s", why, now_b.status);
    bead_free(&now_b);
}

/* A batch at least this large has its request bodies built on a thread of
 * their own while its claims are in Dolt (the worker only waits for the
 * server then); a smaller one builds them after, on the worker. */
#define BODIES_ASIDE_MIN 16

/* The bodies thread of one batch: what it builds from, and whether it runs. */
struct bodies_aside {
    const struct config *cfg;
    struct pick *list;
    pthread_t thread;
    int started;
};

/* The thread: the bodies of the picks results_prepare_bodies marked. */
static void *bodies_aside_main(void *arg)
{
    struct bodies_aside *b = arg;
    (void)results_render_bodies(b->cfg, b->list); /* what fails is built again after */
    return NULL;
}

/* Starts building the bodies of the n picks about to be claimed (of[]),
 * beside the claims. While it runs, nothing may change a pick's bead text,
 * ids, attempt or body (results_render_bodies). */
static void bodies_aside_start(struct bodies_aside *b, struct session *s, struct pick *list,
                               struct pick *const *of, size_t n)
{
    *b = (struct bodies_aside){.cfg = s->cfg, .list = list};
    if (n < BODIES_ASIDE_MIN)
        return;
    results_prepare_bodies(s, of, n);
    b->started = pthread_create(&b->thread, NULL, bodies_aside_main, b) == 0;
}

/* Waits for the bodies thread, if one runs; after it, the picks are the
 * worker's alone again. */
static void bodies_aside_wait(struct bodies_aside *b)
{
    if (b->started)
        pthread_join(b->thread, NULL);
    b->started = 0;
}

/* Claims the chosen beads in Dolt, open -> in_progress, each guarded by the
 * status and updated_at just read: one transaction and one Dolt commit for
 * the batch (beads_move_many). Sets each pick's claim (and detail). */
static int claim_batch(struct dispatcher *d, struct dolt_conn *c, struct pick *list)
{
    struct bead_move m[BEADS_BATCH_MAX];
    struct pick *of[BEADS_BATCH_MAX];
    char iso[32];
    int rcs[BEADS_BATCH_MAX];
    size_t n = 0, count = 0;
    for (struct pick *p = list; p; p = p->next) {
        p->claim = AC_FAILED; /* until the batch says otherwise */
        snprintf(p->detail, sizeof p->detail, "not claimed: out of memory");
        count++;
    }
    if (count == 0)
        return 0;
    char (*notes)[NOTES_MAX + 1] = malloc((count < BEADS_BATCH_MAX ? count : BEADS_BATCH_MAX) * sizeof *notes);
    if (!notes)
        return BS_ENOMEM;
    /* The note's time is the server's, like every time written to a bead. */
    int trc = beads_server_now(c, NULL, 0, iso, sizeof iso);
    int rrc = claim_read_all(c, list);
    for (struct pick *p = list; p && n < BEADS_BATCH_MAX; p = p->next) {
        if (claim_check(d->s->cfg->assignee, p, rrc))
            continue;
        if (trc == BS_ECONN) {
            p->claim = AC_FAILED;
            snprintf(p->detail, sizeof p->detail, "not claimed: reading the server's clock failed");
            continue;
        }
        notes_claim(notes[n], sizeof notes[n], trc ? NULL : iso, p->dispatch_id);
        m[n] = (struct bead_move){
            .id = p->bead_id, .assignee = d->s->cfg->assignee, .from = "open", .to = "in_progress",
            .expect_updated_at = p->bead.updated_at, .note = notes[n], .event_type = "claimed",
            .verb = "claim", .set_started = 1, .wrote_updated_at = p->claim_dt,
        };
        of[n++] = p;
    }
    struct bodies_aside aside;
    bodies_aside_start(&aside, d->s, list, of, n);
    int rc = beads_move_many(c, &d->s->schema, &d->s->writer, m, n, "claim", rcs);
    bodies_aside_wait(&aside);
    for (size_t i = 0; i < n; i++)
        claim_outcome(d, c, of[i], rcs[i]);
    free(notes);
    if (n > 0)
        CRASH_POINT("after_claim_batch");
    return rc;
}

/* What the cycle takes: none while paused, at most MAX_IN_FLIGHT in flight,
 * the ready beads in dispatch order; the skip notes on the way. */
static int choose_work(struct dispatcher *d, struct dolt_conn *c, struct cycle *cy, int64_t now)
{
    int rc;
    int paused = session_paused(d->s);
    metrics_gauge_set(MG_PAUSED, paused);
    if (paused) {
        cy->paused = 1;
        return 0;
    }
    if (d->s->cfg->max_in_flight > 0 && d->s->store) {
        int64_t active = 0;
        if ((rc = store_attempts_active_count(d->s->store, &active)))
            return rc;
        long room = (long)(d->s->cfg->max_in_flight - active);
        if (room < cy->sel.want)
            cy->sel.want = room > 0 ? room : 0;
    }
    /* bd's blocked set and deferred parents, once for the whole cycle. */
    if ((rc = beads_ready_load(c, &d->s->schema, d->s->cfg->assignee, &cy->sel.ready)))
        return rc;
    /* The service takes jobs again: beads deferred while it was full wait no more. */
    for (struct bead_list *n = cy->undefer; n; n = n->next)
        store_bead_set_retry(d->s->store, n->bead_id, 0);
    /* The skip notes: the round's first cycle looked for beads to note
     * moments ago, and the next round looks again (a follow-on cycle only
     * takes more of what is ready). */
    if (!cy->follow_on)
        candidates_note_unready(d->s, c, &cy->sel, now);
    if (cy->sel.want > 0)
        rc = candidates_choose(d->s, c, &cy->sel, now);
    else
        metrics_gauge_set(MG_READY_BEADS, 0); /* MAX_IN_FLIGHT reached: nothing it could take */
    cy->picks = cy->sel.picks;
    cy->sel.picks = NULL;
    beads_ready_free(cy->sel.ready);
    cy->sel.ready = NULL;
    return rc;
}

/* The journal protocol for the chosen beads: intent, the claims in Dolt,
 * what they did, the requests about to go out; each step committed before
 * the next. */
static int claim_chosen(struct dispatcher *d, struct dolt_conn *c, struct cycle *cy, int64_t now)
{
    /* 1. Intent: one journal row per bead, state claiming. */
    struct store *s = d->s->store;
    int64_t now0 = clock_now_ms();
    int rc;
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
        p->state = AS_CLAIMING;
    }
    if ((rc = store_commit(s)))
        return rc;
    CRASH_POINT("after_claiming_commit");
    int64_t t1 = clock_now_ms();

    /* 2. The claims in Dolt (one batch), and what each outcome means. */
    claim_batch(d, c, cy->picks);
    int64_t t2 = clock_now_ms();
    for (struct pick *p = cy->picks; p; p = p->next) {
        struct attempt_facts f = {
            .event = AE_CLAIMED, .tracked = 1, .state = AS_CLAIMING, .claim = p->claim, .now_ms = now,
        };
        p->dec = attempt_decide(&f, &(struct attempt_limits){0});
        if (p->dec.act == AA_POST)
            CRASH_POINT("after_dolt_claim");
    }

    /* 3. Record what the claims did, in one transaction. */
    if ((rc = results_journal(d->s, cy->picks, AS_CLAIMING, AS_STATE_COUNT, clock_now_ms())))
        return rc;
    CRASH_POINT("after_claimed_commit");
    int64_t t3 = clock_now_ms();

    /* 4. Build the requests, then record that they are about to go out. */
    if ((rc = results_build_bodies(d->s, cy->picks)))
        return rc; /* claimed stays: recovery posts it */
    int64_t t4 = clock_now_ms();
    if ((rc = results_journal(d->s, cy->picks, AS_CLAIMED, AS_POSTING, clock_now_ms())))
        return rc;
    CRASH_POINT("after_posting_commit");
    int64_t t5 = clock_now_ms();
    log_debug("claim steps", "beads", LOG_INT(cy->sel.chosen), "choose_ms", LOG_INT(now0 - now),
              "claiming_ms", LOG_INT(t1 - now0), "dolt_ms", LOG_INT(t2 - t1), "claimed_ms", LOG_INT(t3 - t2),
              "bodies_ms", LOG_INT(t4 - t3), "posting_ms", LOG_INT(t5 - t4), "unready_scan",
              LOG_INT(!cy->follow_on));
    return 0;
}

static int select_and_claim(struct dolt_conn *c, void *arg)
{
    struct cycle *cy = arg;
    struct dispatcher *d = cy->d;
    int64_t now = clock_now_ms();
    int rc = session_refresh(d->s, c);
    if (rc == 0)
        rc = choose_work(d, c, cy, now);
    if (rc || cy->paused || cy->sel.want <= 0 || !cy->picks || d->s->dry_run)
        return rc;
    TEST_PAUSE("CLAIM"); /* a window between choosing and claiming, for tests */
    if (d->s->may_write && (rc = d->s->may_write(c, d->s->may_write_arg))) {
        picks_free(cy->picks); /* nothing recorded yet: they never happened */
        cy->picks = NULL;
        return rc == BS_ESTATE ? 0 : rc;
    }
    return claim_chosen(d, c, cy, now);
}

/* ------------------------------------------------------------------ */
/* Loop: the cycle's steps                                             */

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
        printf("dry-run: agent has %ld free slot(s)\n", cy->sel.want);
    for (struct pick *p = cy->picks; p; p = p->next)
        printf("dry-run: would dispatch %s (priority %ld, updated %s)\n", p->bead_id, p->priority,
               p->cand_updated_at);
    for (size_t i = 0; i < cy->sel.nunready; i++)
        printf("dry-run: would note %s: no acceptance criteria\n", cy->sel.unready[i].id);
    fflush(stdout);
}

/* A capped cycle that left slots to fill: the round of filling free slots
 * is not over, the next cycle follows at once. */
static int round_goes_on(const struct dispatcher *d, const struct cycle *cy)
{
    return cy->capped && d->backlog && !session_stopping(d->s);
}

/* Ends the cycle: metrics, memory, and the report to the runner. A cycle
 * that ends the round of filling free slots reports only once every send
 * is over (an earlier cycle's POSTs may still be out): `once` and the
 * runner's reap passes rely on nothing being in flight then. */
static void finish_cycle(struct dispatcher *d, int ok)
{
    struct cycle *cy = d->cur;
    if (d->posted_rc) {
        ok = 0; /* an earlier send's results were not journaled */
        d->posted_rc = 0;
    }
    int continues = ok && round_goes_on(d, cy);
    d->went_on = continues;
    if (!continues && poster_busy(d->poster)) {
        cy->waiting = 1;
        if (!ok && !cy->rc)
            cy->rc = BS_ERR;
        return; /* dispatcher_posted ends it */
    }
    d->cur = NULL;
    struct cycle_report r = {
        .ok = ok, .selected = cy->selected, .backlog = d->backlog, .retry_due = cy->sel.next_retry_at,
        .continues = continues,
    };
    if (cy->selected) {
        metrics_count(MC_CYCLES, "dispatch", 1);
        metrics_observe(MH_CYCLE_DURATION, (double)(clock_now_ms() - cy->started_ms) / 1000.0);
        if (ok)
            metrics_gauge_set(MG_LAST_CYCLE_SUCCESS, (double)clock_now_ms() / 1000.0);
    }
    if (!cy->retry_known)
        r.retry_due = -1; /* nothing learned: keep what the runner knows */
    picks_free(cy->picks);
    if (!cy->selected)
        throttle_untake(d->throttle, cy->undefer); /* never reached the worker: the next cycle ends their wait */
    else
        bead_list_free(cy->undefer);
    candidates_free(cy->sel.unready, cy->sel.nunready);
    /* A big cycle's requests are gone: give the memory back. */
    if (cy->sel.chosen > 16)
        malloc_trim(0);
    free(cy);
    d->hooks.done(d->hooks.arg, &r);
}

static void claimed_done(int rc, void *arg)
{
    struct cycle *cy = arg;
    struct dispatcher *d = cy->d;
    /* A claim that lost its connection is a Dolt failure even when the
     * cycle as a whole went on: readiness must not count it as an answer. */
    int conn_lost = rc == BS_ECONN;
    for (struct pick *p = cy->picks; p && !conn_lost; p = p->next)
        conn_lost = p->dec.rule == AR_CLAIM_UNCERTAIN;
    session_note_dolt(d->s, conn_lost ? BS_ECONN : 0);
    if (rc) {
        log_error("dispatch cycle failed", "error", bs_strerror(rc));
        cy->rc = rc;
    }
    for (struct pick *p = cy->picks; p; p = p->next) {
        if (p->dec.rule == AR_CLAIM_LOST) {
            metrics_count(MC_DISPATCHES, "lost_race", 1);
            log_info("lost race", "bead", p->bead_id, "attempt", LOG_INT(p->attempt), "dispatch",
                     p->dispatch_id, "detail", p->detail);
        } else if (p->dec.rule == AR_CLAIM_FAILED || p->dec.rule == AR_CLAIM_UNCERTAIN) {
            if (p->dec.rule == AR_CLAIM_FAILED)
                metrics_count(MC_DISPATCHES, "released", 1);
            log_warn("claim failed", "bead", p->bead_id, "attempt", LOG_INT(p->attempt),
                     "dispatch", p->dispatch_id, "detail", p->detail);
        }
    }
    /* Every slot taken (or none free): more beads may be waiting. A dry run
     * claims nothing, so what it saw is still there: no backlog. */
    d->backlog = rc == 0 && !cy->paused && !d->s->dry_run && cy->sel.chosen >= cy->sel.want;
    cy->retry_known = rc == 0 && !cy->paused;
    if (d->s->dry_run)
        print_dry_run(cy);
    if (rc || d->s->dry_run) {
        finish_cycle(d, rc == 0);
        return;
    }
    /* A capped cycle with slots left hands its POSTs to the poster and ends:
     * the next cycle's claims overlap their round trips. Not while results
     * wait for a retry: then dispatching waits with them. */
    int overlap = round_goes_on(d, cy) && !poster_failing(d->poster);
    struct pick *picks = cy->picks;
    cy->picks = NULL;
    cy->waiting = !overlap;
    if (overlap) {
        /* The next cycle starts first: its /health goes out ahead of these
         * POSTs, so the service answers it at once rather than after them,
         * and the POSTs count as out from now on (announced). */
        poster_announce(d->poster, picks);
        finish_cycle(d, 1);
    }
    poster_send(d->poster, picks); /* may end the cycle (dispatcher_posted) */
}

void dispatcher_posted(struct dispatcher *d, int rc)
{
    struct cycle *cy = d->cur;
    if (!cy || !cy->waiting) {
        /* Sent by a cycle that has ended (or by recovery): the cycle that
         * reports next carries the error. */
        if (rc && !d->posted_rc)
            d->posted_rc = rc;
        return;
    }
    if (rc && !cy->rc)
        cy->rc = rc;
    finish_cycle(d, cy->rc == 0);
}

static void health_done(const struct http_response *r, void *arg)
{
    struct cycle *cy = arg;
    struct dispatcher *d = cy->d;
    struct agent_health_answer a;
    agent_read_health(d->s->cfg, r, &a);
    int64_t now = clock_now_ms();
    if (a.ok != d->health_ok || (!a.ok && now - d->health_logged_ms >= HEALTH_REMINDER_MS)) {
        if (a.ok)
            log_info("agent healthy", "capacity", LOG_INT(a.h.capacity), "active", LOG_INT(a.h.active),
                     "queued", LOG_INT(a.h.queued));
        else
            log_warn("agent health check failed; no dispatch until it answers", "error", a.why);
        d->health_ok = a.ok;
        d->health_logged_ms = now;
    }
    if (a.error_kind)
        metrics_count(MC_AGENT_ERRORS, a.error_kind, 1);
    if (!a.ok || session_stopping(d->s) || r->outcome == HTTP_CANCELLED) {
        finish_cycle(d, 0);
        return;
    }
    cy->sel.want = agent_free_slots(&a.h);
    /* POSTs of an earlier cycle still out are not in the service's counts
     * yet: those out when /health was asked, which may have been answered
     * since (the service's answer can come late, queued behind them) without
     * being in its counts; one it had taken by then counts twice, so the
     * cycle takes fewer, never more. */
    size_t out = poster_in_flight(d->poster);
    if (cy->out_at_health > out)
        out = cy->out_at_health;
    cy->sel.want = cy->sel.want > (long)out ? cy->sel.want - (long)out : 0;
    metrics_gauge_set(MG_AGENT_FREE_SLOTS, (double)cy->sel.want);
    throttle_health(d->throttle, a.h.active + a.h.queued, &cy->sel.want, &cy->undefer);
    if (cy->sel.want > MAX_PICKS_PER_CYCLE) {
        cy->sel.want = MAX_PICKS_PER_CYCLE;
        cy->capped = 1;
    }
    if (cy->recheck && cy->sel.want == 0) {
        finish_cycle(d, 1); /* still full: nothing to ask Dolt */
        return;
    }
    if (dolt_submit(d->s->dolt, select_and_claim, claimed_done, cy))
        finish_cycle(d, 0);
    else
        cy->selected = 1;
}

static void send_health(struct cycle *cy)
{
    struct dispatcher *d = cy->d;
    cy->out_at_health = poster_in_flight(d->poster);
    if (agent_request(d->s->http, d->s->cfg, AGENT_HEALTH, NULL, NULL, health_done, cy)) {
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
    struct throttle *t = d->throttle;
    if (r->outcome == HTTP_CANCELLED || session_stopping(d->s)) {
        finish_cycle(d, 0);
        return;
    }
    switch (agent_read_token_check(r, t->gate == GATE_URL)) {
    case AT_GOOD:
        throttle_gate_open(t);
        break;
    case AT_REFUSED:
        throttle_gate_close(t, GATE_TOKEN, r->status);
        break;
    case AT_CANT_TELL:
        if (throttle_gate_closed(t))
            throttle_gate_close(t, t->gate, r->status);
        break;
    }
    if (throttle_gate_closed(t)) {
        finish_cycle(d, 0);
        return;
    }
    send_health(cy);
}

int dispatcher_start(struct dispatcher *d, int recheck, int once)
{
    int64_t now = clock_now_ms();
    if (!throttle_cycle_allowed(d->throttle, now, once))
        return 1;
    struct cycle *cy = calloc(1, sizeof *cy);
    if (!cy)
        return 1;
    cy->d = d;
    cy->recheck = recheck;
    cy->follow_on = d->went_on && !recheck;
    d->went_on = 0;
    cy->started_ms = now;
    cy->undefer = throttle_take_due(d->throttle);
    d->cur = cy;
    if (d->s->cfg->mode != MODE_BEADBOARD && d->throttle->gate != GATE_OPEN && d->s->cfg->agent_url &&
        agent_request(d->s->http, d->s->cfg, AGENT_TOKEN_CHECK, NULL, NULL, gate_done, cy) == 0)
        return 0;
    send_health(cy);
    return 0;
}
