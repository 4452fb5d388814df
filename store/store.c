/* The store's lifecycle: the single-writer lock, the side-effect-free
 * integrity and version checks, opening SQLite, migrations, the prepared
 * statement cache, transactions and error translation. Row operations are in
 * journal.c. */
#include "store_internal.h"

#include "errors.h"
#include "log.h"
#include "text.h"
#include "migrations.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_BUSY_TIMEOUT_MS 5000

static const char *const stmt_sql[SS_COUNT] = {
    [SS_BEGIN] = "BEGIN IMMEDIATE",
    [SS_BEGIN_READ] = "BEGIN",
    [SS_COMMIT] = "COMMIT",
    [SS_ROLLBACK] = "ROLLBACK",
    [SS_SAVEPOINT] = "SAVEPOINT store_op",
    [SS_RELEASE] = "RELEASE store_op",
    [SS_ROLLBACK_TO] = "ROLLBACK TO store_op",
    [SS_USER_VERSION] = "PRAGMA user_version",
    /* The counter never decreases, and never falls behind the journal even
     * if an operator deleted the bead_state row by hand. */
    [SS_BEAD_BUMP] =
        "INSERT INTO bead_state (bead_id, attempts) "
        "VALUES (?1, COALESCE((SELECT MAX(attempt) FROM journal WHERE bead_id = ?1), 0) + 1) "
        "ON CONFLICT (bead_id) DO UPDATE SET attempts = MAX(attempts + 1, excluded.attempts)",
    [SS_ATTEMPT_INSERT] =
        "INSERT INTO journal (bead_id, attempt, dispatch_id, state, created_at) "
        "VALUES (?1, ?2, ?3, 'claiming', ?4)",
    [SS_ATTEMPT_MOVE] =
        "UPDATE journal SET state = ?1, "
        "job_id = COALESCE(?2, job_id), outcome = COALESCE(?3, outcome), "
        "detail = COALESCE(?4, detail), bead_updated_at = COALESCE(?5, bead_updated_at), "
        "claimed_at = COALESCE(?6, claimed_at), posting_at = COALESCE(?7, posting_at), "
        "dispatched_at = COALESCE(?8, dispatched_at), finished_at = COALESCE(?9, finished_at) "
        "WHERE id = ?10 AND state = ?11",
    [SS_ATTEMPT_STATE] = "SELECT state FROM journal WHERE id = ?1",
    [SS_ATTEMPT_GET] = "SELECT " STORE_ATTEMPT_COLUMNS " FROM journal WHERE id = ?1",
    [SS_ATTEMPT_LATEST] =
        "SELECT " STORE_ATTEMPT_COLUMNS " FROM journal WHERE bead_id = ?1 "
        "ORDER BY attempt DESC LIMIT 1",
    [SS_ATTEMPTS_ACTIVE] =
        "SELECT " STORE_ATTEMPT_COLUMNS " FROM journal WHERE " ACTIVE_WHERE
        " ORDER BY id",
    [SS_ATTEMPTS_ACTIVE_COUNT] = "SELECT COUNT(*) FROM journal WHERE " ACTIVE_WHERE,
    [SS_EVENT_INSERT] =
        "INSERT INTO event_log (at, bead_id, attempt_id, event, job_id, detail) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [SS_EVENT_FOR_ATTEMPT] =
        "INSERT INTO event_log (at, bead_id, attempt_id, event, job_id, detail) "
        "SELECT ?1, bead_id, id, ?2, job_id, ?3 FROM journal WHERE id = ?4",
    /* The number a bump gave, read after it: a RETURNING clause would
     * make SQLite build a temporary b-tree for every bump. */
    [SS_BEAD_ATTEMPTS] = "SELECT attempts FROM bead_state WHERE bead_id = ?1",
    [SS_BEAD_GET] =
        "SELECT attempts, next_retry_at, skip_noted_at FROM bead_state WHERE bead_id = ?1",
    [SS_BEAD_SET_RETRY] =
        "INSERT INTO bead_state (bead_id, next_retry_at) VALUES (?1, ?2) "
        "ON CONFLICT (bead_id) DO UPDATE SET next_retry_at = excluded.next_retry_at",
    [SS_BEAD_SET_SKIP] =
        "INSERT INTO bead_state (bead_id, skip_noted_at) VALUES (?1, ?2) "
        "ON CONFLICT (bead_id) DO UPDATE SET skip_noted_at = excluded.skip_noted_at",
    /* An attempt counts once its POST may have left (posting_at set) and the
     * agent did not refuse it; counting starts over after the bead was given
     * up on (a person who reopens it wants it tried again). */
    [SS_BEAD_ATTEMPTS_USED] =
        "SELECT COUNT(*) + COALESCE(SUM(prior_attempts), 0) FROM journal "
        "WHERE bead_id = ?1 AND posting_at IS NOT NULL "
        "AND state <> 'refused' AND id > (SELECT COALESCE(MAX(id), 0) FROM journal "
        "WHERE bead_id = ?1 AND state = 'gave_up')",
    /* An adopted attempt keeps the number the bead's notes give it, or the
     * next of ours if that is higher. */
    [SS_BEAD_BUMP_TO] =
        "INSERT INTO bead_state (bead_id, attempts) "
        "VALUES (?1, MAX(?2, COALESCE((SELECT MAX(attempt) FROM journal WHERE bead_id = ?1), 0) + 1)) "
        "ON CONFLICT (bead_id) DO UPDATE SET attempts = MAX(attempts + 1, excluded.attempts)",
    [SS_ATTEMPT_ADOPT] =
        "INSERT INTO journal (bead_id, attempt, dispatch_id, state, job_id, created_at, claimed_at, "
        "posting_at, dispatched_at, prior_attempts, detail) "
        "VALUES (?1, ?2, ?3, 'dispatched', ?4, ?5, ?5, ?5, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
    [SS_SETTING_GET] = "SELECT value FROM settings WHERE key = ?1",
    [SS_SETTING_SET] =
        "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
};

