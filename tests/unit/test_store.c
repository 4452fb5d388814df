/* Unit tests of the SQLite job store (store/store.h): open modes, checks,
 * locking, migrations, the journal state machine, views. Each test gets a
 * fresh temporary directory. The tests may use sqlite3.h directly to build
 * old or damaged stores and to look at the file as an operator would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "errors.h"
#include "log.h"
#include "migrations.h"
#include "store.h"
#include "util.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct fx {
    char *dir;
    char path[4096];
    char err[512];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = test_tmpdir("bs-store");
    snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static int dispatch_seq;

/* Opens path in mode, asserting success. */
static struct store *open_ok(struct fx *f, enum store_open_mode mode)
{
    struct store *s = NULL;
    int rc = store_open(&s, f->path, mode, f->err, sizeof f->err);
    if (rc != 0)
        fail_msg("store_open(%s): %s: %s", f->path, bs_strerror(rc), f->err);
    assert_non_null(s);
    return s;
}

/* Starts an attempt with a fresh dispatch id, asserting success. */
static struct store_attempt create_ok(struct store *s, const char *bead, int64_t now)
{
    char did[STORE_DISPATCH_ID_MAX];
    snprintf(did, sizeof did, "disp-%d", ++dispatch_seq);
    struct store_attempt a;
    assert_int_equal(store_attempt_create(s, bead, did, now, &a), 0);
    return a;
}

static void move_ok(struct store *s, int64_t id, enum attempt_state from, enum attempt_state to,
                    const struct store_transition *t, int64_t now)
{
    int rc = store_attempt_transition(s, id, from, to, t, now);
    if (rc != 0)
        fail_msg("transition %s -> %s: %s", attempt_state_name(from), attempt_state_name(to),
                 bs_strerror(rc));
}

static sqlite3 *raw_open(const char *path, int flags)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK)
        fail_msg("sqlite3_open_v2(%s): %s", path, sqlite3_errstr(rc));
    return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* First column of the first row as text into buf; "<null>" for NULL,
 * "<none>" for no row. */
static const char *raw_text(sqlite3 *db, const char *sql, char *buf, size_t len)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        snprintf(buf, len, "%s", v ? v : "<null>");
    } else {
        assert_int_equal(rc, SQLITE_DONE);
        snprintf(buf, len, "<none>");
    }
    sqlite3_finalize(st);
    return buf;
}

static int exists(const char *path, const char *suffix)
{
    char p[4200];
    snprintf(p, sizeof p, "%s%s", path, suffix);
    struct stat st;
    return lstat(p, &st) == 0;
}

/* ---- open, create, migrate ------------------------------------------- */

static void test_migrate_from_empty(void **state)
{
    struct fx *f = *state;
    assert_false(exists(f->path, ""));
    struct store *s = open_ok(f, STORE_OPEN_MIGRATE);
    assert_int_equal(store_latest_version(), store_migration_count);
    assert_true(store_latest_version() >= 2);
    assert_int_equal(store_schema_version(s), store_latest_version());
    store_close(s);

    /* Reopening an up-to-date store is a no-op. */
    s = open_ok(f, STORE_OPEN_DAEMON);
    assert_int_equal(store_schema_version(s), store_latest_version());
    store_close(s);

    sqlite3 *db = raw_open(f->path, SQLITE_OPEN_READONLY);
    char buf[64];
    assert_int_equal(raw_int(db, "PRAGMA user_version"), store_latest_version());
    assert_string_equal(raw_text(db, "PRAGMA journal_mode", buf, sizeof buf), "wal");
    static const char *const tables[] = {"journal", "event_log", "bead_state", "settings"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        char sql[200];
        snprintf(sql, sizeof sql,
                 "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = '%s'",
                 tables[i]);
        assert_int_equal(raw_int(db, sql), 1);
    }
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'view' "
                                 "AND name IN ('attempts', 'history')"),
                     2);
    sqlite3_close(db);
}

/* Builds a store at schema version v by hand (migrations 1..v) holding one
 * dispatched journal row for bead "bd-old". */
static void build_old_store(const char *path, int v)
{
    sqlite3 *db = raw_open(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    raw_exec(db, "PRAGMA journal_mode = WAL");
    for (int i = 0; i < v; i++)
        raw_exec(db, store_migrations[i].sql);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v);
    raw_exec(db, sql);
    raw_exec(db, "INSERT INTO journal (bead_id, attempt, dispatch_id, state, job_id, created_at, "
                 "claimed_at, posting_at, dispatched_at) VALUES ('bd-old', 1, 'd-old', "
                 "'dispatched', 'job-9', 1795236599000, 1795236600123, 1795236600500, "
                 "1795236601000)");
    raw_exec(db, "INSERT INTO bead_state (bead_id, attempts) VALUES ('bd-old', 1)");
    raw_exec(db, "INSERT INTO event_log (at, bead_id, attempt_id, event) "
                 "VALUES (1795236599000, 'bd-old', 1, 'claiming')");
    sqlite3_close(db);
}

static void test_migrate_from_older_versions(void **state)
{
    struct fx *f = *state;
    for (int v = 1; v < store_latest_version(); v++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/v%d.db", f->dir, v);
        build_old_store(path, v);

        struct store *s = NULL;
        assert_int_equal(store_open(&s, path, STORE_OPEN_MIGRATE, f->err, sizeof f->err), 0);
        assert_int_equal(store_schema_version(s), store_latest_version());
        struct store_attempt a;
        assert_int_equal(store_attempt_latest(s, "bd-old", &a), 0);
        assert_int_equal(a.attempt, 1);
        assert_int_equal(a.state, AS_DISPATCHED);
        assert_string_equal(a.job_id, "job-9");
        assert_int_equal(a.claimed_at, 1795236600123);
        /* The counter carries on from the old rows. */
        struct store_attempt b = create_ok(s, "bd-old", 1795236700000);
        assert_int_equal(b.attempt, 2);
        store_close(s);

        sqlite3 *db = raw_open(path, SQLITE_OPEN_READONLY);
        char buf[128];
        assert_int_equal(raw_int(db, "PRAGMA user_version"), store_latest_version());
        assert_string_equal(raw_text(db, "SELECT claimed_at FROM attempts WHERE attempt = 1",
                                     buf, sizeof buf),
                            "2026-11-21T04:50:00.123Z");
        assert_string_equal(raw_text(db, "SELECT dispatched_at FROM attempts WHERE attempt = 1",
                                     buf, sizeof buf),
                            "2026-11-21T04:50:01.000Z");
        assert_string_equal(raw_text(db, "SELECT finished_at FROM attempts WHERE attempt = 1",
                                     buf, sizeof buf),
                            "<null>");
        assert_string_equal(raw_text(db, "SELECT state || ' ' || job_id || ' ' || dispatch_id "
                                         "FROM attempts WHERE attempt = 1", buf, sizeof buf),
                            "dispatched job-9 d-old");
        assert_string_equal(raw_text(db, "SELECT at || ' ' || event || ' ' || attempt "
                                         "FROM history LIMIT 1", buf, sizeof buf),
                            "2026-11-21T04:49:59.000Z claiming 1");
        sqlite3_close(db);
    }
}

/* A reference already broken before the upgrade (an attempt deleted in the
 * sqlite3 shell, which has foreign keys off, leaving its event) does not
 * block the migrations: only a break a migration makes does. */
