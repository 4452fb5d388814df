/* Unit tests of the operator reports (store/report.h), retention
 * (store/retention.h) and the CLI's text helpers (sched/cli.h), on fresh
 * temporary stores. test_bytes_per_attempt prints the store's size per
 * finished attempt (BS_BENCH_ATTEMPTS attempts, default 2000; the bench
 * script runs it with 100000). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cli.h"
#include "errors.h"
#include "log.h"
#include "report.h"
#include "retention.h"
#include "store.h"
#include "util.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define DAY (24 * 3600 * 1000LL)
#define NOW (1790000000000LL) /* a fixed "now": 2026-09-21 */

struct fx {
    char *dir;
    char path[4096];
    char err[512];
    struct store *s;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = test_tmpdir("bs-report");
    snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
    int rc = store_open(&f->s, f->path, STORE_OPEN_MIGRATE, f->err, sizeof f->err);
    if (rc)
        fail_msg("store_open: %s", f->err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->s);
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static int dispatch_seq;

/* An attempt of bead created at t, taken through claimed, posting and
 * dispatched (1 ms apart) and, unless end is non-terminal, ended in `end`
 * at finished. Returns its journal id. */
static int64_t attempt(struct store *s, const char *bead, int64_t t, enum attempt_state end,
                       int64_t finished)
{
    char did[STORE_DISPATCH_ID_MAX], job[16];
    snprintf(did, sizeof did, "d-%06d", ++dispatch_seq);
    snprintf(job, sizeof job, "job%06d", dispatch_seq);
    struct store_attempt a;
    assert_int_equal(store_attempt_create(s, bead, did, t, &a), 0);
    assert_int_equal(store_attempt_transition(s, a.id, AS_CLAIMING, AS_CLAIMED, NULL, t + 1), 0);
    if (end == AS_CLAIMED)
        return a.id;
    assert_int_equal(store_attempt_transition(s, a.id, AS_CLAIMED, AS_POSTING, NULL, t + 2), 0);
    struct store_transition tj = {.job_id = job};
    assert_int_equal(store_attempt_transition(s, a.id, AS_POSTING, AS_DISPATCHED, &tj, t + 3), 0);
    if (!attempt_state_terminal(end))
        return a.id;
    assert_int_equal(store_attempt_transition(s, a.id, AS_DISPATCHED, end, NULL, finished), 0);
    return a.id;
}

/* First column of the first row of sql, on a separate read connection. */
static int64_t count(struct fx *f, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* ---- history --------------------------------------------------------- */

struct seen {
    int n;
    int64_t ids[64];
    char line[64][160];
    int stop_at; /* return 7 at this row (1-based), 0 = never */
};

static int record(const struct store_event_row *r, void *arg)
{
    struct seen *x = arg;
    if (x->n < 64) {
        x->ids[x->n] = r->id;
        snprintf(x->line[x->n], sizeof x->line[0], "%s/%d/%s/%s", r->bead_id ? r->bead_id : "-",
                 r->attempt, r->event, r->job_id ? r->job_id : "-");
    }
    x->n++;
    return x->stop_at && x->n == x->stop_at ? 7 : 0;
}

static void test_history(void **state)
{
    struct fx *f = *state;
    attempt(f->s, "a", NOW, AS_CLOSED, NOW + 10);               /* events 1-5 */
    assert_int_equal(store_event_add(f->s, NULL, 0, "paused", NULL, "by hand", NOW + 11), 0);
    attempt(f->s, "b", NOW + 20, AS_DISPATCHED, 0);             /* events 7-10 */
    attempt(f->s, "a", NOW + 30, AS_REFUSED, NOW + 40);         /* events 11-15 */

    struct seen x = {0};
    int more = -1;
    assert_int_equal(store_history(f->s, NULL, 0, record, &x, &more), 0);
    assert_int_equal(x.n, 15);
    assert_int_equal(more, 0);
    for (int i = 1; i < x.n; i++)
        assert_true(x.ids[i] > x.ids[i - 1]); /* oldest first */
    assert_string_equal(x.line[0], "a/1/claiming/-");
    assert_string_equal(x.line[3], "a/1/dispatched/job000001");
    assert_string_equal(x.line[5], "-/0/paused/-");
    assert_string_equal(x.line[14], "a/2/refused/job000003");

    /* One bead, newest 3, still oldest first; older ones announced. */
    memset(&x, 0, sizeof x);
    assert_int_equal(store_history(f->s, "a", 3, record, &x, &more), 0);
    assert_int_equal(x.n, 3);
    assert_int_equal(more, 1);
    assert_string_equal(x.line[0], "a/2/posting/-");
    assert_string_equal(x.line[2], "a/2/refused/job000003");

    memset(&x, 0, sizeof x);
    assert_int_equal(store_history(f->s, "a", 10, record, &x, &more), 0);
    assert_int_equal(x.n, 10);
    assert_int_equal(more, 0); /* exactly all of them */

    memset(&x, 0, sizeof x);
    assert_int_equal(store_history(f->s, NULL, 2, record, &x, &more), 0);
    assert_int_equal(x.n, 2);
    assert_int_equal(more, 1);
    assert_string_equal(x.line[1], "a/2/refused/job000003");

    memset(&x, 0, sizeof x);
    assert_int_equal(store_history(f->s, "nope", 5, record, &x, &more), 0);
    assert_int_equal(x.n, 0);
    assert_int_equal(more, 0);

    /* A bead id that looks like SQL is just a bead id. */
    memset(&x, 0, sizeof x);
    assert_int_equal(store_history(f->s, "a' OR '1'='1", 0, record, &x, NULL), 0);
    assert_int_equal(x.n, 0);

    /* The callback's value stops the walk and comes back. */
    memset(&x, 0, sizeof x);
    x.stop_at = 2;
    assert_int_equal(store_history(f->s, "b", 0, record, &x, NULL), 7);
    assert_int_equal(x.n, 2);

    assert_int_equal(store_history(f->s, NULL, -1, record, &x, NULL), BS_EINVAL);

    /* A READ handle answers the same. */
    struct store *r;
    assert_int_equal(store_open(&r, f->path, STORE_OPEN_READ, f->err, sizeof f->err), 0);
    memset(&x, 0, sizeof x);
    assert_int_equal(store_history(r, "b", 0, record, &x, &more), 0);
    assert_int_equal(x.n, 4);
    store_close(r);
}

/* The per-bead query walks event_log_bead, not the whole log. */
static void test_history_uses_index(void **state)
{
    struct fx *f = *state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "EXPLAIN QUERY PLAN SELECT id FROM event_log "
                                        "WHERE bead_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    char plan[1024] = "";
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(st, 3);
        strncat(plan, d ? d : "", sizeof plan - strlen(plan) - 2);
        strcat(plan, ";");
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (!strstr(plan, "event_log_bead") || strstr(plan, "TEMP B-TREE"))
        fail_msg("plan does not use event_log_bead in order: %s", plan);
}

/* ---- outcome counts -------------------------------------------------- */

struct counts {
    char text[256];
};

static int add_count(const char *state, int64_t n, void *arg)
{
    struct counts *c = arg;
    size_t k = strlen(c->text);
    snprintf(c->text + k, sizeof c->text - k, "%s%s=%lld", k ? "," : "", state, (long long)n);
    return 0;
}

static void test_outcome_counts(void **state)
{
    struct fx *f = *state;
    attempt(f->s, "x1", NOW - 2 * DAY, AS_CLOSED, NOW - 2 * DAY + 5); /* too old */
    attempt(f->s, "x2", NOW - DAY - 10, AS_CLOSED, NOW - DAY + 1);
    attempt(f->s, "x3", NOW - 100, AS_REFUSED, NOW - 50);
    attempt(f->s, "x4", NOW - 100, AS_REFUSED, NOW - 40);
    attempt(f->s, "x5", NOW - 100, AS_GAVE_UP, NOW - 30);
    attempt(f->s, "x6", NOW - 100, AS_DISPATCHED, 0); /* in flight: not counted */
    struct counts c = {""};
    assert_int_equal(store_outcome_counts(f->s, NOW - DAY, add_count, &c), 0);
    assert_string_equal(c.text, "refused=2,closed=1,gave_up=1");
    memset(&c, 0, sizeof c);
    assert_int_equal(store_outcome_counts(f->s, NOW, add_count, &c), 0);
    assert_string_equal(c.text, "");
}

/* ---- retention ------------------------------------------------------- */

static int64_t events_of(struct fx *f, int64_t attempt_id)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM event_log WHERE attempt_id = %lld",
             (long long)attempt_id);
    return count(f, sql);
}

