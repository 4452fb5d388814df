#ifndef BS_REAP_PASS_H
#define BS_REAP_PASS_H
/* A reap pass's data, shared by its two halves: reap.c (loading, asking the
 * agent, the pass's control) and settle.c (deciding and writing, per
 * attempt). Not for other modules. Threads: as reap.h. */
#include <stdint.h>

#include "agent.h"
#include "attempt.h"
#include "owed.h"
#include "poster.h"
#include "reap.h"
#include "session.h"
#include "store.h"
#include "throttle.h"

/* Passes in a row without a usable answer before the stale rule applies. */
#define MIN_MISSED_PASSES 2

/* What the reaper remembers about one attempt between passes. */
struct reap_memo {
    int64_t key;                /* attempt id; for an orphan, minus a hash of its bead id */
    int missed;                 /* consecutive passes without a usable answer */
    int maybe_running;          /* seen timeout/error */
};

struct reaper {
    struct session *s;
    struct throttle *throttle;
    struct owed *owed;
    struct reap_hooks hooks;
    /* Loop thread: attempts whose job gave no usable answer in the last pass
     * (with how many passes in a row), and those seen timeout/error (the
     * agent may still run). Sorted by key. */
    struct reap_memo *memo;
    size_t nmemo;
};

struct reap_pass;

struct reap_item {
    struct reap_pass *rp;
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

struct reap_pass {
    struct reaper *r;
    int recovery;
    struct reap_item *items;
    size_t n, cap;
    size_t next_job, jobs_pending;
    struct pick *repost;         /* claimed attempts whose POST is still owed */
    int64_t started_ms, loaded_ms, jobs_ms; /* phase ends, for the debug log */
};

/* settle.c, worker thread: the facts about one item (a tracked attempt
 * whose bead was read, or an orphan), attempt_decide's decision, and the
 * writes that carry it out. 0, 1 when the bead changed meanwhile (recorded,
 * the next pass re-reads), or an error (BS_ECONN etc.). */
int settle_item(struct reaper *r, struct dolt_conn *c, struct reap_pass *rp, struct reap_item *it, int64_t now);
/* settle.c, worker thread: the moves the pass's items decided, in one batch
 * (one transaction, one Dolt commit), then their journal entries. 0, or a
 * Dolt or store error that ends the pass. */
int settle_moves(struct reaper *r, struct dolt_conn *c, struct reap_pass *rp);
#endif
