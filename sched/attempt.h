#ifndef BS_ATTEMPT_H
#define BS_ATTEMPT_H
/* The life of an attempt, in one place: what happens to it given the facts
 * read from the journal, the bead (Dolt) and the job (the agent service).
 * Pure: no I/O, no clock, no globals; any thread. The callers (the
 * dispatcher's claim step, the poster, the reaper) gather the facts, call
 * attempt_decide and carry the decision out. Every rule of the README's
 * failure table is one branch here; tests/unit/test_attempt.c is the table.
 *
 * The states themselves (name, terminal, allowed next states) are the
 * X-macro table in common/attempt_states.h, shared with store/. */
#include <stdint.h>

#include "agent.h"
#include "attempt_states.h" /* enum attempt_state, ATTEMPT_STATES(X) */

/* The retry backoff never grows beyond this. */
#define ATTEMPT_BACKOFF_CAP_MS (60LL * 60 * 1000)
/* A claim given back because the service is full or unreachable: the bead
 * waits at most this long (dispatch un-defers it as soon as the service
 * takes a job again). */
#define ATTEMPT_DEFER_MS (60LL * 60 * 1000)

/* What happened that asks for a decision. */
enum attempt_event {
    AE_CLAIMED,    /* the claim's compare-and-swap ran (state claiming) */
    AE_ANSWERED,   /* POST /execute got its answer (state posting) */
    AE_RECONCILE,  /* a reap pass or start-up recovery looked at it */
};

/* The claim's outcome (AE_CLAIMED). */
enum attempt_claim {
    AC_DONE,       /* the CAS changed the row: ours */
    AC_LOST,       /* the bead changed first, or is gone (re-read: not ours) */
    AC_OURS_AFTER_ALL, /* the CAS failed but the re-read shows our claim landed */
    AC_FAILED,     /* not claimed, Dolt untouched: reading the bead or the clock failed, or
                    * the server refused the row */
    AC_UNCERTAIN,  /* connection lost during the COMMIT: may or may not have landed */
};

/* The bead as read (AE_RECONCILE). */
enum attempt_bead {
    AB_GONE,        /* no such row */
    AB_OPEN,
    AB_IN_PROGRESS,
    AB_BLOCKED,
    AB_CLOSED,
    AB_OTHER,       /* any other status (deferred, a custom status) */
};

/* What GET /jobs/{id} told (AE_RECONCILE). */
enum attempt_job {
    AJ_NONE,        /* not asked: no job id, or the bead is not ours in progress */
    AJ_ANSWERED,    /* a record: see job_status */
    AJ_MISSING,     /* 404 Job not found: service restarted, or the record expired */
    AJ_UNREACHABLE, /* no answer, or an error status */
    AJ_UNUSABLE,    /* an answer that can't be read (malformed, over the cap) */
    AJ_UNAUTHORIZED,/* 401/403: our token is wrong */
};

struct attempt_facts {
    enum attempt_event event;
    /* The journal. tracked = 0: an orphan (a bead in progress, assigned to
     * us, that this journal does not track); state is then ignored. */
    int tracked;
    enum attempt_state state;
    int has_job_id;               /* the journal (or, for an orphan, its notes) has a usable job id */
    int attempts_used;            /* attempts counted for this bead (this one included) */
    int64_t dispatched_ms;        /* when the 202 came (0 unknown) */
    int recovery;                 /* start-up / take-over recovery pass */

    /* AE_CLAIMED */
    enum attempt_claim claim;

    /* AE_ANSWERED: the verdict of the answer (agent_post_verdict) */
    enum agent_post_verdict verdict;
    int beadboard;                /* BeadBoard mode: 401/403/404 are the board's, not a gate */

    /* AE_RECONCILE: the bead */
    enum attempt_bead bead;
    int mine;                     /* assigned to our assignee */
    int64_t quiet_since_ms;       /* its last update, on this process's clock (now - its age) */
    /* evidence read from its notes (and events, where notes were full) */
    int claim_landed;             /* our dispatch id is in its notes/events (claiming) */
    int agent_reached;            /* the agent's "claimed by agent <dispatch id>" note */
    int released_by_us;           /* our reaper's "released for retry" for this job */
    int claimed_again;            /* its last claim names another dispatch (superseded) */
    int notes_read;               /* the notes were read this pass (and are not empty) */
    int dispatched_note;          /* "dispatched: job=<our job id>" is there */
    int adoptable;                /* orphan: its last claim note names a dispatch (with has_job_id:
                                   * adopted). If the journal refuses the adoption (it knows
                                   * that dispatch), decide again with adoptable = 0. */

    /* AE_RECONCILE: the job */
    enum attempt_job job;
    enum agent_job_status job_status; /* when job == AJ_ANSWERED */
    int64_t job_finished_ms;      /* the record's finished_at (0 unknown) */
    int missed_passes;            /* passes in a row, this one included, without a usable answer */
    int seen_maybe_running;       /* an earlier pass saw it timeout/error */

    int64_t now_ms;
};

struct attempt_limits {
    int64_t stale_after_ms;
    int64_t job_timeout_ms;
    int64_t retry_backoff_ms;     /* RETRY_BACKOFF */
    int max_attempts;             /* MAX_ATTEMPTS */
    int min_missed_passes;        /* ATTEMPT_MIN_MISSED_PASSES in the daemon */
};

