/* Unit tests: the life of an attempt (sched/attempt.c) as tables a reviewer
 * can hold against the README's failure table, and the state table
 * (common/attempt_states.h) against the journal's migration.
 *
 * The decision tables are patterns: each row names the facts it matches
 * (ANY where a fact does not matter) and the decision expected; the first
 * row that matches wins, in the order the README and the code take them.
 * A sweep then runs attempt_decide over every combination of the facts
 * (every state, bead state, job answer and status, evidence present or
 * absent, quiet or not, attempts below or at MAX_ATTEMPTS, ...) and checks
 * each decision against the row that matches it, and that every row is
 * reached. The concrete rows after them carry real times, at the edges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attempt.h"
#include "errors.h"
#include "store.h"

#define MINUTE (60 * 1000LL)
#define NOW (1000 * MINUTE)
#define MAX_ATTEMPTS 3
static const struct attempt_limits limits = {
    .stale_after_ms = 30 * MINUTE, .job_timeout_ms = 45 * MINUTE, .retry_backoff_ms = 1 * MINUTE,
    .max_attempts = MAX_ATTEMPTS, .min_missed_passes = 2,
};

#define ANY (-1)
#define ALL (~0u)
#define BIT(x) (1u << (x))

/* States as a mask; ORPHAN stands for "not tracked" (tracked = 0). */
#define ORPHAN BIT(AS_STATE_COUNT)
#define CLAIMING BIT(AS_CLAIMING)
#define CLAIMED BIT(AS_CLAIMED)
#define POSTING BIT(AS_POSTING)
#define UNKNOWN BIT(AS_UNKNOWN)
#define DISPATCHED BIT(AS_DISPATCHED)
#define IN_FLIGHT (POSTING | UNKNOWN | DISPATCHED) /* the agent may have the job */
#define TERMINAL (BIT(AS_CLOSED) | BIT(AS_BLOCKED) | BIT(AS_RELEASED) | BIT(AS_REFUSED) | \
                  BIT(AS_LOST_RACE) | BIT(AS_RETRYING) | BIT(AS_GAVE_UP))

/* Beads as a mask. */
#define GONE BIT(AB_GONE)
#define OPEN BIT(AB_OPEN)
#define IN_PROGRESS BIT(AB_IN_PROGRESS)
#define BLOCKED BIT(AB_BLOCKED)
#define CLOSED BIT(AB_CLOSED)
#define OTHER BIT(AB_OTHER)

/* Job answers as a mask: the five without a record, then each status. */
enum { J_NONE, J_MISSING, J_UNREACHABLE, J_UNUSABLE, J_UNAUTHORIZED, J_QUEUED, J_RUNNING, J_COMPLETED,
       J_FAILED, J_TIMEOUT, J_ERROR, J_COUNT };
#define NO_JOB BIT(J_NONE)
#define MISSING BIT(J_MISSING)
#define CANT_SAY (BIT(J_UNREACHABLE) | BIT(J_UNUSABLE))
#define UNAUTH BIT(J_UNAUTHORIZED)
#define ALIVE (BIT(J_QUEUED) | BIT(J_RUNNING))
#define RUNNING BIT(J_RUNNING)
#define EXITED (BIT(J_COMPLETED) | BIT(J_FAILED))
#define MAYBE_RUNNING (BIT(J_TIMEOUT) | BIT(J_ERROR))
#define ANSWERED (ALIVE | EXITED | MAYBE_RUNNING)

/* Evidence, as bits of the facts (present when set). */
enum { E_JOB_ID, E_LANDED, E_REACHED, E_RELEASED, E_AGAIN, E_NOTES, E_NOTED, E_ADOPTABLE, E_SEEN,
       E_RECOVERY, E_COUNT };
#define JOB_ID BIT(E_JOB_ID)         /* has_job_id */
#define LANDED BIT(E_LANDED)         /* claim_landed */
#define REACHED BIT(E_REACHED)       /* agent_reached */
#define RELEASED BIT(E_RELEASED)     /* released_by_us */
#define AGAIN BIT(E_AGAIN)           /* claimed_again */
#define NOTES BIT(E_NOTES)           /* notes_read */
#define NOTED BIT(E_NOTED)           /* dispatched_note */
#define ADOPTABLE BIT(E_ADOPTABLE)   /* adoptable */
#define SEEN BIT(E_SEEN)             /* seen_maybe_running */
#define RECOVERY BIT(E_RECOVERY)     /* recovery */

/* Expected next/via: KEEP = no transition (the state itself; none for an orphan). */
#define KEEP (-1)
#define NOVIA AS_STATE_COUNT
/* Expected retry_at. */
enum { R_NONE, R_BACKOFF, R_DEFER };
/* Expected flags. */
#define O_OWE 1u      /* owe_dispatched_note */
#define O_OWED 2u     /* owe_dispatched_note exactly when owed (recovery, notes read, job id, no note) */
#define O_GIVE_UP 4u
#define O_COUNTS 8u

/* The retry backoff after `used` attempts: RETRY_BACKOFF (1 min) doubled
 * per attempt beyond the first. */
static int64_t backoff_for(int used)
{
    static const int64_t minutes[] = {1, 1, 2, 4};
    assert_true(used >= 0 && used <= 3);
    return minutes[used] * MINUTE;
}

/* ------------------------------------------------------------------ */
/* The state table against the migration                               */

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char *buf = malloc(1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* The quoted words of the list after `key` up to the closing "))" or ")",
 * into words[]; returns how many. */
static int quoted_list(const char *sql, const char *key, char words[][32], int max)
{
    const char *p = strstr(sql, key);
    if (!p)
        fail_msg("migration has no \"%s\"", key);
    p += strlen(key);
    const char *end = strchr(p, ')');
    assert_non_null(end);
    int n = 0;
    while ((p = strchr(p, '\'')) && p < end) {
        const char *q = strchr(p + 1, '\'');
        assert_non_null(q);
        assert_true(n < max && q - p - 1 < 32);
        memcpy(words[n], p + 1, (size_t)(q - p - 1));
        words[n][q - p - 1] = '\0';
        n++;
        p = q + 1;
    }
    return n;
}

static void test_states_match_migration(void **state)
{
    (void)state;
    char *sql = read_text(BS_MIGRATION_JOURNAL);
    char words[32][32];
    /* The CHECK lists every state, in the table's order. */
    int n = quoted_list(sql, "CHECK (state IN (", words, 32);
    assert_int_equal(n, AS_STATE_COUNT);
    for (int i = 0; i < n; i++)
        assert_string_equal(words[i], attempt_state_name((enum attempt_state)i));
    /* The index of the active rows lists exactly the non-terminal ones. */
    n = quoted_list(sql, "WHERE state IN (", words, 32);
    int active = 0;
    for (int i = 0; i < AS_STATE_COUNT; i++) {
        if (attempt_state_terminal((enum attempt_state)i))
            continue;
        assert_true(active < n);
        assert_string_equal(words[active], attempt_state_name((enum attempt_state)i));
        active++;
    }
    assert_int_equal(active, n);
    free(sql);
}

static void test_state_words_round_trip(void **state)
{
    (void)state;
    static const struct {
        enum attempt_state st;
        const char *word;
        int terminal;
    } rows[] = {
        {AS_CLAIMING, "claiming", 0},  {AS_CLAIMED, "claimed", 0},     {AS_POSTING, "posting", 0},
        {AS_UNKNOWN, "unknown", 0},    {AS_DISPATCHED, "dispatched", 0}, {AS_CLOSED, "closed", 1},
        {AS_BLOCKED, "blocked", 1},    {AS_RELEASED, "released", 1},   {AS_REFUSED, "refused", 1},
        {AS_LOST_RACE, "lost_race", 1}, {AS_RETRYING, "retrying", 1},  {AS_GAVE_UP, "gave_up", 1},
    };
    assert_int_equal(sizeof rows / sizeof rows[0], AS_STATE_COUNT);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        assert_int_equal(rows[i].st, (enum attempt_state)i); /* the enum keeps its order */
        assert_string_equal(attempt_state_name(rows[i].st), rows[i].word);
        enum attempt_state back = AS_STATE_COUNT;
        assert_int_equal(attempt_state_parse(rows[i].word, &back), 0);
        assert_int_equal(back, rows[i].st);
        assert_int_equal(attempt_state_terminal(rows[i].st), rows[i].terminal);
    }
    enum attempt_state st;
    assert_int_equal(attempt_state_parse("Claiming", &st), BS_EINVAL);
    assert_int_equal(attempt_state_parse("", &st), BS_EINVAL);
}

