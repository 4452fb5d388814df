#include "beads.h"

#include "errors.h"
#include "log.h"
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Issue types beads never treats as ready work (CONTRACTS.md section 4). */
#define EXCLUDED_TYPES "'merge-request','gate','molecule','message','agent','role','rig'"

void beads_datetime(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
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

static int column_row(const struct dolt_row *r, void *arg)
{
    struct beads_schema *s = arg;
    const char *name = r->vals[0] ? r->vals[0] : "";
    if (strcasecmp(name, "is_blocked") == 0) s->has_is_blocked = 1;
    else if (strcasecmp(name, "started_at") == 0) s->has_started_at = 1;
    else if (strcasecmp(name, "defer_until") == 0) s->has_defer_until = 1;
    else if (strcasecmp(name, "ephemeral") == 0) s->has_ephemeral = 1;
    else if (strcasecmp(name, "pinned") == 0) s->has_pinned = 1;
    return 0;
}

static int table_row(const struct dolt_row *r, void *arg)
{
    struct beads_schema *s = arg;
    const char *name = r->vals[0] ? r->vals[0] : "";
    if (strcasecmp(name, "dependencies") == 0) s->has_dependencies = 1;
    else if (strcasecmp(name, "events") == 0) s->has_events = 1;
    return 0;
}

int beads_schema_detect(struct dolt_conn *c, struct beads_schema *s)
{
    int rc = dolt_conn_ensure(c);
    if (rc)
        return rc;
    uint64_t gen = dolt_conn_generation(c);
    if (s->generation == gen)
        return 0;
    struct beads_schema n = {0};
    rc = dolt_query(c, "SELECT COLUMN_NAME FROM INFORMATION_SCHEMA.COLUMNS "
                       "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                    (struct dolt_value[]){DOLT_TEXT("issues")}, 1, column_row, &n, NULL);
    if (rc == 0)
        rc = dolt_query(c, "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES "
                           "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN (?, ?)",
                        (struct dolt_value[]){DOLT_TEXT("dependencies"), DOLT_TEXT("events")}, 2,
                        table_row, &n, NULL);
    if (rc)
        return rc;
    n.is_dolt = dolt_is_dolt(c) > 0;
    n.generation = gen;
    if (!n.has_is_blocked && !n.has_dependencies)
        log_warn("beads schema has neither issues.is_blocked nor a dependencies table; "
                 "blockers cannot be checked");
    log_info("beads schema detected", "is_blocked", LOG_INT(n.has_is_blocked), "started_at",
             LOG_INT(n.has_started_at), "dependencies", LOG_INT(n.has_dependencies), "dolt",
             LOG_INT(n.is_dolt));
    *s = n;
    return 0;
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

static int bead_row(const struct dolt_row *r, void *arg)
{
    struct bead *b = arg;
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
    b->notes = dup_val(r, 9);
    if (!b->id || !b->status || !b->updated_at)
        return BS_ENOMEM;
    return 1; /* one row is all we want */
}

int beads_read(struct dolt_conn *c, const char *id, int want_notes, struct bead *out)
{
    memset(out, 0, sizeof *out);
    const char *sql = want_notes
        ? "SELECT id, title, description, acceptance_criteria, issue_type, status, assignee, "
          "DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s'), priority, notes FROM issues WHERE id = ?"
        : "SELECT id, title, description, acceptance_criteria, issue_type, status, assignee, "
          "DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s'), priority FROM issues WHERE id = ?";
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

/* Columns: id, status, assignee, updated_at, priority[, notes]. */
static int state_row(const struct dolt_row *r, void *arg)
{
    struct many_acc *m = arg;
    struct bead b = {0};
    b.id = dup_val(r, 0);
    b.status = dup_val(r, 1);
    b.assignee = dup_val(r, 2);
    b.updated_at = dup_val(r, 3);
    b.priority = r->vals[4] ? strtol(r->vals[4], NULL, 10) : 2;
    b.notes = r->ncols > 5 ? dup_val(r, 5) : NULL;
    int rc = (!b.id || !b.status || !b.updated_at) ? BS_ENOMEM : m->cb(&b, m->arg);
    bead_free(&b);
    return rc;
}

#define STATE_COLUMNS "id, status, assignee, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s'), priority"

int beads_read_many(struct dolt_conn *c, const char *const *ids, size_t n, int want_notes,
                    bead_cb cb, void *arg)
{
    /* One statement text per chunk size keeps the prepared-statement cache
     * small: every chunk has BEADS_READ_CHUNK placeholders, the last one
     * padded by repeating its final id (IN ignores duplicates). */
    char sql[128 + BEADS_READ_CHUNK * 3];
    size_t k = (size_t)snprintf(sql, sizeof sql, "SELECT %s%s FROM issues WHERE id IN (",
                                STATE_COLUMNS, want_notes ? ", notes" : "");
    for (size_t i = 0; i < BEADS_READ_CHUNK; i++)
        k += (size_t)snprintf(sql + k, sizeof sql - k, i ? ",?" : "?");
    snprintf(sql + k, sizeof sql - k, ")");
    struct dolt_value params[BEADS_READ_CHUNK];
    struct many_acc m = {cb, arg};
    for (size_t off = 0; off < n; off += BEADS_READ_CHUNK) {
        size_t cnt = n - off < BEADS_READ_CHUNK ? n - off : BEADS_READ_CHUNK;
        for (size_t i = 0; i < BEADS_READ_CHUNK; i++)
            params[i] = DOLT_TEXT(ids[off + (i < cnt ? i : cnt - 1)]);
        int rc = dolt_query(c, sql, params, BEADS_READ_CHUNK, state_row, &m, NULL);
        if (rc)
            return rc;
    }
    return 0;
}

int beads_in_progress(struct dolt_conn *c, const char *assignee, bead_cb cb, void *arg)
{
    struct many_acc m = {cb, arg};
    return dolt_query(c, "SELECT " STATE_COLUMNS " FROM issues WHERE assignee = ? AND status = 'in_progress'",
                      (struct dolt_value[]){DOLT_TEXT(assignee)}, 1, state_row, &m, NULL);
}

struct cand_acc {
    struct candidate *v;
    size_t n, cap;
    int err;
};

static int cand_row(const struct dolt_row *r, void *arg)
{
    struct cand_acc *a = arg;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        struct candidate *nv = realloc(a->v, cap * sizeof *nv);
        if (!nv)
            return BS_ENOMEM;
        a->v = nv;
        a->cap = cap;
    }
    struct candidate *cd = &a->v[a->n];
    cd->id = dup_val(r, 0);
    cd->updated_at = dup_val(r, 1);
    cd->priority = r->vals[2] ? strtol(r->vals[2], NULL, 10) : 2;
    cd->has_acceptance = r->vals[3] && strcmp(r->vals[3], "1") == 0;
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

int beads_candidates(struct dolt_conn *c, const struct beads_schema *s, const char *assignee,
                     int with_acceptance, size_t offset, size_t limit, struct candidate **out,
                     size_t *n)
{
    char sql[2048];
    /* Readiness as beads defines it; the blocker rule falls back to the
     * dependencies table on schemas without the materialised column.
     * Acceptance criteria "non-empty after trimming" means any non-space
     * character, newlines and tabs included. */
    snprintf(sql, sizeof sql,
             "SELECT i.id, DATE_FORMAT(i.updated_at, '%%Y-%%m-%%d %%H:%%i:%%s'), i.priority, "
             "%d FROM issues i WHERE i.assignee = ? AND i.status = 'open' "
             "AND %s(i.acceptance_criteria IS NOT NULL AND i.acceptance_criteria REGEXP '[^[:space:]]') "
             "AND i.issue_type NOT IN (" EXCLUDED_TYPES ") %s%s%s%s "
             "ORDER BY i.priority ASC, i.updated_at ASC, i.id ASC LIMIT ? OFFSET ?",
             with_acceptance ? 1 : 0, with_acceptance ? "" : "NOT ",
             s->has_pinned ? "AND i.pinned = 0 " : "",
             s->has_ephemeral ? "AND i.ephemeral = 0 " : "",
             s->has_defer_until ? "AND (i.defer_until IS NULL OR i.defer_until <= UTC_TIMESTAMP()) " : "",
             s->has_is_blocked ? "AND i.is_blocked = 0"
             : s->has_dependencies
                 ? "AND NOT EXISTS (SELECT 1 FROM dependencies d JOIN issues b ON b.id = d.depends_on_id "
                   "WHERE d.issue_id = i.id AND d.type IN ('blocks', 'conditional-blocks', 'waits-for') "
                   "AND b.status NOT IN ('closed', 'pinned'))"
                 : "");
    struct cand_acc a = {0};
    int rc = dolt_query(c, sql,
                        (struct dolt_value[]){DOLT_TEXT(assignee), DOLT_INT(limit), DOLT_INT(offset)},
                        3, cand_row, &a, NULL);
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

int beads_move(struct dolt_conn *c, const struct beads_schema *s, const struct beads_writer *w,
               const struct bead_move *m)
{
    char sql[1024];
    struct dolt_value p[12];
    size_t np = 0;
    uint64_t affected = 0;
    int rc;

    /* Bead text is untrusted and a note may be long: cap what we append. */
    char *note = m->note ? text_cap(m->note, strlen(m->note), 16384, NULL) : NULL;
    if (m->note && !note)
        return BS_ENOMEM;

    size_t k = (size_t)snprintf(sql, sizeof sql, "UPDATE issues SET status = ?, updated_at = ?");
    p[np++] = DOLT_TEXT(m->to);
    p[np++] = DOLT_TEXT(m->now);
    if (m->set_started && s->has_started_at) {
        k += (size_t)snprintf(sql + k, sizeof sql - k, ", started_at = COALESCE(started_at, ?)");
        p[np++] = DOLT_TEXT(m->now);
    }
    if (note) {
        /* beads' own append rule: old + "\n" + new, no newline when empty;
         * one UPDATE keeps it atomic against concurrent notes. */
        k += (size_t)snprintf(sql + k, sizeof sql - k,
                              ", notes = IF(notes IS NULL OR notes = '', ?, CONCAT(notes, '\\n', ?))");
        p[np++] = DOLT_TEXT(note);
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

    if ((rc = dolt_begin(c)))
        goto out;
    if ((rc = dolt_query(c, sql, p, np, NULL, NULL, &affected)))
        goto rollback;
    if (affected == 0) {
        rc = BS_ESTATE;
        goto rollback;
    }
    if (s->has_events) {
        char uuid[37];
        text_uuid4(uuid);
        int status_change = strcmp(m->from, m->to) != 0;
        struct dolt_value ev[] = {
            DOLT_TEXT(uuid), DOLT_TEXT(m->id), DOLT_TEXT(m->event_type), DOLT_TEXT(w->actor),
            status_change ? DOLT_TEXT(m->from) : DOLT_NULL,
            status_change ? DOLT_TEXT(m->to) : DOLT_NULL,
            note ? DOLT_TEXT(note) : DOLT_NULL, DOLT_TEXT(m->now),
        };
        rc = dolt_query(c, "INSERT INTO events (id, issue_id, event_type, actor, old_value, "
                           "new_value, comment, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        ev, sizeof ev / sizeof ev[0], NULL, NULL, NULL);
        if (rc)
            goto rollback;
    }
    if (w->dolt_commit) {
        char msg[512];
        snprintf(msg, sizeof msg, "beads-sched: %s %.400s", m->verb, m->id);
        const char *tables[] = {"issues", "events"};
        rc = dolt_version_commit(c, tables, s->has_events ? 2 : 1, msg, w->author);
        if (rc)
            goto rollback;
    } else if ((rc = dolt_commit(c))) {
        goto rollback;
    }
    goto out;
rollback:
    if (rc != BS_ECONN)
        dolt_rollback(c);
out:
    free(note);
    return rc;
}

/* ---- readiness details (explain) ---- */

void bead_readiness_free(struct bead_readiness *r)
{
    free(r->defer_until);
    memset(r, 0, sizeof *r);
}

/* Column i as a flag: -1 for SQL NULL (the column is absent and the query
 * selected NULL), else 0 or 1. */
static int flag_val(const struct dolt_row *r, unsigned i)
{
    if (i >= r->ncols || !r->vals[i])
        return -1;
    return strcmp(r->vals[i], "0") != 0;
}

static int readiness_row(const struct dolt_row *r, void *arg)
{
    struct bead_readiness *b = arg;
    b->has_acceptance = flag_val(r, 0) == 1;
    b->excluded_type = flag_val(r, 1) == 1;
    b->deferred = flag_val(r, 2);
    if (r->ncols > 3 && r->vals[3] && !(b->defer_until = dup_val(r, 3)))
        return BS_ENOMEM;
    b->ephemeral = flag_val(r, 4);
    b->pinned = flag_val(r, 5);
    b->is_blocked = flag_val(r, 6);
    return 1; /* one row */
}

int beads_read_readiness(struct dolt_conn *c, const struct beads_schema *s, const char *id,
                         struct bead_readiness *out)
{
    memset(out, 0, sizeof *out);
    char sql[1536];
    /* Each test is the negation of beads_candidates' readiness condition:
     * "NOT (x <=> 0)" is 1 exactly when "x = 0" does not hold there (NULL
     * included); a missing column selects NULL, read as -1. */
    snprintf(sql, sizeof sql,
             "SELECT (i.acceptance_criteria IS NOT NULL AND i.acceptance_criteria REGEXP '[^[:space:]]'), "
             "i.issue_type IN (" EXCLUDED_TYPES "), %s, %s, %s, %s, %s FROM issues i WHERE i.id = ?",
             s->has_defer_until ? "(i.defer_until IS NOT NULL AND i.defer_until > UTC_TIMESTAMP())" : "NULL",
             s->has_defer_until ? "DATE_FORMAT(i.defer_until, '%Y-%m-%d %H:%i:%s')" : "NULL",
             s->has_ephemeral ? "NOT (i.ephemeral <=> 0)" : "NULL",
             s->has_pinned ? "NOT (i.pinned <=> 0)" : "NULL",
             s->has_is_blocked ? "NOT (i.is_blocked <=> 0)" : "NULL");
    int rc = dolt_query(c, sql, (struct dolt_value[]){DOLT_TEXT(id)}, 1, readiness_row, out, NULL);
    if (rc == 1)
        return 0;
    bead_readiness_free(out);
    return rc ? rc : BS_ENOTFOUND;
}

struct blocker_acc {
    beads_blocker_cb cb;
    void *arg;
};

static int blocker_row(const struct dolt_row *r, void *arg)
{
    struct blocker_acc *a = arg;
    struct bead_blocker b = {
        .id = r->vals[0] ? r->vals[0] : "",
        .type = r->ncols > 1 && r->vals[1] ? r->vals[1] : "",
        .status = r->ncols > 2 && r->vals[2] ? r->vals[2] : "",
    };
    return a->cb(&b, a->arg);
}

int beads_blockers(struct dolt_conn *c, const struct beads_schema *s, const char *id,
                   beads_blocker_cb cb, void *arg)
{
    if (!s->has_dependencies)
        return 0;
    struct blocker_acc a = {cb, arg};
    /* The dependencies rule of beads_candidates, listing instead of testing. */
    return dolt_query(c,
                      "SELECT d.depends_on_id, d.type, b.status FROM dependencies d "
                      "JOIN issues b ON b.id = d.depends_on_id "
                      "WHERE d.issue_id = ? AND d.type IN ('blocks', 'conditional-blocks', 'waits-for') "
                      "AND b.status NOT IN ('closed', 'pinned') ORDER BY d.depends_on_id LIMIT 1000",
                      (struct dolt_value[]){DOLT_TEXT(id)}, 1, blocker_row, &a, NULL);
}
