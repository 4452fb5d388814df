/* Row operations of the store: the attempt journal and its state machine,
 * the event log, per-bead state and settings. Every statement is a cached
 * prepared statement with bound parameters (bead ids are untrusted text);
 * every writing function is one unit of work (store_op_begin/_end). */
#include "store_internal.h"

#include "errors.h"
#include "log.h"
#include "text.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static const char *const state_names[AS_STATE_COUNT] = {
#define STATE_WORD(e, word, terminal, next) [e] = word,
    ATTEMPT_STATES(STATE_WORD)
#undef STATE_WORD
};

static const bool state_terminal[AS_STATE_COUNT] = {
#define STATE_TERMINAL(e, word, terminal, next) [e] = (terminal),
    ATTEMPT_STATES(STATE_TERMINAL)
#undef STATE_TERMINAL
};

static const unsigned state_next[AS_STATE_COUNT] = {
#define STATE_NEXT(e, word, terminal, next) [e] = (next),
    ATTEMPT_STATES(STATE_NEXT)
#undef STATE_NEXT
};

/* The word stored in journal.state for st (as the 0001 CHECK lists them);
 * "?" for a value outside the enum. */
const char *attempt_state_name(enum attempt_state st)
{
    return (unsigned)st < AS_STATE_COUNT ? state_names[st] : "?";
}

/* Parses a state word; 0, or BS_EINVAL for NULL or an unknown word. */
int attempt_state_parse(const char *name, enum attempt_state *out)
{
    if (!name)
        return BS_EINVAL;
    for (int i = 0; i < AS_STATE_COUNT; i++) {
        if (strcmp(name, state_names[i]) == 0) {
            *out = (enum attempt_state)i;
            return 0;
        }
    }
    return BS_EINVAL;
}

/* 1 if st is a terminal state (closed .. gave_up), else 0. */
int attempt_state_terminal(enum attempt_state st)
{
    return (unsigned)st < AS_STATE_COUNT && state_terminal[st];
}

/* The journal's forward-only state machine: the moves the table in
 * common/attempt_states.h allows (see there). */
static bool move_allowed(enum attempt_state from, enum attempt_state to)
{
    if ((unsigned)from >= AS_STATE_COUNT || (unsigned)to >= AS_STATE_COUNT || state_terminal[from])
        return false;
    return state_terminal[to] || (state_next[from] & ATTEMPT_NEXT(to)) != 0;
}

/* True when v is a string of fewer than cap bytes (so it fits a struct
 * field of cap bytes whole); ids are never truncated, they are refused.
 * With required, NULL and "" are refused too. */
static bool fits(const char *v, size_t cap, bool required)
{
    if (!v)
        return !required;
    size_t n = strnlen(v, cap);
    return n < cap && (n > 0 || !required);
}

/* Keeps the first failure of a chain of sqlite3_bind_* calls. */
static void keep(int *rc, int r)
{
    if (*rc == SQLITE_OK)
        *rc = r;
}

/* Binds v as text, or NULL when v is NULL. The caller's string must outlive
 * the step (SQLITE_STATIC); store_stmt_done drops it. */
static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Binds a free-text detail cut to STORE_DETAIL_MAX - 1 bytes on a UTF-8
 * boundary, so what is stored is what store_attempt_get returns. */
static int bind_detail(sqlite3_stmt *st, int i, const char *v)
{
    if (!v)
        return sqlite3_bind_null(st, i);
    size_t n = text_utf8_prefix(v, strnlen(v, STORE_DETAIL_MAX), STORE_DETAIL_MAX - 1);
    return sqlite3_bind_text(st, i, v, (int)n, SQLITE_STATIC);
}

/* Binds v, or NULL when v is 0 (the "not set" of timestamps). */
static int bind_ms(sqlite3_stmt *st, int i, int64_t v)
{
    return v ? sqlite3_bind_int64(st, i, v) : sqlite3_bind_null(st, i);
}

/* Steps a bound writing statement to completion and resets it. bind_rc is
 * the result of binding (a failure there is reported instead of running).
 * Returns 0 or the logged, translated error. */
static int run_write(struct store *s, sqlite3_stmt *st, int bind_rc, const char *op)
{
    int rc = bind_rc;
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
    }
    int ret = rc == SQLITE_DONE ? 0 : store_fail(s, op, rc);
    store_stmt_done(st);
    return ret;
}

/* Copies text column col of st into dst[cap] ("" for NULL), cut on a UTF-8
 * boundary if it does not fit. */