static void test_migrate_with_old_breaks(void **state)
{
    struct fx *f = *state;
    int v = store_latest_version() - 1;
    build_old_store(f->path, v);
    sqlite3 *db = raw_open(f->path, SQLITE_OPEN_READWRITE);
    raw_exec(db, "DELETE FROM journal WHERE bead_id = 'bd-old'");
    sqlite3_close(db);

    struct store *s = NULL;
    assert_int_equal(store_open(&s, f->path, STORE_OPEN_MIGRATE, f->err, sizeof f->err), 0);
    assert_int_equal(store_schema_version(s), store_latest_version());
    store_close(s);
    db = raw_open(f->path, SQLITE_OPEN_READONLY);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM event_log WHERE bead_id = 'bd-old'"), 1);
    sqlite3_close(db);
}

/* An existing empty (0-byte) file is a store at version 0: it is migrated. */
static void test_migrate_empty_file(void **state)
{
    struct fx *f = *state;
    assert_int_equal(test_write_file(f->path, "", 0), 0);
    struct store *s = open_ok(f, STORE_OPEN_MIGRATE);
    assert_int_equal(store_schema_version(s), store_latest_version());
    store_close(s);
}

#ifdef BEADS_SCHED_TEST_HOOKS
/* A migration that fails half way leaves the store at the previous version
 * with nothing of the failed migration applied. */
static void test_migration_atomic(void **state)
{
    struct fx *f = *state;
    int n = store_migration_count;
    struct migration *list = calloc((size_t)n + 1, sizeof *list);
    assert_non_null(list);
    memcpy(list, store_migrations, (size_t)n * sizeof *list);
    list[n] = (struct migration){n + 1, "9999_broken.sql",
                                 "CREATE TABLE half_done (x);\n"
                                 "INSERT INTO half_done VALUES (1);\n"
                                 "INSERT INTO no_such_table VALUES (1);\n"};
    store_test_set_migrations(list, n + 1);
    assert_int_equal(store_latest_version(), n + 1);
    struct store *s = NULL;
    int rc = store_open(&s, f->path, STORE_OPEN_MIGRATE, f->err, sizeof f->err);
    store_test_set_migrations(NULL, 0);
    free(list);
    assert_int_equal(rc, BS_EIO);
    assert_null(s);
    assert_non_null(strstr(f->err, "9999_broken.sql"));
    char want[64];
    snprintf(want, sizeof want, "left at version %d", n);
    assert_non_null(strstr(f->err, want));

    sqlite3 *db = raw_open(f->path, SQLITE_OPEN_READONLY);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), n);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'half_done'"),
                     0);
    sqlite3_close(db);

    /* The real binary opens it fine. */
    s = open_ok(f, STORE_OPEN_DAEMON);
    assert_int_equal(store_schema_version(s), n);
    store_close(s);
}

/* Migrations run with foreign keys off (a table rebuilt must not cascade
 * into its children) and are checked before they commit: one that would
 * leave an event pointing at no attempt is refused and undone. */
static void test_migration_foreign_keys(void **state)
{
    struct fx *f = *state;
    int n = store_migration_count;
    build_old_store(f->path, n); /* an attempt of bd-old with one event */
    struct migration *list = calloc((size_t)n + 1, sizeof *list);
    assert_non_null(list);
    memcpy(list, store_migrations, (size_t)n * sizeof *list);
    list[n] = (struct migration){n + 1, "9999_orphans.sql", "DELETE FROM journal WHERE bead_id = 'bd-old';\n"};
    store_test_set_migrations(list, n + 1);
    struct store *s = NULL;
    int rc = store_open(&s, f->path, STORE_OPEN_MIGRATE, f->err, sizeof f->err);
    store_test_set_migrations(NULL, 0);
    free(list);
    assert_int_not_equal(rc, 0);
    assert_null(s);
    assert_non_null(strstr(f->err, "9999_orphans.sql failed: it would break a foreign key"));

    sqlite3 *db = raw_open(f->path, SQLITE_OPEN_READONLY);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), n);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM journal WHERE bead_id = 'bd-old'"), 1);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM event_log WHERE bead_id = 'bd-old'"), 1);
    sqlite3_close(db);
}

/* SQLITE_FULL surfaces as BS_EFULL and a failed function leaves nothing
 * half-written; an explicit transaction never reports success for work
 * SQLite threw away. */
static void test_disk_full(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    struct store_attempt keep = create_ok(s, "bd-keep", 1);
    assert_int_equal(store_test_exec(s, "PRAGMA max_page_count = 1"), 0);
    char detail[STORE_DETAIL_MAX];
    memset(detail, 'x', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    int rc = 0, i;
    char bead[32], did[32];
    for (i = 0; i < 10000 && rc == 0; i++) {
        snprintf(bead, sizeof bead, "bd-full-%d", i);
        snprintf(did, sizeof did, "d-full-%d", i);
        struct store_attempt a;
        rc = store_attempt_create(s, bead, did, 2, &a);
        if (rc == 0)
            rc = store_event_add(s, bead, a.id, "note", NULL, detail, 3);
    }
    assert_int_equal(rc, BS_EFULL);
    /* The failed create bumped no counter, or the failed event left the
     * attempt it belonged to intact: either way the rows agree. */
    struct store_bead b;
    struct store_attempt last;
    assert_int_equal(store_bead_get(s, bead, &b), 0);
    int latest = store_attempt_latest(s, bead, &last);
    if (b.attempts == 0)
        assert_int_equal(latest, BS_ENOTFOUND);
    else
        assert_int_equal(latest, 0);

    /* Inside an explicit transaction. */
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_attempt_transition(s, keep.id, AS_CLAIMING, AS_CLAIMED, NULL, 4), 0);
    rc = 0;
    for (int j = 0; j < 10000 && rc == 0; j++) {
        snprintf(bead, sizeof bead, "bd-txn-%d", j);
        rc = store_event_add(s, bead, 0, "note", NULL, detail, 5);
    }
    assert_int_equal(rc, BS_EFULL);
    int crc = store_commit(s);
    struct store_attempt k;
    assert_int_equal(store_attempt_get(s, keep.id, &k), 0);
    if (crc == 0)
        assert_int_equal(k.state, AS_CLAIMED);
    else
        assert_int_equal(k.state, AS_CLAIMING);
    assert_int_equal(store_commit(s), BS_EINVAL); /* the transaction is over either way */

    /* Room again: writes work. */
    assert_int_equal(store_test_exec(s, "PRAGMA max_page_count = 1000000"), 0);
    create_ok(s, "bd-after", 6);
    store_close(s);
}
#else
/* A build without BEADS_SCHED_TEST_HOOKS has no store seams: these tests
 * are reported as skipped, not silently left out. */
static void test_migration_atomic(void **state)
{
    (void)state;
    skip();
}

static void test_migration_foreign_keys(void **state)
{
    (void)state;
    skip();
}

static void test_disk_full(void **state)
{
    (void)state;
    skip();
}
#endif

static void test_newer_store_refused(void **state)
{
    struct fx *f = *state;
    store_close(open_ok(f, STORE_OPEN_MIGRATE));
    int newer = store_latest_version() + 5;
    sqlite3 *db = raw_open(f->path, SQLITE_OPEN_READWRITE);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", newer);
    raw_exec(db, sql);
    sqlite3_close(db);

    size_t n0, n1;
    char *before = test_read_file(f->path, &n0);
    assert_non_null(before);
    const enum store_open_mode modes[] = {STORE_OPEN_MIGRATE, STORE_OPEN_DAEMON, STORE_OPEN_READ};
    for (size_t i = 0; i < 3; i++) {
        struct store *s = (struct store *)1;
        f->err[0] = '\0';
        assert_int_equal(store_open(&s, f->path, modes[i], f->err, sizeof f->err), BS_ENEWER);
        assert_null(s);
        char want[64];
        snprintf(want, sizeof want, "schema version %d", newer);
        assert_non_null(strstr(f->err, want));
        snprintf(want, sizeof want, "binary's %d", store_latest_version());
        assert_non_null(strstr(f->err, want));
        assert_non_null(strstr(f->err, f->path));
    }
    char *after = test_read_file(f->path, &n1);
    assert_non_null(after);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
}

