#ifndef BS_POSTER_H
#define BS_POSTER_H
/* The poster sends POST /execute for claimed attempts and journals what
 * came back, for the dispatcher's cycles and for recovery's owed POSTs
 * alike: dispatched and unknown in one store transaction, then the
 * `dispatched:` notes; refusals and claims given back revert the claim in
 * Dolt, then are journaled (DESIGN.md's protocol). Results that cannot be
 * journaled wait in memory and are retried; nothing the agent said is lost.
 *
 * Threads: poster_send, poster_retry and the callbacks run on the loop
 * thread; the journaling runs on the Dolt worker; results_build_bodies and
 * results_journal are worker functions. */
#include <stdint.h>

#include "agent.h"
#include "attempt.h"
#include "beads.h"
#include "owed.h"
#include "session.h"
#include "store.h"
#include "throttle.h"

/* One attempt travelling through a cycle (or recovery's owed POSTs). Owned
 * by the cycle until it is posted, then by the poster until its result is
 * journaled. */
struct pick {
    struct pick *next;
    struct poster *poster;
    char *bead_id;
    char *cand_updated_at;      /* the bead's updated_at when chosen (latency) */
    long priority;
    /* The journal state it is in (AS_STATE_COUNT: chosen, nothing recorded
     * yet), and what attempt_decide said at its last step: the claim's
     * outcome (AE_CLAIMED), then the POST's answer (AE_ANSWERED). */
    enum attempt_state state;
    enum attempt_claim claim;
    struct attempt_decision dec;
    int decided;                /* dec is the answer's decision */
    int used;                   /* attempts counted for the bead when it was decided */
    int64_t attempt_id;
    int attempt;
    char dispatch_id[STORE_DISPATCH_ID_MAX];
    char claim_dt[32];          /* updated_at our claim wrote */
    char detail[STORE_DETAIL_MAX];
    struct bead bead;           /* text read at claim time, for the prompt */
    char *body;                 /* POST /execute JSON */
    int64_t posted_ms;
    enum agent_post_verdict verdict;
    long status;
    char job_id[AGENT_JOB_ID_MAX];
    /* Progress of journaling this result, so a retried batch redoes nothing. */
    int journaled;              /* dispatched/unknown committed to the store */
    int note_due;               /* its dispatched note is to be written (this batch) */
    int reverted;               /* the claim given back (or the bead blocked) in Dolt */
};
void pick_free(struct pick *p);
void picks_free(struct pick *p);

struct poster_hooks {
    /* A refused bead may be tried again at `at`: the dispatcher looks then. */
    void (*retry_due)(void *arg, int64_t at);
    /* Everything sent was answered and journaled (rc: the first journaling
     * error, results then wait in memory or, in once mode, for recovery). */
    void (*done)(void *arg, int rc);
    void *arg;
};

struct poster;
int poster_init(struct poster **out, struct session *s, struct throttle *t, struct owed *owed,
                const struct poster_hooks *hooks);
void poster_free(struct poster *p);
/* `once`: a failed journaling is not retried (recovery settles it). */
void poster_set_once(struct poster *p, int once);

/* Loop: sends every pick of list in posting (takes the list); hooks.done runs
 * when all are answered and journaled (at once when none was sent). */
void poster_send(struct poster *p, struct pick *list);
/* Loop: results whose journaling failed are retried when due. */
void poster_retry(struct poster *p);
/* Loop: results are waiting to be journaled. */
int poster_has_results(const struct poster *p);
#endif