#ifdef BEADS_SCHED_TEST_HOOKS
static const struct migration *test_migrations;
static int test_migration_count;

/* Test seam: replaces the embedded migrations (NULL restores them). */
void store_test_set_migrations(const struct migration *m, int count)
{
    test_migrations = m;
    test_migration_count = m ? count : 0;
}

/* Test seam: runs SQL on the store's own connection (e.g. PRAGMA
 * max_page_count to simulate a full disk). Returns 0 or a BS_E* code. */
int store_test_exec(struct store *s, const char *sql)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : store_fail(s, "test_exec", rc);
}

/* Whether EXPLAIN (QUERY PLAN) of sql has needle in its opcode (detail)
 * column: 1, 0, or -1 on error. */
static int explain_has(sqlite3 *db, const char *sql, int query_plan, const char *needle)
{
    char *text = sqlite3_mprintf("EXPLAIN %s%s", query_plan ? "QUERY PLAN " : "", sql);
    sqlite3_stmt *st = NULL;
    int found = -1;
    if (text && sqlite3_prepare_v2(db, text, -1, &st, NULL) == SQLITE_OK) {
        int col = query_plan ? 3 : 1, rc;
        found = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const unsigned char *v = sqlite3_column_text(st, col);
            if (v && strstr((const char *)v, needle))
                found = 1;
        }
        if (rc != SQLITE_DONE)
            found = -1;
    }
    sqlite3_finalize(st);
    sqlite3_free(text);
    return found;
}

int store_test_explain(struct store *s, const char *part, int query_plan, const char *needle)
{
    int matched = 0, count = 0;
    for (int i = 0; i < SS_COUNT; i++) {
        if (!stmt_sql[i] || !strstr(stmt_sql[i], part))
            continue;
        matched++;
        int has = explain_has(s->db, stmt_sql[i], query_plan, needle);
        if (has < 0)
            return -1;
        count += has;
    }
    return matched ? count : -1;
}
#endif

/* The migrations this binary applies, in order (the embedded ones unless a
 * test replaced them). */
static const struct migration *migration_list(int *count)
{
#ifdef BEADS_SCHED_TEST_HOOKS
    if (test_migrations) {
        *count = test_migration_count;
        return test_migrations;
    }
#endif
    *count = store_migration_count;
    return store_migrations;
}

/* Newest schema version this binary carries. Never fails. */
int store_latest_version(void)
{
    int n;
    migration_list(&n);
    return n;
}

/* Translates a SQLite result code (primary or extended) into a BS_E* code.
 * Constraint violations are the caller's bad input (BS_EINVAL), not I/O. */
