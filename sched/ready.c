#include "ready.h"

#include "errors.h"
#include "text.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- id map: open addressing, FNV-1a ---- */

struct slot {
    char *key;      /* NULL: empty */
    size_t len;
    void *value;
};

struct ready_map {
    struct slot *slots;
    size_t cap, count;  /* cap is a power of two */
};

static uint64_t hash_id(struct ready_id id) { return text_fnv1a(TEXT_FNV1A_SEED, id.p, id.n); }

struct ready_map *ready_map_new(void)
{
    struct ready_map *m = calloc(1, sizeof *m);
    if (m && !(m->slots = calloc(m->cap = 64, sizeof *m->slots))) {
        free(m);
        return NULL;
    }
    return m;
}

void ready_map_free(struct ready_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    free(m);
}

static struct slot *find_slot(struct slot *slots, size_t cap, struct ready_id id)
{
    size_t i = (size_t)hash_id(id) & (cap - 1);
    for (;;) {
        struct slot *s = &slots[i];
        if (!s->key || (s->len == id.n && memcmp(s->key, id.p, id.n) == 0))
            return s;
        i = (i + 1) & (cap - 1);
    }
}

static int grow(struct ready_map *m)
{
    size_t cap = m->cap * 2;
    struct slot *v = calloc(cap, sizeof *v);
    if (!v)
        return BS_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key)
            *find_slot(v, cap, (struct ready_id){m->slots[i].key, m->slots[i].len}) = m->slots[i];
    }
    free(m->slots);
    m->slots = v;
    m->cap = cap;
    return 0;
}

void **ready_map_put(struct ready_map *m, struct ready_id id, int *fresh)
{
    if (fresh)
        *fresh = 0;
    if ((m->count + 1) * 4 > m->cap * 3 && grow(m))
        return NULL;
    struct slot *s = find_slot(m->slots, m->cap, id);
    if (!s->key) {
        if (!(s->key = malloc(id.n + 1)))
            return NULL;
        memcpy(s->key, id.p, id.n);
        s->key[id.n] = '\0';
        s->len = id.n;
        s->value = NULL;
        m->count++;
        if (fresh)
            *fresh = 1;
    }
    return &s->value;
}

void **ready_map_get(const struct ready_map *m, struct ready_id id)
{
    struct slot *s = find_slot(m->slots, m->cap, id);
    return s->key ? &s->value : NULL;
}

size_t ready_map_count(const struct ready_map *m)
{
    return m->count;
}

int ready_map_each(const struct ready_map *m, int (*cb)(struct ready_id id, void *value, void *arg),
                   void *arg)
{
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        int rc = cb((struct ready_id){m->slots[i].key, m->slots[i].len}, m->slots[i].value, arg);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- small parsers ---- */

int ready_gate_any(const char *metadata, size_t len)
{
    if (!metadata || !len)
        return 0;
    json_t *j = json_loadb(metadata, len, JSON_DECODE_ANY, NULL);
    int any = 0;
    if (json_is_object(j)) {
        /* An exact "gate" wins over a key that differs only in case, as in
         * Go's encoding/json. */
        json_t *g = json_object_get(j, "gate");
        if (!g) {
            const char *k;
            json_t *v;
            json_object_foreach(j, k, v) {
                if (strcasecmp(k, "gate") == 0) {
                    g = v;
                    break;
                }
            }
        }
        any = json_is_string(g) && strcmp(json_string_value(g), "any-children") == 0;
    }
    json_decref(j);
    return any;
}

int ready_dep_type(const char *s, size_t len)
{
    static const struct {
        const char *name;
        enum ready_dep_type t;
    } names[] = {{"blocks", RD_BLOCKS}, {"conditional-blocks", RD_CONDITIONAL_BLOCKS}, {"waits-for", RD_WAITS_FOR}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strlen(names[i].name) == len && memcmp(names[i].name, s, len) == 0)
            return (int)names[i].t;
    }
    return -1;
}

int ready_excluded_type(const char *type)
{
    static const char *const excluded[] = {"merge-request", "gate", "molecule", "message", "agent", "role", "rig"};
    for (size_t i = 0; type && i < sizeof excluded / sizeof excluded[0]; i++) {
        if (strcmp(type, excluded[i]) == 0)
            return 1;
    }
    return 0;
}

