#ifndef BS_STORE_H
#define BS_STORE_H
/* The local job store: one SQLite file (WAL, synchronous=FULL) holding the
 * write-ahead journal of dispatch attempts, an append-only event log,
 * per-bead retry state and settings. Only store/ includes sqlite3.h.
 *
 * Ownership: a struct store is owned by one thread at a time; nothing in it
 * is shared. Every function returns 0 or a negative BS_E* code (errors.h);
 * SQLite's own message is logged here, at the boundary.
 *
 * Timestamps are integer milliseconds since the Unix epoch, UTC. */
#include <stddef.h>
#include <stdint.h>

#include "attempt_states.h"

struct store;

enum store_open_mode {
    STORE_OPEN_READ,    /* existing store only, read-only, no migration (status, history) */
    STORE_OPEN_MIGRATE, /* create if missing, migrate to the newest version (migrate, once) */
    STORE_OPEN_DAEMON,  /* as MIGRATE, and hold the single-writer lock for the life of the handle */
};

/* Opens the store at path. Before anything is written: an existing file must
 * pass PRAGMA quick_check (else BS_ECORRUPT, file untouched, err names the
 * file) and its user_version must not exceed store_migration_count (else
 * BS_ENEWER, err names both versions). DAEMON mode takes an exclusive
 * advisory lock on "<path>.lock" first; if another process holds it, returns
 * BS_EBUSY with err saying the store is already in use. On failure *out is
 * NULL and err (if errlen > 0) holds one line naming what was wrong. */
int store_open(struct store **out, const char *path, enum store_open_mode mode,
               char *err, size_t errlen);
void store_close(struct store *s);

/* Whether the file at the store's path is still the file this handle
 * opened. A store deleted, moved or replaced under a running daemon would
 * otherwise take journal writes that nobody will ever read: callers stop
 * writing when this fails. Returns 0, or BS_ENOTFOUND (nothing at the path)
 * / BS_ESTATE (another file there) with why naming the path. Any thread; it
 * only stats the path. */
int store_file_check(const struct store *s, char *why, size_t len);

/* Bytes the store at path takes on disk: the file and its -wal (0 for
 * what is missing). Any thread; it only stats. */
int64_t store_file_bytes(const char *path);

/* Schema version of the open store (PRAGMA user_version). */
int store_schema_version(struct store *s);
/* Newest schema version this binary carries. */
int store_latest_version(void);

/* Explicit transactions, for grouping several journal moves into one fsync.
 * Functions below run inside the open transaction if there is one, else in
 * their own. store_begin takes the write lock (BEGIN IMMEDIATE). */
int store_begin(struct store *s);
int store_commit(struct store *s);
void store_rollback(struct store *s);
/* A read snapshot for a run of reads (one WAL read lock for all of them);
 * no write may run inside it (BS_EINVAL). store_read_end ends it. */
int store_read_begin(struct store *s);
void store_read_end(struct store *s);

/* Attempt states: the table in common/attempt_states.h (enum attempt_state). */
const char *attempt_state_name(enum attempt_state st);
int attempt_state_parse(const char *name, enum attempt_state *out);
int attempt_state_terminal(enum attempt_state st);

#define STORE_BEAD_ID_MAX 1024 /* bytes incl. NUL: VARCHAR(255) of utf8mb4 */
#define STORE_JOB_ID_MAX 64
#define STORE_DISPATCH_ID_MAX 40
#define STORE_DETAIL_MAX 1024
#define STORE_TS_MAX 32

struct store_attempt {
    int64_t id;
    char bead_id[STORE_BEAD_ID_MAX];
    int attempt; /* 1-based, per bead; only grows */
    char dispatch_id[STORE_DISPATCH_ID_MAX];
    enum attempt_state state;
    char job_id[STORE_JOB_ID_MAX];              /* "" when none */
    int64_t created_at, claimed_at, posting_at, dispatched_at, finished_at; /* 0 = not yet */
    char outcome[32];                           /* "" until terminal */
    char detail[STORE_DETAIL_MAX];              /* truncated to fit */
    char bead_updated_at[STORE_TS_MAX];         /* Dolt updated_at last written/seen, "" if none */
};

/* Adopts an attempt another beads-sched instance dispatched (a hand-over):
 * a journal row straight in state dispatched with the other instance's
 * dispatch_id and job_id, numbered from_notes (the claims the bead's notes
 * count) or the next of ours if that is higher, carrying from_notes - 1
 * prior attempts so MAX_ATTEMPTS counts the other instance's attempts too;
 * plus an "adopted" event. BS_EINVAL for bad input, BS_ESTATE (quietly) for
 * a dispatch_id this journal already has; then nothing is written. */
