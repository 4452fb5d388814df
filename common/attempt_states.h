#ifndef BS_ATTEMPT_STATES_H
#define BS_ATTEMPT_STATES_H
/* The states of a dispatch attempt, in one table: the enum, the word stored
 * in journal.state (migrations/0001_journal.sql lists the same words in the
 * same order in its CHECK; tests/unit/test_attempt.c holds them equal),
 * whether the state is terminal, and the states it may move to.
 *
 * The journal moves forward only: claiming -> claimed -> posting ->
 * (unknown | dispatched) -> a terminal state; unknown may still become
 * dispatched. Any non-terminal state may end in any terminal state
 * (recovery must be able to close out whatever a crash left); nothing
 * leaves a terminal state.
 *
 * What start-up recovery does with each non-terminal state (sched/attempt.c
 * decides it, the README's failure table describes it):
 *   claiming   our claim note on the bead: claimed, then POSTed; else lost_race
 *   claimed    the POST never left: POSTed now, unless the bead moved
 *   posting    as unknown: never re-POSTed; watched by the bead's activity
 *   unknown    released for retry once the bead is quiet for STALE_AFTER
 *   dispatched reconciled as in any reap pass; a missing dispatched note written
 *
 * X(enum name, journal word, terminal, the non-terminal states it may move
 * to, as a mask of ATTEMPT_NEXT bits). A non-terminal state may also end in
 * any terminal state; a terminal one moves nowhere. (The masks name enum
 * constants, so they are usable only after the enum below.) */
#define ATTEMPT_NEXT(st) (1u << (st))
#define ATTEMPT_STATES(X)                                                                     \
    X(AS_CLAIMING, "claiming", 0, ATTEMPT_NEXT(AS_CLAIMED))                                   \
    X(AS_CLAIMED, "claimed", 0, ATTEMPT_NEXT(AS_POSTING))                                     \
    X(AS_POSTING, "posting", 0, ATTEMPT_NEXT(AS_DISPATCHED) | ATTEMPT_NEXT(AS_UNKNOWN))       \
    X(AS_UNKNOWN, "unknown", 0, ATTEMPT_NEXT(AS_DISPATCHED))                                  \
    X(AS_DISPATCHED, "dispatched", 0, 0u)                                                     \
    X(AS_CLOSED, "closed", 1, 0u)       /* bead closed (by the agent or anyone) */            \
    X(AS_BLOCKED, "blocked", 1, 0u)     /* bead set blocked (by us or someone else) */        \
    X(AS_RELEASED, "released", 1, 0u)   /* claim given back: open again, not by a retry */    \
    X(AS_REFUSED, "refused", 1, 0u)     /* the POST refused or given back; claim reverted */  \
    X(AS_LOST_RACE, "lost_race", 1, 0u) /* someone else changed the bead first */             \
    X(AS_RETRYING, "retrying", 1, 0u)   /* agent stopped unfinished; reopened for a retry */  \
    X(AS_GAVE_UP, "gave_up", 1, 0u)     /* attempts exhausted; bead blocked */

/* Attempt states. The values are not stored (the words are), but their
 * order is the table's: claiming .. dispatched, then the terminal ones.
 *   claiming   intent recorded, nothing external done
 *   claimed    Dolt compare-and-swap succeeded
 *   posting    POST /execute may be on the wire
 *   unknown    POST sent, no usable answer: outcome unknown, for the reaper
 *   dispatched 202 received, job_id known */
enum attempt_state {
#define ATTEMPT_STATE_ENUM(e, word, terminal, next) e,
    ATTEMPT_STATES(ATTEMPT_STATE_ENUM)
#undef ATTEMPT_STATE_ENUM
    AS_STATE_COUNT
};

#endif
