/* `beads-sched explain BEAD [--json]`: why a bead is or is not dispatched
 * now. Asks Dolt (the bead, its readiness facts and open blockers), the
 * store (read-only; a missing store means the bead was never seen) and the
 * agent's GET /health, and prints every eligibility rule of the dispatcher
 * with pass/fail and the value seen, then a one-line verdict.
 *
 * One source of truth: the readiness rules are ready_rules (sched/ready.h)
 * over the bead's row facts and the same readiness snapshot the dispatcher
 * loads (beads_ready_load), the function beads_candidates applies to every
 * candidate; the store rules mirror dispatch.c's candidate_waits and
 * paused_now. Nothing is written anywhere. Exit 0 whether or not the bead
 * would be dispatched; 1 when it does not exist or Dolt cannot be reached. */
#include "cli.h"
#include "candidates.h"

#include "agent.h"
#include "agent_client.h"
#include "beads.h"
#include "clock.h"
#include "dolt.h"
#include "errors.h"
#include "log.h"
#include "report.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum result { R_PASS, R_FAIL, R_UNKNOWN, R_SKIPPED };
static const char *const result_word[] = {"pass", "FAIL", "unknown", "-"};
static const char *const result_json[] = {"pass", "fail", "unknown", "skipped"};

struct rule {
    const char *name;
    enum result result;
    char seen[640];
};

struct explain {
    const struct config *cfg;
    struct rule rules[32];
    size_t n;
    int64_t now;
};

/* Appends a rule with its result and what was seen (printf format, cut to
 * fit). */
static void add_rule(struct explain *e, const char *name, enum result r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_rule(struct explain *e, const char *name, enum result r, const char *fmt, ...)
{
    if (e->n == sizeof e->rules / sizeof e->rules[0])
        return; /* defensive: the rules below are fewer */
    struct rule *x = &e->rules[e->n++];
    x->name = name;
    x->result = r;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->seen, sizeof x->seen, fmt, ap);
    va_end(ap);
}

/* The first rule whose result is r, else NULL. */
static const struct rule *first_with(const struct explain *e, enum result r)
{
    for (size_t i = 0; i < e->n; i++) {
        if (e->rules[i].result == r)
            return &e->rules[i];
    }
    return NULL;
}

/* ---- Dolt ---- */


/* Where Dolt is, for messages: host:port/db or socket/db, never the
 * password. */
static void dolt_where(const struct config *cfg, char *buf, size_t len)
{
    if (cfg->dolt.socket)
        snprintf(buf, len, "%.300s (socket)/%.100s", cfg->dolt.socket, cfg->dolt.database);
    else
        snprintf(buf, len, "%.300s:%u/%.100s", cfg->dolt.host ? cfg->dolt.host : "",
                 cfg->dolt.port ? cfg->dolt.port : 3306, cfg->dolt.database);
}

/* ---- the store ---- */

/* What the store says about one bead; all zero when there is no store. */
struct bead_store {
    int used;
    int64_t next_retry_at;
    int has_latest;
    struct store_attempt latest;
    int paused_flag;
    int64_t active;
};

/* Reads what the store knows about bead id (s may be NULL: nothing).
 * Returns 0 or a store error. */
static int read_store(struct store *s, const char *id, struct bead_store *out)
{
    memset(out, 0, sizeof *out);
    if (!s)
        return 0;
    struct store_bead b;
    char v[16];
    int rc;
    if ((rc = store_bead_get(s, id, &b)) || (rc = store_bead_attempts_used(s, id, &out->used)) ||
        (rc = store_attempts_active_count(s, &out->active)))
        return rc;
    out->next_retry_at = b.next_retry_at;
    rc = store_attempt_latest(s, id, &out->latest);
    if (rc == 0)
        out->has_latest = 1;
    else if (rc != BS_ENOTFOUND)
        return rc;
    rc = store_setting_get(s, "paused", v, sizeof v);
    if (rc == 0)
        out->paused_flag = strcmp(v, "1") == 0;
    else if (rc != BS_ENOTFOUND)
        return rc;
    return 0;
}

/* ---- the agent ---- */

/* Free slots as the dispatcher would see them at the start of a cycle:
 * GET /health (or BeadBoard's /api/agent-status: one slot when not busy).
 * Returns R_PASS with *free_slots set, R_FAIL when the agent did not answer
 * properly, R_UNKNOWN when no agent URL is configured; seen says what was
 * seen. */
