#include "notes.h"

#include "agent.h"
#include "text.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* The phrases looked for, as written. */
#define CLAIM_KEY "auto-dispatcher claimed at "
#define CLAIM_TAG "(dispatch "
#define DISPATCHED_KEY "dispatched: job="
#define RELEASED "released for retry"

/* Caps of the variable parts, as the notes always had them. */
#define REFUSAL_DETAIL_MAX 900
#define SKIP_ID_MAX 100
#define JOB_LINE_MAX 300

/* ------------------------------------------------------------------ */
/* Building                                                            */

/* A note being built into out: n bytes so far, never more than cap. */
struct note {
    char *out;
    size_t n, cap;
};

static struct note note_start(char *out, size_t len)
{
    struct note b = {out, 0, 0};
    if (len > 0) {
        b.cap = len - 1 < NOTES_MAX ? len - 1 : NOTES_MAX;
        out[0] = '\0';
    }
    return b;
}

/* Appends at most max bytes of s (NULL: nothing), and no more than the note
 * has room for after keeping `keep` bytes free, cut at a UTF-8 boundary; CR
 * and LF become spaces so the note stays one line. */
static void put_n(struct note *b, const char *s, size_t max, size_t keep)
{
    if (!b->cap || !s)
        return;
    size_t room = b->cap - b->n > keep ? b->cap - b->n - keep : 0;
    if (max > room)
        max = room;
    size_t n = text_utf8_prefix(s, strnlen(s, max + 1), max);
    for (size_t i = 0; i < n; i++)
        b->out[b->n + i] = s[i] == '\n' || s[i] == '\r' ? ' ' : s[i];
    b->n += n;
    b->out[b->n] = '\0';
}

static void put(struct note *b, const char *s)
{
    put_n(b, s, SIZE_MAX, 0);
}

/* Appends a variable part cut to at most max bytes, leaving room for the
 * fixed ending `tail`, then the ending. */
static void put_then(struct note *b, const char *s, size_t max, const char *tail)
{
    put_n(b, s, max, strlen(tail));
    put(b, tail);
}

void notes_claim(char *out, size_t len, const char *server_time, const char *dispatch_id)
{
    struct note b = note_start(out, len);
    put(&b, CLAIM_KEY);
    put(&b, server_time ? server_time : "?");
    put(&b, " ");
    put(&b, CLAIM_TAG);
    put(&b, dispatch_id);
    put(&b, ")");
}

void notes_claim_mark(char *out, size_t len, const char *dispatch_id)
{
    struct note b = note_start(out, len);
    put(&b, CLAIM_TAG);
    put(&b, dispatch_id);
    put(&b, ")");
}

void notes_dispatched(char *out, size_t len, const char *job_id)
{
    struct note b = note_start(out, len);
    put(&b, DISPATCHED_KEY);
    put(&b, job_id);
}

void notes_refused(char *out, size_t len, long status, const char *detail, int used, int max)
{
    struct note b = note_start(out, len);
    char head[48], tail[80] = "";
    snprintf(head, sizeof head, "dispatch failed HTTP %ld: ", status);
    if (used >= max)
        snprintf(tail, sizeof tail, "; attempts exhausted (%d/%d), blocking", used, max);
    put(&b, head);
    put_then(&b, detail, REFUSAL_DETAIL_MAX, tail);
}

void notes_skipped(char *out, size_t len, const char *bead_id)
{
    struct note b = note_start(out, len);
    put(&b, "auto-dispatcher: skipped, no acceptance criteria. Add them (bd update ");
    put_n(&b, bead_id, SKIP_ID_MAX, 0);
    put(&b, " --acceptance \"...\") and the bead will be dispatched.");
}

void notes_reap_retry(char *out, size_t len, const char *what, int used, int max)
{
    struct note b = note_start(out, len);
    char tail[96];
    snprintf(tail, sizeof tail, ", bead still in_progress; " RELEASED " (attempt %d/%d)", used, max);
    put(&b, "reaper: ");
    put_then(&b, what, SIZE_MAX, tail);
}

