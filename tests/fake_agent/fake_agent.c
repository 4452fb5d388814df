/* fake-agent: an in-memory stand-in for claude-agent-service that keeps the
 * API contract of CONTRACTS.md section 2, including what the real service
 * does badly, plus test knobs under /_fake/.
 *
 * What it copies from the real service (production version, "bounded
 * semaphore"): FIFO queue behind `capacity` slots; 429 {"detail":"Queue
 * full"} once active+queued reaches queue_limit (MAX_QUEUE_DEPTH); job
 * records with only the keys the real one has set so far (output, stderr,
 * exit_code once the agent exited; error for `error`); `timeout` marks the
 * job and frees its slot but the agent process goes on running (and, with
 * the agent side on, goes on writing to its bead); finished records are
 * dropped job_ttl_ms after finishing, but only by the sweep that runs when
 * some job finishes; 422 (body validation) is answered before 401. With
 * single_slot on it is the older single-slot service instead: /health
 * without counts, 409 {"detail":"Agent is busy"} while a job runs, jobs
 * `running` at once, no eviction, and a timed-out job that stays `running`.
 *
 * Every job has an agent "process" (struct run), which starts when the job
 * starts and ends on its own after job_ms (0: when told), or when a knob
 * ends or kills it. The agent side (off unless --agent-db is given) plays
 * the beads-task-runner in that process: it reads ONLY the prompt ("Task
 * id:" and "Job id:" lines, see prompt_field), notes `claimed by agent
 * <job id>` on the bead first, may note progress, and at the end closes the
 * bead, blocks it or leaves it in_progress, writing over SQL the way bd
 * does. /_fake/stats reports, per bead, whether two agent processes ever ran
 * at once.
 *
 * Threading: libmicrohttpd runs one thread per connection (keep-alive
 * supported), so a delayed or hung reply blocks only its own connection. All
 * state sits behind one mutex. Job transitions are computed lazily: every
 * request first replays, in time order, what happened since the last one
 * (processes exiting, timeouts, queued jobs taking freed slots), so no timer
 * thread is needed and timestamps are exact. The agent side has one thread
 * of its own; it writes to the database without holding the lock.
 *
 * Delays (latency_ms, hang) are applied after the request was processed: the
 * job exists even if the client gave up waiting, which is what makes an
 * ambiguous dispatch ambiguous. "delay_before": true moves them before.
 *
 * It also plays BeadBoard's two endpoints (/api/agent-status,
 * /api/agent-dispatch) on the same job table, for MODE=beadboard tests. */
/* The words the prompt asks the agent to write (only the phrases). */
#include "notes.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <mysql.h>
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
#define MAX_OUTPUT_BYTES ((int64_t)256 << 20)

enum job_status { JS_QUEUED, JS_RUNNING, JS_COMPLETED, JS_FAILED, JS_TIMEOUT, JS_ERROR };
static const char *const status_names[] = {"queued", "running", "completed", "failed", "timeout", "error"};

/* Contract endpoints, as a bit set for force_status_paths and counters. */
enum endpoint { EP_NONE = 0, EP_HEALTH = 1, EP_EXECUTE = 2, EP_JOBS = 4, EP_BEADBOARD = 8 };

/* What the agent side does when its process ends on its own. */
enum outcome { OUT_CLOSE, OUT_BLOCK, OUT_LEAVE, OUT_NONE };
static const char *const outcome_names[] = {"close", "block", "leave", "none"};

struct job;

/* The agent process of one job. Owned by S.runs; freed only at exit, so the
 * agent thread may keep a pointer across unlocked database writes. */
struct run {
    struct job *job;          /* NULL once the record was evicted or forgotten */
    char *bead;               /* task id from the prompt, else metadata.bead_id; may be NULL */
    char *task_id, *sched_id; /* "Task id:" / "Job id:" from the prompt; NULL when absent */
    int64_t start_ms;
    int64_t run_from_ms;      /* job_ms counts from here (reset when job_ms changes) */
    int64_t exit_ms;          /* when it exited or was killed; INT64_MAX while it runs */
    int killed;               /* ended without its final actions */
    int finish_now;           /* a knob ended the job: do the final actions now */
    enum outcome outcome;     /* decided when it started */
    /* agent side progress (agent thread only, under the lock) */
    int claimed, notes_written, done, busy;
    int64_t last_note_ms;
    struct run *next;         /* S.runs, newest first */
    struct run *bead_next;    /* same-bead chain in S.by_bead_runs */
};

struct job {
    char id[13];
    enum job_status status;
    int legacy;             /* created in single-slot mode: that version's record shape */
    json_t *agent;          /* string */
    char *prompt;
    json_t *metadata;       /* object or null */
    int64_t created_ms, started_ms, finished_ms; /* epoch ms, -1 = null */
    int64_t timeout_ms;     /* of run time; from timeout_seconds or the timeout_ms knob */
    int exited;             /* record has exit_code, output, stderr */
    int exit_code;
    int64_t output_bytes;   /* 0: one result line, like claude --output-format json */
    char *stderr_text;
    char *error;            /* for `error` */
    struct run *run;        /* NULL until started */
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
    int64_t timeout_ms, output_bytes, exit_code;
    int64_t agent_claim_ms, agent_note_ms;
    int final_status;
    int outcome;
    int force_status;
    unsigned force_paths;
    unsigned shape_paths;   /* endpoints malformed/truncated/big bodies apply to */
    unsigned latency_paths; /* endpoints latency_ms applies to */
    int malformed, truncated, big_body_chunked, hang, no_response, drop_mid_body, delay_before;
    int single_slot;
    int proxy_status;       /* 0, or the status a proxy answers after the service did the work */
    char reply_job_id[64];  /* "": the job's id; else the id a 202 names instead (a hostile service) */
    char *stderr_text;      /* NULL: the default for the status */
    char *error_text;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;    /* hang turned off, or shutting down */
    pthread_cond_t agent_wake; /* something the agent thread may act on */
    int shutting_down;
    struct config cfg;
    const char *token;      /* NULL: every authenticated call gets 401 */
    FILE *log;
    struct job *all_head, *all_tail;
    struct jlist queued, running, finished;
    struct job **buckets;
    size_t nbuckets, njobs;
    int64_t posts, n_health, n_execute, n_jobs;
    int64_t n_stray;          /* requests to no contract path (GET /, /jobs/a/b, ...) */
    int64_t n_reply_id_gets;  /* GET /jobs/<reply_job_id> */
    /* Earliest time a running job can end, so advance() need not scan every
     * running job on every request; valid until a job or the config changes. */
    int64_t next_end;
    int next_end_valid;
    json_t *by_bead;
    /* agent processes */
    struct run *runs;
    struct run **run_buckets; /* by bead */
    size_t nrun_buckets;
    int64_t live_max;         /* most processes alive at once on one bead */
    json_t *overlaps;         /* bead -> times a process started while another ran on it */
    /* agent side */
    const char *agent_db;     /* NULL: off */
    int64_t agent_notes, agent_closes, agent_blocks, agent_errors;
    char agent_last_error[256];
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

static void jl_push(struct jlist *l, struct job *j)
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

static void jl_remove(struct jlist *l, struct job *j)
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

static struct jlist *jl_of(const struct job *j)
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
    free(j->stderr_text);
    free(j->error);
    free(j);
}

/* Unlinks j from every index and frees it. */
static void job_drop(struct job *j)
{
    S.next_end_valid = 0;
    jl_remove(jl_of(j), j);
    hash_remove(j);
    if (j->all_prev)
        j->all_prev->all_next = j->all_next;
    else
        S.all_head = j->all_next;
    if (j->all_next)
        j->all_next->all_prev = j->all_prev;
    else
        S.all_tail = j->all_prev;
    if (j->run)
        j->run->job = NULL; /* the process outlives its record */
    job_free(j);
}