int store_map_rc(int rc)
{
    if (rc == SQLITE_IOERR_NOMEM)
        return BS_ENOMEM;
    switch (rc & 0xff) {
    case SQLITE_OK: return 0;
    case SQLITE_FULL: return BS_EFULL;
    case SQLITE_READONLY: return BS_ERDONLY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return BS_ECORRUPT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return BS_EBUSY;
    case SQLITE_NOMEM: return BS_ENOMEM;
    case SQLITE_CONSTRAINT: return BS_EINVAL;
    default: return BS_EIO;
    }
}

/* Logs the failure of op with SQLite's own text (read before anything else
 * can overwrite it) and returns the translated code. */
int store_fail(struct store *s, const char *op, int rc)
{
    log_error("store error", "op", op, "path", s->path, "sqlite",
              s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc), "code", sqlite3_errstr(rc));
    return store_map_rc(rc);
}

/* Returns statement id, preparing and caching it on first use. On failure
 * logs with op and returns NULL; the caller returns store_prepare_error. */
sqlite3_stmt *store_stmt(struct store *s, enum store_stmt id, const char *op)
{
    if (!s->stmt[id]) {
        int rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &s->stmt[id], NULL);
        if (rc != SQLITE_OK) {
            store_fail(s, op, rc);
            s->stmt[id] = NULL;
        }
    }
    return s->stmt[id];
}

/* Resets st and drops its bindings so the cached statement holds no locks
 * and no pointers into the caller's strings. NULL is ignored. */
void store_stmt_done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* The error for a statement that failed to prepare (already logged by
 * store_stmt): the translated SQLite code, never 0. */
int store_prepare_error(struct store *s)
{
    int rc = store_map_rc(sqlite3_errcode(s->db));
    return rc ? rc : BS_EIO;
}

/* Runs a cached statement that returns no rows. Returns 0 or the translated,
 * logged error. */
static int run_simple(struct store *s, enum store_stmt id, const char *op)
{
    sqlite3_stmt *st = store_stmt(s, id, op);
    if (!st)
        return store_prepare_error(s);
    int rc = sqlite3_step(st);
    int ret = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? 0 : store_fail(s, op, rc);
    store_stmt_done(st);
    return ret;
}

/* Rolls back whatever transaction the connection has open, if any. Used on
 * failure paths, so its own failure is only logged. */
static void rollback_quietly(struct store *s, const char *op)
{
    if (!sqlite3_get_autocommit(s->db))
        run_simple(s, SS_ROLLBACK, op);
}

/* Opens the unit of work of one writing function (see store_internal.h):
 * BS_ERDONLY on a READ handle, the saved error of a transaction SQLite already
 * rolled back, else 0 or the translated error of BEGIN IMMEDIATE/SAVEPOINT. */
int store_op_begin(struct store *s, const char *op)
{
    if (s->mode == STORE_OPEN_READ)
        return BS_ERDONLY;
    if (s->read_txn)
        return BS_EINVAL; /* no write inside a read snapshot */
    if (s->txn) {
        if (s->txn_lost)
            return s->txn_lost;
        return run_simple(s, SS_SAVEPOINT, op);
    }
    return run_simple(s, SS_BEGIN, op);
}

/* Closes the unit of work: keeps it if rc == 0 (returns the COMMIT/RELEASE
 * error if that fails, with everything rolled back), else discards it and
 * returns rc. Never leaves a savepoint or an implicit transaction open. */
int store_op_end(struct store *s, const char *op, int rc)
{
    if (s->txn) {
        if (rc == 0) {
            rc = run_simple(s, SS_RELEASE, op);
            if (rc == 0)
                return 0;
        }
        if (sqlite3_get_autocommit(s->db)) {
            /* SQLite already rolled the whole transaction back (disk full,
             * I/O error): everything since store_begin is gone. Remember it
             * so store_commit cannot report success. */
            if (!s->txn_lost)
                s->txn_lost = rc;
            return rc;
        }
        run_simple(s, SS_ROLLBACK_TO, op);
        run_simple(s, SS_RELEASE, op);
        return rc;
    }
    if (rc == 0) {
        rc = run_simple(s, SS_COMMIT, op);
        if (rc == 0)
            return 0;
    }
    rollback_quietly(s, op);
    return rc;
}