void notes_reap_give_up(char *out, size_t len, const char *what, int used, int max)
{
    struct note b = note_start(out, len);
    char tail[80];
    snprintf(tail, sizeof tail, "; attempts exhausted (%d/%d), blocking", used, max);
    put(&b, "reaper: ");
    put_then(&b, what, SIZE_MAX, tail);
}

void notes_reap_stale(char *out, size_t len, int64_t quiet_ms, int64_t threshold_ms)
{
    struct note b = note_start(out, len);
    char q[24], t[24];
    put(&b, "reaper: no progress for ");
    put(&b, notes_span(quiet_ms, q, sizeof q));
    put(&b, " (threshold ");
    put(&b, notes_span(threshold_ms, t, sizeof t));
    put(&b, ") — blocking");
}

void notes_reap_hard_limit(char *out, size_t len, const char *job_id, const char *status,
                           int64_t ran_ms, int64_t limit_ms)
{
    struct note b = note_start(out, len);
    char r[24], l[24];
    put(&b, "reaper: job ");
    put(&b, job_id);
    put(&b, " still ");
    put(&b, status);
    put(&b, " after ");
    put(&b, notes_span(ran_ms, r, sizeof r));
    put(&b, " (limit ");
    put(&b, notes_span(limit_ms, l, sizeof l));
    put(&b, ") — blocking");
}

void notes_why_missing(char *out, size_t len, const char *job_id, int seen_maybe_running)
{
    struct note b = note_start(out, len);
    put(&b, "job ");
    put(&b, job_id);
    put(&b, seen_maybe_running
                ? " not found at the agent (record expired after a timeout/error; bead quiet for long enough)"
                : " not found at the agent (restarted, or record expired)");
}

void notes_why_maybe_running(char *out, size_t len, const char *job_line, int64_t quiet_ms)
{
    struct note b = note_start(out, len);
    char q[24];
    put_n(&b, job_line, JOB_LINE_MAX, 0);
    put(&b, "; the service does not stop its agent, and the bead has been quiet for ");
    put(&b, notes_span(quiet_ms, q, sizeof q));
    put(&b, " since");
}

void notes_why_no_job_id(char *out, size_t len, const char *dispatch_id, int reached, int64_t quiet_ms)
{
    struct note b = note_start(out, len);
    char q[24];
    if (reached) {
        put(&b, "the agent of dispatch ");
        put(&b, dispatch_id);
        put(&b, " (job id unknown) has been quiet for ");
    } else {
        put(&b, "dispatch ");
        put(&b, dispatch_id);
        put(&b, " got no answer and no claim note from the agent in ");
    }
    put(&b, notes_span(quiet_ms, q, sizeof q));
}

const char *notes_span(int64_t ms, char *buf, size_t len)
{
    if (ms < 0)
        ms = 0;
    if (ms < 60000)
        snprintf(buf, len, "%" PRId64 "s", ms / 1000);
    else
        snprintf(buf, len, "%" PRId64 "m", ms / 60000);
    return buf;
}

void notes_reaper_job_mark(char *out, size_t len, const char *job_id)
{
    struct note b = note_start(out, len);
    put(&b, "reaper: job ");
    put(&b, job_id);
    put(&b, " ");
}

/* ------------------------------------------------------------------ */
/* Reading back                                                        */

/* Where the line holding p ends (its CR or LF, or the end of the text). */
static const char *line_end(const char *p)
{
    return p + strcspn(p, "\r\n");
}

/* Whether c ends an id the agent wrote in a sentence: the end of the text,
 * a space or punctuation; not a letter, digit, '-' or '_' (and not a byte of
 * a UTF-8 sequence). */
static int ends_id(char c)
{
    unsigned char u = (unsigned char)c;
    return !(u >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '_');
}

/* Copies s[0..n) into out when it fits whole (and is not empty); else out
 * is "". Returns whether it was copied. */
static int copy_whole(const char *s, size_t n, char *out, size_t len)
{
    if (!len)
        return 0;
    out[0] = '\0';
    if (n == 0 || n >= len)
        return 0;
    memcpy(out, s, n);
    out[n] = '\0';
    return 1;
}

