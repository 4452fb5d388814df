/* Retention (retention.h): deletes old finished attempts and their events
 * in bounded batches. Three DELETEs in one unit of work; the attempts'
 * events go first so the result does not depend on PRAGMA foreign_keys
 * (ON DELETE CASCADE would otherwise do it). */
#include "retention.h"

#include "store_internal.h"

#include "errors.h"
#include "log.h"

#include <stddef.h>

/* The attempts due for deletion, oldest first, at most ?3: terminal, and
 * finished before the cutoff of their kind (?1 successes, ?2 the rest).
 * The range bound on finished_at lets SQLite walk journal_finished. */
#define DUE_ATTEMPTS                                                                         \
    "SELECT id FROM journal "                                                                \
    "WHERE finished_at IS NOT NULL AND finished_at < MAX(?1, ?2) "                           \
    "AND state IN ('closed', 'blocked', 'released', 'refused', 'lost_race', 'retrying', "    \
    "'gave_up') "                                                                            \
    "AND finished_at < CASE WHEN state = 'closed' OR outcome = 'closed' THEN ?1 ELSE ?2 END " \
    "ORDER BY finished_at, id LIMIT ?3"

static const char *const prune_sql[] = {
    "DELETE FROM event_log WHERE attempt_id IN (" DUE_ATTEMPTS ")",
    "DELETE FROM journal WHERE id IN (" DUE_ATTEMPTS ")",
    /* Free-standing events (skips, pause/resume) live as long as failures. */
    ("DELETE FROM event_log WHERE id IN (SELECT id FROM event_log WHERE attempt_id IS NULL "
     "AND at < ?2 ORDER BY id LIMIT ?3)"),
};

/* Runs one prune statement with the cutoffs bound; adds the rows it
 * deleted to *count when count is not NULL. Returns 0 or the logged,
 * translated error. */
static int run_prune(struct store *s, const char *sql, int64_t ok_cutoff, int64_t failed_cutoff,
                     int batch, int *count)
{
    const char *op = "prune";
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        /* The third statement has no ?1; its slot still exists (SQLite
         * numbers parameters up to the largest ?N), so binding it is harmless. */
        rc = sqlite3_bind_int64(st, 1, ok_cutoff);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 2, failed_cutoff);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int(st, 3, batch);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
    }
    int ret = rc == SQLITE_DONE ? 0 : store_fail(s, op, rc);
    if (ret == 0 && count)
        *count += sqlite3_changes(s->db);
    sqlite3_finalize(st);
    return ret;
}

/* See retention.h. */
int store_prune(struct store *s, int64_t now_ms, int64_t retain_ok_ms, int64_t retain_failed_ms,
                int batch, int *deleted)
{
    const char *op = "prune";
    if (deleted)
        *deleted = 0;
    if (batch < 1 || retain_ok_ms < 0 || retain_failed_ms < 0)
        return BS_EINVAL;
    int64_t ok_cutoff = now_ms - retain_ok_ms, failed_cutoff = now_ms - retain_failed_ms;
    int count = 0;
    int ret = store_op_begin(s, op);
    if (ret != 0)
        return ret;
    ret = run_prune(s, prune_sql[0], ok_cutoff, failed_cutoff, batch, NULL);
    if (ret == 0)
        ret = run_prune(s, prune_sql[1], ok_cutoff, failed_cutoff, batch, &count);
    if (ret == 0)
        ret = run_prune(s, prune_sql[2], ok_cutoff, failed_cutoff, batch, &count);
    ret = store_op_end(s, op, ret);
    if (ret == 0) {
        if (deleted)
            *deleted = count;
        if (count > 0)
            log_debug("store pruned", "path", s->path, "deleted", LOG_INT(count));
    }
    return ret;
}
