/* fake-agent: an in-memory stand-in for claude-agent-service that keeps the
 * API contract of CONTRACTS.md section 2, plus test knobs under /_fake/.
 *
 * Threading: libmicrohttpd runs one thread per connection (keep-alive
 * supported), so a delayed or hung reply blocks only its own connection. All
 * state sits behind one mutex. Job transitions are computed lazily: every
 * request first replays, in time order, what happened since the last one
 * (jobs finishing after job_ms, queued jobs taking freed slots), so no timer
 * thread is needed and timestamps are exact.
 *
 * Delays (latency_ms, hang) are applied after the request was processed: the
 * job exists even if the client gave up waiting, which is what makes an
 * ambiguous dispatch ambiguous. "delay_before": true moves them before.
 *
 * It also plays BeadBoard's two endpoints (/api/agent-status,
 * /api/agent-dispatch) on the same job table, for MODE=beadboard tests. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_REQUEST_BODY (8u << 20)

enum job_status { JS_QUEUED, JS_RUNNING, JS_COMPLETED, JS_FAILED, JS_TIMEOUT, JS_ERROR };
static const char *const status_names[] = {"queued", "running", "completed", "failed", "timeout", "error"};

/* Contract endpoints, as a bit set for force_status_paths and counters. */
enum endpoint { EP_NONE = 0, EP_HEALTH = 1, EP_EXECUTE = 2, EP_JOBS = 4, EP_BEADBOARD = 8 };

struct job {
    char id[13];
    enum job_status status;
    json_t *agent;          /* string or null */
    char *prompt;
    json_t *metadata;       /* object or null */
    int64_t created_ms, started_ms, finished_ms; /* epoch ms, -1 = null */
    int64_t run_from_ms;    /* job_ms counts from here (reset when job_ms changes) */
    int64_t timeout_ms;     /* from timeout_seconds */
    int has_exit_code, exit_code;
    const char *error;      /* static text or NULL */
    struct job *all_prev, *all_next; /* creation order */
    struct job *st_prev, *st_next;   /* in queued, running or finished */
    struct job *hnext;               /* id hash chain */
};

struct jlist {
    struct job *head, *tail;
    int n;
};

