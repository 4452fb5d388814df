#ifndef BS_STORE_INTERNAL_H
#define BS_STORE_INTERNAL_H
/* Shared between the files of the store module only (store.c: open, lock,
 * checks, migrations, transactions; journal.c: row operations). Nothing
 * outside store/ includes this or sqlite3.h. */
#include "store.h"

#include <sqlite3.h>
#include <sys/types.h>
#include <stdbool.h>

/* The non-terminal attempts: word for word the WHERE of the partial index
 * journal_active (migrations/0004), which SQLite uses only for a query
 * that repeats it. An OR chain, not an IN list: see that migration. */
#define ACTIVE_WHERE                                                                             \
    "(state = 'claiming' OR state = 'claimed' OR state = 'posting' OR state = 'unknown' OR "    \
    "state = 'dispatched')"

/* Every prepared statement the store uses, prepared on first use with
 * SQLITE_PREPARE_PERSISTENT and cached in struct store until store_close.
 * Lazy preparation keeps a READ handle on an older schema usable for the
 * statements that schema supports. */
enum store_stmt {
    SS_BEGIN,
    SS_BEGIN_READ,
    SS_COMMIT,
    SS_ROLLBACK,
    SS_SAVEPOINT,
    SS_RELEASE,
    SS_ROLLBACK_TO,
    SS_USER_VERSION,
    SS_BEAD_BUMP,
    SS_BEAD_ATTEMPTS,
    SS_ATTEMPT_INSERT,
    SS_ATTEMPT_MOVE,
    SS_ATTEMPT_STATE,
    SS_ATTEMPT_GET,
    SS_ATTEMPT_LATEST,
    SS_ATTEMPTS_ACTIVE,
    SS_ATTEMPTS_ACTIVE_COUNT,
    SS_EVENT_INSERT,
    SS_EVENT_FOR_ATTEMPT,
    SS_BEAD_GET,
    SS_BEAD_SET_RETRY,
    SS_BEAD_SET_SKIP,
    SS_BEAD_ATTEMPTS_USED,
    SS_BEAD_BUMP_TO,
    SS_ATTEMPT_ADOPT,
    SS_SETTING_GET,
    SS_SETTING_SET,
    SS_COUNT
};

/* Columns of a journal row as store_row_attempt reads them, in this order. */
#define STORE_ATTEMPT_COLUMNS \
    "id, bead_id, attempt, dispatch_id, state, job_id, created_at, claimed_at, " \
    "posting_at, dispatched_at, finished_at, outcome, detail, bead_updated_at"

struct store {
    sqlite3 *db;
    char *path;
    enum store_open_mode mode;
    int lock_fd;       /* DAEMON: holds flock(LOCK_EX) on "<path>.lock"; else -1 */
    dev_t file_dev;    /* identity of the file opened at path, for store_file_check */
    ino_t file_ino;
    bool txn;          /* an explicit store_begin transaction is open */
    bool read_txn;     /* a store_read_begin snapshot is open */
    int txn_lost;      /* SQLite rolled the explicit transaction back: its error */
    sqlite3_stmt *stmt[SS_COUNT];
};

/* Returns the cached statement, preparing it on first use; NULL on failure
 * (logged with op). The caller must sqlite3_reset and
 * sqlite3_clear_bindings it when done (store_stmt_done). */
sqlite3_stmt *store_stmt(struct store *s, enum store_stmt id, const char *op);
void store_stmt_done(sqlite3_stmt *st);
/* The error to return after store_stmt gave NULL (never 0). */
int store_prepare_error(struct store *s);

/* Translates a SQLite result code into a BS_E* code. */
int store_map_rc(int rc);
/* Logs SQLite's message for a failed op and returns store_map_rc(rc). */
int store_fail(struct store *s, const char *op, int rc);

/* The unit of work of one writing function: its own BEGIN IMMEDIATE, or a
 * savepoint inside the caller's explicit transaction, so a failed function
 * leaves nothing behind either way. store_op_begin returns BS_ERDONLY on a
 * READ handle and the saved error if SQLite already rolled the explicit
 * transaction back. store_op_end commits (or releases) when rc == 0 and
 * returns the commit's error if that fails; otherwise it rolls back (or back
 * to the savepoint) and returns rc. */
int store_op_begin(struct store *s, const char *op);
int store_op_end(struct store *s, const char *op, int rc);

/* Copies src (n bytes) into dst[cap] NUL-terminated, cut with
 * text_utf8_prefix when it does not fit. */
void store_copy_text(char *dst, size_t cap, const char *src, size_t n);
#endif