static void column_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const char *v = (const char *)sqlite3_column_text(st, col);
    store_copy_text(dst, cap, v, v ? (size_t)sqlite3_column_bytes(st, col) : 0);
}

/* Fills *a from the current row of a statement selecting
 * STORE_ATTEMPT_COLUMNS. BS_ECORRUPT (logged) if the state word is unknown:
 * the CHECK constraint makes that impossible unless the file was damaged. */
static int read_attempt(struct store *s, sqlite3_stmt *st, struct store_attempt *a)
{
    memset(a, 0, sizeof *a);
    a->id = sqlite3_column_int64(st, 0);
    column_text(a->bead_id, sizeof a->bead_id, st, 1);
    a->attempt = sqlite3_column_int(st, 2);
    column_text(a->dispatch_id, sizeof a->dispatch_id, st, 3);
    const char *state = (const char *)sqlite3_column_text(st, 4);
    if (attempt_state_parse(state, &a->state) != 0) {
        log_error("store error", "op", "read_attempt", "path", s->path, "error",
                  "unknown attempt state", "state", state, "id", LOG_INT(a->id));
        return BS_ECORRUPT;
    }
    column_text(a->job_id, sizeof a->job_id, st, 5);
    a->created_at = sqlite3_column_int64(st, 6);
    a->claimed_at = sqlite3_column_int64(st, 7);
    a->posting_at = sqlite3_column_int64(st, 8);
    a->dispatched_at = sqlite3_column_int64(st, 9);
    a->finished_at = sqlite3_column_int64(st, 10);
    column_text(a->outcome, sizeof a->outcome, st, 11);
    column_text(a->detail, sizeof a->detail, st, 12);
    column_text(a->bead_updated_at, sizeof a->bead_updated_at, st, 13);
    return 0;
}

/* Runs a bound statement selecting at most one journal row into *out.
 * Returns 0, BS_ENOTFOUND, or a translated error. Resets st. */
static int read_one_attempt(struct store *s, sqlite3_stmt *st, int bind_rc, const char *op,
                            struct store_attempt *out)
{
    int rc = bind_rc == SQLITE_OK ? sqlite3_step(st) : bind_rc;
    int ret;
    if (rc == SQLITE_ROW)
        ret = read_attempt(s, st, out);
    else if (rc == SQLITE_DONE)
        ret = BS_ENOTFOUND;
    else
        ret = store_fail(s, op, rc);
    store_stmt_done(st);
    return ret;
}

/* A new journal row and its first event, in one unit of work: claiming
 * (a claim of ours about to be made) or, with a job_id, dispatched (an
 * attempt adopted from another instance, numbered at least from_notes,
 * carrying from_notes - 1 prior attempts). Fills *out (may be NULL) on
 * success; on failure nothing is written. */
struct new_attempt {
    const char *bead_id, *dispatch_id;
    const char *job_id; /* NULL: a claim of ours (claiming) */
    int from_notes;     /* adopted only */
    const char *detail; /* adopted only */
    int64_t now_ms;
};

/* Bumps the bead's attempt counter and reads the number it gave (a
 * RETURNING clause would cost a temporary b-tree). 0 or the logged,
 * translated error. */
static int bump_attempts(struct store *s, const char *op, const struct new_attempt *n, int *attempt)
{
    int adopted = n->job_id != NULL;
    sqlite3_stmt *st = store_stmt(s, adopted ? SS_BEAD_BUMP_TO : SS_BEAD_BUMP, op);
    if (!st)
        return store_prepare_error(s);
    int rc = bind_text(st, 1, n->bead_id);
    if (adopted)
        keep(&rc, sqlite3_bind_int(st, 2, n->from_notes));
    int ret = run_write(s, st, rc, op);
    if (ret != 0)
        return ret;
    if (!(st = store_stmt(s, SS_BEAD_ATTEMPTS, op)))
        return store_prepare_error(s);
    rc = bind_text(st, 1, n->bead_id);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *attempt = sqlite3_column_int(st, 0);
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        log_error("store error: the attempt counter just written is not there", "op", op, "path", s->path,
                  "bead", n->bead_id);
        ret = store_map_rc(SQLITE_CORRUPT);
    } else {
        ret = store_fail(s, op, rc);
    }
    store_stmt_done(st);
    return ret;
}