/* ---- agent processes ------------------------------------------------------------ */

/* The value of the first line of prompt that starts with key ("Task id: "),
 * to the end of that line without trailing blanks; malloc'd, or NULL when no
 * line has it or the value is empty. This is all the agent knows: the real
 * service passes nothing but the prompt to the claude CLI. */
static char *prompt_field(const char *prompt, const char *key)
{
    size_t klen = strlen(key);
    for (const char *line = prompt; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > klen && strncmp(line, key, klen) == 0) {
            const char *v = line + klen;
            size_t n = len - klen;
            while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r'))
                n--;
            return n ? strndup(v, n) : NULL;
        }
        line = eol ? eol + 1 : NULL;
    }
    return NULL;
}

/* metadata[key], or JSON null; borrowed reference. */
static json_t *meta_get(const struct job *j, const char *key)
{
    json_t *v = json_is_object(j->metadata) ? json_object_get(j->metadata, key) : NULL;
    return v ? v : json_null();
}

/* When r's process exits (or exited): set when known; without the agent side
 * it exits on its own job_ms after it started; INT64_MAX: not yet known. */
static int64_t run_exit(const struct run *r)
{
    if (r->exit_ms != INT64_MAX)
        return r->exit_ms;
    if (!S.agent_db && S.cfg.job_ms > 0)
        return r->run_from_ms + S.cfg.job_ms;
    return INT64_MAX;
}

static int run_alive(const struct run *r, int64_t t) { return r->start_ms <= t && t < run_exit(r); }

static struct run **run_bucket(const char *bead)
{
    size_t h = 1469598103934665603u;
    for (const char *p = bead; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211u;
    return &S.run_buckets[h & (S.nrun_buckets - 1)];
}

/* Starts j's agent process at t; notes it when another process is still
 * alive on the same bead (two agents on one bead). */
static void run_start(struct job *j, int64_t t)
{
    struct run *r = calloc(1, sizeof *r);
    if (!r)
        return; /* no process bookkeeping; the job itself still runs */
    r->job = j;
    r->task_id = prompt_field(j->prompt, "Task id: ");
    r->sched_id = prompt_field(j->prompt, "Job id: ");
    json_t *b = meta_get(j, "bead_id");
    r->bead = r->task_id ? strdup(r->task_id) : json_is_string(b) ? strdup(json_string_value(b)) : NULL;
    r->start_ms = r->run_from_ms = t;
    r->exit_ms = INT64_MAX;
    r->outcome = (enum outcome)S.cfg.outcome;
    r->last_note_ms = t;
    r->next = S.runs;
    S.runs = r;
    j->run = r;
    if (r->bead && S.run_buckets) {
        int alive = 1;
        for (struct run *o = *run_bucket(r->bead); o; o = o->bead_next)
            if (strcmp(o->bead, r->bead) == 0 && run_alive(o, t))
                alive++;
        if (alive > S.live_max)
            S.live_max = alive;
        if (alive > 1) {
            json_t *n = json_object_get(S.overlaps, r->bead);
            json_object_set_new(S.overlaps, r->bead, json_integer(n ? json_integer_value(n) + 1 : 1));
        }
        struct run **head = run_bucket(r->bead);
        r->bead_next = *head;
        *head = r;
    }
    pthread_cond_broadcast(&S.agent_wake);
}

/* Ends r at t: killed, or exited after (or without) its final actions. */
static void run_end(struct run *r, int64_t t, int killed)
{
    if (!r || r->exit_ms != INT64_MAX)
        return;
    r->exit_ms = t;
    r->killed = killed;
    S.next_end_valid = 0;
    pthread_cond_broadcast(&S.agent_wake);
}

/* ---- job lifecycle ----------------------------------------------------------- */

/* Drops finished records older than job_ttl_ms at time t, as the real
 * service's sweep does; it runs only when some job finishes. */
static void sweep(int64_t t)
{
    struct job *j = S.finished.head, *next;
    for (; j; j = next) {
        next = j->st_next;
        if (j->legacy)
            continue; /* the single-slot version never evicts */
        if (t - j->finished_ms <= S.cfg.job_ttl_ms)
            break;    /* finished is in finishing order */
        job_drop(j);
    }
}

/* Moves j to status st at time t, keeping lists, timestamps and the record
 * fields consistent. The process is the caller's business. */
static void job_set_status(struct job *j, enum job_status st, int64_t t)
{
    S.next_end_valid = 0;
    jl_remove(jl_of(j), j);
    j->status = st;
    j->exited = 0;
    free(j->error);
    free(j->stderr_text);
    j->error = j->stderr_text = NULL;
    switch (st) {
    case JS_QUEUED:
        j->started_ms = j->finished_ms = -1;
        break;
    case JS_RUNNING:
        j->started_ms = t;
        j->finished_ms = -1;
        if (!j->run)
            run_start(j, t);
        break;
    default:
        if (j->started_ms < 0)
            j->started_ms = t;
        j->finished_ms = t;
        if (st == JS_COMPLETED || st == JS_FAILED) {
            j->exited = 1;
            j->exit_code = st == JS_COMPLETED ? 0 : j->run && j->run->killed ? -9 : (int)S.cfg.exit_code;
            j->output_bytes = S.cfg.output_bytes;
            j->stderr_text = strdup(S.cfg.stderr_text ? S.cfg.stderr_text
                                    : st == JS_FAILED ? "fake-agent: the agent failed\n" : "");
        } else if (st == JS_ERROR) {
            j->error = strdup(S.cfg.error_text ? S.cfg.error_text
                              : "git failed (128): fatal: fake-agent: workspace preparation failed");
        }
        break;
    }
    jl_push(jl_of(j), j);
    if (st >= JS_COMPLETED && !j->legacy)
        sweep(t);
}

/* When a running job ends (INT64_MAX: not on its own) and with what status:
 * its process exits (final_status), or its run time passes timeout_ms
 * (`timeout`, while the process goes on). */
static int64_t job_end(const struct job *j, enum job_status *st)
{
    int64_t end = j->run ? run_exit(j->run) : INT64_MAX;
    *st = (enum job_status)S.cfg.final_status;
    if (j->run && j->run->exit_ms != INT64_MAX && j->run->killed)
        *st = JS_FAILED; /* killed by a signal: the CLI's exit status is -9 */
    if (j->timeout_ms > 0 && j->started_ms + j->timeout_ms < end) {
        end = j->started_ms + j->timeout_ms;
        *st = JS_TIMEOUT;
    }
    return end;
}

static void job_start(struct job *j, int64_t t)
{
    job_set_status(j, JS_RUNNING, t);
    if (j->timeout_ms <= 0) {
        /* asyncio.wait_for with timeout <= 0 cancels before the CLI starts. */
        run_end(j->run, t, 1);
        job_set_status(j, JS_TIMEOUT, t);
    }
}

static void start_queued(int64_t t)
{
    while (S.queued.head && S.running.n < (S.cfg.single_slot ? 1 : S.cfg.capacity))
        job_start(S.queued.head, t);
}

/* Replays everything that happened up to now, in time order: processes
 * exit, jobs time out, queued jobs take the freed slots at that moment. */
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
        if (first_st != JS_TIMEOUT && first->run)
            first->run->exit_ms = first_end; /* freeze: job_ms may change later */
        job_set_status(first, first_st, first_end);
        start_queued(first_end);
    }
    start_queued(now);
}

/* The record's `output`: every stdout line of the run. Without the
 * output_bytes knob it is the one JSON line `claude -p --output-format json`
 * prints; with it, lines of about 1 KiB adding up to output_bytes. */
