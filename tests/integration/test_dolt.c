/* The Dolt client (sched/dolt.c) against the private MariaDB, with and
 * without the Dolt emulation (tests/fixtures/dolt_emulation.sql).
 *
 * Reconnect and backoff run against a SECOND private server in a temp dir
 * on BS_TEST_MYSQL_PORT + 2, restarted and stopped by the test itself: the
 * shared fixture server serves other tests in parallel. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "dolt.h"
#include "errors.h"
#include "log.h"
#include "testdb.h"
#include "util.h"

/* ---- helpers ---- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#define MAX_ROWS 128
#define MAX_COLS 8

/* Copies of every row a statement delivered. */
struct rows {
    unsigned n;
    unsigned ncols[MAX_ROWS];
    char *v[MAX_ROWS][MAX_COLS];         /* NULL for SQL NULL */
    unsigned long len[MAX_ROWS][MAX_COLS];
    char name[MAX_ROWS][MAX_COLS][32];
    unsigned stop_after;                 /* 0 = never stop */
};

static int collect(const struct dolt_row *r, void *arg)
{
    struct rows *rs = arg;
    assert_true(rs->n < MAX_ROWS);
    assert_true(r->ncols <= MAX_COLS);
    unsigned i = rs->n++;
    rs->ncols[i] = r->ncols;
    for (unsigned c = 0; c < r->ncols; c++) {
        snprintf(rs->name[i][c], sizeof rs->name[i][c], "%s", r->names[c]);
        rs->len[i][c] = r->lens[c];
        if (r->vals[c]) {
            assert_int_equal(r->vals[c][r->lens[c]], '\0'); /* NUL-terminated as promised */
            rs->v[i][c] = malloc(r->lens[c] + 1);
            assert_non_null(rs->v[i][c]);
            memcpy(rs->v[i][c], r->vals[c], r->lens[c] + 1);
        } else {
            rs->v[i][c] = NULL;
        }
    }
    return rs->stop_after && rs->n >= rs->stop_after ? 7 : 0;
}

static void rows_free(struct rows *rs)
{
    for (unsigned i = 0; i < rs->n; i++)
        for (unsigned c = 0; c < rs->ncols[i]; c++)
            free(rs->v[i][c]);
    memset(rs, 0, sizeof *rs);
}

/* First column of the first row of a text query on c, as a string. */
static void query1(struct dolt_conn *c, const char *sql, char *buf, size_t len)
{
    struct rows rs = {0};
    int rc = dolt_query(c, sql, NULL, 0, collect, &rs, NULL);
    if (rc)
        fail_msg("%s: %s (%u) %s", sql, bs_strerror(rc), dolt_conn_errno(c), dolt_conn_error(c));
    assert_true(rs.n >= 1);
    snprintf(buf, len, "%s", rs.v[0][0] ? rs.v[0][0] : "(null)");
    rows_free(&rs);
}

static int64_t root_int(struct testdb *db, const char *sql)
{
    int64_t v = -1;
    assert_int_equal(testdb_query_int(db, sql, &v), 0);
    return v;
}

static int table_exists(struct testdb *db, const char *table)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()"
             " AND table_name = '%s'", table);
    return root_int(db, sql) == 1;
}

static int db_setup(void **state, enum testdb_schema schema, int emul)
{
    struct testdb *db = calloc(1, sizeof *db);
    assert_non_null(db);
    assert_int_equal(testdb_create(db, schema, emul), 0);
    *state = db;
    return 0;
}
static int setup_plain(void **state) { return db_setup(state, TESTDB_SCHEMA_CURRENT, 0); }
static int setup_emul(void **state) { return db_setup(state, TESTDB_SCHEMA_CURRENT, 1); }

static int db_teardown(void **state)
{
    struct testdb *db = *state;
    if (db) {
        testdb_drop(db);
        free(db);
    }
    return 0;
}

/* ---- connecting ---- */