/* The moves the table allows, as DESIGN.md "The journal" draws them. */
static int table_allows(enum attempt_state from, enum attempt_state to)
{
    static const unsigned next[AS_STATE_COUNT] = {
#define NEXT_OF(e, word, terminal, nx) [e] = (nx),
        ATTEMPT_STATES(NEXT_OF)
#undef NEXT_OF
    };
    if (attempt_state_terminal(from))
        return 0;
    return attempt_state_terminal(to) || (next[from] & ATTEMPT_NEXT(to)) != 0;
}

static void test_allowed_moves(void **state)
{
    (void)state;
    /* Forward steps, besides "any non-terminal state may end". */
    static const struct {
        enum attempt_state from, to;
    } steps[] = {
        {AS_CLAIMING, AS_CLAIMED}, {AS_CLAIMED, AS_POSTING},     {AS_POSTING, AS_DISPATCHED},
        {AS_POSTING, AS_UNKNOWN},  {AS_UNKNOWN, AS_DISPATCHED},
    };
    for (int from = 0; from < AS_STATE_COUNT; from++)
        for (int to = 0; to < AS_STATE_COUNT; to++) {
            int want = !attempt_state_terminal((enum attempt_state)from) &&
                       attempt_state_terminal((enum attempt_state)to);
            for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
                want |= steps[i].from == (enum attempt_state)from && steps[i].to == (enum attempt_state)to;
            if (table_allows((enum attempt_state)from, (enum attempt_state)to) != want)
                fail_msg("%s -> %s: allowed %d, want %d", attempt_state_name((enum attempt_state)from),
                         attempt_state_name((enum attempt_state)to), !want, want);
        }
}

/* ------------------------------------------------------------------ */
/* The backoff                                                          */

static void test_backoff(void **state)
{
    (void)state;
    static const struct {
        int64_t base;
        int steps;
        int64_t cap, want;
    } rows[] = {
        {60000, 1, 3600000, 60000},      /* the first retry waits RETRY_BACKOFF */
        {60000, 0, 3600000, 60000},      /* steps < 1 counts as 1 */
        {60000, -5, 3600000, 60000},
        {60000, 2, 3600000, 120000},
        {60000, 3, 3600000, 240000},
        {60000, 7, 3600000, 3600000},    /* 64 min: capped at 1 h */
        {60000, 1000, 3600000, 3600000}, /* no overflow */
        {7200000, 1, 3600000, 3600000},  /* a base above the cap */
        {0, 3, 3600000, 1},              /* at least 1 ms */
        {-5, 3, 3600000, 1},
        {1, 1, 3600000, 1},
        {1, 11, 3600000, 1024},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t got = attempt_backoff_ms(rows[i].base, rows[i].steps, rows[i].cap);
        if (got != rows[i].want)
            fail_msg("row %zu: backoff(%lld, %d, %lld) = %lld, want %lld", i, (long long)rows[i].base,
                     rows[i].steps, (long long)rows[i].cap, (long long)got, (long long)rows[i].want);
    }
}

/* ------------------------------------------------------------------ */
/* The decision's expected shape, shared by the three tables            */

struct want {
    enum attempt_act act;
    enum attempt_rule rule;
    int via, next;              /* KEEP, or a state; via NOVIA = none */
    const char *bead_to, *outcome, *reason;
    int retry;                  /* R_NONE, R_BACKOFF, R_DEFER */
    unsigned out;               /* O_* */
    enum attempt_service service;
};

static const char *act_name(enum attempt_act a)
{
    static const char *const n[] = {"nothing", "record", "move", "post", "adopt"};
    return (unsigned)a < sizeof n / sizeof n[0] ? n[a] : "?";
}

static const char *str(const char *s) { return s ? s : "(null)"; }

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Describes the facts, for a failure message. */
static void describe(const struct attempt_facts *f, char *buf, size_t len)
{
    snprintf(buf, len,
             "event=%d tracked=%d state=%s bead=%d mine=%d job=%d status=%d claim=%d verdict=%d bb=%d "
             "used=%d missed=%d quiet_since=%lld finished=%lld dispatched=%lld evidence: job_id=%d "
             "landed=%d reached=%d released=%d again=%d notes=%d noted=%d adoptable=%d seen=%d "
             "recovery=%d",
             f->event, f->tracked, attempt_state_name(f->state), f->bead, f->mine, f->job, f->job_status,
             f->claim, f->verdict, f->beadboard, f->attempts_used, f->missed_passes,
             (long long)(f->quiet_since_ms - NOW) / MINUTE, (long long)(f->job_finished_ms - NOW) / MINUTE,
             (long long)(f->dispatched_ms - NOW) / MINUTE, f->has_job_id, f->claim_landed, f->agent_reached,
             f->released_by_us, f->claimed_again, f->notes_read, f->dispatched_note, f->adoptable,
             f->seen_maybe_running, f->recovery);
}

/* Owed: recovery found the "dispatched: job=" note missing. */
static int owed(const struct attempt_facts *f)
{
    return f->recovery && f->notes_read && f->has_job_id && !f->dispatched_note;
}

