/* Unit tests: the notes module. The exact words of every note the daemon
 * writes (a table, each row copied from what the daemon wrote before the
 * notes module existed, byte for byte: users grep for them), every note
 * parsed back by its parser inside notes from other writers, the agent's
 * notes as the prompt tells the agent to write them, size bounds, and
 * parsers fed cut, foreign and near-miss text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beads.h"
#include "notes.h"
#include "prompt.h"
#include "text.h"

#define DISPATCH "3f2b9c1e-8a4d-4c1b-9f0e-2d5a7b6c8e90"
#define OTHER_DISPATCH "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
#define JOB "a1b2c3d4e5f6"
#define MINUTE (60 * 1000LL)

/* Whether s is valid UTF-8 (text_utf8_clean changes nothing). */
static int utf8_valid(const char *s)
{
    char *c = text_utf8_clean(s, strlen(s));
    int ok = c && strcmp(c, s) == 0;
    free(c);
    return ok;
}

/* ------------------------------------------------------------------ */
/* The exact texts                                                     */

enum kind {
    K_CLAIM, K_CLAIM_MARK, K_DISPATCHED, K_REFUSED, K_SKIPPED, K_RETRY, K_GIVE_UP, K_STALE,
    K_HARD_LIMIT, K_WHY_MISSING, K_WHY_MAYBE_RUNNING, K_WHY_NO_JOB_ID, K_REAPER_MARK,
};

struct text_row {
    enum kind kind;
    const char *s1, *s2; /* the strings the builder takes, in order */
    int64_t a, b;        /* its numbers, in order */
    const char *want;
};

static void build(const struct text_row *r, char *out, size_t len)
{
    switch (r->kind) {
    case K_CLAIM: notes_claim(out, len, r->s1, r->s2); break;
    case K_CLAIM_MARK: notes_claim_mark(out, len, r->s1); break;
    case K_DISPATCHED: notes_dispatched(out, len, r->s1); break;
    case K_REFUSED: notes_refused(out, len, (long)r->a, r->s1, (int)(r->b >> 8), (int)(r->b & 0xff)); break;
    case K_SKIPPED: notes_skipped(out, len, r->s1); break;
    case K_RETRY: notes_reap_retry(out, len, r->s1, (int)r->a, (int)r->b); break;
    case K_GIVE_UP: notes_reap_give_up(out, len, r->s1, (int)r->a, (int)r->b); break;
    case K_STALE: notes_reap_stale(out, len, r->a, r->b); break;
    case K_HARD_LIMIT: notes_reap_hard_limit(out, len, r->s1, r->s2, r->a, r->b); break;
    case K_WHY_MISSING: notes_why_missing(out, len, r->s1, (int)r->a); break;
    case K_WHY_MAYBE_RUNNING: notes_why_maybe_running(out, len, r->s1, r->a); break;
    case K_WHY_NO_JOB_ID: notes_why_no_job_id(out, len, r->s1, (int)r->a, r->b); break;
    case K_REAPER_MARK: notes_reaper_job_mark(out, len, r->s1); break;
    }
}

/* notes_refused's used/max packed into b: used << 8 | max. */
#define UM(used, max) (((int64_t)(used) << 8) | (max))