static json_t *output_json(const struct job *j)
{
    json_t *a = json_array();
    if (j->output_bytes <= 0) {
        json_array_append_new(a, json_string("{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,"
                                             "\"result\":\"fake agent finished\"}\n"));
        return a;
    }
    char line[1024];
    int64_t left = j->output_bytes;
    for (long i = 0; left > 0; i++) {
        size_t n = left < (int64_t)sizeof line - 1 ? (size_t)left : sizeof line - 1;
        int h = snprintf(line, sizeof line, "line %ld of job %s ", i, j->id);
        if ((size_t)h >= n) {
            memset(line, 'x', n);
        } else {
            memset(line + h, 'x', n - (size_t)h);
        }
        line[n - 1] = '\n';
        line[n] = '\0';
        if (json_array_append_new(a, json_string(line)) != 0)
            break;
        left -= (int64_t)n;
    }
    return a;
}

/* The record as the real service returns it: only the keys it has set so
 * far, in the order it sets them. */
static json_t *job_json(const struct job *j)
{
    json_t *o = json_object();
    int shown_running = j->legacy && j->status == JS_TIMEOUT; /* never updated there */
    json_object_set_new(o, "status", json_string(status_names[shown_running ? JS_RUNNING : j->status]));
    json_object_set_new(o, "prompt", json_string(j->prompt));
    json_object_set(o, "agent", j->agent);
    if (j->legacy) {
        json_object_set_new(o, "started_at", iso_time(j->started_ms));
    } else {
        json_object_set_new(o, "created_at", iso_time(j->created_ms));
    }
    json_object_set(o, "metadata", j->metadata);
    if (!j->legacy && j->started_ms >= 0)
        json_object_set_new(o, "started_at", iso_time(j->started_ms));
    if (j->status < JS_COMPLETED || shown_running)
        return o;
    if (j->exited) {
        json_object_set_new(o, "exit_code", json_integer(j->exit_code));
        json_object_set_new(o, "output", output_json(j));
        json_object_set_new(o, "stderr", json_string(j->stderr_text ? j->stderr_text : ""));
    } else if (j->status == JS_ERROR) {
        json_object_set_new(o, "error", json_string(j->error ? j->error : ""));
    }
    if (j->legacy) {
        if (j->exited)
            json_object_set_new(o, "finished_at", iso_time(j->finished_ms));
        return o;
    }
    json_object_set_new(o, "finished_at", iso_time(j->finished_ms));
    json_object_set_new(o, "finished_epoch", json_real((double)j->finished_ms / 1000.0));
    return o;
}

/* ---- replies ------------------------------------------------------------------ */

struct reply {
    unsigned status;
    char *body;             /* malloc'd */
    size_t len;
    int html;               /* a proxy's page, not the service's JSON */
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
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->html ? "text/html" : "application/json");
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

/* NULL when the Authorization header carries the token, else the real
 * service's 401 detail: it checks "Bearer " case-sensitively and compares
 * the rest exactly. */
static const char *auth_refusal(struct MHD_Connection *conn)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!S.token)
        return "Service unauthenticated";
    if (!h || strncmp(h, "Bearer ", 7) != 0)
        return "Missing bearer token";
    return strcmp(h + 7, S.token) == 0 ? NULL : "Invalid token";
}

static void do_health(struct reply *r)
{
    advance(now_ms());
    if (S.cfg.single_slot) {
        reply_json(r, 200, json_pack("{s:s, s:b}", "status", "ok", "busy", S.running.n > 0));
        return;
    }
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

/* Appends one FastAPI/pydantic 1.x validation error to errs. */
static void field_error(json_t *errs, const char *field, const char *msg, const char *type)
{
    json_t *loc = field ? json_pack("[s, s]", "body", field) : json_pack("[s]", "body");
    json_array_append_new(errs, json_pack("{s:o, s:s, s:s}", "loc", loc, "msg", msg, "type", type));
}

/* pydantic 1.x `str`: strings, and numbers it turns into strings. */
static void check_str(json_t *errs, json_t *req, const char *field)
{
    json_t *v = json_object_get(req, field);
    if (!v)
        field_error(errs, field, "field required", "value_error.missing");
    else if (json_is_null(v))
        field_error(errs, field, "none is not an allowed value", "type_error.none.not_allowed");
    else if (!json_is_string(v) && !json_is_number(v))
        field_error(errs, field, "str type expected", "type_error.str");
}

/* pydantic 1.x `str` value of a checked field, numbers spelled as Python would. */
static json_t *str_value(json_t *v)
{
    char buf[64];
    if (json_is_string(v))
        return json_incref(v);
    if (json_is_integer(v))
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        snprintf(buf, sizeof buf, "%.17g", json_number_value(v));
    return json_string(buf);
}

/* The body checks FastAPI makes before the handler runs (so before the
 * token check): 422 with pydantic's error list. Returns the errors array
 * (empty when the body is good); new reference. */
static json_t *execute_errors(json_t *req, const json_error_t *jerr)
{
    json_t *errs = json_array();
    if (!req) {
        json_array_append_new(errs, json_pack("{s:[s, i], s:s, s:s}", "loc", "body", jerr->position,
                                              "msg", jerr->text, "type", "value_error.jsondecode"));
        return errs;
    }
    if (!json_is_object(req)) {
        field_error(errs, NULL, "value is not a valid dict", "type_error.dict");
        return errs;
    }
    check_str(errs, req, "prompt");
    check_str(errs, req, "agent");
    json_t *budget = json_object_get(req, "max_budget_usd");
    if (budget && !json_is_number(budget))
        field_error(errs, "max_budget_usd", "value is not a valid float", "type_error.float");
    json_t *timeout = json_object_get(req, "timeout_seconds");
    if (timeout && !json_is_number(timeout))
        field_error(errs, "timeout_seconds", "value is not a valid integer", "type_error.integer");
    json_t *metadata = json_object_get(req, "metadata");
    if (metadata && !json_is_object(metadata) && !json_is_null(metadata))
        field_error(errs, "metadata", "value is not a valid dict", "type_error.dict");
    return errs;
}

/* FastAPI 0.92 reads the body as JSON when there is no Content-Type or it is
 * application/json (or any application/...+json); any other type leaves it bytes, which then
 * fail validation as "not a valid dict". */
static int json_content_type(struct MHD_Connection *conn)
{
    const char *ct = conn ? MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                        MHD_HTTP_HEADER_CONTENT_TYPE) : NULL;
    if (!ct)
        return 1;
    size_t n = strcspn(ct, ";");
    while (n && ct[n - 1] == ' ')
        n--;
    const char *slash = memchr(ct, '/', n);
    if (!slash || (size_t)(slash - ct) != 11 || strncasecmp(ct, "application", 11) != 0)
        return 0;
    size_t sub = n - 12;
    return (sub == 4 && strncasecmp(slash + 1, "json", 4) == 0) ||
           (sub > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0);
}