/* Fails naming the row and the facts unless d is what w says. */
static void check(const char *row, const struct attempt_facts *f, const struct want *w,
                  const struct attempt_decision *d)
{
    enum attempt_state keep = f->tracked ? f->state : AS_STATE_COUNT;
    enum attempt_state via = w->via == KEEP ? keep : (enum attempt_state)w->via;
    enum attempt_state next = w->next == KEEP ? keep : (enum attempt_state)w->next;
    int64_t retry = w->retry == R_BACKOFF ? f->now_ms + backoff_for(f->attempts_used)
                  : w->retry == R_DEFER   ? f->now_ms + 60 * MINUTE
                                          : 0;
    int owe = (w->out & O_OWE) || ((w->out & O_OWED) && owed(f));
    const char *what = NULL;
    if (d->act != w->act)
        what = "act";
    else if (d->rule != w->rule)
        what = "rule";
    else if (d->via != via)
        what = "via";
    else if (d->next != next)
        what = "next";
    else if (!same_str(d->bead_to, w->bead_to))
        what = "bead_to";
    else if (!same_str(d->outcome, w->outcome))
        what = "outcome";
    else if (!same_str(d->reason, w->reason))
        what = "reason";
    else if (d->retry_at != retry)
        what = "retry_at";
    else if (d->owe_dispatched_note != owe)
        what = "owe_dispatched_note";
    else if (d->give_up != !!(w->out & O_GIVE_UP))
        what = "give_up";
    else if (d->counts != !!(w->out & O_COUNTS))
        what = "counts";
    else if (d->service != w->service)
        what = "service";
    if (!what)
        return;
    char facts[700];
    describe(f, facts, sizeof facts);
    fail_msg("row \"%s\": %s differs.\n  facts: %s\n  got:  act=%s rule=%s via=%s next=%s bead_to=%s "
             "outcome=%s reason=%s retry_at=NOW%+lldms owe=%d give_up=%d counts=%d service=%d\n"
             "  want: act=%s rule=%s via=%s next=%s bead_to=%s outcome=%s reason=%s retry_at=NOW%+lldms "
             "owe=%d give_up=%d counts=%d service=%d",
             row, what, facts, act_name(d->act), attempt_rule_name(d->rule), attempt_state_name(d->via),
             attempt_state_name(d->next), str(d->bead_to), str(d->outcome), str(d->reason),
             (long long)(d->retry_at ? d->retry_at - f->now_ms : 0), d->owe_dispatched_note, d->give_up,
             d->counts, d->service, act_name(w->act), attempt_rule_name(w->rule), attempt_state_name(via),
             attempt_state_name(next), str(w->bead_to), str(w->outcome), str(w->reason),
             (long long)(retry ? retry - f->now_ms : 0), owe, !!(w->out & O_GIVE_UP), !!(w->out & O_COUNTS),
             w->service);
}

/* Every move a decision asks the journal for is one the state table allows. */
static void check_moves(const struct attempt_facts *f, const struct attempt_decision *d)
{
    if (!f->tracked)
        return;
    enum attempt_state at = f->state;
    if (d->via != AS_STATE_COUNT) {
        if (!table_allows(at, d->via))
            fail_msg("%s -> via %s: not allowed", attempt_state_name(at), attempt_state_name(d->via));
        at = d->via;
    }
    if (d->next != at && !table_allows(at, d->next))
        fail_msg("%s -> %s: not allowed", attempt_state_name(at), attempt_state_name(d->next));
}

/* ------------------------------------------------------------------ */
/* AE_RECONCILE: a reap pass or recovery                                */

/* Pattern of facts, first match wins. quiet: the bead quiet for STALE_AFTER
 * (and the job ended at least that long ago, when it ended); missed: 0 =
 * fewer passes without an answer than the minimum, 1 = at it; ran_long:
 * dispatched longer ago than JOB_TIMEOUT + STALE_AFTER; used_max: attempts
 * used at MAX_ATTEMPTS; owed: see owed(). */
struct reconcile_row {
    const char *what;
    unsigned states, beads;
    int mine;
    unsigned jobs, ev_set, ev_clear;
    int quiet, missed, ran_long, used_max, owed;
    struct want w;
};

/* Shorthands for the expected decisions. */
#define WAIT(rule) {AA_NOTHING, rule, NOVIA, KEEP, NULL, NULL, NULL, R_NONE, 0, AV_SAME}
/* ... for an attempt that was posted (it counts towards MAX_ATTEMPTS) */
#define WAIT_POSTED(rule) {AA_NOTHING, rule, NOVIA, KEEP, NULL, NULL, NULL, R_NONE, O_COUNTS, AV_SAME}
#define RECORD(rule, next, reason, out) {AA_RECORD, rule, NOVIA, next, NULL, NULL, reason, R_NONE, out, AV_SAME}
#define RETRY(rule, via) {AA_MOVE, rule, via, AS_RETRYING, "open", "retrying", "retrying", R_BACKOFF, O_COUNTS, AV_SAME}
#define GIVE_UP(rule, via) {AA_MOVE, rule, via, AS_GAVE_UP, "blocked", "gave_up", "gave_up", R_NONE, O_GIVE_UP | O_COUNTS, AV_SAME}