static int attempt_insert(struct store *s, const char *op, const struct new_attempt *n,
                          struct store_attempt *out)
{
    int adopted = n->job_id != NULL;
    int ret = store_op_begin(s, op);
    if (ret != 0)
        return ret;

    int attempt = 0;
    int64_t id = 0;
    sqlite3_stmt *st;
    int rc;
    if ((ret = bump_attempts(s, op, n, &attempt)) != 0)
        goto out;

    if (!(st = store_stmt(s, adopted ? SS_ATTEMPT_ADOPT : SS_ATTEMPT_INSERT, op))) {
        ret = store_prepare_error(s);
        goto out;
    }
    rc = bind_text(st, 1, n->bead_id);
    keep(&rc, sqlite3_bind_int(st, 2, attempt));
    keep(&rc, bind_text(st, 3, n->dispatch_id));
    if (adopted) {
        keep(&rc, bind_text(st, 4, n->job_id));
        keep(&rc, sqlite3_bind_int64(st, 5, n->now_ms));
        keep(&rc, sqlite3_bind_int(st, 6, n->from_notes - 1));
        keep(&rc, bind_text(st, 7, n->detail));
    } else {
        keep(&rc, sqlite3_bind_int64(st, 4, n->now_ms));
    }
    if ((ret = run_write(s, st, rc, op)) != 0)
        goto out;
    if (adopted && sqlite3_changes(s->db) == 0) {
        ret = BS_ESTATE; /* a dispatch this journal already has: nothing to adopt */
        goto out;
    }
    id = sqlite3_last_insert_rowid(s->db);

    if (!(st = store_stmt(s, SS_EVENT_INSERT, op))) {
        ret = store_prepare_error(s);
        goto out;
    }
    rc = sqlite3_bind_int64(st, 1, n->now_ms);
    keep(&rc, bind_text(st, 2, n->bead_id));
    keep(&rc, sqlite3_bind_int64(st, 3, id));
    keep(&rc, bind_text(st, 4, adopted ? "adopted" : attempt_state_name(AS_CLAIMING)));
    keep(&rc, adopted ? bind_text(st, 5, n->job_id) : sqlite3_bind_null(st, 5));
    keep(&rc, adopted ? bind_text(st, 6, n->detail) : sqlite3_bind_null(st, 6));
    ret = run_write(s, st, rc, op);
out:
    ret = store_op_end(s, op, ret);
    if (ret == 0 && out) {
        memset(out, 0, sizeof *out);
        out->id = id;
        store_copy_text(out->bead_id, sizeof out->bead_id, n->bead_id, strlen(n->bead_id));
        out->attempt = attempt;
        store_copy_text(out->dispatch_id, sizeof out->dispatch_id, n->dispatch_id,
                        strlen(n->dispatch_id));
        if (adopted)
            store_copy_text(out->job_id, sizeof out->job_id, n->job_id, strlen(n->job_id));
        out->state = adopted ? AS_DISPATCHED : AS_CLAIMING;
        out->created_at = n->now_ms;
    }
    return ret;
}

/* See store.h. Validation: bead_id 1..STORE_BEAD_ID_MAX-1 bytes, dispatch_id
 * 1..STORE_DISPATCH_ID_MAX-1 bytes, else BS_EINVAL; a dispatch_id already in
 * the journal is a constraint violation, BS_EINVAL. On any failure nothing
 * is written (the counter is not bumped) and *out is untouched. */
int store_attempt_create(struct store *s, const char *bead_id, const char *dispatch_id,
                         int64_t now_ms, struct store_attempt *out)
{
    if (!fits(bead_id, STORE_BEAD_ID_MAX, true) || !fits(dispatch_id, STORE_DISPATCH_ID_MAX, true))
        return BS_EINVAL;
    struct new_attempt n = {.bead_id = bead_id, .dispatch_id = dispatch_id, .now_ms = now_ms};
    return attempt_insert(s, "attempt_create", &n, out);
}

/* See store.h. Also BS_EINVAL for a move the state machine forbids
 * (move_allowed: backward, sideways, out of a terminal state) and for
 * job_id / outcome / bead_updated_at too long for their struct fields;
 * detail is cut to STORE_DETAIL_MAX-1 bytes. A terminal move without an
 * outcome records the state's name as the outcome. On any failure nothing
 * is written. */
