#ifndef BS_BEADS_H
#define BS_BEADS_H
/* Bead queries and guarded writes against the beads tables in Dolt
 * (CONTRACTS.md section 4). Every function runs on the thread that owns the
 * dolt_conn (the Dolt worker, or a CLI command) and blocks.
 *
 * Every write is a compare-and-swap on the status (and, where the caller
 * read it, updated_at) it expects: 0 rows changed means someone else moved
 * the bead first, returned as BS_ESTATE; Dolt's error 1213 is BS_ECONFLICT.
 * Both mean "lost the race: re-read, then decide". */
#include <stddef.h>
#include <stdint.h>

#include "dolt.h"
#include "ready.h"

/* The beads schema, detected once per session with SHOW TABLES and SHOW
 * COLUMNS (never INFORMATION_SCHEMA: it fails with error 1049 on some Dolt
 * servers, beads GH#2051). Supported: bd 1.0.x and the schema before its
 * migration 0027 (no started_at). */
struct beads_schema {
    uint64_t generation;   /* dolt_conn_generation when detected; 0 = not yet */
    int has_started_at;    /* issues.started_at (bd 1.0.1+) */
    int has_wisp_dependencies;
    int is_dolt;           /* dolt_version() exists */
    char error[200];       /* why the schema is not supported, when detect said BS_EINVAL */
};
/* Detects the schema if the session changed since the last detection.
 * BS_EINVAL when a table or column the daemon needs is missing: s->error
 * names it (logged once per session). */
int beads_schema_detect(struct dolt_conn *c, struct beads_schema *s);

/* A bead as read from Dolt. Strings are malloc'd (free with bead_free). */
struct bead {
    char *id, *title, *description, *acceptance, *issue_type, *status, *assignee;
    char *updated_at;     /* "YYYY-MM-DD HH:MM:SS", UTC */
    char *notes;          /* only filled by beads_read with want_notes */
    long priority;
    long long age_s;      /* seconds since updated_at by the server's clock */
};
void bead_free(struct bead *b);

/* Reads one bead; BS_ENOTFOUND if there is none. Rows whose id holds a NUL
 * byte are never returned by any read here (logged and skipped): such an id
 * would be cut short into another bead's id by every C string. */
int beads_read(struct dolt_conn *c, const char *id, int want_notes, struct bead *out);
/* beads_read (without notes) of n beads in statements of BEADS_READ_CHUNK:
 * out[i] is ids[i]'s bead, or all zero (out[i].id NULL) when there is no
 * such bead. On an error every out[] is freed. */
int beads_read_each(struct dolt_conn *c, const char *const *ids, size_t n, struct bead *out);

/* Reads many beads' state (id, status, assignee, updated_at, priority and,
 * with want_notes, notes; text fields are left NULL) in chunks of
 * BEADS_READ_CHUNK ids per prepared statement, calling cb for each bead that
 * exists (in no particular order). cb returns non-zero to stop. */
#define BEADS_READ_CHUNK 100
typedef int (*bead_cb)(const struct bead *b, void *arg);
int beads_read_many(struct dolt_conn *c, const char *const *ids, size_t n, int want_notes,
                    bead_cb cb, void *arg);
/* Calls cb for every bead with this assignee in status in_progress (same
 * fields as beads_read_many without notes). */
int beads_in_progress(struct dolt_conn *c, const char *assignee, bead_cb cb, void *arg);

/* The readiness snapshot of one cycle: bd's blocked set, the children of
 * blocked and of deferred parents (sched/ready.h), and the ids the
 * candidate query excludes with NOT IN. Read with single-table statements
 * only (no correlated EXISTS across tables: Dolt's planner panics or hangs
 * on them, beads GH#1190, GH#1495). */
struct beads_ready {
    struct ready_state st;
    char **excl;           /* excluded ids (NUL-free), sorted */
    size_t nexcl;
    size_t statements;     /* statements the load ran, for benchmarks */
};
/* Loads the snapshot; assignee narrows a very long exclusion list to the
 * open beads of that assignee. *out is malloc'd: beads_ready_free. */
int beads_ready_load(struct dolt_conn *c, const struct beads_schema *s, const char *assignee,
                     struct beads_ready **out);
void beads_ready_free(struct beads_ready *r);

/* A ready bead assigned to the scheduler, in dispatch order. */
struct candidate {
    char *id;
    char *updated_at;
    long priority;
};
/* Ready beads (bd ready's rules, CONTRACTS.md section 4) with status open
 * and the given assignee, in dispatch order (priority, then the oldest
 * updated_at, then id), at most limit rows, skipping the first offset: with
 * with_acceptance = 1 those whose acceptance criteria are non-empty after
 * trimming (the dispatchable ones), with 0 those without (to be noted as
 * skipped). The row rules run in SQL and again through ready_rules (the
 * one decision explain shows); r excludes blocked beads and the children
 * of blocked or deferred parents. *out is malloc'd; free with
 * candidates_free. */
int beads_candidates(struct dolt_conn *c, const struct beads_schema *s, const struct beads_ready *r,
                     const char *assignee, int with_acceptance, size_t offset, size_t limit,
                     struct candidate **out, size_t *n);