struct config {
    int64_t capacity, queue_limit, job_ms, job_ttl_ms, latency_ms, big_body_bytes;
    int final_status;
    int force_status;
    unsigned force_paths;
    unsigned shape_paths;   /* endpoints malformed/truncated/big bodies apply to */
    int malformed, truncated, big_body_chunked, hang, no_response, drop_mid_body, delay_before;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;    /* hang turned off, or shutting down */
    int shutting_down;
    struct config cfg;
    const char *token;      /* NULL: every authenticated call gets 401 */
    FILE *log;
    struct job *all_head, *all_tail;
    struct jlist queued, running, finished;
    struct job **buckets;
    size_t nbuckets, njobs;
    int64_t posts, n_health, n_execute, n_jobs;
    /* Earliest time a running job can end, so advance() need not scan every
     * running job on every request; valid until a job or the config changes. */
    int64_t next_end;
    int next_end_valid;
    json_t *by_bead;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- time ---------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_t *iso_time(int64_t ms)
{
    if (ms < 0)
        return json_null();
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    char buf[64];
    gmtime_r(&sec, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03d000+00:00", (int)(ms % 1000));
    return json_string(buf);
}

/* ---- job storage ----------------------------------------------------------- */

static size_t id_hash(const char *id)
{
    size_t h = 1469598103934665603u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211u;
    return h;
}

static struct job *job_find(const char *id)
{
    if (!S.nbuckets)
        return NULL;
    for (struct job *j = S.buckets[id_hash(id) & (S.nbuckets - 1)]; j; j = j->hnext)
        if (strcmp(j->id, id) == 0)
            return j;
    return NULL;
}

static int hash_insert(struct job *j)
{
    if (S.njobs + 1 > S.nbuckets * 2) {
        size_t nb = S.nbuckets ? S.nbuckets * 2 : 1024;
        struct job **b = calloc(nb, sizeof *b);
        if (!b)
            return -1;
        for (size_t i = 0; i < S.nbuckets; i++) {
            struct job *k = S.buckets[i], *next;
            for (; k; k = next) {
                next = k->hnext;
                size_t h = id_hash(k->id) & (nb - 1);
                k->hnext = b[h];
                b[h] = k;
            }
        }
        free(S.buckets);
        S.buckets = b;
        S.nbuckets = nb;
    }
    size_t h = id_hash(j->id) & (S.nbuckets - 1);
    j->hnext = S.buckets[h];
    S.buckets[h] = j;
    S.njobs++;
    return 0;
}

static void hash_remove(struct job *j)
{
    struct job **pp = &S.buckets[id_hash(j->id) & (S.nbuckets - 1)];
    while (*pp != j)
        pp = &(*pp)->hnext;
    *pp = j->hnext;
    S.njobs--;
}

static void list_push(struct jlist *l, struct job *j)
{
    j->st_next = NULL;
    j->st_prev = l->tail;
    if (l->tail)
        l->tail->st_next = j;
    else
        l->head = j;
    l->tail = j;
    l->n++;
}

static void list_remove(struct jlist *l, struct job *j)
{
    if (j->st_prev)
        j->st_prev->st_next = j->st_next;
    else
        l->head = j->st_next;
    if (j->st_next)
        j->st_next->st_prev = j->st_prev;
    else
        l->tail = j->st_prev;
    j->st_prev = j->st_next = NULL;
    l->n--;
}

static struct jlist *list_of(const struct job *j)
{
    switch (j->status) {
    case JS_QUEUED: return &S.queued;
    case JS_RUNNING: return &S.running;
    default: return &S.finished;
    }
}

static void job_free(struct job *j)
{
    json_decref(j->agent);
    json_decref(j->metadata);
    free(j->prompt);
    free(j);
}

/* Unlinks j from every index and frees it. */
static void job_drop(struct job *j)
{
    S.next_end_valid = 0;
    list_remove(list_of(j), j);
    hash_remove(j);
    if (j->all_prev)
        j->all_prev->all_next = j->all_next;
    else
        S.all_head = j->all_next;
    if (j->all_next)
        j->all_next->all_prev = j->all_prev;
    else
        S.all_tail = j->all_prev;
    job_free(j);
}

/* ---- job lifecycle ----------------------------------------------------------- */

/* Moves j to status st at time t, keeping lists and timestamps consistent. */
static void job_set_status(struct job *j, enum job_status st, int64_t t)
{
    S.next_end_valid = 0;
    list_remove(list_of(j), j);
    j->status = st;
    j->has_exit_code = 0;
    j->error = NULL;
    switch (st) {
    case JS_QUEUED:
        j->started_ms = j->finished_ms = -1;
        break;
    case JS_RUNNING:
        j->started_ms = j->run_from_ms = t;
        j->finished_ms = -1;
        break;
    default:
        if (j->started_ms < 0)
            j->started_ms = t;
        j->finished_ms = t;
        if (st == JS_COMPLETED || st == JS_FAILED) {
            j->has_exit_code = 1;
            j->exit_code = st == JS_COMPLETED ? 0 : 1;
        }
        if (st == JS_FAILED)
            j->error = "fake-agent: job failed";
        else if (st == JS_TIMEOUT)
            j->error = "fake-agent: job timed out";
        else if (st == JS_ERROR)
            j->error = "fake-agent: agent error";
        break;
    }
    list_push(list_of(j), j);
}

/* When a running job ends (INT64_MAX: not on its own) and with what status. */
static int64_t job_end(const struct job *j, enum job_status *st)
{
    int64_t end = INT64_MAX;
    *st = (enum job_status)S.cfg.final_status;
    if (S.cfg.job_ms > 0)
        end = j->run_from_ms + S.cfg.job_ms;
    if (j->timeout_ms > 0 && j->started_ms + j->timeout_ms < end) {
        end = j->started_ms + j->timeout_ms;
        *st = JS_TIMEOUT;
    }
    return end;
}

static void start_queued(int64_t t)
{
    while (S.queued.head && S.running.n < S.cfg.capacity)
        job_set_status(S.queued.head, JS_RUNNING, t);
}

/* Replays everything that happened up to now, in time order: running jobs
 * end, queued jobs take the freed slots at that moment, expired records go. */
static void advance(int64_t now)
{
    for (;;) {
        if (S.next_end_valid && S.next_end > now)
            break; /* nothing running can have ended yet */
        struct job *first = NULL;
        int64_t first_end = INT64_MAX, min_end = INT64_MAX;
        enum job_status first_st = JS_COMPLETED;
        for (struct job *j = S.running.head; j; j = j->st_next) {
            enum job_status st;
            int64_t end = job_end(j, &st);
            if (end < min_end)
                min_end = end;
            if (end <= now && end < first_end) {
                first = j;
                first_end = end;
                first_st = st;
            }
        }
        if (!first) {
            S.next_end = min_end;
            S.next_end_valid = 1;
            break;
        }
        job_set_status(first, first_st, first_end);
        start_queued(first_end);
    }
    start_queued(now);
    /* finished is in (almost exactly) finishing order. */
    while (S.finished.head && S.finished.head->finished_ms + S.cfg.job_ttl_ms <= now)
        job_drop(S.finished.head);
}

static json_t *job_json(const struct job *j)
{
    return json_pack("{s:s, s:s, s:O, s:s, s:O, s:o, s:o, s:o, s:o, s:o}",
                     "job_id", j->id, "status", status_names[j->status],
                     "agent", j->agent, "prompt", j->prompt,
                     "metadata", j->metadata,
                     "created_at", iso_time(j->created_ms),
                     "started_at", iso_time(j->started_ms),
                     "finished_at", iso_time(j->finished_ms),
                     "exit_code", j->has_exit_code ? json_integer(j->exit_code) : json_null(),
                     "error", j->error ? json_string(j->error) : json_null());
}

/* metadata[key], or JSON null; borrowed reference. */
static json_t *meta_get(const struct job *j, const char *key)
{
    json_t *v = json_is_object(j->metadata) ? json_object_get(j->metadata, key) : NULL;
    return v ? v : json_null();
}

/* ---- replies ------------------------------------------------------------------ */

struct reply {
    unsigned status;
    char *body;             /* malloc'd */
    size_t len;
};

static void reply_json(struct reply *r, unsigned status, json_t *v)
{
    r->status = status;
    r->body = json_dumps(v, JSON_COMPACT);
    r->len = r->body ? strlen(r->body) : 0;
    json_decref(v);
}

static void reply_detail(struct reply *r, unsigned status, const char *detail)
{
    reply_json(r, status, json_pack("{s:s}", "detail", detail));
}

/* A streamed body: the reply, then spaces up to total (valid JSON padding);
 * with cut_at set, the connection is dropped after that many bytes. */
struct body_src {
    char *body;
    size_t len, total, cut_at;
};

static ssize_t body_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct body_src *src = cls;
    if (src->cut_at && pos >= src->cut_at)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (pos >= src->total)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t limit = src->cut_at ? src->cut_at : src->total;
    size_t n = (size_t)(limit - pos) < max ? (size_t)(limit - pos) : max;
    size_t i = 0;
    for (; i < n && pos + i < src->len; i++)
        buf[i] = src->body[pos + i];
    memset(buf + i, ' ', n - i);
    return (ssize_t)n;
}

static void body_free(void *cls)
{
    struct body_src *src = cls;
    free(src->body);
    free(src);
}

/* Sends r (consuming its body), shaped by the knobs in cfg when ep is a
 * contract endpoint listed in shape_paths (0 for the knob endpoints). */
static enum MHD_Result reply_send(struct MHD_Connection *conn, struct reply *r,
                                  const struct config *cfg, unsigned ep)
{
    int contract = (ep & cfg->shape_paths) != 0;
    struct MHD_Response *resp;
    if (!r->body) {
        r->status = 500;
        r->body = strdup("{\"detail\":\"out of memory\"}");
        if (!r->body)
            return MHD_NO;
        r->len = strlen(r->body);
    }
    if (contract && cfg->malformed) {
        static const char bad[] = "{malformed: this is not JSON";
        char *b = strdup(bad);
        if (b) {
            free(r->body);
            r->body = b;
            r->len = strlen(b);
        }
    }
    if (contract && cfg->truncated)
        r->len /= 2;
    size_t total = r->len;
    if (contract && cfg->big_body_bytes > 0 && (size_t)cfg->big_body_bytes > total)
        total = (size_t)cfg->big_body_bytes;
    if (total == r->len && !(contract && cfg->drop_mid_body)) {
        resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_FREE);
        if (!resp)
            free(r->body);
    } else {
        struct body_src *src = calloc(1, sizeof *src);
        if (!src) {
            free(r->body);
            return MHD_NO;
        }
        src->body = r->body;
        src->len = r->len;
        src->total = total;
        if (contract && cfg->drop_mid_body)
            src->cut_at = total / 2 ? total / 2 : 1;
        int chunked = cfg->big_body_chunked && !src->cut_at;
        resp = MHD_create_response_from_callback(chunked ? MHD_SIZE_UNKNOWN : total,
                                                 64 * 1024, body_read, src, body_free);
        if (!resp)
            body_free(src);
    }
    r->body = NULL;
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Sleeps latency_ms, then, for an endpoint in shape_paths, waits while hang
 * is on; both end at shutdown. */
static void reply_delay(int64_t latency_ms, unsigned ep)
{
    pthread_mutex_lock(&S.lock);
    if (latency_ms > 0) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += latency_ms / 1000;
        until.tv_nsec += (latency_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!S.shutting_down &&
               pthread_cond_timedwait(&S.wake, &S.lock, &until) != ETIMEDOUT)
            ;
    }
    while (S.cfg.hang && (S.cfg.shape_paths & ep) && !S.shutting_down)
        pthread_cond_wait(&S.wake, &S.lock);
    pthread_mutex_unlock(&S.lock);
}