static enum result agent_slots(const struct config *cfg, long *free_slots, char *seen, size_t len)
{
    int beadboard = cfg->mode == MODE_BEADBOARD;
    const char *base = beadboard ? cfg->beadboard_url : cfg->agent_url;
    const char *path = beadboard ? "/api/agent-status" : "/health";
    struct agent_health_answer a;
    *free_slots = 0;
    if (!base || !*base) {
        snprintf(seen, len, "not checked: %s not set", beadboard ? "BEADS_SCHED_BEADBOARD_URL"
                                                                  : "BEADS_SCHED_AGENT_URL");
        return R_UNKNOWN;
    }
    if (agent_health_now(cfg, &a)) {
        snprintf(seen, len, "not checked: the request could not be made");
        return R_UNKNOWN;
    }
    if (!a.answered) {
        snprintf(seen, len, "agent unreachable: GET %s: %.200s", path, a.why);
        return R_FAIL;
    }
    if (a.status != 200) {
        snprintf(seen, len, "agent unhealthy: GET %s answered HTTP %ld", path, a.status);
        return R_FAIL;
    }
    if (!a.ok) {
        snprintf(seen, len, "bad reply to GET %s: %s", path, a.why);
        return R_FAIL;
    }
    *free_slots = agent_free_slots(&a.h);
    if (beadboard)
        snprintf(seen, len, "BeadBoard %s (one bead per cycle)", a.h.active ? "busy" : "not busy");
    else
        snprintf(seen, len, "%ld free slot%s (capacity %ld, active %ld, queued %ld)", *free_slots,
                 *free_slots == 1 ? "" : "s", a.h.capacity, a.h.active, a.h.queued);
    return *free_slots > 0 ? R_PASS : R_FAIL;
}

/* ---- the rules ---- */

/* How many beads the dispatcher would take before this one in one cycle:
 * ready beads (beads_candidates, dispatch order) ahead of it that the store
 * does not hold back. -1 when the bead is not among the candidates read. */
static int64_t beads_ahead(struct dolt_conn *c, const struct beads_schema *schema,
                           const struct beads_ready *ready, const struct config *cfg, struct store *s,
                           const char *id, int64_t now, int *rc_out)
{
    int64_t ahead = 0;
    *rc_out = 0;
    for (size_t offset = 0; offset < CANDIDATE_SCAN_MAX;) {
        struct candidate *v = NULL;
        size_t n = 0;
        int rc = beads_candidates(c, schema, ready, cfg->assignee, 1, offset, CANDIDATE_PAGE, &v, &n);
        if (rc) {
            *rc_out = rc;
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (strcmp(v[i].id, id) == 0) {
                candidates_free(v, n);
                return ahead;
            }
            if (!dispatch_bead_waits(s, cfg, v[i].id, now, NULL))
                ahead++;
        }
        candidates_free(v, n);
        if (n < CANDIDATE_PAGE)
            break;
        offset += n;
    }
    return -1;
}

/* Adds the rules Dolt decides, in the dispatcher's order: ready_rules over
 * the bead's facts and the cycle's readiness snapshot. */
static void dolt_rules(struct explain *e, const struct bead *b, const struct bead_facts *f,
                       const struct beads_ready *ready)
{
    add_rule(e, "exists", R_PASS, "yes: \"%.80s\" (priority %ld, type %.32s, updated %.20s UTC)",
             b->title ? b->title : "", b->priority, b->issue_type ? b->issue_type : "?",
             b->updated_at);
    struct ready_result res[RR_COUNT];
    ready_rules(&f->row, e->cfg->assignee, &ready->st, res);
    for (int i = 0; i < RR_COUNT; i++) {
        if (i == RR_DEFERRED && f->defer_until)
            add_rule(e, ready_rule_name[i], res[i].ok ? R_PASS : R_FAIL,
                     res[i].ok ? "defer_until %.20s UTC has passed" : "until %.20s UTC", f->defer_until);
        else if (i == RR_DEFERRED)
            add_rule(e, ready_rule_name[i], R_PASS, "no defer_until");
        else
            add_rule(e, ready_rule_name[i], res[i].ok ? R_PASS : R_FAIL, "%s", res[i].seen);
    }
    /* Not a rule: full notes never stop a dispatch, the daemon's notes are
     * then shortened or kept in the bead's events only. */
    add_rule(e, "notes", R_PASS, "%lld of %d bytes used%s", f->notes_bytes, BEADS_TEXT_MAX,
             f->notes_bytes > BEADS_TEXT_MAX - 512
                 ? " (full: the daemon's notes are shortened or kept in the bead's events)" : "");
}