int store_attempt_transition(struct store *s, int64_t id, enum attempt_state from,
                             enum attempt_state to, const struct store_transition *t,
                             int64_t now_ms)
{
    const char *op = "attempt_transition";
    static const struct store_transition none = {0};
    if (!t)
        t = &none;
    if (!move_allowed(from, to) || !fits(t->job_id, STORE_JOB_ID_MAX, false) ||
        !fits(t->outcome, sizeof ((struct store_attempt *)0)->outcome, false) ||
        !fits(t->bead_updated_at, STORE_TS_MAX, false))
        return BS_EINVAL;
    bool terminal = attempt_state_terminal(to);
    const char *outcome = t->outcome ? t->outcome : terminal ? attempt_state_name(to) : NULL;

    int ret = store_op_begin(s, op);
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = store_stmt(s, SS_ATTEMPT_MOVE, op);
    if (!st) {
        ret = store_prepare_error(s);
        goto out;
    }
    int rc = bind_text(st, 1, attempt_state_name(to));
    keep(&rc, bind_text(st, 2, t->job_id));
    keep(&rc, bind_text(st, 3, outcome));
    keep(&rc, bind_detail(st, 4, t->detail));
    keep(&rc, bind_text(st, 5, t->bead_updated_at));
    keep(&rc, bind_ms(st, 6, to == AS_CLAIMED ? now_ms : 0));
    keep(&rc, bind_ms(st, 7, to == AS_POSTING ? now_ms : 0));
    keep(&rc, bind_ms(st, 8, to == AS_DISPATCHED ? now_ms : 0));
    keep(&rc, bind_ms(st, 9, terminal ? now_ms : 0));
    keep(&rc, sqlite3_bind_int64(st, 10, id));
    keep(&rc, bind_text(st, 11, attempt_state_name(from)));
    if ((ret = run_write(s, st, rc, op)) != 0)
        goto out;

    if (sqlite3_changes(s->db) == 0) {
        /* The compare-and-swap missed: tell a wrong state from no row. */
        if (!(st = store_stmt(s, SS_ATTEMPT_STATE, op))) {
            ret = store_prepare_error(s);
            goto out;
        }
        rc = sqlite3_bind_int64(st, 1, id);
        rc = rc == SQLITE_OK ? sqlite3_step(st) : rc;
        ret = rc == SQLITE_ROW ? BS_ESTATE : rc == SQLITE_DONE ? BS_ENOTFOUND
                                                              : store_fail(s, op, rc);
        store_stmt_done(st);
        goto out;
    }

    if (!(st = store_stmt(s, SS_EVENT_FOR_ATTEMPT, op))) {
        ret = store_prepare_error(s);
        goto out;
    }
    rc = sqlite3_bind_int64(st, 1, now_ms);
    keep(&rc, bind_text(st, 2, attempt_state_name(to)));
    keep(&rc, bind_detail(st, 3, t->detail));
    keep(&rc, sqlite3_bind_int64(st, 4, id));
    ret = run_write(s, st, rc, op);
out:
    return store_op_end(s, op, ret);
}

/* Reads attempt id into *out: 0, BS_ENOTFOUND, or a translated error. */
int store_attempt_get(struct store *s, int64_t id, struct store_attempt *out)
{
    const char *op = "attempt_get";
    sqlite3_stmt *st = store_stmt(s, SS_ATTEMPT_GET, op);
    if (!st)
        return store_prepare_error(s);
    return read_one_attempt(s, st, sqlite3_bind_int64(st, 1, id), op, out);
}

/* Reads the bead's attempt with the highest number: 0, BS_ENOTFOUND (also
 * for a NULL bead_id), or a translated error. */
int store_attempt_latest(struct store *s, const char *bead_id, struct store_attempt *out)
{
    const char *op = "attempt_latest";
    if (!bead_id)
        return BS_EINVAL;
    sqlite3_stmt *st = store_stmt(s, SS_ATTEMPT_LATEST, op);
    if (!st)
        return store_prepare_error(s);
    return read_one_attempt(s, st, bind_text(st, 1, bead_id), op, out);
}

/* See store.h. The rows are read into memory first and the statement reset
 * before cb runs, so cb may call any store function (including transitions
 * of the attempt it is given). Returns 0, cb's non-zero value, BS_ENOMEM, or
 * a translated error (then cb was not called). */