/* ---- contract endpoints (called with the lock held) -------------------------- */

static int authorized(struct MHD_Connection *conn)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!S.token || !h || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    return strcmp(h, S.token) == 0;
}

static void do_health(struct reply *r)
{
    advance(now_ms());
    reply_json(r, 200, json_pack("{s:s, s:b, s:i, s:i, s:I}", "status", "ok",
                                 "busy", S.running.n >= S.cfg.capacity,
                                 "active", S.running.n, "queued", S.queued.n,
                                 "capacity", (json_int_t)S.cfg.capacity));
}

static void log_accepted(const struct job *j, int64_t t)
{
    if (!S.log)
        return;
    json_t *line = json_pack("{s:s, s:O, s:O, s:O, s:I}", "job_id", j->id,
                             "bead_id", meta_get(j, "bead_id"),
                             "dispatch_id", meta_get(j, "dispatch_id"),
                             "attempt", meta_get(j, "attempt"), "t_ms", (json_int_t)t);
    if (line) {
        json_dumpf(line, S.log, JSON_COMPACT);
        fputc('\n', S.log);
        fflush(S.log);
        json_decref(line);
    }
}

static void new_job_id(char out[13])
{
    do {
        unsigned char rnd[6];
        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
            static uint64_t ctr;
            uint64_t x = (uint64_t)now_ms() * 2654435761u + ++ctr;
            memcpy(rnd, &x, sizeof rnd);
        }
        for (int i = 0; i < 6; i++)
            snprintf(out + 2 * i, 3, "%02x", rnd[i]);
    } while (job_find(out));
}

