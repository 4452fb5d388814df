#ifndef BS_REAP_H
#define BS_REAP_H
/* The reaper and start-up recovery: reconcile every attempt the store has
 * in flight with Dolt (bead state) and the agent (job state).
 *
 * A pass runs in three steps, never interleaved with a dispatch cycle (the
 * runner serialises them):
 *   1. load (worker): the store's non-terminal attempts, their beads read in
 *      chunks, and the agent-assigned in_progress beads the store does not
 *      track (orphans);
 *   2. jobs (loop): GET /jobs/{id} for every dispatched attempt whose bead is
 *      still in progress, at most REAP_CONCURRENCY at once;
 *   3. settle (worker, settle.c): decide per attempt and write. Every Dolt
 *      write is a compare-and-swap on the status and updated_at read in
 *      step 1, so a bead closed or moved meanwhile is never overwritten; a
 *      lost race is recorded and the next pass re-reads. Dolt is written
 *      before the store: a crash in between leaves a state the next pass
 *      resolves.
 * Start-up recovery is the same pass before the first cycle; it also
 * resolves the states only a crash leaves behind (claiming, claimed): the
 * POSTs still owed come back to the runner, which hands them to the poster.
 *
 * Threads: reaper_* on the loop thread; steps 1 and 3 on the Dolt worker. */
#include "owed.h"
#include "poster.h"
#include "session.h"
#include "throttle.h"

struct reap_hooks {
    /* The pass ended (rc 0: it ran to the end). owed: claimed attempts whose
     * POST is still owed, journaled as posting (the caller sends them). */
    void (*done)(void *arg, int recovery, int rc, struct pick *owed);
    void *arg;
};

struct reaper;
int reaper_init(struct reaper **out, struct session *s, struct throttle *t, struct owed *owed,
                const struct reap_hooks *hooks);
void reaper_free(struct reaper *r);
/* Starts a pass (recovery: the first after a start or a take-over). 0 when
 * started (hooks.done follows), else it could not be. */
int reaper_start(struct reaper *r, int recovery);
#endif