int store_attempt_adopt(struct store *s, const char *bead_id, const char *dispatch_id,
                        const char *job_id, int from_notes, int64_t now_ms, struct store_attempt *out);

/* Starts a new attempt for bead_id in state claiming: bumps the bead's
 * attempt counter (which never decreases), inserts the journal row and a
 * "claiming" event. Fills *out. */
int store_attempt_create(struct store *s, const char *bead_id, const char *dispatch_id,
                         int64_t now_ms, struct store_attempt *out);

/* Optional fields of a transition; NULL leaves the column as it is. */
struct store_transition {
    const char *job_id;
    const char *outcome;
    const char *detail;
    const char *bead_updated_at;
};

/* Moves attempt id from state `from` to `to` (compare-and-swap: BS_ESTATE if
 * the row is not in `from`, BS_ENOTFOUND if no such row). Sets the matching
 * timestamp (claimed_at, posting_at, dispatched_at, finished_at for terminal
 * states) and appends an event named after `to`. t may be NULL. */
int store_attempt_transition(struct store *s, int64_t id, enum attempt_state from,
                             enum attempt_state to, const struct store_transition *t,
                             int64_t now_ms);

int store_attempt_get(struct store *s, int64_t id, struct store_attempt *out);
/* Newest attempt of a bead, BS_ENOTFOUND if none. */
int store_attempt_latest(struct store *s, const char *bead_id, struct store_attempt *out);

/* Calls cb for every non-terminal attempt, oldest first. A non-zero return
 * from cb stops the walk and is returned. */
typedef int (*store_attempt_cb)(const struct store_attempt *a, void *arg);
int store_attempts_active(struct store *s, store_attempt_cb cb, void *arg);
/* Number of non-terminal attempts. */
int store_attempts_active_count(struct store *s, int64_t *out);

/* Appends a free-form event (e.g. "skipped_no_acceptance", "lost_race").
 * attempt_id 0 means none; job_id and detail may be NULL. */
int store_event_add(struct store *s, const char *bead_id, int64_t attempt_id, const char *event,
                    const char *job_id, const char *detail, int64_t now_ms);

/* Per-bead state. A bead never seen reads as all zero / "" (returns 0). */
struct store_bead {
    int attempts;                          /* attempts started so far */
    int64_t next_retry_at;                 /* 0 = no backoff pending */
    char skip_noted_at[STORE_TS_MAX];      /* bead updated_at when we last noted "skipped", "" if never */
};
int store_bead_get(struct store *s, const char *bead_id, struct store_bead *out);
int store_bead_set_retry(struct store *s, const char *bead_id, int64_t next_retry_at);
int store_bead_set_skip_noted(struct store *s, const char *bead_id, const char *bead_updated_at);

/* Attempts of a bead that may have reached the agent: every attempt except
 * those refused by the agent, lost to a race, or released before posting,
 * counted since the bead's last gave_up attempt (reopening a bead the
 * reaper gave up on grants a fresh round). This is what MAX_ATTEMPTS limits;
 * attempt numbers themselves never restart. */
int store_bead_attempts_used(struct store *s, const char *bead_id, int *out);

/* Settings: small key/value strings (e.g. "paused" = "1"). */
int store_setting_get(struct store *s, const char *key, char *buf, size_t len); /* BS_ENOTFOUND */
int store_setting_set(struct store *s, const char *key, const char *value, int64_t now_ms);

#ifdef BEADS_SCHED_TEST_HOOKS
/* Fault seams for tests (BEADS_SCHED_TEST_HOOKS builds only). */
struct migration;
/* Replaces the embedded migrations with m[0..count) for later store_open
 * calls and store_latest_version; NULL restores the embedded ones. */
void store_test_set_migrations(const struct migration *m, int count);
/* Runs SQL on the store's own connection (e.g. PRAGMA max_page_count to
 * simulate a full disk). Returns 0 or a BS_E* code. */
int store_test_exec(struct store *s, const char *sql);
/* How many of the store's own statements whose text contains `part` have
 * `needle` in their EXPLAIN (an opcode; query_plan 0) or EXPLAIN QUERY PLAN
 * (a step's detail; query_plan 1); -1 if none contains `part` or one
 * cannot be explained. */
int store_test_explain(struct store *s, const char *part, int query_plan, const char *needle);
#endif
#endif
