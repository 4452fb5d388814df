#ifndef BS_SETTLE_H
#define BS_SETTLE_H
/* Step 3 of a reap pass (reap.h): for each attempt the reaper loaded, the
 * facts, attempt_decide's decision and the writes that carry it out; the
 * moves of a pass in one batch. Dolt worker thread only. reap.c fills the
 * items (steps 1 and 2) and hands them here. */
#include <stdint.h>

#include "agent.h"
#include "attempt.h"
#include "owed.h"
#include "pick.h"
#include "session.h"
#include "store.h"

/* Passes in a row without a usable answer before the stale rule applies. */
#define MIN_MISSED_PASSES 2

/* What settling one pass needs. */
struct settle {
    struct session *s;
    struct owed *owed;
    int recovery;                /* start-up / take-over recovery pass */
    int64_t loaded_ms;           /* when step 1 read the beads */
    struct pick *repost;         /* out: claimed attempts whose POST is still owed */
};

struct reap_item {
    void *pass;                  /* the reap pass it belongs to (reap.c) */
    int64_t attempt_id;          /* 0: an orphan bead the store does not track */
    int attempt;
    enum attempt_state state;
    char *bead_id;
    char job_id[STORE_JOB_ID_MAX];
    char dispatch_id[STORE_DISPATCH_ID_MAX];
    int64_t dispatched_at;
    /* the bead as step 1 read it */
    int found;
    char *status, *assignee, *updated_at, *notes;
    int64_t age_ms;              /* since updated_at, by the server's clock, at load */
    /* the job as step 2 saw it */
    enum attempt_job job;
    enum agent_job_status job_status;
    int64_t job_finished_ms;
    char job_line[300];          /* agent_job_describe, for notes */
    /* remembered from earlier passes (set on the loop before settling) */
    int missed;
    int seen_maybe_running;
    /* a move step 3 decided, made with the pass's other moves in one batch */
    int move_pending;
    struct attempt_decision dec;
    char *move_note;
    char wrote_dt[32];           /* the updated_at the move wrote */
    /* what step 3 did, for the log */
    const char *reason;          /* metrics label; NULL = nothing to do */
    char detail[300];
};


/* settle.c, worker thread: the facts about one item (a tracked attempt
 * whose bead was read, or an orphan), attempt_decide's decision, and the
 * writes that carry it out. 0, 1 when the bead changed meanwhile (recorded,
 * the next pass re-reads), or an error (BS_ECONN etc.). */
int settle_item(struct settle *x, struct dolt_conn *c, struct reap_item *it, int64_t now);
/* settle.c, worker thread: the moves the pass's items decided, in one batch
 * (one transaction, one Dolt commit), then their journal entries. 0, or a
 * Dolt or store error that ends the pass. */
int settle_moves(struct settle *x, struct dolt_conn *c, struct reap_item *items, size_t n);
#endif
