#include "agent_client.h"

#include "errors.h"
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int agent_url(const struct config *cfg, enum agent_endpoint ep, const char *job_id, char *out, size_t len)
{
    int beadboard = cfg->mode == MODE_BEADBOARD;
    const char *base = beadboard ? cfg->beadboard_url : cfg->agent_url;
    char path[STORE_JOB_ID_MAX * 3 + 16];
    if (!base)
        return BS_EINVAL;
    switch (ep) {
    case AGENT_HEALTH:
        snprintf(path, sizeof path, "%s", beadboard ? "/api/agent-status" : "/health");
        break;
    case AGENT_EXECUTE:
        snprintf(path, sizeof path, "%s", beadboard ? "/api/agent-dispatch" : "/execute");
        break;
    case AGENT_TOKEN_CHECK:
        job_id = AGENT_TOKEN_CHECK_JOB_ID;
        /* fall through */
    case AGENT_JOB:
        /* BeadBoard mode asks the agent service itself for jobs. */
        base = cfg->agent_url;
        if (!base || agent_job_path(job_id, path, sizeof path))
            return BS_EINVAL;
        break;
    }
    int n = snprintf(out, len, "%s%s", base, path);
    return n < 0 || (size_t)n >= len ? BS_EINVAL : 0;
}

int agent_request(struct http_client *http, const struct config *cfg, enum agent_endpoint ep,
                  const char *job_id, const char *body, http_done_cb cb, void *arg)
{
    char url[2400], auth[1100];
    int rc = agent_url(cfg, ep, job_id, url, sizeof url);
    if (rc)
        return rc;
    /* BeadBoard holds the agent token itself; never send ours there. */
    int send_token = ep != AGENT_HEALTH && !(ep == AGENT_EXECUTE && cfg->mode == MODE_BEADBOARD);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", cfg->agent_token && send_token ? cfg->agent_token : "");
    const char *post_headers[] = {"Content-Type: application/json", "Accept: application/json",
                                  send_token ? auth : NULL, NULL};
    const char *get_headers[] = {"Accept: application/json", auth, NULL};
    struct http_request req = {
        .method = ep == AGENT_EXECUTE ? "POST" : "GET", .url = url, .body = body,
        .body_len = body ? strlen(body) : 0,
        .headers = ep == AGENT_EXECUTE ? post_headers : ep == AGENT_HEALTH ? NULL : get_headers,
        .connect_timeout_ms = (long)cfg->http_connect_timeout_ms, .timeout_ms = (long)cfg->http_timeout_ms,
        .max_response = ep == AGENT_JOB ? AGENT_JOB_RECORD_MAX : 64 * 1024,
    };
    rc = http_request_start(http, &req, cb, arg);
    memset(auth, 0, sizeof auth);
    return rc;
}

void agent_read_health(const struct config *cfg, const struct http_response *r, struct agent_health_answer *a)
{
    memset(a, 0, sizeof *a);
    a->answered = r->outcome == HTTP_RESPONSE;
    a->status = r->status;
    if (r->outcome == HTTP_RESPONSE && r->status == 200 && cfg->mode == MODE_BEADBOARD) {
        /* BeadBoard tells only busy or not: one bead per cycle while free. */
        int busy = 1;
        a->ok = agent_parse_beadboard_status(r->body, r->body_len, &busy, a->why, sizeof a->why) == 0;
        a->h.capacity = 1;
        a->h.active = busy;
    } else if (r->outcome == HTTP_RESPONSE && r->status == 200) {
        a->ok = agent_parse_health(r->body, r->body_len, &a->h, a->why, sizeof a->why) == 0;
    } else if (r->outcome == HTTP_RESPONSE) {
        snprintf(a->why, sizeof a->why, "HTTP %ld", r->status);
    } else {
        snprintf(a->why, sizeof a->why, "%s: %.150s", http_outcome_name(r->outcome), r->error);
    }
    if (a->ok || r->outcome == HTTP_CANCELLED)
        return;
    a->error_kind = r->outcome == HTTP_RESPONSE && r->status == 200 ? "malformed"
                    : r->outcome == HTTP_RESPONSE ? (r->status >= 500 ? "http_5xx" : "http_4xx")
                    : "unreachable";
}

/* A reply body as one line for a note: UTF-8 safe, capped, marked when cut. */
static void body_line(const struct http_response *r, char *out, size_t len)
{
    size_t keep = text_utf8_prefix(r->body, r->body_len, AGENT_REFUSAL_BODY_MAX);
    char *clean = text_utf8_clean(r->body, keep);
    snprintf(out, len, "%s%s", clean ? clean : "", keep < r->body_len ? " [...]" : "");
    for (char *c = out; *c; c++) {
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    }
    free(clean);
}

/* The agent error an answer counts as, or NULL for none. */
static const char *post_error_kind(const struct agent_post_answer *a)
{
    switch (a->verdict) {
    case APV_ACCEPTED:
        return NULL;
    case APV_NOT_SENT:
        return "unreachable";
    case APV_AMBIGUOUS:
        return a->status >= 200 && a->status < 300 ? "malformed" : "unknown";
    case APV_FULL:
        return "full";
    case APV_AUTH:
    case APV_URL:
        return "unauthorized";
    case APV_REJECTED:
        return "http_4xx";
    }
    return NULL;
}