int store_attempts_active(struct store *s, store_attempt_cb cb, void *arg)
{
    const char *op = "attempts_active";
    if (!cb)
        return BS_EINVAL;
    sqlite3_stmt *st = store_stmt(s, SS_ATTEMPTS_ACTIVE, op);
    if (!st)
        return store_prepare_error(s);
    struct store_attempt *rows = NULL;
    size_t n = 0, cap = 0;
    int ret = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct store_attempt *nrows = realloc(rows, ncap * sizeof *rows);
            if (!nrows) {
                ret = BS_ENOMEM;
                break;
            }
            rows = nrows;
            cap = ncap;
        }
        if ((ret = read_attempt(s, st, &rows[n])) != 0)
            break;
        n++;
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = store_fail(s, op, rc);
    store_stmt_done(st);
    for (size_t i = 0; ret == 0 && i < n; i++)
        ret = cb(&rows[i], arg);
    free(rows);
    return ret;
}

/* Counts the non-terminal attempts into *out: 0 or a translated error. */
int store_attempts_active_count(struct store *s, int64_t *out)
{
    const char *op = "attempts_active_count";
    sqlite3_stmt *st = store_stmt(s, SS_ATTEMPTS_ACTIVE_COUNT, op);
    if (!st)
        return store_prepare_error(s);
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        ret = store_fail(s, op, rc);
    store_stmt_done(st);
    return ret;
}

/* See store.h. BS_EINVAL for an empty event, a negative attempt_id, a bead_id
 * or job_id too long for the struct fields; an attempt_id not in the journal
 * violates the foreign key: BS_EINVAL. detail is cut to STORE_DETAIL_MAX-1
 * bytes. */
int store_event_add(struct store *s, const char *bead_id, int64_t attempt_id, const char *event,
                    const char *job_id, const char *detail, int64_t now_ms)
{
    const char *op = "event_add";
    if (!fits(event, 64, true) || attempt_id < 0 || !fits(bead_id, STORE_BEAD_ID_MAX, false) ||
        !fits(job_id, STORE_JOB_ID_MAX, false))
        return BS_EINVAL;
    int ret = store_op_begin(s, op);
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = store_stmt(s, SS_EVENT_INSERT, op);
    if (!st) {
        ret = store_prepare_error(s);
    } else {
        int rc = sqlite3_bind_int64(st, 1, now_ms);
        keep(&rc, bind_text(st, 2, bead_id));
        keep(&rc, attempt_id ? sqlite3_bind_int64(st, 3, attempt_id) : sqlite3_bind_null(st, 3));
        keep(&rc, bind_text(st, 4, event));
        keep(&rc, bind_text(st, 5, job_id));
        keep(&rc, bind_detail(st, 6, detail));
        ret = run_write(s, st, rc, op);
    }
    return store_op_end(s, op, ret);
}

/* See store.h: a bead never seen reads as zeros and returns 0. BS_EINVAL for
 * a NULL bead_id; else 0 or a translated error. */
int store_bead_get(struct store *s, const char *bead_id, struct store_bead *out)
{
    const char *op = "bead_get";
    if (!bead_id)
        return BS_EINVAL;
    sqlite3_stmt *st = store_stmt(s, SS_BEAD_GET, op);
    if (!st)
        return store_prepare_error(s);
    memset(out, 0, sizeof *out);
    int rc = bind_text(st, 1, bead_id);
    rc = rc == SQLITE_OK ? sqlite3_step(st) : rc;
    int ret = 0;
    if (rc == SQLITE_ROW) {
        out->attempts = sqlite3_column_int(st, 0);
        out->next_retry_at = sqlite3_column_int64(st, 1);
        column_text(out->skip_noted_at, sizeof out->skip_noted_at, st, 2);
    } else if (rc != SQLITE_DONE) {
        ret = store_fail(s, op, rc);
    }
    store_stmt_done(st);
    return ret;
}

/* Counts the bead's attempts that may have reached the agent (see store.h).
 * A bead never seen counts 0. */
int store_bead_attempts_used(struct store *s, const char *bead_id, int *out)
{
    const char *op = "bead_attempts_used";
    if (!bead_id)
        return BS_EINVAL;
    sqlite3_stmt *st = store_stmt(s, SS_BEAD_ATTEMPTS_USED, op);
    if (!st)
        return store_prepare_error(s);
    int rc = bind_text(st, 1, bead_id);
    rc = rc == SQLITE_OK ? sqlite3_step(st) : rc;
    int ret = 0;
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0);
    else
        ret = store_fail(s, op, rc);
    store_stmt_done(st);
    return ret;
}

/* Sets (0: clears) the bead's retry deadline, creating its row if needed
 * with 0 attempts. BS_EINVAL for a bad bead_id; else 0 or a translated
 * error. */
