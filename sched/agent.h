#ifndef BS_AGENT_H
#define BS_AGENT_H
/* The agent service's API (CONTRACTS.md section 2): request bodies and reply
 * parsing. Pure functions; transport is http.h. Replies are untrusted: every
 * parser checks types and sizes and says what was wrong in `why`. */
#include <stddef.h>

#define AGENT_JOB_ID_MAX 64

struct agent_health {
    int busy;
    long active, queued, capacity;
};
/* Parses GET /health's 200 body. Returns 0 or BS_EINVAL (why says what). */
int agent_parse_health(const char *body, size_t len, struct agent_health *h, char *why, size_t whylen);
/* Free slots: capacity - active - queued, never negative. */
long agent_free_slots(const struct agent_health *h);

/* Parses POST /execute's 202 body {"job_id": ..., "status": "queued"}; the
 * job id must be 1-63 characters of [A-Za-z0-9_.-] (it goes into URLs and
 * notes). Returns 0 or BS_EINVAL. */
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
    char error[256]; /* job's error text, truncated, "" if none */
};
/* Parses GET /jobs/{id}'s 200 body. Returns 0 or BS_EINVAL. */
int agent_parse_job(const char *body, size_t len, struct agent_job *job, char *why, size_t whylen);

/* Valid job id as defined above. */
int agent_job_id_valid(const char *id);
#endif