static void post_detail(const struct http_response *r, enum agent_reply_kind kind, const char *why,
                        struct agent_post_answer *a)
{
    char body[AGENT_REFUSAL_BODY_MAX + 16];
    switch (a->verdict) {
    case APV_ACCEPTED:
        return;
    case APV_AMBIGUOUS:
        /* The service may have the job: never re-POST; the reaper watches
         * the bead (the agent's claim note carries our dispatch id). */
        if (kind == AR_NO_ANSWER) {
            snprintf(a->detail, sizeof a->detail, "no answer after sending: %.200s", r->error);
        } else if (r->status >= 200 && r->status < 300) {
            snprintf(a->detail, sizeof a->detail, "HTTP %ld but the reply is unusable: %s", r->status, why);
        } else {
            body_line(r, body, sizeof body);
            snprintf(a->detail, sizeof a->detail, "HTTP %ld (the service may have taken the job): %s",
                     r->status, body);
        }
        return;
    case APV_REJECTED:
        body_line(r, a->detail, sizeof a->detail);
        return;
    case APV_NOT_SENT:
        snprintf(a->detail, sizeof a->detail, "agent unreachable: %.200s", r->error);
        return;
    case APV_FULL:
    case APV_AUTH:
    case APV_URL:
        body_line(r, body, sizeof body);
        snprintf(a->detail, sizeof a->detail, "%s: HTTP %ld: %s",
                 a->verdict == APV_FULL ? "agent full" : a->verdict == APV_AUTH ? "token refused" : "wrong URL",
                 r->status, body);
        return;
    }
}

void agent_read_post(const struct http_response *r, struct agent_post_answer *a)
{
    char why[160] = "";
    enum agent_reply_kind kind = AR_ANSWER;
    int usable = 0;
    memset(a, 0, sizeof *a);
    a->status = r->status;
    switch (r->outcome) {
    case HTTP_CANCELLED:
        a->cancelled = 1;
        return;
    case HTTP_REFUSED:
        kind = AR_NOT_SENT;
        break;
    case HTTP_UNKNOWN:
        kind = AR_NO_ANSWER;
        break;
    case HTTP_TOO_LARGE:
        kind = AR_TOO_LARGE;
        snprintf(why, sizeof why, "too large");
        break;
    case HTTP_RESPONSE:
        if (r->status >= 200 && r->status < 300)
            usable = agent_parse_execute(r->body, r->body_len, a->job_id, sizeof a->job_id, why,
                                         sizeof why) == 0;
        break;
    }
    a->verdict = agent_post_verdict(kind, r->status, usable);
    post_detail(r, kind, why, a);
    a->error_kind = post_error_kind(a);
}

void agent_read_job(const struct http_response *r, const char *job_id, struct agent_job_answer *a)
{
    memset(a, 0, sizeof *a);
    if (r->outcome == HTTP_RESPONSE && r->status == 200) {
        if (agent_parse_job(r->body, r->body_len, &a->record, a->why, sizeof a->why) == 0) {
            a->job = AJ_ANSWERED;
            agent_job_describe(job_id, &a->record, a->line, sizeof a->line);
        } else {
            a->job = AJ_UNUSABLE;
        }
    } else if (r->outcome == HTTP_TOO_LARGE && r->status == 200) {
        a->job = AJ_UNUSABLE;
        snprintf(a->why, sizeof a->why, "over the size limit (%u bytes)", AGENT_JOB_RECORD_MAX);
    } else if (r->outcome == HTTP_RESPONSE && r->status == 404) {
        a->job = AJ_MISSING;
    } else if (r->outcome == HTTP_RESPONSE && (r->status == 401 || r->status == 403)) {
        a->job = AJ_UNAUTHORIZED;
    } else if (r->outcome != HTTP_CANCELLED) {
        a->job = AJ_UNREACHABLE;
    }
}

enum agent_token agent_read_token_check(const struct http_response *r, int url_wrong)
{
    if (r->outcome != HTTP_RESPONSE)
        return AT_CANT_TELL;
    if (r->status == 404 && (!url_wrong || strstr(r->body, "Job not found")))
        return AT_GOOD;
    if (r->status == 401 || r->status == 403)
        return AT_REFUSED;
    return AT_CANT_TELL;
}

struct health_call {
    const struct config *cfg;
    struct agent_health_answer *a;
    int done;
};

static void health_now_done(const struct http_response *r, void *arg)
{
    struct health_call *h = arg;
    agent_read_health(h->cfg, r, h->a);
    h->done = 1;
}

int agent_health_now(const struct config *cfg, struct agent_health_answer *a)
{
    uv_loop_t loop;
    struct http_client *http = NULL;
    struct health_call h = {cfg, a, 0};
    memset(a, 0, sizeof *a);
    if (uv_loop_init(&loop))
        return BS_ERR;
    int rc = http_client_init(&http, &loop);
    if (rc == 0)
        rc = agent_request(http, cfg, AGENT_HEALTH, NULL, NULL, health_now_done, &h);
    if (rc == 0)
        uv_run(&loop, UV_RUN_DEFAULT); /* until the answer */
    if (http)
        http_client_close(http, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT); /* the client's handles close */
    uv_loop_close(&loop);
    return rc ? rc : h.done ? 0 : BS_ERR;
}