/* Opens an explicit transaction (BEGIN IMMEDIATE: takes the write lock now,
 * waiting up to the busy timeout). BS_EINVAL if one is already open,
 * BS_ERDONLY on a READ handle, else the translated SQLite error. */
int store_begin(struct store *s)
{
    if (s->mode == STORE_OPEN_READ)
        return BS_ERDONLY;
    if (s->txn || s->read_txn)
        return BS_EINVAL;
    int rc = run_simple(s, SS_BEGIN, "begin");
    if (rc == 0) {
        s->txn = true;
        s->txn_lost = 0;
    }
    return rc;
}

/* Commits the explicit transaction (one fsync with synchronous=FULL). On
 * failure nothing of the transaction is kept and the error is returned:
 * the error that made SQLite roll it back earlier, if one did, else the
 * COMMIT's own. BS_EINVAL if no transaction is open. Either way the
 * transaction is over. */
int store_commit(struct store *s)
{
    if (!s->txn)
        return BS_EINVAL;
    s->txn = false;
    if (s->txn_lost) {
        int lost = s->txn_lost;
        s->txn_lost = 0;
        log_error("store error", "op", "commit", "path", s->path, "error",
                  "transaction was rolled back by an earlier failure");
        rollback_quietly(s, "commit");
        return lost;
    }
    int rc = run_simple(s, SS_COMMIT, "commit");
    if (rc != 0)
        rollback_quietly(s, "commit");
    return rc;
}

/* One read snapshot for a run of reads (BEGIN, deferred: no lock until the
 * first read, then one WAL read lock for all of them instead of one per
 * statement). BS_EINVAL inside a transaction or snapshot. */
int store_read_begin(struct store *s)
{
    if (s->txn || s->read_txn)
        return BS_EINVAL;
    int rc = run_simple(s, SS_BEGIN_READ, "read_begin");
    if (rc == 0)
        s->read_txn = true;
    return rc;
}

/* Ends the snapshot (nothing to keep: COMMIT of a read, ROLLBACK if that
 * fails). No-op without one. */
void store_read_end(struct store *s)
{
    if (!s->read_txn)
        return;
    s->read_txn = false;
    if (run_simple(s, SS_COMMIT, "read_end") != 0)
        rollback_quietly(s, "read_end");
}

/* Discards the explicit transaction, if one is open. Never fails (a failed
 * ROLLBACK is logged; SQLite then has rolled back anyway or will on close). */
void store_rollback(struct store *s)
{
    if (!s->txn)
        return;
    s->txn = false;
    s->txn_lost = 0;
    rollback_quietly(s, "rollback");
}

/* PRAGMA user_version of the open store, or a negative BS_E* code if it
 * cannot be read. */
int store_schema_version(struct store *s)
{
    sqlite3_stmt *st = store_stmt(s, SS_USER_VERSION, "schema_version");
    if (!st)
        return store_prepare_error(s);
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : store_fail(s, "schema_version", rc);
    store_stmt_done(st);
    return ret;
}


/* malloc'd a followed by b; NULL when out of memory. */
static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 1);
    if (p) {
        memcpy(p, a, la);
        memcpy(p + la, b, lb + 1);
    }
    return p;
}

/* Takes the single-writer lock: flock(LOCK_EX|LOCK_NB) on "<path>.lock",
 * created 0644, and writes our pid into it for operators. On success the fd
 * stays in s->lock_fd until store_close. If another process (or another
 * handle in this one: flock is per open file description) holds it, returns
 * BS_EBUSY with err naming the store, the lock file and, if it reads, the
 * holder's pid. Other failures: BS_ERDONLY / BS_EIO with err. */