/* Opens path in every writing mode (and, with read_too, read-only),
 * expecting BS_ECORRUPT, an err naming the file, and the file byte-for-byte
 * unchanged with no -wal/-shm/-journal left. A read-only open skips the
 * full quick_check, so damage inside a page is only refused by writers. */
static void expect_corrupt_untouched(struct fx *f, int read_too)
{
    size_t n0, n1;
    char *before = test_read_file(f->path, &n0);
    assert_non_null(before);
    const enum store_open_mode modes[] = {STORE_OPEN_MIGRATE, STORE_OPEN_DAEMON, STORE_OPEN_READ};
    for (size_t i = 0; i < (read_too ? 3u : 2u); i++) {
        struct store *s = (struct store *)1;
        f->err[0] = '\0';
        assert_int_equal(store_open(&s, f->path, modes[i], f->err, sizeof f->err), BS_ECORRUPT);
        assert_null(s);
        assert_non_null(strstr(f->err, f->path));
        assert_false(exists(f->path, "-wal"));
        assert_false(exists(f->path, "-shm"));
        assert_false(exists(f->path, "-journal"));
    }
    char *after = test_read_file(f->path, &n1);
    assert_non_null(after);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
}

static void test_corrupt_page_refused(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_MIGRATE);
    char detail[600];
    memset(detail, 'd', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    for (int i = 0; i < 50; i++) {
        struct store_attempt a = create_ok(s, "bd-c", i);
        struct store_transition t = {.detail = detail};
        move_ok(s, a.id, AS_CLAIMING, AS_LOST_RACE, &t, i + 1);
    }
    store_close(s);
    assert_false(exists(f->path, "-wal"));

    size_t n;
    unsigned char *buf = (unsigned char *)test_read_file(f->path, &n);
    assert_non_null(buf);
    size_t page = ((size_t)buf[16] << 8) | buf[17];
    if (page == 1)
        page = 65536;
    assert_true(n >= 4 * page);
    /* Page 2 (the journal's root): header, cell pointers and some content. */
    for (size_t i = page; i < page + 200; i++)
        buf[i] = (unsigned char)(0xA5 ^ i);
    assert_int_equal(test_write_file(f->path, buf, n), 0);
    free(buf);
    expect_corrupt_untouched(f, 0);
}

static void test_not_a_database_refused(void **state)
{
    struct fx *f = *state;
    unsigned char junk[8192];
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof junk; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        junk[i] = (unsigned char)x;
    }
    assert_int_equal(test_write_file(f->path, junk, sizeof junk), 0);
    expect_corrupt_untouched(f, 1);

    const char *text = "hello\nthis is not a database, just a text file\n";
    assert_int_equal(test_write_file(f->path, text, strlen(text)), 0);
    expect_corrupt_untouched(f, 1);
}

static void test_read_missing_file(void **state)
{
    struct fx *f = *state;
    struct store *s = (struct store *)1;
    assert_int_equal(store_open(&s, f->path, STORE_OPEN_READ, f->err, sizeof f->err),
                     BS_ENOTFOUND);
    assert_null(s);
    assert_non_null(strstr(f->err, f->path));
    assert_false(exists(f->path, ""));
    assert_false(exists(f->path, "-wal"));
    assert_false(exists(f->path, "-shm"));
    assert_false(exists(f->path, ".lock"));
}

static void test_read_mode(void **state)
{
    struct fx *f = *state;
    struct store *d = open_ok(f, STORE_OPEN_DAEMON);
    struct store_attempt a = create_ok(d, "bd-r", 10);
    assert_int_equal(store_setting_set(d, "paused", "1", 10), 0);

    /* A reader beside the running daemon sees what it committed. */
    struct store *r = open_ok(f, STORE_OPEN_READ);
    struct store_attempt got;
    assert_int_equal(store_attempt_get(r, a.id, &got), 0);
    assert_string_equal(got.bead_id, "bd-r");
    move_ok(d, a.id, AS_CLAIMING, AS_CLAIMED, NULL, 11);
    assert_int_equal(store_attempt_get(r, a.id, &got), 0);
    assert_int_equal(got.state, AS_CLAIMED);
    char v[8];
    assert_int_equal(store_setting_get(r, "paused", v, sizeof v), 0);
    assert_string_equal(v, "1");
    int64_t cnt = -1;
    assert_int_equal(store_attempts_active_count(r, &cnt), 0);
    assert_int_equal(cnt, 1);

    /* ... and cannot write. */
    struct store_attempt b;
    assert_int_equal(store_attempt_create(r, "bd-r", "d-ro", 12, &b), BS_ERDONLY);
    assert_int_equal(store_attempt_transition(r, a.id, AS_CLAIMED, AS_POSTING, NULL, 12),
                     BS_ERDONLY);
    assert_int_equal(store_setting_set(r, "paused", "0", 12), BS_ERDONLY);
    assert_int_equal(store_event_add(r, "bd-r", 0, "note", NULL, NULL, 12), BS_ERDONLY);
    assert_int_equal(store_bead_set_retry(r, "bd-r", 99), BS_ERDONLY);
    assert_int_equal(store_begin(r), BS_ERDONLY);
    store_close(r);
    store_close(d);

    /* An older store opens for reading as it is, and is not migrated. */
    char old[4200];
    snprintf(old, sizeof old, "%s/old.db", f->dir);
    build_old_store(old, 1);
    assert_int_equal(store_open(&r, old, STORE_OPEN_READ, f->err, sizeof f->err), 0);
    assert_int_equal(store_schema_version(r), 1);
    assert_int_equal(store_attempt_latest(r, "bd-old", &got), 0);
    assert_int_equal(got.state, AS_DISPATCHED);
    store_close(r);
    sqlite3 *db = raw_open(old, SQLITE_OPEN_READONLY);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), 1);
    sqlite3_close(db);
}

/* ---- the single-writer lock ------------------------------------------ */

/* Runs a DAEMON open of path in a child process; returns the child's exit
 * status: 0 when the open gave want (and, for BS_EBUSY, the message). */
static int daemon_open_in_child(const char *path, int want)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct store *s = NULL;
        char err[512] = "";
        int rc = store_open(&s, path, STORE_OPEN_DAEMON, err, sizeof err);
        int ok = rc == want;
        if (rc == BS_EBUSY)
            ok = ok && strstr(err, "already in use") && strstr(err, ".lock") && !s;
        if (rc == 0) {
            struct store_attempt a;
            ok = ok && store_attempt_create(s, "bd-child", "d-child", 1, &a) == 0;
            store_close(s);
        }
        if (!ok)
            fprintf(stderr, "child: rc=%d (%s) err=%s\n", rc, bs_strerror(rc), err);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_daemon_lock(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    assert_true(exists(f->path, ".lock"));

    /* Another process is refused. */
    assert_int_equal(daemon_open_in_child(f->path, BS_EBUSY), 0);

    /* So is a second handle in this process (flock: per open file). */
    struct store *s2 = (struct store *)1;
    assert_int_equal(store_open(&s2, f->path, STORE_OPEN_DAEMON, f->err, sizeof f->err),
                     BS_EBUSY);
    assert_null(s2);
    assert_non_null(strstr(f->err, "already in use by another beads-sched process"));
    assert_non_null(strstr(f->err, f->path));

    /* The refused opens wrote nothing. */
    struct store_attempt a;
    assert_int_equal(store_attempt_latest(s, "bd-child", &a), BS_ENOTFOUND);
    store_close(s);

    /* Released on close. */
    assert_int_equal(daemon_open_in_child(f->path, 0), 0);
    s = open_ok(f, STORE_OPEN_DAEMON);
    assert_int_equal(store_attempt_latest(s, "bd-child", &a), 0);
    store_close(s);
}

