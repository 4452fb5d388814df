#include "beads.h"

#include "clock.h"
#include "crash.h"
#include "errors.h"
#include "log.h"
#include "strbuf.h"
#include "text.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>


void beads_datetime(int64_t ms, char *buf, size_t len)
{
    clock_utc(ms, CLOCK_UTC_SQL, buf, len);
}

int64_t beads_datetime_ms(const char *s)
{
    struct tm tm = {0};
    if (!s || sscanf(s, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec) != 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000;
}

static char *dup_val(const struct dolt_row *r, unsigned i)
{
    if (i >= r->ncols || !r->vals[i])
        return NULL;
    char *s = malloc(r->lens[i] + 1);
    if (s) {
        memcpy(s, r->vals[i], r->lens[i]);
        s[r->lens[i]] = '\0';
    }
    return s;
}

/* ---- schema detection ---- */

/* Columns the daemon reads or writes, per table. */
static const char *const issues_cols[] = {"id", "title", "description", "acceptance_criteria", "notes",
                                          "status", "priority", "issue_type", "assignee", "updated_at",
                                          "defer_until", "pinned", "ephemeral", NULL};
static const char *const deps_cols[] = {"issue_id", "depends_on_id", "type", "metadata", NULL};
static const char *const events_cols[] = {"id", "issue_id", "event_type", "actor", "old_value",
                                          "new_value", "comment", "created_at", NULL};

struct names {
    char **v;
    size_t n, cap;
};

static int name_row(const struct dolt_row *r, void *arg)
{
    struct names *x = arg;
    if (!r->vals[0])
        return 0;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 32;
        char **nv = realloc(x->v, cap * sizeof *nv);
        if (!nv)
            return BS_ENOMEM;
        x->v = nv;
        x->cap = cap;
    }
    if (!(x->v[x->n] = strdup(r->vals[0])))
        return BS_ENOMEM;
    x->n++;
    return 0;
}

static void names_free(struct names *x)
{
    for (size_t i = 0; i < x->n; i++)
        free(x->v[i]);
    free(x->v);
    memset(x, 0, sizeof *x);
}

static int has_name(const struct names *x, const char *name)
{
    for (size_t i = 0; i < x->n; i++) {
        if (strcasecmp(x->v[i], name) == 0)
            return 1;
    }
    return 0;
}

/* Checks that table has every column in want; sets n->error naming the
 * first one missing. Reads the columns into cols. */
static int check_columns(struct dolt_conn *c, const char *table, const char *const *want,
                         struct names *cols, struct beads_schema *n)
{
    char sql[64];
    snprintf(sql, sizeof sql, "SHOW COLUMNS FROM `%s`", table);
    int rc = dolt_query(c, sql, NULL, 0, name_row, cols, NULL);
    if (rc)
        return rc;
    for (size_t i = 0; want[i]; i++) {
        if (!has_name(cols, want[i])) {
            snprintf(n->error, sizeof n->error,
                     "column %s.%s is missing: not a bd 1.0.x beads schema (nor the one before its "
                     "migration 0027)", table, want[i]);
            return BS_EINVAL;
        }
    }
    return 0;
}

int beads_schema_detect(struct dolt_conn *c, struct beads_schema *s)
{
    int rc = dolt_conn_ensure(c);
    if (rc)
        return rc;
    uint64_t gen = dolt_conn_generation(c);
    if (s->generation == gen && !s->error[0])
        return 0; /* a broken schema is looked at again every time */
    struct beads_schema n = {0};
    struct names tables = {0}, cols = {0};
    rc = dolt_query(c, "SHOW TABLES", NULL, 0, name_row, &tables, NULL);
    static const char *const need[] = {"issues", "dependencies", "events"};
    for (size_t i = 0; rc == 0 && i < sizeof need / sizeof need[0]; i++) {
        if (!has_name(&tables, need[i])) {
            snprintf(n.error, sizeof n.error, "table %s is missing: not a beads database", need[i]);
            rc = BS_EINVAL;
        }
    }
    if (rc == 0 && (rc = check_columns(c, "issues", issues_cols, &cols, &n)) == 0) {
        n.has_started_at = has_name(&cols, "started_at");
        names_free(&cols);
        rc = check_columns(c, "dependencies", deps_cols, &cols, &n);
    }
    names_free(&cols);
    if (rc == 0)
        rc = check_columns(c, "events", events_cols, &cols, &n);
    names_free(&cols);
    n.has_wisp_dependencies = has_name(&tables, "wisp_dependencies");
    names_free(&tables);
    if (rc == BS_EINVAL) {
        if (strcmp(s->error, n.error) != 0)
            log_error("beads schema not supported", "error", n.error);
        n.generation = gen;
        *s = n;
        return BS_EINVAL;
    }
    if (rc)
        return rc;
    n.is_dolt = dolt_is_dolt(c) > 0;
    n.generation = gen;
    log_info("beads schema detected", "started_at", LOG_INT(n.has_started_at), "wisp_dependencies",
             LOG_INT(n.has_wisp_dependencies), "dolt", LOG_INT(n.is_dolt));
    *s = n;
    return 0;
}

/* Whether column i of r holds an id that cannot round-trip through a C
 * string (a NUL byte); logs it once per call site and row. */
static int bad_id(const struct dolt_row *r, unsigned i, const char *where)
{
    if (i >= r->ncols || !r->vals[i] || !memchr(r->vals[i], '\0', r->lens[i]))
        return 0;
    char *p = text_utf8_clean(r->vals[i], r->lens[i]);
    log_warn("bead skipped: its id holds a NUL byte and cannot be used safely", "bead", p ? p : "?",
             "where", where);
    free(p);
    return 1;
}

/* ---- reads ---- */

void bead_free(struct bead *b)
{
    free(b->id);
    free(b->title);
    free(b->description);
    free(b->acceptance);
    free(b->issue_type);
    free(b->status);
    free(b->assignee);
    free(b->updated_at);
    free(b->notes);
    memset(b, 0, sizeof *b);
}

static long long age_val(const struct dolt_row *r, unsigned i)
{
    return i < r->ncols && r->vals[i] ? strtoll(r->vals[i], NULL, 10) : -1;
}

/* Columns: id, title, description, acceptance, type, status, assignee,
 * updated_at, priority, age[, notes]. */
static int bead_row(const struct dolt_row *r, void *arg)
{
    struct bead *b = arg;
    if (bad_id(r, 0, "read"))
        return 0;
    b->id = dup_val(r, 0);
    b->title = dup_val(r, 1);
    b->description = dup_val(r, 2);
    b->acceptance = dup_val(r, 3);
    b->issue_type = dup_val(r, 4);
    b->status = dup_val(r, 5);
    b->assignee = dup_val(r, 6);
    b->updated_at = dup_val(r, 7);
    char *prio = dup_val(r, 8);
    b->priority = prio ? strtol(prio, NULL, 10) : 2;
    free(prio);
    b->age_s = age_val(r, 9);
    b->notes = dup_val(r, 10);
    if (!b->id || !b->status || !b->updated_at)
        return BS_ENOMEM;
    return 1; /* one row is all we want */
}

#define AGE_COLUMN "TIMESTAMPDIFF(SECOND, updated_at, UTC_TIMESTAMP())"

/* What bead_row reads (notes may follow). */
#define BEAD_COLUMNS \
    "id, title, description, acceptance_criteria, issue_type, status, assignee, " \
    "DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s'), priority, " AGE_COLUMN

int beads_read(struct dolt_conn *c, const char *id, int want_notes, struct bead *out)
{
    memset(out, 0, sizeof *out);
    const char *sql = want_notes ? "SELECT " BEAD_COLUMNS ", notes FROM issues WHERE id = ?"
                                 : "SELECT " BEAD_COLUMNS " FROM issues WHERE id = ?";
    int rc = dolt_query(c, sql, (struct dolt_value[]){DOLT_TEXT(id)}, 1, bead_row, out, NULL);
    if (rc == 1)
        return 0;
    bead_free(out);
    return rc ? rc : BS_ENOTFOUND;
}

struct many_acc {
    bead_cb cb;
    void *arg;
};

