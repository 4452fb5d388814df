#include "testdb.h"
#include "errors.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static unsigned testdb_counter;
static int testdb_atexit_done;

void testdb_root_options(struct dolt_options *o)
{
    memset(o, 0, sizeof *o);
    o->socket = test_env("BS_TEST_MYSQL_SOCKET");
    o->user = "root";
    o->connect_timeout_s = 5;
    o->read_timeout_s = 60;
}

static int open_root(struct dolt_conn **out, const char *database)
{
    struct dolt_options o;
    testdb_root_options(&o);
    o.database = database;
    char err[512];
    int rc = dolt_conn_open(out, &o, err, sizeof err);
    if (rc) {
        fprintf(stderr, "testdb: root connection failed: %s\n", err);
        dolt_conn_close(*out);
        *out = NULL;
    }
    return rc;
}

static int exec_on(struct dolt_conn *c, const char *sql)
{
    int rc = dolt_exec(c, sql);
    if (rc)
        fprintf(stderr, "testdb: %s: (%u) %s\n  in: %.300s\n", bs_strerror(rc), dolt_conn_errno(c),
                dolt_conn_error(c), sql);
    return rc;
}

int testdb_load_file(struct testdb *db, const char *relpath)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", test_env("BS_SOURCE_DIR"), relpath);
    char sockarg[4200];
    snprintf(sockarg, sizeof sockarg, "--socket=%s", test_env("BS_TEST_MYSQL_SOCKET"));
    char *argv[] = {"mariadb", "--no-defaults", "--user=root", sockarg, "--batch", db->name, NULL};

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, path, O_RDONLY, 0);
    pid_t pid;
    int err = posix_spawnp(&pid, "mariadb", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err) {
        fprintf(stderr, "testdb: cannot run the mariadb client: %s\n", strerror(err));
        return BS_EIO;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "testdb: waitpid: %s\n", strerror(errno));
            return BS_EIO;
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "testdb: loading %s into %s failed\n", path, db->name);
        return BS_EIO;
    }
    return 0;
}

int testdb_create(struct testdb *db, enum testdb_schema schema, int dolt_emulation)
{
    memset(db, 0, sizeof *db);
    if (schema != TESTDB_SCHEMA_CURRENT && schema != TESTDB_SCHEMA_OLDER)
        return BS_EINVAL;
    if (!testdb_atexit_done) {
        testdb_atexit_done = 1;
        atexit(dolt_library_end);
    }
    db->schema = schema;
    db->dolt_emulation = dolt_emulation;
    db->port = (unsigned)atoi(test_env("BS_TEST_MYSQL_PORT"));
    snprintf(db->name, sizeof db->name, "bs_%ld_%u", (long)getpid(), ++testdb_counter);

    struct dolt_conn *admin;
    int rc = open_root(&admin, NULL);
    if (rc)
        return rc;
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS `%s`", db->name);
    rc = exec_on(admin, sql);
    if (rc == 0) {
        snprintf(sql, sizeof sql, "CREATE DATABASE `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", db->name);
        rc = exec_on(admin, sql);
    }
    dolt_conn_close(admin);
    if (rc)
        return rc;

    rc = testdb_load_file(db, schema == TESTDB_SCHEMA_CURRENT ? "tests/fixtures/schema_current.sql"
                                                             : "tests/fixtures/schema_older.sql");
    if (rc == 0 && dolt_emulation)
        rc = testdb_load_file(db, "tests/fixtures/dolt_emulation.sql");
    if (rc == 0)
        rc = open_root(&db->root, db->name);
    if (rc) {
        testdb_drop(db);
        return rc;
    }

    db->opts.host = "127.0.0.1";
    db->opts.port = db->port;
    db->opts.user = TESTDB_USER;
    db->opts.password = TESTDB_PASSWORD;
    db->opts.database = db->name;
    db->opts.connect_timeout_s = 5;
    db->opts.read_timeout_s = 60;
    snprintf(db->url, sizeof db->url, "mysql://%s:%s@127.0.0.1:%u/%s", TESTDB_USER, TESTDB_PASSWORD, db->port,
             db->name);
    return 0;
}

void testdb_drop(struct testdb *db)
{
    if (!db->name[0])
        return;
    struct dolt_conn *admin = db->root;
    db->root = NULL;
    if (admin || open_root(&admin, NULL) == 0) {
        char sql[256];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS `%s`", db->name);
        exec_on(admin, sql);
        dolt_conn_close(admin);
    }
    db->name[0] = '\0';
}

int testdb_connect(struct testdb *db, struct dolt_conn **out)
{
    char err[512];
    int rc = dolt_conn_open(out, &db->opts, err, sizeof err);
    if (rc) {
        fprintf(stderr, "testdb: connecting as %s failed: %s\n", TESTDB_USER, err);
        dolt_conn_close(*out);
        *out = NULL;
    }
    return rc;
}