static int64_t has_attempt(struct fx *f, int64_t id)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM journal WHERE id = %lld", (long long)id);
    return count(f, sql);
}

static void test_prune_mix(void **state)
{
    struct fx *f = *state;
    const int64_t ok = 7 * DAY, failed = 30 * DAY;
    int64_t old_ok = attempt(f->s, "p1", NOW - 10 * DAY, AS_CLOSED, NOW - 10 * DAY);
    int64_t new_ok = attempt(f->s, "p2", NOW - 2 * DAY, AS_CLOSED, NOW - DAY);
    int64_t old_ref = attempt(f->s, "p3", NOW - 10 * DAY, AS_REFUSED, NOW - 10 * DAY);
    int64_t ancient_ref = attempt(f->s, "p4", NOW - 40 * DAY, AS_REFUSED, NOW - 40 * DAY);
    int64_t ancient_gave = attempt(f->s, "p5", NOW - 40 * DAY, AS_GAVE_UP, NOW - 31 * DAY);
    int64_t ancient_live = attempt(f->s, "p6", NOW - 100 * DAY, AS_DISPATCHED, 0);
    int64_t ancient_claim = attempt(f->s, "p7", NOW - 100 * DAY, AS_CLAIMED, 0);
    int64_t edge_ok = attempt(f->s, "p8", NOW - 8 * DAY, AS_CLOSED, NOW - ok); /* exactly at the cutoff: kept */
    /* A success kept by state even when the outcome says more. */
    char did[40];
    snprintf(did, sizeof did, "d-x%d", ++dispatch_seq);
    struct store_attempt a;
    assert_int_equal(store_attempt_create(f->s, "p9", did, NOW - 9 * DAY, &a), 0);
    struct store_transition t = {.outcome = "completed"};
    assert_int_equal(store_attempt_transition(f->s, a.id, AS_CLAIMING, AS_CLOSED, &t, NOW - 9 * DAY), 0);
    int64_t old_ok_outcome = a.id;
    /* Free-standing events. */
    assert_int_equal(store_event_add(f->s, "p2", 0, "skipped_no_acceptance", NULL, NULL, NOW - 40 * DAY), 0);
    assert_int_equal(store_event_add(f->s, NULL, 0, "paused", NULL, NULL, NOW - 35 * DAY), 0);
    assert_int_equal(store_event_add(f->s, NULL, 0, "resumed", NULL, NULL, NOW - DAY), 0);
    /* An old event tied to an attempt that is kept stays with it. */
    assert_int_equal(store_event_add(f->s, "p6", ancient_live, "note", NULL, NULL, NOW - 99 * DAY), 0);

    int64_t events_before = count(f, "SELECT COUNT(*) FROM event_log");
    int deleted = -1;
    assert_int_equal(store_prune(f->s, NOW, ok, failed, 100, &deleted), 0);
    /* p1, p4, p5, p9 and two free-standing events. */
    assert_int_equal(deleted, 6);
    assert_int_equal(has_attempt(f, old_ok), 0);
    assert_int_equal(has_attempt(f, ancient_ref), 0);
    assert_int_equal(has_attempt(f, ancient_gave), 0);
    assert_int_equal(has_attempt(f, old_ok_outcome), 0);
    assert_int_equal(events_of(f, old_ok), 0);
    assert_int_equal(events_of(f, ancient_ref), 0);
    assert_int_equal(events_of(f, ancient_gave), 0);
    assert_int_equal(events_of(f, old_ok_outcome), 0);
    assert_int_equal(has_attempt(f, new_ok), 1);
    assert_int_equal(has_attempt(f, old_ref), 1);
    assert_int_equal(has_attempt(f, ancient_live), 1);
    assert_int_equal(has_attempt(f, ancient_claim), 1);
    assert_int_equal(has_attempt(f, edge_ok), 1);
    assert_int_equal(events_of(f, new_ok), 5);
    assert_int_equal(events_of(f, ancient_live), 5);
    assert_int_equal(events_of(f, ancient_claim), 2);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM event_log WHERE attempt_id IS NULL"), 1);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM event_log WHERE event = 'resumed'"), 1);
    /* 5 events each for p1, p4, p5; 2 for p9; 2 free-standing. */
    assert_int_equal(count(f, "SELECT COUNT(*) FROM event_log"), events_before - 19);
    /* Attempt numbers never repeat: the counter is untouched. */
    assert_int_equal(count(f, "SELECT attempts FROM bead_state WHERE bead_id = 'p1'"), 1);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM event_log WHERE attempt_id NOT IN (SELECT id FROM journal)"), 0);

    /* Nothing left to do. */
    assert_int_equal(store_prune(f->s, NOW, ok, failed, 100, &deleted), 0);
    assert_int_equal(deleted, 0);
    /* A day later p8 is due too. */
    assert_int_equal(store_prune(f->s, NOW + DAY, ok, failed, 100, &deleted), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(has_attempt(f, edge_ok), 0);
    assert_int_equal(has_attempt(f, ancient_live), 1);
}

