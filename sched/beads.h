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

/* Optional parts of the beads schema, detected once per session through
 * INFORMATION_SCHEMA. */
struct beads_schema {
    uint64_t generation;   /* dolt_conn_generation when detected; 0 = not yet */
    int has_is_blocked, has_started_at, has_defer_until, has_ephemeral, has_pinned;
    int has_dependencies, has_events;
    int is_dolt;           /* dolt_version() exists */
};
/* Detects the schema if the session changed since the last detection. */
int beads_schema_detect(struct dolt_conn *c, struct beads_schema *s);

/* A bead as read from Dolt. Strings are malloc'd (free with bead_free). */
struct bead {
    char *id, *title, *description, *acceptance, *issue_type, *status, *assignee;
    char *updated_at;     /* "YYYY-MM-DD HH:MM:SS", UTC */
    char *notes;          /* only filled by beads_read with want_notes */
    long priority;
};
void bead_free(struct bead *b);

/* Reads one bead; BS_ENOTFOUND if there is none. */
int beads_read(struct dolt_conn *c, const char *id, int want_notes, struct bead *out);

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

/* A ready bead assigned to the scheduler, in dispatch order. */
struct candidate {
    char *id;
    char *updated_at;
    long priority;
    int has_acceptance;  /* acceptance criteria non-empty after trimming */
};
/* Ready beads (CONTRACTS.md section 4 readiness) with status open and the
 * given assignee, ordered by priority then updated_at, at most limit rows,
 * skipping the first offset: with with_acceptance = 1 those whose
 * acceptance criteria are non-empty after trimming (the dispatchable ones),
 * with 0 those without (to be noted as skipped). *out is malloc'd; free
 * with candidates_free. */
int beads_candidates(struct dolt_conn *c, const struct beads_schema *s, const char *assignee,
                     int with_acceptance, size_t offset, size_t limit, struct candidate **out,
                     size_t *n);
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

/* A status move with an appended note, as one transaction:
 * UPDATE issues SET status=to, updated_at=now, notes=notes + note
 * WHERE id=? AND status=from AND assignee=? [AND updated_at=expect_updated_at]
 * plus an events row (event_type) and, if w->dolt_commit, a Dolt commit with
 * message "beads-sched: <verb> <id>". to may equal from (note only; then
 * updated_at is bumped and the event is "updated"). set_started sets
 * started_at (where the column exists) if it is NULL. now is the UTC
 * "YYYY-MM-DD HH:MM:SS" written to updated_at. Returns 0, BS_ESTATE (0 rows),
 * BS_ECONFLICT, BS_ECONN or BS_EIO. */
struct bead_move {
    const char *id;
    const char *assignee;
    const char *from, *to;
    const char *expect_updated_at; /* NULL: don't compare */
    const char *note;              /* appended as its own line; NULL for none */
    const char *event_type;        /* claimed, status_changed, updated, ... */
    const char *verb;              /* for the Dolt commit message */
    const char *now;
    int set_started;
};
int beads_move(struct dolt_conn *c, const struct beads_schema *s, const struct beads_writer *w,
               const struct bead_move *m);

/* Formats a UTC time for DATETIME columns ("YYYY-MM-DD HH:MM:SS") and for
 * notes ("YYYY-MM-DDTHH:MM:SSZ"). */
void beads_datetime(int64_t ms, char *buf, size_t len);
/* Parses "YYYY-MM-DD HH:MM:SS" (UTC) back to ms; 0 if it isn't one. */
int64_t beads_datetime_ms(const char *s);

/* ---- readiness details, for `beads-sched explain` ---- */

/* The readiness facts of one bead (CONTRACTS.md section 4), each computed
 * by the server with the same SQL test beads_candidates applies, so explain
 * and the dispatcher cannot disagree. A column the schema lacks reads as -1
 * (the dispatcher then does not check it either). */
struct bead_readiness {
    int has_acceptance;  /* acceptance criteria non-empty after trimming */
    int excluded_type;   /* issue_type is one beads never treats as ready work */
    char *defer_until;   /* "YYYY-MM-DD HH:MM:SS" UTC; NULL when unset (malloc'd) */
    int deferred;        /* defer_until is after the server's UTC_TIMESTAMP(); -1: no column */
    int ephemeral;       /* 1 unless the column is 0; -1: no column */
    int pinned;          /* 1 unless the column is 0; -1: no column */
    int is_blocked;      /* 1 unless the column is 0; -1: no column (older schemas) */
};
/* Reads the readiness facts of bead id. Returns 0, BS_ENOTFOUND, or the
 * dolt_query error. On failure *out holds nothing to free. */
int beads_read_readiness(struct dolt_conn *c, const struct beads_schema *s, const char *id,
                         struct bead_readiness *out);
void bead_readiness_free(struct bead_readiness *r);

/* An open blocker of a bead: a dependencies row of type blocks,
 * conditional-blocks or waits-for whose target exists and is neither closed
 * nor pinned. Strings valid only during the callback. */
struct bead_blocker {
    const char *id;      /* the blocking bead */
    const char *type;    /* dependency type */
    const char *status;  /* the blocking bead's status */
};
/* Return non-zero to stop; that value is returned. */
typedef int (*beads_blocker_cb)(const struct bead_blocker *b, void *arg);
/* Calls cb for each open blocker of bead id (at most 1000, by blocker id):
 * the rule beads_candidates applies on schemas without is_blocked. Returns
 * 0 without calling cb when the schema has no dependencies table; else 0,
 * cb's value, or the dolt_query error. */
int beads_blockers(struct dolt_conn *c, const struct beads_schema *s, const char *id,
                   beads_blocker_cb cb, void *arg);
#endif