static const struct text_row texts[] = {
    /* dispatch.c claim_one */
    {K_CLAIM, "2026-11-21T05:04:39Z", DISPATCH, 0, 0,
     "auto-dispatcher claimed at 2026-11-21T05:04:39Z (dispatch " DISPATCH ")"},
    {K_CLAIM, NULL, DISPATCH, 0, 0, "auto-dispatcher claimed at ? (dispatch " DISPATCH ")"},
    {K_CLAIM_MARK, DISPATCH, NULL, 0, 0, "(dispatch " DISPATCH ")"},
    /* dispatch.c record_results, reap.c recovery */
    {K_DISPATCHED, JOB, NULL, 0, 0, "dispatched: job=" JOB},
    /* dispatch.c refusal_note and the attempts-exhausted suffix */
    {K_REFUSED, "{\"detail\":\"forced\"}", NULL, 503, UM(1, 3),
     "dispatch failed HTTP 503: {\"detail\":\"forced\"}"},
    {K_REFUSED, "bad request: {\"detail\":[{\"loc\":[\"body\",\"prompt\"]}]}", NULL, 422, UM(2, 3),
     "dispatch failed HTTP 422: bad request: {\"detail\":[{\"loc\":[\"body\",\"prompt\"]}]}"},
    {K_REFUSED, "{\"detail\":\"no\"}", NULL, 400, UM(3, 3),
     "dispatch failed HTTP 400: {\"detail\":\"no\"}; attempts exhausted (3/3), blocking"},
    {K_REFUSED, "", NULL, 400, UM(4, 3), "dispatch failed HTTP 400: ; attempts exhausted (4/3), blocking"},
    /* dispatch.c note_unready */
    {K_SKIPPED, "code-v2n", NULL, 0, 0,
     "auto-dispatcher: skipped, no acceptance criteria. Add them (bd update code-v2n "
     "--acceptance \"...\") and the bead will be dispatched."},
    /* reap.c retry_or_give_up */
    {K_RETRY, "job " JOB " failed (exit 1, stderr: Error: boom)", NULL, 1, 3,
     "reaper: job " JOB " failed (exit 1, stderr: Error: boom), bead still in_progress; "
     "released for retry (attempt 1/3)"},
    {K_GIVE_UP, "job " JOB " failed (exit 3, stderr: Error: bd: database is locked)", NULL, 1, 1,
     "reaper: job " JOB " failed (exit 3, stderr: Error: bd: database is locked); "
     "attempts exhausted (1/1), blocking"},
    /* reap.c stale_rule: the old CronJob reaper's words */
    {K_STALE, NULL, NULL, 45 * MINUTE + 59999, 30 * MINUTE,
     "reaper: no progress for 45m (threshold 30m) \xe2\x80\x94 blocking"},
    {K_STALE, NULL, NULL, 12500, 10000, "reaper: no progress for 12s (threshold 10s) — blocking"},
    /* reap.c reap_attempt, hard limit */
    {K_HARD_LIMIT, JOB, "running", 76 * MINUTE, 75 * MINUTE,
     "reaper: job " JOB " still running after 76m (limit 75m) — blocking"},
    {K_HARD_LIMIT, JOB, "queued", 30000, 20000,
     "reaper: job " JOB " still queued after 30s (limit 20s) — blocking"},
    /* reap.c reap_attempt: the `what` of a retry note */
    {K_WHY_MISSING, JOB, NULL, 0, 0, "job " JOB " not found at the agent (restarted, or record expired)"},
    {K_WHY_MISSING, JOB, NULL, 1, 0,
     "job " JOB " not found at the agent (record expired after a timeout/error; bead quiet for long enough)"},
    {K_WHY_MAYBE_RUNNING, "job " JOB " timeout", NULL, 31 * MINUTE, 0,
     "job " JOB " timeout; the service does not stop its agent, and the bead has been quiet for 31m since"},
    {K_WHY_MAYBE_RUNNING, "job " JOB " error (error: spawn failed)", NULL, 45000, 0,
     "job " JOB " error (error: spawn failed); the service does not stop its agent, and the bead has "
     "been quiet for 45s since"},
    {K_WHY_NO_JOB_ID, DISPATCH, NULL, 1, 40 * MINUTE,
     "the agent of dispatch " DISPATCH " (job id unknown) has been quiet for 40m"},
    {K_WHY_NO_JOB_ID, DISPATCH, NULL, 0, 30 * MINUTE + 1,
     "dispatch " DISPATCH " got no answer and no claim note from the agent in 30m"},
    /* reap.c released_by_us: the mark every reaper note about a job starts with */
    {K_REAPER_MARK, JOB, NULL, 0, 0, "reaper: job " JOB " "},
};

static void test_exact_texts(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char got[NOTES_MAX + 1];
        build(&texts[i], got, sizeof got);
        if (strcmp(got, texts[i].want) != 0)
            fail_msg("row %zu:\n got: %s\nwant: %s", i, got, texts[i].want);
    }
}

