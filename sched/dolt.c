/* The Dolt (MySQL protocol) client; see dolt.h for the contracts.
 *
 * This is the only file that includes mysql.h. MySQL error numbers are
 * translated to BS_E* here and logged here with their original text. */
#include "dolt.h"
#include "errors.h"
#include "log.h"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Not in the 10.11 headers: MySQL 8's "disconnected by the server because
 * of inactivity" (sent before the server closes an idle session). */
#define BS_ER_CLIENT_INTERACTION_TIMEOUT 4031

#define STMT_CACHE_MAX 32
#define SQL_LOG_MAX 200

/* ---- library initialisation ---- */

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_rc = -1;

static void library_init_once(void)
{
    library_rc = mysql_library_init(0, NULL, NULL);
}

/* mysql_library_init is not thread-safe: run it exactly once, before any
 * connection exists. Returns 0 or BS_ERR. */
static int library_ready(void)
{
    pthread_once(&library_once, library_init_once);
    if (library_rc != 0) {
        log_error("mysql_library_init failed");
        return BS_ERR;
    }
    return 0;
}

void dolt_library_end(void)
{
    if (library_rc == 0) {
        mysql_library_end();
        library_rc = -1;
    }
}

/* ---- options ---- */

/* A private copy of dolt_options: the strings are owned by the copy so the
 * caller's options need not outlive a connection or a worker. */
struct owned_opts {
    struct dolt_options o;
    char *host, *socket, *user, *password, *database, *tls_ca;
};

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : BS_ENOMEM;
}

static void owned_opts_free(struct owned_opts *d)
{
    if (d->password) {
        /* Keep the secret out of freed heap memory. */
        volatile char *p = d->password;
        while (*p)
            *p++ = '\0';
    }
    free(d->host);
    free(d->socket);
    free(d->user);
    free(d->password);
    free(d->database);
    free(d->tls_ca);
    memset(d, 0, sizeof *d);
}

/* Checks the options; on error writes one line to err and returns BS_EINVAL. */
static int opts_validate(const struct dolt_options *o, char *err, size_t errlen)
{
    const char *why = NULL;
    if (!o)
        why = "no options";
    else if (!o->user || !*o->user)
        why = "user is required";
    else if ((!o->host || !*o->host) && (!o->socket || !*o->socket))
        why = "host or socket is required";
    else if (o->port > 65535)
        why = "port out of range";
    if (!why)
        return 0;
    if (err && errlen)
        snprintf(err, errlen, "invalid dolt options: %s", why);
    log_error("dolt options invalid", "error", why);
    return BS_EINVAL;
}

/* Copies o (validated) and fills in the defaults. Returns 0 or BS_ENOMEM. */
static int owned_opts_init(struct owned_opts *d, const struct dolt_options *o)
{
    memset(d, 0, sizeof *d);
    int rc = 0;
    if (o->host && *o->host)
        rc |= dup_opt(&d->host, o->host);
    if (o->socket && *o->socket)
        rc |= dup_opt(&d->socket, o->socket);
    rc |= dup_opt(&d->user, o->user);
    rc |= dup_opt(&d->password, o->password);
    if (o->database && *o->database)
        rc |= dup_opt(&d->database, o->database);
    if (o->tls_ca && *o->tls_ca)
        rc |= dup_opt(&d->tls_ca, o->tls_ca);
    if (rc) {
        owned_opts_free(d);
        return BS_ENOMEM;
    }
    d->o = *o;
    d->o.host = d->host;
    d->o.socket = d->socket;
    d->o.user = d->user;
    d->o.password = d->password;
    d->o.database = d->database;
    d->o.tls_ca = d->tls_ca;
    if (!d->o.port)
        d->o.port = 3306;
    if (!d->o.connect_timeout_s)
        d->o.connect_timeout_s = 5;
    if (!d->o.read_timeout_s)
        d->o.read_timeout_s = 30;
    if (!d->o.backoff_min_ms)
        d->o.backoff_min_ms = 100;
    if (!d->o.backoff_max_ms)
        d->o.backoff_max_ms = 30000;
    if (d->o.backoff_max_ms < d->o.backoff_min_ms)
        d->o.backoff_max_ms = d->o.backoff_min_ms;
    return 0;
}

/* ---- the connection ---- */

struct cached_stmt {
    char *sql;
    MYSQL_STMT *stmt;
    uint64_t last_used;
};

struct dolt_conn {
    struct owned_opts opts;
    char target[320];          /* "host:port" or the socket path, for logs */

    MYSQL *my;                 /* NULL while the connection is down */
    uint64_t generation;       /* sessions established so far */
    unsigned failures;         /* consecutive failed connection attempts */
    uint64_t next_attempt_ms;  /* monotonic time of the next allowed attempt */

    int is_dolt;               /* answer of dolt_is_dolt ... */
    uint64_t is_dolt_gen;      /* ... valid for this generation */
    uint64_t txn_gen;          /* generation of the dolt_begin transaction, 0 = none */

    unsigned err_no;
    char err_text[512];

    struct cached_stmt stmts[STMT_CACHE_MAX];
    size_t nstmts;
    uint64_t use_clock;
};

/* Error numbers that are the expected answer of a statement rather than a
 * failure: logged at debug level only. */