static void test_prune_batches(void **state)
{
    struct fx *f = *state;
    int64_t ids[10];
    for (int i = 0; i < 10; i++) {
        char bead[16];
        snprintf(bead, sizeof bead, "q%d", i);
        /* finished in reverse creation order: q9 is the oldest */
        ids[i] = attempt(f->s, bead, NOW - 50 * DAY, AS_CLOSED, NOW - 20 * DAY - i * 1000);
    }
    int deleted = 0, total = 0, calls = 0;
    assert_int_equal(store_prune(f->s, NOW, DAY, DAY, 3, &deleted), 0);
    assert_int_equal(deleted, 3);
    /* Oldest finished first: q9, q8, q7. */
    assert_int_equal(has_attempt(f, ids[9]) + has_attempt(f, ids[8]) + has_attempt(f, ids[7]), 0);
    assert_int_equal(has_attempt(f, ids[6]), 1);
    total = deleted;
    do {
        assert_int_equal(store_prune(f->s, NOW, DAY, DAY, 3, &deleted), 0);
        assert_true(deleted <= 3);
        total += deleted;
        calls++;
    } while (deleted > 0 && calls < 10);
    assert_int_equal(total, 10);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM journal"), 0);
    assert_int_equal(count(f, "SELECT COUNT(*) FROM event_log"), 0);
}