static void test_connect_tcp_password(void **state)
{
    struct testdb *db = *state;
    struct dolt_conn *c;
    char err[256];
    assert_int_equal(dolt_conn_open(&c, &db->opts, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(dolt_conn_generation(c), 1);
    assert_int_equal(dolt_conn_failures(c), 0);
    assert_int_equal(dolt_conn_retry_in_ms(c), 0);

    char buf[256];
    query1(c, "SELECT CURRENT_USER()", buf, sizeof buf);
    assert_string_equal(buf, "beads@%");
    query1(c, "SELECT DATABASE()", buf, sizeof buf);
    assert_string_equal(buf, db->name);
    /* TCP, not the socket: the server sees an ip:port peer. */
    query1(c, "SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()", buf, sizeof buf);
    assert_true(strncmp(buf, "127.0.0.1:", 10) == 0);
    /* Session setup. */
    query1(c, "SELECT @@session.time_zone", buf, sizeof buf);
    assert_string_equal(buf, "+00:00");
    query1(c, "SELECT @@session.sql_mode", buf, sizeof buf);
    assert_non_null(strstr(buf, "STRICT_TRANS_TABLES"));
    query1(c, "SELECT @@character_set_client", buf, sizeof buf);
    assert_string_equal(buf, "utf8mb4");
    query1(c, "SELECT TIMESTAMPDIFF(SECOND, NOW(), UTC_TIMESTAMP())", buf, sizeof buf);
    assert_string_equal(buf, "0");
    /* TLS is really off. */
    struct rows rs = {0};
    assert_int_equal(dolt_query(c, "SHOW SESSION STATUS LIKE 'Ssl_cipher'", NULL, 0, collect, &rs, NULL), 0);
    assert_int_equal(rs.n, 1);
    assert_string_equal(rs.v[0][1], "");
    rows_free(&rs);
    dolt_conn_close(c);
}

static void test_connect_socket(void **state)
{
    struct testdb *db = *state;
    char buf[256];
    struct dolt_conn *c;

    /* root over the socket (unix_socket auth). */
    struct dolt_options o;
    testdb_root_options(&o);
    o.database = db->name;
    assert_int_equal(dolt_conn_open(&c, &o, NULL, 0), 0);
    query1(c, "SELECT CURRENT_USER()", buf, sizeof buf);
    assert_string_equal(buf, "root@localhost");
    query1(c, "SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()", buf, sizeof buf);
    assert_string_equal(buf, "localhost");
    dolt_conn_close(c);

    /* beads with its password over the socket; a host is ignored then. */
    o = db->opts;
    o.socket = test_env("BS_TEST_MYSQL_SOCKET");
    assert_int_equal(dolt_conn_open(&c, &o, NULL, 0), 0);
    query1(c, "SELECT CURRENT_USER()", buf, sizeof buf);
    assert_string_equal(buf, "beads@localhost");
    query1(c, "SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()", buf, sizeof buf);
    assert_string_equal(buf, "localhost");
    dolt_conn_close(c);
}

static void test_connect_failures(void **state)
{
    struct testdb *db = *state;
    struct dolt_conn *c = (struct dolt_conn *)1;
    char err[512];

    /* Wrong password: BS_ECONN with a handle, no secret in the message. */
    struct dolt_options o = db->opts;
    o.password = "wrong-secret-pw";
    o.backoff_min_ms = 5000;
    assert_int_equal(dolt_conn_open(&c, &o, err, sizeof err), BS_ECONN);
    assert_non_null(c);
    assert_int_equal(dolt_conn_errno(c), 1045);
    assert_null(strstr(err, "wrong-secret-pw"));
    assert_null(strstr(dolt_conn_error(c), "wrong-secret-pw"));
    assert_non_null(strstr(err, "1045"));
    assert_int_equal(dolt_conn_failures(c), 1);
    assert_int_equal(dolt_conn_generation(c), 0);
    uint64_t r = dolt_conn_retry_in_ms(c);
    assert_true(r > 4000 && r <= 5000);
    /* Within the backoff nothing is tried and nothing sleeps. */
    assert_int_equal(dolt_conn_ensure(c), BS_ECONN);
    assert_int_equal(dolt_conn_failures(c), 1);
    assert_int_equal(dolt_exec(c, "SELECT 1"), BS_ECONN);
    dolt_conn_close(c);

    /* Bad options: no handle. */
    o = db->opts;
    o.user = NULL;
    c = (struct dolt_conn *)1;
    assert_int_equal(dolt_conn_open(&c, &o, err, sizeof err), BS_EINVAL);
    assert_null(c);
    o = db->opts;
    o.host = NULL;
    c = (struct dolt_conn *)1;
    assert_int_equal(dolt_conn_open(&c, &o, err, sizeof err), BS_EINVAL);
    assert_null(c);

    /* tls=1 is enforced: this server offers no TLS, so the login fails. */
    o = db->opts;
    o.tls = 1;
    o.backoff_min_ms = 5000;
    assert_int_equal(dolt_conn_open(&c, &o, err, sizeof err), BS_ECONN);
    assert_non_null(c);
    assert_int_equal(dolt_conn_errno(c), 2026);
    dolt_conn_close(c);
    /* A CA implies TLS with verification. */
    o = db->opts;
    o.tls_ca = "/nonexistent/ca.pem";
    o.backoff_min_ms = 5000;
    assert_int_equal(dolt_conn_open(&c, &o, err, sizeof err), BS_ECONN);
    assert_non_null(c);
    assert_int_not_equal(dolt_conn_errno(c), 0);
    dolt_conn_close(c);
}

/* ---- statements ---- */

static const char *const hostile_ids[] = {
    "x'; DROP TABLE issues; --",
    "quo\"te's \"double\" 'single'",
    "back\\slash\\' \\\\ end\\",
    "new\nline\r\ncrlf\ttab",
    "utf8 \xc3\xbc\xc3\xaf\xc3\xa7\xc3\xb8\x64\xc3\xa9 \xf0\x9f\x9a\x80",
    "%_ like wildcards %",
    "`backtick`; SELECT 1; /*",
};

static void insert_issue(struct dolt_conn *c, const char *id, size_t idlen, const char *desc, size_t desclen)
{
    static const char sql[] =
        "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, assignee,"
        " priority, created_at, updated_at) VALUES (?, ?, ?, '', ?, '', ?, ?, UTC_TIMESTAMP(), UTC_TIMESTAMP())";
    struct dolt_value p[6] = {
        {.type = DT_TEXT, .text = id, .len = idlen},
        {.type = DT_TEXT, .text = id, .len = idlen},
        {.type = DT_TEXT, .text = desc, .len = desclen},
        DOLT_TEXT(""),
        DOLT_NULL,
        DOLT_INT(-7),
    };
    uint64_t affected = 99;
    int rc = dolt_query(c, sql, p, 6, NULL, NULL, &affected);
    if (rc)
        fail_msg("insert: %s (%u) %s", bs_strerror(rc), dolt_conn_errno(c), dolt_conn_error(c));
    assert_int_equal(affected, 1);
}

static void check_issue(struct dolt_conn *c, const char *id, size_t idlen, const char *desc, size_t desclen)
{
    struct dolt_value p[1] = {{.type = DT_TEXT, .text = id, .len = idlen}};
    struct rows rs = {0};
    uint64_t affected = 0;
    assert_int_equal(dolt_query(c, "SELECT id, title, description, assignee, priority, created_at FROM issues"
                                   " WHERE id = ?", p, 1, collect, &rs, &affected), 0);
    assert_int_equal(rs.n, 1);
    assert_int_equal(affected, 1);
    assert_int_equal(rs.ncols[0], 6);
    assert_string_equal(rs.name[0][0], "id");
    assert_string_equal(rs.name[0][4], "priority");
    assert_int_equal(rs.len[0][0], idlen);
    assert_memory_equal(rs.v[0][0], id, idlen);
    assert_int_equal(rs.len[0][1], idlen);
    assert_memory_equal(rs.v[0][1], id, idlen);
    assert_int_equal(rs.len[0][2], desclen);
    if (desclen)
        assert_memory_equal(rs.v[0][2], desc, desclen);
    assert_null(rs.v[0][3]);
    assert_string_equal(rs.v[0][4], "-7");
    assert_int_equal(rs.len[0][5], 19); /* "YYYY-MM-DD HH:MM:SS" */
    rows_free(&rs);
}

static void test_hostile_ids_roundtrip(void **state)
{
    struct testdb *db = *state;
    struct dolt_conn *c;
    assert_int_equal(testdb_connect(db, &c), 0);

    size_t n = sizeof hostile_ids / sizeof hostile_ids[0];
    for (size_t i = 0; i < n; i++) {
        char desc[512];
        int dl = snprintf(desc, sizeof desc, "description of <%s>\n'); DELETE FROM issues; --", hostile_ids[i]);
        insert_issue(c, hostile_ids[i], strlen(hostile_ids[i]), desc, (size_t)dl);
    }
    /* Embedded NUL bytes travel by length. */
    static const char nul_id[] = "nul\0byte\0id";
    static const char nul_desc[] = "a\0b\0\0c";
    insert_issue(c, nul_id, sizeof nul_id - 1, nul_desc, sizeof nul_desc - 1);

    for (size_t i = 0; i < n; i++) {
        char desc[512];
        int dl = snprintf(desc, sizeof desc, "description of <%s>\n'); DELETE FROM issues; --", hostile_ids[i]);
        check_issue(c, hostile_ids[i], strlen(hostile_ids[i]), desc, (size_t)dl);
    }
    check_issue(c, nul_id, sizeof nul_id - 1, nul_desc, sizeof nul_desc - 1);
    /* "nul" alone is a different id. */
    struct rows rs = {0};
    struct dolt_value p1[1] = {DOLT_TEXT("nul")};
    assert_int_equal(dolt_query(c, "SELECT id FROM issues WHERE id = ?", p1, 1, collect, &rs, NULL), 0);
    assert_int_equal(rs.n, 0);

    assert_true(table_exists(db, "issues"));
    assert_int_equal(root_int(db, "SELECT COUNT(*) FROM issues"), (int64_t)n + 1);

    /* The text protocol returns the same bytes. */
    assert_int_equal(dolt_query(c, "SELECT id, description FROM issues ORDER BY id", NULL, 0, collect, &rs, NULL), 0);
    assert_int_equal(rs.n, n + 1);
    size_t found = 0;
    for (unsigned r = 0; r < rs.n; r++) {
        for (size_t i = 0; i < n; i++)
            if (rs.len[r][0] == strlen(hostile_ids[i]) && memcmp(rs.v[r][0], hostile_ids[i], rs.len[r][0]) == 0)
                found++;
        if (rs.len[r][0] == sizeof nul_id - 1 && memcmp(rs.v[r][0], nul_id, sizeof nul_id - 1) == 0) {
            found++;
            assert_int_equal(rs.len[r][1], sizeof nul_desc - 1);
            assert_memory_equal(rs.v[r][1], nul_desc, sizeof nul_desc - 1);
        }
    }
    assert_int_equal(found, n + 1);
    rows_free(&rs);

    /* Empty text and SQL NULL parameters. */
    struct dolt_value p2[3] = {DOLT_TEXT(""), DOLT_NULL, DOLT_INT(INT64_MIN)};
    assert_int_equal(dolt_query(c, "SELECT ?, ?, ?", p2, 3, collect, &rs, NULL), 0);
    assert_int_equal(rs.n, 1);
    assert_string_equal(rs.v[0][0], "");
    assert_int_equal(rs.len[0][0], 0);
    assert_null(rs.v[0][1]);
    assert_string_equal(rs.v[0][2], "-9223372036854775808");
    rows_free(&rs);

    /* Wrong parameter count is refused before anything runs. */
    assert_int_equal(dolt_query(c, "SELECT ?, ?", p2, 3, NULL, NULL, NULL), BS_EINVAL);
    dolt_conn_close(c);
}

static void test_large_value(void **state)
{
    struct testdb *db = *state;
    struct dolt_conn *c;
    assert_int_equal(testdb_connect(db, &c), 0);
    /* The client's large-value path, not the beads schema: bd's TEXT holds
     * 64 KiB, so widen this scratch database's column to carry 1 MiB. */
    assert_int_equal(testdb_exec(db, "ALTER TABLE issues MODIFY description MEDIUMTEXT NOT NULL"), 0);

    size_t len = 1u << 20;
    char *big = malloc(len + 1);
    assert_non_null(big);
    /* Printable ASCII plus two-byte UTF-8 sequences, never split. */
    for (size_t i = 0; i < len;) {
        if (i % 97 == 0 && i + 2 <= len) {
            big[i++] = (char)0xc3;
            big[i++] = (char)0xa9;
        } else {
            big[i] = (char)(' ' + (i * 7) % 95);
            i++;
        }
    }
    big[len] = '\0';
    insert_issue(c, "big-1", 5, big, len);
    check_issue(c, "big-1", 5, big, len); /* binary protocol */

    struct rows rs = {0};
    assert_int_equal(dolt_query(c, "SELECT description, LENGTH(description) FROM issues WHERE id = 'big-1'", NULL,
                                0, collect, &rs, NULL), 0);
    assert_int_equal(rs.n, 1);
    assert_int_equal(rs.len[0][0], len);
    assert_memory_equal(rs.v[0][0], big, len);
    assert_string_equal(rs.v[0][1], "1048576");
    rows_free(&rs);

    /* Several large rows in one prepared result (buffers sized by max_length). */
    insert_issue(c, "big-2", 5, big, len / 3);
    struct dolt_value p[1] = {DOLT_TEXT("big-%")};
    assert_int_equal(dolt_query(c, "SELECT id, description FROM issues WHERE id LIKE ? ORDER BY id", p, 1, collect,
                                &rs, NULL), 0);
    assert_int_equal(rs.n, 2);
    assert_int_equal(rs.len[0][1], len);
    assert_int_equal(rs.len[1][1], len / 3);
    assert_memory_equal(rs.v[1][1], big, len / 3);
    rows_free(&rs);
    free(big);
    dolt_conn_close(c);
}

static void test_call_results_drained(void **state)
{
    struct testdb *db = *state;
    struct dolt_conn *c;
    assert_int_equal(testdb_connect(db, &c), 0);
    assert_int_equal(testdb_exec(db, "CREATE PROCEDURE two_sets(IN k INT) BEGIN"
                                     " SELECT k AS a; SELECT 'x' AS b, k + 1 AS c UNION ALL SELECT 'y', k + 2; END"),
                     0);

    /* Text protocol: rows of both result sets, then the status packet. */
    struct rows rs = {0};
    assert_int_equal(dolt_query(c, "CALL two_sets(5)", NULL, 0, collect, &rs, NULL), 0);
    assert_int_equal(rs.n, 3);
    assert_string_equal(rs.name[0][0], "a");
    assert_string_equal(rs.v[0][0], "5");
    assert_string_equal(rs.name[1][0], "b");
    assert_string_equal(rs.v[2][0], "y");
    assert_string_equal(rs.v[2][1], "7");
    rows_free(&rs);
    char buf[64];
    query1(c, "SELECT 42", buf, sizeof buf);
    assert_string_equal(buf, "42");

    /* Prepared CALL with a parameter, then other prepared statements. */
    struct dolt_value p[1] = {DOLT_INT(10)};
    assert_int_equal(dolt_query(c, "CALL two_sets(?)", p, 1, collect, &rs, NULL), 0);
    assert_int_equal(rs.n, 3);
    assert_string_equal(rs.v[1][1], "11");
    rows_free(&rs);
    assert_int_equal(dolt_query(c, "SELECT ? + 1", p, 1, collect, &rs, NULL), 0);
    assert_int_equal(rs.n, 1);
    assert_string_equal(rs.v[0][0], "11");
    rows_free(&rs);
    assert_int_equal(dolt_query(c, "CALL two_sets(?)", p, 1, collect, &rs, NULL), 0); /* cached statement */
    assert_int_equal(rs.n, 3);
    rows_free(&rs);

    /* A callback that stops early: its value is returned, the rest drained. */
    rs.stop_after = 1;
    assert_int_equal(dolt_query(c, "CALL two_sets(1)", NULL, 0, collect, &rs, NULL), 7);
    assert_int_equal(rs.n, 1);
    rows_free(&rs);
    rs.stop_after = 1;
    assert_int_equal(dolt_query(c, "CALL two_sets(?)", p, 1, collect, &rs, NULL), 7);
    assert_int_equal(rs.n, 1);
    rows_free(&rs);
    query1(c, "SELECT 43", buf, sizeof buf);
    assert_string_equal(buf, "43");
    assert_int_equal(dolt_conn_generation(c), 1);

    /* A statement error is BS_EIO with the server's errno, and the session lives on. */
    assert_int_equal(dolt_exec(c, "SELECT * FROM no_such_table"), BS_EIO);
    assert_int_equal(dolt_conn_errno(c), 1146);
    query1(c, "SELECT 44", buf, sizeof buf);
    assert_string_equal(buf, "44");
    assert_int_equal(dolt_conn_generation(c), 1);
    dolt_conn_close(c);
}

/* More distinct statements than the cache holds: evicted ones are
 * prepared again, and the server never holds more than the cache size. */
static void test_statement_cache(void **state)
{
    struct testdb *db = *state;
    struct dolt_conn *c;
    assert_int_equal(testdb_connect(db, &c), 0);
    for (int round = 0; round < 2; round++) {
        for (int k = 0; k < 50; k++) {
            char sql[64], want[32];
            snprintf(sql, sizeof sql, "SELECT ? + %d", k);
            snprintf(want, sizeof want, "%d", 1000 + k);
            struct dolt_value p[1] = {DOLT_INT(1000)};
            struct rows rs = {0};
            assert_int_equal(dolt_query(c, sql, p, 1, collect, &rs, NULL), 0);
            assert_int_equal(rs.n, 1);
            assert_string_equal(rs.v[0][0], want);
            rows_free(&rs);
        }
    }
    /* Per session: 100 prepares (LRU over 50 statements evicts all), 68
     * closes, 32 statements still open. */
    char prepared[32], closed[32];
    struct rows rs = {0};
    assert_int_equal(dolt_query(c, "SHOW SESSION STATUS WHERE Variable_name IN ('Com_stmt_prepare', 'Com_stmt_close')",
                                NULL, 0, collect, &rs, NULL), 0);
    assert_int_equal(rs.n, 2);
    int pi = strcmp(rs.v[0][0], "Com_stmt_prepare") == 0 ? 0 : 1;
    snprintf(prepared, sizeof prepared, "%s", rs.v[pi][1]);
    snprintf(closed, sizeof closed, "%s", rs.v[1 - pi][1]);
    rows_free(&rs);
    assert_string_equal(prepared, "100");
    assert_string_equal(closed, "68");
    assert_int_equal(dolt_conn_generation(c), 1);
    dolt_conn_close(c);
}

/* ---- Dolt paths (emulated) ---- */

static void test_conflict_1213(void **state)
{
    struct testdb *db = *state;
    struct dolt_conn *c;
    assert_int_equal(testdb_connect(db, &c), 0);
    assert_int_equal(testdb_insert_bead(db, "code-1", "one", "open", "agent", 1, "works", NULL), 0);
    assert_int_equal(testdb_exec(db, "INSERT INTO dolt_emul_fail (issue_id) VALUES ('code-1')"), 0);

    struct dolt_value p[2] = {DOLT_TEXT("in_progress"), DOLT_TEXT("code-1")};
    uint64_t affected = 5;
    assert_int_equal(dolt_query(c, "UPDATE issues SET status = ? WHERE id = ?", p, 2, NULL, NULL, &affected),
                     BS_ECONFLICT);
    assert_int_equal(dolt_conn_errno(c), 1213);
    assert_non_null(strstr(dolt_conn_error(c), "serialization failure"));
    assert_int_equal(affected, 0);
    /* Text protocol, inside a transaction. */
    assert_int_equal(dolt_begin(c), 0);
    assert_int_equal(dolt_exec(c, "UPDATE issues SET status = 'blocked' WHERE id = 'code-1'"), BS_ECONFLICT);
    assert_int_equal(dolt_rollback(c), 0);
    assert_int_equal(dolt_conn_generation(c), 1); /* a conflict is not a connection error */

    assert_int_equal(testdb_exec(db, "DELETE FROM dolt_emul_fail WHERE issue_id = 'code-1'"), 0);
    assert_int_equal(dolt_query(c, "UPDATE issues SET status = ? WHERE id = ?", p, 2, NULL, NULL, &affected), 0);
    assert_int_equal(affected, 1);
    char buf[64];
    assert_int_equal(testdb_query_str(db, "SELECT status FROM issues WHERE id = 'code-1'", buf, sizeof buf), 0);
    assert_string_equal(buf, "in_progress");
    dolt_conn_close(c);
}

static void test_is_dolt(void **state)
{
    (void)state;
    struct testdb plain, emul;
    struct dolt_conn *c;
    assert_int_equal(testdb_create(&plain, TESTDB_SCHEMA_CURRENT, 0), 0);
    assert_int_equal(testdb_connect(&plain, &c), 0);
    assert_int_equal(dolt_is_dolt(c), 0);
    assert_int_equal(dolt_conn_errno(c), 1305);
    assert_int_equal(dolt_is_dolt(c), 0); /* cached */
    char buf[64];
    query1(c, "SELECT 1", buf, sizeof buf); /* session fine */
    dolt_conn_close(c);

    /* No database selected: still "not Dolt", not an error. */
    struct dolt_options o = plain.opts;
    o.database = NULL;
    assert_int_equal(dolt_conn_open(&c, &o, NULL, 0), 0);
    assert_int_equal(dolt_is_dolt(c), 0);
    dolt_conn_close(c);
    testdb_drop(&plain);

    assert_int_equal(testdb_create(&emul, TESTDB_SCHEMA_CURRENT, 1), 0);
    assert_int_equal(testdb_connect(&emul, &c), 0);
    assert_int_equal(dolt_is_dolt(c), 1);
    query1(c, "SELECT dolt_version()", buf, sizeof buf);
    assert_string_equal(buf, "2.0.3-emul");
    dolt_conn_close(c);
    testdb_drop(&emul);
}

static void test_version_commit(void **state)
{
    struct testdb *db = *state;
    struct dolt_conn *c;
    assert_int_equal(testdb_connect(db, &c), 0);
    assert_int_equal(dolt_is_dolt(c), 1);
    assert_int_equal(testdb_insert_bead(db, "code-7", "seven", "open", "agent", 2, "works", NULL), 0);

    char h0[64], h1[64], h2[64];
    query1(c, "SELECT dolt_hashof_db()", h0, sizeof h0);

    static const char msg[] = "bd: claim code-7 it's \"quoted\" \\ x'); DROP TABLE issues; --\nsecond line";
    static const char author[] = "beads-sched <beads-sched@localhost>";
    const char *tables[] = {"issues", "events"};

    assert_int_equal(dolt_begin(c), 0);
    struct dolt_value p[1] = {DOLT_TEXT("code-7")};
    assert_int_equal(dolt_query(c, "UPDATE issues SET status = 'in_progress' WHERE id = ?", p, 1, NULL, NULL, NULL),
                     0);
    assert_int_equal(dolt_query(c, "INSERT INTO events (issue_id, event_type, actor, created_at)"
                                   " VALUES (?, 'claimed', 'beads-sched', UTC_TIMESTAMP())", p, 1, NULL, NULL, NULL),
                     0);
    assert_int_equal(dolt_version_commit(c, tables, 2, msg, author), 0);

    /* The SQL transaction was committed: another session sees the write. */
    char buf[256];
    assert_int_equal(testdb_query_str(db, "SELECT status FROM issues WHERE id = 'code-7'", buf, sizeof buf), 0);
    assert_string_equal(buf, "in_progress");
    assert_true(table_exists(db, "issues"));

    /* The calls, in order, with exact arguments. */
    struct rows rs = {0};
    assert_int_equal(dolt_query(c, "SELECT proc, arg1, arg2, arg3, arg4 FROM dolt_emul_calls ORDER BY seq", NULL, 0,
                                collect, &rs, NULL), 0);
    assert_int_equal(rs.n, 3);
    assert_string_equal(rs.v[0][0], "DOLT_ADD");
    assert_string_equal(rs.v[0][1], "issues");
    assert_null(rs.v[0][2]);
    assert_string_equal(rs.v[1][0], "DOLT_ADD");
    assert_string_equal(rs.v[1][1], "events");
    assert_string_equal(rs.v[2][0], "DOLT_COMMIT");
    assert_string_equal(rs.v[2][1], "-m");
    assert_string_equal(rs.v[2][2], msg);
    assert_string_equal(rs.v[2][3], "--author");
    assert_string_equal(rs.v[2][4], author);
    rows_free(&rs);
    assert_int_equal(root_int(db, "SELECT COUNT(*) FROM dolt_emul_commits"), 1);
    assert_int_equal(testdb_query_str(db, "SELECT message FROM dolt_emul_commits", buf, sizeof buf), 0);
    assert_string_equal(buf, msg);
    query1(c, "SELECT dolt_hashof_db()", h1, sizeof h1);
    assert_string_not_equal(h0, h1);

    /* Nothing to commit is success, and ends the transaction too. */
    assert_int_equal(dolt_begin(c), 0);
    assert_int_equal(dolt_version_commit(c, tables, 2, "bd: nothing", author), 0);
    assert_int_equal(root_int(db, "SELECT COUNT(*) FROM dolt_emul_commits"), 1);
    assert_int_equal(root_int(db, "SELECT COUNT(*) FROM dolt_emul_calls"), 6);
    assert_int_equal(root_int(db, "SELECT @@in_transaction"), 0);
    query1(c, "SELECT @@in_transaction", buf, sizeof buf);
    assert_string_equal(buf, "0");
    query1(c, "SELECT dolt_hashof_db()", h2, sizeof h2);
    assert_string_equal(h1, h2);

    /* A rolled-back write changes nothing. */
    assert_int_equal(dolt_begin(c), 0);
    assert_int_equal(dolt_exec(c, "UPDATE issues SET priority = 0 WHERE id = 'code-7'"), 0);
    assert_int_equal(dolt_rollback(c), 0);
    query1(c, "SELECT dolt_hashof_db()", h2, sizeof h2);
    assert_string_equal(h1, h2);

    /* Malformed author: refused before anything runs... */
    assert_int_equal(dolt_version_commit(c, tables, 2, "bd: x", "nobody"), BS_EINVAL);
    assert_int_equal(dolt_version_commit(c, tables, 2, "bd: x", "<a@b>"), BS_EINVAL);
    assert_int_equal(root_int(db, "SELECT COUNT(*) FROM dolt_emul_calls"), 6);
    /* ...and the emulation refuses it like Dolt. */
    assert_int_equal(dolt_exec(c, "CALL DOLT_COMMIT('-m', 'm', '--author', 'nobody')"), BS_EIO);
    assert_int_equal(dolt_conn_errno(c), 1105);
    assert_non_null(strstr(dolt_conn_error(c), "Author"));
    /* An unknown table is an error, not success. */
    const char *bad[] = {"no_such_table"};
    assert_int_equal(dolt_version_commit(c, bad, 1, "bd: x", author), BS_EIO);
    assert_int_equal(dolt_rollback(c), 0);

    /* Another real commit works on the same session. */
    assert_int_equal(dolt_exec(c, "UPDATE issues SET status = 'closed' WHERE id = 'code-7'"), 0);
    assert_int_equal(dolt_version_commit(c, tables, 1, "bd: close code-7", author), 0);
    assert_int_equal(root_int(db, "SELECT COUNT(*) FROM dolt_emul_commits"), 2);
    dolt_conn_close(c);
}

/* A transaction cannot silently continue on a new session. */
static void test_lost_transaction_guard(void **state)
{
    struct testdb *db = *state;
    struct dolt_conn *c;
    assert_int_equal(testdb_connect(db, &c), 0);
    assert_int_equal(testdb_insert_bead(db, "code-9", "nine", "open", "agent", 2, "works", NULL), 0);
    char id[32];
    query1(c, "SELECT CONNECTION_ID()", id, sizeof id);

    assert_int_equal(dolt_begin(c), 0);
    assert_int_equal(dolt_exec(c, "UPDATE issues SET status = 'in_progress' WHERE id = 'code-9'"), 0);
    assert_int_equal(testdb_exec(db, "KILL CONNECTION %s", id), 0);
    sleep_ms(100);

    /* The kill is noticed; the statement does not run on a new session. */
    assert_int_equal(dolt_exec(c, "UPDATE issues SET priority = 0 WHERE id = 'code-9'"), BS_ECONN);
    assert_int_equal(dolt_commit(c), BS_ECONN);
    char buf[64];
    assert_int_equal(testdb_query_str(db, "SELECT CONCAT(status, '/', priority) FROM issues WHERE id = 'code-9'",
                                      buf, sizeof buf), 0);
    assert_string_equal(buf, "open/2");
    /* After the commit failed the connection is usable again. */
    assert_int_equal(dolt_rollback(c), 0);
    query1(c, "SELECT 1", buf, sizeof buf);
    assert_int_equal(dolt_conn_generation(c), 2);

    /* Same with a rollback right after the loss. */
    query1(c, "SELECT CONNECTION_ID()", id, sizeof id);
    assert_int_equal(dolt_begin(c), 0);
    assert_int_equal(testdb_exec(db, "KILL CONNECTION %s", id), 0);
    sleep_ms(100);
    assert_int_equal(dolt_exec(c, "UPDATE issues SET priority = 0 WHERE id = 'code-9'"), BS_ECONN);
    assert_int_equal(dolt_rollback(c), 0);
    assert_int_equal(dolt_exec(c, "UPDATE issues SET priority = 1 WHERE id = 'code-9'"), 0);
    assert_int_equal(dolt_conn_generation(c), 3);

    /* Killed while idle outside a transaction: the next statement just works. */
    query1(c, "SELECT CONNECTION_ID()", id, sizeof id);
    assert_int_equal(testdb_exec(db, "KILL CONNECTION %s", id), 0);
    sleep_ms(100);
    query1(c, "SELECT 5", buf, sizeof buf);
    assert_string_equal(buf, "5");
    assert_int_equal(dolt_conn_generation(c), 4);
    dolt_conn_close(c);
}

static void test_schema_fixtures(void **state)
{
    (void)state;
    struct testdb cur, old;
    assert_int_equal(testdb_create(&cur, TESTDB_SCHEMA_CURRENT, 1), 0);
    assert_int_equal(testdb_create(&old, TESTDB_SCHEMA_OLDER, 1), 0);
    static const char col[] = "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE()"
                              " AND table_name = 'issues' AND column_name = '%s'";
    char sql[512], buf[64];

    /* bd 1.0.x: no is_blocked anywhere, started_at only since migration 0027. */
    snprintf(sql, sizeof sql, col, "is_blocked");
    assert_int_equal(root_int(&cur, sql), 0);
    assert_int_equal(root_int(&old, sql), 0);
    snprintf(sql, sizeof sql, col, "started_at");
    assert_int_equal(root_int(&cur, sql), 1);
    assert_int_equal(root_int(&old, sql), 0);
    /* Bodies are TEXT (65,535 bytes), never LONGTEXT, in any fixture table. */
    static const char type[] = "SELECT data_type FROM information_schema.columns WHERE table_schema = DATABASE()"
                               " AND table_name = 'issues' AND column_name = 'description'";
    assert_int_equal(testdb_query_str(&cur, type, buf, sizeof buf), 0);
    assert_string_equal(buf, "text");
    assert_int_equal(testdb_query_str(&old, type, buf, sizeof buf), 0);
    assert_string_equal(buf, "text");
    static const char longtext[] = "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE()"
                                   " AND column_type = 'longtext' AND table_name NOT LIKE 'dolt_emul%'"
                                   " AND column_name NOT IN ('metadata')";
    assert_int_equal(root_int(&cur, longtext), 0);
    assert_int_equal(root_int(&old, longtext), 0);
    static const char *const tables[] = {"events", "dependencies", "labels", "custom_statuses",
                                         "wisps", "wisp_dependencies"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        assert_true(table_exists(&cur, tables[i]) && table_exists(&old, tables[i]));
    /* pinned and ephemeral are nullable; dependencies carry metadata. */
    static const char nullable[] = "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE()"
                                   " AND table_name = 'issues' AND column_name IN ('pinned', 'ephemeral')"
                                   " AND is_nullable = 'YES'";
    assert_int_equal(root_int(&cur, nullable), 2);
    assert_int_equal(root_int(&old, nullable), 2);
    assert_int_equal(root_int(&cur, "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE()"
                                    " AND table_name = 'dependencies' AND column_name = 'metadata'"), 1);
    /* A note past 65,535 bytes fails (strict mode), as on Dolt. */
    assert_int_not_equal(testdb_exec(&cur, "INSERT INTO issues (id, title, description, design, acceptance_criteria,"
                                           " notes) VALUES ('big', 'big', '', '', '', REPEAT('x', 65536))"), 0);

    /* INSERT without the body columns fails: they have no default. */
    assert_int_not_equal(testdb_exec(&cur, "INSERT INTO issues (id, title, created_at, updated_at)"
                                           " VALUES ('x', 'x', UTC_TIMESTAMP(), UTC_TIMESTAMP())"), 0);

    /* The bead helper fits both schemas; events get a UUID id. */
    struct testdb_bead b = {.id = "code-a", .assignee = "agent", .priority = 0, .acceptance = "done when done",
                            .updated_at_sql = "UTC_TIMESTAMP() - INTERVAL 40 MINUTE", .pinned = -1};
    assert_int_equal(testdb_insert_bead_ex(&cur, &b), 0);
    assert_int_equal(testdb_insert_bead_ex(&old, &b), 0);
    assert_int_equal(root_int(&cur, "SELECT pinned IS NULL FROM issues WHERE id = 'code-a'"), 1);
    assert_int_equal(root_int(&old, "SELECT TIMESTAMPDIFF(MINUTE, updated_at, UTC_TIMESTAMP())"
                                    " FROM issues WHERE id = 'code-a'"), 40);
    assert_int_equal(testdb_query_str(&old, "SELECT CONCAT(status, '/', issue_type, '/', priority, '/', title)"
                                            " FROM issues WHERE id = 'code-a'", buf, sizeof buf), 0);
    assert_string_equal(buf, "open/task/0/code-a");
    assert_int_equal(testdb_exec(&old, "INSERT INTO events (issue_id, event_type, actor)"
                                       " VALUES ('code-a', 'updated', 't')"), 0);
    assert_int_equal(root_int(&old, "SELECT LENGTH(id) FROM events"), 36);
    /* Triggers count writes on either schema. */
    assert_int_equal(root_int(&old, "SELECT dolt_emul_version()"), 2);
    assert_int_equal(testdb_query_str(&cur, "SELECT 1 FROM issues WHERE id = 'nope'", buf, sizeof buf),
                     BS_ENOTFOUND);
    assert_non_null(strstr(cur.url, "mysql://beads:beads-test-pw@127.0.0.1:"));
    assert_non_null(strstr(cur.url, cur.name));
    testdb_drop(&cur);
    testdb_drop(&old);
}

/* ---- worker thread ---- */

#define NWORK 100

struct wctx {
    struct testdb *db;
    uv_loop_t loop;
    uv_timer_t start, tick;
    struct dolt *d;
    pthread_t loop_thread;
    int next_done;
    int wrong_thread, wrong_order, wrong_rc, ran_on_loop;
    int pending_at_submit, submit_after_stop;
    int closed, done_at_close;
    int ticks, ticks_at_first_done;
};

struct witem {
    struct wctx *ctx;
    int index;
    pthread_t ran_on;
};

static struct witem witems[NWORK];

static int work_fn(struct dolt_conn *c, void *arg)
{
    struct witem *it = arg;
    it->ran_on = pthread_self();
    if (it->index == 0) {
        /* A slow statement: the loop must keep running meanwhile. */
        int rc = dolt_exec(c, "DO SLEEP(0.5)");
        if (rc)
            return rc;
    }
    struct dolt_value p[1] = {DOLT_INT(it->index)};
    int rc = dolt_query(c, "INSERT INTO worker_log (n) VALUES (?)", p, 1, NULL, NULL, NULL);
    if (rc)
        return rc;
    return it->index % 3 == 0 ? BS_ESTATE : 0;
}

static void done_fn(int rc, void *arg)
{
    struct witem *it = arg;
    struct wctx *ctx = it->ctx;
    if (!pthread_equal(pthread_self(), ctx->loop_thread))
        ctx->wrong_thread++;
    if (pthread_equal(it->ran_on, ctx->loop_thread))
        ctx->ran_on_loop++;
    if (it->index != ctx->next_done)
        ctx->wrong_order++;
    if (rc != (it->index % 3 == 0 ? BS_ESTATE : 0))
        ctx->wrong_rc++;
    if (it->index == 0)
        ctx->ticks_at_first_done = ctx->ticks;
    ctx->next_done++;
}

static void on_worker_closed(void *arg)
{
    struct wctx *ctx = arg;
    ctx->closed = 1;
    ctx->done_at_close = ctx->next_done;
    uv_close((uv_handle_t *)&ctx->tick, NULL);
}

static void on_tick(uv_timer_t *t)
{
    struct wctx *ctx = t->data;
    ctx->ticks++;
}

static void on_start(uv_timer_t *t)
{
    struct wctx *ctx = t->data;
    for (int i = 0; i < NWORK; i++) {
        witems[i] = (struct witem){.ctx = ctx, .index = i};
        assert_int_equal(dolt_submit(ctx->d, work_fn, done_fn, &witems[i]), 0);
    }
    ctx->pending_at_submit = dolt_pending(ctx->d);
    dolt_stop(ctx->d, on_worker_closed, ctx);
    ctx->submit_after_stop = dolt_submit(ctx->d, work_fn, done_fn, &witems[0]);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_worker(void **state)
{
    struct testdb *db = *state;
    assert_int_equal(testdb_exec(db, "CREATE TABLE worker_log (id INT AUTO_INCREMENT PRIMARY KEY, n INT NOT NULL)"),
                     0);
    struct wctx *ctx = calloc(1, sizeof *ctx);
    assert_non_null(ctx);
    ctx->db = db;
    ctx->loop_thread = pthread_self();
    assert_int_equal(uv_loop_init(&ctx->loop), 0);
    assert_int_equal(dolt_start(&ctx->d, &ctx->loop, &db->opts), 0);
    uv_timer_init(&ctx->loop, &ctx->start);
    uv_timer_init(&ctx->loop, &ctx->tick);
    ctx->start.data = ctx->tick.data = ctx;
    uv_timer_start(&ctx->start, on_start, 0, 0);
    uv_timer_start(&ctx->tick, on_tick, 10, 10);

    uv_run(&ctx->loop, UV_RUN_DEFAULT);

    assert_int_equal(ctx->pending_at_submit, NWORK);
    assert_int_equal(ctx->submit_after_stop, BS_EINVAL);
    assert_int_equal(ctx->next_done, NWORK);
    assert_int_equal(ctx->wrong_thread, 0);
    assert_int_equal(ctx->wrong_order, 0);
    assert_int_equal(ctx->wrong_rc, 0);
    assert_int_equal(ctx->ran_on_loop, 0);
    assert_int_equal(ctx->closed, 1);
    assert_int_equal(ctx->done_at_close, NWORK);
    /* The loop ticked while the worker slept 0.5 s in MySQL. */
    assert_true(ctx->ticks_at_first_done >= 20);
    assert_int_equal(uv_loop_close(&ctx->loop), 0);
    free(ctx);

    assert_int_equal(root_int(db, "SELECT COUNT(*) FROM worker_log"), NWORK);
    assert_int_equal(root_int(db, "SELECT COUNT(*) FROM worker_log WHERE n <> id - 1"), 0);
}

struct wdown {
    int rc;
    int calls;
};

static int work_down(struct dolt_conn *c, void *arg)
{
    (void)arg;
    return dolt_exec(c, "SELECT 1");
}

static void done_down(int rc, void *arg)
{
    struct wdown *w = arg;
    w->rc = rc;
    w->calls++;
}

static void on_closed_flag(void *arg) { *(int *)arg = 1; }

/* A worker whose server is unreachable still completes every item. */
static void test_worker_server_down(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct dolt_options o = {.host = "127.0.0.1", .port = 1, .user = "beads", .password = "x",
                             .connect_timeout_s = 1, .backoff_min_ms = 10000};
    struct dolt *d;
    assert_int_equal(dolt_start(&d, &loop, &o), 0);
    struct wdown w[2] = {{0}, {0}};
    assert_int_equal(dolt_submit(d, work_down, done_down, &w[0]), 0);
    assert_int_equal(dolt_submit(d, work_down, done_down, &w[1]), 0);
    int closed = 0;
    dolt_stop(d, on_closed_flag, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
    assert_int_equal(w[0].calls, 1);
    assert_int_equal(w[1].calls, 1);
    assert_int_equal(w[0].rc, BS_ECONN);
    assert_int_equal(w[1].rc, BS_ECONN);
    assert_int_equal(uv_loop_close(&loop), 0);

    /* Bad options are refused at start. */
    o.user = NULL;
    d = (struct dolt *)1;
    assert_int_equal(dolt_start(&d, &loop, &o), BS_EINVAL);
    assert_null(d);
}

/* ---- reconnect and backoff on a private second server ---- */

struct server {
    char *dir;
    unsigned port;
};

static int harness(const char *verb, const struct server *s)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/harness/mariadb.sh' %s '%s' %u", test_env("BS_SOURCE_DIR"), verb,
             s->dir, s->port);
    return system(cmd);
}

static int server_setup(void **state)
{
    struct server *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->dir = test_tmpdir("bs-dolt-server");
    /* base + 2, not + 1: with an odd base this port is odd, and Linux
     * hands out even ports to outgoing connections, whose TIME_WAIT
     * leftovers would make the server's bind fail. */
    s->port = (unsigned)atoi(test_env("BS_TEST_MYSQL_PORT")) + 2;
    *state = s;
    return 0;
}

static int server_teardown(void **state)
{
    struct server *s = *state;
    harness("stop", s); /* no-op when already stopped */
    test_rmtree(s->dir);
    free(s->dir);
    free(s);
    return 0;
}

static int poll_ensure(struct dolt_conn *c, unsigned max_ms)
{
    for (unsigned waited = 0;; waited += 20) {
        if (dolt_conn_ensure(c) == 0)
            return 0;
        if (waited >= max_ms)
            return BS_ECONN;
        sleep_ms(20);
    }
}

static void select_param(struct dolt_conn *c, int v)
{
    struct dolt_value p[1] = {DOLT_INT(v)};
    struct rows rs = {0};
    int rc = dolt_query(c, "SELECT ? * 2", p, 1, collect, &rs, NULL);
    if (rc)
        fail_msg("SELECT ?: %s (%u) %s", bs_strerror(rc), dolt_conn_errno(c), dolt_conn_error(c));
    assert_int_equal(rs.n, 1);
    char want[32];
    snprintf(want, sizeof want, "%d", v * 2);
    assert_string_equal(rs.v[0][0], want);
    rows_free(&rs);
}

static void test_reconnect_and_backoff(void **state)
{
    struct server *s = *state;
    struct dolt_options o = {.host = "127.0.0.1", .port = s->port, .user = "beads", .password = "beads-test-pw",
                             .connect_timeout_s = 2, .read_timeout_s = 10,
                             .backoff_min_ms = 100, .backoff_max_ms = 800};
    struct dolt_conn *c = NULL;
    char err[512];

    /* 1. No server yet: a handle that reconnects later. */
    assert_int_equal(dolt_conn_open(&c, &o, err, sizeof err), BS_ECONN);
    assert_non_null(c);
    assert_true(dolt_conn_errno(c) == 2002 || dolt_conn_errno(c) == 2003);
    assert_int_equal(dolt_conn_generation(c), 0);
    assert_int_equal(dolt_conn_failures(c), 1);

    /* 2. The server comes up: the handle connects within its backoff. */
    assert_int_equal(harness("start", s), 0);
    assert_int_equal(poll_ensure(c, 5000), 0);
    assert_int_equal(dolt_conn_generation(c), 1);
    assert_int_equal(dolt_conn_failures(c), 0);
    select_param(c, 21);
    char buf[64], want[64];
    query1(c, "SELECT @@port", buf, sizeof buf);
    snprintf(want, sizeof want, "%u", s->port);
    assert_string_equal(buf, want);

    /* 3. Restart: the next statement fails with BS_ECONN or succeeds on a
     * new session; either way a new generation, and the cached prepared
     * statement is prepared again. */
    assert_int_equal(harness("restart", s), 0);
    struct dolt_value p[1] = {DOLT_INT(4)};
    int rc = dolt_query(c, "SELECT ? * 2", p, 1, NULL, NULL, NULL);
    assert_true(rc == 0 || rc == BS_ECONN);
    assert_int_equal(poll_ensure(c, 5000), 0);
    assert_int_equal(dolt_conn_generation(c), 2);
    select_param(c, 4);
    query1(c, "SELECT @@session.time_zone", buf, sizeof buf); /* session set up again */
    assert_string_equal(buf, "+00:00");

    /* 4. Server gone for good: BS_ECONN, then capped exponential backoff. */
    assert_int_equal(harness("stop", s), 0);
    assert_int_equal(dolt_exec(c, "SELECT 1"), BS_ECONN);
    assert_int_equal(dolt_conn_failures(c), 1);
    uint64_t expect = 100, last = 0;
    for (unsigned f = 1; f <= 6; f++) {
        uint64_t r = dolt_conn_retry_in_ms(c);
        assert_true(r <= expect);
        assert_true(r + 60 >= expect);
        assert_true(r + 60 >= last); /* grows, then stays at the cap */
        last = r;
        /* Too early: no attempt, no sleep. */
        assert_int_equal(dolt_conn_ensure(c), BS_ECONN);
        assert_int_equal(dolt_conn_failures(c), f);
        sleep_ms((unsigned)dolt_conn_retry_in_ms(c) + 5);
        assert_int_equal(dolt_conn_retry_in_ms(c), 0);
        assert_int_equal(dolt_conn_ensure(c), BS_ECONN); /* one real attempt */
        assert_int_equal(dolt_conn_failures(c), f + 1);
        expect = expect * 2 > 800 ? 800 : expect * 2;
    }
    assert_true(last + 60 >= 800 && last <= 800);
    assert_int_equal(dolt_conn_generation(c), 2);
    dolt_conn_close(c);
}

int main(void)
{
    log_setup(LL_WARN, LF_LOGFMT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_tcp_password, setup_plain, db_teardown),
        cmocka_unit_test_setup_teardown(test_connect_socket, setup_plain, db_teardown),
        cmocka_unit_test_setup_teardown(test_connect_failures, setup_plain, db_teardown),
        cmocka_unit_test_setup_teardown(test_hostile_ids_roundtrip, setup_plain, db_teardown),
        cmocka_unit_test_setup_teardown(test_large_value, setup_plain, db_teardown),
        cmocka_unit_test_setup_teardown(test_call_results_drained, setup_plain, db_teardown),
        cmocka_unit_test_setup_teardown(test_statement_cache, setup_plain, db_teardown),
        cmocka_unit_test_setup_teardown(test_conflict_1213, setup_emul, db_teardown),
        cmocka_unit_test(test_is_dolt),
        cmocka_unit_test_setup_teardown(test_version_commit, setup_emul, db_teardown),
        cmocka_unit_test_setup_teardown(test_lost_transaction_guard, setup_plain, db_teardown),
        cmocka_unit_test(test_schema_fixtures),
        cmocka_unit_test_setup_teardown(test_worker, setup_plain, db_teardown),
        cmocka_unit_test(test_worker_server_down),
        cmocka_unit_test_setup_teardown(test_reconnect_and_backoff, server_setup, server_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