int store_bead_set_retry(struct store *s, const char *bead_id, int64_t next_retry_at)
{
    const char *op = "bead_set_retry";
    if (!fits(bead_id, STORE_BEAD_ID_MAX, true))
        return BS_EINVAL;
    int ret = store_op_begin(s, op);
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = store_stmt(s, SS_BEAD_SET_RETRY, op);
    if (!st) {
        ret = store_prepare_error(s);
    } else {
        int rc = bind_text(st, 1, bead_id);
        keep(&rc, bind_ms(st, 2, next_retry_at));
        ret = run_write(s, st, rc, op);
    }
    return store_op_end(s, op, ret);
}

/* Records (NULL or "": clears) the bead updated_at at which we last noted a
 * skip. BS_EINVAL for a bad bead_id or a value of STORE_TS_MAX bytes or more;
 * else 0 or a translated error. */
int store_bead_set_skip_noted(struct store *s, const char *bead_id, const char *bead_updated_at)
{
    const char *op = "bead_set_skip_noted";
    if (!fits(bead_id, STORE_BEAD_ID_MAX, true) || !fits(bead_updated_at, STORE_TS_MAX, false))
        return BS_EINVAL;
    if (bead_updated_at && !*bead_updated_at)
        bead_updated_at = NULL;
    int ret = store_op_begin(s, op);
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = store_stmt(s, SS_BEAD_SET_SKIP, op);
    if (!st) {
        ret = store_prepare_error(s);
    } else {
        int rc = bind_text(st, 1, bead_id);
        keep(&rc, bind_text(st, 2, bead_updated_at));
        ret = run_write(s, st, rc, op);
    }
    return store_op_end(s, op, ret);
}

/* Copies setting key into buf[len], cut on a UTF-8 boundary if it does not
 * fit. 0, BS_ENOTFOUND, BS_EINVAL (no key, no room), or a translated error. */
int store_setting_get(struct store *s, const char *key, char *buf, size_t len)
{
    const char *op = "setting_get";
    if (!key || !buf || len == 0)
        return BS_EINVAL;
    sqlite3_stmt *st = store_stmt(s, SS_SETTING_GET, op);
    if (!st)
        return store_prepare_error(s);
    int rc = bind_text(st, 1, key);
    rc = rc == SQLITE_OK ? sqlite3_step(st) : rc;
    int ret = 0;
    if (rc == SQLITE_ROW)
        column_text(buf, len, st, 0);
    else if (rc == SQLITE_DONE)
        ret = BS_ENOTFOUND;
    else
        ret = store_fail(s, op, rc);
    store_stmt_done(st);
    return ret;
}

/* Inserts or replaces setting key. BS_EINVAL for an empty key or a NULL
 * value; else 0 or a translated error. */
int store_setting_set(struct store *s, const char *key, const char *value, int64_t now_ms)
{
    const char *op = "setting_set";
    if (!key || !*key || !value)
        return BS_EINVAL;
    int ret = store_op_begin(s, op);
    if (ret != 0)
        return ret;
    sqlite3_stmt *st = store_stmt(s, SS_SETTING_SET, op);
    if (!st) {
        ret = store_prepare_error(s);
    } else {
        int rc = bind_text(st, 1, key);
        keep(&rc, bind_text(st, 2, value));
        keep(&rc, sqlite3_bind_int64(st, 3, now_ms));
        ret = run_write(s, st, rc, op);
    }
    return store_op_end(s, op, ret);
}

/* See store.h. */
int store_attempt_adopt(struct store *s, const char *bead_id, const char *dispatch_id,
                        const char *job_id, int from_notes, int64_t now_ms, struct store_attempt *out)
{
    if (!fits(bead_id, STORE_BEAD_ID_MAX, true) || !fits(dispatch_id, STORE_DISPATCH_ID_MAX, true) ||
        !fits(job_id, STORE_JOB_ID_MAX, true) || from_notes < 1)
        return BS_EINVAL;
    char detail[STORE_DETAIL_MAX];
    snprintf(detail, sizeof detail, "adopted from another instance: dispatch %s, job %s, %d claim(s) "
             "on the bead", dispatch_id, job_id, from_notes);
    struct new_attempt n = {.bead_id = bead_id, .dispatch_id = dispatch_id, .job_id = job_id,
                            .from_notes = from_notes, .detail = detail, .now_ms = now_ms};
    return attempt_insert(s, "attempt_adopt", &n, out);
}