static int take_lock(struct store *s, char *err, size_t errlen)
{
    char *lock_path = concat(s->path, ".lock");
    if (!lock_path)
        return BS_ENOMEM;
    int ret = 0;
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        int e = errno;
        bs_set_err(err, errlen, "store %s: cannot open lock file %s: %s", s->path, lock_path,
                strerror(e));
        ret = (e == EROFS || e == EACCES || e == EPERM) ? BS_ERDONLY : BS_EIO;
        goto out;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            char pid[32] = "";
            ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
            long holder = n > 0 ? strtol(pid, NULL, 10) : 0;
            if (holder > 0)
                bs_set_err(err, errlen,
                        "store %s is already in use by another beads-sched process "
                        "(lock %s, pid %ld)", s->path, lock_path, holder);
            else
                bs_set_err(err, errlen,
                        "store %s is already in use by another beads-sched process (lock %s)",
                        s->path, lock_path);
            ret = BS_EBUSY;
        } else {
            bs_set_err(err, errlen, "store %s: cannot lock %s: %s", s->path, lock_path, strerror(e));
            ret = BS_EIO;
        }
        close(fd);
        goto out;
    }
    /* Best effort: the pid is only a hint for the "already in use" message. */
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        log_warn("store lock pid not written", "lock", lock_path, "error", strerror(errno));
    s->lock_fd = fd;
out:
    free(lock_path);
    return ret;
}

/* Percent-encodes path into a "file:" URI for sqlite3_open_v2 with
 * SQLITE_OPEN_URI, followed by query (already encoded). malloc'd; NULL when
 * out of memory. */
static char *file_uri(const char *path, const char *query)
{
    size_t n = strlen(path), q = strlen(query);
    /* "file:" + "//" (empty authority, so a path starting with "//" is not
     * taken for a host name) for absolute paths. */
    const char *scheme = path[0] == '/' ? "file://" : "file:";
    size_t ls = strlen(scheme);
    char *uri = malloc(ls + 3 * n + q + 1);
    if (!uri)
        return NULL;
    char *o = uri;
    memcpy(o, scheme, ls);
    o += ls;
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '/' || *p == '.' || *p == '-' || *p == '_' || *p == '~') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    memcpy(o, query, q + 1);
    return uri;
}

/* True when "<path><suffix>" exists (or cannot be ruled out). */
static bool side_file_exists(const char *path, const char *suffix)
{
    char *p = concat(path, suffix);
    if (!p)
        return true;
    struct stat st;
    bool exists = lstat(p, &st) == 0 || errno != ENOENT;
    free(p);
    return exists;
}

/* Checks an existing store without changing a byte of it: PRAGMA
 * quick_check and user_version on a read-only connection. When no -wal or
 * -journal file exists the main file is the whole database, and the
 * connection is opened immutable so SQLite does not create -wal/-shm files
 * either; otherwise it must read the WAL and opens read-only with normal
 * locking (which may create a -shm index, never touching the main file).
 * Returns 0 with *version set, BS_ECORRUPT (not a database, or quick_check
 * found damage), BS_ENEWER, or another translated error; err says which. */
static int check_existing(struct store *s, int *version, char *err, size_t errlen)
{
    bool plain = !side_file_exists(s->path, "-wal") && !side_file_exists(s->path, "-journal");
    char *uri = file_uri(s->path, plain ? "?mode=ro&immutable=1" : "?mode=ro");
    if (!uri)
        return BS_ENOMEM;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int ret = 0;
    int rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                             NULL);
    free(uri);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
        /* Writers check the whole file first; a read-only open (status,
         * history, explain) cannot damage it and skips the full scan, which
         * takes about a second per 100 MB. */
        if (s->mode != STORE_OPEN_READ)
            rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL);
    }
    if (rc == SQLITE_OK && st) {
        /* One row "ok", or up to 100 rows describing damage. */
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *r = (const char *)sqlite3_column_text(st, 0);
            if (!r || strcmp(r, "ok") != 0) {
                log_error("store error", "op", "quick_check", "path", s->path, "sqlite", r);
                bs_set_err(err, errlen,
                        "store %s failed its integrity check (PRAGMA quick_check: %s); "
                        "refusing to use it, the file was left unchanged",
                        s->path, r ? r : "?");
                ret = BS_ECORRUPT;
                goto out;
            }
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *version = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        }
    }
    if (rc != SQLITE_OK) {
        const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        log_error("store error", "op", "check", "path", s->path, "sqlite", msg);
        ret = store_map_rc(rc);
        if (ret == BS_ECORRUPT)
            bs_set_err(err, errlen,
                    "store %s is corrupt or not a beads-sched store (%s); "
                    "refusing to use it, the file was left unchanged", s->path, msg);
        else
            bs_set_err(err, errlen, "store %s: cannot check it: %s", s->path, msg);
        goto out;
    }
    int latest = store_latest_version();
    if (*version > latest) {
        bs_set_err(err, errlen,
                "store %s is at schema version %d, newer than this binary's %d; "
                "upgrade beads-sched", s->path, *version, latest);
        ret = BS_ENEWER;
    }
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ret;
}

