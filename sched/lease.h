#ifndef BS_LEASE_H
#define BS_LEASE_H
/* Single active instance per (database, assignee): a named lock
 * (GET_LOCK, CONTRACTS.md section 5) held on a Dolt connection kept only for
 * that. The server releases the lock the moment that connection ends, so a
 * killed or cut-off instance gives way without anyone's help.
 *
 * An instance holding the lock is active: it dispatches and reaps. Without
 * it, it is a standby: it writes nothing to Dolt and asks for the lock again
 * every interval. The lock's connection is a second struct dolt (its own
 * worker thread), so a long dispatch cycle never delays the lock's upkeep
 * and the upkeep never queues behind a cycle.
 *
 * Threads: lease_start, lease_stop and the on_change callback run on the
 * loop thread; lease_active, lease_since_ms and lease_dolt_ok_ms are atomic
 * reads for any thread; lease_check runs on whichever thread owns the
 * connection it is given (the Dolt worker, and the notes worker before each
 * batch of dispatched notes). */
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dolt.h"

/* MySQL and MariaDB refuse lock names over 64 characters. */
#define LEASE_NAME_MAX 64

/* The lock name for a database and an assignee:
 * "beads-sched/<database>/<assignee>", or, when that is longer than
 * LEASE_NAME_MAX, "beads-sched/#" followed by a 64-bit hash of
 * "<database>/<assignee>" in hex. buf needs LEASE_NAME_MAX + 1 bytes. */
void lease_name(const char *database, const char *assignee, char *buf, size_t len);

struct lease;

/* Called on the loop thread when the role changes (active = 1 or 0). */
typedef void (*lease_change_fn)(void *arg, int active);

/* Starts the lock's connection and asks for the lock at once, then every
 * interval_ms. Returns 0, or BS_EINVAL / BS_ENOMEM (nothing started). */
int lease_start(struct lease **out, uv_loop_t *loop, const struct dolt_options *opts,
                const char *name, uint64_t interval_ms, lease_change_fn on_change, void *arg);

/* 1 while this instance holds the lock. Any thread. NULL reads as active
 * (no lease: the instance is alone by configuration). */
int lease_active(const struct lease *l);
/* When the current role began (ms since the epoch; 0 before the first
 * answer). Any thread. */
int64_t lease_since_ms(const struct lease *l);
/* When the lock's connection last got an answer from Dolt (ms; 0 = never),
 * and whether the last request got one. Any thread: a standby's readiness
 * rests on these, since it sends nothing else to Dolt. */
int64_t lease_dolt_ok_ms(const struct lease *l);
int lease_dolt_ok(const struct lease *l);

/* The guard before a batch of writes on another connection c: 0 when the
 * lock is still held by this instance's lock session as the server sees it
 * right now (IS_USED_LOCK), else BS_ESTATE (another session holds it, or
 * nobody does) or the query's error. A lost lock also turns the role to
 * standby at once. NULL l: 0. */
int lease_check(struct lease *l, struct dolt_conn *c);

/* Releases the lock (RELEASE_LOCK, then the connection closes), stops the
 * timer and the worker; on_closed (may be NULL) runs on the loop thread
 * once everything is closed and freed. NULL l: on_closed is not called. */
void lease_stop(struct lease *l, void (*on_closed)(void *arg), void *arg);
#endif
