/* Read-only reports for the operator commands (report.h). The commands run
 * once per process, so statements are prepared per call and finalized
 * before returning instead of joining the daemon's statement cache. Bead ids
 * are untrusted text: always bound, never spliced into SQL. */
#include "report.h"

#include "store_internal.h"

#include "errors.h"

#include <stddef.h>

/* Prepares sql on the store's connection. Returns the statement, or NULL
 * with *err set to the logged, translated error. */
static sqlite3_stmt *prepare(struct store *s, const char *sql, const char *op, int *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        *err = store_fail(s, op, rc);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/* Binds bead_id as ?1 unless it is NULL (the statement then has no ?1). */
static int bind_bead(sqlite3_stmt *st, const char *bead_id)
{
    return bead_id ? sqlite3_bind_text(st, 1, bead_id, -1, SQLITE_STATIC) : SQLITE_OK;
}

/* The id of the newest event left out when only `limit` are shown: 0 when
 * nothing is left out. One backwards step of `limit` entries over
 * event_log_bead (or the rowid). Returns 0 or a translated error. */
static int history_floor(struct store *s, const char *bead_id, int64_t limit, int64_t *floor_id)
{
    const char *op = "history";
    int ret = 0;
    *floor_id = 0;
    sqlite3_stmt *st = prepare(s,
                               bead_id ? "SELECT id FROM event_log WHERE bead_id = ?1 "
                                         "ORDER BY id DESC LIMIT 1 OFFSET ?2"
                                       : "SELECT id FROM event_log ORDER BY id DESC LIMIT 1 OFFSET ?2",
                               op, &ret);
    if (!st)
        return ret;
    int rc = bind_bead(st, bead_id);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, limit);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *floor_id = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        ret = store_fail(s, op, rc);
    sqlite3_finalize(st);
    return ret;
}

/* See report.h. Two steps so neither needs a buffer: find the newest event
 * left out (history_floor), then stream the events after it in id order. */
int store_history(struct store *s, const char *bead_id, int64_t limit, store_event_cb cb,
                  void *arg, int *more)
{
    const char *op = "history";
    if (limit < 0 || !cb)
        return BS_EINVAL;
    if (more)
        *more = 0;
    int64_t floor_id = 0;
    int ret = limit > 0 ? history_floor(s, bead_id, limit, &floor_id) : 0;
    if (ret != 0)
        return ret;
    if (more)
        *more = floor_id > 0;

    sqlite3_stmt *st = prepare(
        s,
        bead_id ? "SELECT e.id, e.at, e.bead_id, j.attempt, e.event, e.job_id, e.detail "
                  "FROM event_log AS e LEFT JOIN journal AS j ON j.id = e.attempt_id "
                  "WHERE e.bead_id = ?1 AND e.id > ?2 ORDER BY e.id"
                : "SELECT e.id, e.at, e.bead_id, j.attempt, e.event, e.job_id, e.detail "
                  "FROM event_log AS e LEFT JOIN journal AS j ON j.id = e.attempt_id "
                  "WHERE e.id > ?2 ORDER BY e.id",
        op, &ret);
    if (!st)
        return ret;
    int rc = bind_bead(st, bead_id);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, floor_id);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_event_row row = {
            .id = sqlite3_column_int64(st, 0),
            .at = sqlite3_column_int64(st, 1),
            .bead_id = (const char *)sqlite3_column_text(st, 2),
            .attempt = sqlite3_column_int(st, 3),
            .event = (const char *)sqlite3_column_text(st, 4),
            .job_id = (const char *)sqlite3_column_text(st, 5),
            .detail = (const char *)sqlite3_column_text(st, 6),
        };
        if (!row.event)
            row.event = ""; /* NOT NULL in the schema; defensive */
        if ((ret = cb(&row, arg)) != 0)
            break;
        rc = SQLITE_OK;
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = store_fail(s, op, rc);
    sqlite3_finalize(st);
    return ret;
}

/* See report.h. Uses the journal_finished index. */
int store_outcome_counts(struct store *s, int64_t since_ms, store_count_cb cb, void *arg)
{
    const char *op = "outcome_counts";
    if (!cb)
        return BS_EINVAL;
    int ret = 0;
    sqlite3_stmt *st = prepare(s,
                               "SELECT state, COUNT(*) FROM journal "
                               "WHERE finished_at IS NOT NULL AND finished_at >= ?1 "
                               "AND NOT " ACTIVE_WHERE " "
                               "GROUP BY state ORDER BY 2 DESC, 1",
                               op, &ret);
    if (!st)
        return ret;
    int rc = sqlite3_bind_int64(st, 1, since_ms);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(st, 0);
        if ((ret = cb(state ? state : "?", sqlite3_column_int64(st, 1), arg)) != 0)
            break;
        rc = SQLITE_OK;
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = store_fail(s, op, rc);
    sqlite3_finalize(st);
    return ret;
}