static void do_execute(struct MHD_Connection *conn, const char *body, size_t len, struct reply *r)
{
    json_error_t jerr;
    json_t *req = NULL, *errs;
    if (!len) {
        errs = json_array();
        field_error(errs, NULL, "field required", "value_error.missing");
    } else if (!json_content_type(conn)) {
        errs = json_array();
        field_error(errs, NULL, "value is not a valid dict", "type_error.dict");
    } else {
        req = json_loadb(body, len, 0, &jerr);
        errs = execute_errors(req, &jerr);
    }
    if (json_array_size(errs)) {
        reply_json(r, 422, json_pack("{s:o}", "detail", errs));
        json_decref(req);
        return;
    }
    json_decref(errs);
    const char *refusal = conn ? auth_refusal(conn) : NULL;
    if (refusal) {
        reply_detail(r, 401, refusal);
        json_decref(req);
        return;
    }
    int64_t now = now_ms();
    advance(now);
    if (S.cfg.single_slot ? S.running.n > 0 : S.running.n + S.queued.n >= S.cfg.queue_limit) {
        reply_detail(r, S.cfg.single_slot ? 409 : 429, S.cfg.single_slot ? "Agent is busy" : "Queue full");
        json_decref(req);
        return;
    }
    struct job *j = calloc(1, sizeof *j);
    json_t *timeout = json_object_get(req, "timeout_seconds");
    json_t *metadata = json_object_get(req, "metadata");
    if (!j) {
        json_decref(req);
        reply_detail(r, 500, "out of memory");
        return;
    }
    json_t *prompt = str_value(json_object_get(req, "prompt"));
    j->prompt = prompt ? strdup(json_string_value(prompt)) : NULL;
    json_decref(prompt);
    j->agent = str_value(json_object_get(req, "agent"));
    if (!j->prompt || !j->agent) {
        job_free(j);
        json_decref(req);
        reply_detail(r, 500, "out of memory");
        return;
    }
    new_job_id(j->id);
    j->legacy = S.cfg.single_slot;
    j->metadata = metadata ? json_deep_copy(metadata) : json_null();
    j->created_ms = now;
    j->started_ms = j->finished_ms = -1;
    /* pydantic 1.x int: a float is truncated */
    int64_t timeout_s = !timeout ? 2700 : json_is_integer(timeout) ? json_integer_value(timeout)
                                                                   : (int64_t)json_real_value(timeout);
    if (timeout_s > 1000000000000LL)
        timeout_s = 1000000000000LL; /* some 30,000 years: no overflow below */
    j->timeout_ms = S.cfg.timeout_ms > 0 ? S.cfg.timeout_ms : timeout_s * 1000;
    json_decref(req);
    if (hash_insert(j) < 0) {
        job_free(j);
        reply_detail(r, 500, "out of memory");
        return;
    }
    j->status = JS_QUEUED;
    jl_push(&S.queued, j);
    j->all_prev = S.all_tail;
    if (S.all_tail)
        S.all_tail->all_next = j;
    else
        S.all_head = j;
    S.all_tail = j;
    if (j->legacy)
        job_start(j, now); /* the single-slot version has no queue */
    else
        start_queued(now);

    S.posts++;
    json_t *bead = meta_get(j, "bead_id");
    if (json_is_string(bead)) {
        json_t *cnt = json_object_get(S.by_bead, json_string_value(bead));
        json_object_set_new(S.by_bead, json_string_value(bead),
                            json_integer(cnt ? json_integer_value(cnt) + 1 : 1));
    }
    log_accepted(j, now);
    reply_json(r, 202, json_pack("{s:s, s:s}", "job_id", j->id, "status",
                                 j->legacy ? "running" : "queued"));
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
        reply_json(r, 200, json_pack("{s:b}", "busy", S.running.n >= (S.cfg.single_slot ? 1 : S.cfg.capacity)));
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
    if (S.running.n >= (S.cfg.single_slot ? 1 : S.cfg.capacity)) {
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
    const char *refusal = auth_refusal(conn);
    if (refusal) {
        reply_detail(r, 401, refusal);
        return;
    }
    advance(now_ms());
    struct job *j = job_find(id);
    if (!j)
        reply_detail(r, 404, "Job not found");
    else
        reply_json(r, 200, job_json(j));
}

/* ---- agent side ------------------------------------------------------------------ */

/* What the beads-task-runner does in its process, with bd replaced by the
 * SQL bd runs (CONTRACTS.md section 4): a note reads the notes column and
 * writes old + "\n" + new back (bd's read-modify-write, not an atomic
 * append), sets updated_at to UTC now and adds an event; with Dolt (or its
 * emulation) every write is followed by DOLT_ADD and DOLT_COMMIT. */

struct db_caps {
    int dolt, events, close_reason;
};

struct db_url {
    char user[128], pass[128], host[128], name[128];
    unsigned port;
};

/* mysql://user:password@host:port/database (the daemon's own form). */
static int db_url_parse(const char *url, struct db_url *u)
{
    memset(u, 0, sizeof *u);
    u->port = 3306;
    if (strncmp(url, "mysql://", 8) != 0)
        return -1;
    const char *p = url + 8, *at = strrchr(p, '@'), *slash;
    if (!at)
        return -1;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon) {
        snprintf(u->user, sizeof u->user, "%.*s", (int)(colon - p), p);
        snprintf(u->pass, sizeof u->pass, "%.*s", (int)(at - colon - 1), colon + 1);
    } else {
        snprintf(u->user, sizeof u->user, "%.*s", (int)(at - p), p);
    }
    p = at + 1;
    slash = strchr(p, '/');
    if (!slash || !slash[1])
        return -1;
    snprintf(u->name, sizeof u->name, "%s", slash + 1);
    colon = memchr(p, ':', (size_t)(slash - p));
    if (colon) {
        snprintf(u->host, sizeof u->host, "%.*s", (int)(colon - p), p);
        u->port = (unsigned)strtoul(colon + 1, NULL, 10);
    } else {
        snprintf(u->host, sizeof u->host, "%.*s", (int)(slash - p), p);
    }
    return u->host[0] && u->user[0] ? 0 : -1;
}

static void agent_error(MYSQL *db, const char *what)
{
    pthread_mutex_lock(&S.lock);
    S.agent_errors++;
    snprintf(S.agent_last_error, sizeof S.agent_last_error, "%s: %s", what,
             db ? mysql_error(db) : "no connection");
    pthread_mutex_unlock(&S.lock);
    fprintf(stderr, "fake-agent: agent side: %s: %s\n", what, db ? mysql_error(db) : "no connection");
}

/* Runs sql and drains every result; 0 or -1. */
static int db_exec(MYSQL *db, const char *sql)
{
    if (mysql_query(db, sql) != 0)
        return -1;
    do {
        MYSQL_RES *res = mysql_store_result(db);
        if (res)
            mysql_free_result(res);
        else if (mysql_field_count(db) != 0)
            return -1;
    } while (mysql_next_result(db) == 0);
    return mysql_errno(db) ? -1 : 0;
}

/* The first column of the first row of sql, malloc'd ("" for NULL), or NULL
 * when there is no row or the query failed (*failed set). */
static char *db_value(MYSQL *db, const char *sql, int *failed)
{
    *failed = 0;
    if (mysql_query(db, sql) != 0) {
        *failed = 1;
        return NULL;
    }
    MYSQL_RES *res = mysql_store_result(db);
    if (!res) {
        *failed = 1;
        return NULL;
    }
    MYSQL_ROW row = mysql_fetch_row(res);
    unsigned long *lens = row ? mysql_fetch_lengths(res) : NULL;
    char *v = row ? strndup(row[0] ? row[0] : "", row[0] ? lens[0] : 0) : NULL;
    mysql_free_result(res);
    while (mysql_next_result(db) == 0)
        ;
    return v;
}

static MYSQL *db_open(struct db_caps *caps)
{
    struct db_url u;
    if (db_url_parse(S.agent_db, &u) != 0) {
        agent_error(NULL, "--agent-db is not mysql://user:password@host:port/database");
        return NULL;
    }
    MYSQL *db = mysql_init(NULL);
    unsigned timeout = 5;
    if (!db)
        return NULL;
    mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    if (!mysql_real_connect(db, u.host, u.user, u.pass, u.name, u.port, NULL, CLIENT_MULTI_RESULTS)) {
        agent_error(db, "connect");
        mysql_close(db);
        return NULL;
    }
    int failed;
    char *v = db_value(db, "SELECT dolt_version()", &failed);
    caps->dolt = !failed;
    free(v);
    v = db_value(db, "SHOW TABLES LIKE 'events'", &failed);
    caps->events = v != NULL;
    free(v);
    v = db_value(db, "SHOW COLUMNS FROM issues LIKE 'close_reason'", &failed);
    caps->close_reason = v != NULL;
    free(v);
    return db;
}