/* ---- the journal ------------------------------------------------------ */

/* An attempt another instance left in progress, adopted: numbered from the
 * claims on the bead, dispatched at once, and counting the attempts before
 * it towards MAX_ATTEMPTS; its dispatch id can be adopted only once. */
static void test_attempt_adopt(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    struct store_attempt a;
    assert_int_equal(store_attempt_adopt(s, "bd-9", "d-other-2", "abcdef012345", 2, 1000, &a), 0);
    assert_int_equal(a.attempt, 2);
    assert_int_equal(a.state, AS_DISPATCHED);
    assert_string_equal(a.job_id, "abcdef012345");
    int used = -1;
    assert_int_equal(store_bead_attempts_used(s, "bd-9", &used), 0);
    assert_int_equal(used, 2); /* the other instance's first attempt and this one */
    struct store_attempt g;
    assert_int_equal(store_attempt_get(s, a.id, &g), 0);
    assert_int_equal(g.state, AS_DISPATCHED);
    assert_int_equal(g.dispatched_at, 1000);
    assert_true(strstr(g.detail, "adopted from another instance") != NULL);
    /* Once only. */
    assert_int_equal(store_attempt_adopt(s, "bd-9", "d-other-2", "abcdef012345", 2, 1100, NULL), BS_ESTATE);
    assert_int_equal(store_attempt_adopt(s, "bd-9", "d-x", "abcdef012345", 0, 1100, NULL), BS_EINVAL);
    /* Our next attempt numbers on. */
    move_ok(s, a.id, AS_DISPATCHED, AS_RETRYING, NULL, 2000);
    struct store_attempt b;
    assert_int_equal(store_attempt_create(s, "bd-9", "d-ours-3", 3000, &b), 0);
    assert_int_equal(b.attempt, 3);
    store_close(s);
}

static void test_journal_flow(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    struct store_attempt a;
    assert_int_equal(store_attempt_create(s, "bd-1", "d-1", 1000, &a), 0);
    assert_true(a.id > 0);
    assert_int_equal(a.attempt, 1);
    assert_int_equal(a.state, AS_CLAIMING);
    assert_int_equal(a.created_at, 1000);
    assert_string_equal(a.dispatch_id, "d-1");
    assert_string_equal(a.job_id, "");

    struct store_transition claimed = {.bead_updated_at = "2026-11-21 04:50:00"};
    move_ok(s, a.id, AS_CLAIMING, AS_CLAIMED, &claimed, 2000);
    move_ok(s, a.id, AS_CLAIMED, AS_POSTING, NULL, 3000);
    struct store_transition dispatched = {.job_id = "job-1", .detail = "dispatched: job=job-1"};
    move_ok(s, a.id, AS_POSTING, AS_DISPATCHED, &dispatched, 4000);

    struct store_attempt g;
    assert_int_equal(store_attempt_get(s, a.id, &g), 0);
    assert_int_equal(g.state, AS_DISPATCHED);
    assert_int_equal(g.claimed_at, 2000);
    assert_int_equal(g.posting_at, 3000);
    assert_int_equal(g.dispatched_at, 4000);
    assert_int_equal(g.finished_at, 0);
    assert_string_equal(g.job_id, "job-1");
    assert_string_equal(g.outcome, "");
    assert_string_equal(g.bead_updated_at, "2026-11-21 04:50:00");
    int64_t n = -1;
    assert_int_equal(store_attempts_active_count(s, &n), 0);
    assert_int_equal(n, 1);

    move_ok(s, a.id, AS_DISPATCHED, AS_CLOSED, NULL, 5000);
    assert_int_equal(store_attempt_get(s, a.id, &g), 0);
    assert_int_equal(g.state, AS_CLOSED);
    assert_int_equal(g.finished_at, 5000);
    assert_string_equal(g.outcome, "closed"); /* terminal without outcome: the state */
    assert_string_equal(g.job_id, "job-1");   /* kept */
    assert_string_equal(g.detail, "dispatched: job=job-1");
    assert_int_equal(g.created_at, 1000);
    assert_int_equal(store_attempts_active_count(s, &n), 0);
    assert_int_equal(n, 0);

    /* The ambiguous path: posting -> unknown (no timestamp) -> dispatched ->
     * retrying with an explicit outcome. */
    struct store_attempt b = create_ok(s, "bd-1", 6000);
    assert_int_equal(b.attempt, 2);
    move_ok(s, b.id, AS_CLAIMING, AS_CLAIMED, NULL, 6100);
    move_ok(s, b.id, AS_CLAIMED, AS_POSTING, NULL, 6200);
    struct store_transition unk = {.detail = "timeout after send"};
    move_ok(s, b.id, AS_POSTING, AS_UNKNOWN, &unk, 6300);
    assert_int_equal(store_attempt_get(s, b.id, &g), 0);
    assert_int_equal(g.state, AS_UNKNOWN);
    assert_int_equal(g.posting_at, 6200);
    assert_int_equal(g.dispatched_at, 0);
    assert_int_equal(g.finished_at, 0);
    struct store_transition found = {.job_id = "job-2"};
    move_ok(s, b.id, AS_UNKNOWN, AS_DISPATCHED, &found, 6400);
    struct store_transition stopped = {.outcome = "agent_stopped", .detail = "job failed"};
    move_ok(s, b.id, AS_DISPATCHED, AS_RETRYING, &stopped, 6500);
    assert_int_equal(store_attempt_get(s, b.id, &g), 0);
    assert_int_equal(g.state, AS_RETRYING);
    assert_int_equal(g.dispatched_at, 6400);
    assert_int_equal(g.finished_at, 6500);
    assert_string_equal(g.outcome, "agent_stopped");
    assert_string_equal(g.detail, "job failed");
    assert_int_equal(store_attempt_latest(s, "bd-1", &g), 0);
    assert_int_equal(g.id, b.id);
    store_close(s);

    /* What an operator sees. */
    sqlite3 *db = raw_open(f->path, SQLITE_OPEN_READONLY);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT at, attempt, event, job_id, detail FROM history "
                                        "WHERE bead_id = 'bd-1'", -1, &st, NULL),
                     SQLITE_OK);
    static const struct {
        const char *at;
        int attempt;
        const char *event, *job, *detail;
    } want[] = {
        {"1970-01-01T00:00:01.000Z", 1, "claiming", NULL, NULL},
        {"1970-01-01T00:00:02.000Z", 1, "claimed", NULL, NULL},
        {"1970-01-01T00:00:03.000Z", 1, "posting", NULL, NULL},
        {"1970-01-01T00:00:04.000Z", 1, "dispatched", "job-1", "dispatched: job=job-1"},
        {"1970-01-01T00:00:05.000Z", 1, "closed", "job-1", NULL},
        {"1970-01-01T00:00:06.000Z", 2, "claiming", NULL, NULL},
        {"1970-01-01T00:00:06.100Z", 2, "claimed", NULL, NULL},
        {"1970-01-01T00:00:06.200Z", 2, "posting", NULL, NULL},
        {"1970-01-01T00:00:06.300Z", 2, "unknown", NULL, "timeout after send"},
        {"1970-01-01T00:00:06.400Z", 2, "dispatched", "job-2", NULL},
        {"1970-01-01T00:00:06.500Z", 2, "retrying", "job-2", "job failed"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(st, 0), want[i].at);
        assert_int_equal(sqlite3_column_int(st, 1), want[i].attempt);
        assert_string_equal((const char *)sqlite3_column_text(st, 2), want[i].event);
        const char *job = (const char *)sqlite3_column_text(st, 3);
        if (want[i].job)
            assert_string_equal(job, want[i].job);
        else
            assert_null(job);
        const char *detail = (const char *)sqlite3_column_text(st, 4);
        if (want[i].detail)
            assert_string_equal(detail, want[i].detail);
        else
            assert_null(detail);
    }
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    char buf[128];
    assert_string_equal(raw_text(db, "SELECT claimed_at || ' ' || dispatched_at || ' ' || "
                                     "finished_at || ' ' || outcome FROM attempts "
                                     "WHERE attempt = 1", buf, sizeof buf),
                        "1970-01-01T00:00:02.000Z 1970-01-01T00:00:04.000Z "
                        "1970-01-01T00:00:05.000Z closed");
    sqlite3_close(db);
}