static const struct reconcile_row reconcile_rows[] = {
    /* what                                   states      beads        mine jobs  ev_set          ev_clear quiet missed long max owed  decision */
    /* Ended attempts are never loaded: whatever the facts, nothing. */
    {"terminal: nothing",                     TERMINAL,   ALL,         ANY, ALL,  0,              0,       ANY,  ANY,  ANY, ANY, ANY, WAIT(AR_NONE)},

    /* "the agent (or a person) closes, blocks, reopens or reassigns the bead" — and deletes it. */
    {"bead gone before the POST",             CLAIMING | CLAIMED, GONE, ANY, ALL, 0,              0,       ANY,  ANY,  ANY, ANY, ANY, RECORD(AR_BEAD_GONE, AS_RELEASED, "reopened", 0)},
    {"bead gone",                             IN_FLIGHT,  GONE,        ANY, ALL,  0,              0,       ANY,  ANY,  ANY, ANY, ANY, RECORD(AR_BEAD_GONE, AS_RELEASED, "reopened", O_COUNTS)},

    /* "daemon killed ... at any instant": claiming -> claimed (our note on the bead) or lost_race. */
    {"claiming, our claim landed: post it",   CLAIMING,   IN_PROGRESS, 1,   ALL,  LANDED,         0,       ANY,  ANY,  ANY, ANY, ANY,
     {AA_POST, AR_CLAIMED, AS_CLAIMED, AS_POSTING, NULL, NULL, "recovered", R_NONE, O_COUNTS, AV_SAME}},
    {"claiming, the claim never landed",      CLAIMING,   ALL,         ANY, ALL,  0,              0,       ANY,  ANY,  ANY, ANY, ANY, RECORD(AR_CLAIM_NOT_MADE, AS_LOST_RACE, "lost_race", 0)},
    /* ... claimed -> POSTed now (it never was), unless the bead moved. */
    {"claimed, bead ours: post it",           CLAIMED,    IN_PROGRESS, 1,   ALL,  0,              0,       ANY,  ANY,  ANY, ANY, ANY,
     {AA_POST, AR_CLAIMED, NOVIA, AS_POSTING, NULL, NULL, "recovered", R_NONE, O_COUNTS, AV_SAME}},
    {"claimed, bead moved before the POST",   CLAIMED,    ALL,         ANY, ALL,  0,              0,       ANY,  ANY,  ANY, ANY, ANY, RECORD(AR_NOT_POSTED_MOVED, AS_RELEASED, "reopened", 0)},

    /* "the agent (or a person) closes, blocks, reopens or reassigns the bead": closed / blocked / released. */
    {"closed (by anyone, assigned to anyone)", IN_FLIGHT, CLOSED,      ANY, ALL,  0,              0,       ANY,  ANY,  ANY, ANY, ANY, RECORD(AR_CLOSED, AS_CLOSED, "closed", O_COUNTS)},
    {"reassigned",                            IN_FLIGHT,  ALL,         0,   ALL,  0,              0,       ANY,  ANY,  ANY, ANY, ANY, RECORD(AR_REASSIGNED, AS_RELEASED, "reopened", O_COUNTS)},
    {"set blocked",                           IN_FLIGHT,  BLOCKED,     1,   ALL,  0,              0,       ANY,  ANY,  ANY, ANY, ANY, RECORD(AR_SET_BLOCKED, AS_BLOCKED, "blocked", O_COUNTS)},
    /* "the active instance killed ...": the dead instance's row ends released (superseded). */
    {"superseded: claimed again since",       DISPATCHED, IN_PROGRESS, 1,   ALL,  NOTES | AGAIN,  0,       ANY,  ANY,  ANY, ANY, ANY, RECORD(AR_SUPERSEDED, AS_RELEASED, "reopened", O_COUNTS)},
    /* Our own release, from a pass that died between the Dolt write and the journal. */
    {"open by our own release",               IN_FLIGHT,  OPEN,        1,   ALL,  JOB_ID | RELEASED, 0,    ANY,  ANY,  ANY, ANY, ANY,
     {AA_RECORD, AR_RELEASED_EARLIER, NOVIA, AS_RETRYING, NULL, NULL, "retrying", R_BACKOFF, O_COUNTS, AV_SAME}},
    {"reopened or moved by someone else",     IN_FLIGHT,  OPEN | OTHER, 1,  ALL,  0,              0,       ANY,  ANY,  ANY, ANY, ANY, RECORD(AR_MOVED_BY_OTHERS, AS_RELEASED, "reopened", O_COUNTS)},

    /* From here the bead is in progress and ours. */
    /* "POST sent, no usable answer": the agent's claim note proves it arrived (posting -> unknown);
     * released for a new attempt only after STALE_AFTER without an update. */
    {"posting, reached, quiet: retry",        POSTING,    IN_PROGRESS, 1,   ALL,  REACHED,        0,       1,    ANY,  ANY, 0,   ANY, RETRY(AR_NO_ANSWER_QUIET, AS_UNKNOWN)},
    {"posting, reached, quiet, used up",      POSTING,    IN_PROGRESS, 1,   ALL,  REACHED,        0,       1,    ANY,  ANY, 1,   ANY, GIVE_UP(AR_NO_ANSWER_QUIET, AS_UNKNOWN)},
    {"posting, reached: unknown",             POSTING,    IN_PROGRESS, 1,   ALL,  REACHED,        0,       0,    ANY,  ANY, ANY, ANY, RECORD(AR_REACHED, AS_UNKNOWN, "reached", O_COUNTS)},
    {"no job id, quiet: retry",               POSTING | UNKNOWN, IN_PROGRESS, 1, ALL, 0,           0,       1,    ANY,  ANY, 0,   ANY, RETRY(AR_NO_ANSWER_QUIET, NOVIA)},
    {"no job id, quiet, used up",             POSTING | UNKNOWN, IN_PROGRESS, 1, ALL, 0,           0,       1,    ANY,  ANY, 1,   ANY, GIVE_UP(AR_NO_ANSWER_QUIET, NOVIA)},
    {"no job id, active: wait",               POSTING | UNKNOWN, IN_PROGRESS, 1, ALL, 0,           0,       0,    ANY,  ANY, ANY, ANY,
     WAIT_POSTED(AR_NONE)},

    /* dispatched, bead in progress and ours: the job says. A "dispatched: job=" note that recovery
     * finds missing is owed whatever the job says ("daemon killed ... a missing note written"). */
    /* "job still running past its timeout + STALE_AFTER" */
    {"running past the hard limit",           DISPATCHED, IN_PROGRESS, 1,   RUNNING, 0,           0,       ANY,  ANY,  1,   ANY, ANY,
     {AA_MOVE, AR_HARD_LIMIT, NOVIA, AS_BLOCKED, "blocked", "hard_limit", "blocked", R_NONE, O_OWED | O_COUNTS, AV_SAME}},
    {"queued or running: alive",              DISPATCHED, IN_PROGRESS, 1,   ALIVE, 0,             0,       ANY,  ANY,  ANY, ANY, 0,
     WAIT_POSTED(AR_ALIVE)},
    {"alive, dispatched note owed",           DISPATCHED, IN_PROGRESS, 1,   ALIVE, 0,             0,       ANY,  ANY,  ANY, ANY, 1,
     {AA_NOTHING, AR_ALIVE, NOVIA, KEEP, NULL, NULL, "noted", R_NONE, O_OWE | O_COUNTS, AV_SAME}},
    /* "job completed/failed (the agent exited) and the bead still in_progress" / "...and attempts are used up" */
    {"exited: retry",                         DISPATCHED, IN_PROGRESS, 1,   EXITED, 0,            0,       ANY,  ANY,  ANY, 0,   ANY,
     {AA_MOVE, AR_EXITED, NOVIA, AS_RETRYING, "open", "retrying", "retrying", R_BACKOFF, O_OWED | O_COUNTS, AV_SAME}},
    {"exited, used up",                       DISPATCHED, IN_PROGRESS, 1,   EXITED, 0,            0,       ANY,  ANY,  ANY, 1,   ANY,
     {AA_MOVE, AR_EXITED, NOVIA, AS_GAVE_UP, "blocked", "gave_up", "gave_up", R_NONE, O_OWED | O_GIVE_UP | O_COUNTS, AV_SAME}},
    /* "job timeout or error (the service does not stop a timed-out agent)" */
    {"timeout/error, quiet since: retry",     DISPATCHED, IN_PROGRESS, 1,   MAYBE_RUNNING, 0,     0,       1,    ANY,  ANY, 0,   ANY,
     {AA_MOVE, AR_MAYBE_RUNNING_QUIET, NOVIA, AS_RETRYING, "open", "retrying", "retrying", R_BACKOFF, O_OWED | O_COUNTS, AV_SAME}},
    {"timeout/error, quiet since, used up",   DISPATCHED, IN_PROGRESS, 1,   MAYBE_RUNNING, 0,     0,       1,    ANY,  ANY, 1,   ANY,
     {AA_MOVE, AR_MAYBE_RUNNING_QUIET, NOVIA, AS_GAVE_UP, "blocked", "gave_up", "gave_up", R_NONE, O_OWED | O_GIVE_UP | O_COUNTS, AV_SAME}},
    /* "agent restarted: GET /jobs/{id} -> 404"; a 404 for a job seen timeout/error waits for quiet */
    {"404: retry",                            DISPATCHED, IN_PROGRESS, 1,   MISSING, 0,           SEEN,    ANY,  ANY,  ANY, 0,   ANY,
     {AA_MOVE, AR_JOB_MISSING, NOVIA, AS_RETRYING, "open", "retrying", "retrying", R_BACKOFF, O_OWED | O_COUNTS, AV_SAME}},
    {"404: used up",                          DISPATCHED, IN_PROGRESS, 1,   MISSING, 0,           SEEN,    ANY,  ANY,  ANY, 1,   ANY,
     {AA_MOVE, AR_JOB_MISSING, NOVIA, AS_GAVE_UP, "blocked", "gave_up", "gave_up", R_NONE, O_OWED | O_GIVE_UP | O_COUNTS, AV_SAME}},
    {"404 after timeout/error, quiet: retry", DISPATCHED, IN_PROGRESS, 1,   MISSING, SEEN,        0,       1,    ANY,  ANY, 0,   ANY,
     {AA_MOVE, AR_JOB_MISSING, NOVIA, AS_RETRYING, "open", "retrying", "retrying", R_BACKOFF, O_OWED | O_COUNTS, AV_SAME}},
    {"404 after timeout/error, quiet, used up", DISPATCHED, IN_PROGRESS, 1, MISSING, SEEN,        0,       1,    ANY,  ANY, 1,   ANY,
     {AA_MOVE, AR_JOB_MISSING, NOVIA, AS_GAVE_UP, "blocked", "gave_up", "gave_up", R_NONE, O_OWED | O_GIVE_UP | O_COUNTS, AV_SAME}},
    /* "GET /jobs/{id} unanswered or unusable": untouched after one miss; two and quiet: blocked, stale */
    {"agent can't say twice, quiet: stale",   DISPATCHED, IN_PROGRESS, 1,   CANT_SAY, 0,          0,       1,    1,    ANY, ANY, ANY,
     {AA_MOVE, AR_STALE, NOVIA, AS_BLOCKED, "blocked", "stale", "stale", R_NONE, O_OWED | O_COUNTS, AV_SAME}},
    /* Everything else waits: timeout/error or a 404 after one while the bead is active, one miss,
     * a token refused (not the bead's problem), no job id. */
    {"dispatched: wait",                      DISPATCHED, IN_PROGRESS, 1,   ALL,  0,              0,       ANY,  ANY,  ANY, ANY, 0,
     WAIT_POSTED(AR_NONE)},
    {"dispatched: wait, dispatched note owed", DISPATCHED, IN_PROGRESS, 1,  ALL,  0,              0,       ANY,  ANY,  ANY, ANY, 1,
     {AA_NOTHING, AR_NONE, NOVIA, KEEP, NULL, NULL, "noted", R_NONE, O_OWE | O_COUNTS, AV_SAME}},

    /* Orphans: in progress, assigned to us, not in this journal (only such beads are loaded). */
    {"orphan not in progress or not ours",    ORPHAN,     ALL & ~IN_PROGRESS, ANY, ALL, 0,        0,       ANY,  ANY,  ANY, ANY, ANY, WAIT(AR_NONE)},
    {"orphan not ours",                       ORPHAN,     IN_PROGRESS, 0,   ALL,  0,              0,       ANY,  ANY,  ANY, ANY, ANY, WAIT(AR_NONE)},
    /* "...another beads-sched instance's attempt": adopted. */
    {"another instance's attempt: adopt",     ORPHAN,     IN_PROGRESS, 1,   ALL,  JOB_ID | ADOPTABLE, 0,   ANY,  ANY,  ANY, ANY, ANY,
     {AA_ADOPT, AR_ADOPTED, NOVIA, AS_DISPATCHED, NULL, NULL, "adopted", R_NONE, O_COUNTS, AV_SAME}},
    /* "the same ... but no dispatch id in the claim note (the old CronJobs)": left alone while it
     * runs; otherwise the old rule. */
    {"old CronJobs' job alive",               ORPHAN,     IN_PROGRESS, 1,   ALIVE, JOB_ID,        0,       ANY,  ANY,  ANY, ANY, ANY, WAIT(AR_ALIVE)},
    {"old CronJobs' job ended or unknown, quiet: stale", ORPHAN, IN_PROGRESS, 1, EXITED | MAYBE_RUNNING | MISSING | NO_JOB, JOB_ID, 0, 1, ANY, ANY, ANY, ANY,
     {AA_MOVE, AR_STALE, NOVIA, AS_STATE_COUNT, "blocked", "stale", "stale", R_NONE, 0, AV_SAME}},
    {"old CronJobs' agent can't say twice, quiet", ORPHAN, IN_PROGRESS, 1,  CANT_SAY, JOB_ID,     0,       1,    1,    ANY, ANY, ANY,
     {AA_MOVE, AR_STALE, NOVIA, AS_STATE_COUNT, "blocked", "stale", "stale", R_NONE, 0, AV_SAME}},
    {"old CronJobs', job id, otherwise: wait", ORPHAN,    IN_PROGRESS, 1,   ALL,  JOB_ID,         0,       ANY,  ANY,  ANY, ANY, ANY, WAIT(AR_NONE)},
    /* "bead in progress, assigned to the agent, unknown to the store, no job id (hand edits)" */
    {"hand edit, quiet: stale",               ORPHAN,     IN_PROGRESS, 1,   ALL,  0,              JOB_ID,  1,    ANY,  ANY, ANY, ANY,
     {AA_MOVE, AR_STALE, NOVIA, AS_STATE_COUNT, "blocked", "stale", "stale", R_NONE, 0, AV_SAME}},
    {"hand edit, active: wait",               ORPHAN,     IN_PROGRESS, 1,   ALL,  0,              JOB_ID,  0,    ANY,  ANY, ANY, ANY, WAIT(AR_NONE)},
};