struct last_failure {
    int64_t at;
    char detail[400];
};

static int find_write_failed(const struct store_event_row *row, void *arg)
{
    struct last_failure *f = arg;
    if (strcmp(row->event, "write_failed") == 0) {
        f->at = row->at;
        snprintf(f->detail, sizeof f->detail, "%s", row->detail ? row->detail : "");
    }
    return 0;
}

/* Adds the rules the store and the configuration decide. */
static void store_rules(struct explain *e, int have_store, const struct bead_store *bs)
{
    const struct config *cfg = e->cfg;
    char when[40], rel[32];
    add_rule(e, "attempts", bs->used >= cfg->max_attempts ? R_FAIL : R_PASS,
             "%d of MAX_ATTEMPTS=%lld used%s", bs->used, (long long)cfg->max_attempts,
             have_store ? "" : " (no store yet)");
    if (bs->next_retry_at > e->now) {
        cli_iso_ms(bs->next_retry_at, when, sizeof when);
        cli_duration(bs->next_retry_at - e->now, rel, sizeof rel);
        add_rule(e, "retry backoff", R_FAIL, "waiting until %s (in %s)", when, rel);
    } else if (bs->next_retry_at) {
        cli_iso_ms(bs->next_retry_at, when, sizeof when);
        add_rule(e, "retry backoff", R_PASS, "ended %s", when);
    } else {
        add_rule(e, "retry backoff", R_PASS, "none pending");
    }
    if (!bs->has_latest) {
        add_rule(e, "in flight", R_PASS, "no attempt yet");
    } else {
        const struct store_attempt *a = &bs->latest;
        int active = !attempt_state_terminal(a->state);
        cli_iso_ms(active ? a->created_at : a->finished_at, when, sizeof when);
        add_rule(e, "in flight", active ? R_FAIL : R_PASS, "attempt %d is %s%s%s%s%s %s %s",
                 a->attempt, active ? "still " : "", attempt_state_name(a->state),
                 a->job_id[0] ? " (job " : "", a->job_id, a->job_id[0] ? ")" : "",
                 active ? "since" : "at", when);
    }
    int paused = cfg->paused || bs->paused_flag;
    add_rule(e, "paused", paused ? R_FAIL : R_PASS, "%s%s%s",
             !paused ? "no" : bs->paused_flag ? "store flag set (`beads-sched resume` clears it)" : "",
             cfg->paused && bs->paused_flag ? "; " : "",
             cfg->paused ? "BEADS_SCHED_PAUSED=true" : "");
}

/* ---- output ---- */

/* The one-line verdict: the first failing rule, else "would be dispatched",
 * qualified by the first rule that could not be checked. */
static void verdict(const struct explain *e, char *buf, size_t len)
{
    const struct rule *f = first_with(e, R_FAIL);
    if (f) {
        snprintf(buf, len, "not dispatched: %s: %s", f->name, f->seen);
        return;
    }
    const struct rule *u = first_with(e, R_UNKNOWN);
    if (u)
        snprintf(buf, len, "would be dispatched at the next cycle (unless %s says otherwise: %s)",
                 u->name, u->seen);
    else
        snprintf(buf, len, "would be dispatched at the next cycle");
}

/* Prints the rules as an aligned table and the verdict. Exit status. */
static int print_text(const struct explain *e, const char *id)
{
    char *pid = cli_printable(id);
    printf("bead %s\n", pid ? pid : "");
    free(pid);
    struct cli_table t;
    static const char *const head[] = {"RULE", "RESULT", "SEEN"};
    int rc = cli_table_init(&t, stdout, "  ", 3, head, 0);
    for (size_t i = 0; rc == 0 && i < e->n; i++) {
        const char *row[] = {e->rules[i].name, result_word[e->rules[i].result], e->rules[i].seen};
        rc = cli_table_add(&t, row);
    }
    if (t.width) {
        int trc = cli_table_finish(&t);
        rc = rc ? rc : trc;
    }
    char v[1024];
    verdict(e, v, sizeof v);
    char *pv = cli_printable(v);
    printf("verdict: %s\n", pv ? pv : "");
    free(pv);
    if (rc) {
        fprintf(stderr, "beads-sched: out of memory\n");
        return 1;
    }
    return 0;
}