static int64_t events_of(struct fx *f, int64_t attempt_id)
{
    sqlite3 *db = raw_open(f->path, SQLITE_OPEN_READONLY);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM event_log WHERE attempt_id = %lld",
             (long long)attempt_id);
    int64_t n = raw_int(db, sql);
    sqlite3_close(db);
    return n;
}

static void test_transition_cas_and_rules(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    struct store_attempt a = create_ok(s, "bd-cas", 1);

    /* Compare-and-swap: the row is in claiming, not claimed. */
    assert_int_equal(store_attempt_transition(s, a.id, AS_CLAIMED, AS_POSTING, NULL, 2),
                     BS_ESTATE);
    assert_int_equal(store_attempt_transition(s, 999999, AS_CLAIMING, AS_CLAIMED, NULL, 2),
                     BS_ENOTFOUND);
    struct store_attempt g;
    assert_int_equal(store_attempt_get(s, a.id, &g), 0);
    assert_int_equal(g.state, AS_CLAIMING);
    assert_int_equal(g.posting_at, 0);
    assert_int_equal(events_of(f, a.id), 1);

    /* Two movers from the same state: the second loses. */
    move_ok(s, a.id, AS_CLAIMING, AS_CLAIMED, NULL, 3);
    assert_int_equal(store_attempt_transition(s, a.id, AS_CLAIMING, AS_LOST_RACE, NULL, 3),
                     BS_ESTATE);

    /* Forbidden moves, refused before touching the row. */
    assert_int_equal(store_attempt_transition(s, a.id, AS_CLAIMED, AS_CLAIMING, NULL, 4),
                     BS_EINVAL);
    assert_int_equal(store_attempt_transition(s, a.id, AS_CLAIMED, AS_DISPATCHED, NULL, 4),
                     BS_EINVAL);
    assert_int_equal(store_attempt_transition(s, a.id, AS_CLAIMED, AS_UNKNOWN, NULL, 4),
                     BS_EINVAL);
    assert_int_equal(store_attempt_transition(s, a.id, AS_CLAIMED, AS_CLAIMED, NULL, 4),
                     BS_EINVAL);
    assert_int_equal(store_attempt_transition(s, a.id, AS_CLAIMED, AS_STATE_COUNT, NULL, 4),
                     BS_EINVAL);
    assert_int_equal(
        store_attempt_transition(s, a.id, (enum attempt_state)-1, AS_CLOSED, NULL, 4),
        BS_EINVAL);
    struct store_transition long_job = {.job_id = "0123456789012345678901234567890123456789"
                                                  "012345678901234567890123"};
    assert_int_equal(strlen(long_job.job_id), STORE_JOB_ID_MAX);
    assert_int_equal(store_attempt_transition(s, a.id, AS_CLAIMED, AS_POSTING, &long_job, 4),
                     BS_EINVAL);
    assert_int_equal(store_attempt_get(s, a.id, &g), 0);
    assert_int_equal(g.state, AS_CLAIMED);

    /* Any non-terminal state may end; nothing leaves a terminal state. */
    move_ok(s, a.id, AS_CLAIMED, AS_REFUSED, NULL, 5);
    for (int to = 0; to < AS_STATE_COUNT; to++)
        assert_int_equal(store_attempt_transition(s, a.id, AS_REFUSED, (enum attempt_state)to,
                                                  NULL, 6),
                         BS_EINVAL);
    for (int from = AS_CLAIMING; from <= AS_DISPATCHED; from++)
        for (int to = AS_CLOSED; to < AS_STATE_COUNT; to++) {
            /* Drive a fresh attempt to `from` by the allowed path. */
            struct store_attempt x = create_ok(s, "bd-all", 10);
            static const enum attempt_state path[] = {AS_CLAIMING, AS_CLAIMED, AS_POSTING,
                                                      AS_UNKNOWN, AS_DISPATCHED};
            for (int i = 1; i < 5 && path[i - 1] != (enum attempt_state)from; i++)
                move_ok(s, x.id, path[i - 1], path[i], NULL, 11);
            move_ok(s, x.id, (enum attempt_state)from, (enum attempt_state)to, NULL, 12);
            assert_int_equal(store_attempt_get(s, x.id, &g), 0);
            assert_int_equal(g.state, to);
            assert_int_equal(g.finished_at, 12);
            assert_string_equal(g.outcome, attempt_state_name((enum attempt_state)to));
        }
    store_close(s);
}

static void test_attempt_counter(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    char first_dispatch[STORE_DISPATCH_ID_MAX] = "";
    for (int i = 1; i <= 3; i++) {
        struct store_attempt a = create_ok(s, "bd-n", i);
        if (i == 1)
            snprintf(first_dispatch, sizeof first_dispatch, "%s", a.dispatch_id);
        assert_int_equal(a.attempt, i);
        move_ok(s, a.id, AS_CLAIMING, AS_RELEASED, NULL, i);
    }
    assert_int_equal(create_ok(s, "bd-other", 4).attempt, 1);
    struct store_bead b;
    assert_int_equal(store_bead_get(s, "bd-n", &b), 0);
    assert_int_equal(b.attempts, 3);
    store_close(s);

    s = open_ok(f, STORE_OPEN_DAEMON);
    assert_int_equal(create_ok(s, "bd-n", 5).attempt, 4);
    struct store_attempt l;
    assert_int_equal(store_attempt_latest(s, "bd-n", &l), 0);
    assert_int_equal(l.attempt, 4);
    assert_int_equal(store_attempt_latest(s, "bd-never", &l), BS_ENOTFOUND);
    /* A duplicate dispatch id is refused and bumps nothing. */
    struct store_attempt a;
    assert_int_equal(store_attempt_create(s, "bd-n", first_dispatch, 6, &a), BS_EINVAL);
    assert_int_equal(store_bead_get(s, "bd-n", &b), 0);
    assert_int_equal(b.attempts, 4);
    store_close(s);

    /* Even if an operator deletes the counter, it does not go back. */
    sqlite3 *db = raw_open(f->path, SQLITE_OPEN_READWRITE);
    raw_exec(db, "DELETE FROM bead_state WHERE bead_id = 'bd-n'");
    sqlite3_close(db);
    s = open_ok(f, STORE_OPEN_DAEMON);
    assert_int_equal(create_ok(s, "bd-n", 7).attempt, 5);
    store_close(s);
}

struct walk {
    struct store *s;
    int64_t ids[16];
    int n;
    int stop_after;
    int release;
};