/* The quiet variants the sweep tries. */
enum { Q_FRESH, Q_QUIET, Q_ENDED_JUST_NOW, Q_COUNT };

struct combo {
    int tracked;
    enum attempt_state state;
    int bead, mine, job, quiet, missed, ran, used, ev;
};

static int is_quiet(int q) { return q == Q_QUIET; }

static struct attempt_facts reconcile_facts(const struct combo *c)
{
    struct attempt_facts f = {
        .event = AE_RECONCILE, .tracked = c->tracked, .state = c->state,
        .bead = (enum attempt_bead)c->bead, .mine = c->mine, .now_ms = NOW,
        .attempts_used = c->used,
        .missed_passes = c->missed,
        .quiet_since_ms = c->quiet == Q_FRESH ? NOW - 1 * MINUTE : NOW - 31 * MINUTE,
        .job_finished_ms = c->quiet == Q_ENDED_JUST_NOW ? NOW - 1 * MINUTE : 0,
        /* 0: unknown; 10 min; past JOB_TIMEOUT + STALE_AFTER (75 min) */
        .dispatched_ms = c->ran == 0 ? 0 : c->ran == 1 ? NOW - 10 * MINUTE : NOW - 76 * MINUTE,
    };
    if (c->job < J_QUEUED) {
        static const enum attempt_job plain[] = {AJ_NONE, AJ_MISSING, AJ_UNREACHABLE, AJ_UNUSABLE,
                                                 AJ_UNAUTHORIZED};
        f.job = plain[c->job];
    } else {
        f.job = AJ_ANSWERED;
        f.job_status = (enum agent_job_status)(JOB_QUEUED + (c->job - J_QUEUED));
    }
    f.has_job_id = !!(c->ev & JOB_ID);
    f.claim_landed = !!(c->ev & LANDED);
    f.agent_reached = !!(c->ev & REACHED);
    f.released_by_us = !!(c->ev & RELEASED);
    f.claimed_again = !!(c->ev & AGAIN);
    f.notes_read = !!(c->ev & NOTES);
    f.dispatched_note = !!(c->ev & NOTED);
    f.adoptable = !!(c->ev & ADOPTABLE);
    f.seen_maybe_running = !!(c->ev & SEEN);
    f.recovery = !!(c->ev & RECOVERY);
    return f;
}

static int fits(int pattern, int value) { return pattern == ANY || pattern == value; }

static int matches(const struct reconcile_row *r, const struct combo *c, const struct attempt_facts *f)
{
    unsigned st = c->tracked ? BIT(c->state) : ORPHAN;
    return (r->states & st) && (r->beads & BIT(c->bead)) && fits(r->mine, c->mine) &&
           (r->jobs & BIT(c->job)) && (c->ev & r->ev_set) == r->ev_set && (c->ev & r->ev_clear) == 0 &&
           fits(r->quiet, is_quiet(c->quiet)) && fits(r->missed, c->missed >= 2) &&
           fits(r->ran_long, c->ran == 2) && fits(r->used_max, c->used >= MAX_ATTEMPTS) &&
           fits(r->owed, owed(f));
}

/* Evidence variants: none, all, each alone, all but each; with pairs, also
 * each pair, and a recovery pass that read the notes of a bead with a job
 * id with each other piece of evidence (the dispatched note owed, or not). */
