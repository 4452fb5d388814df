#ifndef BS_RULES_H
#define BS_RULES_H
/* What the reaper does with an attempt, decided from facts alone: pure
 * functions, no I/O, so every case is a row in a unit test. The reaper
 * (reap.c) gathers the facts (the bead from Dolt, the job from the agent,
 * the attempt from the store) and carries the action out. */
#include <stdint.h>

#include "agent.h"

/* What GET /jobs/{id} told about the attempt's job. */
enum rules_job {
    RJ_NONE,          /* not asked (no job id) */
    RJ_ANSWERED,      /* a job record: see status */
    RJ_MISSING,       /* 404 Job not found: the service restarted or the record expired */
    RJ_UNREACHABLE,   /* no answer, or an error status */
    RJ_UNUSABLE,      /* an answer that can't be read (malformed, over the size cap) */
    RJ_UNAUTHORIZED,  /* 401/403: our token is wrong; the agent can't be asked */
};

struct rules_facts {
    enum rules_job job;
    enum agent_job_status status;   /* when job == RJ_ANSWERED */
    int64_t job_finished_ms;        /* the record's finished_at, 0 if unknown */
    int missed_passes;              /* consecutive passes, this one included, without a usable answer */
    int seen_maybe_running;         /* an earlier pass saw this job timeout/error */
    int64_t now_ms;
    int64_t bead_updated_ms;        /* the bead's updated_at */
    int64_t dispatched_ms;          /* when the 202 came (0 unknown) */
};

struct rules_limits {
    int64_t stale_after_ms;
    int64_t job_timeout_ms;
    int min_missed_passes;          /* unreachable this many passes in a row before the stale rule */
};

enum rules_action {
    RA_WAIT,             /* nothing to write this pass */
    RA_RETRY,            /* the agent is not working on it: release for another attempt, or give up */
    RA_BLOCK_STALE,      /* the agent can't say and the bead is quiet: the old rule, blocked */
    RA_BLOCK_HARD_LIMIT, /* still running long past its timeout: blocked */
};
const char *rules_action_name(enum rules_action a);

/* A dispatched attempt (job id known) whose bead is in progress and ours:
 * - queued/running: wait; running past JOB_TIMEOUT + STALE_AFTER since the
 *   dispatch: block (hard limit);
 * - completed/failed: the agent exited: retry;
 * - timeout/error, or 404 for a job seen timeout/error before: the agent may
 *   still be working: retry only once the bead has been quiet for
 *   STALE_AFTER since the job ended (or since its last update, whichever
 *   is later), else wait;
 * - 404 otherwise: the service lost the job (restart): retry;
 * - unreachable/unusable: the stale rule, but only after min_missed_passes
 *   consecutive passes without an answer;
 * - unauthorized: wait (our token is wrong, not the bead's problem). */
enum rules_action rules_dispatched(const struct rules_facts *f, const struct rules_limits *l);

/* An attempt whose POST may have reached the agent but whose job id is
 * unknown (posting after a crash, unknown after an ambiguous answer),
 * whether or not the agent's claim note proves it did: never re-POSTed;
 * supervised by the bead's activity: retry once it has been quiet for
 * STALE_AFTER, else wait. */
enum rules_action rules_no_job_id(const struct rules_facts *f, const struct rules_limits *l);

/* A bead in progress, assigned to us, that this store does not track (the
 * old CronJobs, another beads-sched, a hand edit). With a job id from its
 * `dispatched: job=` note, a job the agent reports queued/running is alive
 * (wait); otherwise (no job id, the agent can't say, the job ended) the old
 * stale rule: quiet for STALE_AFTER -> blocked. Unreachable counts only
 * after min_missed_passes, as for our own attempts. */
enum rules_action rules_orphan(const struct rules_facts *f, const struct rules_limits *l);

/* When the bead went quiet: the later of its last update and the job's end. */
int64_t rules_quiet_since(const struct rules_facts *f);
#endif