/* Runs one pragma that may return a row; stores its first column (text) in
 * out[outlen] if out is not NULL. Returns the SQLite code. */
static int pragma(sqlite3 *db, const char *sql, char *out, size_t outlen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && out) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        snprintf(out, outlen, "%s", v ? v : "");
    }
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        rc = SQLITE_OK;
    sqlite3_finalize(st);
    return rc;
}

/* A PRAGMA (named op) failed with rc: logged, err set. Returns the
 * translated error. */
static int pragma_failed(struct store *s, const char *op, int rc, char *err, size_t errlen)
{
    int ret = store_fail(s, op, rc);
    bs_set_err(err, errlen, "store %s: PRAGMA %s failed: %s", s->path, op, sqlite3_errmsg(s->db));
    return ret;
}

/* Runs a PRAGMA that sets something (sql; op names it in errors). 0 or
 * pragma_failed's error. */
static int set_pragma(struct store *s, const char *op, const char *sql, char *err, size_t errlen)
{
    int rc = pragma(s->db, sql, NULL, 0);
    return rc == SQLITE_OK ? 0 : pragma_failed(s, op, rc, err, errlen);
}

/* Opens s->db: read-only for READ, else read-write (creating the file) in
 * WAL mode with synchronous=FULL and foreign keys on. Returns 0 or a
 * translated error with err set; s->db may be set on failure (store_close
 * frees it). */