enum expect {
    EXPECT_NONE = 0,
    EXPECT_NOT_DOLT = 1,          /* dolt_version() missing */
    EXPECT_NOTHING_TO_COMMIT = 2, /* DOLT_COMMIT with nothing staged */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void set_error(struct dolt_conn *c, unsigned err_no, const char *text)
{
    c->err_no = err_no;
    snprintf(c->err_text, sizeof c->err_text, "%s", text ? text : "");
}

/* Connection-level errors: the session is gone or unusable. */
static int is_conn_errno(unsigned e)
{
    switch (e) {
    case CR_CONNECTION_ERROR:     /* 2002 */
    case CR_CONN_HOST_ERROR:      /* 2003 */
    case CR_SERVER_GONE_ERROR:    /* 2006 */
    case CR_SERVER_LOST:          /* 2013 */
    case CR_COMMANDS_OUT_OF_SYNC: /* 2014: protocol state unknown, only a new session is safe */
    case CR_SERVER_LOST_EXTENDED: /* 2055 */
    case ER_SERVER_SHUTDOWN:      /* 1053 */
    case ER_CONNECTION_KILLED:    /* 1927 */
    case BS_ER_CLIENT_INTERACTION_TIMEOUT:
        return 1;
    }
    return 0;
}

static int classify(unsigned e, const char *sqlstate)
{
    if (e == ER_LOCK_DEADLOCK || (sqlstate && strcmp(sqlstate, "40001") == 0))
        return BS_ECONFLICT;
    if (is_conn_errno(e))
        return BS_ECONN;
    return BS_EIO;
}

static int is_expected(enum expect expect, unsigned e, const char *text)
{
    if ((expect & EXPECT_NOT_DOLT) &&
        (e == ER_SP_DOES_NOT_EXIST || e == ER_NO_DB_ERROR || e == ER_FUNC_INEXISTENT_NAME_COLLISION))
        return 1;
    if ((expect & EXPECT_NOTHING_TO_COMMIT) && e == ER_UNKNOWN_ERROR && strcasestr(text, "nothing to commit"))
        return 1;
    return 0;
}

/* First SQL_LOG_MAX bytes of a statement for a log line. SQL text carries
 * no secret: values travel as parameters or are message/author strings. */
static const char *sql_excerpt(char *buf, size_t len, const char *sql)
{
    size_t n = strlen(sql);
    if (n < len)
        return sql;
    snprintf(buf, len, "%.*s...", (int)(len - 4), sql);
    return buf;
}

/* Closes the session: every prepared statement dies with it. The first
 * reconnect attempt after a lost session is allowed at once; only failed
 * attempts back off. */
static void mark_down(struct dolt_conn *c)
{
    if (c->my) {
        /* mysql_close first: it detaches the statements, so closing them
         * afterwards frees memory without talking to a dead server. */
        mysql_close(c->my);
        c->my = NULL;
    }
    for (size_t i = 0; i < c->nstmts; i++) {
        mysql_stmt_close(c->stmts[i].stmt);
        free(c->stmts[i].sql);
    }
    c->nstmts = 0;
    if (c->failures == 0)
        c->next_attempt_ms = 0;
}

/* Records and logs a failed statement, marks the connection down on a
 * connection error, and returns the BS_E* code. what names the step. */
static int fail(struct dolt_conn *c, unsigned e, const char *sqlstate, const char *text, const char *what,
                const char *sql, enum expect expect)
{
    set_error(c, e, text);
    int rc = classify(e, sqlstate);
    char ex[SQL_LOG_MAX + 4];
    const char *stmt = sql ? sql_excerpt(ex, sizeof ex, sql) : NULL;
    if (is_expected(expect, e, c->err_text)) {
        log_debug("dolt statement answered", "step", what, "errno", LOG_INT(e), "error", c->err_text, "sql", stmt);
    } else if (rc == BS_ECONFLICT) {
        log_info("dolt conflict", "step", what, "errno", LOG_INT(e), "sqlstate", sqlstate, "error", c->err_text,
                 "sql", stmt);
    } else if (rc == BS_ECONN) {
        log_warn("dolt connection lost", "target", c->target, "step", what, "errno", LOG_INT(e), "error",
                 c->err_text, "sql", stmt);
    } else {
        log_error("dolt statement failed", "step", what, "errno", LOG_INT(e), "sqlstate", sqlstate, "error",
                  c->err_text, "sql", stmt);
    }
    if (rc == BS_ECONN)
        mark_down(c);
    return rc;
}

static int fail_my(struct dolt_conn *c, const char *what, const char *sql, enum expect expect)
{
    return fail(c, mysql_errno(c->my), mysql_sqlstate(c->my), mysql_error(c->my), what, sql, expect);
}

static int fail_stmt(struct dolt_conn *c, MYSQL_STMT *st, const char *what, const char *sql, enum expect expect)
{
    return fail(c, mysql_stmt_errno(st), mysql_stmt_sqlstate(st), mysql_stmt_error(st), what, sql, expect);
}

static uint64_t backoff_delay(const struct dolt_conn *c)
{
    uint64_t d = c->opts.o.backoff_min_ms;
    for (unsigned i = 1; i < c->failures && d < c->opts.o.backoff_max_ms; i++)
        d *= 2;
    return d < c->opts.o.backoff_max_ms ? d : c->opts.o.backoff_max_ms;
}

/* Runs one session-setup statement on a fresh handle. */
static int setup_stmt(MYSQL *my, const char *sql)
{
    if (mysql_real_query(my, sql, (unsigned long)strlen(sql)))
        return -1;
    /* SET returns no rows, but drain anyway so the session stays in sync. */
    do {
        MYSQL_RES *res = mysql_store_result(my);
        if (res)
            mysql_free_result(res);
    } while (mysql_next_result(my) == 0);
    return mysql_errno(my) ? -1 : 0;
}

/* One connection attempt; on success c->my is the new session. On failure
 * the error is recorded on c and BS_ECONN (or BS_ENOMEM) returned. */
static int connect_once(struct dolt_conn *c)
{
    const struct dolt_options *o = &c->opts.o;
    MYSQL *my = mysql_init(NULL);
    if (!my) {
        set_error(c, 0, "mysql_init: out of memory");
        return BS_ENOMEM;
    }
    unsigned connect_timeout = o->connect_timeout_s, rw_timeout = o->read_timeout_s;
    unsigned no_local_infile = 0;
    my_bool off = 0, on = 1;
    unsigned protocol = o->socket ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
    int bad = 0;
    bad |= mysql_options(my, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
    bad |= mysql_options(my, MYSQL_OPT_READ_TIMEOUT, &rw_timeout);
    bad |= mysql_options(my, MYSQL_OPT_WRITE_TIMEOUT, &rw_timeout);
    bad |= mysql_options(my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    /* We reconnect ourselves so that a new session is never silent: the
     * generation counter moves and the statement cache is dropped. */
    bad |= mysql_options(my, MYSQL_OPT_RECONNECT, &off);
    bad |= mysql_options(my, MYSQL_OPT_LOCAL_INFILE, &no_local_infile);
    /* Without this, "localhost" would silently mean the default socket. */
    bad |= mysql_options(my, MYSQL_OPT_PROTOCOL, &protocol);
    if (o->tls || o->tls_ca) {
        bad |= mysql_options(my, MYSQL_OPT_SSL_ENFORCE, &on);
        if (o->tls_ca) {
            bad |= mysql_options(my, MYSQL_OPT_SSL_CA, o->tls_ca);
            bad |= mysql_options(my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
        } else {
            bad |= mysql_options(my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &off);
        }
    } else {
        bad |= mysql_options(my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &off);
    }
    if (bad) {
        set_error(c, 0, "mysql_options rejected a connection option");
        mysql_close(my);
        return BS_ECONN;
    }
    if (!mysql_real_connect(my, o->socket ? NULL : o->host, o->user, o->password, o->database,
                            o->socket ? 0 : o->port, o->socket, CLIENT_MULTI_RESULTS)) {
        set_error(c, mysql_errno(my), mysql_error(my));
        mysql_close(my);
        return BS_ECONN;
    }
    /* Connector/C 3.3 treats MYSQL_OPT_SSL_ENFORCE as "try TLS": without
     * certificate verification it silently continues in plain text when
     * the server offers no TLS. Requiring TLS is enforced here. */
    if ((o->tls || o->tls_ca) && !mysql_get_ssl_cipher(my)) {
        set_error(c, CR_SSL_CONNECTION_ERROR, "TLS is required but the server did not negotiate it");
        mysql_close(my);
        return BS_ECONN;
    }
    /* Session setup: every timestamp we compute or compare is UTC. */
    if (setup_stmt(my, "SET time_zone = '+00:00'")) {
        set_error(c, mysql_errno(my), mysql_error(my));
        mysql_close(my);
        return BS_ECONN;
    }
    /* Strict mode so bad values fail instead of being truncated; no
     * ANSI_QUOTES / NO_BACKSLASH_ESCAPES, which would change literal syntax.
     * A server that rejects it keeps its own mode (logged). */
    if (setup_stmt(my, "SET sql_mode = 'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'")) {
        unsigned e = mysql_errno(my);
        if (is_conn_errno(e)) {
            set_error(c, e, mysql_error(my));
            mysql_close(my);
            return BS_ECONN;
        }
        log_warn("dolt sql_mode not set", "target", c->target, "errno", LOG_INT(e), "error", mysql_error(my));
    }
    c->my = my;
    return 0;
}

/* True when the server has closed our idle socket (restart, kill, idle
 * cutoff): found without a round trip, so the next statement need not fail. */
static int closed_by_peer(MYSQL *my)
{
    int fd = (int)mysql_get_socket(my);
    if (fd < 0)
        return 1;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    /* POLLIN alone may be TLS session data; a hang-up is unambiguous. */
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

int dolt_conn_ensure(struct dolt_conn *c)
{
    if (!c)
        return BS_EINVAL;
    if (c->my) {
        if (!closed_by_peer(c->my))
            return 0;
        set_error(c, CR_SERVER_GONE_ERROR, "server closed the connection");
        log_warn("dolt connection closed by server", "target", c->target);
        mark_down(c);
    }
    uint64_t now = now_ms();
    if (now < c->next_attempt_ms)
        return BS_ECONN;
    int rc = connect_once(c);
    if (rc == 0) {
        c->failures = 0;
        c->next_attempt_ms = 0;
        c->generation++;
        log_info("dolt connected", "target", c->target, "user", c->opts.o.user, "db", c->opts.o.database,
                 "generation", LOG_INT(c->generation), "tls", mysql_get_ssl_cipher(c->my));
        return 0;
    }
    c->failures++;
    uint64_t delay = backoff_delay(c);
    c->next_attempt_ms = now_ms() + delay;
    log_warn("dolt connect failed", "target", c->target, "user", c->opts.o.user, "errno", LOG_INT(c->err_no),
             "error", c->err_text, "failures", LOG_INT(c->failures), "retry_in_ms", LOG_INT(delay));
    return rc == BS_ENOMEM ? rc : BS_ECONN;
}

int dolt_conn_open(struct dolt_conn **out, const struct dolt_options *opts, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!out)
        return BS_EINVAL;
    *out = NULL;
    int rc = opts_validate(opts, err, errlen);
    if (rc)
        return rc;
    if ((rc = library_ready()))
        return rc;
    struct dolt_conn *c = calloc(1, sizeof *c);
    if (!c)
        return BS_ENOMEM;
    if (owned_opts_init(&c->opts, opts)) {
        free(c);
        return BS_ENOMEM;
    }
    if (c->opts.o.socket)
        snprintf(c->target, sizeof c->target, "%s", c->opts.o.socket);
    else
        snprintf(c->target, sizeof c->target, "%s:%u", c->opts.o.host, c->opts.o.port);
    c->is_dolt = -1;
    rc = dolt_conn_ensure(c);
    if (rc == 0 || rc == BS_ECONN) {
        if (rc && err && errlen)
            snprintf(err, errlen, "connect to %s as %s failed: (%u) %s", c->target, c->opts.o.user, c->err_no,
                     c->err_text);
        *out = c;
        return rc;
    }
    if (err && errlen)
        snprintf(err, errlen, "connect to %s failed: %s", c->target, bs_strerror(rc));
    dolt_conn_close(c);
    return rc;
}

void dolt_conn_close(struct dolt_conn *c)
{
    if (!c)
        return;
    mark_down(c);
    owned_opts_free(&c->opts);
    free(c);
}

unsigned dolt_conn_failures(const struct dolt_conn *c) { return c->failures; }

uint64_t dolt_conn_retry_in_ms(const struct dolt_conn *c)
{
    if (c->my)
        return 0;
    uint64_t now = now_ms();
    return c->next_attempt_ms > now ? c->next_attempt_ms - now : 0;
}

uint64_t dolt_conn_generation(const struct dolt_conn *c) { return c->generation; }
unsigned dolt_conn_errno(const struct dolt_conn *c) { return c->err_no; }
const char *dolt_conn_error(const struct dolt_conn *c) { return c->err_text; }

/* ensure + the lost-transaction guard: a transaction opened with
 * dolt_begin cannot survive a reconnect, so statements that would run in
 * its place on the new session fail until dolt_commit/rollback/begin. */
static int ensure_for_statement(struct dolt_conn *c)
{
    int rc = dolt_conn_ensure(c);
    if (rc)
        return rc;
    if (c->txn_gen && c->txn_gen != c->generation) {
        set_error(c, 0, "transaction lost: the connection was re-established after dolt_begin");
        log_warn("dolt transaction lost", "target", c->target, "generation", LOG_INT(c->generation));
        return BS_ECONN;
    }
    return 0;
}

/* ---- text protocol ---- */

/* Runs sql with mysql_real_query and drains every result set; rows of all
 * result sets go to on_row until it returns non-zero. */
static int run_text(struct dolt_conn *c, const char *sql, dolt_row_cb on_row, void *arg, uint64_t *affected,
                    enum expect expect)
{
    if (mysql_real_query(c->my, sql, (unsigned long)strlen(sql)))
        return fail_my(c, "query", sql, expect);
    int stop = 0;
    for (int first = 1;; first = 0) {
        MYSQL_RES *res = mysql_store_result(c->my);
        if (res) {
            unsigned n = mysql_num_fields(res);
            MYSQL_FIELD *fields = mysql_fetch_fields(res);
            const char **names = calloc(n ? n : 1, sizeof *names);
            if (!names && !stop)
                stop = BS_ENOMEM;
            for (unsigned i = 0; names && i < n; i++)
                names[i] = fields[i].name;
            MYSQL_ROW r;
            while (!stop && (r = mysql_fetch_row(res))) {
                struct dolt_row row = {
                    .ncols = n, .vals = (const char *const *)r, .lens = mysql_fetch_lengths(res), .names = names};
                if (on_row)
                    stop = on_row(&row, arg);
            }
            free(names);
            if (first && affected)
                *affected = (uint64_t)mysql_num_rows(res);
            mysql_free_result(res);
        } else if (mysql_field_count(c->my) != 0) {
            return fail_my(c, "store result", sql, expect);
        } else if (first && affected) {
            *affected = (uint64_t)mysql_affected_rows(c->my);
        }
        int next = mysql_next_result(c->my);
        if (next < 0)
            break;
        if (next > 0)
            return fail_my(c, "next result", sql, expect);
    }
    return stop;
}

/* ---- prepared statements ---- */

static void stmt_evict(struct dolt_conn *c, size_t i)
{
    mysql_stmt_close(c->stmts[i].stmt);
    free(c->stmts[i].sql);
    c->stmts[i] = c->stmts[--c->nstmts];
}

/* The cached statement for sql, preparing it (and evicting the least
 * recently used one) on a miss. Returns NULL with *rc set on failure. */
static MYSQL_STMT *stmt_get(struct dolt_conn *c, const char *sql, int *rc)
{
    for (size_t i = 0; i < c->nstmts; i++) {
        if (strcmp(c->stmts[i].sql, sql) == 0) {
            c->stmts[i].last_used = ++c->use_clock;
            return c->stmts[i].stmt;
        }
    }
    if (c->nstmts == STMT_CACHE_MAX) {
        size_t lru = 0;
        for (size_t i = 1; i < c->nstmts; i++)
            if (c->stmts[i].last_used < c->stmts[lru].last_used)
                lru = i;
        stmt_evict(c, lru);
    }
    char *key = strdup(sql);
    MYSQL_STMT *st = key ? mysql_stmt_init(c->my) : NULL;
    if (!st) {
        free(key);
        *rc = BS_ENOMEM;
        return NULL;
    }
    if (mysql_stmt_prepare(st, sql, (unsigned long)strlen(sql))) {
        *rc = fail_stmt(c, st, "prepare", sql, EXPECT_NONE);
        mysql_stmt_close(st);
        free(key);
        return NULL;
    }
    my_bool on = 1;
    mysql_stmt_attr_set(st, STMT_ATTR_UPDATE_MAX_LENGTH, &on);
    c->stmts[c->nstmts++] = (struct cached_stmt){.sql = key, .stmt = st, .last_used = ++c->use_clock};
    return st;
}

static void stmt_forget(struct dolt_conn *c, MYSQL_STMT *st)
{
    for (size_t i = 0; i < c->nstmts; i++) {
        if (c->stmts[i].stmt == st) {
            stmt_evict(c, i);
            return;
        }
    }
}

/* Buffers for one result set of a prepared statement, every column bound
 * as a string. */
struct result_bufs {
    unsigned n;
    MYSQL_BIND *binds;
    char **bufs;
    unsigned long *lens;
    my_bool *nulls, *errs;
    const char **vals, **names;
};

static void result_bufs_free(struct result_bufs *b)
{
    for (unsigned i = 0; b->bufs && i < b->n; i++)
        free(b->bufs[i]);
    free(b->binds);
    free(b->bufs);
    free(b->lens);
    free(b->nulls);
    free(b->errs);
    free(b->vals);
    free(b->names);
}

/* Sizes column i's buffer for len bytes plus our NUL terminator. */
static int result_buf_size(struct result_bufs *b, unsigned i, unsigned long len)
{
    char *p = realloc(b->bufs[i], (size_t)len + 1);
    if (!p)
        return BS_ENOMEM;
    b->bufs[i] = p;
    b->binds[i].buffer = p;
    b->binds[i].buffer_length = len; /* the +1 stays ours */
    return 0;
}

static int result_bufs_init(struct result_bufs *b, MYSQL_RES *meta)
{
    memset(b, 0, sizeof *b);
    unsigned n = mysql_num_fields(meta);
    MYSQL_FIELD *fields = mysql_fetch_fields(meta);
    size_t k = n ? n : 1;
    b->n = n;
    b->binds = calloc(k, sizeof *b->binds);
    b->bufs = calloc(k, sizeof *b->bufs);
    b->lens = calloc(k, sizeof *b->lens);
    b->nulls = calloc(k, sizeof *b->nulls);
    b->errs = calloc(k, sizeof *b->errs);
    b->vals = calloc(k, sizeof *b->vals);
    b->names = calloc(k, sizeof *b->names);
    if (!b->binds || !b->bufs || !b->lens || !b->nulls || !b->errs || !b->vals || !b->names)
        return BS_ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        b->names[i] = fields[i].name;
        b->binds[i].buffer_type = MYSQL_TYPE_STRING;
        b->binds[i].length = &b->lens[i];
        b->binds[i].is_null = &b->nulls[i];
        b->binds[i].error = &b->errs[i];
        /* max_length is exact for strings (STMT_ATTR_UPDATE_MAX_LENGTH);
         * for numbers and dates it is the widest text form. */
        unsigned long want = fields[i].max_length > 64 ? fields[i].max_length : 64;
        if (result_buf_size(b, i, want))
            return BS_ENOMEM;
    }
    return 0;
}

/* Stores the current result set of st and hands its rows to on_row while
 * *stop is 0. Returns 0 or a BS_E* error. */
static int fetch_result(struct dolt_conn *c, MYSQL_STMT *st, const char *sql, dolt_row_cb on_row, void *arg,
                        int *stop, uint64_t *affected)
{
    if (mysql_stmt_store_result(st)) {
        int rc = fail_stmt(c, st, "store result", sql, EXPECT_NONE);
        if (c->my) /* else st died with the session */
            mysql_stmt_free_result(st);
        return rc;
    }
    if (affected)
        *affected = (uint64_t)mysql_stmt_num_rows(st);
    MYSQL_RES *meta = mysql_stmt_result_metadata(st);
    if (!meta) {
        int rc = mysql_stmt_errno(st) ? fail_stmt(c, st, "result metadata", sql, EXPECT_NONE) : 0;
        if (c->my) /* else st died with the session */
            mysql_stmt_free_result(st);
        return rc;
    }
    struct result_bufs b;
    int rc = result_bufs_init(&b, meta);
    if (rc == 0 && mysql_stmt_bind_result(st, b.binds))
        rc = fail_stmt(c, st, "bind result", sql, EXPECT_NONE);
    while (rc == 0 && !*stop) {
        int f = mysql_stmt_fetch(st);
        if (f == MYSQL_NO_DATA)
            break;
        if (f == 1) {
            rc = fail_stmt(c, st, "fetch", sql, EXPECT_NONE);
            break;
        }
        if (f == MYSQL_DATA_TRUNCATED) {
            /* Defensive: max_length should have sized every buffer. Grow
             * the truncated columns and fetch them again. */
            for (unsigned i = 0; rc == 0 && i < b.n; i++) {
                if (!b.errs[i])
                    continue;
                if ((rc = result_buf_size(&b, i, b.lens[i])))
                    break;
                if (mysql_stmt_fetch_column(st, &b.binds[i], i, 0))
                    rc = fail_stmt(c, st, "fetch column", sql, EXPECT_NONE);
            }
            if (rc == 0 && mysql_stmt_bind_result(st, b.binds))
                rc = fail_stmt(c, st, "bind result", sql, EXPECT_NONE);
            if (rc)
                break;
        }
        for (unsigned i = 0; i < b.n; i++) {
            if (b.nulls[i]) {
                b.vals[i] = NULL;
                b.lens[i] = 0;
            } else {
                b.bufs[i][b.lens[i]] = '\0';
                b.vals[i] = b.bufs[i];
            }
        }
        struct dolt_row row = {.ncols = b.n, .vals = b.vals, .lens = b.lens, .names = b.names};
        if (on_row)
            *stop = on_row(&row, arg);
    }
    result_bufs_free(&b);
    mysql_free_result(meta);
    if (c->my)
        mysql_stmt_free_result(st);
    return rc;
}

/* Fills pb (and plen, the lengths it points to) from params. Returns 0 or
 * BS_EINVAL for a parameter of no known type. */
static int bind_params(struct dolt_conn *c, const struct dolt_value *params, size_t nparams, MYSQL_BIND *pb,
                       unsigned long *plen)
{
    for (size_t i = 0; i < nparams; i++) {
        switch (params[i].type) {
        case DT_NULL:
            pb[i].buffer_type = MYSQL_TYPE_NULL;
            break;
        case DT_TEXT:
            pb[i].buffer_type = MYSQL_TYPE_STRING;
            pb[i].buffer = (void *)(params[i].text ? params[i].text : "");
            plen[i] = params[i].text ? (unsigned long)params[i].len : 0;
            pb[i].buffer_length = plen[i];
            pb[i].length = &plen[i];
            break;
        case DT_INT:
            pb[i].buffer_type = MYSQL_TYPE_LONGLONG;
            pb[i].buffer = (void *)&params[i].i;
            break;
        default:
            set_error(c, 0, "bad parameter type");
            log_error("dolt bad parameter type", "index", LOG_INT(i));
            return BS_EINVAL;
        }
    }
    return 0;
}

/* Prepares (or takes from the cache) sql, binds pb and executes it; a
 * statement the server asks to prepare again is prepared once more.
 * Returns 0 with *out the executed statement, or an error. */
static int execute_prepared(struct dolt_conn *c, const char *sql, MYSQL_BIND *pb, size_t nparams,
                            MYSQL_STMT **out)
{
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        MYSQL_STMT *st = stmt_get(c, sql, &rc);
        if (!st)
            return rc;
        if (mysql_stmt_param_count(st) != nparams) {
            char why[96];
            snprintf(why, sizeof why, "statement has %lu parameters, %zu given", mysql_stmt_param_count(st),
                     nparams);
            set_error(c, 0, why);
            char ex[SQL_LOG_MAX + 4];
            log_error("dolt parameter count mismatch", "error", why, "sql", sql_excerpt(ex, sizeof ex, sql));
            return BS_EINVAL;
        }
        if (mysql_stmt_bind_param(st, pb))
            return fail_stmt(c, st, "bind params", sql, EXPECT_NONE);
        if (mysql_stmt_execute(st) == 0) {
            *out = st;
            return 0;
        }
        if (mysql_stmt_errno(st) == ER_NEED_REPREPARE && attempt == 0) {
            /* The table changed under the cached statement: prepare anew. */
            stmt_forget(c, st);
            continue;
        }
        return fail_stmt(c, st, "execute", sql, EXPECT_NONE);
    }
}

/* Reads every result of the executed st: rows to on_row (until it returns
 * non-zero), the first result's row count or affected rows to *affected.
 * Returns 0, on_row's non-zero answer, or an error. */
static int read_results(struct dolt_conn *c, MYSQL_STMT *st, const char *sql, dolt_row_cb on_row, void *arg,
                        uint64_t *affected)
{
    int stop = 0;
    for (int first = 1;; first = 0) {
        if (mysql_stmt_field_count(st) > 0) {
            int rc = fetch_result(c, st, sql, on_row, arg, &stop, first ? affected : NULL);
            if (rc)
                return rc;
        } else if (first && affected) {
            *affected = (uint64_t)mysql_stmt_affected_rows(st);
        }
        /* Always drain: after CALL the final status packet must be read. */
        if (!mysql_stmt_more_results(st))
            break;
        int next = mysql_stmt_next_result(st);
        if (next < 0)
            break;
        if (next > 0)
            return fail_stmt(c, st, "next result", sql, EXPECT_NONE);
    }
    return stop;
}

static int run_prepared(struct dolt_conn *c, const char *sql, const struct dolt_value *params, size_t nparams,
                        dolt_row_cb on_row, void *arg, uint64_t *affected)
{
    MYSQL_BIND *pb = calloc(nparams, sizeof *pb);
    unsigned long *plen = calloc(nparams, sizeof *plen);
    MYSQL_STMT *st = NULL;
    int rc = !pb || !plen ? BS_ENOMEM : bind_params(c, params, nparams, pb, plen);
    if (rc == 0)
        rc = execute_prepared(c, sql, pb, nparams, &st);
    if (rc == 0)
        rc = read_results(c, st, sql, on_row, arg, affected);
    free(pb);
    free(plen);
    return rc;
}

int dolt_query(struct dolt_conn *c, const char *sql, const struct dolt_value *params, size_t nparams,
               dolt_row_cb on_row, void *arg, uint64_t *affected)
{
    if (affected)
        *affected = 0;
    if (!c || !sql || (nparams && !params))
        return BS_EINVAL;
    int rc = ensure_for_statement(c);
    if (rc)
        return rc;
    if (nparams == 0)
        return run_text(c, sql, on_row, arg, affected, EXPECT_NONE);
    return run_prepared(c, sql, params, nparams, on_row, arg, affected);
}

int dolt_exec(struct dolt_conn *c, const char *sql)
{
    return dolt_query(c, sql, NULL, 0, NULL, NULL, NULL);
}

int dolt_begin(struct dolt_conn *c)
{
    if (!c)
        return BS_EINVAL;
    c->txn_gen = 0; /* a new transaction replaces a lost one */
    int rc = dolt_conn_ensure(c);
    if (rc == 0)
        rc = run_text(c, "START TRANSACTION", NULL, NULL, NULL, EXPECT_NONE);
    if (rc == 0)
        c->txn_gen = c->generation;
    return rc;
}

int dolt_commit(struct dolt_conn *c)
{
    if (!c)
        return BS_EINVAL;
    int rc = ensure_for_statement(c);
    c->txn_gen = 0;
    if (rc == 0)
        rc = run_text(c, "COMMIT", NULL, NULL, NULL, EXPECT_NONE);
    /* A failed COMMIT (Dolt: 1213 at commit) may leave the transaction
     * open on the server; end it so the contract "over either way" holds. */
    if (rc && c->my && run_text(c, "ROLLBACK", NULL, NULL, NULL, EXPECT_NONE) && c->my)
        mark_down(c);
    return rc;
}

int dolt_rollback(struct dolt_conn *c)
{
    if (!c)
        return BS_EINVAL;
    uint64_t txn = c->txn_gen;
    c->txn_gen = 0;
    /* Down, or a session that is not the transaction's: nothing to undo,
     * the server discarded it with the old session. Never reconnect here. */
    if (!c->my || (txn && txn != c->generation))
        return 0;
    if (run_text(c, "ROLLBACK", NULL, NULL, NULL, EXPECT_NONE) != 0 && c->my) {
        /* Dropping the session is the one rollback that cannot fail. */
        log_warn("dolt rollback failed, dropping the session", "target", c->target);
        mark_down(c);
    }
    return 0;
}

int dolt_is_dolt(struct dolt_conn *c)
{
    if (!c)
        return BS_EINVAL;
    int rc = dolt_conn_ensure(c);
    if (rc)
        return rc;
    if (c->is_dolt_gen == c->generation && c->is_dolt >= 0)
        return c->is_dolt;
    rc = run_text(c, "SELECT dolt_version()", NULL, NULL, NULL, EXPECT_NOT_DOLT);
    if (rc == 0)
        c->is_dolt = 1;
    else if (is_expected(EXPECT_NOT_DOLT, c->err_no, c->err_text))
        c->is_dolt = 0;
    else
        return rc;
    c->is_dolt_gen = c->generation;
    return c->is_dolt;
}

/* "Name <email>": something before '<', a non-empty address, '>' last. */
static int author_ok(const char *a)
{
    const char *lt = strchr(a, '<');
    if (!lt || lt == a || strchr(lt + 1, '<'))
        return 0;
    const char *gt = strchr(lt, '>');
    return gt && gt > lt + 1 && gt[1] == '\0';
}

/* Appends s as a quoted SQL string literal (escaped for the session's
 * charset and sql_mode) to the malloc'd buffer *q of length *len. */
static int append_literal(struct dolt_conn *c, char **q, size_t *len, const char *prefix, const char *s)
{
    size_t n = strlen(s), plen = strlen(prefix);
    char *p = realloc(*q, *len + plen + 2 * n + 4);
    if (!p)
        return BS_ENOMEM;
    *q = p;
    memcpy(p + *len, prefix, plen);
    *len += plen;
    p[(*len)++] = '\'';
    *len += mysql_real_escape_string(c->my, p + *len, s, (unsigned long)n);
    p[(*len)++] = '\'';
    p[*len] = '\0';
    return 0;
}

/* Runs a CALL built from literal args (text protocol: the procedure path
 * of the server that is most widely supported). */
static int call_proc(struct dolt_conn *c, const char *proc, const char *const *args, size_t nargs,
                     enum expect expect)
{
    char *q = NULL;
    size_t len = 0;
    int rc = 0;
    char head[64];
    snprintf(head, sizeof head, "CALL %s(", proc);
    for (size_t i = 0; rc == 0 && i < nargs; i++)
        rc = append_literal(c, &q, &len, i == 0 ? head : ", ", args[i]);
    if (rc == 0) {
        char *p = realloc(q, len + 2);
        if (!p) {
            rc = BS_ENOMEM;
        } else {
            q = p;
            q[len++] = ')';
            q[len] = '\0';
        }
    }
    if (rc == 0)
        rc = run_text(c, q, NULL, NULL, NULL, expect);
    free(q);
    return rc;
}

int dolt_version_commit(struct dolt_conn *c, const char *const *tables, size_t ntables, const char *message,
                        const char *author)
{
    if (!c || (ntables && !tables) || !message || !author)
        return BS_EINVAL;
    if (!author_ok(author)) {
        set_error(c, 0, "author must have the form 'Name <email>'");
        log_error("dolt commit author malformed", "author", author);
        return BS_EINVAL;
    }
    int rc = ensure_for_statement(c);
    if (rc)
        return rc;
    for (size_t i = 0; i < ntables; i++) {
        const char *args[] = {tables[i]};
        if ((rc = call_proc(c, "DOLT_ADD", args, 1, EXPECT_NONE)))
            return rc;
    }
    const char *args[] = {"-m", message, "--author", author};
    rc = call_proc(c, "DOLT_COMMIT", args, 4, EXPECT_NOTHING_TO_COMMIT);
    if (rc && c->my && is_expected(EXPECT_NOTHING_TO_COMMIT, c->err_no, c->err_text)) {
        /* Nothing staged: not a failure, but the SQL transaction must still
         * end as DOLT_COMMIT would have ended it. */
        rc = run_text(c, "COMMIT", NULL, NULL, NULL, EXPECT_NONE);
    }
    if (rc == 0)
        c->txn_gen = 0;
    return rc;
}

/* ---- worker thread ---- */

struct dolt_item {
    dolt_work_fn work;
    dolt_done_fn done;
    void *arg;
    int rc;
    struct dolt_item *next;
};

struct dolt {
    uv_async_t async;          /* worker -> loop: items finished or exited */
    pthread_t thread;
    struct owned_opts opts;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct dolt_item *queue_head, *queue_tail; /* lock: waiting to run */
    struct dolt_item *done_head, *done_tail;   /* lock: finished, not delivered */
    int stopping;                              /* lock: no more work after the queue */
    int exited;                                /* lock: worker has left its loop */

    /* loop thread only */
    int pending;
    int stop_requested;
    int closing;
    void (*on_closed)(void *arg);
    void *closed_arg;
};

static void *worker_main(void *p)
{
    struct dolt *d = p;
    struct dolt_conn *conn = NULL;
    mysql_thread_init();
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->queue_head && !d->stopping)
            pthread_cond_wait(&d->wake, &d->lock);
        struct dolt_item *it = d->queue_head;
        if (!it)
            break; /* stopping and the queue is empty */
        d->queue_head = it->next;
        if (!d->queue_head)
            d->queue_tail = NULL;
        it->next = NULL;
        pthread_mutex_unlock(&d->lock);

        int rc = 0;
        if (!conn) {
            char err[256];
            rc = dolt_conn_open(&conn, &d->opts.o, err, sizeof err);
            /* BS_ECONN still gives a handle: the work runs and its
             * statements retry the connection under the backoff. */
            if (conn)
                rc = 0;
        }
        it->rc = conn ? it->work(conn, it->arg) : rc;

        pthread_mutex_lock(&d->lock);
        if (d->done_tail)
            d->done_tail->next = it;
        else
            d->done_head = it;
        d->done_tail = it;
        pthread_mutex_unlock(&d->lock);
        uv_async_send(&d->async);
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    dolt_conn_close(conn);
    mysql_thread_end();
    pthread_mutex_lock(&d->lock);
    d->exited = 1;
    pthread_mutex_unlock(&d->lock);
    uv_async_send(&d->async);
    return NULL;
}

static void dolt_free(struct dolt *d)
{
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->wake);
    owned_opts_free(&d->opts);
    free(d);
}