/* Columns: id, status, assignee, updated_at, priority, age[, notes]. */
static int state_row(const struct dolt_row *r, void *arg)
{
    struct many_acc *m = arg;
    if (bad_id(r, 0, "state"))
        return 0;
    struct bead b = {0};
    b.id = dup_val(r, 0);
    b.status = dup_val(r, 1);
    b.assignee = dup_val(r, 2);
    b.updated_at = dup_val(r, 3);
    b.priority = r->vals[4] ? strtol(r->vals[4], NULL, 10) : 2;
    b.age_s = age_val(r, 5);
    b.notes = r->ncols > 6 ? dup_val(r, 6) : NULL;
    int rc = (!b.id || !b.status || !b.updated_at) ? BS_ENOMEM : m->cb(&b, m->arg);
    bead_free(&b);
    return rc;
}

#define STATE_COLUMNS "id, status, assignee, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s'), priority, " AGE_COLUMN

/* Runs "SELECT <columns> FROM issues WHERE id IN (...)" over ids in chunks
 * of BEADS_READ_CHUNK, each row to on_row. One statement text for every
 * chunk keeps the prepared-statement cache small: every chunk has
 * BEADS_READ_CHUNK placeholders, the last one padded by repeating its final
 * id (IN ignores duplicates). on_row gets a struct chunk: arg and the
 * chunk's first index. Stops at the first non-zero answer of a chunk. */
struct chunk {
    void *arg;
    size_t off;
};

static int read_in_chunks(struct dolt_conn *c, const char *columns, const char *const *ids, size_t n,
                          dolt_row_cb on_row, void *arg)
{
    char sql[512 + BEADS_READ_CHUNK * 3];
    size_t k = (size_t)snprintf(sql, sizeof sql, "SELECT %s FROM issues WHERE id IN (", columns);
    for (size_t i = 0; i < BEADS_READ_CHUNK; i++)
        k += (size_t)snprintf(sql + k, sizeof sql - k, i ? ",?" : "?");
    snprintf(sql + k, sizeof sql - k, ")");
    struct dolt_value params[BEADS_READ_CHUNK];
    for (size_t off = 0; off < n; off += BEADS_READ_CHUNK) {
        size_t cnt = n - off < BEADS_READ_CHUNK ? n - off : BEADS_READ_CHUNK;
        for (size_t i = 0; i < BEADS_READ_CHUNK; i++)
            params[i] = DOLT_TEXT(ids[off + (i < cnt ? i : cnt - 1)]);
        struct chunk ch = {arg, off};
        int rc = dolt_query(c, sql, params, BEADS_READ_CHUNK, on_row, &ch, NULL);
        if (rc)
            return rc;
    }
    return 0;
}

static int state_chunk_row(const struct dolt_row *r, void *arg)
{
    return state_row(r, ((struct chunk *)arg)->arg);
}

int beads_read_many(struct dolt_conn *c, const char *const *ids, size_t n, int want_notes,
                    bead_cb cb, void *arg)
{
    struct many_acc m = {cb, arg};
    return read_in_chunks(c, want_notes ? STATE_COLUMNS ", notes" : STATE_COLUMNS, ids, n, state_chunk_row, &m);
}

struct each_acc {
    const char *const *ids;
    size_t n;
    struct bead *out;
};

/* A row of beads_read_each: into the out[] of its id (within its chunk). */
static int each_row(const struct dolt_row *r, void *arg)
{
    const struct chunk *ch = arg;
    const struct each_acc *a = ch->arg;
    size_t end = a->n - ch->off < BEADS_READ_CHUNK ? a->n : ch->off + BEADS_READ_CHUNK;
    for (size_t i = ch->off; r->vals[0] && i < end; i++) {
        if (a->out[i].id || strcmp(a->ids[i], r->vals[0]) != 0)
            continue;
        int rc = bead_row(r, &a->out[i]);
        return rc == 1 || rc == 0 ? 0 : rc;
    }
    return 0;
}

int beads_read_each(struct dolt_conn *c, const char *const *ids, size_t n, struct bead *out)
{
    memset(out, 0, n * sizeof *out);
    struct each_acc a = {ids, n, out};
    int rc = read_in_chunks(c, BEAD_COLUMNS, ids, n, each_row, &a);
    if (rc < 0)
        for (size_t i = 0; i < n; i++)
            bead_free(&out[i]);
    return rc < 0 ? rc : 0;
}

int beads_in_progress(struct dolt_conn *c, const char *assignee, bead_cb cb, void *arg)
{
    struct many_acc m = {cb, arg};
    return dolt_query(c, "SELECT " STATE_COLUMNS " FROM issues WHERE assignee = ? AND status = 'in_progress'",
                      (struct dolt_value[]){DOLT_TEXT(assignee)}, 1, state_row, &m, NULL);
}

/* ---- the readiness snapshot ---- */

/* Microseconds of a monotonic clock, for the debug log's timings. */
static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Ids per IN / NOT IN list, as bd uses (queryBatchSize). */
#define IN_BATCH 200
/* Past this many excluded ids, keep only those that could be candidates. */
#define EXCL_NARROW 1000
/* Past this many ids whose status is needed, read every active issue once
 * instead of IN lists (measured: tests/bench/bench_ready.sh). */
#define STATUS_SCAN_OVER (10 * IN_BATCH)
/* MariaDB and Dolt take at most 65,535 placeholders in one statement. */
#define EXCL_MAX 60000

/* Every row read, kept until the snapshot is computed: ids point into
 * malloc'd copies owned by the arena. */
struct arena {
    char **v;
    size_t n, cap;
};

static const char *arena_dup(struct arena *a, const char *p, size_t len)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        char **nv = realloc(a->v, cap * sizeof *nv);
        if (!nv)
            return NULL;
        a->v = nv;
        a->cap = cap;
    }
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    memcpy(s, p, len);
    s[len] = '\0';
    a->v[a->n++] = s;
    return s;
}

static void arena_free(struct arena *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
}

struct load {
    struct arena arena;
    struct ready_dep *deps;
    size_t ndeps, capdeps;
    struct ready_edge *edges;
    size_t nedges, capedges;
    struct ready_map *want_status;  /* ids whose status is needed */
    struct ready_map *deferred;     /* issues deferred into the future */
    struct ready_state *st;
    size_t statements;
};

static int id_of(struct load *l, const struct dolt_row *r, unsigned i, struct ready_id *out)
{
    if (i >= r->ncols || !r->vals[i])
        return 1; /* NULL: skip the row */
    const char *p = arena_dup(&l->arena, r->vals[i], r->lens[i]);
    if (!p)
        return BS_ENOMEM;
    *out = (struct ready_id){p, r->lens[i]};
    return 0;
}

static int want(struct load *l, struct ready_id id)
{
    return ready_map_put(l->want_status, id, NULL) ? 0 : BS_ENOMEM;
}

static int dep_row(const struct dolt_row *r, void *arg)
{
    struct load *l = arg;
    int type = r->vals[2] ? ready_dep_type(r->vals[2], r->lens[2]) : -1;
    if (type < 0)
        return 0;
    if (l->ndeps == l->capdeps) {
        size_t cap = l->capdeps ? l->capdeps * 2 : 256;
        struct ready_dep *nv = realloc(l->deps, cap * sizeof *nv);
        if (!nv)
            return BS_ENOMEM;
        l->deps = nv;
        l->capdeps = cap;
    }
    struct ready_dep *d = &l->deps[l->ndeps];
    int rc = id_of(l, r, 0, &d->issue);
    if (rc == 0)
        rc = id_of(l, r, 1, &d->target);
    if (rc)
        return rc < 0 ? rc : 0;
    d->type = (enum ready_dep_type)type;
    d->gate_any = type == RD_WAITS_FOR && ready_gate_any(r->vals[3], r->vals[3] ? r->lens[3] : 0);
    l->ndeps++;
    if ((rc = want(l, d->issue)))
        return rc;
    return type == RD_WAITS_FOR ? 0 : want(l, d->target);
}

static int edge_row(const struct dolt_row *r, void *arg)
{
    struct load *l = arg;
    if (l->nedges == l->capedges) {
        size_t cap = l->capedges ? l->capedges * 2 : 256;
        struct ready_edge *nv = realloc(l->edges, cap * sizeof *nv);
        if (!nv)
            return BS_ENOMEM;
        l->edges = nv;
        l->capedges = cap;
    }
    struct ready_edge *e = &l->edges[l->nedges];
    int rc = id_of(l, r, 0, &e->child);
    if (rc == 0)
        rc = id_of(l, r, 1, &e->parent);
    if (rc)
        return rc < 0 ? rc : 0;
    l->nedges++;
    return 0;
}

static int status_row(const struct dolt_row *r, void *arg)
{
    struct load *l = arg;
    if (!r->vals[0] || !r->vals[1])
        return 0;
    return ready_state_status(l->st, (struct ready_id){r->vals[0], r->lens[0]}, r->vals[1], r->lens[1]);
}