/* ---- state ---- */

int ready_state_init(struct ready_state *st)
{
    memset(st, 0, sizeof *st);
    st->status = ready_map_new();
    st->blocked = ready_map_new();
    st->parent_blocked = ready_map_new();
    st->parent_deferred = ready_map_new();
    if (!st->status || !st->blocked || !st->parent_blocked || !st->parent_deferred) {
        ready_state_free(st);
        return BS_ENOMEM;
    }
    return 0;
}

static int free_value(struct ready_id id, void *value, void *arg)
{
    (void)id;
    (void)arg;
    free(value);
    return 0;
}

static int free_block(struct ready_id id, void *value, void *arg)
{
    (void)id;
    (void)arg;
    struct ready_block *b = value;
    if (b) {
        free(b->by);
        free(b->by_status);
        free(b->children);
        free(b);
    }
    return 0;
}

void ready_state_free(struct ready_state *st)
{
    if (st->status)
        ready_map_each(st->status, free_value, NULL);
    if (st->blocked)
        ready_map_each(st->blocked, free_block, NULL);
    if (st->parent_blocked)
        ready_map_each(st->parent_blocked, free_value, NULL);
    if (st->parent_deferred)
        ready_map_each(st->parent_deferred, free_value, NULL);
    ready_map_free(st->status);
    ready_map_free(st->blocked);
    ready_map_free(st->parent_blocked);
    ready_map_free(st->parent_deferred);
    memset(st, 0, sizeof *st);
}

int ready_state_status(struct ready_state *st, struct ready_id id, const char *status, size_t len)
{
    void **v = ready_map_put(st->status, id, NULL);
    if (!v)
        return BS_ENOMEM;
    char *s = malloc(len + 1);
    if (!s)
        return BS_ENOMEM;
    memcpy(s, status, len);
    s[len] = '\0';
    free(*v);
    *v = s;
    return 0;
}

static const char *status_of(const struct ready_state *st, struct ready_id id)
{
    void **v = ready_map_get(st->status, id);
    return v ? *v : NULL;
}

int ready_active(const struct ready_state *st, struct ready_id id)
{
    const char *s = status_of(st, id);
    return s && strcmp(s, "closed") != 0 && strcmp(s, "pinned") != 0;
}

static char *printable(struct ready_id id)
{
    return text_utf8_clean(id.p, id.n);
}

/* Records the first reason found for issue (bd keeps a set; explain names
 * one blocker, the first in dependency order). */
static int block(struct ready_state *st, struct ready_id issue, struct ready_block *why)
{
    int fresh;
    void **v = ready_map_put(st->blocked, issue, &fresh);
    if (!v) {
        free_block(issue, why, NULL);
        return BS_ENOMEM;
    }
    if (!fresh) {
        free_block(issue, why, NULL);
        return 0;
    }
    *v = why;
    return 0;
}

/* Children of a spawner, gathered from the parent-child rows. */
struct kids {
    struct ready_id *v;
    size_t n, cap;
};

static int free_kids(struct ready_id id, void *value, void *arg)
{
    (void)id;
    (void)arg;
    struct kids *k = value;
    if (k) {
        free(k->v);
        free(k);
    }
    return 0;
}

/* Groups the parent-child rows by parent: kids maps each spawner to its
 * struct kids. */
static int group_kids(struct ready_map *kids, const struct ready_edge *edges, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        void **v = ready_map_put(kids, edges[i].parent, NULL);
        if (!v)
            return BS_ENOMEM;
        struct kids *k = *v;
        if (!k && !(k = *v = calloc(1, sizeof *k)))
            return BS_ENOMEM;
        if (k->n == k->cap) {
            size_t cap = k->cap ? k->cap * 2 : 4;
            struct ready_id *nv = realloc(k->v, cap * sizeof *nv);
            if (!nv)
                return BS_ENOMEM;
            k->v = nv;
            k->cap = cap;
        }
        k->v[k->n++] = edges[i].child;
    }
    return 0;
}

/* A blocks or conditional-blocks row: d->issue is blocked while its
 * target is active. */