static void test_prune_errors_and_transactions(void **state)
{
    struct fx *f = *state;
    int64_t id = attempt(f->s, "r1", NOW - 50 * DAY, AS_CLOSED, NOW - 50 * DAY);
    int deleted = 9;
    assert_int_equal(store_prune(f->s, NOW, DAY, DAY, 0, &deleted), BS_EINVAL);
    assert_int_equal(deleted, 0);
    assert_int_equal(store_prune(f->s, NOW, -1, DAY, 10, NULL), BS_EINVAL);
    assert_int_equal(store_prune(f->s, NOW, DAY, -1, 10, NULL), BS_EINVAL);

    struct store *r;
    assert_int_equal(store_open(&r, f->path, STORE_OPEN_READ, f->err, sizeof f->err), 0);
    assert_int_equal(store_prune(r, NOW, DAY, DAY, 10, &deleted), BS_ERDONLY);
    store_close(r);
    assert_int_equal(has_attempt(f, id), 1);

    /* Inside the caller's transaction it is a savepoint: rolled back with it. */
    assert_int_equal(store_begin(f->s), 0);
    assert_int_equal(store_prune(f->s, NOW, DAY, DAY, 10, &deleted), 0);
    assert_int_equal(deleted, 1);
    store_rollback(f->s);
    assert_int_equal(has_attempt(f, id), 1);
    assert_int_equal(events_of(f, id), 5);
    assert_int_equal(store_prune(f->s, NOW, DAY, DAY, 10, NULL), 0);
    assert_int_equal(has_attempt(f, id), 0);
}