/* Prints {bead, dispatchable, verdict, rules[], schema}. Exit status. */
static int print_json(const struct explain *e, const char *id, const struct beads_schema *schema)
{
    json_t *j = json_object();
    json_object_set_new(j, "bead", cli_json_text(id));
    char v[1024];
    verdict(e, v, sizeof v);
    json_object_set_new(j, "dispatchable", json_boolean(first_with(e, R_FAIL) == NULL));
    json_object_set_new(j, "verdict", cli_json_text(v));
    json_t *rules = json_array();
    for (size_t i = 0; i < e->n; i++) {
        const struct rule *r = &e->rules[i];
        json_t *o = json_object();
        json_object_set_new(o, "rule", json_string(r->name));
        json_object_set_new(o, "result", json_string(result_json[r->result]));
        json_object_set_new(o, "ok", r->result == R_PASS   ? json_true()
                                     : r->result == R_FAIL ? json_false()
                                                           : json_null());
        json_object_set_new(o, "seen", cli_json_text(r->seen));
        json_array_append_new(rules, o);
    }
    json_object_set_new(j, "rules", rules);
    json_object_set_new(j, "schema", json_pack("{s:b, s:b}", "started_at", schema->has_started_at,
                                               "dolt", schema->is_dolt));
    return cli_json_print(j);
}

/* ---- the command ---- */

struct run {
    struct dolt_conn *conn;
    struct store *store;
    struct bead bead;
    struct bead_facts facts;
    struct beads_ready *ready;
};

static int print_nul_id(const char *printable, void *arg)
{
    struct explain *e = arg;
    add_rule(e, "id", R_FAIL, "no bead has exactly this id, but \"%.200s\" does: its id holds a NUL "
             "byte, which a C string cuts short, so it is never dispatched (rename it)", printable);
    return 1;
}

/* Reads the bead, its facts and bd's readiness from Dolt into x. 0, or
 * done: *status is the exit status (messages already printed). */
static int read_dolt(const struct config *cfg, const char *id, int json, struct run *x,
                     struct beads_schema *schema, int *status)
{
    char err[512], where[512];
    struct dolt_options o;
    config_dolt_options(cfg, &o);
    dolt_where(cfg, where, sizeof where);
    *status = 1;
    int rc = dolt_conn_open(&x->conn, &o, err, sizeof err);
    if (rc == 0)
        rc = beads_schema_detect(x->conn, schema);
    if (rc == BS_EINVAL && schema->error[0]) {
        fprintf(stderr, "beads-sched: the database at %s is not a supported beads schema: %s\n", where,
                schema->error);
        return 1;
    }
    if (rc) {
        fprintf(stderr, "beads-sched: cannot reach Dolt at %s: %s\n", where,
                err[0] ? err : x->conn ? dolt_conn_error(x->conn) : bs_strerror(rc));
        return 1;
    }
    rc = beads_read(x->conn, id, 0, &x->bead);
    if (rc == 0)
        rc = beads_read_facts(x->conn, id, &x->facts);
    if (rc == BS_ENOTFOUND) {
        /* A bead whose id is this one plus a NUL byte and more is what a C
         * string would turn it into: say so instead of "no such bead". */
        struct explain ne = {.cfg = cfg, .now = clock_now_ms()};
        if (beads_nul_ids(x->conn, id, print_nul_id, &ne) >= 0 && ne.n) {
            *status = json ? print_json(&ne, id, schema) : print_text(&ne, id);
            return 1;
        }
        char *pid = cli_printable(id);
        fprintf(stderr, "beads-sched: no bead '%s' in Dolt at %s\n", pid ? pid : "", where);
        free(pid);
        return 1;
    }
    if (rc == 0)
        rc = beads_ready_load(x->conn, schema, cfg->assignee, &x->ready);
    if (rc) {
        fprintf(stderr, "beads-sched: reading bead from Dolt at %s failed: %s: %s\n", where,
                bs_strerror(rc), dolt_conn_error(x->conn));
        return 1;
    }
    return 0;
}