static int open_connection(struct store *s, char *err, size_t errlen)
{
    int flags = SQLITE_OPEN_NOMUTEX |
                (s->mode == STORE_OPEN_READ ? SQLITE_OPEN_READONLY
                                            : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(s->path, &s->db, flags, NULL);
    if (rc != SQLITE_OK) {
        int ret = store_fail(s, "open", rc);
        bs_set_err(err, errlen, "store %s: cannot open: %s",
                s->path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        return ret;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
    if (s->mode == STORE_OPEN_READ)
        return 0;
    if (sqlite3_db_readonly(s->db, "main") == 1) {
        bs_set_err(err, errlen, "store %s is read-only (file or file system permissions)", s->path);
        return BS_ERDONLY;
    }
    char mode[16] = "";
    rc = pragma(s->db, "PRAGMA journal_mode = WAL", mode, sizeof mode);
    if (rc != SQLITE_OK)
        return pragma_failed(s, "journal_mode", rc, err, errlen);
    if (strcmp(mode, "wal") != 0) {
        bs_set_err(err, errlen, "store %s: cannot switch to WAL mode (journal_mode is %s)", s->path,
                mode);
        return BS_EIO;
    }
    int ret = set_pragma(s, "synchronous", "PRAGMA synchronous = FULL", err, errlen);
    return ret ? ret : set_pragma(s, "foreign_keys", "PRAGMA foreign_keys = ON", err, errlen);
}

/* How many rows PRAGMA foreign_key_check finds (references to no row), or
 * -1 with *rc set on error. */
static long foreign_key_breaks(sqlite3 *db, int *rc)
{
    sqlite3_stmt *st = NULL;
    long n = 0;
    *rc = sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL);
    while (*rc == SQLITE_OK && (*rc = sqlite3_step(st)) == SQLITE_ROW) {
        n++;
        *rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (*rc != SQLITE_DONE)
        return -1;
    *rc = SQLITE_OK;
    return n;
}

/* One migration's SQL and its PRAGMA user_version, inside the caller's
 * transaction, then the foreign keys (off while migrations run): a
 * migration may not add a reference to no row. References already broken
 * (an operator's DELETE in the sqlite3 shell, which has foreign keys off)
 * are left as they are: they would otherwise block every upgrade.
 * SQLITE_CONSTRAINT_FOREIGNKEY when the migration broke one. */
static int apply_migration(struct store *s, const struct migration *m)
{
    char bump[48];
    snprintf(bump, sizeof bump, "PRAGMA user_version = %d", m->version);
    int rc;
    long before = foreign_key_breaks(s->db, &rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, m->sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, bump, NULL, NULL, NULL);
    long after = rc == SQLITE_OK ? foreign_key_breaks(s->db, &rc) : -1;
    if (rc == SQLITE_OK && after > before) {
        log_error("store migration would break a foreign key", "path", s->path, "migration", m->name,
                  "broken_before", LOG_INT(before), "broken_after", LOG_INT(after));
        return SQLITE_CONSTRAINT_FOREIGNKEY;
    }
    if (rc == SQLITE_OK && before > 0)
        log_warn("store has references to no row (left as they are; PRAGMA foreign_key_check lists them)",
                 "path", s->path, "rows", LOG_INT(before));
    return rc;
}

static int migrate_steps(struct store *s, char *err, size_t errlen);

/* Applies the missing migrations in order, each in its own BEGIN IMMEDIATE
 * transaction together with its PRAGMA user_version, so a crash or failure
 * leaves the store at the previous version. The version is re-read inside
 * each transaction: two processes migrating at once apply each step once.
 * Foreign keys are off while they run (a migration that rebuilds a table
 * drops the old one, which with them on would cascade into its children)
 * and each migration's result is checked with PRAGMA foreign_key_check
 * before it commits. Returns 0, BS_ENEWER, or a translated error, with err
 * set. */
static int migrate(struct store *s, char *err, size_t errlen)
{
    int ret = set_pragma(s, "foreign_keys", "PRAGMA foreign_keys = OFF", err, errlen);
    if (ret != 0)
        return ret;
    ret = migrate_steps(s, err, errlen);
    /* Back on whatever happened; a failure here is reported unless the
     * migrations' own came first (err already says why). */
    char on_err[256];
    int on = set_pragma(s, "foreign_keys", "PRAGMA foreign_keys = ON", on_err, sizeof on_err);
    if (on != 0 && ret == 0) {
        bs_set_err(err, errlen, "%s", on_err);
        ret = on;
    }
    return ret;
}

/* migrate's loop: one migration per transaction until the store is at
 * this binary's version. */
static int migrate_steps(struct store *s, char *err, size_t errlen)
{
    int count;
    const struct migration *list = migration_list(&count);
    int version = store_schema_version(s);
    if (version < 0) {
        bs_set_err(err, errlen, "store %s: cannot read schema version: %s", s->path,
                sqlite3_errmsg(s->db));
        return version;
    }
    while (version != count) {
        int rc = run_simple(s, SS_BEGIN, "migrate");
        if (rc != 0) {
            bs_set_err(err, errlen, "store %s: cannot start migration: %s", s->path,
                    sqlite3_errmsg(s->db));
            return rc;
        }
        version = store_schema_version(s);
        if (version < 0 || version >= count) {
            rollback_quietly(s, "migrate");
            if (version < 0) {
                bs_set_err(err, errlen, "store %s: cannot read schema version", s->path);
                return version;
            }
            if (version > count) {
                bs_set_err(err, errlen,
                        "store %s is at schema version %d, newer than this binary's %d; "
                        "upgrade beads-sched", s->path, version, count);
                return BS_ENEWER;
            }
            break;
        }
        const struct migration *m = &list[version];
        if (m->version != version + 1) { /* defensive: the generator guarantees it */
            rollback_quietly(s, "migrate");
            bs_set_err(err, errlen, "migration %s has version %d, expected %d", m->name, m->version,
                    version + 1);
            return BS_EINVAL;
        }
        rc = apply_migration(s, m);
        if (rc != SQLITE_OK) {
            int ret = rc == SQLITE_CONSTRAINT_FOREIGNKEY ? store_map_rc(rc) : store_fail(s, m->name, rc);
            bs_set_err(err, errlen, "store %s: migration %s failed: %s; store left at version %d",
                    s->path, m->name,
                    rc == SQLITE_CONSTRAINT_FOREIGNKEY ? "it would break a foreign key"
                                                       : sqlite3_errmsg(s->db),
                    version);
            rollback_quietly(s, "migrate");
            return ret;
        }
        rc = run_simple(s, SS_COMMIT, "migrate");
        if (rc != 0) {
            bs_set_err(err, errlen, "store %s: cannot commit migration %s: %s", s->path, m->name,
                    sqlite3_errmsg(s->db));
            rollback_quietly(s, "migrate");
            return rc;
        }
        log_info("store migrated", "path", s->path, "version", LOG_INT(m->version), "migration",
                 m->name);
        version = m->version;
    }
    return 0;
}

/* See store.h. Order matters: lock (DAEMON), then the read-only checks of an
 * existing file, and only then a read-write connection, WAL and migrations:
 * a store that is locked, corrupt or newer is never written to. */
int store_open(struct store **out, const char *path, enum store_open_mode mode, char *err,
               size_t errlen)
{
    *out = NULL;
    bs_set_err(err, errlen, "%s", "");
    if (!path || !*path || (mode != STORE_OPEN_READ && mode != STORE_OPEN_MIGRATE &&
                            mode != STORE_OPEN_DAEMON)) {
        bs_set_err(err, errlen, "store: invalid path or open mode");
        return BS_EINVAL;
    }
    struct store *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        bs_set_err(err, errlen, "store %s: out of memory", path);
        return BS_ENOMEM;
    }
    s->mode = mode;
    s->lock_fd = -1;
    int rc = 0;
    if (mode == STORE_OPEN_DAEMON && (rc = take_lock(s, err, errlen)) != 0)
        goto fail;

    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        if (e != ENOENT || mode == STORE_OPEN_READ) {
            bs_set_err(err, errlen, "store %s: %s", path,
                    e == ENOENT ? "no such file (run migrate first)" : strerror(e));
            rc = e == ENOENT ? BS_ENOTFOUND : BS_EIO;
            goto fail;
        }
    } else {
        int version = 0;
        if ((rc = check_existing(s, &version, err, errlen)) != 0)
            goto fail;
    }
    if ((rc = open_connection(s, err, errlen)) != 0)
        goto fail;
    if (mode != STORE_OPEN_READ && (rc = migrate(s, err, errlen)) != 0)
        goto fail;
    /* The file now exists (SQLite created it if needed) and, in DAEMON mode,
     * nobody else writes it: what sits at path is the file SQLite opened. */
    struct stat file;
    if (stat(path, &file) == 0) {
        s->file_dev = file.st_dev;
        s->file_ino = file.st_ino;
    }
    log_debug("store open", "path", path, "mode",
              mode == STORE_OPEN_READ ? "read" : mode == STORE_OPEN_MIGRATE ? "migrate" : "daemon",
              "version", LOG_INT(store_schema_version(s)));
    *out = s;
    return 0;
fail:
    store_close(s);
    return rc;
}

/* Rolls back an open explicit transaction, finalizes the cached statements,
 * closes the connection (the last one checkpoints and removes the WAL) and
 * only then releases the single-writer lock. NULL is ignored. */
void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->db) {
        if (!sqlite3_get_autocommit(s->db))
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        for (int i = 0; i < SS_COUNT; i++)
            sqlite3_finalize(s->stmt[i]);
        int rc = sqlite3_close(s->db);
        if (rc != SQLITE_OK) { /* defensive: every statement was finalized above */
            log_error("store error", "op", "close", "path", s->path, "sqlite", sqlite3_errstr(rc));
            sqlite3_close_v2(s->db);
        }
    }
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s->path);
    free(s);
}