/* Size of the store per finished attempt with ~6 events each, as the
 * daemon writes them: 9 in 10 dispatched and closed (claiming, claimed,
 * posting, dispatched, one reaper note, closed: 6 events), 1 in 10 refused
 * with the agent's body (4 events, a retry backoff in bead_state). Prints the
 * figure; asserts only that it is sane. */
static void test_bytes_per_attempt(void **state)
{
    struct fx *f = *state;
    const char *env = getenv("BS_BENCH_ATTEMPTS");
    long n = env ? strtol(env, NULL, 10) : 2000;
    if (n < 100)
        n = 100;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int64_t t = NOW - 60 * DAY;
    for (long i = 0; i < n; i += 500) {
        assert_int_equal(store_begin(f->s), 0);
        for (long k = i; k < i + 500 && k < n; k++, t += 60000) {
            char bead[32], did[48], job[24];
            snprintf(bead, sizeof bead, "code-%lx", (unsigned long)(k * 2654435761u) % 0xfffffu);
            snprintf(did, sizeof did, "%08x-1c24-442f-a22e-8a507cdea938", (unsigned)k);
            snprintf(job, sizeof job, "%012llx", (unsigned long long)k * 7919 % 0xffffffffffffULL);
            struct store_attempt a;
            assert_int_equal(store_attempt_create(f->s, bead, did, t, &a), 0);
            struct store_transition tc = {.bead_updated_at = "2026-09-21 04:50:00"};
            assert_int_equal(store_attempt_transition(f->s, a.id, AS_CLAIMING, AS_CLAIMED, &tc, t + 12), 0);
            assert_int_equal(store_attempt_transition(f->s, a.id, AS_CLAIMED, AS_POSTING, NULL, t + 13), 0);
            if (k % 10 == 9) {
                /* As dispatch.c journals a refusal: 4 events. */
                struct store_transition tr = {
                    .outcome = "refused",
                    .detail = "HTTP 500: dispatch failed HTTP 500: {\"detail\":\"Internal Server "
                              "Error: the agent could not start the job\"}"};
                assert_int_equal(store_attempt_transition(f->s, a.id, AS_POSTING, AS_REFUSED, &tr, t + 20), 0);
                assert_int_equal(store_bead_set_retry(f->s, bead, t + 60020), 0);
                continue;
            }
            struct store_transition td = {.job_id = job};
            assert_int_equal(store_attempt_transition(f->s, a.id, AS_POSTING, AS_DISPATCHED, &td, t + 18), 0);
            assert_int_equal(store_event_add(f->s, bead, a.id, "alive", job, "job running, bead in_progress",
                                             t + 600000), 0);
            struct store_transition tx = {.detail = "bead closed by the agent"};
            assert_int_equal(store_attempt_transition(f->s, a.id, AS_DISPATCHED, AS_CLOSED, &tx, t + 1200000), 0);
        }
        assert_int_equal(store_commit(f->s), 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* Checkpoint so the main file holds everything (the WAL is reused). */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    int64_t events = count(f, "SELECT COUNT(*) FROM event_log");
    double per = (double)st.st_size / (double)n;
    printf("# bytes per attempt: %ld attempts, %lld events (%.1f per attempt), file %lld bytes "
           "= %.0f bytes/attempt; written in %.1f s\n",
           n, (long long)events, (double)events / (double)n, (long long)st.st_size, per,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    assert_true(per > 100 && per < 4096);
}

/* ---- CLI text helpers ------------------------------------------------ */

static void test_cli_text(void **state)
{
    (void)state;
    char buf[64];
    cli_iso_ms(1795237228888LL, buf, sizeof buf);
    assert_string_equal(buf, "2026-11-21T05:00:28.888Z");
    cli_iso_ms(0, buf, sizeof buf);
    assert_string_equal(buf, "-");
    cli_duration(850, buf, sizeof buf);
    assert_string_equal(buf, "850ms");
    cli_duration(42000, buf, sizeof buf);
    assert_string_equal(buf, "42s");
    cli_duration(185000, buf, sizeof buf);
    assert_string_equal(buf, "3m05s");
    cli_duration(-(2 * 3600 + 7 * 60) * 1000LL, buf, sizeof buf);
    assert_string_equal(buf, "2h07m");
    cli_duration(3 * DAY + 4 * 3600 * 1000LL, buf, sizeof buf);
    assert_string_equal(buf, "3d04h");

    int64_t v;
    assert_int_equal(cli_parse_count("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(cli_parse_count("1795237228888", &v), 0);
    assert_int_equal(v, 1795237228888LL);
    assert_int_equal(cli_parse_count("", &v), BS_EINVAL);
    assert_int_equal(cli_parse_count("-1", &v), BS_EINVAL);
    assert_int_equal(cli_parse_count("12x", &v), BS_EINVAL);
    assert_int_equal(cli_parse_count("99999999999999999999", &v), BS_EINVAL);

    /* Terminal control sequences and newlines never reach the terminal. */
    char *p = cli_printable("a\x1b[31mb\nc\td\x7f\xc2\x9b" "e\xff");
    assert_non_null(p);
    assert_string_equal(p, "a [31mb c d   e\xef\xbf\xbd");
    free(p);
    p = cli_printable(NULL);
    assert_string_equal(p, "");
    free(p);

    json_t *j = cli_json_text("x\xff\"y");
    char *dump = json_dumps(j, JSON_ENCODE_ANY);
    assert_string_equal(dump, "\"x\xef\xbf\xbd\\\"y\"");
    free(dump);
    json_decref(j);
}

static void test_cli_table(void **state)
{
    (void)state;
    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);
    assert_non_null(mem);
    struct cli_table t;
    static const char *const head[] = {"A", "BEE", "C"};
    assert_int_equal(cli_table_init(&t, mem, "> ", 3, head, 0), 0);
    static const char *const r1[] = {"long-value", "\xc3\xa9", "x"};
    static const char *const r2[] = {"s", NULL, ""};
    assert_int_equal(cli_table_add(&t, r1), 0);
    assert_int_equal(cli_table_add(&t, r2), 0);
    assert_int_equal(cli_table_finish(&t), 0);
    fclose(mem);
    /* é is one column wide; empty trailing cells leave no blanks. */
    assert_string_equal(out, "> A           BEE  C\n"
                             "> long-value  \xc3\xa9    x\n"
                             "> s\n");
    free(out);

    /* Streaming after flush_rows keeps the widths of the first rows. */
    mem = open_memstream(&out, &len);
    assert_int_equal(cli_table_init(&t, mem, "", 2, (const char *const[]){"K", "V"}, 2), 0);
    assert_int_equal(cli_table_add(&t, (const char *const[]){"ab", "1"}), 0);
    assert_int_equal(cli_table_add(&t, (const char *const[]){"abcd", "2"}), 0);
    assert_int_equal(cli_table_finish(&t), 0);
    fclose(mem);
    assert_string_equal(out, "K   V\nab  1\nabcd  2\n");
    free(out);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    log_setup(LL_ERROR, LF_LOGFMT);
    const struct CMUnitTest tests[] = {
        T(test_history),
        T(test_history_uses_index),
        T(test_outcome_counts),
        T(test_prune_mix),
        T(test_prune_batches),
        T(test_prune_errors_and_transactions),
        T(test_bytes_per_attempt),
        cmocka_unit_test(test_cli_text),
        cmocka_unit_test(test_cli_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