/* 'text' quoted and escaped for db; malloc'd. */
static char *sql_quote(MYSQL *db, const char *s)
{
    size_t n = strlen(s);
    char *q = malloc(2 * n + 3);
    if (!q)
        return NULL;
    q[0] = '\'';
    unsigned long m = mysql_real_escape_string(db, q + 1, s, (unsigned long)n);
    q[m + 1] = '\'';
    q[m + 2] = '\0';
    return q;
}

/* One bd write: sets (an SQL SET list, without updated_at) on the issue,
 * adds an event and commits the way bd does. 0 or -1 (rolled back). */
static int bd_write(MYSQL *db, const struct db_caps *caps, const char *task, const char *verb,
                    const char *sets, const char *event_type, const char *event_json)
{
    char *qid = sql_quote(db, task), *qev = sql_quote(db, event_json ? event_json : "{}");
    char *msg = NULL, *qmsg = NULL, *sql = NULL;
    int rc = -1;
    if (!qid || !qev || asprintf(&msg, "bd: %s %s", verb, task) < 0)
        goto out;
    qmsg = sql_quote(db, msg);
    if (!qmsg || asprintf(&sql, "UPDATE issues SET %s, updated_at = UTC_TIMESTAMP() WHERE id = %s",
                          sets, qid) < 0)
        goto out;
    if (db_exec(db, sql) != 0)
        goto out;
    free(sql);
    sql = NULL;
    if (caps->events &&
        (asprintf(&sql, "INSERT INTO events (issue_id, event_type, actor, new_value) "
                        "VALUES (%s, '%s', 'beads-task-runner', %s)", qid, event_type, qev) < 0 ||
         db_exec(db, sql) != 0))
        goto out;
    free(sql);
    sql = NULL;
    if (caps->dolt) {
        if (db_exec(db, "CALL DOLT_ADD('issues')") != 0 ||
            (caps->events && db_exec(db, "CALL DOLT_ADD('events')") != 0) ||
            asprintf(&sql, "CALL DOLT_COMMIT('-m', %s, '--author', "
                           "'beads-task-runner <agent@fake-agent.invalid>')", qmsg) < 0 ||
            db_exec(db, sql) != 0)
            goto out;
    } else if (db_exec(db, "COMMIT") != 0) {
        goto out;
    }
    rc = 0;
out:
    if (rc != 0) {
        agent_error(db, msg ? msg : "bd write");
        mysql_query(db, "ROLLBACK");
    }
    free(qid);
    free(qev);
    free(msg);
    free(qmsg);
    free(sql);
    return rc;
}

/* bd note: read the notes, append in the client, write the whole column. */
static int bd_note(MYSQL *db, const struct db_caps *caps, const char *task, const char *text)
{
    char *qid = sql_quote(db, task), *sql = NULL, *old = NULL, *notes = NULL, *qnotes = NULL,
         *sets = NULL, *ev = NULL;
    int rc = -1, failed = 0;
    if (!qid || db_exec(db, "START TRANSACTION") != 0 ||
        asprintf(&sql, "SELECT notes FROM issues WHERE id = %s", qid) < 0)
        goto out;
    old = db_value(db, sql, &failed);
    if (!old) {
        if (!failed)
            fprintf(stderr, "fake-agent: agent side: no bead %s to note on\n", task);
        else
            agent_error(db, "bd note: read notes");
        mysql_query(db, "ROLLBACK");
        goto out;
    }
    if (asprintf(&notes, "%s%s%s", old, *old ? "\n" : "", text) < 0)
        goto out;
    qnotes = sql_quote(db, notes);
    json_t *e = json_pack("{s:s}", "notes", text);
    ev = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    if (!qnotes || asprintf(&sets, "notes = %s", qnotes) < 0)
        goto out;
    rc = bd_write(db, caps, task, "note", sets, "updated", ev);
out:
    free(qid);
    free(sql);
    free(old);
    free(notes);
    free(qnotes);
    free(sets);
    free(ev);
    return rc;
}

static int bd_set_status(MYSQL *db, const struct db_caps *caps, const char *task, const char *status,
                         const char *reason)
{
    char *sets = NULL, *qreason = reason ? sql_quote(db, reason) : NULL, *ev = NULL;
    int closing = strcmp(status, "closed") == 0, rc = -1;
    json_t *e = json_pack("{s:s}", "status", status);
    if (reason)
        json_object_set_new(e, "close_reason", json_string(reason));
    ev = e ? json_dumps(e, JSON_COMPACT) : NULL;
    json_decref(e);
    if (db_exec(db, "START TRANSACTION") != 0) {
        agent_error(db, "bd update");
        goto out;
    }
    if (asprintf(&sets, "status = '%s'%s%s%s", status, closing ? ", closed_at = UTC_TIMESTAMP()" : "",
                 closing && caps->close_reason && qreason ? ", close_reason = " : "",
                 closing && caps->close_reason && qreason ? qreason : "") < 0)
        goto out;
    rc = bd_write(db, caps, task, closing ? "close" : "update", sets,
                  closing ? "closed" : "status_changed", ev);
out:
    free(sets);
    free(qreason);
    free(ev);
    return rc;
}

enum act_kind { ACT_CLAIM, ACT_NOTE, ACT_FINISH };

struct act {
    struct run *r;
    enum act_kind kind;
    char *task, *sched; /* copies */
    int n;
    enum outcome outcome;
};

/* Under the lock: the first action due at now (1, a filled), else 0 with
 * *due the next time one will be. Ends processes without a task id when
 * their time is up. */
static int agent_pick(int64_t now, struct act *a, int64_t *due)
{
    *due = INT64_MAX;
    for (struct run *r = S.runs; r; r = r->next) {
        if (r->done || r->busy)
            continue;
        if (r->exit_ms != INT64_MAX && !r->finish_now) {
            r->done = 1; /* killed, or exited without its final actions */
            continue;
        }
        int64_t end = S.cfg.job_ms > 0 ? r->run_from_ms + S.cfg.job_ms : INT64_MAX;
        int finishing = r->finish_now || now >= end;
        enum act_kind kind;
        if (!r->task_id) {
            /* it cannot know its bead: it writes nothing */
            if (finishing) {
                r->done = 1;
                run_end(r, now, 0);
            } else if (end < *due) {
                *due = end;
            }
            continue;
        }
        if (!r->claimed && r->sched_id && !finishing && now < r->start_ms + S.cfg.agent_claim_ms) {
            if (r->start_ms + S.cfg.agent_claim_ms < *due)
                *due = r->start_ms + S.cfg.agent_claim_ms;
            continue;
        }
        if (!r->claimed && r->sched_id) {
            kind = ACT_CLAIM;
        } else if (finishing) {
            kind = ACT_FINISH;
        } else if (S.cfg.agent_note_ms > 0 && now >= r->last_note_ms + S.cfg.agent_note_ms) {
            kind = ACT_NOTE;
        } else {
            r->claimed = 1;
            if (S.cfg.agent_note_ms > 0 && r->last_note_ms + S.cfg.agent_note_ms < *due)
                *due = r->last_note_ms + S.cfg.agent_note_ms;
            if (end < *due)
                *due = end;
            continue;
        }
        a->r = r;
        a->kind = kind;
        a->task = strdup(r->task_id);
        a->sched = r->sched_id ? strdup(r->sched_id) : NULL;
        a->n = r->notes_written + 1;
        a->outcome = r->outcome;
        r->busy = 1;
        return 1;
    }
    return 0;
}