static int deferred_row(const struct dolt_row *r, void *arg)
{
    struct load *l = arg;
    if (!r->vals[0])
        return 0;
    return ready_map_put(l->deferred, (struct ready_id){r->vals[0], r->lens[0]}, NULL) ? 0 : BS_ENOMEM;
}

/* Builds "<head> IN (?,...)<tail>" with IN_BATCH placeholders. */
static void in_sql(char *buf, size_t len, const char *head, const char *tail)
{
    size_t k = (size_t)snprintf(buf, len, "%s IN (", head);
    for (size_t i = 0; i < IN_BATCH && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, i ? ",?" : "?");
    snprintf(buf + k, len - k, ")%s", tail);
}

struct batch {
    struct ready_id *v;
    size_t n, cap;
};

static int collect_key(struct ready_id id, void *value, void *arg)
{
    (void)value;
    struct batch *b = arg;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        struct ready_id *nv = realloc(b->v, cap * sizeof *nv);
        if (!nv)
            return BS_ENOMEM;
        b->v = nv;
        b->cap = cap;
    }
    b->v[b->n++] = id;
    return 0;
}

/* Runs sql (IN_BATCH placeholders) over ids in batches, the last padded by
 * repeating its final id. Ids travel with their exact length. */
static int run_batches(struct dolt_conn *c, struct load *l, const char *sql, const struct ready_id *ids,
                       size_t n, dolt_row_cb cb)
{
    struct dolt_value p[IN_BATCH];
    for (size_t off = 0; off < n; off += IN_BATCH) {
        size_t cnt = n - off < IN_BATCH ? n - off : IN_BATCH;
        for (size_t i = 0; i < IN_BATCH; i++) {
            const struct ready_id *id = &ids[off + (i < cnt ? i : cnt - 1)];
            p[i] = (struct dolt_value){.type = DT_TEXT, .text = id->p, .len = id->n};
        }
        l->statements++;
        int rc = dolt_query(c, sql, p, IN_BATCH, cb, l, NULL);
        if (rc)
            return rc;
    }
    return 0;
}

/* Parent-child rows whose parent is in parents, from dependencies and (if
 * it exists) wisp_dependencies, as bd reads them. */