static void do_execute(struct MHD_Connection *conn, const char *body, size_t len, struct reply *r)
{
    if (conn && !authorized(conn)) {
        reply_detail(r, 401, "Invalid or missing bearer token");
        return;
    }
    json_error_t jerr;
    json_t *req = json_loadb(body ? body : "", len, 0, &jerr);
    json_t *prompt = req ? json_object_get(req, "prompt") : NULL;
    json_t *agent = req ? json_object_get(req, "agent") : NULL;
    json_t *budget = req ? json_object_get(req, "max_budget_usd") : NULL;
    json_t *timeout = req ? json_object_get(req, "timeout_seconds") : NULL;
    json_t *metadata = req ? json_object_get(req, "metadata") : NULL;
    const char *bad = NULL;
    if (!json_is_object(req))
        bad = "body must be a JSON object";
    else if (!json_is_string(prompt))
        bad = "prompt: field required (string)";
    else if (agent && !json_is_string(agent) && !json_is_null(agent))
        bad = "agent: must be a string";
    else if (budget && !json_is_number(budget))
        bad = "max_budget_usd: must be a number";
    else if (timeout && !json_is_integer(timeout))
        bad = "timeout_seconds: must be an integer";
    else if (metadata && !json_is_object(metadata) && !json_is_null(metadata))
        bad = "metadata: must be an object or null";
    if (bad) {
        reply_detail(r, 422, bad);
        json_decref(req);
        return;
    }
    int64_t now = now_ms();
    advance(now);
    if (S.running.n + S.queued.n >= S.cfg.queue_limit) {
        reply_detail(r, 429, "Queue full");
        json_decref(req);
        return;
    }
    struct job *j = calloc(1, sizeof *j);
    char *p = strdup(json_string_value(prompt));
    if (!j || !p) {
        free(j);
        free(p);
        json_decref(req);
        reply_detail(r, 500, "out of memory");
        return;
    }
    new_job_id(j->id);
    j->prompt = p;
    j->agent = agent ? json_incref(agent) : json_null();
    j->metadata = metadata ? json_deep_copy(metadata) : json_null();
    j->created_ms = now;
    j->started_ms = j->finished_ms = -1;
    j->timeout_ms = (timeout ? json_integer_value(timeout) : 2700) * 1000;
    json_decref(req);
    if (hash_insert(j) < 0) {
        job_free(j);
        reply_detail(r, 500, "out of memory");
        return;
    }
    j->status = JS_QUEUED;
    list_push(&S.queued, j);
    j->all_prev = S.all_tail;
    if (S.all_tail)
        S.all_tail->all_next = j;
    else
        S.all_head = j;
    S.all_tail = j;
    start_queued(now);

    S.posts++;
    json_t *bead = meta_get(j, "bead_id");
    if (json_is_string(bead)) {
        json_t *cnt = json_object_get(S.by_bead, json_string_value(bead));
        json_object_set_new(S.by_bead, json_string_value(bead),
                            json_integer(cnt ? json_integer_value(cnt) + 1 : 1));
    }
    log_accepted(j, now);
    reply_json(r, 202, json_pack("{s:s, s:s}", "job_id", j->id, "status", "queued"));
}

/* BeadBoard's front door (CONTRACTS.md section 3), backed by this fake's own
 * job table: agent-status says busy when every slot runs; agent-dispatch
 * builds its own prompt and submits like /execute (agent beads-task-runner,
 * budget 5, timeout 900), answering 200 with the job id, 400 for a bad body,
 * 409 when busy and 502 when the agent refused. Lock held. */
