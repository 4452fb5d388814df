#ifndef BS_DISPATCH_H
#define BS_DISPATCH_H
/* A dispatch cycle: fills the agent's free slots with ready beads,
 * following the journal protocol (DESIGN.md): the token check while the
 * gate is not open, GET /health, then on the Dolt worker the candidates,
 * claiming -> Dolt CAS -> claimed -> posting, then the poster sends the
 * POSTs and journals their results.
 *
 * Threads: dispatcher_* run on the loop thread; the selection and the
 * claims run on the Dolt worker. The runner starts cycles, one at a time. */
#include <stdint.h>

#include "poster.h"
#include "session.h"
#include "throttle.h"

/* Beads one cycle claims and posts at most; with more free slots the next
 * cycle follows at once. Bounds memory: each bead in flight holds its
 * request (the prompt carries up to 64 KiB per field). */
#define MAX_PICKS_PER_CYCLE 128

/* How a cycle ended, for the runner. */
struct cycle_report {
    int ok;             /* Dolt and the agent answered; results journaled */
    int selected;       /* it looked at Dolt (DISPATCH_INTERVAL counts from it) */
    int continues;      /* capped with slots left: the next cycle follows at once */
    int backlog;        /* every free slot taken: more beads may be waiting */
    int64_t retry_due;  /* a skipped bead's backoff ends then (0: none) */
};

struct dispatch_hooks {
    void (*done)(void *arg, const struct cycle_report *r);
    void *arg;
};

struct dispatcher;
int dispatcher_init(struct dispatcher **out, struct session *s, struct throttle *t, struct poster *p,
                    const struct dispatch_hooks *hooks);
void dispatcher_free(struct dispatcher *d);
/* Starts a cycle. recheck: started only because capacity or the agent may
 * have come back (stops after /health when nothing is free). once: runs
 * even while the throttle says wait (`once` must report). 0 when started
 * (hooks.done follows), 1 when the throttle says not now. */
int dispatcher_start(struct dispatcher *d, int recheck, int once);
/* The poster is done with the cycle's POSTs (rc: journaling error). */
void dispatcher_posted(struct dispatcher *d, int rc);
/* The last /health failed (0), answered (1), or was not asked yet (-1). */
int dispatcher_health_ok(const struct dispatcher *d);
#endif