/* Without the lock: the bd commands of one action. */
static void agent_act(MYSQL *db, const struct db_caps *caps, const struct act *a, int64_t *notes,
                      int64_t *closes, int64_t *blocks)
{
    char text[512];
    const char *id = a->sched;
    switch (a->kind) {
    case ACT_CLAIM:
        snprintf(text, sizeof text, NOTES_AGENT_CLAIMED "%s", id);
        *notes += bd_note(db, caps, a->task, text) == 0;
        break;
    case ACT_NOTE:
        snprintf(text, sizeof text, "progress %d: still working", a->n);
        *notes += bd_note(db, caps, a->task, text) == 0;
        break;
    case ACT_FINISH:
        if (a->outcome == OUT_CLOSE) {
            if (id)
                snprintf(text, sizeof text, NOTES_AGENT_COMPLETED "%s", id);
            else
                snprintf(text, sizeof text, "completed (the prompt gave no job id)");
            *notes += bd_note(db, caps, a->task, text) == 0;
            *closes += bd_set_status(db, caps, a->task, "closed", text) == 0;
        } else if (a->outcome == OUT_BLOCK) {
            *blocks += bd_set_status(db, caps, a->task, "blocked", NULL) == 0;
            *notes += bd_note(db, caps, a->task, "blocked: out of rails (fake agent told to block)") == 0;
        } else if (a->outcome == OUT_LEAVE) {
            *notes += bd_note(db, caps, a->task,
                              "stopping here without finishing; the orchestrator decides next") == 0;
        }
        break;
    }
}

static void *agent_main(void *arg)
{
    (void)arg;
    MYSQL *db = NULL;
    struct db_caps caps = {0};
    pthread_mutex_lock(&S.lock);
    while (!S.shutting_down) {
        int64_t now = now_ms(), due;
        advance(now);
        struct act a = {0};
        if (agent_pick(now, &a, &due)) {
            pthread_mutex_unlock(&S.lock);
            int64_t notes = 0, closes = 0, blocks = 0;
            if (db && mysql_ping(db) != 0) {
                mysql_close(db);
                db = NULL;
            }
            if (!db)
                db = db_open(&caps);
            if (db)
                agent_act(db, &caps, &a, &notes, &closes, &blocks);
            pthread_mutex_lock(&S.lock);
            S.agent_notes += notes;
            S.agent_closes += closes;
            S.agent_blocks += blocks;
            struct run *r = a.r;
            r->busy = 0;
            if (a.kind == ACT_CLAIM)
                r->claimed = 1;
            else if (a.kind == ACT_NOTE)
                r->notes_written++;
            if (a.kind != ACT_FINISH) {
                r->last_note_ms = now_ms();
            } else {
                r->done = 1;
                r->finish_now = 0;
                run_end(r, now_ms(), 0); /* exits after its final writes */
            }
            free(a.task);
            free(a.sched);
            continue;
        }
        if (S.next_end_valid && S.next_end < due)
            due = S.next_end;
        if (due == INT64_MAX) {
            pthread_cond_wait(&S.agent_wake, &S.lock);
        } else {
            struct timespec until = {.tv_sec = due / 1000, .tv_nsec = (due % 1000) * 1000000};
            pthread_cond_timedwait(&S.agent_wake, &S.lock, &until);
        }
    }
    pthread_mutex_unlock(&S.lock);
    if (db)
        mysql_close(db);
    mysql_thread_end();
    return NULL;
}

/* ---- test knobs (lock held) ------------------------------------------------------ *
 *
 * POST /_fake/config {key: value, ...}; GET /_fake/config shows them all.
 *   capacity, queue_limit     MAX_CONCURRENCY, MAX_QUEUE_DEPTH (10, 100)
 *   job_ms                    how long an agent runs (0: until a knob ends it)
 *   final_status              how a job ends when its agent exits (completed)
 *   timeout_ms                run time before `timeout` (0: the request's
 *                             timeout_seconds; the agent keeps running)
 *   job_ttl_ms                JOB_TTL_SECONDS (3600000)
 *   single_slot               the older single-slot service
 *   output_bytes              stdout of a finished job (0: one result line)
 *   exit_code, stderr, error  of failed / error records (null: defaults)
 *   agent_outcome             agent side at the end: close|block|leave|none
 *   agent_claim_ms            agent side: delay of the claim note (100)
 *   agent_note_ms             agent side: progress note period (0: none)
 *   latency_ms, hang, delay_before, no_response, drop_mid_body, malformed,
 *   truncated, big_body_bytes, big_body_chunked, shape_paths,
 *   force_status, force_status_paths
 *                             transport faults (see reply_send, reply_delay);
 *                             force_status answers instead of the service
 *   latency_paths             the endpoints latency_ms applies to (all three)
 *   reply_job_id              a 202 names this job id instead of the job's own
 *                             (".." and the like); stats count GETs of it
 *                             (requests.reply_id_gets) and of stray paths
 *                             (requests.stray)
 *   proxy_status              a proxy's answer to POST /execute (e.g. 504,
 *                             nginx's HTML page) AFTER the service did the
 *                             work: the job exists and runs
 * POST /_fake/jobs/{id} {"status": s, "process": "exit"|"kill"|"keep"}
 *                             set a job's status and/or end its agent
 * POST /_fake/complete-all {"status": s}   every queued and running job
 * POST /_fake/forget          a restart: records and agent processes go
 * GET  /_fake/stats           posts, per-bead POST counts, jobs (with the
 *                             ids parsed from each prompt), live agent
 *                             processes and overlaps per bead, agent side
 *                             write counts */

static int status_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof status_names / sizeof *status_names); i++)
        if (strcmp(s, status_names[i]) == 0)
            return i;
    return -1;
}

enum process_mode { PROC_EXIT, PROC_KILL, PROC_KEEP };

static int process_parse(const char *s)
{
    return strcmp(s, "exit") == 0 ? PROC_EXIT : strcmp(s, "kill") == 0 ? PROC_KILL
         : strcmp(s, "keep") == 0 ? PROC_KEEP : -1;
}

static int default_process(enum job_status st)
{
    return st == JS_COMPLETED || st == JS_FAILED ? PROC_EXIT : st == JS_ERROR ? PROC_KILL : PROC_KEEP;
}

/* Ends r (or not) as a knob asked. exit: with the agent side on, its final
 * writes come first (the agent thread ends it); a job still running then
 * ends with final_status. kill: no final writes; a running job fails. */
static void process_apply(struct run *r, int mode, int64_t now)
{
    if (!r || r->exit_ms != INT64_MAX || mode == PROC_KEEP)
        return;
    if (mode == PROC_EXIT && S.agent_db && r->task_id && !r->done) {
        r->finish_now = 1;
        if (!r->job || r->job->status != JS_RUNNING)
            r->exit_ms = now; /* the record is final already */
        S.next_end_valid = 0;
        pthread_cond_broadcast(&S.agent_wake);
        return;
    }
    run_end(r, now, mode == PROC_KILL);
}