static void do_beadboard(const char *method, const char *url, const char *body, size_t len,
                         struct reply *r)
{
    advance(now_ms());
    if (strcmp(url, "/api/agent-status") == 0 && strcmp(method, "GET") == 0) {
        reply_json(r, 200, json_pack("{s:b}", "busy", S.running.n >= S.cfg.capacity));
        return;
    }
    if (strcmp(url, "/api/agent-dispatch") != 0 || strcmp(method, "POST") != 0) {
        reply_detail(r, 404, "Not Found");
        return;
    }
    if (S.cfg.force_status && (S.cfg.force_paths & EP_BEADBOARD)) {
        reply_json(r, (unsigned)S.cfg.force_status, json_pack("{s:s}", "error", "forced"));
        return;
    }
    json_t *req = json_loadb(body ? body : "", len, 0, NULL);
    const char *task = json_string_value(json_object_get(req, "taskId"));
    if (!task || !*task) {
        json_decref(req);
        reply_json(r, 400, json_pack("{s:s}", "error", "taskId required"));
        return;
    }
    if (S.running.n >= S.cfg.capacity) {
        json_decref(req);
        reply_json(r, 409, json_pack("{s:s}", "error", "agent busy"));
        return;
    }
    json_t *exec = json_pack("{s:s+, s:s, s:i, s:i, s:{s:s}}", "prompt", "BeadBoard prompt for ", task,
                             "agent", "beads-task-runner", "max_budget_usd", 5, "timeout_seconds", 900,
                             "metadata", "bead_id", task);
    json_decref(req);
    char *eb = exec ? json_dumps(exec, JSON_COMPACT) : NULL;
    json_decref(exec);
    struct reply inner = {0};
    do_execute(NULL, eb, eb ? strlen(eb) : 0, &inner);
    free(eb);
    if (inner.status == 202) {
        json_t *o = json_loadb(inner.body, inner.len, 0, NULL);
        reply_json(r, 200, json_pack("{s:O}", "job_id", json_object_get(o, "job_id")));
        json_decref(o);
    } else {
        reply_json(r, 502, json_pack("{s:s, s:i}", "error", "agent service error", "status", (int)inner.status));
    }
    free(inner.body);
}

static void do_job_get(struct MHD_Connection *conn, const char *id, struct reply *r)
{
    if (!authorized(conn)) {
        reply_detail(r, 401, "Invalid or missing bearer token");
        return;
    }
    advance(now_ms());
    struct job *j = job_find(id);
    if (!j)
        reply_detail(r, 404, "Job not found");
    else
        reply_json(r, 200, job_json(j));
}

/* ---- test knobs (lock held) ------------------------------------------------------ */

static int status_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof status_names / sizeof *status_names); i++)
        if (strcmp(s, status_names[i]) == 0)
            return i;
    return -1;
}

static json_t *paths_json(unsigned set)
{
    json_t *paths = json_array();
    if (set & EP_HEALTH)
        json_array_append_new(paths, json_string("health"));
    if (set & EP_EXECUTE)
        json_array_append_new(paths, json_string("execute"));
    if (set & EP_JOBS)
        json_array_append_new(paths, json_string("jobs"));
    return paths;
}

static json_t *config_json(void)
{
    const struct config *c = &S.cfg;
    json_t *paths = paths_json(c->force_paths);
    return json_pack("{s:I, s:I, s:I, s:I, s:s, s:I, s:i, s:o, s:o, s:b, s:b, s:I, s:b, s:b, s:b, s:b, s:b, s:b}",
                     "capacity", (json_int_t)c->capacity, "queue_limit", (json_int_t)c->queue_limit,
                     "job_ms", (json_int_t)c->job_ms, "job_ttl_ms", (json_int_t)c->job_ttl_ms,
                     "final_status", status_names[c->final_status],
                     "latency_ms", (json_int_t)c->latency_ms, "force_status", c->force_status,
                     "force_status_paths", paths, "shape_paths", paths_json(c->shape_paths),
                     "malformed", c->malformed,
                     "truncated", c->truncated, "big_body_bytes", (json_int_t)c->big_body_bytes,
                     "big_body_chunked", c->big_body_chunked, "hang", c->hang,
                     "no_response", c->no_response, "drop_mid_body", c->drop_mid_body,
                     "delay_before", c->delay_before, "token_set", S.token != NULL);
}

static unsigned endpoint_parse(const char *s)
{
    if (*s == '/')
        s++;
    if (strcmp(s, "health") == 0)
        return EP_HEALTH;
    if (strcmp(s, "execute") == 0)
        return EP_EXECUTE;
    if (strcmp(s, "jobs") == 0)
        return EP_JOBS;
    if (strcmp(s, "beadboard") == 0)
        return EP_BEADBOARD;
    return EP_NONE;
}

/* Applies the given keys to a copy of the config; nothing changes when any
 * key is bad. Returns NULL or the error text. */
