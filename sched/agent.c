#include "agent.h"
#include "errors.h"
#include "text.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    /* A path segment "." or ".." would turn GET /jobs/{id} into another URL. */
    if (strcmp(id, ".") == 0 || strcmp(id, "..") == 0)
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
    memset(h, 0, sizeof *h);
    if (json_is_boolean(busy) && !json_object_get(o, "active") && !json_object_get(o, "queued") &&
        !json_object_get(o, "capacity")) {
        /* The older single-slot service: one slot, taken while busy. */
        h->busy = json_is_true(busy);
        h->single_slot = 1;
        h->capacity = 1;
        h->active = h->busy;
        json_decref(o);
        return 0;
    }
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

/* Copies at most cap-1 bytes of s[0..n) into out, cut at a UTF-8 boundary,
 * control characters (newlines included) turned into spaces. */
static void copy_line(char *out, size_t cap, const char *s, size_t n)
{
    size_t k = text_utf8_prefix(s, n, cap - 1);
    memcpy(out, s, k);
    out[k] = '\0';
    for (char *c = out; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    }
}

/* "YYYY-MM-DDTHH:MM:SS[.frac][Z|+00:00]" (Python's isoformat, UTC) as ms
 * since the epoch; 0 when it does not read. Other offsets are applied. */
static int64_t iso_ms(const char *s)
{
    struct tm tm = {0};
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2d%*1[T ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 || n == 0)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    const char *p = s + n;
    int64_t frac_ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*p - '0');
        }
        for (; digits < 3; digits++)
            frac_ms *= 10;
    }
    int64_t offset_s = 0;
    if (*p == '+' || *p == '-') {
        int hh = 0, mm = 0;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
            return 0;
        offset_s = (int64_t)(hh * 3600 + mm * 60) * (*p == '-' ? -1 : 1);
    } else if (*p != 'Z' && *p != '\0') {
        return 0;
    }
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return 0;
    return ((int64_t)t - offset_s) * 1000 + frac_ms;
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
    if (err)
        copy_line(job->error, sizeof job->error, err, strlen(err));
    json_t *code = json_object_get(o, "exit_code");
    if (json_is_integer(code)) {
        job->has_exit_code = 1;
        job->exit_code = (long)json_integer_value(code);
    }
    const char *se = json_string_value(json_object_get(o, "stderr"));
    if (se) {
        /* The last non-empty line: usually the reason. */
        size_t end = strlen(se);
        while (end > 0 && (se[end - 1] == '\n' || se[end - 1] == '\r' || se[end - 1] == ' '))
            end--;
        size_t start = end;
        while (start > 0 && se[start - 1] != '\n')
            start--;
        copy_line(job->stderr_tail, sizeof job->stderr_tail, se + start, end - start);
    }
    const char *fin = json_string_value(json_object_get(o, "finished_at"));
    if (fin)
        job->finished_ms = iso_ms(fin);
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

int agent_job_path(const char *id, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!agent_job_id_valid(id))
        return BS_EINVAL;
    size_t k = 0;
    const char prefix[] = "/jobs/";
    if (len < sizeof prefix)
        return BS_EINVAL;
    memcpy(out, prefix, sizeof prefix - 1);
    k = sizeof prefix - 1;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.';
        if (k + (plain ? 1 : 3) + 1 > len)
            return BS_EINVAL;
        if (plain) {
            out[k++] = (char)*p;
        } else {
            out[k++] = '%';
            out[k++] = hex[*p >> 4];
            out[k++] = hex[*p & 15];
        }
    }
    out[k] = '\0';
    return 0;
}

enum agent_post_verdict agent_post_verdict(enum agent_reply_kind kind, long status, int body_usable)
{
    switch (kind) {
    case AR_NOT_SENT:
        return APV_NOT_SENT;
    case AR_NO_ANSWER:
        return APV_AMBIGUOUS;
    case AR_ANSWER:
    case AR_TOO_LARGE:
        break;
    }
    if (status >= 200 && status < 300)
        return kind == AR_ANSWER && body_usable ? APV_ACCEPTED : APV_AMBIGUOUS;
    switch (status) {
    case 400:
    case 422:
        return APV_REJECTED;
    case 401:
    case 403:
        return APV_AUTH;
    case 404:
        return APV_URL;
    case 409:
    case 429:
        return APV_FULL;
    default:
        /* 502/503/504 may come from a proxy after the service took the job;
         * anything else the service never sends: the job may exist. */
        return APV_AMBIGUOUS;
    }
}

const char *agent_post_verdict_name(enum agent_post_verdict v)
{
    static const char *const names[] = {"accepted", "ambiguous", "not_sent", "rejected",
                                        "full", "auth", "url"};
    return (unsigned)v < sizeof names / sizeof names[0] ? names[v] : "?";
}

enum agent_job_meaning agent_job_meaning(enum agent_job_status s)
{
    switch (s) {
    case JOB_COMPLETED:
    case JOB_FAILED:
        return AJM_EXITED;
    case JOB_TIMEOUT:
    case JOB_ERROR:
        return AJM_MAYBE_RUNNING;
    default:
        return AJM_ALIVE;
    }
}

void agent_job_describe(const char *job_id, const struct agent_job *j, char *out, size_t len)
{
    int n = snprintf(out, len, "job %s %s", job_id, agent_job_status_name(j->status));
    const char *sep = " (";
    if (n < 0 || (size_t)n >= len)
        return;
    size_t k = (size_t)n;
#define ADD(...)                                                        \
    do {                                                                \
        int m = snprintf(out + k, len - k, __VA_ARGS__);                \
        if (m < 0 || (size_t)m >= len - k)                              \
            return;                                                     \
        k += (size_t)m;                                                 \
        sep = ", ";                                                     \
    } while (0)
    if (j->has_exit_code)
        ADD("%sexit %ld", sep, j->exit_code);
    if (j->error[0])
        ADD("%serror: %.*s", sep, (int)text_utf8_prefix(j->error, strlen(j->error), 120), j->error);
    if (j->stderr_tail[0])
        ADD("%sstderr: %.*s", sep, (int)text_utf8_prefix(j->stderr_tail, strlen(j->stderr_tail), 120),
            j->stderr_tail);
    if (strcmp(sep, ", ") == 0)
        ADD(")");
#undef ADD
}