static int walk_cb(const struct store_attempt *a, void *arg)
{
    struct walk *w = arg;
    assert_false(attempt_state_terminal(a->state));
    w->ids[w->n++] = a->id;
    if (w->release)
        assert_int_equal(store_attempt_transition(w->s, a->id, a->state, AS_RELEASED, NULL, 99),
                         0);
    return w->n == w->stop_after ? 42 : 0;
}

static void test_attempts_active(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    struct store_attempt a = create_ok(s, "bd-a", 1);
    struct store_attempt b = create_ok(s, "bd-b", 2);
    move_ok(s, b.id, AS_CLAIMING, AS_CLAIMED, NULL, 2);
    struct store_attempt c = create_ok(s, "bd-c", 3);
    move_ok(s, c.id, AS_CLAIMING, AS_CLAIMED, NULL, 3);
    move_ok(s, c.id, AS_CLAIMED, AS_POSTING, NULL, 3);
    move_ok(s, c.id, AS_POSTING, AS_UNKNOWN, NULL, 3);
    struct store_attempt e = create_ok(s, "bd-e", 4);
    move_ok(s, e.id, AS_CLAIMING, AS_LOST_RACE, NULL, 4);
    struct store_attempt d = create_ok(s, "bd-d", 5);
    move_ok(s, d.id, AS_CLAIMING, AS_CLAIMED, NULL, 5);
    move_ok(s, d.id, AS_CLAIMED, AS_POSTING, NULL, 5);
    move_ok(s, d.id, AS_POSTING, AS_DISPATCHED, NULL, 5);
    struct store_attempt g = create_ok(s, "bd-g", 6);
    move_ok(s, g.id, AS_CLAIMING, AS_CLAIMED, NULL, 6);
    move_ok(s, g.id, AS_CLAIMED, AS_POSTING, NULL, 6);
    move_ok(s, g.id, AS_POSTING, AS_DISPATCHED, NULL, 6);
    move_ok(s, g.id, AS_DISPATCHED, AS_CLOSED, NULL, 6);

    struct walk w = {.s = s};
    assert_int_equal(store_attempts_active(s, walk_cb, &w), 0);
    assert_int_equal(w.n, 4);
    assert_int_equal(w.ids[0], a.id);
    assert_int_equal(w.ids[1], b.id);
    assert_int_equal(w.ids[2], c.id);
    assert_int_equal(w.ids[3], d.id);
    int64_t n = -1;
    assert_int_equal(store_attempts_active_count(s, &n), 0);
    assert_int_equal(n, 4);

    /* A non-zero return stops the walk and is returned. */
    struct walk stop = {.s = s, .stop_after = 2};
    assert_int_equal(store_attempts_active(s, walk_cb, &stop), 42);
    assert_int_equal(stop.n, 2);

    /* The callback may write to the store. */
    struct walk rel = {.s = s, .release = 1};
    assert_int_equal(store_attempts_active(s, walk_cb, &rel), 0);
    assert_int_equal(rel.n, 4);
    assert_int_equal(store_attempts_active_count(s, &n), 0);
    assert_int_equal(n, 0);
    struct walk none = {.s = s};
    assert_int_equal(store_attempts_active(s, walk_cb, &none), 0);
    assert_int_equal(none.n, 0);
    store_close(s);
}

#ifdef BEADS_SCHED_TEST_HOOKS
/* The journal's writes build no temporary b-tree: an IN list in a CHECK or
 * a partial index's WHERE made SQLite build one per list each time a row
 * was written (migrations/0004). The scans of the active attempts use the
 * partial index, whose WHERE they must repeat word for word. */
static void test_statement_plans(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    assert_int_equal(store_test_explain(s, "INSERT INTO journal", 0, "OpenEphemeral"), 0);
    assert_int_equal(store_test_explain(s, "UPDATE journal", 0, "OpenEphemeral"), 0);
    assert_int_equal(store_test_explain(s, "INSERT INTO event_log", 0, "OpenEphemeral"), 0);
    assert_int_equal(store_test_explain(s, "INSERT INTO bead_state", 0, "OpenEphemeral"), 0);
    /* The seam finds what it is asked for: the bump reads the journal. */
    assert_int_equal(store_test_explain(s, "INSERT INTO bead_state (bead_id, attempts)", 1,
                                        "journal"), 2);
    assert_int_equal(store_test_explain(s, "FROM journal WHERE (state = 'claiming'", 1,
                                        "journal_active"), 2);
    assert_int_equal(store_test_explain(s, "no such statement", 0, "Init"), -1);

    /* The CHECK still refuses a state that is not one. */
    assert_int_not_equal(store_test_exec(s, "INSERT INTO journal (bead_id, attempt, dispatch_id, "
                                            "state, created_at) VALUES ('x', 1, 'd', 'nope', 1)"),
                         0);
    assert_int_equal(store_test_exec(s, "INSERT INTO journal (bead_id, attempt, dispatch_id, "
                                        "state, created_at) VALUES ('x', 1, 'd', 'gave_up', 1)"),
                     0);
    store_close(s);
}
#else
static void test_statement_plans(void **state)
{
    (void)state;
    skip(); /* needs the store seams */
}
#endif

static void test_settings(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    char v[16];
    assert_int_equal(store_setting_get(s, "paused", v, sizeof v), BS_ENOTFOUND);
    assert_int_equal(store_setting_set(s, "paused", "1", 100), 0);
    assert_int_equal(store_setting_get(s, "paused", v, sizeof v), 0);
    assert_string_equal(v, "1");
    assert_int_equal(store_setting_set(s, "paused", "0", 200), 0);
    assert_int_equal(store_setting_get(s, "paused", v, sizeof v), 0);
    assert_string_equal(v, "0");
    assert_int_equal(store_setting_set(s, "long", "abcdef", 300), 0);
    char small[3];
    assert_int_equal(store_setting_get(s, "long", small, sizeof small), 0);
    assert_string_equal(small, "ab");
    assert_int_equal(store_setting_set(s, "", "x", 1), BS_EINVAL);
    assert_int_equal(store_setting_set(s, "k", NULL, 1), BS_EINVAL);
    assert_int_equal(store_setting_get(s, "paused", v, 0), BS_EINVAL);
    store_close(s);

    s = open_ok(f, STORE_OPEN_DAEMON);
    assert_int_equal(store_setting_get(s, "paused", v, sizeof v), 0);
    assert_string_equal(v, "0");
    store_close(s);
    sqlite3 *db = raw_open(f->path, SQLITE_OPEN_READONLY);
    assert_int_equal(raw_int(db, "SELECT updated_at FROM settings WHERE key = 'paused'"), 200);
    sqlite3_close(db);
}