static const char *config_apply(json_t *req)
{
    struct config c = S.cfg;
    const char *key;
    json_t *v;
    if (!json_is_object(req))
        return "body must be a JSON object";
    json_object_foreach(req, key, v) {
        int64_t *num = NULL;
        int *flag = NULL;
        int64_t min = 0;
        if (strcmp(key, "capacity") == 0)
            num = &c.capacity;
        else if (strcmp(key, "queue_limit") == 0)
            num = &c.queue_limit;
        else if (strcmp(key, "job_ms") == 0)
            num = &c.job_ms;
        else if (strcmp(key, "job_ttl_ms") == 0)
            num = &c.job_ttl_ms;
        else if (strcmp(key, "latency_ms") == 0)
            num = &c.latency_ms;
        else if (strcmp(key, "big_body_bytes") == 0)
            num = &c.big_body_bytes;
        else if (strcmp(key, "malformed") == 0)
            flag = &c.malformed;
        else if (strcmp(key, "truncated") == 0)
            flag = &c.truncated;
        else if (strcmp(key, "big_body_chunked") == 0)
            flag = &c.big_body_chunked;
        else if (strcmp(key, "hang") == 0)
            flag = &c.hang;
        else if (strcmp(key, "no_response") == 0)
            flag = &c.no_response;
        else if (strcmp(key, "drop_mid_body") == 0)
            flag = &c.drop_mid_body;
        else if (strcmp(key, "delay_before") == 0)
            flag = &c.delay_before;
        else if (strcmp(key, "final_status") == 0) {
            int st = json_is_string(v) ? status_parse(json_string_value(v)) : -1;
            if (st < JS_COMPLETED)
                return "final_status: completed|failed|timeout|error";
            c.final_status = st;
        } else if (strcmp(key, "force_status") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 999 ||
                (json_integer_value(v) > 0 && json_integer_value(v) < 100))
                return "force_status: 0 or an HTTP status";
            c.force_status = (int)json_integer_value(v);
        } else if (strcmp(key, "force_status_paths") == 0 || strcmp(key, "shape_paths") == 0) {
            /* Which contract endpoints a knob applies to; null restores the
             * default (force_status: execute; shaping: all three). */
            int force = strcmp(key, "force_status_paths") == 0;
            unsigned *paths = force ? &c.force_paths : &c.shape_paths;
            size_t i;
            json_t *p;
            if (json_is_null(v)) {
                *paths = force ? EP_EXECUTE : EP_HEALTH | EP_EXECUTE | EP_JOBS;
                continue;
            }
            if (!json_is_array(v))
                return "paths: array of health|execute|jobs";
            *paths = 0;
            json_array_foreach(v, i, p) {
                unsigned ep = json_is_string(p) ? endpoint_parse(json_string_value(p)) : EP_NONE;
                if (ep == EP_NONE)
                    return "paths: array of health|execute|jobs";
                *paths |= ep;
            }
        } else {
            return "unknown config key";
        }
        if (num) {
            if (strcmp(key, "capacity") == 0 || strcmp(key, "job_ttl_ms") == 0)
                min = 1;
            if (!json_is_integer(v) || json_integer_value(v) < min)
                return "number out of range";
            *num = json_integer_value(v);
        }
        if (flag) {
            if (!json_is_boolean(v))
                return "flag must be true or false";
            *flag = json_is_true(v);
        }
    }
    int64_t now = now_ms();
    advance(now); /* settle history under the old config */
    if (c.job_ms != S.cfg.job_ms)
        for (struct job *j = S.running.head; j; j = j->st_next)
            j->run_from_ms = now; /* the new job_ms counts from now */
    S.cfg = c;
    S.next_end_valid = 0; /* job_ms or the like may have changed */
    advance(now);
    pthread_cond_broadcast(&S.wake); /* hang may be off now */
    return NULL;
}

static void do_fake(const char *method, const char *url, const char *body, size_t len,
                    struct reply *r)
{
    json_t *req = len ? json_loadb(body, len, 0, NULL) : json_object();
    int post = strcmp(method, "POST") == 0;
    int64_t now = now_ms();
    if (post && !req) {
        reply_detail(r, 422, "body must be JSON");
        return;
    }
    if (strcmp(url, "/_fake/config") == 0) {
        if (post) {
            const char *err = config_apply(req);
            if (err) {
                reply_detail(r, 422, err);
                json_decref(req);
                return;
            }
        }
        reply_json(r, 200, config_json());
    } else if (post && strcmp(url, "/_fake/forget") == 0) {
        while (S.all_head)
            job_drop(S.all_head);
        reply_json(r, 200, json_pack("{s:b}", "ok", 1));
    } else if (post && strcmp(url, "/_fake/complete-all") == 0) {
        json_t *st = json_object_get(req, "status");
        int status = st ? (json_is_string(st) ? status_parse(json_string_value(st)) : -1)
                        : JS_COMPLETED;
        if (status < JS_COMPLETED) {
            reply_detail(r, 422, "status: completed|failed|timeout|error");
        } else {
            advance(now);
            int n = 0;
            while (S.running.head) {
                job_set_status(S.running.head, (enum job_status)status, now);
                n++;
            }
            while (S.queued.head) {
                job_set_status(S.queued.head, (enum job_status)status, now);
                n++;
            }
            reply_json(r, 200, json_pack("{s:i}", "finished", n));
        }
    } else if (post && strncmp(url, "/_fake/jobs/", 12) == 0) {
        json_t *st = json_object_get(req, "status");
        int status = json_is_string(st) ? status_parse(json_string_value(st)) : -1;
        advance(now);
        struct job *j = job_find(url + 12);
        if (status < 0) {
            reply_detail(r, 422, "status: queued|running|completed|failed|timeout|error");
        } else if (!j) {
            reply_detail(r, 404, "Job not found");
        } else {
            job_set_status(j, (enum job_status)status, now);
            advance(now);
            reply_json(r, 200, job_json(j));
        }
    } else if (!post && strcmp(url, "/_fake/stats") == 0) {
        advance(now);
        json_t *jobs = json_array();
        for (struct job *j = S.all_head; j; j = j->all_next)
            json_array_append_new(jobs, json_pack("{s:s, s:s, s:O, s:O, s:O}", "job_id", j->id,
                                                  "status", status_names[j->status],
                                                  "bead_id", meta_get(j, "bead_id"),
                                                  "dispatch_id", meta_get(j, "dispatch_id"),
                                                  "attempt", meta_get(j, "attempt")));
        reply_json(r, 200, json_pack("{s:I, s:O, s:o, s:{s:I, s:I, s:I}, s:i, s:i}",
                                     "posts", (json_int_t)S.posts, "by_bead", S.by_bead,
                                     "jobs", jobs, "requests",
                                     "health", (json_int_t)S.n_health,
                                     "execute", (json_int_t)S.n_execute,
                                     "jobs", (json_int_t)S.n_jobs,
                                     "active", S.running.n, "queued", S.queued.n));
    } else {
        reply_detail(r, 404, "Not Found");
    }
    json_decref(req);
}