static int evidence_variants(unsigned *out, int pairs)
{
    int n = 0;
    out[n++] = 0;
    out[n++] = BIT(E_COUNT) - 1;
    for (int i = 0; i < E_COUNT; i++) {
        out[n++] = BIT(i);
        out[n++] = (BIT(E_COUNT) - 1) & ~BIT(i);
        for (int j = i + 1; j < E_COUNT && pairs; j++)
            out[n++] = BIT(i) | BIT(j);
        if (pairs)
            out[n++] = JOB_ID | NOTES | RECOVERY | BIT(i);
    }
    return n;
}

static void test_reconcile_table(void **state)
{
    (void)state;
    enum { NROWS = sizeof reconcile_rows / sizeof reconcile_rows[0] };
    unsigned hits[NROWS] = {0};
    unsigned ev[256];
    int nev = evidence_variants(ev, 1);
    long combos = 0;
    for (int s = 0; s <= AS_STATE_COUNT; s++) {           /* AS_STATE_COUNT: an orphan */
        /* Passes missed and run time only matter where a job is asked
         * about; the other states get every job answer with the values
         * that make the job rules act (two misses, past the hard limit). */
        int job_rules = s == AS_DISPATCHED || s == AS_STATE_COUNT;
        for (int bead = AB_GONE; bead <= AB_OTHER; bead++)
        for (int mine = 0; mine <= 1; mine++)
        for (int job = 0; job < J_COUNT; job++)
        for (int q = 0; q < Q_COUNT; q++)
        for (int missed = job_rules ? 1 : 2; missed <= 2; missed++)
        for (int ran = job_rules ? 0 : 2; ran <= 2; ran++)
        for (int used = 1; used <= MAX_ATTEMPTS; used += MAX_ATTEMPTS - 1)
        for (int e = 0; e < nev; e++) {
            struct combo c = {s < AS_STATE_COUNT, s < AS_STATE_COUNT ? (enum attempt_state)s : AS_CLAIMING,
                              bead, mine, job, q, missed, ran, used, (int)ev[e]};
            struct attempt_facts f = reconcile_facts(&c);
            size_t i = 0;
            while (i < NROWS && !matches(&reconcile_rows[i], &c, &f))
                i++;
            if (i == NROWS) {
                char facts[700];
                describe(&f, facts, sizeof facts);
                fail_msg("no row matches: %s", facts);
            }
            hits[i]++;
            struct attempt_decision d = attempt_decide(&f, &limits);
            check(reconcile_rows[i].what, &f, &reconcile_rows[i].w, &d);
            check_moves(&f, &d);
            combos++;
        }
    }
    for (size_t i = 0; i < NROWS; i++)
        if (!hits[i])
            fail_msg("row \"%s\" matches no combination: shadowed by the rows above it", reconcile_rows[i].what);
    print_message("reconcile: %zu rows, %ld combinations\n", (size_t)NROWS, combos);
}

/* ------------------------------------------------------------------ */
/* The forward steps: AE_CLAIMED (the claim's compare-and-swap ran) and  */
/* AE_ANSWERED (POST /execute got its answer)                           */

struct step_row {
    const char *what;
    enum attempt_event event;
    unsigned states;
    int claim, verdict, beadboard, used_max;   /* ANY or a value */
    struct want w;
};

#define GIVEN_BACK(rule, outcome, retry, service) \
    {AA_MOVE, rule, NOVIA, AS_REFUSED, "open", outcome, "given_back", retry, 0, service}

static const struct step_row step_rows[] = {
    /* what                                     event        states    claim              verdict        bb   max  decision */
    /* The claim step of a cycle; "Dolt conflict (error 1213) or another scheduler claimed first". */
    {"claimed: post it",                       AE_CLAIMED,  CLAIMING, AC_DONE,           ANY,           ANY, ANY,
     {AA_POST, AR_CLAIMED, AS_CLAIMED, AS_POSTING, NULL, NULL, NULL, R_NONE, O_COUNTS, AV_SAME}},
    {"CAS failed, but ours on re-read",        AE_CLAIMED,  CLAIMING, AC_OURS_AFTER_ALL, ANY,           ANY, ANY,
     {AA_POST, AR_CLAIMED, AS_CLAIMED, AS_POSTING, NULL, NULL, NULL, R_NONE, O_COUNTS, AV_SAME}},
    {"lost the race",                          AE_CLAIMED,  CLAIMING, AC_LOST,           ANY,           ANY, ANY, RECORD(AR_CLAIM_LOST, AS_LOST_RACE, "lost_race", 0)},
    {"not claimed: released",                  AE_CLAIMED,  CLAIMING, AC_FAILED,         ANY,           ANY, ANY, RECORD(AR_CLAIM_FAILED, AS_RELEASED, "released", 0)},
    /* A connection lost during the COMMIT: left for recovery ("daemon killed ... at any instant"). */
    {"uncertain: left in claiming",            AE_CLAIMED,  CLAIMING, AC_UNCERTAIN,      ANY,           ANY, ANY, WAIT(AR_CLAIM_UNCERTAIN)},
    {"claim outcome out of claiming: nothing", AE_CLAIMED,  CLAIMED | TERMINAL | ORPHAN, ANY, ANY,      ANY, ANY, WAIT(AR_NONE)},
    {"claim outcome once posted: nothing",     AE_CLAIMED,  IN_FLIGHT, ANY,              ANY,           ANY, ANY, WAIT_POSTED(AR_NONE)},

    {"202: dispatched, the note goes out",     AE_ANSWERED, POSTING,  ANY,               APV_ACCEPTED,  ANY, ANY,
     {AA_RECORD, AR_ACCEPTED, NOVIA, AS_DISPATCHED, NULL, NULL, "dispatched", R_NONE, O_OWE | O_COUNTS, AV_TAKES_JOBS}},
    /* "POST sent, no usable answer": unknown, never re-sent */
    {"ambiguous: unknown, for the reaper",     AE_ANSWERED, POSTING,  ANY,               APV_AMBIGUOUS, ANY, ANY, RECORD(AR_AMBIGUOUS, AS_UNKNOWN, "unknown", O_COUNTS)},
    /* "the service refuses this bead's request (400, 422)": retrying, outcome rejected; the last gave_up */
    {"400/422: refused, retried",              AE_ANSWERED, POSTING,  ANY,               APV_REJECTED,  ANY, 0,
     {AA_MOVE, AR_REFUSED, NOVIA, AS_RETRYING, "open", "rejected", "refused", R_BACKOFF, O_COUNTS, AV_SAME}},
    {"400/422 with attempts used up: blocked", AE_ANSWERED, POSTING,  ANY,               APV_REJECTED,  ANY, 1,
     {AA_MOVE, AR_REFUSED, NOVIA, AS_GAVE_UP, "blocked", "gave_up", "refused", R_BACKOFF, O_GIVE_UP | O_COUNTS, AV_SAME}},
    /* "the service is full (429), the single-slot service busy (409), or unreachable before anything
     * was sent": refused, outcome agent_full / not_sent; no attempt used; claims back off */
    {"409/429: given back, waits",             AE_ANSWERED, POSTING,  ANY,               APV_FULL,      ANY, ANY, GIVEN_BACK(AR_GIVEN_BACK_FULL, "agent_full", R_DEFER, AV_FULL)},
    {"never sent: given back, waits",          AE_ANSWERED, POSTING,  ANY,               APV_NOT_SENT,  ANY, ANY, GIVEN_BACK(AR_GIVEN_BACK_FULL, "not_sent", R_DEFER, AV_FULL)},
    /* "wrong token (401/403) or wrong URL (404 on /execute)": refused, outcome agent_auth; the gate closes */
    {"401/403: given back, the gate closes",   AE_ANSWERED, POSTING,  ANY,               APV_AUTH,      0,   ANY, GIVEN_BACK(AR_GIVEN_BACK_AUTH, "agent_auth", R_NONE, AV_TOKEN_REFUSED)},
    {"404: given back, the gate closes",       AE_ANSWERED, POSTING,  ANY,               APV_URL,       0,   ANY, GIVEN_BACK(AR_GIVEN_BACK_AUTH, "agent_auth", R_NONE, AV_URL_WRONG)},
    /* BeadBoard holds the token: its 401/403/404 are the board's, a backoff and no gate. */
    {"BeadBoard 401/403: back off",            AE_ANSWERED, POSTING,  ANY,               APV_AUTH,      1,   ANY, GIVEN_BACK(AR_GIVEN_BACK_AUTH, "agent_auth", R_NONE, AV_FULL)},
    {"BeadBoard 404: back off",                AE_ANSWERED, POSTING,  ANY,               APV_URL,       1,   ANY, GIVEN_BACK(AR_GIVEN_BACK_AUTH, "agent_auth", R_NONE, AV_FULL)},
    {"answer before posting: nothing",         AE_ANSWERED, CLAIMING | CLAIMED | TERMINAL | ORPHAN, ANY, ANY, ANY, ANY, WAIT(AR_NONE)},
    {"answer once answered: nothing",          AE_ANSWERED, UNKNOWN | DISPATCHED, ANY,   ANY,           ANY, ANY, WAIT_POSTED(AR_NONE)},
};