static void test_bead_state(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    struct store_bead b = {.attempts = 7, .next_retry_at = 7, .skip_noted_at = "junk"};
    assert_int_equal(store_bead_get(s, "bd-new", &b), 0);
    assert_int_equal(b.attempts, 0);
    assert_int_equal(b.next_retry_at, 0);
    assert_string_equal(b.skip_noted_at, "");

    assert_int_equal(store_bead_set_retry(s, "bd-new", 12345), 0);
    assert_int_equal(store_bead_set_skip_noted(s, "bd-new", "2026-11-21 04:50:00"), 0);
    assert_int_equal(store_bead_get(s, "bd-new", &b), 0);
    assert_int_equal(b.attempts, 0);
    assert_int_equal(b.next_retry_at, 12345);
    assert_string_equal(b.skip_noted_at, "2026-11-21 04:50:00");

    /* Starting an attempt keeps the other fields. */
    create_ok(s, "bd-new", 1);
    assert_int_equal(store_bead_get(s, "bd-new", &b), 0);
    assert_int_equal(b.attempts, 1);
    assert_int_equal(b.next_retry_at, 12345);
    assert_string_equal(b.skip_noted_at, "2026-11-21 04:50:00");

    assert_int_equal(store_bead_set_retry(s, "bd-new", 0), 0);
    assert_int_equal(store_bead_set_skip_noted(s, "bd-new", NULL), 0);
    assert_int_equal(store_bead_get(s, "bd-new", &b), 0);
    assert_int_equal(b.attempts, 1);
    assert_int_equal(b.next_retry_at, 0);
    assert_string_equal(b.skip_noted_at, "");

    char ts[STORE_TS_MAX + 1];
    memset(ts, '9', STORE_TS_MAX);
    ts[STORE_TS_MAX] = '\0';
    assert_int_equal(store_bead_set_skip_noted(s, "bd-new", ts), BS_EINVAL);
    ts[STORE_TS_MAX - 1] = '\0';
    assert_int_equal(store_bead_set_skip_noted(s, "bd-new", ts), 0);
    assert_int_equal(store_bead_get(s, "bd-new", &b), 0);
    assert_string_equal(b.skip_noted_at, ts);
    assert_int_equal(store_bead_set_retry(s, "", 1), BS_EINVAL);
    store_close(s);
}

/* ---- hostile input, truncation, views -------------------------------- */

static void test_hostile_bead_ids(void **state)
{
    struct fx *f = *state;
    static const char *const ids[] = {
        "x'; DROP TABLE journal; --",
        "a\"b'c`d",
        "line1\nline2\r\n\tend",
        "unicode-\xc3\xbc-\xe6\x97\xa5\xe6\x9c\xac",
        "%s%n%d%%",
        "back\\slash');--",
    };
    size_t count = sizeof ids / sizeof *ids;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    for (size_t i = 0; i < count; i++) {
        struct store_attempt a = create_ok(s, ids[i], 1);
        assert_string_equal(a.bead_id, ids[i]);
        struct store_attempt g;
        assert_int_equal(store_attempt_get(s, a.id, &g), 0);
        assert_string_equal(g.bead_id, ids[i]);
        assert_int_equal(store_attempt_latest(s, ids[i], &g), 0);
        assert_int_equal(g.id, a.id);
        struct store_transition t = {.detail = ids[i], .outcome = "x'--"};
        move_ok(s, a.id, AS_CLAIMING, AS_BLOCKED, &t, 2);
        assert_int_equal(store_attempt_get(s, a.id, &g), 0);
        assert_string_equal(g.detail, ids[i]);
        assert_string_equal(g.outcome, "x'--");
        assert_int_equal(store_event_add(s, ids[i], a.id, "note", "job'1", ids[i], 3), 0);
        assert_int_equal(store_setting_set(s, ids[i], ids[i], 4), 0);
        char v[64];
        assert_int_equal(store_setting_get(s, ids[i], v, sizeof v), 0);
        assert_string_equal(v, ids[i]);
        struct store_bead b;
        assert_int_equal(store_bead_get(s, ids[i], &b), 0);
        assert_int_equal(b.attempts, 1);
    }
    /* Prefixes and near misses are other beads. */
    struct store_attempt g;
    assert_int_equal(store_attempt_latest(s, "x'", &g), BS_ENOTFOUND);
    assert_int_equal(store_attempt_latest(s, "%", &g), BS_ENOTFOUND);

    /* Length limits: ids are refused, never truncated. */
    char *big = malloc(STORE_BEAD_ID_MAX + 1);
    assert_non_null(big);
    memset(big, 'b', STORE_BEAD_ID_MAX);
    big[STORE_BEAD_ID_MAX] = '\0';
    assert_int_equal(store_attempt_create(s, big, "d-big", 1, &g), BS_EINVAL);
    big[STORE_BEAD_ID_MAX - 1] = '\0';
    struct store_attempt a = create_ok(s, big, 1);
    assert_int_equal(store_attempt_get(s, a.id, &g), 0);
    assert_string_equal(g.bead_id, big);
    free(big);
    assert_int_equal(store_attempt_create(s, "", "d-empty", 1, &g), BS_EINVAL);
    assert_int_equal(store_attempt_create(s, NULL, "d-null", 1, &g), BS_EINVAL);
    assert_int_equal(store_attempt_create(s, "bd", "", 1, &g), BS_EINVAL);
    assert_int_equal(store_attempt_create(s, "bd", "0123456789012345678901234567890123456789",
                                          1, &g),
                     BS_EINVAL);
    /* An event for an attempt that does not exist breaks the foreign key. */
    assert_int_equal(store_event_add(s, "bd", 987654, "note", NULL, NULL, 1), BS_EINVAL);
    assert_int_equal(store_event_add(s, "bd", 0, "", NULL, NULL, 1), BS_EINVAL);
    store_close(s);

    sqlite3 *db = raw_open(f->path, SQLITE_OPEN_READONLY);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM journal"), (int64_t)count + 1);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT bead_id FROM history WHERE event = 'note' "
                                            "AND job_id = 'job''1'", -1, &st, NULL),
                     SQLITE_OK);
    for (size_t i = 0; i < count; i++) {
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(st, 0), ids[i]);
    }
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_detail_truncation(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    /* 1100 bytes of two-byte characters: cut at 1022, never at 1023. */
    char *detail = malloc(1101);
    assert_non_null(detail);
    for (int i = 0; i < 1100; i += 2) {
        detail[i] = (char)0xc3;
        detail[i + 1] = (char)0xa9; /* é */
    }
    detail[1100] = '\0';
    struct store_attempt a = create_ok(s, "bd-t", 1);
    struct store_transition t = {.detail = detail};
    move_ok(s, a.id, AS_CLAIMING, AS_CLAIMED, &t, 2);
    struct store_attempt g;
    assert_int_equal(store_attempt_get(s, a.id, &g), 0);
    assert_int_equal(strlen(g.detail), 1022);
    assert_memory_equal(g.detail, detail, 1022);

    /* Three-byte characters after one ASCII byte: 1 + 3k <= 1023 -> 1021. */
    detail[0] = 'a';
    for (int i = 1; i + 3 <= 1100; i += 3) {
        detail[i] = (char)0xe6;
        detail[i + 1] = (char)0x97;
        detail[i + 2] = (char)0xa5; /* 日 */
    }
    assert_int_equal(store_event_add(s, "bd-t", a.id, "note", NULL, detail, 3), 0);
    move_ok(s, a.id, AS_CLAIMED, AS_GAVE_UP, &t, 4);
    free(detail);
    store_close(s);

    sqlite3 *db = raw_open(f->path, SQLITE_OPEN_READONLY);
    assert_int_equal(raw_int(db, "SELECT length(CAST(detail AS BLOB)) FROM event_log "
                                 "WHERE event = 'claimed'"),
                     1022);
    assert_int_equal(raw_int(db, "SELECT length(CAST(detail AS BLOB)) FROM event_log "
                                 "WHERE event = 'note'"),
                     1021);
    /* gave_up carried the three-byte text: the journal holds its cut. */
    assert_int_equal(raw_int(db, "SELECT length(CAST(detail AS BLOB)) FROM journal"), 1021);
    sqlite3_close(db);
}

static void expect_columns(sqlite3 *db, const char *sql, const char *const *names, int n)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_column_count(st), n);
    for (int i = 0; i < n; i++)
        assert_string_equal(sqlite3_column_name(st, i), names[i]);
    sqlite3_finalize(st);
}

