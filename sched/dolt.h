#ifndef BS_DOLT_H
#define BS_DOLT_H
/* The Dolt (MySQL protocol) client. Only dolt.c includes mysql.h.
 *
 * Two layers:
 *  - struct dolt_conn: one blocking connection, used from one thread at a
 *    time. Reconnects by itself (capped exponential backoff) when the server
 *    went away; every reconnect loses session state, so callers never keep
 *    transactions across calls that may fail with BS_ECONN.
 *  - struct dolt: a worker thread that owns one dolt_conn and runs submitted
 *    work items in order; completions are delivered on the libuv loop thread
 *    through a uv_async_t. The loop thread never blocks on the database.
 *
 * Errors: 0 or negative BS_E* (errors.h). MySQL error 1213 or SQLSTATE 40001
 * -> BS_ECONFLICT (lost a race); connection errors (2002, 2003, 2006, 2013,
 * 2055, ...) -> BS_ECONN; anything else -> BS_EIO. The MySQL errno and text
 * of the last failure are kept on the connection (dolt_conn_errno,
 * dolt_conn_error) and logged at this boundary. */
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct dolt_options {
    const char *host;          /* NULL or "" with socket set */
    unsigned port;             /* 0 = 3306 */
    const char *socket;        /* Unix socket path or NULL */
    const char *user;
    const char *password;      /* may be NULL; never logged */
    const char *database;
    int tls;                   /* 0 = off (MYSQL_OPT_SSL_ENFORCE off), 1 = require */
    const char *tls_ca;        /* optional CA file, implies TLS and verification */
    unsigned connect_timeout_s; /* 0 = 5 */
    unsigned read_timeout_s;    /* 0 = 30 */
    unsigned backoff_min_ms;    /* 0 = 100 */
    unsigned backoff_max_ms;    /* 0 = 30000 */
};

struct dolt_conn;

/* Opens a connection; returns BS_ECONN if the server cannot be reached or
 * refuses the login (the handle is still returned in *out so a later call
 * can reconnect; dolt_conn_errno tells why), other errors for bad options
 * (user missing, neither host nor socket) with *out NULL. err gets one line
 * (no password). The options are copied. Each new session runs
 * SET time_zone = '+00:00' and a strict sql_mode. */
int dolt_conn_open(struct dolt_conn **out, const struct dolt_options *opts, char *err, size_t errlen);
void dolt_conn_close(struct dolt_conn *c);

/* Makes sure the connection is up, reconnecting once if it is down and the
 * backoff delay has passed; returns 0 or BS_ECONN without sleeping. A
 * session the server has closed (restart, kill, idle cutoff) is noticed
 * here without a round trip. The first attempt after losing a session is
 * immediate; failed attempts wait backoff_min_ms doubling up to
 * backoff_max_ms. */
int dolt_conn_ensure(struct dolt_conn *c);
/* Consecutive failed connection attempts (0 when connected). */
unsigned dolt_conn_failures(const struct dolt_conn *c);
/* Milliseconds until the next reconnect attempt is allowed (0 = now). */
uint64_t dolt_conn_retry_in_ms(const struct dolt_conn *c);
/* Incremented every time a new session is established (first connect = 1). */
uint64_t dolt_conn_generation(const struct dolt_conn *c);

unsigned dolt_conn_errno(const struct dolt_conn *c);
const char *dolt_conn_error(const struct dolt_conn *c);

/* Statement parameters and result values. Text is passed with a length so
 * embedded NULs and quotes travel untouched; every statement with
 * parameters is a server-side prepared statement. */
enum dolt_type { DT_NULL, DT_TEXT, DT_INT };
struct dolt_value {
    enum dolt_type type;
    const char *text;   /* DT_TEXT */
    size_t len;         /* DT_TEXT */
    int64_t i;          /* DT_INT */
};
#define DOLT_TEXT(s) ((struct dolt_value){.type = DT_TEXT, .text = (s), .len = strlen(s)})
#define DOLT_INT(v) ((struct dolt_value){.type = DT_INT, .i = (int64_t)(v)})
#define DOLT_NULL ((struct dolt_value){.type = DT_NULL})

/* One result row: values as text (NULL pointer for SQL NULL) with lengths. */
struct dolt_row {
    unsigned ncols;
    const char *const *vals;
    const unsigned long *lens;
    const char *const *names; /* column names */
};
/* Return non-zero to stop fetching (the rest is drained); that value is returned. */
typedef int (*dolt_row_cb)(const struct dolt_row *row, void *arg);