int testdb_exec(struct testdb *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *sql = NULL;
    int n = vasprintf(&sql, fmt, ap);
    va_end(ap);
    if (n < 0)
        return BS_ENOMEM;
    int rc = exec_on(db->root, sql);
    free(sql);
    return rc;
}

struct first_value {
    int seen, is_null;
    char *buf;
    size_t len;
};

static int first_value_cb(const struct dolt_row *row, void *arg)
{
    struct first_value *f = arg;
    f->seen = 1;
    if (row->ncols == 0 || !row->vals[0]) {
        f->is_null = 1;
        if (f->len)
            f->buf[0] = '\0';
    } else if (f->len) {
        size_t n = row->lens[0] < f->len - 1 ? row->lens[0] : f->len - 1;
        memcpy(f->buf, row->vals[0], n);
        f->buf[n] = '\0';
    }
    return 1; /* first row only; the rest is drained */
}

int testdb_query_str(struct testdb *db, const char *sql, char *buf, size_t len)
{
    struct first_value f = {.buf = buf, .len = len};
    if (len)
        buf[0] = '\0';
    int rc = dolt_query(db->root, sql, NULL, 0, first_value_cb, &f, NULL);
    if (rc < 0) {
        fprintf(stderr, "testdb: %s: (%u) %s\n  in: %.300s\n", bs_strerror(rc), dolt_conn_errno(db->root),
                dolt_conn_error(db->root), sql);
        return rc;
    }
    if (!f.seen)
        return BS_ENOTFOUND;
    return f.is_null ? 1 : 0;
}

int testdb_query_int(struct testdb *db, const char *sql, int64_t *out)
{
    char buf[64];
    int rc = testdb_query_str(db, sql, buf, sizeof buf);
    if (rc)
        return rc > 0 ? BS_EINVAL : rc;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (end == buf || *end) {
        fprintf(stderr, "testdb: not an integer: '%s' from %s\n", buf, sql);
        return BS_EINVAL;
    }
    *out = v;
    return 0;
}

static struct dolt_value text_or_null(const char *s)
{
    return s ? DOLT_TEXT(s) : DOLT_NULL;
}

int testdb_insert_bead_ex(struct testdb *db, const struct testdb_bead *b)
{
    if (!b || !b->id)
        return BS_EINVAL;
    const char *updated = b->updated_at_sql ? b->updated_at_sql : "UTC_TIMESTAMP()";
    const char *created = b->created_at_sql ? b->created_at_sql : updated;
    const char *defer = b->defer_until_sql ? b->defer_until_sql : "NULL";
    const char *closed = b->closed_at_sql ? b->closed_at_sql : "NULL";
    const char *started = b->started_at_sql ? b->started_at_sql : "NULL";
    int current = db->schema == TESTDB_SCHEMA_CURRENT;
    char *sql = NULL;
    int n = asprintf(&sql,
                     "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status,"
                     " priority, issue_type, assignee, created_at, updated_at, defer_until, closed_at,"
                     " pinned, ephemeral%s)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, %s, %s, %s, %s, ?, ?%s%s)",
                     current ? ", started_at" : "", created, updated, defer, closed,
                     current ? ", " : "", current ? started : "");
    if (n < 0)
        return BS_ENOMEM;
    struct dolt_value p[12] = {
        DOLT_TEXT(b->id),
        DOLT_TEXT(b->title ? b->title : b->id),
        DOLT_TEXT(b->description ? b->description : ""),
        DOLT_TEXT(b->design ? b->design : ""),
        DOLT_TEXT(b->acceptance ? b->acceptance : ""),
        DOLT_TEXT(b->notes ? b->notes : ""),
        DOLT_TEXT(b->status ? b->status : "open"),
        DOLT_INT(b->priority),
        DOLT_TEXT(b->issue_type ? b->issue_type : "task"),
        text_or_null(b->assignee),
        b->pinned < 0 ? DOLT_NULL : DOLT_INT(b->pinned ? 1 : 0),
        b->ephemeral < 0 ? DOLT_NULL : DOLT_INT(b->ephemeral ? 1 : 0),
    };
    int rc = dolt_query(db->root, sql, p, 12, NULL, NULL, NULL);
    if (rc)
        fprintf(stderr, "testdb: inserting bead %s: %s: (%u) %s\n", b->id, bs_strerror(rc),
                dolt_conn_errno(db->root), dolt_conn_error(db->root));
    free(sql);
    return rc;
}

int testdb_insert_bead(struct testdb *db, const char *id, const char *title, const char *status,
                       const char *assignee, int priority, const char *acceptance, const char *updated_at_sql)
{
    struct testdb_bead b = {
        .id = id,
        .title = title,
        .status = status,
        .assignee = assignee,
        .priority = priority,
        .acceptance = acceptance,
        .updated_at_sql = updated_at_sql,
    };
    return testdb_insert_bead_ex(db, &b);
}