static json_t *process_state(const struct run *r, int64_t now)
{
    if (!r)
        return json_string("none");
    if (run_alive(r, now))
        return json_string("running");
    return json_string(r->killed ? "killed" : "exited");
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
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:s, s:I, s:i, s:o, s:o, s:o, s:b, s:b, s:I, s:b, s:b, s:b, s:b, s:b, s:b}",
                     "capacity", (json_int_t)c->capacity, "queue_limit", (json_int_t)c->queue_limit,
                     "job_ms", (json_int_t)c->job_ms, "job_ttl_ms", (json_int_t)c->job_ttl_ms,
                     "final_status", status_names[c->final_status],
                     "latency_ms", (json_int_t)c->latency_ms, "force_status", c->force_status,
                     "force_status_paths", paths, "shape_paths", paths_json(c->shape_paths),
                     "latency_paths", paths_json(c->latency_paths),
                     "malformed", c->malformed,
                     "truncated", c->truncated, "big_body_bytes", (json_int_t)c->big_body_bytes,
                     "big_body_chunked", c->big_body_chunked, "hang", c->hang,
                     "no_response", c->no_response, "drop_mid_body", c->drop_mid_body,
                     "delay_before", c->delay_before, "token_set", S.token != NULL);
    json_object_set_new(o, "single_slot", json_boolean(c->single_slot));
    json_object_set_new(o, "proxy_status", json_integer(c->proxy_status));
    json_object_set_new(o, "reply_job_id", json_string(c->reply_job_id));
    json_object_set_new(o, "timeout_ms", json_integer(c->timeout_ms));
    json_object_set_new(o, "output_bytes", json_integer(c->output_bytes));
    json_object_set_new(o, "exit_code", json_integer(c->exit_code));
    json_object_set_new(o, "stderr", c->stderr_text ? json_string(c->stderr_text) : json_null());
    json_object_set_new(o, "error", c->error_text ? json_string(c->error_text) : json_null());
    json_object_set_new(o, "agent_outcome", json_string(outcome_names[c->outcome]));
    json_object_set_new(o, "agent_claim_ms", json_integer(c->agent_claim_ms));
    json_object_set_new(o, "agent_note_ms", json_integer(c->agent_note_ms));
    json_object_set_new(o, "agent_side", json_boolean(S.agent_db != NULL));
    return o;
}