void candidates_free(struct candidate *v, size_t n);

/* The change probe: a short string that changes whenever the assignee's
 * beads may have changed (dolt_hashof_db() on Dolt; count and newest
 * updated_at of the assignee's beads elsewhere). */
int beads_probe(struct dolt_conn *c, const struct beads_schema *s, const char *assignee,
                char *buf, size_t len);

/* Identity of the writer for events and Dolt commits. */
struct beads_writer {
    const char *actor;       /* events.actor */
    const char *author;      /* "Name <email>" for DOLT_COMMIT */
    int dolt_commit;         /* make a Dolt commit after each write */
};

/* The TEXT columns of issues hold at most this many bytes. */
#define BEADS_TEXT_MAX 65535

/* A status move with an appended note, as one transaction:
 * UPDATE issues SET status=to, updated_at=<server now>, notes=notes + note
 * WHERE id=? AND status=from AND assignee=? [AND updated_at=expect_updated_at]
 * plus an events row (event_type, old_value/new_value as JSON, the note as
 * its comment) and, if w->dolt_commit, a Dolt commit with message
 * "beads-sched: <verb> <id>". to may equal from (note only; then updated_at
 * is bumped and the event is "updated"). set_started sets started_at (where
 * the column exists) if it is NULL.
 *
 * Time comes from the server (UTC_TIMESTAMP()), never from this process,
 * and updated_at never moves backwards. The note is bounded so notes stay
 * within BEADS_TEXT_MAX bytes: shortened when a useful part fits, else left
 * out of notes (the bead's existing text is never touched); the events row
 * always carries it. Returns 0, BS_ESTATE (0 rows), BS_ECONFLICT, BS_ECONN
 * or BS_EIO. */
struct bead_move {
    const char *id;
    const char *assignee;
    const char *from, *to;
    const char *expect_updated_at; /* NULL: don't compare */
    const char *note;              /* appended as its own line; NULL for none */
    const char *event_type;        /* claimed, status_changed, updated, ... */
    const char *verb;              /* for the Dolt commit message */
    int set_started;
    char *wrote_updated_at;        /* out, optional: the updated_at written (32 bytes) */
};
int beads_move(struct dolt_conn *c, const struct beads_schema *s, const struct beads_writer *w,
               const struct bead_move *m);

/* Moves in one batch of at most this many. */
#define BEADS_BATCH_MAX 128
/* The moves as one transaction and (when w asks) one Dolt commit, "beads-sched:
 * <verb> <id> <id> ..." (capped): one pre-read for all, one guarded UPDATE
 * each, one INSERT of the events rows. Each move is still a compare-and-swap:
 * rcs[i] is 0 (moved), BS_ESTATE (the bead was not as expected: nothing of
 * it written), another error of that bead's own (the server refused its
 * row), or the batch's. A Dolt conflict (1213) aborts the whole
 * transaction, at a statement or at COMMIT: then each move is made again
 * in a transaction of its own (beads_move), so one contested bead never
 * costs the others. Returns 0, or BS_ECONN when the connection was lost
 * (every rcs[i] BS_ECONN: whether the batch landed is unknown). */
int beads_move_many(struct dolt_conn *c, const struct beads_schema *s, const struct beads_writer *w,
                    const struct bead_move *m, size_t n, const char *verb, int *rcs);

/* The server's clock: "YYYY-MM-DD HH:MM:SS" and ISO-8601 "...T...Z" (either
 * may be NULL). */
int beads_server_now(struct dolt_conn *c, char *dt, size_t dtlen, char *iso, size_t isolen);

/* Whether mark (e.g. a dispatch id) is in the bead's notes (given, may be
 * NULL) or in the comment of one of its events: the claim note may not have
 * fit in full notes, its events row always does. 1, 0, or an error. */
int beads_has_mark(struct dolt_conn *c, const char *id, const char *notes, const char *mark);

/* Formats a UTC time for DATETIME columns ("YYYY-MM-DD HH:MM:SS") and for
 * notes ("YYYY-MM-DDTHH:MM:SSZ"). */
void beads_datetime(int64_t ms, char *buf, size_t len);
/* Parses "YYYY-MM-DD HH:MM:SS" (UTC) back to ms; 0 if it isn't one. */
int64_t beads_datetime_ms(const char *s);

/* ---- readiness details, for `beads-sched explain` ---- */

/* The row facts of one bead (strings malloc'd; free with
 * bead_facts_free); row.id points into id/id_len. */
struct bead_facts {
    struct ready_row row;
    char *id, *status, *assignee, *issue_type, *defer_until;
    size_t id_len;
    long long notes_bytes;
};
/* Reads the facts of bead id; BS_ENOTFOUND when there is none. */
int beads_read_facts(struct dolt_conn *c, const char *id, struct bead_facts *out);
void bead_facts_free(struct bead_facts *f);
/* Ids of beads whose id is `prefix` followed by a NUL byte and more (what
 * a C string would cut them to); calls cb with a printable form of each. */
int beads_nul_ids(struct dolt_conn *c, const char *prefix, int (*cb)(const char *printable, void *arg),
                  void *arg);
#endif