static int children_of(struct dolt_conn *c, const struct beads_schema *s, struct load *l,
                       const struct ready_id *parents, size_t n, int with_wisps)
{
    if (n > STATUS_SCAN_OVER) {
        /* Many parents: every parent-child row once is cheaper than the
         * lists; ready_mark_children ignores the unrelated ones. */
        l->statements++;
        int rc = dolt_query(c, "SELECT issue_id, depends_on_id FROM dependencies WHERE type = 'parent-child'",
                            NULL, 0, edge_row, l, NULL);
        if (rc == 0 && with_wisps && s->has_wisp_dependencies) {
            l->statements++;
            rc = dolt_query(c, "SELECT issue_id, depends_on_id FROM wisp_dependencies WHERE type = 'parent-child'",
                            NULL, 0, edge_row, l, NULL);
        }
        return rc;
    }
    char sql[128 + IN_BATCH * 2];
    in_sql(sql, sizeof sql, "SELECT issue_id, depends_on_id FROM dependencies WHERE type = 'parent-child' "
                            "AND depends_on_id", "");
    int rc = run_batches(c, l, sql, parents, n, edge_row);
    if (rc == 0 && with_wisps && s->has_wisp_dependencies) {
        in_sql(sql, sizeof sql, "SELECT issue_id, depends_on_id FROM wisp_dependencies WHERE "
                                "type = 'parent-child' AND depends_on_id", "");
        rc = run_batches(c, l, sql, parents, n, edge_row);
    }
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct excl_acc {
    struct beads_ready *r;
    size_t cap;
    const struct ready_map *only;   /* keep only these (NULL: all) */
};

static int add_excl(struct ready_id id, void *value, void *arg)
{
    (void)value;
    struct excl_acc *x = arg;
    struct beads_ready *r = x->r;
    /* A NUL in the id: the row is skipped when read anyway, and a C string
     * would turn it into another bead's id. */
    if (memchr(id.p, '\0', id.n) || (x->only && !ready_map_get(x->only, id)))
        return 0;
    if (r->nexcl == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        char **nv = realloc(r->excl, cap * sizeof *nv);
        if (!nv)
            return BS_ENOMEM;
        r->excl = nv;
        x->cap = cap;
    }
    if (!(r->excl[r->nexcl] = strndup(id.p, id.n)))
        return BS_ENOMEM;
    r->nexcl++;
    return 0;
}

static int open_row(const struct dolt_row *r, void *arg)
{
    struct ready_map *m = arg;
    if (!r->vals[0])
        return 0;
    return ready_map_put(m, (struct ready_id){r->vals[0], r->lens[0]}, NULL) ? 0 : BS_ENOMEM;
}

/* Excluded ids: blocked, children of blocked, children of deferred
 * parents; narrowed to the assignee's open beads when there are many. */
static int build_exclusions(struct dolt_conn *c, struct beads_ready *r, const char *assignee)
{
    const struct ready_state *st = &r->st;
    size_t total = ready_map_count(st->blocked) + ready_map_count(st->parent_blocked) +
                   ready_map_count(st->parent_deferred);
    struct ready_map *only = NULL;
    int rc = 0;
    if (total > EXCL_NARROW && assignee) {
        if (!(only = ready_map_new()))
            return BS_ENOMEM;
        r->statements++;
        rc = dolt_query(c, "SELECT id FROM issues WHERE assignee = ? AND status = 'open'",
                        (struct dolt_value[]){DOLT_TEXT(assignee)}, 1, open_row, only, NULL);
    }
    struct excl_acc x = {r, 0, only};
    if (rc == 0)
        rc = ready_map_each(st->blocked, add_excl, &x);
    if (rc == 0)
        rc = ready_map_each(st->parent_blocked, add_excl, &x);
    if (rc == 0)
        rc = ready_map_each(st->parent_deferred, add_excl, &x);
    ready_map_free(only);
    if (rc)
        return rc;
    /* Duplicates (blocked and a child of a blocked parent) cost nothing in
     * NOT IN, but sorted lists make statements repeatable. */
    if (r->nexcl)
        qsort(r->excl, r->nexcl, sizeof *r->excl, cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < r->nexcl; i++) {
        if (k && strcmp(r->excl[k - 1], r->excl[i]) == 0)
            free(r->excl[i]);
        else
            r->excl[k++] = r->excl[i];
    }
    r->nexcl = k;
    if (r->nexcl > EXCL_MAX) {
        log_error("too many blocked beads to exclude in one query", "count", LOG_INT((long long)r->nexcl),
                  "max", LOG_INT(EXCL_MAX));
        return BS_EINVAL;
    }
    return 0;
}

void beads_ready_free(struct beads_ready *r)
{
    if (!r)
        return;
    ready_state_free(&r->st);
    for (size_t i = 0; i < r->nexcl; i++)
        free(r->excl[i]);
    free(r->excl);
    free(r);
}

/* Steps 1 and 2 of beads_ready_load: the blocking dependencies (one table,
 * as bd reads them), then the direct children of every waits-for spawner
 * (dependencies only: bd ready computes the blocked set without the wisp
 * tables). ids is scratch space. */
static int load_dependencies(struct dolt_conn *c, struct load *l, struct batch *ids)
{
    l->statements++;
    int rc = dolt_query(c, "SELECT issue_id, depends_on_id, type, metadata FROM dependencies "
                           "WHERE type IN ('blocks', 'conditional-blocks', 'waits-for')",
                        NULL, 0, dep_row, l, NULL);
    struct ready_map *spawners = rc == 0 ? ready_map_new() : NULL;
    if (rc == 0 && !spawners)
        rc = BS_ENOMEM;
    for (size_t i = 0; rc == 0 && i < l->ndeps; i++) {
        if (l->deps[i].type == RD_WAITS_FOR && !ready_map_put(spawners, l->deps[i].target, NULL))
            rc = BS_ENOMEM;
    }
    ids->n = 0;
    if (rc == 0)
        rc = ready_map_each(spawners, collect_key, ids);
    if (rc == 0 && ids->n) {
        char sql[128 + IN_BATCH * 2];
        in_sql(sql, sizeof sql, "SELECT issue_id, depends_on_id FROM dependencies WHERE type = 'parent-child' "
                                "AND depends_on_id", "");
        rc = run_batches(c, l, sql, ids->v, ids->n, edge_row);
    }
    ready_map_free(spawners); /* ids pointed into it */
    ids->n = 0;
    for (size_t i = 0; rc == 0 && i < l->nedges; i++)
        rc = want(l, l->edges[i].child);
    return rc;
}

/* Step 3: the status of every issue, blocker and child involved: in id
 * lists when they are few; when they are many, one read of every active
 * issue is cheaper (bd reads it that way), plus the real status of the
 * spawners' children (the any-children gate needs "closed"). */
static int load_statuses(struct dolt_conn *c, struct load *l, struct batch *ids)
{
    ids->n = 0;
    int rc = ready_map_each(l->want_status, collect_key, ids);
    if (rc == 0 && ids->n > STATUS_SCAN_OVER) {
        l->statements++;
        rc = dolt_query(c, "SELECT id, status FROM issues WHERE status NOT IN ('closed', 'pinned')", NULL, 0,
                        status_row, l, NULL);
        ids->n = 0;
        for (size_t i = 0; rc == 0 && i < l->nedges; i++)
            rc = collect_key(l->edges[i].child, NULL, ids);
    }
    if (rc == 0 && ids->n) {
        char sql[128 + IN_BATCH * 2];
        in_sql(sql, sizeof sql, "SELECT id, status FROM issues WHERE id", "");
        rc = run_batches(c, l, sql, ids->v, ids->n, status_row);
    }
    return rc;
}

/* Step 5: issues deferred into the future, then the children of those and
 * of the blocked ones, marked in r->st. */
static int load_deferred_children(struct dolt_conn *c, const struct beads_schema *s, struct load *l,
                                  struct beads_ready *r, struct batch *ids)
{
    l->statements++;
    int rc = dolt_query(c, "SELECT id FROM issues WHERE defer_until IS NOT NULL AND defer_until > UTC_TIMESTAMP()",
                        NULL, 0, deferred_row, l, NULL);
    l->nedges = 0;
    ids->n = 0;
    if (rc == 0)
        rc = ready_map_each(r->st.blocked, collect_key, ids);
    if (rc == 0)
        rc = ready_map_each(l->deferred, collect_key, ids);
    if (rc == 0 && ids->n)
        rc = children_of(c, s, l, ids->v, ids->n, 1);
    if (rc == 0)
        rc = ready_mark_children(&r->st, l->edges, l->nedges, l->deferred);
    return rc;
}

int beads_ready_load(struct dolt_conn *c, const struct beads_schema *s, const char *assignee,
                     struct beads_ready **out)
{
    *out = NULL;
    int64_t t0 = mono_us();
    struct beads_ready *r = calloc(1, sizeof *r);
    struct load l = {0};
    struct batch ids = {0};
    int rc = !r ? BS_ENOMEM : ready_state_init(&r->st);
    if (rc == 0 && (!(l.want_status = ready_map_new()) || !(l.deferred = ready_map_new())))
        rc = BS_ENOMEM;
    if (rc)
        goto out;
    l.st = &r->st;
    rc = load_dependencies(c, &l, &ids);
    if (rc == 0)
        rc = load_statuses(c, &l, &ids);
    /* 4. bd's blocked set. */
    if (rc == 0)
        rc = ready_compute_blocked(&r->st, l.deps, l.ndeps, l.edges, l.nedges);
    if (rc == 0)
        rc = load_deferred_children(c, s, &l, r, &ids);
    /* 6. What the candidate query leaves out. */
    r->statements = l.statements;
    if (rc == 0)
        rc = build_exclusions(c, r, assignee);
out:
    free(ids.v);
    free(l.deps);
    free(l.edges);
    ready_map_free(l.want_status);
    ready_map_free(l.deferred);
    arena_free(&l.arena);
    if (rc) {
        beads_ready_free(r);
        return rc;
    }
    log_debug("readiness snapshot", "statements", LOG_INT((long long)r->statements), "deps",
              LOG_INT((long long)l.ndeps), "blocked", LOG_INT((long long)ready_map_count(r->st.blocked)),
              "excluded", LOG_INT((long long)r->nexcl), "us", LOG_INT((long long)(mono_us() - t0)));
    *out = r;
    return 0;
}

/* ---- candidates ---- */

struct cand_acc {
    struct candidate *v;
    size_t n, cap;
    const struct beads_ready *r;
    const char *assignee;
};

/* The row facts columns, shared by the candidate query and explain. */
#define FACT_COLUMNS                                                                              \
    "id, status, assignee, issue_type, pinned, ephemeral, "                                       \
    "(defer_until IS NOT NULL AND defer_until > UTC_TIMESTAMP()), "                               \
    "(acceptance_criteria IS NOT NULL AND acceptance_criteria REGEXP '[^[:space:]]'), "           \
    "DATE_FORMAT(defer_until, '%Y-%m-%d %H:%i:%s'), OCTET_LENGTH(notes)"

static int flag_col(const struct dolt_row *r, unsigned i)
{
    if (i >= r->ncols || !r->vals[i])
        return -1;
    return (int)strtol(r->vals[i], NULL, 10);
}

static void facts_of(const struct dolt_row *r, unsigned base, struct ready_row *row)
{
    row->id = (struct ready_id){r->vals[base] ? r->vals[base] : "", r->vals[base] ? r->lens[base] : 0};
    row->status = r->vals[base + 1];
    row->assignee = r->vals[base + 2];
    row->issue_type = r->vals[base + 3];
    row->pinned = flag_col(r, base + 4);
    row->ephemeral = flag_col(r, base + 5);
    row->deferred = flag_col(r, base + 6) == 1;
    row->has_acceptance = flag_col(r, base + 7) == 1;
}

/* Columns: updated_at, priority, then FACT_COLUMNS. */
static int cand_row(const struct dolt_row *r, void *arg)
{
    struct cand_acc *a = arg;
    if (bad_id(r, 2, "candidates"))
        return 0;
    struct ready_row row;
    facts_of(r, 2, &row);
    /* The SQL applied the same rules; ready_rules has the last word, so the
     * dispatcher and explain cannot disagree. The acceptance rule is the
     * caller's choice of list, not a filter here. */
    struct ready_result res[RR_COUNT];
    ready_rules(&row, a->assignee, a->r ? &a->r->st : NULL, res);
    for (int i = 0; i < RR_COUNT; i++) {
        if (!res[i].ok && i != RR_ACCEPTANCE) {
            log_warn("candidate failed a readiness rule the query let through; skipped", "bead",
                     r->vals[2], "rule", ready_rule_name[i]);
            return 0;
        }
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        struct candidate *nv = realloc(a->v, cap * sizeof *nv);
        if (!nv)
            return BS_ENOMEM;
        a->v = nv;
        a->cap = cap;
    }
    struct candidate *cd = &a->v[a->n];
    cd->id = dup_val(r, 2);
    cd->updated_at = dup_val(r, 0);
    cd->priority = r->vals[1] ? strtol(r->vals[1], NULL, 10) : 2;
    if (!cd->id || !cd->updated_at) {
        free(cd->id);
        free(cd->updated_at);
        return BS_ENOMEM;
    }
    a->n++;
    return 0;
}

void candidates_free(struct candidate *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].id);
        free(v[i].updated_at);
    }
    free(v);
}