/* ---- request dispatch -------------------------------------------------------------- */

struct req_ctx {
    char *body;
    size_t len, cap;
    int too_big;
};

static enum endpoint classify(const char *method, const char *url, int *method_ok)
{
    *method_ok = 1;
    if (strcmp(url, "/health") == 0) {
        *method_ok = strcmp(method, "GET") == 0;
        return EP_HEALTH;
    }
    if (strcmp(url, "/execute") == 0) {
        *method_ok = strcmp(method, "POST") == 0;
        return EP_EXECUTE;
    }
    if (strncmp(url, "/jobs/", 6) == 0 && url[6] && !strchr(url + 6, '/')) {
        *method_ok = strcmp(method, "GET") == 0;
        return EP_JOBS;
    }
    return EP_NONE;
}

static enum MHD_Result handle(struct MHD_Connection *conn, const char *url, const char *method,
                              struct req_ctx *rc)
{
    struct reply r = {0};
    struct config cfg;
    int method_ok;
    enum endpoint ep = classify(method, url, &method_ok);

    if (ep == EP_NONE) {
        pthread_mutex_lock(&S.lock);
        cfg = S.cfg;
        if (strncmp(url, "/_fake/", 7) == 0)
            do_fake(method, url, rc->body, rc->len, &r);
        else if (strncmp(url, "/api/", 5) == 0)
            do_beadboard(method, url, rc->body, rc->len, &r);
        else
            reply_detail(&r, 404, "Not Found");
        pthread_mutex_unlock(&S.lock);
        return reply_send(conn, &r, &cfg, 0);
    }

    pthread_mutex_lock(&S.lock);
    cfg = S.cfg;
    pthread_mutex_unlock(&S.lock);
    if (cfg.delay_before)
        reply_delay(cfg.latency_ms, ep);

    pthread_mutex_lock(&S.lock);
    if (ep == EP_HEALTH)
        S.n_health++;
    else if (ep == EP_EXECUTE)
        S.n_execute++;
    else
        S.n_jobs++;
    if (!method_ok)
        reply_detail(&r, 405, "Method Not Allowed");
    else if (cfg.force_status && (cfg.force_paths & ep))
        reply_detail(&r, (unsigned)cfg.force_status, "forced");
    else if (rc->too_big)
        reply_detail(&r, 413, "Request body too large");
    else if (ep == EP_HEALTH)
        do_health(&r);
    else if (ep == EP_EXECUTE)
        do_execute(conn, rc->body, rc->len, &r);
    else
        do_job_get(conn, url + 6, &r);
    pthread_mutex_unlock(&S.lock);

    if (!cfg.delay_before)
        reply_delay(cfg.latency_ms, ep);
    if (cfg.no_response) {
        free(r.body);
        return MHD_NO; /* MHD closes the connection without a reply */
    }
    return reply_send(conn, &r, &cfg, ep);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct req_ctx *rc = *con_cls;
    if (!rc) {
        rc = calloc(1, sizeof *rc);
        if (!rc)
            return MHD_NO;
        *con_cls = rc;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rc->too_big || rc->len + n > MAX_REQUEST_BODY) {
            rc->too_big = 1;
            return MHD_YES;
        }
        if (rc->len + n + 1 > rc->cap) {
            size_t cap = rc->cap ? rc->cap : 1024;
            while (cap < rc->len + n + 1)
                cap *= 2;
            char *nb = realloc(rc->body, cap);
            if (!nb)
                return MHD_NO;
            rc->body = nb;
            rc->cap = cap;
        }
        memcpy(rc->body + rc->len, upload_data, n);
        rc->len += n;
        rc->body[rc->len] = '\0';
        return MHD_YES;
    }
    return handle(conn, url, method, rc);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req_ctx *rc = *con_cls;
    if (rc) {
        free(rc->body);
        free(rc);
        *con_cls = NULL;
    }
}