static int step_matches(const struct step_row *r, const struct attempt_facts *f)
{
    unsigned st = f->tracked ? BIT(f->state) : ORPHAN;
    return r->event == f->event && (r->states & st) && fits(r->claim, (int)f->claim) &&
           fits(r->verdict, (int)f->verdict) && fits(r->beadboard, f->beadboard) &&
           fits(r->used_max, f->attempts_used >= MAX_ATTEMPTS);
}

static void test_step_table(void **state)
{
    (void)state;
    enum { NROWS = sizeof step_rows / sizeof step_rows[0] };
    unsigned hits[NROWS] = {0};
    unsigned ev[256];
    int nev = evidence_variants(ev, 0);
    for (int event = AE_CLAIMED; event <= AE_ANSWERED; event++)
    for (int s = 0; s <= AS_STATE_COUNT; s++)
    for (int claim = AC_DONE; claim <= AC_UNCERTAIN; claim++)
    for (int v = APV_ACCEPTED; v <= APV_URL; v++)
    for (int bb = 0; bb <= 1; bb++)
    for (int used = 1; used <= MAX_ATTEMPTS; used += MAX_ATTEMPTS - 1)
    for (int bead = AB_GONE; bead <= AB_OTHER; bead++)
    for (int mine = 0; mine <= 1; mine++)
    for (int e = 0; e < nev; e++) {
        struct combo c = {s < AS_STATE_COUNT, s < AS_STATE_COUNT ? (enum attempt_state)s : AS_CLAIMING,
                          bead, mine, J_NONE, Q_QUIET, 1, 1, used, (int)ev[e]};
        struct attempt_facts f = reconcile_facts(&c);
        f.event = (enum attempt_event)event;
        f.claim = (enum attempt_claim)claim;
        f.verdict = (enum agent_post_verdict)v;
        f.beadboard = bb;
        size_t i = 0;
        while (i < NROWS && !step_matches(&step_rows[i], &f))
            i++;
        assert_true(i < NROWS);
        hits[i]++;
        struct attempt_decision d = attempt_decide(&f, &limits);
        check(step_rows[i].what, &f, &step_rows[i].w, &d);
        check_moves(&f, &d);
    }
    for (size_t i = 0; i < NROWS; i++)
        if (!hits[i])
            fail_msg("row \"%s\" matches no combination", step_rows[i].what);
}

/* ------------------------------------------------------------------ */
/* Concrete rows: real times, at the edges of the limits                */

struct concrete_row {
    const char *what;
    struct attempt_facts f;
    struct want w;
};

#define DISPATCHED_FACTS(used) .event = AE_RECONCILE, .tracked = 1, .state = AS_DISPATCHED, \
                               .bead = AB_IN_PROGRESS, .mine = 1, .has_job_id = 1, .attempts_used = (used), \
                               .now_ms = NOW
#define ORPHAN_FACTS(job_id) .event = AE_RECONCILE, .tracked = 0, .bead = AB_IN_PROGRESS, .mine = 1, \
                             .has_job_id = (job_id), .now_ms = NOW