int beads_candidates(struct dolt_conn *c, const struct beads_schema *s, const struct beads_ready *r,
                     const char *assignee, int with_acceptance, size_t offset, size_t limit,
                     struct candidate **out, size_t *n)
{
    (void)s;
    /* NOT IN lists of IN_BATCH ids each; their number is rounded up to a
     * power of two (the last list padded with a repeated id) so that few
     * statement texts exist and the prepared-statement cache holds them. */
    size_t nexcl = r ? r->nexcl : 0;
    size_t lists = 0;
    if (nexcl) {
        lists = 1;
        while (lists * IN_BATCH < nexcl)
            lists *= 2;
    }
    size_t cap = 1024 + lists * (IN_BATCH * 2 + 32);
    char *sql = malloc(cap);
    struct dolt_value *p = malloc((lists * IN_BATCH + 3) * sizeof *p);
    if (!sql || !p) {
        free(sql);
        free(p);
        return BS_ENOMEM;
    }
    /* Acceptance criteria "non-empty after trimming" means any non-space
     * character, newlines and tabs included. */
    size_t k = (size_t)snprintf(sql, cap,
             "SELECT DATE_FORMAT(updated_at, '%%Y-%%m-%%d %%H:%%i:%%s'), priority, %s"
             " FROM issues WHERE assignee = ? AND status = 'open' "
             "AND %s(acceptance_criteria IS NOT NULL AND acceptance_criteria REGEXP '[^[:space:]]') "
             "AND (pinned = 0 OR pinned IS NULL) AND (ephemeral = 0 OR ephemeral IS NULL) "
             "AND issue_type NOT IN (" READY_EXCLUDED_TYPES_SQL ") "
             "AND (defer_until IS NULL OR defer_until <= UTC_TIMESTAMP())",
             FACT_COLUMNS, with_acceptance ? "" : "NOT ");
    size_t np = 0;
    p[np++] = DOLT_TEXT(assignee);
    for (size_t li = 0; li < lists; li++) {
        k += (size_t)snprintf(sql + k, cap - k, " AND id NOT IN (");
        for (size_t i = 0; i < IN_BATCH; i++) {
            size_t at = li * IN_BATCH + i;
            p[np++] = DOLT_TEXT(r->excl[at < nexcl ? at : nexcl - 1]);
            k += (size_t)snprintf(sql + k, cap - k, i ? ",?" : "?");
        }
        k += (size_t)snprintf(sql + k, cap - k, ")");
    }
    snprintf(sql + k, cap - k, " ORDER BY priority ASC, updated_at ASC, id ASC LIMIT ? OFFSET ?");
    p[np++] = DOLT_INT(limit);
    p[np++] = DOLT_INT(offset);
    struct cand_acc a = {.r = r, .assignee = assignee};
    int64_t t0 = mono_us();
    int rc = dolt_query(c, sql, p, np, cand_row, &a, NULL);
    log_debug("candidate page", "rows", LOG_INT((long long)a.n), "not_in_lists", LOG_INT((long long)lists),
              "offset", LOG_INT((long long)offset), "us", LOG_INT((long long)(mono_us() - t0)));
    free(sql);
    free(p);
    if (rc) {
        candidates_free(a.v, a.n);
        return rc;
    }
    *out = a.v;
    *n = a.n;
    return 0;
}

struct probe_acc {
    char *buf;
    size_t len;
};

static int probe_row(const struct dolt_row *r, void *arg)
{
    struct probe_acc *p = arg;
    snprintf(p->buf, p->len, "%s|%s", r->vals[0] ? r->vals[0] : "", r->ncols > 1 && r->vals[1] ? r->vals[1] : "");
    return 0;
}

int beads_probe(struct dolt_conn *c, const struct beads_schema *s, const char *assignee,
                char *buf, size_t len)
{
    struct probe_acc p = {buf, len};
    buf[0] = '\0';
    if (s->is_dolt)
        return dolt_query(c, "SELECT dolt_hashof_db()", NULL, 0, probe_row, &p, NULL);
    return dolt_query(c, "SELECT COUNT(*), MAX(updated_at) FROM issues WHERE assignee = ?",
                      (struct dolt_value[]){DOLT_TEXT(assignee)}, 1, probe_row, &p, NULL);
}

/* ---- guarded writes ---- */

/* A note longer than this is cut before anything else (bead text is
 * untrusted and one note should not fill a bead). */
#define NOTE_MAX 16384
/* A note is shortened only when at least this much of it fits. */
#define NOTE_MIN_PART 40

struct pre {
    long long notes_len;
    char updated_at[32];
    char now[32];
    int found;
};

static int pre_row(const struct dolt_row *r, void *arg)
{
    struct pre *p = arg;
    p->found = 1;
    p->notes_len = r->vals[0] ? strtoll(r->vals[0], NULL, 10) : 0;
    snprintf(p->updated_at, sizeof p->updated_at, "%s", r->vals[1] ? r->vals[1] : "");
    snprintf(p->now, sizeof p->now, "%s", r->vals[2] ? r->vals[2] : "");
    return 1;
}

/* What of note goes into notes that are notes_len bytes long: the whole
 * note, a shortened copy, or nothing. Returns a malloc'd string or NULL
 * (left out; *fit -1); *fit 1 whole, 0 shortened. */
static char *fit_note(const char *note, long long notes_len, int *fit)
{
    size_t len = strlen(note);
    long long room = BEADS_TEXT_MAX - notes_len - (notes_len > 0 ? 1 : 0);
    if ((long long)len <= room) {
        *fit = 1;
        return strdup(note);
    }
    static const char marker[] = " [cut; whole note in events]";
    if (room < (long long)(NOTE_MIN_PART + sizeof marker)) {
        *fit = -1;
        return NULL;
    }
    size_t keep = text_utf8_prefix(note, len, (size_t)room - sizeof marker);
    char *s = malloc(keep + sizeof marker);
    if (s) {
        memcpy(s, note, keep);
        memcpy(s + keep, marker, sizeof marker);
    }
    *fit = 0;
    return s;
}

/* {"k1": v1, ...} from pairs of strings (a NULL value is JSON null). */
static char *json_pairs(const char *const *kv, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i + 1 < n; i += 2)
        json_object_set_new(o, kv[i], kv[i + 1] ? json_string(kv[i + 1]) : json_null());
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(o);
    return s;
}

/* beads' own append rule for a note (three parameters: the note, its
 * length, the note again; format argument BEADS_TEXT_MAX): old + "\n" +
 * new, no newline when empty; in the UPDATE itself, so it is atomic
 * against concurrent notes, and the CASE keeps the column within its size
 * even if notes grew since the pre-read (then the note is left out). */
#define NOTE_APPEND_SQL \
    "CASE WHEN notes IS NULL OR notes = '' THEN ? " \
    "WHEN OCTET_LENGTH(notes) + 1 + ? <= %d THEN CONCAT(notes, '\\n', ?) ELSE notes END"

/* The guarded UPDATE of move m: status and updated_at (written), started_at
 * from now where asked, note appended when it fits (NULL: left out).
 * BS_ESTATE when no row matched what the move expects. */
static int move_update(struct dolt_conn *c, const struct beads_schema *s, const struct bead_move *m,
                       const char *written, const char *now, const char *note)
{
    char sql[1024];
    struct dolt_value p[16];
    size_t np = 0;
    uint64_t affected = 0;
    size_t k = (size_t)snprintf(sql, sizeof sql, "UPDATE issues SET status = ?, updated_at = ?");
    p[np++] = DOLT_TEXT(m->to);
    p[np++] = DOLT_TEXT(written);
    if (m->set_started && s->has_started_at) {
        k += (size_t)snprintf(sql + k, sizeof sql - k, ", started_at = COALESCE(started_at, ?)");
        p[np++] = DOLT_TEXT(now);
    }
    if (note) {
        k += (size_t)snprintf(sql + k, sizeof sql - k, ", notes = " NOTE_APPEND_SQL, BEADS_TEXT_MAX);
        p[np++] = DOLT_TEXT(note);
        p[np++] = DOLT_INT(strlen(note));
        p[np++] = DOLT_TEXT(note);
    }
    k += (size_t)snprintf(sql + k, sizeof sql - k, " WHERE id = ? AND status = ? AND assignee = ?");
    p[np++] = DOLT_TEXT(m->id);
    p[np++] = DOLT_TEXT(m->from);
    p[np++] = DOLT_TEXT(m->assignee);
    if (m->expect_updated_at) {
        snprintf(sql + k, sizeof sql - k, " AND updated_at = ?");
        p[np++] = DOLT_TEXT(m->expect_updated_at);
    }
    int rc = dolt_query(c, sql, p, np, NULL, NULL, &affected);
    return rc ? rc : affected == 0 ? BS_ESTATE : 0;
}

static void log_fit(const struct bead_move *m, int fit, long long notes_len)
{
    if (fit != 1)
        log_warn(fit == 0 ? "bead notes nearly full: note shortened, whole note in events"
                          : "bead notes full: note left out, recorded in events",
                 "bead", m->id, "notes_bytes", LOG_INT(notes_len));
}

/* Bead text is untrusted and a note may be long: what is appended is capped. */
static int cap_note(const struct bead_move *m, char **capped)
{
    *capped = NULL;
    if (m->note && !(*capped = text_cap(m->note, strlen(m->note), NOTE_MAX, NULL)))
        return BS_ENOMEM;
    return 0;
}

/* "beads-sched: <verb> <id> <id> ...", cut (at an id) to fit, with how many
 * more were in the commit. */
