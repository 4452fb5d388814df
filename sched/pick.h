#ifndef BS_PICK_H
#define BS_PICK_H
/* One attempt on its way from a dispatch cycle (or recovery's owed POSTs)
 * to the agent and into the journal. Any thread that owns it: the Dolt
 * worker while it is claimed and journaled, the loop while it is posted.
 * While a large batch's claims are in Dolt, the worker's bodies thread
 * (dispatch.c bodies_aside) reads the picks' bead text and ids and writes
 * their bodies; the worker joins it before it reads a body. */
#include <stdint.h>

#include "agent.h"
#include "attempt.h"
#include "beads.h"
#include "store.h"

/* One attempt travelling through a cycle (or recovery's owed POSTs). Owned
 * by the cycle until it is posted, then by the poster until its result is
 * journaled. */
struct pick {
    struct pick *next;
    void *poster;               /* the poster sending it */
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
    int shown;                  /* the attempt number its prompt shows (0: not set) */
    char *body;                 /* POST /execute JSON */
    int64_t posted_ms;
    enum agent_post_verdict verdict;
    long status;
    char job_id[AGENT_JOB_ID_MAX];
    /* Progress of journaling this result, so a retried batch redoes nothing. */
    int journaled;              /* dispatched/unknown committed to the store */
    int note_due;               /* its dispatched note is to be written (this batch) */
    int note_rc;                /* how writing it went (results_write_notes), until owed */
    int reverted;               /* the claim given back (or the bead blocked) in Dolt */
};
void pick_free(struct pick *p);
void picks_free(struct pick *p);

#endif