static void on_async_closed(uv_handle_t *h)
{
    struct dolt *d = h->data;
    void (*cb)(void *) = d->on_closed;
    void *arg = d->closed_arg;
    dolt_free(d);
    if (cb)
        cb(arg);
}

static void on_async(uv_async_t *h)
{
    struct dolt *d = h->data;
    pthread_mutex_lock(&d->lock);
    struct dolt_item *it = d->done_head;
    d->done_head = d->done_tail = NULL;
    int exited = d->exited;
    pthread_mutex_unlock(&d->lock);
    while (it) {
        struct dolt_item *next = it->next;
        d->pending--;
        it->done(it->rc, it->arg);
        free(it);
        it = next;
    }
    /* exited was read with the done list: every item is delivered now. */
    if (exited && !d->closing) {
        d->closing = 1;
        pthread_join(d->thread, NULL);
        uv_close((uv_handle_t *)&d->async, on_async_closed);
    }
}

static void on_async_closed_start_failed(uv_handle_t *h)
{
    dolt_free(h->data);
}

int dolt_start(struct dolt **out, uv_loop_t *loop, const struct dolt_options *opts)
{
    if (!out || !loop)
        return BS_EINVAL;
    *out = NULL;
    int rc = opts_validate(opts, NULL, 0);
    if (rc)
        return rc;
    if ((rc = library_ready()))
        return rc;
    struct dolt *d = calloc(1, sizeof *d);
    if (!d)
        return BS_ENOMEM;
    if (owned_opts_init(&d->opts, opts)) {
        free(d);
        return BS_ENOMEM;
    }
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->wake, NULL);
    int uerr = uv_async_init(loop, &d->async, on_async);
    if (uerr) {
        log_error("dolt worker: uv_async_init failed", "error", uv_strerror(uerr));
        dolt_free(d);
        return BS_ERR;
    }
    d->async.data = d;
    /* The worker takes no signals: they belong to the loop thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int perr = pthread_create(&d->thread, NULL, worker_main, d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (perr) {
        log_error("dolt worker: pthread_create failed", "error", strerror(perr));
        uv_close((uv_handle_t *)&d->async, on_async_closed_start_failed);
        return BS_ERR;
    }
    *out = d;
    return 0;
}

int dolt_submit(struct dolt *d, dolt_work_fn work, dolt_done_fn done, void *arg)
{
    if (!d || !work || !done || d->stop_requested)
        return BS_EINVAL;
    struct dolt_item *it = calloc(1, sizeof *it);
    if (!it)
        return BS_ENOMEM;
    it->work = work;
    it->done = done;
    it->arg = arg;
    pthread_mutex_lock(&d->lock);
    if (d->queue_tail)
        d->queue_tail->next = it;
    else
        d->queue_head = it;
    d->queue_tail = it;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
    d->pending++;
    return 0;
}

int dolt_pending(const struct dolt *d) { return d ? d->pending : 0; }

void dolt_stop(struct dolt *d, void (*on_closed)(void *arg), void *arg)
{
    if (!d)
        return;
    if (d->stop_requested) {
        log_warn("dolt_stop called twice; ignored");
        return;
    }
    d->stop_requested = 1;
    d->on_closed = on_closed;
    d->closed_arg = arg;
    pthread_mutex_lock(&d->lock);
    d->stopping = 1;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->lock);
}