static void batch_message(const char *verb, const struct bead_move *m, const int *rcs, size_t n,
                          char *msg, size_t len)
{
    size_t k = (size_t)snprintf(msg, len, "beads-sched: %s", verb), shown = 0, moved = 0;
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] != 0)
            continue;
        moved++;
        size_t idl = strlen(m[i].id);
        if (k + 1 + idl + 16 < len && shown == moved - 1) {
            k += (size_t)snprintf(msg + k, len - k, " %s", m[i].id);
            shown++;
        }
    }
    if (shown < moved)
        snprintf(msg + k, len - k, " (+%zu more)", moved - shown);
}

/* One bead of a batch as the batch's pre-read found it. */
struct pre_one {
    struct pre pre;
    char *old_json;              /* the events row's old_value, as bd writes it */
};

struct pre_many {
    const struct bead_move *m;
    size_t n;
    struct pre_one *v;
};

static int pre_many_row(const struct dolt_row *r, void *arg)
{
    struct pre_many *a = arg;
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i].pre.found || !r->vals[0] || strcmp(r->vals[0], a->m[i].id) != 0)
            continue;
        struct pre_one *o = &a->v[i];
        struct dolt_row rest = {r->ncols - 1, r->vals + 1, r->lens + 1, r->names + 1};
        pre_row(&rest, &o->pre);
        o->old_json = r->vals[4] ? strdup(r->vals[4]) : NULL;
        return o->old_json || !r->vals[4] ? 0 : BS_ENOMEM;
    }
    return 0;
}

/* The batch's pre-read, one statement: each bead's notes size, the
 * updated_at compared with, the server's clock and the old_value of its
 * events row (the state before the move). */
static int pre_read_many(struct dolt_conn *c, const struct bead_move *m, size_t n, struct pre_one *v)
{
    struct dolt_value p[BEADS_BATCH_MAX];
    char sql[600 + 2 * BEADS_BATCH_MAX];
    size_t k = (size_t)snprintf(sql, sizeof sql,
                                "SELECT id, OCTET_LENGTH(notes), DATE_FORMAT(updated_at, '%%Y-%%m-%%d %%H:%%i:%%s'), "
                                "DATE_FORMAT(UTC_TIMESTAMP(), '%%Y-%%m-%%d %%H:%%i:%%s'), "
                                "JSON_OBJECT('id', id, 'title', title, 'status', status, 'priority', priority, "
                                "'issue_type', issue_type, 'assignee', assignee, "
                                "'updated_at', DATE_FORMAT(updated_at, '%%Y-%%m-%%dT%%H:%%i:%%sZ')) "
                                "FROM issues WHERE id IN (");
    for (size_t i = 0; i < n; i++) {
        p[i] = DOLT_TEXT(m[i].id);
        k += (size_t)snprintf(sql + k, sizeof sql - k, i ? ",?" : "?");
    }
    snprintf(sql + k, sizeof sql - k, ")");
    struct pre_many a = {m, n, v};
    int rc = dolt_query(c, sql, p, n, pre_many_row, &a, NULL);
    return rc < 0 ? rc : 0;
}

/* The events rows of the moves made, one statement. */
static int events_many(struct dolt_conn *c, const struct beads_writer *w, const struct bead_move *m,
                       const int *rcs, char *const *capped, const struct pre_one *v, size_t n)
{
    struct dolt_value *p = calloc(6 * n, sizeof *p);
    char **newv = calloc(n, sizeof *newv);
    char *sql = malloc(200 + 20 * n);
    int rc = p && newv && sql ? 0 : BS_ENOMEM;
    size_t np = 0, k = 0;
    if (rc == 0)
        k = (size_t)sprintf(sql, "INSERT INTO events (issue_id, event_type, actor, old_value, new_value, comment) VALUES ");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (rcs[i] != 0)
            continue;
        int status_change = strcmp(m[i].from, m[i].to) != 0, claim = strcmp(m[i].event_type, "claimed") == 0;
        const char *kv[] = {"status", m[i].to, "assignee", m[i].assignee};
        if ((status_change || claim) && !(newv[i] = json_pairs(kv, claim ? 4 : 2))) {
            rc = BS_ENOMEM;
            break;
        }
        p[np++] = DOLT_TEXT(m[i].id);
        p[np++] = DOLT_TEXT(m[i].event_type);
        p[np++] = DOLT_TEXT(w->actor);
        p[np++] = v[i].old_json ? DOLT_TEXT(v[i].old_json) : DOLT_NULL;
        p[np++] = newv[i] ? DOLT_TEXT(newv[i]) : DOLT_NULL;
        p[np++] = capped[i] ? DOLT_TEXT(capped[i]) : DOLT_NULL;
        k += (size_t)sprintf(sql + k, "%s(?, ?, ?, ?, ?, ?)", np > 6 ? ", " : "");
    }
    if (rc == 0 && np)
        rc = dolt_query(c, sql, p, np, NULL, NULL, NULL);
    for (size_t i = 0; newv && i < n; i++)
        free(newv[i]);
    free(newv);
    free(p);
    free(sql);
    return rc;
}

/* The batch's UPDATE, padded to one of a few sizes (the last move
 * repeated: an id matched twice is one row) so that few statement texts
 * reach the server's prepared-statement cache. */
static size_t padded_size(size_t n)
{
    return n <= 8 ? 8 : n <= 32 ? 32 : BEADS_BATCH_MAX;
}

/* The text of the batch's UPDATE for n moves. uniform: every move writes
 * the same status, updated_at and started_at rule (a cycle's claims, a
 * batch of notes), set once; else each of them is a CASE on the id. The
 * notes are a CASE on the id whatever: CONCAT(IF(keep, notes, ''), suffix),
 * the row's note decided from the pre-read (appended after a newline,
 * alone when the notes are empty, cut to fit, or nothing), so the server
 * only concatenates. A bead whose notes changed since the pre-read changed
 * its updated_at too and fails the guard (a note that no longer fits fails
 * the statement): either way the batch is made again one UPDATE each, with
 * the server-side rule (NOTE_APPEND_SQL). The compare-and-swap of every
 * move is one IN list of keys, each the row's id, status, assignee and
 * updated_at as the move expects them, length-prefixed so that no two rows
 * share one (a list of OR'ed clauses or of row constructors costs the
 * optimizer far more). */
static char *many_update_sql(const struct beads_schema *s, size_t n, int uniform)
{
    struct strbuf b;
    strbuf_init(&b, 0);
    if (uniform) {
        strbuf_puts(&b, "UPDATE issues SET status = ?, updated_at = ?");
        if (s->has_started_at)
            strbuf_puts(&b, ", started_at = IF(?, COALESCE(started_at, ?), started_at)");
    } else {
        strbuf_puts(&b, "UPDATE issues SET status = CASE id");
        for (size_t i = 0; i < n; i++)
            strbuf_puts(&b, " WHEN ? THEN ?");
        strbuf_puts(&b, " ELSE status END, updated_at = CASE id");
        for (size_t i = 0; i < n; i++)
            strbuf_puts(&b, " WHEN ? THEN ?");
        strbuf_puts(&b, " ELSE updated_at END");
        if (s->has_started_at) {
            strbuf_puts(&b, ", started_at = CASE id");
            for (size_t i = 0; i < n; i++)
                strbuf_puts(&b, " WHEN ? THEN IF(?, COALESCE(started_at, ?), started_at)");
            strbuf_puts(&b, " ELSE started_at END");
        }
    }
    strbuf_puts(&b, ", notes = CASE id");
    for (size_t i = 0; i < n; i++)
        strbuf_puts(&b, " WHEN ? THEN CONCAT(IF(?, notes, ''), ?)");
    strbuf_puts(&b, " ELSE notes END WHERE id IN (");
    for (size_t i = 0; i < n; i++)
        strbuf_puts(&b, i ? ",?" : "?");
    strbuf_puts(&b, ") AND CONCAT(OCTET_LENGTH(id), ':', id, OCTET_LENGTH(status), ':', status, "
                    "OCTET_LENGTH(assignee), ':', assignee, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s')) IN (");
    for (size_t i = 0; i < n; i++)
        strbuf_puts(&b, i ? ",?" : "?");
    strbuf_puts(&b, ")");
    return strbuf_take(&b);
}

/* One move's share of the batch's UPDATE. */
struct many_row {
    const struct bead_move *m;
    const char *written, *now;
    const char *expect;          /* the updated_at the move expects, or the pre-read's */
    const char *note;            /* NULL: no note (none, or it does not fit) */
    long long notes_len;         /* the notes' length as pre-read (NULL: 0) */
};

