#ifndef BS_SCHED_INTERNAL_H
#define BS_SCHED_INTERNAL_H
/* State shared by the dispatcher (dispatch.c) and the reaper (reap.c): one
 * object, so a reap pass and a dispatch cycle never interleave and recovery
 * can reuse the POST path. Not for other modules. */
#include "agent.h"
#include "beads.h"
#include "dispatch.h"
#include "metrics.h"

/* How many candidate rows one page of the eligibility query reads. */
#define CANDIDATE_PAGE 256
/* How many rows a cycle reads at most while skipping beads that wait out a
 * backoff or have used their attempts. */
#define CANDIDATE_SCAN_MAX 20000
/* Beads one cycle claims and posts at most; with more free slots the next
 * cycle follows at once. Bounds memory: each bead in flight holds its
 * request (the prompt carries up to 64 KiB per field). */
#define MAX_PICKS_PER_CYCLE 128
/* Bytes of an agent's refusal body kept in the bead note. */
#define REFUSAL_BODY_MAX 200
/* Health failures are logged on change, then at most this often. */
#define HEALTH_REMINDER_MS (10 * 60 * 1000)

enum pick_state {
    PICK_NEW,       /* chosen, nothing recorded */
    PICK_CLAIMING,  /* journal row in claiming */
    PICK_CLAIMED,   /* Dolt CAS succeeded; will be posted */
    PICK_LOST,      /* someone else moved the bead first */
    PICK_NOT_CLAIMED, /* the claim failed without touching Dolt: released */
    PICK_UNCERTAIN, /* connection lost during the claim: left in claiming */
};

/* What a POST's answer means for the attempt (agent_post_verdict):
 * dispatched: 202, job id known; refused: the service refused this request
 * (400/422), the claim is given back with a note and it counts as an
 * attempt; unknown: the job may exist (never re-POSTed); given_back: not
 * the bead's fault (service full, token or URL wrong, never sent): the
 * claim is given back without a failure note and it is not an attempt. */
enum post_result { POST_DISPATCHED, POST_REFUSED, POST_UNKNOWN, POST_CANCELLED, POST_GIVEN_BACK,
                   POST_RESULT_COUNT };

/* Gives the agent work only while it accepts our token and URL. */
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
/* A job id that no service can hold (its ids are 12 hex digits): GET
 * /jobs/<it> answers 404 when the token is good, 401/403 when not. */
#define GATE_PROBE_JOB_ID "beads-sched-token-check"
/* Beads remembered as deferred by a full service, at most. */
#define DEFERRED_MAX 1000
/* Notes owed to beads (a write that failed), retried on the worker. */
#define OWED_NOTES_MAX 10000
/* A batch of POST results that could not be journaled is retried after this. */
#define RESULTS_RETRY_MS 1000

/* One bead travelling through a cycle. Owned by the cycle until its POST
 * result is queued, then by the dispatcher's result list, then freed by the
 * journal write that records it. */
struct pick {
    struct pick *next;
    struct dispatcher *d;
    char *bead_id;
    char *cand_updated_at;
    long priority;
    enum pick_state state;
    int64_t attempt_id;
    int attempt;
    char dispatch_id[STORE_DISPATCH_ID_MAX];
    char claim_dt[32];          /* updated_at our claim wrote */
    char detail[STORE_DETAIL_MAX];
    struct bead bead;           /* text read at claim time, for the prompt */
    char *body;                 /* POST /execute JSON */
    int64_t posted_ms;
    enum post_result result;
    enum agent_post_verdict verdict;
    long status;
    char job_id[AGENT_JOB_ID_MAX];
    /* Progress of journaling this result, so a retried batch redoes nothing. */
    int journaled;              /* dispatched/unknown committed to the store */
    int reverted;               /* claim given back in Dolt (refused / given_back) */
};

/* A note a bead is owed (its write failed); worker-thread state. */
struct owed_note {
    struct owed_note *next;
    char *bead_id;
    char *note;
};

struct cycle {
    struct dispatcher *d;
    int64_t started_ms;
    int recheck;                /* started only to re-check capacity */
    int repost;                 /* recovery's owed POSTs, not a dispatch cycle */
    int selected;               /* the eligibility query ran */
    long want;                  /* free agent slots */
    long chosen;                /* beads picked */
    int capped;                 /* want was cut to MAX_PICKS_PER_CYCLE */
    int64_t next_retry_at;      /* earliest backoff end among skipped beads, 0 = none */
    int paused;
    int rc;
    struct pick *picks;
    size_t posts_pending;
    struct beads_ready *ready;  /* the readiness snapshot while selecting */
    struct owed_note *undefer;  /* beads deferred while the service was full: their wait ends now */
    struct candidate *unready;  /* dry-run: beads that would be noted */
    size_t nunready;
};

struct probe {
    struct dispatcher *d;
    int changed;
};