static int block_by_dep(struct ready_state *st, const struct ready_dep *d)
{
    if (!ready_active(st, d->target))
        return 0;
    struct ready_block *why = calloc(1, sizeof *why);
    if (!why || !(why->by = printable(d->target)) ||
        !(why->by_status = strdup(status_of(st, d->target)))) {
        free_block(d->issue, why, NULL);
        return BS_ENOMEM;
    }
    why->type = d->type;
    return block(st, d->issue, why);
}

/* The first few active children of k, ", "-separated, into list. */
static void active_children_list(const struct ready_state *st, const struct kids *k, char *list,
                                 size_t size)
{
    size_t len = 0, shown = 0;
    list[0] = '\0';
    for (size_t j = 0; k && j < k->n && shown < 5; j++) {
        if (!ready_active(st, k->v[j]))
            continue;
        char *p = printable(k->v[j]);
        int w = snprintf(list + len, size - len, "%s%.60s", shown ? ", " : "", p ? p : "?");
        free(p);
        if (w < 0 || (size_t)w >= size - len)
            break;
        len += (size_t)w;
        shown++;
    }
}

/* A waits-for row: the gate over the spawner's direct children (kids). */
static int block_by_gate(struct ready_state *st, const struct ready_map *kids, const struct ready_dep *d)
{
    void **v = ready_map_get(kids, d->target);
    const struct kids *k = v ? *v : NULL;
    size_t active = 0, closed = 0;
    for (size_t j = 0; k && j < k->n; j++) {
        const char *s = status_of(st, k->v[j]);
        if (s && strcmp(s, "closed") == 0)
            closed++;
        else if (ready_active(st, k->v[j]))
            active++;
    }
    int blocked = d->gate_any ? (closed == 0 && active > 0) : active > 0;
    if (!blocked)
        return 0;
    char list[200];
    active_children_list(st, k, list, sizeof list);
    struct ready_block *why = calloc(1, sizeof *why);
    if (!why || !(why->by = printable(d->target)) || !(why->children = strdup(list))) {
        free_block(d->issue, why, NULL);
        return BS_ENOMEM;
    }
    why->type = RD_WAITS_FOR;
    why->gate_any = d->gate_any;
    why->active_children = active;
    return block(st, d->issue, why);
}

int ready_compute_blocked(struct ready_state *st, const struct ready_dep *deps, size_t ndeps,
                          const struct ready_edge *spawner_children, size_t nchildren)
{
    struct ready_map *kids = ready_map_new();
    if (!kids)
        return BS_ENOMEM;
    int rc = group_kids(kids, spawner_children, nchildren);
    for (size_t i = 0; i < ndeps && rc == 0; i++) {
        const struct ready_dep *d = &deps[i];
        if (!ready_active(st, d->issue))
            continue;
        if (d->type == RD_BLOCKS || d->type == RD_CONDITIONAL_BLOCKS)
            rc = block_by_dep(st, d);
        else
            rc = block_by_gate(st, kids, d);
    }
    ready_map_each(kids, free_kids, NULL);
    ready_map_free(kids);
    return rc;
}

static int mark(struct ready_map *m, struct ready_id child, struct ready_id parent)
{
    int fresh;
    void **v = ready_map_put(m, child, &fresh);
    if (!v)
        return BS_ENOMEM;
    if (fresh && !(*v = printable(parent)))
        return BS_ENOMEM;
    return 0;
}

