#ifndef BS_REPORT_H
#define BS_REPORT_H
/* Read-only reports over the store for the operator commands (status,
 * history, explain). They work on every handle, STORE_OPEN_READ included,
 * and never write. They read only the tables of migration 0001, so a READ
 * handle on an older store still answers.
 *
 * Errors as everywhere in the store: 0 or a negative BS_E* code, SQLite's
 * text logged here. */
#include <stdint.h>

#include "store.h"

/* One event_log row joined with its attempt: what the `history` view shows,
 * with the raw millisecond timestamp. Pointers are valid only during the
 * callback; NULL stands for SQL NULL. */
struct store_event_row {
    int64_t id;          /* event_log.id: the order events happened in */
    int64_t at;          /* ms since the epoch, UTC */
    const char *bead_id; /* NULL for events not tied to a bead (pause, resume) */
    int attempt;         /* the bead's attempt number; 0 when not tied to an attempt */
    const char *event;   /* never NULL */
    const char *job_id;
    const char *detail;
};
/* Return non-zero to stop the walk; that value is returned. */
typedef int (*store_event_cb)(const struct store_event_row *row, void *arg);

/* Calls cb for the newest `limit` events (every event when limit is 0) of
 * bead_id, or of the whole store when bead_id is NULL, oldest first. *more
 * (may be NULL) is set to 1 when older events were left out, else 0.
 * Cost: one index probe plus one step per row returned, whatever the size
 * of the log (event_log_bead for one bead, the rowid otherwise). cb runs
 * while the query is open: it must not write to the store. Returns 0, cb's
 * non-zero value, BS_EINVAL (negative limit), or a translated error. */
int store_history(struct store *s, const char *bead_id, int64_t limit, store_event_cb cb,
                  void *arg, int *more);

/* Terminal attempts whose finished_at is at or after since_ms, counted by
 * state: cb(state, count) once per state present, largest count first (ties
 * by name). Returns 0, cb's non-zero value, or a translated error. */
typedef int (*store_count_cb)(const char *state, int64_t count, void *arg);
int store_outcome_counts(struct store *s, int64_t since_ms, store_count_cb cb, void *arg);
#endif