/* The key many_update_sql compares each row with. */
static char *guard_key(const struct many_row *x)
{
    const struct bead_move *m = x->m;
    struct strbuf b;
    strbuf_init(&b, 0);
    strbuf_printf(&b, "%zu:%s%zu:%s%zu:%s%s", strlen(m->id), m->id, strlen(m->from), m->from,
                  strlen(m->assignee), m->assignee, x->expect);
    return strbuf_take(&b);
}

/* Whether the k rows write the same status, updated_at and started_at. */
static int many_uniform(const struct many_row *r, size_t k)
{
    for (size_t j = 1; j < k; j++)
        if (strcmp(r[j].m->to, r[0].m->to) != 0 || strcmp(r[j].written, r[0].written) != 0 ||
            (r[j].m->set_started != 0) != (r[0].m->set_started != 0) || strcmp(r[j].now, r[0].now) != 0)
            return 0;
    return 1;
}

/* What CONCAT(IF(keep, notes, ''), suffix) appends for row x: its note
 * after a newline, or alone when the notes are empty; "" for none. */
static char *note_suffix(const struct many_row *x, int *keep)
{
    *keep = !x->note || x->notes_len > 0;
    if (!x->note)
        return strdup("");
    struct strbuf b;
    strbuf_init(&b, 0);
    strbuf_printf(&b, "%s%s", *keep ? "\n" : "", x->note);
    return strbuf_take(&b);
}

/* The parameters of many_update_sql, in its order, for the k rows padded
 * to n (the last row repeated); keys[] holds what guard_key made and sfx[]
 * what note_suffix made, keep[] its flags (all filled by the caller). */
static size_t many_update_params(const struct beads_schema *s, const struct many_row *r, size_t k, size_t n,
                                 int uniform, struct dolt_value *p, char **keys, char **sfx, const int *keep)
{
#define ROW(j) (&r[(j) < k ? (j) : k - 1])
#define AT(a, j) (a[(j) < k ? (j) : k - 1])
    size_t np = 0;
    if (uniform) {
        p[np++] = DOLT_TEXT(r[0].m->to);
        p[np++] = DOLT_TEXT(r[0].written);
        if (s->has_started_at) {
            p[np++] = DOLT_INT(r[0].m->set_started != 0);
            p[np++] = DOLT_TEXT(r[0].now);
        }
    }
    for (size_t j = 0; !uniform && j < n; j++) { /* status */
        p[np++] = DOLT_TEXT(ROW(j)->m->id);
        p[np++] = DOLT_TEXT(ROW(j)->m->to);
    }
    for (size_t j = 0; !uniform && j < n; j++) { /* updated_at */
        p[np++] = DOLT_TEXT(ROW(j)->m->id);
        p[np++] = DOLT_TEXT(ROW(j)->written);
    }
    for (size_t j = 0; !uniform && s->has_started_at && j < n; j++) { /* started_at */
        p[np++] = DOLT_TEXT(ROW(j)->m->id);
        p[np++] = DOLT_INT(ROW(j)->m->set_started != 0);
        p[np++] = DOLT_TEXT(ROW(j)->now);
    }
    for (size_t j = 0; j < n; j++) { /* notes */
        p[np++] = DOLT_TEXT(ROW(j)->m->id);
        p[np++] = DOLT_INT(AT(keep, j));
        p[np++] = DOLT_TEXT(AT(sfx, j));
    }
    for (size_t j = 0; j < n; j++) /* id IN */
        p[np++] = DOLT_TEXT(ROW(j)->m->id);
    for (size_t j = 0; j < n; j++) /* key IN */
        p[np++] = DOLT_TEXT(AT(keys, j));
#undef AT
#undef ROW
    return np;
}

/* The batch's moves as one UPDATE. 0 when every one of the k rows moved;
 * BS_ESTATE when fewer did (which ones it does not say: the caller makes
 * them one UPDATE each); or the statement's error. */
static int move_update_many(struct dolt_conn *c, const struct beads_schema *s, const struct many_row *r,
                            size_t k)
{
    size_t n = padded_size(k);
    int uniform = many_uniform(r, k);
    char *sql = many_update_sql(s, n, uniform);
    struct dolt_value *p = calloc(12 * n + 4, sizeof *p);
    char **keys = calloc(k, sizeof *keys), **sfx = calloc(k, sizeof *sfx);
    int *keep = calloc(k, sizeof *keep);
    int rc = sql && p && keys && sfx && keep ? 0 : BS_ENOMEM;
    for (size_t i = 0; rc == 0 && i < k; i++)
        if (!(keys[i] = guard_key(&r[i])) || !(sfx[i] = note_suffix(&r[i], &keep[i])))
            rc = BS_ENOMEM;
    uint64_t affected = 0;
    if (rc == 0)
        rc = dolt_query(c, sql, p, many_update_params(s, r, k, n, uniform, p, keys, sfx, keep), NULL, NULL,
                        &affected);
    for (size_t i = 0; i < k; i++) {
        free(keys ? keys[i] : NULL);
        free(sfx ? sfx[i] : NULL);
    }
    free(keys);
    free(sfx);
    free(keep);
    free(sql);
    free(p);
    return rc ? rc : affected == k ? 0 : BS_ESTATE;
}

/* moves_in_tx's answer when the batch's one UPDATE did not move every
 * bead: the transaction is rolled back and made again, one UPDATE each. */
#define MOVES_REDO (-1000)

/* Each move's UPDATE on its own (a bead not as expected matches no row and
 * writes nothing; a row the server refuses fails its own statement only).
 * Returns how many moved, or a batch error (BS_ECONFLICT, BS_ECONN). */
static long moves_each(struct dolt_conn *c, const struct beads_schema *s, const struct bead_move *m, size_t n,
                       const struct many_row *r, int *rcs)
{
    long moved = 0;
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] == BS_ESTATE)
            continue; /* not found by the pre-read */
        int mrc = move_update(c, s, &m[i], r[i].written, r[i].now, r[i].note);
        if (mrc == BS_ECONFLICT || mrc == BS_ECONN)
            return mrc;
        rcs[i] = mrc;
        moved += mrc == 0;
    }
    return moved;
}

/* Every move of the batch in one UPDATE (move_update_many). Returns how
 * many moved, a batch error, or MOVES_REDO. */
static long moves_together(struct dolt_conn *c, const struct beads_schema *s, size_t n,
                           const struct many_row *r, int *rcs)
{
    struct many_row k[BEADS_BATCH_MAX];
    size_t nk = 0;
    for (size_t i = 0; i < n; i++)
        if (rcs[i] != BS_ESTATE)
            k[nk++] = r[i];
    if (nk == 0)
        return 0;
    int rc = move_update_many(c, s, k, nk);
    if (rc == BS_ECONFLICT || rc == BS_ECONN || rc == BS_ENOMEM)
        return rc;
    if (rc)
        return MOVES_REDO; /* a bead not as expected, or a row the server refused */
    for (size_t i = 0; i < n; i++)
        if (rcs[i] != BS_ESTATE)
            rcs[i] = 0;
    return (long)nk;
}

/* The moves of a batch in the open transaction: one pre-read for all, the
 * UPDATEs (all in one, or one each when each is set), one INSERT for the
 * events rows of those that moved. Returns how many moved, a batch error
 * (BS_ECONFLICT, BS_ECONN, ...), or MOVES_REDO. */
static long moves_in_tx(struct dolt_conn *c, const struct beads_schema *s, const struct beads_writer *w,
                        const struct bead_move *m, size_t n, int each, int *rcs, int *fits, long long *lens)
{
    struct pre_one v[BEADS_BATCH_MAX];
    struct many_row r[BEADS_BATCH_MAX];
    char *capped[BEADS_BATCH_MAX] = {0}, *note[BEADS_BATCH_MAX] = {0};
    long moved = 0;
    memset(v, 0, sizeof v);
    int rc = pre_read_many(c, m, n, v);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        fits[i] = 1;
        lens[i] = v[i].pre.notes_len;
        rcs[i] = v[i].pre.found ? 0 : BS_ESTATE;
        if ((rc = cap_note(&m[i], &capped[i])))
            break;
        r[i] = (struct many_row){
            .m = &m[i], .now = v[i].pre.now,
            .expect = m[i].expect_updated_at ? m[i].expect_updated_at : v[i].pre.updated_at,
        };
        r[i].written = strcmp(v[i].pre.updated_at, v[i].pre.now) > 0 ? v[i].pre.updated_at : v[i].pre.now;
        if (capped[i] && !(note[i] = fit_note(capped[i], v[i].pre.notes_len, &fits[i])) && fits[i] != -1)
            rc = BS_ENOMEM;
        r[i].note = note[i];
        r[i].notes_len = v[i].pre.notes_len;
    }
    if (rc == 0)
        moved = each ? moves_each(c, s, m, n, r, rcs) : moves_together(c, s, n, r, rcs);
    for (size_t i = 0; rc == 0 && moved > 0 && i < n; i++)
        if (rcs[i] == 0 && m[i].wrote_updated_at)
            snprintf(m[i].wrote_updated_at, 32, "%s", r[i].written);
    if (rc == 0 && moved > 0)
        rc = events_many(c, w, m, rcs, capped, v, n);
    for (size_t i = 0; i < n; i++) {
        free(capped[i]);
        free(note[i]);
        free(v[i].old_json);
    }
    return rc ? rc : moved;
}