/* The agent's free slots (within MAX_IN_FLIGHT) and the bead's place in the
 * dispatch order. */
static void capacity_and_queue(struct explain *e, const struct config *cfg, struct run *x,
                               const struct beads_schema *schema, int64_t active, const char *id)
{
    long slots = 0;
    char seen[640];
    enum result cap = agent_slots(cfg, &slots, seen, sizeof seen);
    if (cap == R_PASS && cfg->max_in_flight > 0) {
        long room = (long)(cfg->max_in_flight - active);
        if (room <= 0) {
            cap = R_FAIL;
            size_t k = strlen(seen);
            snprintf(seen + k, sizeof seen - k, "; but MAX_IN_FLIGHT=%lld reached (%lld in flight)",
                     (long long)cfg->max_in_flight, (long long)active);
        } else if (room < slots) {
            slots = room;
        }
    }
    add_rule(e, "agent capacity", cap, "%s", seen);

    /* Dispatch order only matters once every other rule passes. */
    if (first_with(e, R_FAIL)) {
        add_rule(e, "queue position", R_SKIPPED, "not evaluated (an earlier rule fails)");
        return;
    }
    int qrc;
    int64_t ahead = beads_ahead(x->conn, schema, x->ready, cfg, x->store, id, e->now, &qrc);
    if (qrc)
        add_rule(e, "queue position", R_UNKNOWN, "eligibility query failed: %s", bs_strerror(qrc));
    else if (ahead < 0)
        add_rule(e, "queue position", R_UNKNOWN, "not among the first %d ready beads (or it changed meanwhile)",
                 CANDIDATE_SCAN_MAX);
    else if (cap == R_UNKNOWN)
        add_rule(e, "queue position", ahead == 0 ? R_PASS : R_UNKNOWN,
                 "%lld ready bead%s ahead in dispatch order; free slots unknown", (long long)ahead,
                 ahead == 1 ? "" : "s");
    else
        add_rule(e, "queue position", ahead < slots ? R_PASS : R_FAIL,
                 "%lld ready bead%s ahead in dispatch order, %ld slot%s free", (long long)ahead,
                 ahead == 1 ? "" : "s", slots, slots == 1 ? "" : "s");
}

/* Gathers everything and prints it; x holds what the caller frees. Exit
 * status (messages already printed). */
static int explain_bead(const struct config *cfg, const char *id, int json, struct run *x)
{
    struct beads_schema schema = {0};
    int status, rc;
    if (read_dolt(cfg, id, json, x, &schema, &status))
        return status;
    if (cli_open_store(cfg, 1, &x->store))
        return 1;
    struct explain e = {.cfg = cfg, .now = clock_now_ms()};
    struct bead_store bs;
    if ((rc = read_store(x->store, id, &bs))) {
        fprintf(stderr, "beads-sched: cannot read the store %s: %s\n", cfg->store, bs_strerror(rc));
        return 1;
    }
    dolt_rules(&e, &x->bead, &x->facts, x->ready);
    store_rules(&e, x->store != NULL, &bs);
    struct last_failure lf = {0};
    if (x->store)
        store_history(x->store, id, 200, find_write_failed, &lf, NULL);
    if (lf.at) {
        char when[40];
        cli_iso_ms(lf.at, when, sizeof when);
        add_rule(&e, "last write", R_PASS, "failed %s: %s (it did not stop anything else)", when, lf.detail);
    }
    capacity_and_queue(&e, cfg, x, &schema, bs.active, id);
    return json ? print_json(&e, id, &schema) : print_text(&e, id);
}

/* See cli.h. */
int cli_explain(const struct config *cfg, int argc, char **argv)
{
    const char *id = NULL;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (!id && argv[i][0]) {
            id = argv[i];
        } else {
            fprintf(stderr, "beads-sched: explain takes one bead id (see beads-sched help)\n");
            return 2;
        }
    }
    if (!id) {
        fprintf(stderr, "beads-sched: explain needs a bead id: beads-sched explain BEAD [--json]\n");
        return 2;
    }
    cli_quiet_logs(cfg);
    struct run x = {0};
    int status = explain_bead(cfg, id, json, &x);
    bead_free(&x.bead);
    bead_facts_free(&x.facts);
    beads_ready_free(x.ready);
    store_close(x.store);
    dolt_conn_close(x.conn);
    dolt_library_end();
    return status;
}