/* A retry note as the reaper composes it: what, then the note. */
static void test_composed_reaper_notes(void **state)
{
    (void)state;
    char what[NOTES_MAX + 1], note[NOTES_MAX + 1];
    notes_why_maybe_running(what, sizeof what, "job " JOB " timeout", 31 * MINUTE);
    notes_reap_retry(note, sizeof note, what, 1, 2);
    assert_string_equal(note, "reaper: job " JOB " timeout; the service does not stop its agent, and the bead "
                              "has been quiet for 31m since, bead still in_progress; released for retry "
                              "(attempt 1/2)");
    notes_why_missing(what, sizeof what, JOB, 0);
    notes_reap_retry(note, sizeof note, what, 1, 3);
    assert_string_equal(note, "reaper: job " JOB " not found at the agent (restarted, or record expired), bead "
                              "still in_progress; released for retry (attempt 1/3)");
    notes_why_no_job_id(what, sizeof what, DISPATCH, 0, 35 * MINUTE);
    notes_reap_give_up(note, sizeof note, what, 3, 3);
    assert_string_equal(note, "reaper: dispatch " DISPATCH " got no answer and no claim note from the agent in "
                              "35m; attempts exhausted (3/3), blocking");
}

static void test_span_edges(void **state)
{
    (void)state;
    static const struct {
        int64_t ms;
        const char *want;
    } rows[] = {
        {0, "0s"},          {999, "0s"},         {1000, "1s"},        {59999, "59s"},
        {60000, "1m"},      {119999, "1m"},      {120000, "2m"},      {30 * MINUTE, "30m"},
        {-1, "0s"},         {-60000, "0s"},      {INT64_MIN, "0s"},   {24 * 60 * MINUTE, "1440m"},
        {INT64_MAX, "153722867280912m"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char buf[24];
        const char *got = notes_span(rows[i].ms, buf, sizeof buf);
        assert_ptr_equal(got, buf);
        if (strcmp(got, rows[i].want) != 0)
            fail_msg("row %zu (%lld ms): got %s, want %s", i, (long long)rows[i].ms, got, rows[i].want);
    }
}

/* ------------------------------------------------------------------ */
/* Round trips inside notes from other writers                         */

/* What surrounds a note on a real bead: bd's own notes (joined with "\n"),
 * the old CronJobs', another instance's, CRLF, nothing at all. */
static const struct {
    const char *before, *after;
} contexts[] = {
    {"", ""},
    {"started looking at this\n", ""},
    {"", "\nprogress 1: still working"},
    {"auto-dispatcher claimed at 2026-01-01T00:00:00Z\ndispatched: job=0123456789ab\n"
     "reaper: no progress for 31m (threshold 30m) — blocking\n",
     "\nnote by a person: see PR 12"},
    {"line one\r\nline two\r\n", "\r\nline three\r\n"},
    {"Ünïcödé ✓ notes from bd 🙂\n", "\n"},
};

static char *within(size_t ctx, const char *note)
{
    size_t n = strlen(contexts[ctx].before) + strlen(note) + strlen(contexts[ctx].after) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s%s%s", contexts[ctx].before, note, contexts[ctx].after);
    return s;
}

static void test_claim_round_trip(void **state)
{
    (void)state;
    char note[NOTES_MAX + 1], last[64];
    notes_claim(note, sizeof note, "2026-11-21T05:04:39Z", DISPATCH);
    for (size_t i = 0; i < sizeof contexts / sizeof contexts[0]; i++) {
        char *notes = within(i, note);
        int cronjob_claims = strstr(contexts[i].before, "auto-dispatcher claimed at") != NULL;
        assert_int_equal(notes_claims(notes, last, sizeof last), 1 + cronjob_claims);
        assert_string_equal(last, DISPATCH);
        free(notes);
    }
    /* Server clock unreadable: still our claim, with its dispatch id. */
    notes_claim(note, sizeof note, NULL, DISPATCH);
    assert_int_equal(notes_claims(note, last, sizeof last), 1);
    assert_string_equal(last, DISPATCH);
}

static void test_claims_count_and_last(void **state)
{
    (void)state;
    char last[64];
    /* The old CronJobs' claim names no dispatch: counted, no id. */
    const char *cron = "auto-dispatcher claimed at 2026-01-01T00:00:00Z\ndispatched: job=0123456789ab";
    assert_int_equal(notes_claims(cron, last, sizeof last), 1);
    assert_string_equal(last, "");
    /* Ours, then another instance's: the last one's id. */
    const char *two = "auto-dispatcher claimed at 2026-01-01T00:00:00Z (dispatch " DISPATCH ")\n"
                      "dispatched: job=" JOB "\nreaper: job " JOB " failed (exit 1), bead still in_progress; "
                      "released for retry (attempt 1/3)\n"
                      "auto-dispatcher claimed at 2026-01-01T00:10:00Z (dispatch " OTHER_DISPATCH ")";
    assert_int_equal(notes_claims(two, last, sizeof last), 2);
    assert_string_equal(last, OTHER_DISPATCH);
    /* Ours, then the CronJobs' (names none): the last claim names none. */
    const char *then_cron = "auto-dispatcher claimed at 2026-01-01T00:00:00Z (dispatch " DISPATCH ")\r\n"
                            "auto-dispatcher claimed at 2026-01-01T00:10:00Z\r\nbd: something";
    assert_int_equal(notes_claims(then_cron, last, sizeof last), 2);
    assert_string_equal(last, "");
    /* The "(dispatch" of a later line is not this claim's. */
    const char *later = "auto-dispatcher claimed at 2026-01-01T00:00:00Z\nsee (dispatch " DISPATCH ")";
    assert_int_equal(notes_claims(later, last, sizeof last), 1);
    assert_string_equal(last, "");
    /* Cut in the middle of the id (a full notes column): no id rather than part of one. */
    const char *cut = "auto-dispatcher claimed at 2026-01-01T00:00:00Z (dispatch 3f2b9c1e-8a4d";
    assert_int_equal(notes_claims(cut, last, sizeof last), 1);
    assert_string_equal(last, "");
    const char *cut_marked = "auto-dispatcher claimed at 2026-01-01T00:00:00Z (dispatch 3f2b9 [cut; whole note "
                             "in events]";
    assert_int_equal(notes_claims(cut_marked, last, sizeof last), 1);
    assert_string_equal(last, "");
    /* An id that does not fit the buffer is not returned cut. */
    char small[8];
    assert_int_equal(notes_claims(two, small, sizeof small), 2);
    assert_string_equal(small, "");
    /* Nothing there. */
    assert_int_equal(notes_claims(NULL, last, sizeof last), 0);
    assert_string_equal(last, "");
    assert_int_equal(notes_claims("", last, sizeof last), 0);
    assert_int_equal(notes_claims("auto-dispatcher claimed\nclaimed by agent d-0001", last, sizeof last), 0);
}

static void test_dispatched_round_trip(void **state)
{
    (void)state;
    char note[NOTES_MAX + 1], job[64];
    notes_dispatched(note, sizeof note, JOB);
    for (size_t i = 0; i < sizeof contexts / sizeof contexts[0]; i++) {
        char *notes = within(i, note);
        assert_int_equal(notes_last_dispatched_job(notes, job, sizeof job), 1);
        assert_string_equal(job, JOB);
        assert_true(notes_has_dispatched(notes, JOB));
        assert_false(notes_has_dispatched(notes, "a1b2c3"));           /* a prefix of it */
        assert_false(notes_has_dispatched(notes, JOB "7"));            /* longer */
        free(notes);
    }
}

static void test_dispatched_parsing(void **state)
{
    (void)state;
    char job[64];
    /* The last one wins: an earlier attempt's job is not this one's. */
    const char *two = "dispatched: job=0123456789ab\nreaper: job 0123456789ab failed\ndispatched: job=" JOB;
    assert_int_equal(notes_last_dispatched_job(two, job, sizeof job), 1);
    assert_string_equal(job, JOB);
    assert_true(notes_has_dispatched(two, "0123456789ab"));
    assert_true(notes_has_dispatched(two, JOB));
    /* CRLF, a trailing space, a tab. */
    assert_int_equal(notes_last_dispatched_job("dispatched: job=" JOB "\r\nmore", job, sizeof job), 1);
    assert_string_equal(job, JOB);
    assert_int_equal(notes_last_dispatched_job("x dispatched: job=" JOB " (by hand)", job, sizeof job), 1);
    assert_string_equal(job, JOB);
    assert_true(notes_has_dispatched("dispatched: job=" JOB "\tx", JOB));
    /* Not a valid job id (a path segment, a slash, empty): not found. */
    static const char *const bad[] = {
        "dispatched: job=", "dispatched: job=\n", "dispatched: job=..", "dispatched: job=a/b",
        "dispatched: job=ab%2f", "dispatched: job= " JOB, "dispatched job=" JOB, "", NULL,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        strcpy(job, "junk");
        if (notes_last_dispatched_job(bad[i], job, sizeof job) != 0 || job[0])
            fail_msg("row %zu (%s): found \"%s\"", i, bad[i] ? bad[i] : "NULL", job);
    }
    /* An id too long for the buffer: not returned cut. */
    char small[6];
    assert_int_equal(notes_last_dispatched_job("dispatched: job=" JOB, small, sizeof small), 0);
    assert_string_equal(small, "");
    /* An id longer than any job id: not valid. */
    char big[512];
    char notes[600];
    memset(big, 'a', 200);
    big[200] = '\0';
    snprintf(notes, sizeof notes, "dispatched: job=%s", big);
    assert_int_equal(notes_last_dispatched_job(notes, big, sizeof big), 0);
    assert_false(notes_has_dispatched(NULL, JOB));
    assert_false(notes_has_dispatched("dispatched: job=" JOB, ""));
    assert_false(notes_has_dispatched("dispatched: job=" JOB, NULL));
}

static void test_retry_round_trip(void **state)
{
    (void)state;
    char what[NOTES_MAX + 1], note[NOTES_MAX + 1];
    const char *whats[] = {"job " JOB " failed (exit 1)", NULL, NULL};
    char missing[NOTES_MAX + 1], maybe[NOTES_MAX + 1];
    notes_why_missing(missing, sizeof missing, JOB, 1);
    notes_why_maybe_running(maybe, sizeof maybe, "job " JOB " timeout", 31 * MINUTE);
    whats[1] = missing;
    whats[2] = maybe;
    for (size_t w = 0; w < 3; w++) {
        notes_reap_retry(note, sizeof note, whats[w], 2, 3);
        for (size_t i = 0; i < sizeof contexts / sizeof contexts[0]; i++) {
            char *notes = within(i, note);
            assert_true(notes_released_for_retry(notes, JOB));
            assert_false(notes_released_for_retry(notes, "a1b2c3"));
            assert_false(notes_released_for_retry(notes, JOB "7"));
            free(notes);
        }
    }
    /* Given up, blocked, stale: not a release. */
    notes_reap_give_up(note, sizeof note, "job " JOB " failed (exit 1)", 3, 3);
    assert_false(notes_released_for_retry(note, JOB));
    notes_reap_hard_limit(note, sizeof note, JOB, "running", 80 * MINUTE, 75 * MINUTE);
    assert_false(notes_released_for_retry(note, JOB));
    /* A job without an id: its retry note names the dispatch, no job. */
    notes_why_no_job_id(what, sizeof what, DISPATCH, 1, 40 * MINUTE);
    notes_reap_retry(note, sizeof note, what, 1, 3);
    assert_false(notes_released_for_retry(note, DISPATCH));
    /* "released for retry" on another line (another job's note) is not this job's. */
    const char *two = "reaper: job " JOB " still running after 80m (limit 75m) — blocking\r\n"
                      "reaper: job 0123456789ab failed (exit 1), bead still in_progress; released for retry "
                      "(attempt 1/3)";
    assert_false(notes_released_for_retry(two, JOB));
    assert_true(notes_released_for_retry(two, "0123456789ab"));
    /* The same job noted twice: the second note is the release. */
    const char *again = "reaper: job " JOB " something else\nreaper: job " JOB " failed, bead still "
                        "in_progress; released for retry (attempt 1/3)";
    assert_true(notes_released_for_retry(again, JOB));
    /* Cut before the words: not a release. */
    assert_false(notes_released_for_retry("reaper: job " JOB " failed (exit 1), bead still in_progress; rel",
                                          JOB));
    assert_false(notes_released_for_retry(NULL, JOB));
    assert_false(notes_released_for_retry(note, ""));
    assert_false(notes_released_for_retry(note, NULL));
}

/* The agent's text, as the rendered prompt asks for it: the quoted text
 * after `marker` in the prompt. */
static void quoted_after(const char *prompt, const char *marker, char *out, size_t len)
{
    const char *p = strstr(prompt, marker);
    assert_non_null(p);
    p += strlen(marker);
    const char *end = strchr(p, '"');
    assert_non_null(end);
    assert_true((size_t)(end - p) < len);
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
}

static void test_agent_notes_from_the_prompt(void **state)
{
    (void)state;
    /* The prompt's words, byte for byte as before the phrases were shared. */
    assert_non_null(strstr(prompt_default_template,
                           "1. First: bd --db {{bd_db}} note {{id}} \"claimed by agent {{job_id}}\"\n"));
    assert_non_null(strstr(prompt_default_template,
                           "   bd --db {{bd_db}} close {{id}} -r \"completed by agent {{job_id}}\"\n"));

    struct bead b = {.id = "code-7", .title = "t", .description = "d", .acceptance = "a",
                     .issue_type = "task", .priority = 2};
    char *prompt = prompt_render(prompt_default_template, &b, DISPATCH, 1, 3, "/workspace/.beads");
    assert_non_null(prompt);
    char claim[128], close_reason[128], id[64];
    quoted_after(prompt, "note code-7 \"", claim, sizeof claim);
    quoted_after(prompt, "close code-7 -r \"", close_reason, sizeof close_reason);
    free(prompt);
    assert_string_equal(claim, "claimed by agent " DISPATCH);
    assert_string_equal(close_reason, "completed by agent " DISPATCH);

    for (size_t i = 0; i < sizeof contexts / sizeof contexts[0]; i++) {
        char *notes = within(i, claim);
        assert_true(notes_agent_claimed(notes, DISPATCH));
        assert_false(notes_agent_claimed(notes, OTHER_DISPATCH));
        assert_false(notes_agent_claimed(notes, "3f2b9c1e"));     /* a prefix of it */
        free(notes);
        notes = within(i, close_reason);
        assert_int_equal(notes_agent_completed(notes, id, sizeof id), 1);
        assert_string_equal(id, DISPATCH);
        free(notes);
    }
    /* As bd appends them: our claim, our dispatched note, the agent's notes. */
    char ours[NOTES_MAX + 1], dispatched[NOTES_MAX + 1], notes[4 * NOTES_MAX];
    notes_claim(ours, sizeof ours, "2026-11-21T05:04:39Z", DISPATCH);
    notes_dispatched(dispatched, sizeof dispatched, JOB);
    snprintf(notes, sizeof notes, "%s\n%s\n%s\nprogress 1: still working\n%s", ours, dispatched, claim,
             close_reason);
    assert_true(notes_agent_claimed(notes, DISPATCH));
    assert_int_equal(notes_agent_completed(notes, id, sizeof id), 1);
    assert_string_equal(id, DISPATCH);
    /* Our own claim note is not the agent's. */
    assert_false(notes_agent_claimed(ours, DISPATCH));
}

static void test_agent_claim_parsing(void **state)
{
    (void)state;
    static const struct {
        const char *notes, *dispatch;
        int want;
    } rows[] = {
        {"claimed by agent ab", "ab", 1},
        {"claimed by agent abc", "ab", 0},             /* another id that starts the same */
        {"claimed by agent ab-1", "ab", 0},
        {"claimed by agent ab_1", "ab", 0},
        {"claimed by agent abc\nclaimed by agent ab\n", "ab", 1},
        {"claimed by agent ab.", "ab", 1},             /* a sentence */
        {"claimed by agent ab, starting", "ab", 1},
        {"claimed by agent ab\r\n", "ab", 1},
        {"x: claimed by agent ab (job 1)", "ab", 1},
        {"claimed by agent a", "ab", 0},               /* cut */
        {"claimed by agent", "ab", 0},
        {"claimed by agent  ab", "ab", 0},
        {"Claimed by agent ab", "ab", 0},
        {"claimed by agent abé", "ab", 0},             /* UTF-8 continues the id */
        {"", "ab", 0},
        {NULL, "ab", 0},
        {"claimed by agent ab", "", 0},
        {"claimed by agent ab", NULL, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        if (notes_agent_claimed(rows[i].notes, rows[i].dispatch) != rows[i].want)
            fail_msg("row %zu (%s / %s): want %d", i, rows[i].notes ? rows[i].notes : "NULL",
                     rows[i].dispatch ? rows[i].dispatch : "NULL", rows[i].want);
    }
}

static void test_agent_completed_parsing(void **state)
{
    (void)state;
    static const struct {
        const char *notes;
        int found;
        const char *want;
    } rows[] = {
        {"completed by agent d-0001", 1, "d-0001"},
        {"completed by agent d-0001.", 1, "d-0001"},
        {"completed by agent d-0001: all criteria hold", 1, "d-0001"},
        {"close: \"completed by agent d-0001\"", 1, "d-0001"},
        {"completed by agent d-0001\r\nx", 1, "d-0001"},
        {"completed by agent d-0001\ncompleted by agent d-0002", 1, "d-0002"}, /* the last */
        {"completed by agent d-0002\ncompleted by agent \n", 1, "d-0002"},       /* an empty one is none */
        {"completed by agent ", 0, ""},
        {"completed by agent", 0, ""},
        {"completed (the prompt gave no job id)", 0, ""},
        {"", 0, ""},
        {NULL, 0, ""},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char id[64] = "junk";
        int got = notes_agent_completed(rows[i].notes, id, sizeof id);
        if (got != rows[i].found || strcmp(id, rows[i].want) != 0)
            fail_msg("row %zu (%s): got %d \"%s\", want %d \"%s\"", i, rows[i].notes ? rows[i].notes : "NULL",
                     got, id, rows[i].found, rows[i].want);
    }
    /* A longer id is cut to the buffer, at a UTF-8 boundary. */
    char small[5];
    assert_int_equal(notes_agent_completed("completed by agent abcé012", small, sizeof small), 1);
    assert_string_equal(small, "abc");
}

/* ------------------------------------------------------------------ */
/* Size bounds                                                         */

/* 100 KiB of text that is valid UTF-8 but full of multi-byte sequences
 * (so cuts land inside them) and line ends (which notes must not carry). */
static char *huge_text(const char *start)
{
    size_t size = 100 * 1024;
    char *s = malloc(size + 1);
    assert_non_null(s);
    size_t n = strlen(start);
    memcpy(s, start, n);
    static const char *const parts[] = {"é", "✓", "🙂", "x", "\n", "\r\n", " "};
    for (size_t i = 0; n + 4 < size; i++) {
        const char *p = parts[i % 7];
        memcpy(s + n, p, strlen(p));
        n += strlen(p);
    }
    s[n] = '\0';
    return s;
}

static void assert_bounded(const char *note, size_t len)
{
    size_t n = strlen(note);
    if (n > NOTES_MAX || n >= len)
        fail_msg("note of %zu bytes (buffer %zu): %.80s...", n, len, note);
    if (!utf8_valid(note))
        fail_msg("note is not valid UTF-8: %.80s...", note);
    if (strchr(note, '\n') || strchr(note, '\r'))
        fail_msg("note has a line end: %.80s...", note);
}

static void test_huge_parts_stay_bounded(void **state)
{
    (void)state;
    char *detail = huge_text("{\"detail\":\"");
    char *what = huge_text("job " JOB " failed (exit 1, stderr: ");
    char *id = huge_text("id-");
    char note[4 * NOTES_MAX];
    const char *suffix_exhausted = "; attempts exhausted (3/3), blocking";

    notes_refused(note, sizeof note, 400, detail, 3, 3);
    assert_bounded(note, sizeof note);
    assert_true(strncmp(note, "dispatch failed HTTP 400: {\"detail\":\"", 37) == 0);
    assert_true(strlen(note) <= strlen("dispatch failed HTTP 400: ") + 900 + strlen(suffix_exhausted));
    assert_string_equal(note + strlen(note) - strlen(suffix_exhausted), suffix_exhausted);

    notes_reap_retry(note, sizeof note, what, 2, 3);
    assert_bounded(note, sizeof note);
    assert_true(strlen(note) > NOTES_MAX - 4); /* cut to fit, not dropped */
    assert_true(notes_released_for_retry(note, JOB));
    const char *tail = ", bead still in_progress; released for retry (attempt 2/3)";
    assert_string_equal(note + strlen(note) - strlen(tail), tail);

    notes_reap_give_up(note, sizeof note, what, 3, 3);
    assert_bounded(note, sizeof note);
    assert_string_equal(note + strlen(note) - strlen(suffix_exhausted), suffix_exhausted);

    notes_why_maybe_running(note, sizeof note, what, 31 * MINUTE);
    assert_bounded(note, sizeof note);
    const char *why_tail = "; the service does not stop its agent, and the bead has been quiet for 31m since";
    assert_string_equal(note + strlen(note) - strlen(why_tail), why_tail);
    assert_true(strlen(note) <= 300 + strlen(why_tail));

    /* The what of a what: still one bounded note that parses back. */
    char inner[NOTES_MAX + 1];
    notes_why_maybe_running(inner, sizeof inner, what, 31 * MINUTE);
    notes_reap_retry(note, sizeof note, inner, 1, 3);
    assert_bounded(note, sizeof note);
    assert_true(notes_released_for_retry(note, JOB));

    notes_skipped(note, sizeof note, id);
    assert_bounded(note, sizeof note);
    assert_true(strlen(note) <= strlen("auto-dispatcher: skipped, no acceptance criteria. Add them (bd update  "
                                       "--acceptance \"...\") and the bead will be dispatched.") + 100);

    /* Ids and times no real note has: bounded all the same. */
    notes_claim(note, sizeof note, id, id);
    assert_bounded(note, sizeof note);
    notes_dispatched(note, sizeof note, id);
    assert_bounded(note, sizeof note);
    notes_reap_hard_limit(note, sizeof note, id, id, 1, 2);
    assert_bounded(note, sizeof note);
    notes_why_missing(note, sizeof note, id, 0);
    assert_bounded(note, sizeof note);
    notes_why_no_job_id(note, sizeof note, id, 1, 0);
    assert_bounded(note, sizeof note);
    free(detail);
    free(what);
    free(id);
}

/* Whether s[0..n) is a prefix of a followed by b. */
static int prefix_of(const char *s, size_t n, const char *a, const char *b)
{
    size_t na = strlen(a);
    if (n <= na)
        return strncmp(s, a, n) == 0;
    return strncmp(s, a, na) == 0 && strncmp(s + na, b, n - na) == 0;
}

/* Every row of the text table built into every smaller buffer: never past
 * the buffer, cut at a UTF-8 boundary, and cut only where it must. A note
 * with a fixed ending (the retry and give-up notes, a refusal that blocks)
 * keeps its ending whole when the head and the ending fit, and cuts its
 * variable part instead; every other note is a prefix of the whole one. */
static void test_small_buffers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        const struct text_row *r = &texts[i];
        size_t whole = strlen(r->want);
        /* head + s1 + tail, for the notes that keep their ending */
        const char *var = NULL;
        size_t head = 0, tail = 0;
        if ((r->kind == K_RETRY || r->kind == K_GIVE_UP || r->kind == K_REFUSED) && r->s1[0]) {
            var = strstr(r->want, r->s1);
            assert_non_null(var);
            head = (size_t)(var - r->want);
            tail = whole - head - strlen(r->s1);
        }
        for (size_t len = 1; len <= whole + 1; len++) {
            char *buf = malloc(len + 1);
            assert_non_null(buf);
            buf[len] = '#'; /* a guard byte past the buffer */
            build(r, buf, len);
            size_t n = strlen(buf);
            if (n >= len || buf[len] != '#' || !utf8_valid(buf))
                fail_msg("row %zu, buffer %zu: \"%s\"", i, len, buf);
            int ok;
            if (!tail) {
                ok = strncmp(buf, r->want, n) == 0;
            } else if (len - 1 >= head + tail) {
                /* head, a prefix of the variable part, the whole ending */
                ok = strncmp(buf, r->want, head) == 0 && n >= head + tail &&
                     strncmp(buf + n - tail, r->want + whole - tail, tail) == 0 &&
                     strncmp(buf + head, r->s1, n - head - tail) == 0;
            } else {
                /* no room for the variable part: a prefix of head + ending */
                char *ht = strndup(r->want, head);
                assert_non_null(ht);
                ok = prefix_of(buf, n, ht, r->want + whole - tail);
                free(ht);
            }
            if (!ok)
                fail_msg("row %zu, buffer %zu: \"%s\"", i, len, buf);
            /* Cut only to fit: at most a UTF-8 sequence short of the room. */
            if (n + 4 < len - 1 && n < whole)
                fail_msg("row %zu, buffer %zu: cut to %zu bytes", i, len, n);
            free(buf);
        }
    }
    /* A zero-length buffer is not written. */
    char untouched = '#';
    notes_dispatched(&untouched, 0, JOB);
    assert_int_equal(untouched, '#');
    char id[1] = {'#'};
    assert_int_equal(notes_last_dispatched_job("dispatched: job=" JOB, id, 0), 0);
    assert_int_equal(id[0], '#');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_texts),
        cmocka_unit_test(test_composed_reaper_notes),
        cmocka_unit_test(test_span_edges),
        cmocka_unit_test(test_claim_round_trip),
        cmocka_unit_test(test_claims_count_and_last),
        cmocka_unit_test(test_dispatched_round_trip),
        cmocka_unit_test(test_dispatched_parsing),
        cmocka_unit_test(test_retry_round_trip),
        cmocka_unit_test(test_agent_notes_from_the_prompt),
        cmocka_unit_test(test_agent_claim_parsing),
        cmocka_unit_test(test_agent_completed_parsing),
        cmocka_unit_test(test_huge_parts_stay_bounded),
        cmocka_unit_test(test_small_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