/* What the caller does. */
enum attempt_act {
    AA_NOTHING,   /* wait: nothing to write this time (but see owe_dispatched_note) */
    AA_RECORD,    /* journal only: state -> next (the bead is not ours to write; AR_ACCEPTED:
                   * then the dispatched note; AR_RELEASED_EARLIER: and retry_at) */
    AA_MOVE,      /* guarded move of the bead to bead_to (with the rule's note; a claim given
                   * back has none), then the journal and retry_at; an orphan's move is
                   * recorded as an orphan_blocked event */
    AA_POST,      /* (claim) go on to posting / (recovery) send the POST still owed: next is
                   * AS_POSTING, journaled when the request body is built */
    AA_ADOPT,     /* orphan: journal it, straight in dispatched, numbered on */
};

/* What the answer to a POST says about the service (AE_ANSWERED), for the
 * dispatcher's gate and backoff. */
enum attempt_service {
    AV_SAME,          /* nothing new */
    AV_TAKES_JOBS,    /* 202: the full backoff ends, a closed gate opens */
    AV_FULL,          /* 409/429, not reached, or BeadBoard's 401/403/404: back off */
    AV_TOKEN_REFUSED, /* 401/403: the gate closes until the token works */
    AV_URL_WRONG,     /* 404 on /execute: the gate closes until the URL works */
};

/* Which rule decided: names the note and the detail the caller writes. */
enum attempt_rule {
    AR_NONE,
    AR_CLAIM_NOT_MADE,     /* claiming, the claim never reached Dolt: lost race */
    AR_CLAIM_LOST,         /* the CAS lost: lost race */
    AR_CLAIM_FAILED,       /* not claimed, released */
    AR_CLAIM_UNCERTAIN,    /* left in claiming for recovery */
    AR_CLAIMED,            /* claimed: post it */
    AR_NOT_POSTED_MOVED,   /* claimed, bead no longer ours in progress before the POST */
    AR_ACCEPTED,           /* 202: dispatched, the dispatched note goes out */
    AR_AMBIGUOUS,          /* unknown: never re-POSTed, the reaper watches the bead */
    AR_REFUSED,            /* 400/422: claim given back with the refusal note; an attempt */
    AR_GIVEN_BACK_FULL,    /* 409/429 or never sent: given back, not an attempt, waits */
    AR_GIVEN_BACK_AUTH,    /* 401/403/404: given back, not an attempt, the gate closes */
    AR_BEAD_GONE,
    AR_CLOSED,
    AR_REASSIGNED,
    AR_SET_BLOCKED,        /* blocked by the agent or a person */
    AR_SUPERSEDED,         /* claimed again since by another dispatch */
    AR_RELEASED_EARLIER,   /* our own release, found after a restart */
    AR_MOVED_BY_OTHERS,    /* open/other status, not by us */
    AR_REACHED,            /* posting -> unknown: the agent's claim note proves it got it */
    AR_NO_ANSWER_QUIET,    /* posting/unknown, quiet for STALE_AFTER: retry */
    AR_ALIVE,              /* the job runs: wait */
    AR_EXITED,             /* completed/failed while in progress: retry */
    AR_MAYBE_RUNNING_QUIET,/* timeout/error and quiet for STALE_AFTER: retry */
    AR_JOB_MISSING,        /* 404: retry */
    AR_HARD_LIMIT,         /* running past JOB_TIMEOUT + STALE_AFTER: blocked */
    AR_STALE,              /* the agent can't say and the bead is quiet: blocked */
    AR_ADOPTED,            /* another instance's attempt: supervised here from now on */
    AR_RULE_COUNT
};
/* Waiting (AA_NOTHING) carries AR_NONE, except AR_ALIVE (the job runs) and
 * AR_CLAIM_UNCERTAIN. */
const char *attempt_rule_name(enum attempt_rule r);

struct attempt_decision {
    enum attempt_act act;
    enum attempt_rule rule;
    /* Journal: first `via` (AS_STATE_COUNT = none; e.g. claiming -> claimed
     * before the owed POST, posting -> unknown when the agent was reached),
     * then `next` (== the current state: no transition). An orphan has no
     * journal row: both AS_STATE_COUNT, except AA_ADOPT (next dispatched). */
    enum attempt_state via;
    enum attempt_state next;
    const char *bead_to;        /* AA_MOVE: "open" or "blocked"; else NULL */
    int give_up;                /* the move blocks because attempts are used up */
    int counts;                 /* the attempt counts towards MAX_ATTEMPTS once this is done
                                 * (as the store counts: posted, and not given back) */
    int owe_dispatched_note;    /* write "dispatched: job=<id>" (AR_ACCEPTED, or recovery found it missing) */
    int64_t retry_at;           /* the bead's next try (0: none) */
    const char *outcome;        /* journal outcome word (NULL: the state's name) */
    const char *reason;         /* metrics label (reaps_total / dispatches_total); NULL: none.
                                 * The reaper counts reaps_total{reason="alive"} itself, for a
                                 * tracked AR_ALIVE that has no reason. */
    enum attempt_service service; /* AE_ANSWERED: what the answer says of the service */
};

/* The decision for these facts. Never fails: unknown combinations (an event
 * for a state it can't happen in, a terminal state, an orphan that is not
 * in progress and ours) wait. */
struct attempt_decision attempt_decide(const struct attempt_facts *f, const struct attempt_limits *l);

/* The one backoff for every kind of retry: base doubled per step beyond the
 * first, capped, at least 1 ms. steps < 1 counts as 1. */
int64_t attempt_backoff_ms(int64_t base_ms, int steps, int64_t cap_ms);

/* When the bead went quiet: the later of its last update and the job's end. */
int64_t attempt_quiet_since(const struct attempt_facts *f);
#endif