/* The moves as one transaction: they are made (moves_in_tx: one UPDATE for
 * all, and when not all moved the transaction again with one each), then
 * the transaction is committed, with a Dolt commit when w asks for one. 0
 * when it ran (rcs says what became of each move; nothing applied: nothing
 * committed), or the error that undid it (rolled back, rcs unset). */
static int move_tx(struct dolt_conn *c, const struct beads_schema *s, const struct beads_writer *w,
                   const struct bead_move *m, size_t n, const char *verb, int *rcs)
{
    int fits[BEADS_BATCH_MAX];
    long long lens[BEADS_BATCH_MAX];
    int rc = dolt_begin(c);
    long moved = rc ? rc : moves_in_tx(c, s, w, m, n, n == 1, rcs, fits, lens);
    if (moved == MOVES_REDO) {
        log_debug("batch update did not move every bead; one update per bead", "beads", LOG_INT(n), "verb", verb);
        dolt_rollback(c);
        rc = dolt_begin(c);
        moved = rc ? rc : moves_in_tx(c, s, w, m, n, 1, rcs, fits, lens);
    }
    if (moved > 0 && n > 1 && strcmp(verb, "claim") == 0)
        CRASH_POINT("inside_claim_batch");
    if (moved == 0) {
        dolt_rollback(c); /* nothing applied: nothing to commit */
        return 0;
    }
    if (moved > 0) {
        char msg[512];
        batch_message(verb, m, rcs, n, msg, sizeof msg);
        const char *tables[] = {"issues", "events"};
        rc = w->dolt_commit ? dolt_version_commit(c, tables, 2, msg, w->author) : dolt_commit(c);
        if (rc == 0) {
            for (size_t i = 0; i < n; i++)
                if (rcs[i] == 0)
                    log_fit(&m[i], fits[i], lens[i]);
            return 0;
        }
    } else {
        rc = (int)moved;
    }
    dolt_rollback(c); /* also after a lost connection: it disarms the lost-transaction guard */
    return rc;
}

int beads_move(struct dolt_conn *c, const struct beads_schema *s, const struct beads_writer *w,
               const struct bead_move *m)
{
    int moved = 0;
    int rc = move_tx(c, s, w, m, 1, m->verb, &moved);
    return rc ? rc : moved;
}

int beads_move_many(struct dolt_conn *c, const struct beads_schema *s, const struct beads_writer *w,
                    const struct bead_move *m, size_t n, const char *verb, int *rcs)
{
    if (n == 0)
        return 0;
    if (n == 1 || n > BEADS_BATCH_MAX) {
        for (size_t i = 0; i < n; i++)
            rcs[i] = beads_move(c, s, w, &m[i]);
        return 0;
    }
    int rc = move_tx(c, s, w, m, n, verb, rcs);
    if (rc == 0)
        return 0;
    if (rc != BS_ECONN) {
        /* Dolt aborts the whole transaction on a conflict (1213, at a
         * statement or at COMMIT); any other failure of the batch as a
         * whole is treated alike: each bead again on its own, so one
         * contested bead costs the others nothing. */
        log_info("batch failed; moving its beads one by one", "beads", LOG_INT(n), "error", bs_strerror(rc));
        for (size_t i = 0; i < n; i++)
            rcs[i] = beads_move(c, s, w, &m[i]);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        rcs[i] = rc;
    return rc;
}

struct now_acc {
    char *dt, *iso;
    size_t dtlen, isolen;
};

static int now_row(const struct dolt_row *r, void *arg)
{
    struct now_acc *a = arg;
    if (a->dt)
        snprintf(a->dt, a->dtlen, "%s", r->vals[0] ? r->vals[0] : "");
    if (a->iso)
        snprintf(a->iso, a->isolen, "%s", r->ncols > 1 && r->vals[1] ? r->vals[1] : "");
    return 1;
}

int beads_server_now(struct dolt_conn *c, char *dt, size_t dtlen, char *iso, size_t isolen)
{
    struct now_acc a = {dt, iso, dtlen, isolen};
    int rc = dolt_query(c, "SELECT DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%d %H:%i:%s'), "
                           "DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%dT%H:%i:%sZ')",
                        NULL, 0, now_row, &a, NULL);
    return rc == 1 ? 0 : rc ? rc : BS_EIO;
}

static int found_row(const struct dolt_row *r, void *arg)
{
    (void)r;
    *(int *)arg = 1;
    return 1;
}

int beads_has_mark(struct dolt_conn *c, const char *id, const char *notes, const char *mark)
{
    if (notes && strstr(notes, mark))
        return 1;
    /* INSTR, not LIKE: the mark is data, not a pattern. */
    int found = 0;
    int rc = dolt_query(c, "SELECT 1 FROM events WHERE issue_id = ? AND INSTR(comment, ?) > 0 LIMIT 1",
                        (struct dolt_value[]){DOLT_TEXT(id), DOLT_TEXT(mark)}, 2, found_row, &found, NULL);
    if (rc < 0)
        return rc;
    return found;
}

/* ---- readiness details (explain) ---- */

void bead_facts_free(struct bead_facts *f)
{
    free(f->id);
    free(f->status);
    free(f->assignee);
    free(f->issue_type);
    free(f->defer_until);
    memset(f, 0, sizeof *f);
}

static int facts_row(const struct dolt_row *r, void *arg)
{
    struct bead_facts *f = arg;
    f->id = dup_val(r, 0);
    f->id_len = r->vals[0] ? r->lens[0] : 0;
    f->status = dup_val(r, 1);
    f->assignee = dup_val(r, 2);
    f->issue_type = dup_val(r, 3);
    f->defer_until = dup_val(r, 8);
    f->notes_bytes = r->ncols > 9 && r->vals[9] ? strtoll(r->vals[9], NULL, 10) : 0;
    facts_of(r, 0, &f->row);
    f->row.id = (struct ready_id){f->id, f->id_len};
    f->row.status = f->status;
    f->row.assignee = f->assignee;
    f->row.issue_type = f->issue_type;
    return (!f->id || !f->status) ? BS_ENOMEM : 1;
}

int beads_read_facts(struct dolt_conn *c, const char *id, struct bead_facts *out)
{
    memset(out, 0, sizeof *out);
    int rc = dolt_query(c, "SELECT " FACT_COLUMNS " FROM issues WHERE id = ?",
                        (struct dolt_value[]){DOLT_TEXT(id)}, 1, facts_row, out, NULL);
    if (rc == 1)
        return 0;
    bead_facts_free(out);
    return rc ? rc : BS_ENOTFOUND;
}

struct nul_acc {
    int (*cb)(const char *printable, void *arg);
    void *arg;
};

static int nul_row(const struct dolt_row *r, void *arg)
{
    struct nul_acc *a = arg;
    char *p = text_utf8_clean(r->vals[0], r->lens[0]);
    int rc = p ? a->cb(p, a->arg) : BS_ENOMEM;
    free(p);
    return rc;
}

int beads_nul_ids(struct dolt_conn *c, const char *prefix, int (*cb)(const char *printable, void *arg),
                  void *arg)
{
    struct nul_acc a = {cb, arg};
    return dolt_query(c, "SELECT id FROM issues WHERE INSTR(id, CHAR(0 USING utf8mb4)) = CHAR_LENGTH(?) + 1 "
                         "AND LEFT(id, CHAR_LENGTH(?)) = ? ORDER BY id LIMIT 10",
                      (struct dolt_value[]){DOLT_TEXT(prefix), DOLT_TEXT(prefix), DOLT_TEXT(prefix)}, 3, nul_row, &a, NULL);
}