/* Copies src[0..n) into dst[cap] NUL-terminated, cut by text_utf8_prefix
 * when it does not fit; NULL src gives "". Does nothing when cap is 0. */
void store_copy_text(char *dst, size_t cap, const char *src, size_t n)
{
    if (cap == 0)
        return;
    if (!src)
        n = 0;
    size_t k = text_utf8_prefix(src, n, cap - 1);
    if (k)
        memcpy(dst, src, k);
    dst[k] = '\0';
}

int store_file_check(const struct store *s, char *why, size_t len)
{
    struct stat st;
    if (stat(s->path, &st) != 0) {
        int e = errno;
        bs_set_err(why, len, "store %s: %s (deleted or moved while open)", s->path, strerror(e));
        return BS_ENOTFOUND;
    }
    if (st.st_dev != s->file_dev || st.st_ino != s->file_ino) {
        bs_set_err(why, len, "store %s: the file at this path is no longer the one opened "
                   "(replaced while open)", s->path);
        return BS_ESTATE;
    }
    return 0;
}

int64_t store_file_bytes(const char *path)
{
    struct stat st;
    int64_t total = stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
    char *wal = concat(path, "-wal");
    if (wal && stat(wal, &st) == 0)
        total += (int64_t)st.st_size;
    free(wal);
    return total;
}