static const struct concrete_row concrete_rows[] = {
    /* Times relative to NOW: quiet_since is the bead's last update, dispatched the 202. */
    {"running, fresh",
     {DISPATCHED_FACTS(1), .job = AJ_ANSWERED, .job_status = JOB_RUNNING, .quiet_since_ms = NOW - 40 * MINUTE,
      .dispatched_ms = NOW - 10 * MINUTE}, WAIT_POSTED(AR_ALIVE)},
    {"queued for long: queue time is not run time",
     {DISPATCHED_FACTS(1), .job = AJ_ANSWERED, .job_status = JOB_QUEUED, .quiet_since_ms = NOW - 90 * MINUTE,
      .dispatched_ms = NOW - 90 * MINUTE}, WAIT_POSTED(AR_ALIVE)},
    {"running exactly JOB_TIMEOUT + STALE_AFTER: not yet",
     {DISPATCHED_FACTS(1), .job = AJ_ANSWERED, .job_status = JOB_RUNNING, .quiet_since_ms = NOW - 1 * MINUTE,
      .dispatched_ms = NOW - 75 * MINUTE}, WAIT_POSTED(AR_ALIVE)},
    {"running 1 ms past JOB_TIMEOUT + STALE_AFTER",
     {DISPATCHED_FACTS(1), .job = AJ_ANSWERED, .job_status = JOB_RUNNING, .quiet_since_ms = NOW - 1 * MINUTE,
      .dispatched_ms = NOW - 75 * MINUTE - 1},
     {AA_MOVE, AR_HARD_LIMIT, NOVIA, AS_BLOCKED, "blocked", "hard_limit", "blocked", R_NONE, O_COUNTS, AV_SAME}},
    {"running for long, dispatch time unknown: no hard limit",
     {DISPATCHED_FACTS(1), .job = AJ_ANSWERED, .job_status = JOB_RUNNING, .quiet_since_ms = NOW - 500 * MINUTE},
     WAIT_POSTED(AR_ALIVE)},
    {"completed, bead in progress",
     {DISPATCHED_FACTS(1), .job = AJ_ANSWERED, .job_status = JOB_COMPLETED, .job_finished_ms = NOW - 1 * MINUTE,
      .quiet_since_ms = NOW - 1 * MINUTE, .dispatched_ms = NOW - 5 * MINUTE}, RETRY(AR_EXITED, NOVIA)},
    {"failed, second attempt: the backoff doubles",
     {DISPATCHED_FACTS(2), .job = AJ_ANSWERED, .job_status = JOB_FAILED,
      .quiet_since_ms = NOW - 1 * MINUTE},
     RETRY(AR_EXITED, NOVIA)},
    {"timeout, agent still noting",
     {DISPATCHED_FACTS(1), .job = AJ_ANSWERED, .job_status = JOB_TIMEOUT, .job_finished_ms = NOW - 40 * MINUTE,
      .quiet_since_ms = NOW - 2 * MINUTE}, WAIT_POSTED(AR_NONE)},
    {"timeout just now, bead quiet before",
     {DISPATCHED_FACTS(1), .job = AJ_ANSWERED, .job_status = JOB_TIMEOUT, .job_finished_ms = NOW - 1 * MINUTE,
      .quiet_since_ms = NOW - 50 * MINUTE}, WAIT_POSTED(AR_NONE)},
    {"timeout, quiet exactly STALE_AFTER since",
     {DISPATCHED_FACTS(1), .job = AJ_ANSWERED, .job_status = JOB_TIMEOUT, .job_finished_ms = NOW - 30 * MINUTE,
      .quiet_since_ms = NOW - 35 * MINUTE}, RETRY(AR_MAYBE_RUNNING_QUIET, NOVIA)},
    {"error, quiet 1 ms short of STALE_AFTER",
     {DISPATCHED_FACTS(1), .job = AJ_ANSWERED, .job_status = JOB_ERROR, .job_finished_ms = NOW - 40 * MINUTE,
      .quiet_since_ms = NOW - 30 * MINUTE + 1}, WAIT_POSTED(AR_NONE)},
    {"404 after timeout (evicted), agent noting",
     {DISPATCHED_FACTS(1), .job = AJ_MISSING, .seen_maybe_running = 1, .quiet_since_ms = NOW - 1 * MINUTE},
     WAIT_POSTED(AR_NONE)},
    {"two missed answers, bead active",
     {DISPATCHED_FACTS(1), .job = AJ_UNREACHABLE, .missed_passes = 5, .quiet_since_ms = NOW - 5 * MINUTE},
     WAIT_POSTED(AR_NONE)},
    {"token refused, bead quiet for hours",
     {DISPATCHED_FACTS(1), .job = AJ_UNAUTHORIZED, .missed_passes = 9, .quiet_since_ms = NOW - 600 * MINUTE},
     WAIT_POSTED(AR_NONE)},
    {"recovery: dispatched note missing, the job runs",
     {DISPATCHED_FACTS(1), .recovery = 1, .notes_read = 1, .job = AJ_ANSWERED, .job_status = JOB_RUNNING,
      .quiet_since_ms = NOW - 1 * MINUTE}, {AA_NOTHING, AR_ALIVE, NOVIA, AS_DISPATCHED, NULL, NULL, "noted",
      R_NONE, O_OWE | O_COUNTS, AV_SAME}},
    {"a pass without notes owes nothing",
     {DISPATCHED_FACTS(1), .recovery = 1, .notes_read = 0, .job = AJ_ANSWERED, .job_status = JOB_RUNNING,
      .quiet_since_ms = NOW - 1 * MINUTE}, {AA_NOTHING, AR_ALIVE, NOVIA, AS_DISPATCHED, NULL, NULL, NULL,
      R_NONE, O_COUNTS, AV_SAME}},
    {"unknown, quiet exactly STALE_AFTER",
     {.event = AE_RECONCILE, .tracked = 1, .state = AS_UNKNOWN, .bead = AB_IN_PROGRESS, .mine = 1,
      .attempts_used = 1, .now_ms = NOW, .quiet_since_ms = NOW - 30 * MINUTE}, RETRY(AR_NO_ANSWER_QUIET, NOVIA)},
    {"unknown, quiet 1 ms short",
     {.event = AE_RECONCILE, .tracked = 1, .state = AS_UNKNOWN, .bead = AB_IN_PROGRESS, .mine = 1,
      .attempts_used = 1, .now_ms = NOW, .quiet_since_ms = NOW - 30 * MINUTE + 1},
     WAIT_POSTED(AR_NONE)},
    {"orphan, no job id, quiet exactly STALE_AFTER",
     {ORPHAN_FACTS(0), .quiet_since_ms = NOW - 30 * MINUTE},
     {AA_MOVE, AR_STALE, NOVIA, AS_STATE_COUNT, "blocked", "stale", "stale", R_NONE, 0, AV_SAME}},
    {"orphan, no job id, active",
     {ORPHAN_FACTS(0), .quiet_since_ms = NOW - 29 * MINUTE}, WAIT(AR_NONE)},
    {"orphan, job failed long ago, bead quiet",
     {ORPHAN_FACTS(1), .job = AJ_ANSWERED, .job_status = JOB_FAILED, .job_finished_ms = NOW - 40 * MINUTE,
      .quiet_since_ms = NOW - 40 * MINUTE},
     {AA_MOVE, AR_STALE, NOVIA, AS_STATE_COUNT, "blocked", "stale", "stale", R_NONE, 0, AV_SAME}},
    {"orphan, job completed just now",
     {ORPHAN_FACTS(1), .job = AJ_ANSWERED, .job_status = JOB_COMPLETED, .job_finished_ms = NOW - 1 * MINUTE,
      .quiet_since_ms = NOW - 90 * MINUTE}, WAIT(AR_NONE)},
    {"orphan whose notes name a dispatch but no job: the old rule",
     {ORPHAN_FACTS(0), .adoptable = 1, .quiet_since_ms = NOW - 31 * MINUTE},
     {AA_MOVE, AR_STALE, NOVIA, AS_STATE_COUNT, "blocked", "stale", "stale", R_NONE, 0, AV_SAME}},
    {"adoption refused by the journal: decided again without it",
     {ORPHAN_FACTS(1), .adoptable = 0, .job = AJ_ANSWERED, .job_status = JOB_RUNNING,
      .quiet_since_ms = NOW - 90 * MINUTE}, WAIT(AR_ALIVE)},
};

static void test_concrete_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof concrete_rows / sizeof concrete_rows[0]; i++) {
        const struct concrete_row *r = &concrete_rows[i];
        struct attempt_decision d = attempt_decide(&r->f, &limits);
        check(r->what, &r->f, &r->w, &d);
    }
}

static void test_rule_names(void **state)
{
    (void)state;
    for (int r = 0; r < AR_RULE_COUNT; r++) {
        const char *name = attempt_rule_name((enum attempt_rule)r);
        assert_non_null(name);
        assert_string_not_equal(name, "?");
        for (int o = 0; o < r; o++)
            assert_string_not_equal(name, attempt_rule_name((enum attempt_rule)o));
    }
    assert_string_equal(attempt_rule_name(AR_RULE_COUNT), "?");
    assert_string_equal(attempt_rule_name(AR_STALE), "stale");
}

static void test_quiet_since(void **state)
{
    (void)state;
    struct attempt_facts f = {.quiet_since_ms = 100, .job_finished_ms = 0};
    assert_int_equal(attempt_quiet_since(&f), 100);
    f.job_finished_ms = 150;
    assert_int_equal(attempt_quiet_since(&f), 150);
    f.job_finished_ms = 50;
    assert_int_equal(attempt_quiet_since(&f), 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_states_match_migration),
        cmocka_unit_test(test_state_words_round_trip),
        cmocka_unit_test(test_allowed_moves),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_reconcile_table),
        cmocka_unit_test(test_step_table),
        cmocka_unit_test(test_concrete_rows),
        cmocka_unit_test(test_rule_names),
        cmocka_unit_test(test_quiet_since),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