struct dispatcher {
    struct dispatch_env env;
    const struct config *cfg;
    char author[600];
    struct beads_writer writer;

    /* Worker-thread state: touched only inside work functions. */
    struct beads_schema schema;
    char probe_value[160];

    /* Loop-thread state. */
    int stopping;
    int probe_in_flight;
    int cycle_running;
    int cycle_again;
    int reap_running;
    int reap_again;             /* a reap was due while a cycle ran */
    int recovered;              /* start-up recovery done (dry-run: not needed) */
    int once;                   /* recovery, one cycle, then on_cycle */
    _Atomic int64_t dolt_ok_ms; /* last time Dolt answered (read by the admin thread) */
    int backlog;                /* last cycle may have left eligible beads waiting for slots */
    int64_t retry_due_ms;       /* a bead's backoff ends then: cycle at the first probe after */
    _Atomic int dolt_ok;        /* Dolt answered the last request (read by the admin thread) */
    int health_ok;
    int64_t health_logged_ms;
    int64_t last_cycle_ms;
    struct cycle *cur;
    struct pick *results;       /* POST results waiting to be journaled */
    int flush_in_flight;
    int64_t results_retry_at;   /* a failed batch is retried then */
    int results_failing;        /* the last batch failed (logged once per run of failures) */

    /* Whether the agent accepts our token and URL (loop thread; the admin
     * thread reads gate_reason). */
    enum agent_gate gate;
    _Atomic int gate_reason;    /* enum agent_gate, for /readyz */
    int gate_check_in_flight;
    int64_t gate_check_at;      /* next re-check while closed */
    int64_t gate_backoff_ms;
    /* The service said it is full (409/429) or could not be reached. */
    int64_t full_until_ms;
    int64_t full_backoff_ms;    /* 0: not full */
    /* Beads given back because the service was full wait FULL_BACKOFF_CAP_MS
     * each (at most one claim note per bead per hour while it stays full);
     * once the service takes a job again their wait ends. Loop thread. */
    struct owed_note *deferred;
    size_t ndeferred;
    int undefer;
    long last_load;             /* active + queued at the last /health */
    long full_load;             /* ...when the service last said full; less later: room again */

    /* Worker-thread state: notes owed to beads. */
    struct owed_note *owed_notes;
    size_t nowed;

    /* Loop-thread state of the reaper: attempts whose job gave no usable
     * answer in the last pass (with how many passes in a row), and those
     * seen timeout/error (the agent may still run). Sorted by attempt id. */
    struct reap_memo *memo;
    size_t nmemo;
};

/* What the reaper remembers about one attempt between passes. */
struct reap_memo {
    int64_t key;                /* attempt id; for an orphan, minus a hash of its bead id */
    int missed;                 /* consecutive passes without a usable answer */
    int maybe_running;          /* seen timeout/error */
};


struct reap_pass;

/* dispatch.c */
void count_dolt_error(int rc);
/* A write to one bead failed (any error but a lost race): logged, counted,
 * and recorded in the store's history as "write_failed". It is that bead's
 * problem only: callers go on with the others. c (may be NULL) gives the
 * server's error text. Worker thread. */
void bead_write_failed(struct dispatcher *d, struct dolt_conn *c, const char *bead_id,
                       int64_t attempt_id, const char *what, int rc);
/* Sets the in-flight gauge from the store. Worker thread. */
void refresh_in_flight_gauge(struct dispatcher *d);
/* Retry delay before attempt `used`+1: RETRY_BACKOFF doubled per attempt
 * used beyond the first, capped at 1 h, at least 1 ms. */
int64_t retry_backoff_ms(const struct dispatcher *d, int used);
void pick_free(struct pick *p);
void picks_free(struct pick *p);
void refresh_writer(struct dispatcher *d);
void note_dolt_state(struct dispatcher *d, int rc);
void start_cycle(struct dispatcher *d, int recheck);
void finish_cycle(struct dispatcher *d, int ok);
void post_all(struct cycle *cy);
void cycle_maybe_done(struct dispatcher *d);
int journal_picks(struct dispatcher *d, struct cycle *cy, enum pick_state which,
                  enum attempt_state from, enum attempt_state to, int64_t now);
int build_bodies(struct dispatcher *d, struct cycle *cy);
/* Queues a note for a bead whose note write failed; worker thread. */
void owe_note(struct dispatcher *d, const char *bead_id, const char *note);
/* Writes the notes owed; those that fail again stay owed. Worker thread. */
void pay_owed_notes(struct dispatcher *d, struct dolt_conn *c);
/* The agent refused our token on a GET: close the gate (loop thread). */
void agent_gate_close(struct dispatcher *d, enum agent_gate why, long status);

/* reap.c */
void reap_pass_free(struct reap_pass *rp);
void reaper_start(struct dispatcher *d, int recovery);
#endif
