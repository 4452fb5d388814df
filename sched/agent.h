#ifndef BS_AGENT_H
#define BS_AGENT_H
/* The agent service's API (CONTRACTS.md section 2): request bodies and reply
 * parsing. Pure functions; transport is http.h. Replies are untrusted: every
 * parser checks types and sizes and says what was wrong in `why`. */
#include <stddef.h>
#include <stdint.h>

#define AGENT_JOB_ID_MAX 64

struct agent_health {
    int busy;
    long active, queued, capacity;
    int single_slot;  /* the older service: {"status":"ok","busy":bool} only */
};
/* Parses GET /health's 200 body. The older single-slot service answers
 * {"busy": bool} alone: that reads as capacity 1, active = busy (one free
 * slot when not busy, none when busy). Returns 0 or BS_EINVAL (why says what). */
int agent_parse_health(const char *body, size_t len, struct agent_health *h, char *why, size_t whylen);
/* Free slots: capacity - active - queued, never negative. */
long agent_free_slots(const struct agent_health *h);

/* Parses POST /execute's 202 body {"job_id": ..., "status": "queued"}; the
 * job id must be 1-63 characters of [A-Za-z0-9_.-], and not "." or ".."
 * (it goes into URLs as a path segment, and into notes). Returns 0 or
 * BS_EINVAL. */
int agent_parse_execute(const char *body, size_t len, char *job_id, size_t cap, char *why, size_t whylen);

/* Builds the POST /execute body. Strings may be arbitrary bytes: invalid
 * UTF-8 is replaced, JSON escaping is jansson's. Returns malloc'd JSON or
 * NULL on allocation failure. */
char *agent_execute_body(const char *prompt, const char *agent, double budget_usd,
                         long timeout_s, const char *bead_id, const char *dispatch_id, int attempt);

/* BeadBoard (CONTRACTS.md section 3): GET /api/agent-status's {"busy": bool}
 * and the body of POST /api/agent-dispatch, {"taskId": bead_id}. Its reply
 * {"job_id": ...} parses with agent_parse_execute. */
int agent_parse_beadboard_status(const char *body, size_t len, int *busy, char *why, size_t whylen);
char *agent_beadboard_body(const char *bead_id);

/* Job states reported by GET /jobs/{id}. */
enum agent_job_status {
    JOB_QUEUED, JOB_RUNNING, JOB_COMPLETED, JOB_FAILED, JOB_TIMEOUT, JOB_ERROR, JOB_STATUS_COUNT
};
const char *agent_job_status_name(enum agent_job_status s);
int agent_job_status_terminal(enum agent_job_status s);
struct agent_job {
    enum agent_job_status status;
    char error[256];       /* job's error text, truncated, "" if none */
    int has_exit_code;
    long exit_code;
    char stderr_tail[160]; /* last non-empty line of stderr, truncated, "" if none */
    int64_t finished_ms;   /* finished_at as ms since the epoch (UTC), 0 if absent or unreadable */
};
/* Parses GET /jobs/{id}'s 200 body. Returns 0 or BS_EINVAL. */
int agent_parse_job(const char *body, size_t len, struct agent_job *job, char *why, size_t whylen);

/* Valid job id as defined above. */
int agent_job_id_valid(const char *id);

/* The path of GET /jobs/{id} for a valid id, every byte outside
 * [A-Za-z0-9_.-] percent-escaped (defensive: valid ids have none).
 * Returns 0, or BS_EINVAL for an invalid id or a buffer too small. */
int agent_job_path(const char *id, char *out, size_t len);

/* What an answer to POST /execute means (CONTRACTS.md section 2). */
enum agent_reply_kind {
    AR_ANSWER,    /* a complete HTTP response arrived */
    AR_TOO_LARGE, /* a response arrived, its body over the cap */
    AR_NOT_SENT,  /* nothing left this process: connect refused, bad URL */
    AR_NO_ANSWER, /* sent or possibly sent, no complete answer */
};
enum agent_post_verdict {
    APV_ACCEPTED,  /* 202 with a usable job id */
    APV_AMBIGUOUS, /* the job may exist: a 2xx whose body can't be used, no
                      answer after sending, 502/503/504 (a proxy may answer
                      after the service accepted), any status the service
                      itself never sends. Never re-POSTed blindly. */
    APV_NOT_SENT,  /* never reached the service: not an attempt */
    APV_REJECTED,  /* 400/422: the service refused this request; counts an attempt */
    APV_FULL,      /* 409 (single-slot busy) / 429 (queue full): not an attempt */
    APV_AUTH,      /* 401/403: the token is wrong; stop claiming */
    APV_URL,       /* 404 on /execute: the URL is wrong; stop claiming */
};
/* body_usable: a 2xx body parsed by agent_parse_execute. Pure. */
enum agent_post_verdict agent_post_verdict(enum agent_reply_kind kind, long status, int body_usable);
const char *agent_post_verdict_name(enum agent_post_verdict v);

/* What a job status says about the agent process: queued/running: alive;
 * completed/failed: it exited; timeout/error: it may still be running (the
 * service never kills a timed-out agent; error may come before or after
 * the spawn). */
enum agent_job_meaning { AJM_ALIVE, AJM_EXITED, AJM_MAYBE_RUNNING };
enum agent_job_meaning agent_job_meaning(enum agent_job_status s);

/* One line for a note about a finished job: "job <id> failed (exit 3,
 * error: ..., stderr: ...)", only the parts the record has. */
void agent_job_describe(const char *job_id, const struct agent_job *j, char *out, size_t len);
#endif