static void test_view_columns(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_MIGRATE);
    struct store_attempt a = create_ok(s, "bd-v", 1000);
    assert_int_equal(store_event_add(s, NULL, 0, "paused", NULL, "by operator", 1500), 0);
    move_ok(s, a.id, AS_CLAIMING, AS_CLAIMED, NULL, 2000);
    store_close(s);

    sqlite3 *db = raw_open(f->path, SQLITE_OPEN_READONLY);
    static const char *const attempts[] = {"bead_id",    "attempt",       "state",
                                           "job_id",     "dispatch_id",   "claimed_at",
                                           "dispatched_at", "finished_at", "outcome",
                                           "detail"};
    static const char *const history[] = {"at", "bead_id", "attempt", "event", "job_id",
                                          "detail"};
    expect_columns(db, "SELECT * FROM attempts", attempts, 10);
    expect_columns(db, "SELECT * FROM history", history, 6);
    /* Oldest first; an event without an attempt has a NULL attempt. */
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT event, attempt, bead_id FROM history", -1,
                                        &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "claiming");
    assert_int_equal(sqlite3_column_int(st, 1), 1);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "paused");
    assert_int_equal(sqlite3_column_type(st, 1), SQLITE_NULL);
    assert_int_equal(sqlite3_column_type(st, 2), SQLITE_NULL);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "claimed");
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* ---- transactions ------------------------------------------------------ */

static void test_transactions(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    assert_int_equal(store_commit(s), BS_EINVAL);
    store_rollback(s); /* no-op */

    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_begin(s), BS_EINVAL);
    struct store_attempt a = create_ok(s, "bd-rb", 1);
    move_ok(s, a.id, AS_CLAIMING, AS_CLAIMED, NULL, 2);
    assert_int_equal(store_setting_set(s, "paused", "1", 2), 0);
    store_rollback(s);
    struct store_attempt g;
    assert_int_equal(store_attempt_latest(s, "bd-rb", &g), BS_ENOTFOUND);
    struct store_bead b;
    assert_int_equal(store_bead_get(s, "bd-rb", &b), 0);
    assert_int_equal(b.attempts, 0);
    char v[8];
    assert_int_equal(store_setting_get(s, "paused", v, sizeof v), BS_ENOTFOUND);

    /* A failed function inside the caller's transaction leaves nothing of
     * itself and does not spoil the rest. */
    assert_int_equal(store_begin(s), 0);
    struct store_attempt x = create_ok(s, "bd-tx", 3);
    assert_int_equal(store_attempt_transition(s, x.id, AS_POSTING, AS_DISPATCHED, NULL, 4),
                     BS_ESTATE);
    char did[STORE_DISPATCH_ID_MAX];
    snprintf(did, sizeof did, "disp-%d", dispatch_seq); /* x's dispatch id again */
    assert_int_equal(store_attempt_create(s, "bd-dup", did, 4, &g), BS_EINVAL);
    struct store_attempt y = create_ok(s, "bd-tx", 5);
    assert_int_equal(store_commit(s), 0);
    assert_int_equal(store_attempt_get(s, x.id, &g), 0);
    assert_int_equal(store_attempt_get(s, y.id, &g), 0);
    assert_int_equal(g.attempt, 2);
    assert_int_equal(store_bead_get(s, "bd-dup", &b), 0);
    assert_int_equal(b.attempts, 0);

    /* Closing with a transaction open discards it. */
    assert_int_equal(store_begin(s), 0);
    create_ok(s, "bd-closed", 6);
    store_close(s);
    s = open_ok(f, STORE_OPEN_DAEMON);
    assert_int_equal(store_attempt_latest(s, "bd-closed", &g), BS_ENOTFOUND);
    store_close(s);
}

/* A read snapshot: reads run inside it, nothing writes, no transaction
 * opens; after it, all is as before. */
static void test_read_snapshot(void **state)
{
    struct fx *f = *state;
    struct store *s = open_ok(f, STORE_OPEN_DAEMON);
    struct store_attempt a = create_ok(s, "bd-snap", 1);
    store_read_end(s); /* no-op without one */
    assert_int_equal(store_read_begin(s), 0);
    assert_int_equal(store_read_begin(s), BS_EINVAL);
    assert_int_equal(store_begin(s), BS_EINVAL);
    struct store_attempt g;
    assert_int_equal(store_attempt_latest(s, "bd-snap", &g), 0);
    assert_int_equal(g.id, a.id);
    int used = -1;
    assert_int_equal(store_bead_attempts_used(s, "bd-snap", &used), 0);
    assert_int_equal(used, 0); /* claiming: never reached the agent */
    char did[STORE_DISPATCH_ID_MAX];
    snprintf(did, sizeof did, "snap-%d", ++dispatch_seq);
    assert_int_equal(store_attempt_create(s, "bd-snap2", did, 2, &g), BS_EINVAL);
    assert_int_equal(store_attempt_transition(s, a.id, AS_CLAIMING, AS_CLAIMED, NULL, 2), BS_EINVAL);
    store_read_end(s);
    store_read_end(s);
    assert_int_equal(store_attempt_latest(s, "bd-snap2", &g), BS_ENOTFOUND);
    assert_int_equal(store_attempt_get(s, a.id, &g), 0);
    assert_int_equal(g.state, AS_CLAIMING);
    /* Writes and transactions work again. */
    move_ok(s, a.id, AS_CLAIMING, AS_CLAIMED, NULL, 3);
    assert_int_equal(store_begin(s), 0);
    assert_int_equal(store_read_begin(s), BS_EINVAL);
    assert_int_equal(store_commit(s), 0);
    store_close(s);
}

static void test_state_names(void **state)
{
    (void)state;
    for (int i = 0; i < AS_STATE_COUNT; i++) {
        const char *name = attempt_state_name((enum attempt_state)i);
        enum attempt_state st = AS_STATE_COUNT;
        assert_int_equal(attempt_state_parse(name, &st), 0);
        assert_int_equal(st, i);
        assert_int_equal(attempt_state_terminal((enum attempt_state)i), i >= AS_CLOSED);
    }
    assert_string_equal(attempt_state_name(AS_LOST_RACE), "lost_race");
    assert_string_equal(attempt_state_name(AS_GAVE_UP), "gave_up");
    assert_string_equal(attempt_state_name(AS_STATE_COUNT), "?");
    enum attempt_state st;
    assert_int_equal(attempt_state_parse("bogus", &st), BS_EINVAL);
    assert_int_equal(attempt_state_parse(NULL, &st), BS_EINVAL);
    assert_int_equal(attempt_state_terminal(AS_STATE_COUNT), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    log_setup(LL_WARN, LF_LOGFMT);
    const struct CMUnitTest tests[] = {
        T(test_migrate_from_empty),
        T(test_migrate_from_older_versions),
        T(test_migrate_with_old_breaks),
        T(test_migrate_empty_file),
        T(test_migration_atomic),
        T(test_migration_foreign_keys),
        T(test_disk_full),
        T(test_newer_store_refused),
        T(test_corrupt_page_refused),
        T(test_not_a_database_refused),
        T(test_read_missing_file),
        T(test_read_mode),
        T(test_daemon_lock),
        T(test_attempt_adopt),
        T(test_journal_flow),
        T(test_transition_cas_and_rules),
        T(test_attempt_counter),
        T(test_attempts_active),
        T(test_statement_plans),
        T(test_settings),
        T(test_bead_state),
        T(test_hostile_bead_ids),
        T(test_detail_truncation),
        T(test_view_columns),
        T(test_transactions),
        T(test_read_snapshot),
        T(test_state_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