int ready_mark_children(struct ready_state *st, const struct ready_edge *edges, size_t nedges,
                        const struct ready_map *deferred)
{
    for (size_t i = 0; i < nedges; i++) {
        int rc = 0;
        if (ready_map_get(st->blocked, edges[i].parent))
            rc = mark(st->parent_blocked, edges[i].child, edges[i].parent);
        if (rc == 0 && deferred && ready_map_get(deferred, edges[i].parent))
            rc = mark(st->parent_deferred, edges[i].child, edges[i].parent);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- the rules ---- */

const char *const ready_rule_name[RR_COUNT] = {
    [RR_ID] = "id",
    [RR_ASSIGNEE] = "assignee",
    [RR_STATUS] = "status",
    [RR_ACCEPTANCE] = "acceptance criteria",
    [RR_PINNED] = "pinned",
    [RR_EPHEMERAL] = "ephemeral",
    [RR_TYPE] = "issue type",
    [RR_DEFERRED] = "deferred",
    [RR_PARENT_DEFERRED] = "parent deferred",
    [RR_BLOCKED] = "blocked",
    [RR_PARENT_BLOCKED] = "parent blocked",
};

static void put(struct ready_result *out, int *first, enum ready_rule r, int ok, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void put(struct ready_result *out, int *first, enum ready_rule r, int ok, const char *fmt, ...)
{
    if (!ok && *first == RR_COUNT)
        *first = (int)r;
    if (!out)
        return;
    out[r].ok = ok;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out[r].seen, sizeof out[r].seen, fmt, ap);
    va_end(ap);
}

static void flag_rule(struct ready_result *out, int *first, enum ready_rule r, const char *name, int v)
{
    if (v < 0)
        put(out, first, r, 1, "%s=NULL (counts as 0)", name);
    else
        put(out, first, r, v == 0, "%s=%d", name, v);
}

int ready_rules(const struct ready_row *row, const char *assignee, const struct ready_state *st,
                struct ready_result out[RR_COUNT])
{
    int first = RR_COUNT;
    int has_nul = memchr(row->id.p, '\0', row->id.n) != NULL;
    put(out, &first, RR_ID, !has_nul, "%s",
        has_nul ? "holds a NUL byte: it cannot round-trip through a C string, so it is never "
                  "dispatched (rename the bead)" : "plain");
    int mine = row->assignee && assignee && strcmp(row->assignee, assignee) == 0;
    put(out, &first, RR_ASSIGNEE, mine, "%.100s%s%.100s%s", row->assignee ? row->assignee : "(none)",
        mine ? "" : " (want ", mine ? "" : assignee, mine ? "" : ")");
    int open = row->status && strcmp(row->status, "open") == 0;
    put(out, &first, RR_STATUS, open, "%.32s%s", row->status ? row->status : "?", open ? "" : " (want open)");
    put(out, &first, RR_ACCEPTANCE, row->has_acceptance, "%s",
        row->has_acceptance ? "present" : "empty or blank");
    flag_rule(out, &first, RR_PINNED, "pinned", row->pinned);
    flag_rule(out, &first, RR_EPHEMERAL, "ephemeral", row->ephemeral);
    int excluded = ready_excluded_type(row->issue_type);
    put(out, &first, RR_TYPE, !excluded, "%.32s%s", row->issue_type ? row->issue_type : "?",
        excluded ? " (never dispatched: merge-request, gate, molecule, message, agent, role, rig)" : "");
    put(out, &first, RR_DEFERRED, !row->deferred, "%s",
        row->deferred ? "defer_until is in the future (server clock)" : "not deferred");

    void **v = st ? ready_map_get(st->parent_deferred, row->id) : NULL;
    put(out, &first, RR_PARENT_DEFERRED, !v, "%s%.200s%s", v ? "parent " : "no deferred parent",
        v ? (const char *)*v : "", v ? " is deferred into the future" : "");

    v = st ? ready_map_get(st->blocked, row->id) : NULL;
    const struct ready_block *b = v ? *v : NULL;
    if (!b)
        put(out, &first, RR_BLOCKED, 1, "no active blocker");
    else if (b->type == RD_WAITS_FOR)
        put(out, &first, RR_BLOCKED, 0, "waits-for %.120s (gate %s): %zu active child%s: %s%s",
            b->by, b->gate_any ? "any-children, none closed" : "all-children", b->active_children,
            b->active_children == 1 ? "" : "ren", b->children,
            b->active_children > 5 ? ", ..." : "");
    else
        put(out, &first, RR_BLOCKED, 0, "%s %.120s (%.32s)",
            b->type == RD_BLOCKS ? "blocks:" : "conditional-blocks:", b->by, b->by_status);

    v = st ? ready_map_get(st->parent_blocked, row->id) : NULL;
    const struct ready_block *pb = NULL;
    if (v) {
        const char *pid = *v;
        void **pv = ready_map_get(st->blocked, (struct ready_id){pid, strlen(pid)});
        pb = pv ? *pv : NULL;
        put(out, &first, RR_PARENT_BLOCKED, 0, "parent %.120s is blocked%s%.120s%s", pid,
            pb ? " (by " : "", pb ? pb->by : "", pb ? ")" : "");
    } else {
        put(out, &first, RR_PARENT_BLOCKED, 1, "no blocked parent");
    }
    return first;
}
