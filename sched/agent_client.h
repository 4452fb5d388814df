#ifndef BS_AGENT_CLIENT_H
#define BS_AGENT_CLIENT_H
/* Requests to the agent service (or BeadBoard) over http.c, and the one
 * reading of their answers: GET /health, POST /execute, GET /jobs/{id} and
 * the token check. The dispatcher, the poster, the reaper and `explain` all
 * go through here, so an answer means the same thing everywhere.
 *
 * Threads: requests start on the loop thread (http.c's); the agent_read_*
 * functions are pure (any thread). */
#include <stddef.h>

#include "agent.h"
#include "attempt.h"
#include "config.h"
#include "http.h"
#include "store.h"

/* A job id no service can hold (its ids are 12 hex digits): GET /jobs/<it>
 * answers 404 when the token is good, 401/403 when not. */
#define AGENT_TOKEN_CHECK_JOB_ID "beads-sched-token-check"
/* Job records are read whole up to this size (the service returns every
 * output line); a bigger one is an unusable reply, never "unreachable". */
#define AGENT_JOB_RECORD_MAX (64u << 20)
/* Bytes of a refusal body kept in notes and details. */
#define AGENT_REFUSAL_BODY_MAX 200

enum agent_endpoint { AGENT_HEALTH, AGENT_EXECUTE, AGENT_JOB, AGENT_TOKEN_CHECK };
/* The URL of an endpoint for this configuration (BeadBoard's in BeadBoard
 * mode; AGENT_JOB needs a valid job id). 0, or BS_EINVAL (no URL
 * configured, invalid id, too long). */
int agent_url(const struct config *cfg, enum agent_endpoint ep, const char *job_id, char *out, size_t len);

/* Starts a request; cb gets the raw response (read it with agent_read_*).
 * 0, or BS_EINVAL / BS_ENOMEM when it could not be started. */
int agent_request(struct http_client *http, const struct config *cfg, enum agent_endpoint ep,
                  const char *job_id, const char *body, http_done_cb cb, void *arg);

/* GET /health (or BeadBoard's status). */
struct agent_health_answer {
    int ok;                     /* a usable answer: see h */
    struct agent_health h;      /* BeadBoard: capacity 1, active = busy */
    char why[200];              /* when not ok */
    const char *error_kind;     /* agent_errors_total label when not ok; NULL when cancelled */
    int answered;               /* an HTTP answer arrived (see status) */
    long status;
};
void agent_read_health(const struct config *cfg, const struct http_response *r, struct agent_health_answer *a);

/* POST /execute (or BeadBoard's dispatch). */
struct agent_post_answer {
    int cancelled;              /* the client closed: nothing is known */
    enum agent_post_verdict verdict;
    long status;
    char job_id[AGENT_JOB_ID_MAX];
    char detail[STORE_DETAIL_MAX]; /* what the answer said, for notes and the journal */
    const char *error_kind;     /* agent_errors_total label, NULL for none */
};
void agent_read_post(const struct http_response *r, struct agent_post_answer *a);

/* GET /jobs/{id}. */
struct agent_job_answer {
    enum attempt_job job;       /* AJ_ANSWERED .. AJ_UNAUTHORIZED; AJ_NONE when cancelled */
    struct agent_job record;    /* when AJ_ANSWERED */
    char line[300];             /* agent_job_describe, for notes */
    char why[160];              /* when AJ_UNUSABLE */
};
void agent_read_job(const struct http_response *r, const char *job_id, struct agent_job_answer *a);

/* The token check: GATE-like answer. */
enum agent_token { AT_GOOD, AT_REFUSED, AT_CANT_TELL };
/* url_wrong: the gate is closed because /execute answered 404, so a 404 must
 * carry the service's "Job not found" to count as good. */
/* GET /health now, on a loop of its own (for `explain`, outside the
 * daemon): fills a like the daemon's cycle reads it. 0, or an error when
 * the request could not be made at all. */
int agent_health_now(const struct config *cfg, struct agent_health_answer *a);

enum agent_token agent_read_token_check(const struct http_response *r, int url_wrong);
#endif
