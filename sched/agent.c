#include "agent.h"
#include "errors.h"
#include "text.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const job_status_names[] = {"queued", "running", "completed", "failed", "timeout", "error"};

const char *agent_job_status_name(enum agent_job_status s)
{
    return (s >= 0 && s < JOB_STATUS_COUNT) ? job_status_names[s] : "?";
}

int agent_job_status_terminal(enum agent_job_status s) { return s >= JOB_COMPLETED; }

int agent_job_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n >= AGENT_JOB_ID_MAX)
        return 0;
    for (const char *p = id; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

/* Parses body as a JSON object; on failure fills why with jansson's reason. */
static json_t *parse_object(const char *body, size_t len, char *why, size_t whylen)
{
    json_error_t e;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
    if (!root) {
        snprintf(why, whylen, "not JSON (%s at byte %d)", e.text, e.position);
        return NULL;
    }
    if (!json_is_object(root)) {
        snprintf(why, whylen, "not a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

static int get_count(json_t *o, const char *key, long *out, char *why, size_t whylen)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000) {
        snprintf(why, whylen, "\"%s\" missing or not a count", key);
        return BS_EINVAL;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

int agent_parse_health(const char *body, size_t len, struct agent_health *h, char *why, size_t whylen)
{
    json_t *o = parse_object(body, len, why, whylen);
    if (!o)
        return BS_EINVAL;
    int rc = BS_EINVAL;
    json_t *busy = json_object_get(o, "busy");
    if (get_count(o, "active", &h->active, why, whylen) ||
        get_count(o, "queued", &h->queued, why, whylen) ||
        get_count(o, "capacity", &h->capacity, why, whylen))
        goto out;
    if (!json_is_boolean(busy)) {
        snprintf(why, whylen, "\"busy\" missing or not a boolean");
        goto out;
    }
    h->busy = json_is_true(busy);
    rc = 0;
out:
    json_decref(o);
    return rc;
}

long agent_free_slots(const struct agent_health *h)
{
    long free_slots = h->capacity - h->active - h->queued;
    return free_slots > 0 ? free_slots : 0;
}

int agent_parse_execute(const char *body, size_t len, char *job_id, size_t cap, char *why, size_t whylen)
{
    json_t *o = parse_object(body, len, why, whylen);
    if (!o)
        return BS_EINVAL;
    int rc = BS_EINVAL;
    const char *id = json_string_value(json_object_get(o, "job_id"));
    if (!id) {
        snprintf(why, whylen, "\"job_id\" missing or not a string");
    } else if (!agent_job_id_valid(id) || strlen(id) >= cap) {
        snprintf(why, whylen, "\"job_id\" is not a plausible job id");
    } else {
        snprintf(job_id, cap, "%s", id);
        rc = 0;
    }
    json_decref(o);
    return rc;
}

int agent_parse_job(const char *body, size_t len, struct agent_job *job, char *why, size_t whylen)
{
    json_t *o = parse_object(body, len, why, whylen);
    if (!o)
        return BS_EINVAL;
    int rc = BS_EINVAL;
    const char *st = json_string_value(json_object_get(o, "status"));
    memset(job, 0, sizeof *job);
    if (!st) {
        snprintf(why, whylen, "\"status\" missing or not a string");
        goto out;
    }
    job->status = JOB_STATUS_COUNT;
    for (int i = 0; i < JOB_STATUS_COUNT; i++) {
        if (strcmp(st, job_status_names[i]) == 0)
            job->status = (enum agent_job_status)i;
    }
    if (job->status == JOB_STATUS_COUNT) {
        snprintf(why, whylen, "unknown job status \"%.32s\"", st);
        goto out;
    }
    const char *err = json_string_value(json_object_get(o, "error"));
    if (err) {
        size_t n = text_utf8_prefix(err, strlen(err), sizeof job->error - 1);
        memcpy(job->error, err, n);
        job->error[n] = '\0';
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

/* A JSON string from untrusted bytes: valid UTF-8 passes as is, anything
 * else is cleaned first. */
static json_t *json_text(const char *s)
{
    json_t *v = json_string(s);
    if (v)
        return v;
    char *clean = text_utf8_clean(s, strlen(s));
    v = clean ? json_string(clean) : NULL;
    free(clean);
    return v;
}

char *agent_execute_body(const char *prompt, const char *agent, double budget_usd,
                         long timeout_s, const char *bead_id, const char *dispatch_id, int attempt)
{
    json_t *meta = json_object();
    json_t *o = json_object();
    char *out = NULL;
    if (!meta || !o)
        goto out;
    if (json_object_set_new(meta, "bead_id", json_text(bead_id)) ||
        json_object_set_new(meta, "dispatch_id", json_text(dispatch_id)) ||
        json_object_set_new(meta, "attempt", json_integer(attempt)) ||
        json_object_set_new(o, "prompt", json_text(prompt)) ||
        json_object_set_new(o, "agent", json_text(agent)) ||
        json_object_set_new(o, "max_budget_usd", json_real(budget_usd)) ||
        json_object_set_new(o, "timeout_seconds", json_integer(timeout_s)) ||
        json_object_set(o, "metadata", meta))
        goto out;
    out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
    json_decref(meta);
    json_decref(o);
    return out;
}

int agent_parse_beadboard_status(const char *body, size_t len, int *busy, char *why, size_t whylen)
{
    json_t *o = parse_object(body, len, why, whylen);
    if (!o)
        return BS_EINVAL;
    json_t *b = json_object_get(o, "busy");
    int rc = BS_EINVAL;
    if (!json_is_boolean(b)) {
        snprintf(why, whylen, "\"busy\" missing or not a boolean");
    } else {
        *busy = json_is_true(b);
        rc = 0;
    }
    json_decref(o);
    return rc;
}

char *agent_beadboard_body(const char *bead_id)
{
    json_t *o = json_object();
    char *out = NULL;
    if (o && json_object_set_new(o, "taskId", json_text(bead_id)) == 0)
        out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return out;
}
