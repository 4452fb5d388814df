#ifndef BS_TESTDB_H
#define BS_TESTDB_H
/* Throwaway databases on the private test MariaDB that the ctest fixture
 * starts (tests/harness/mariadb.sh; env BS_TEST_MYSQL_SOCKET,
 * BS_TEST_MYSQL_PORT, BS_SOURCE_DIR).
 *
 *   struct testdb db;
 *   assert_int_equal(testdb_create(&db, TESTDB_SCHEMA_CURRENT, 1), 0);
 *   testdb_insert_bead(&db, "code-1", "Fix it", "open", "agent", 1, "it works", NULL);
 *   ... connect the code under test with db.opts or db.url ...
 *   testdb_drop(&db);
 *
 * Each database is new and uniquely named (bs_<pid>_<n>), created with
 * utf8mb4_bin so ids compare byte-wise as on Dolt. Fixtures are loaded with
 * the mariadb CLI as root over the socket (dolt_emulation.sql uses
 * DELIMITER). A struct testdb must not be copied or moved: opts points into
 * it. Functions return 0 or a negative BS_E* and print what failed to
 * stderr. The first testdb_create registers dolt_library_end with atexit. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "dolt.h"

enum testdb_schema {
    TESTDB_SCHEMA_CURRENT = 1, /* tests/fixtures/schema_current.sql */
    TESTDB_SCHEMA_OLDER = 2,   /* tests/fixtures/schema_older.sql */
};

struct testdb {
    char name[64];              /* database name */
    enum testdb_schema schema;
    int dolt_emulation;         /* tests/fixtures/dolt_emulation.sql loaded */
    unsigned port;              /* TCP port of the test server */
    /* beads / beads-test-pw over TCP 127.0.0.1:port, database = name. */
    struct dolt_options opts;
    /* The same as a DOLT_URL: mysql://beads:beads-test-pw@127.0.0.1:PORT/NAME */
    char url[256];
    /* root over the Unix socket with the database selected; owned here. */
    struct dolt_conn *root;
};

#define TESTDB_USER "beads"
#define TESTDB_PASSWORD "beads-test-pw"

/* Creates and loads a fresh database; on failure nothing is left behind
 * and db->root is NULL. */
int testdb_create(struct testdb *db, enum testdb_schema schema, int dolt_emulation);
/* Drops the database and closes db->root. Safe on a failed create. */
void testdb_drop(struct testdb *db);

/* Options for root over the socket, no database selected. */
void testdb_root_options(struct dolt_options *o);
/* Opens a new connection as beads with db->opts (caller closes it). */
int testdb_connect(struct testdb *db, struct dolt_conn **out);
/* Loads an SQL file (path relative to BS_SOURCE_DIR) with the mariadb CLI. */
int testdb_load_file(struct testdb *db, const char *relpath);

/* Runs one statement (printf-style) as root. */
int testdb_exec(struct testdb *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* First column of the first row, NUL-terminated and cut to len. Returns 0,
 * 1 when the value is SQL NULL (buf ""), BS_ENOTFOUND when there is no row. */
int testdb_query_str(struct testdb *db, const char *sql, char *buf, size_t len);
/* The same, parsed as an integer; NULL or no row is an error. */
int testdb_query_int(struct testdb *db, const char *sql, int64_t *out);

/* A bead to insert. Zero-initialise and set what matters. */
struct testdb_bead {
    const char *id;              /* required */
    const char *title;           /* NULL = id */
    const char *status;          /* NULL = "open" */
    const char *assignee;        /* NULL = SQL NULL */
    int priority;                /* as is: 0 is the highest */
    const char *issue_type;      /* NULL = "task" */
    const char *description;     /* NULL = "" (likewise design, notes) */
    const char *design;
    const char *acceptance;      /* acceptance_criteria; NULL = "" */
    const char *notes;
    /* SQL expressions, spliced into the statement as is. */
    const char *updated_at_sql;  /* NULL = UTC_TIMESTAMP() */
    const char *created_at_sql;  /* NULL = the updated_at expression */
    const char *defer_until_sql; /* NULL = SQL NULL */
    const char *started_at_sql;  /* NULL = SQL NULL; ignored by the older schema */
    const char *closed_at_sql;   /* NULL = SQL NULL */
    int pinned, ephemeral;       /* 0, 1, or -1 for SQL NULL (bd leaves them nullable) */
};
int testdb_insert_bead_ex(struct testdb *db, const struct testdb_bead *b);
/* Shorthand; updated_at_sql NULL = UTC_TIMESTAMP(), e.g.
 * "UTC_TIMESTAMP() - INTERVAL 40 MINUTE". */
int testdb_insert_bead(struct testdb *db, const char *id, const char *title, const char *status,
                       const char *assignee, int priority, const char *acceptance, const char *updated_at_sql);
#endif
