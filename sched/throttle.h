#ifndef BS_THROTTLE_H
#define BS_THROTTLE_H
/* When the agent service may be given work: the gate (does it take our
 * token and URL?) and the full backoff (it said it is full, or could not be
 * reached). Both back off with attempt_backoff_ms. Beads given back because
 * the service was full wait (DEFERRED) until it takes a job again.
 *
 * Threads: loop thread, except throttle_refusing (any thread). */
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum agent_gate {
    GATE_UNCHECKED, /* not asked yet (start-up), or the check could not tell */
    GATE_OPEN,      /* the token works */
    GATE_TOKEN,     /* 401/403: the token is wrong */
    GATE_URL,       /* 404 on /execute: the URL is wrong */
};
/* Token re-checks back off from this, doubling, to GATE_BACKOFF_CAP_MS. */
#define GATE_BACKOFF_MS 5000
#define GATE_BACKOFF_CAP_MS (5 * 60 * 1000)
/* A service that says it is full: claims stop for RETRY_BACKOFF (at least
 * FULL_BACKOFF_MIN_MS), doubling per full answer in a row, capped at 1 h;
 * then one bead per cycle until one is accepted. */
#define FULL_BACKOFF_MIN_MS 1000
#define FULL_BACKOFF_CAP_MS (60LL * 60 * 1000)
/* Beads remembered as deferred by a full service, at most. */
#define DEFERRED_MAX 1000

/* A list of bead ids (the deferred beads). */
struct bead_list {
    struct bead_list *next;
    char *bead_id;
};
void bead_list_free(struct bead_list *l);
/* Appends b to the end of *a. */
void bead_list_join(struct bead_list **a, struct bead_list *b);

struct throttle {
    const struct config *cfg;
    enum agent_gate gate;
    _Atomic int gate_reason;    /* enum agent_gate, for /readyz */
    int gate_steps;             /* closes in a row for the same reason */
    int64_t gate_check_at;      /* next re-check while closed */
    int64_t full_until_ms;      /* 0: not full */
    int full_steps;             /* full rounds in a row */
    long last_load;             /* active + queued at the last /health */
    long full_load;             /* ...when the service last said full; less later: room again */
    struct bead_list *deferred;
    size_t ndeferred;
    int undefer;                /* the service took a job: the next cycle ends their wait */
};

void throttle_init(struct throttle *t, const struct config *cfg);
void throttle_free(struct throttle *t);

int throttle_gate_closed(const struct throttle *t);
/* The agent refused our token (GATE_TOKEN) or URL (GATE_URL). */
void throttle_gate_close(struct throttle *t, enum agent_gate why, long status);
void throttle_gate_open(struct throttle *t);
/* The service is full or unreachable: no claims for a while, doubling. */
void throttle_full(struct throttle *t, long status, const char *detail);
/* The service took a job: full over, gate open, deferred beads due. */
void throttle_accepted(struct throttle *t);
/* A bead given back because the service was full or unreachable. */
void throttle_defer(struct throttle *t, const char *bead_id);
/* Whether a cycle may start now (once: always; it must report). */
int throttle_cycle_allowed(const struct throttle *t, int64_t now, int once);
/* After /health: remembers the load; caps *want to one bead while the
 * service said full lately. Deferred beads whose wait ends (the load fell
 * since the service said full, or it took a job) are moved to *due. */
void throttle_health(struct throttle *t, long load, long *want, struct bead_list **due);
/* Deferred beads whose wait ends at the next cycle (taken by it). */
struct bead_list *throttle_take_due(struct throttle *t);
/* A cycle that never reached Dolt gives them back. */
void throttle_untake(struct throttle *t, struct bead_list *l);
/* Whether the cycle should be retried at the next probe (agent may be back). */
int throttle_waiting(const struct throttle *t);

/* Any thread: whether the agent refuses our token or URL; fills why. */
int throttle_refusing(const struct throttle *t, char *why, size_t len);
#endif