static int outcome_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof outcome_names / sizeof *outcome_names); i++)
        if (strcmp(s, outcome_names[i]) == 0)
            return i;
    return -1;
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
    json_t *stderr_v = NULL, *error_v = NULL; /* borrowed; applied at the end */
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
        else if (strcmp(key, "timeout_ms") == 0)
            num = &c.timeout_ms;
        else if (strcmp(key, "output_bytes") == 0)
            num = &c.output_bytes;
        else if (strcmp(key, "exit_code") == 0) {
            num = &c.exit_code;
            min = -255;
        } else if (strcmp(key, "agent_claim_ms") == 0)
            num = &c.agent_claim_ms;
        else if (strcmp(key, "agent_note_ms") == 0)
            num = &c.agent_note_ms;
        else if (strcmp(key, "single_slot") == 0)
            flag = &c.single_slot;
        else if (strcmp(key, "agent_outcome") == 0) {
            int o = json_is_string(v) ? outcome_parse(json_string_value(v)) : -1;
            if (o < 0)
                return "agent_outcome: close|block|leave|none";
            c.outcome = o;
        } else if (strcmp(key, "stderr") == 0 || strcmp(key, "error") == 0) {
            if (!json_is_string(v) && !json_is_null(v))
                return "stderr, error: a string or null (the default)";
            *(strcmp(key, "stderr") == 0 ? &stderr_v : &error_v) = v;
        }
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
        } else if (strcmp(key, "reply_job_id") == 0) {
            if (!json_is_string(v) || strlen(json_string_value(v)) >= sizeof c.reply_job_id)
                return "reply_job_id: a string under 64 bytes (\"\" for the real id)";
            snprintf(c.reply_job_id, sizeof c.reply_job_id, "%s", json_string_value(v));
        } else if (strcmp(key, "proxy_status") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 599 ||
                (json_integer_value(v) > 0 && json_integer_value(v) < 100))
                return "proxy_status: 0 or an HTTP status";
            c.proxy_status = (int)json_integer_value(v);
        } else if (strcmp(key, "force_status") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 999 ||
                (json_integer_value(v) > 0 && json_integer_value(v) < 100))
                return "force_status: 0 or an HTTP status";
            c.force_status = (int)json_integer_value(v);
        } else if (strcmp(key, "force_status_paths") == 0 || strcmp(key, "shape_paths") == 0 ||
                   strcmp(key, "latency_paths") == 0) {
            /* Which contract endpoints a knob applies to; null restores the
             * default (force_status: execute; shaping, latency: all three). */
            int force = strcmp(key, "force_status_paths") == 0;
            unsigned *paths = force ? &c.force_paths
                              : strcmp(key, "shape_paths") == 0 ? &c.shape_paths : &c.latency_paths;
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
            if (!json_is_integer(v) || json_integer_value(v) < min ||
                (num == &c.output_bytes && json_integer_value(v) > MAX_OUTPUT_BYTES) ||
                (num == &c.exit_code && json_integer_value(v) > 255))
                return "number out of range";
            *num = json_integer_value(v);
        }
        if (flag) {
            if (!json_is_boolean(v))
                return "flag must be true or false";
            *flag = json_is_true(v);
        }
    }
    if (stderr_v) {
        c.stderr_text = json_is_string(stderr_v) ? strdup(json_string_value(stderr_v)) : NULL;
        free(S.cfg.stderr_text);
    }
    if (error_v) {
        c.error_text = json_is_string(error_v) ? strdup(json_string_value(error_v)) : NULL;
        free(S.cfg.error_text);
    }
    int64_t now = now_ms();
    advance(now); /* settle history under the old config */
    if (c.job_ms != S.cfg.job_ms)
        for (struct run *r = S.runs; r; r = r->next)
            if (r->exit_ms == INT64_MAX)
                r->run_from_ms = now; /* the new job_ms counts from now */
    S.cfg = c;
    pthread_cond_broadcast(&S.agent_wake);
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
        /* A restart: every record goes, and so does every agent process. */
        advance(now);
        for (struct run *run = S.runs; run; run = run->next)
            run_end(run, now, 1);
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
                struct job *j = S.running.head;
                job_set_status(j, (enum job_status)status, now);
                process_apply(j->run, default_process((enum job_status)status), now);
                n++;
            }
            while (S.queued.head) {
                job_set_status(S.queued.head, (enum job_status)status, now);
                n++;
            }
            reply_json(r, 200, json_pack("{s:i}", "finished", n));
        }
    } else if (post && strncmp(url, "/_fake/jobs/", 12) == 0) {
        /* {"status": s} and/or {"process": "exit"|"kill"|"keep"}: what
         * happens to the agent process; by default completed/failed end it
         * (exit: the agent side does its final writes first), error kills
         * it, timeout (and anything else) leaves it running. */
        json_t *st = json_object_get(req, "status"), *pr = json_object_get(req, "process");
        int status = json_is_string(st) ? status_parse(json_string_value(st)) : -1;
        int process = json_is_string(pr) ? process_parse(json_string_value(pr)) : -1;
        advance(now);
        struct job *j = job_find(url + 12);
        if ((st && status < 0) || (!st && !pr)) {
            reply_detail(r, 422, "status: queued|running|completed|failed|timeout|error");
        } else if (pr && process < 0) {
            reply_detail(r, 422, "process: exit|kill|keep");
        } else if (!j) {
            reply_detail(r, 404, "Job not found");
        } else {
            if (st)
                job_set_status(j, (enum job_status)status, now);
            process_apply(j->run, pr ? process : st ? default_process((enum job_status)status) : PROC_KEEP, now);
            advance(now);
            reply_json(r, 200, job_json(j));
        }
    } else if (!post && strcmp(url, "/_fake/stats") == 0) {
        advance(now);
        json_t *jobs = json_array();
        for (struct job *j = S.all_head; j; j = j->all_next)
            json_array_append_new(jobs, json_pack("{s:s, s:s, s:O, s:O, s:O, s:o, s:o, s:o}", "job_id", j->id,
                                                  "status", status_names[j->status],
                                                  "bead_id", meta_get(j, "bead_id"),
                                                  "dispatch_id", meta_get(j, "dispatch_id"),
                                                  "attempt", meta_get(j, "attempt"),
                                                  "task_id", j->run && j->run->task_id ? json_string(j->run->task_id) : json_null(),
                                                  "prompt_job_id", j->run && j->run->sched_id ? json_string(j->run->sched_id) : json_null(),
                                                  "process", process_state(j->run, now)));
        int alive = 0;
        json_t *alive_by_bead = json_object();
        for (struct run *run = S.runs; run; run = run->next) {
            if (!run_alive(run, now))
                continue;
            alive++;
            if (run->bead) {
                json_t *n = json_object_get(alive_by_bead, run->bead);
                json_object_set_new(alive_by_bead, run->bead, json_integer(n ? json_integer_value(n) + 1 : 1));
            }
        }
        reply_json(r, 200, json_pack("{s:I, s:O, s:o, s:{s:I, s:I, s:I, s:I, s:I}, s:i, s:i, "
                                     "s:{s:i, s:o, s:I, s:O}, s:{s:b, s:I, s:I, s:I, s:I, s:s}}",
                                     "posts", (json_int_t)S.posts, "by_bead", S.by_bead,
                                     "jobs", jobs, "requests",
                                     "health", (json_int_t)S.n_health,
                                     "execute", (json_int_t)S.n_execute,
                                     "jobs", (json_int_t)S.n_jobs,
                                     "stray", (json_int_t)S.n_stray,
                                     "reply_id_gets", (json_int_t)S.n_reply_id_gets,
                                     "active", S.running.n, "queued", S.queued.n,
                                     "processes", "alive", alive, "alive_by_bead", alive_by_bead,
                                     "max_alive_per_bead", (json_int_t)S.live_max,
                                     "overlaps", S.overlaps,
                                     "agent", "on", S.agent_db != NULL,
                                     "notes", (json_int_t)S.agent_notes,
                                     "closes", (json_int_t)S.agent_closes,
                                     "blocks", (json_int_t)S.agent_blocks,
                                     "errors", (json_int_t)S.agent_errors,
                                     "last_error", S.agent_last_error));
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
        else {
            S.n_stray++;
            reply_detail(&r, 404, "Not Found");
        }
        pthread_mutex_unlock(&S.lock);
        return reply_send(conn, &r, &cfg, 0);
    }

    pthread_mutex_lock(&S.lock);
    cfg = S.cfg;
    pthread_mutex_unlock(&S.lock);
    if (cfg.delay_before)
        reply_delay((cfg.latency_paths & ep) ? cfg.latency_ms : 0, ep);

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
    else {
        if (cfg.reply_job_id[0] && strcmp(url + 6, cfg.reply_job_id) == 0)
            S.n_reply_id_gets++;
        do_job_get(conn, url + 6, &r);
    }
    if (ep == EP_EXECUTE && r.status == 202 && cfg.reply_job_id[0]) {
        /* The job exists under its own id; the answer names another. */
        free(r.body);
        r.body = NULL;
        reply_json(&r, 202, json_pack("{s:s, s:s}", "job_id", cfg.reply_job_id, "status", "queued"));
    }
    pthread_mutex_unlock(&S.lock);

    if (!cfg.delay_before)
        reply_delay((cfg.latency_paths & ep) ? cfg.latency_ms : 0, ep);
    if (cfg.no_response) {
        free(r.body);
        return MHD_NO; /* MHD closes the connection without a reply */
    }
    if (cfg.proxy_status && ep == EP_EXECUTE) {
        /* A proxy in front answers instead, after the service did the work
         * (the job exists): nginx's page for that status. */
        char page[256];
        snprintf(page, sizeof page, "<html>\r\n<head><title>%d Proxy Error</title></head>\r\n<body>\r\n"
                 "<center><h1>%d Proxy Error</h1></center>\r\n<hr><center>nginx</center>\r\n"
                 "</body>\r\n</html>\r\n", cfg.proxy_status, cfg.proxy_status);
        free(r.body);
        r.body = strdup(page);
        r.len = r.body ? strlen(r.body) : 0;
        r.status = (unsigned)cfg.proxy_status;
        r.html = 1;
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
          "                  [--timeout-ms MS (0 = the request's timeout_seconds)]\n"
          "                  [--single-slot] (the older single-slot service)\n"
          "                  [--agent-db mysql://user:password@host:port/db] (agent side on)\n"
          "                  [--agent-outcome close|block|leave|none (close)]\n"
          "                  [--agent-note-ms MS (0 = no progress notes)]\n"
          "                  [--agent-claim-ms MS (100 = delay of the claim note)]\n"
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
                            .latency_paths = EP_HEALTH | EP_EXECUTE | EP_JOBS,
                            .big_body_chunked = 1, .exit_code = 1, .outcome = OUT_CLOSE,
                            /* a real agent needs a workspace and a model call before its
                             * first bd note; 0 would race every 202 with its claim */
                            .agent_claim_ms = 100};

    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(opt, "--single-slot") == 0) {
            S.cfg.single_slot = 1;
            continue;
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
        else if (strcmp(opt, "--timeout-ms") == 0)
            bad = parse_i64(val, 0, &S.cfg.timeout_ms);
        else if (strcmp(opt, "--agent-note-ms") == 0)
            bad = parse_i64(val, 0, &S.cfg.agent_note_ms);
        else if (strcmp(opt, "--agent-claim-ms") == 0)
            bad = parse_i64(val, 0, &S.cfg.agent_claim_ms);
        else if (strcmp(opt, "--agent-db") == 0) {
            struct db_url u;
            bad = db_url_parse(val, &u) != 0;
            S.agent_db = val;
        } else if (strcmp(opt, "--agent-outcome") == 0) {
            int o = outcome_parse(val);
            bad = o < 0;
            S.cfg.outcome = o;
        } else if (strcmp(opt, "--job-ttl-ms") == 0)
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
            /* a database URL carries a password: never echo it */
            fprintf(stderr, "fake-agent: bad value for %s: %s\n", opt,
                    strcmp(opt, "--agent-db") == 0 ? "(not mysql://user:password@host:port/db)" : val);
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
    S.overlaps = json_object();
    S.nrun_buckets = 4096;
    S.run_buckets = calloc(S.nrun_buckets, sizeof *S.run_buckets);
    pthread_cond_init(&S.agent_wake, NULL);
    if (!S.by_bead || !S.overlaps || !S.run_buckets) {
        fprintf(stderr, "fake-agent: out of memory\n");
        return 1;
    }
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
    pthread_t agent_thread;
    if (S.agent_db) {
        if (mysql_library_init(0, NULL, NULL) != 0 ||
            pthread_create(&agent_thread, NULL, agent_main, NULL) != 0) {
            fprintf(stderr, "fake-agent: cannot start the agent side\n");
            MHD_stop_daemon(d);
            return 1;
        }
    }
    printf("fake-agent listening on %s:%u\n", bind_addr, actual);
    fflush(stdout);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0)
        ;

    pthread_mutex_lock(&S.lock);
    S.shutting_down = 1;
    pthread_cond_broadcast(&S.wake);
    pthread_cond_broadcast(&S.agent_wake);
    pthread_mutex_unlock(&S.lock);
    MHD_stop_daemon(d);
    if (S.agent_db) {
        pthread_join(agent_thread, NULL);
        mysql_library_end();
    }

    while (S.all_head)
        job_drop(S.all_head);
    free(S.buckets);
    while (S.runs) {
        struct run *r = S.runs;
        S.runs = r->next;
        free(r->bead);
        free(r->task_id);
        free(r->sched_id);
        free(r);
    }
    free(S.run_buckets);
    free(S.cfg.stderr_text);
    free(S.cfg.error_text);
    json_decref(S.by_bead);
    json_decref(S.overlaps);
    if (S.log)
        fclose(S.log);
    pthread_cond_destroy(&S.wake);
    pthread_cond_destroy(&S.agent_wake);
    return 0;
}
