#ifndef BS_SESSION_H
#define BS_SESSION_H
/* What every step of the scheduler shares: the configuration and the
 * handles (read-only after start), the Dolt session's schema and writer
 * (Dolt worker thread), and the flags other threads read (atomics).
 *
 * Threads: session_* functions marked "worker" run on the Dolt worker (the
 * only thread that touches the store and Dolt while the daemon runs);
 * "loop" on the libuv loop thread; "any" from any thread. */
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "beads.h"
#include "config.h"
#include "dolt.h"
#include "http.h"
#include "store.h"

struct session {
    const struct config *cfg;
    struct store *store;        /* NULL in dry-run without a store file */
    struct dolt *dolt;
    /* The dispatched notes' own worker and connection (NULL in a dry run,
     * which writes none). */
    struct dolt *notes;
    struct http_client *http;
    int dry_run;                /* print what would be dispatched; write nothing */
    /* Called on the worker before each batch of claims and each reap
     * pass's writes, and on the notes worker before each batch of notes
     * (NULL: always allowed): non-zero stops the batch, which writes
     * nothing. The single-active lock's check (lease_check). */
    int (*may_write)(struct dolt_conn *c, void *arg);
    void *may_write_arg;

    /* Worker: the beads schema as detected, and how writes are made. */
    struct beads_schema schema;
    struct beads_writer writer;
    char author[600];

    /* Set on the loop, read on the worker and the admin thread. */
    _Atomic int stopping;
    /* Loop: whether Dolt answered the last request; read by the admin thread. */
    _Atomic int dolt_ok;        /* -1 before the first answer */
    _Atomic int64_t dolt_ok_ms; /* when it last answered (0 = never) */
    /* Set on the worker when a write lost its connection outside a step's
     * own result (a note); the loop notes Dolt unreachable at its next tick. */
    _Atomic int dolt_lost;
};

void session_init(struct session *s, const struct config *cfg);

/* Worker: detects the schema (again after a reconnect) and whether this
 * session's writes end with a Dolt commit. */
int session_refresh(struct session *s, struct dolt_conn *c);
/* The same for any connection's own copy (the notes worker's): schema and
 * w->dolt_commit; w's actor and author are left as they are. */
int session_writer_refresh(const struct config *cfg, struct dolt_conn *c, struct beads_schema *schema,
                           struct beads_writer *w);

/* Worker: a write to one bead failed (any error but a lost race): logged,
 * counted, and recorded in the store's history as "write_failed". It is
 * that bead's problem only: callers go on with the others. c (may be NULL)
 * gives the server's error text. */
void session_write_failed(struct session *s, struct dolt_conn *c, const char *bead_id,
                          int64_t attempt_id, const char *what, int rc);
/* The same with the server's error text given (NULL: none), for a write
 * made on another connection. */
void session_write_failed_text(struct session *s, const char *server_error, const char *bead_id,
                               int64_t attempt_id, const char *what, int rc);

/* Loop: Dolt answered (rc 0) or not: the dolt_up gauge, the log on change,
 * readiness. */
void session_note_dolt(struct session *s, int rc);

/* Any: counts a Dolt error by kind in dolt_errors_total. */
void session_count_dolt_error(int rc);

/* Worker: sets the in-flight gauge from the store. */
void session_in_flight_gauge(struct session *s);

/* Worker: dispatching paused (config or the store's flag)? */
int session_paused(struct session *s);

/* Worker: appends a note to a bead in progress and assigned to us. */
int session_add_note(struct session *s, struct dolt_conn *c, const char *bead_id, const char *note);

/* Any: stop starting work. */
static inline int session_stopping(const struct session *s) { return atomic_load(&s->stopping); }
#endif