/* ---- command line --------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: fake-agent [--port N (0 = ephemeral)] [--bind 127.0.0.1] [--token T]\n"
          "                  [--capacity N (10)] [--queue-limit N (100)]\n"
          "                  [--job-ms MS (0 = run until told)] [--job-ttl-ms MS (3600000)]\n"
          "                  [--final-status completed|failed|timeout|error]\n"
          "                  [--idle-timeout-s S (5, 0 = none)] [--log FILE] [--port-file FILE]\n",
          f);
}

static int parse_i64(const char *s, int64_t min, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min)
        return -1;
    *out = v;
    return 0;
}

static int write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    int ok = fprintf(f, "%u\n", port) > 0;
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int64_t port = 0, idle_s = 5;
    const char *bind_addr = "127.0.0.1", *log_path = NULL, *port_file = NULL;
    S.cfg = (struct config){.capacity = 10, .queue_limit = 100, .job_ttl_ms = 3600000,
                            .final_status = JS_COMPLETED, .force_paths = EP_EXECUTE,
                            .shape_paths = EP_HEALTH | EP_EXECUTE | EP_JOBS,
                            .big_body_chunked = 1};

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "fake-agent: %s: missing value\n", opt);
            usage(stderr);
            return 2;
        }
        const char *val = argv[++i];
        int bad = 0;
        if (strcmp(opt, "--port") == 0)
            bad = parse_i64(val, 0, &port) || port > 65535;
        else if (strcmp(opt, "--bind") == 0)
            bind_addr = val;
        else if (strcmp(opt, "--token") == 0)
            S.token = *val ? val : NULL;
        else if (strcmp(opt, "--capacity") == 0)
            bad = parse_i64(val, 1, &S.cfg.capacity);
        else if (strcmp(opt, "--queue-limit") == 0)
            bad = parse_i64(val, 0, &S.cfg.queue_limit);
        else if (strcmp(opt, "--job-ms") == 0)
            bad = parse_i64(val, 0, &S.cfg.job_ms);
        else if (strcmp(opt, "--job-ttl-ms") == 0)
            bad = parse_i64(val, 1, &S.cfg.job_ttl_ms);
        else if (strcmp(opt, "--idle-timeout-s") == 0)
            bad = parse_i64(val, 0, &idle_s) || idle_s > 86400;
        else if (strcmp(opt, "--final-status") == 0) {
            int st = status_parse(val);
            bad = st < JS_COMPLETED;
            S.cfg.final_status = st;
        } else if (strcmp(opt, "--log") == 0)
            log_path = val;
        else if (strcmp(opt, "--port-file") == 0)
            port_file = val;
        else {
            fprintf(stderr, "fake-agent: unknown option %s\n", opt);
            usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "fake-agent: bad value for %s: %s\n", opt, val);
            return 2;
        }
    }

    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "fake-agent: --bind wants an IPv4 address: %s\n", bind_addr);
        return 2;
    }
    if (log_path) {
        S.log = fopen(log_path, "a");
        if (!S.log) {
            fprintf(stderr, "fake-agent: %s: %s\n", log_path, strerror(errno));
            return 1;
        }
    }
    S.by_bead = json_object();
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&S.wake, &ca);
    pthread_condattr_destroy(&ca);

    /* Signals go to sigwait below: block them before any thread exists. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, on_request, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)idle_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)4000,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned int)1024,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024),
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "fake-agent: cannot listen on %s:%" PRId64 "\n", bind_addr, port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_in bound;
    socklen_t blen = sizeof bound;
    if (!info || getsockname(info->listen_fd, (struct sockaddr *)&bound, &blen) != 0) {
        fprintf(stderr, "fake-agent: cannot read the bound port\n");
        MHD_stop_daemon(d);
        return 1;
    }
    unsigned actual = ntohs(bound.sin_port);
    if (port_file && write_port_file(port_file, actual) != 0) {
        fprintf(stderr, "fake-agent: cannot write %s: %s\n", port_file, strerror(errno));
        MHD_stop_daemon(d);
        return 1;
    }
    printf("fake-agent listening on %s:%u\n", bind_addr, actual);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;

    pthread_mutex_lock(&S.lock);
    S.shutting_down = 1;
    pthread_cond_broadcast(&S.wake);
    pthread_mutex_unlock(&S.lock);
    MHD_stop_daemon(d);

    while (S.all_head)
        job_drop(S.all_head);
    free(S.buckets);
    json_decref(S.by_bead);
    if (S.log)
        fclose(S.log);
    pthread_cond_destroy(&S.wake);
    return 0;
}