/* The job id after "dispatched: job=" at p: up to a space, tab or line end. */
static size_t job_token(const char *p)
{
    return strcspn(p, " \t\r\n");
}

int notes_last_dispatched_job(const char *notes, char *job, size_t len)
{
    const char *last = NULL;
    if (len)
        job[0] = '\0';
    for (const char *p = notes ? strstr(notes, DISPATCHED_KEY) : NULL; p; p = strstr(p + 1, DISPATCHED_KEY))
        last = p + strlen(DISPATCHED_KEY);
    if (!last || !copy_whole(last, job_token(last), job, len))
        return 0;
    if (!agent_job_id_valid(job)) {
        job[0] = '\0';
        return 0;
    }
    return 1;
}

int notes_has_dispatched(const char *notes, const char *job_id)
{
    size_t n = job_id ? strlen(job_id) : 0;
    if (!notes || !n)
        return 0;
    for (const char *p = strstr(notes, DISPATCHED_KEY); p; p = strstr(p + 1, DISPATCHED_KEY)) {
        const char *id = p + strlen(DISPATCHED_KEY);
        if (job_token(id) == n && strncmp(id, job_id, n) == 0)
            return 1;
    }
    return 0;
}

int notes_claims(const char *notes, char *last_dispatch, size_t len)
{
    int count = 0;
    if (len)
        last_dispatch[0] = '\0';
    for (const char *p = notes ? strstr(notes, CLAIM_KEY) : NULL; p; p = strstr(p + 1, CLAIM_KEY)) {
        count++;
        const char *eol = line_end(p);
        const char *tag = strstr(p, CLAIM_TAG);
        if (len)
            last_dispatch[0] = '\0';
        if (!tag || tag > eol)
            continue;
        const char *id = tag + strlen(CLAIM_TAG);
        /* The id runs to ")"; a space or the line's end first means the note
         * was cut (or is not ours): no id, rather than part of one. */
        size_t n = strcspn(id, ") \t\r\n");
        if (id[n] == ')')
            copy_whole(id, n, last_dispatch, len);
    }
    return count;
}

int notes_agent_claimed(const char *notes, const char *dispatch_id)
{
    size_t n = dispatch_id ? strlen(dispatch_id) : 0;
    if (!notes || !n)
        return 0;
    const size_t k = strlen(NOTES_AGENT_CLAIMED);
    for (const char *p = strstr(notes, NOTES_AGENT_CLAIMED); p; p = strstr(p + 1, NOTES_AGENT_CLAIMED)) {
        if (strncmp(p + k, dispatch_id, n) == 0 && ends_id(p[k + n]))
            return 1;
    }
    return 0;
}

int notes_agent_completed(const char *notes, char *id, size_t len)
{
    const size_t k = strlen(NOTES_AGENT_COMPLETED);
    const char *last = NULL;
    size_t last_n = 0;
    if (len)
        id[0] = '\0';
    for (const char *p = notes ? strstr(notes, NOTES_AGENT_COMPLETED) : NULL; p;
         p = strstr(p + 1, NOTES_AGENT_COMPLETED)) {
        const char *s = p + k;
        size_t n = strcspn(s, " \t\r\n\"'");
        while (n > 0 && strchr(".,;:!?)", s[n - 1]))
            n--; /* "completed by agent <id>." ends a sentence */
        if (n > 0) {
            last = s;
            last_n = n;
        }
    }
    if (!last || !len)
        return 0;
    size_t keep = text_utf8_prefix(last, last_n, len - 1);
    memcpy(id, last, keep);
    id[keep] = '\0';
    return 1;
}

int notes_released_for_retry(const char *notes, const char *job_id)
{
    char mark[AGENT_JOB_ID_MAX + 16];
    if (!notes || !job_id || !job_id[0] || strlen(job_id) >= AGENT_JOB_ID_MAX)
        return 0;
    notes_reaper_job_mark(mark, sizeof mark, job_id);
    for (const char *p = strstr(notes, mark); p; p = strstr(p + 1, mark)) {
        const char *eol = line_end(p);
        if (memmem(p, (size_t)(eol - p), RELEASED, strlen(RELEASED)))
            return 1;
    }
    return 0;
}