/* Runs one statement. With nparams > 0 it is prepared server-side (cached per
 * connection by SQL text) and executed with params; rows (if any) go to
 * on_row; *affected (may be NULL) gets the affected-row count (the row count
 * for a SELECT). Rows of every result set (CALL) go to on_row; all result
 * sets are always drained. Values are NUL-terminated as a convenience; lens
 * are exact. row and its arrays are valid only during the callback.
 *
 * Lost-transaction guard: after dolt_begin, if the session is replaced
 * (reconnect), dolt_query/dolt_exec/dolt_commit/dolt_version_commit return
 * BS_ECONN without running anything until dolt_rollback or dolt_begin, so a
 * careless caller cannot commit half a transaction in autocommit. */
int dolt_query(struct dolt_conn *c, const char *sql, const struct dolt_value *params,
               size_t nparams, dolt_row_cb on_row, void *arg, uint64_t *affected);
/* Runs SQL without parameters (text protocol), draining every result set,
 * including those of CALL. */
int dolt_exec(struct dolt_conn *c, const char *sql);

int dolt_begin(struct dolt_conn *c);    /* START TRANSACTION */
int dolt_commit(struct dolt_conn *c);   /* COMMIT; the transaction is over either way */
/* ROLLBACK, errors ignored but logged; returns 0. Never reconnects; when
 * ROLLBACK fails the session is dropped, which rolls back for sure. */
int dolt_rollback(struct dolt_conn *c);

/* True when the connected server has dolt_version() (cached per session):
 * returns 1, 0, or a negative BS_E* when it could not be asked (test < 0
 * first; an error is truthy, which fails safe towards "is Dolt"). */
int dolt_is_dolt(struct dolt_conn *c);
/* Stages tables and makes a Dolt commit: CALL DOLT_ADD(t) for each table,
 * then CALL DOLT_COMMIT('-m', message, '--author', author). "nothing to
 * commit" (error 1105 with that text) counts as success. Also ends the SQL
 * transaction (with COMMIT when there was nothing to commit). The CALLs use
 * the text protocol with escaped literals. An author not of the form
 * "Name <email>" is BS_EINVAL before anything runs. On failure the
 * transaction may still be open: call dolt_rollback. */
int dolt_version_commit(struct dolt_conn *c, const char *const *tables, size_t ntables,
                        const char *message, const char *author);

/* ---- worker thread ---- */
struct dolt;

/* Runs on the worker thread with the worker's connection. The return value
 * is passed to the done callback. */
typedef int (*dolt_work_fn)(struct dolt_conn *c, void *arg);
/* Runs on the loop thread after the work item finished (or was cancelled by
 * dolt_stop, with rc BS_ECONN... never: see dolt_stop). */
typedef void (*dolt_done_fn)(int rc, void *arg);

/* Starts the worker thread; the connection is opened lazily on the worker
 * (options are copied and validated here: BS_EINVAL). When the connection
 * cannot be set up at all (out of memory), work is not called and done gets
 * that error. The worker thread blocks all signals. */
int dolt_start(struct dolt **out, uv_loop_t *loop, const struct dolt_options *opts);
/* Queues a work item; returns BS_EINVAL after dolt_stop. On success done is
 * called exactly once, later, on the loop thread. */
int dolt_submit(struct dolt *d, dolt_work_fn work, dolt_done_fn done, void *arg);
/* Number of items submitted whose done callback has not run yet (queued,
 * running, or finished and about to be delivered). Loop thread only. */
int dolt_pending(const struct dolt *d);
/* Stops taking work, lets the queued items run to completion (their done
 * callbacks still fire on the loop), joins the thread, closes the
 * connection and the async handle; on_closed (may be NULL) runs when all of
 * that is done and the struct is freed. Returns at once: the waiting
 * happens on the worker, never on the loop thread; the loop must keep
 * running until on_closed. A second call is ignored. */
void dolt_stop(struct dolt *d, void (*on_closed)(void *arg), void *arg);

/* Releases the client library's global state (mysql_library_end). Call once
 * at process exit after every connection and worker is closed; the library
 * is initialised on first use (dolt_conn_open, dolt_start). */
void dolt_library_end(void);
#endif
