#ifndef BS_READY_H
#define BS_READY_H
/* Readiness as `bd ready` (bd 1.0.2) decides it, as pure functions over rows
 * already read (CONTRACTS.md section 4). No I/O here: beads.c reads the rows
 * with single-table queries, these functions do the set logic, and both the
 * dispatcher and `explain` ask the same ready_rules().
 *
 * Ids are bytes with a length: an id read from Dolt may hold a NUL, and two
 * ids are the same only when every byte is. */
#include <stddef.h>

/* An id as read: bytes and length (not NUL-terminated necessarily). */
struct ready_id {
    const char *p;
    size_t n;
};

/* Set of ids mapping to a value slot; keys are copied. */
struct ready_map;
struct ready_map *ready_map_new(void);
void ready_map_free(struct ready_map *m);
/* Inserts id (if absent) and returns its value slot (NULL: out of memory).
 * *fresh is 1 when it was inserted now. */
void **ready_map_put(struct ready_map *m, struct ready_id id, int *fresh);
/* The value slot of id, or NULL when absent. */
void **ready_map_get(const struct ready_map *m, struct ready_id id);
size_t ready_map_count(const struct ready_map *m);
/* Calls cb for every key (in no particular order); stops on non-zero. */
int ready_map_each(const struct ready_map *m, int (*cb)(struct ready_id id, void *value, void *arg),
                   void *arg);

enum ready_dep_type { RD_BLOCKS, RD_CONDITIONAL_BLOCKS, RD_WAITS_FOR };
/* The gate of a waits-for dependency from dependencies.metadata: "any" when
 * it is a JSON object whose "gate" member (bd matches the key without
 * regard to case) is the string "any-children"; "all" otherwise (empty,
 * NULL, not JSON, not an object, anything else). */
int ready_gate_any(const char *metadata, size_t len);
/* "blocks", "conditional-blocks", "waits-for" -> the type; -1 otherwise. */
int ready_dep_type(const char *s, size_t len);

/* One blocking dependencies row: issue depends on target. */
struct ready_dep {
    struct ready_id issue, target;
    enum ready_dep_type type;
    int gate_any;
};
/* One parent-child row: child's parent is parent. */
struct ready_edge {
    struct ready_id child, parent;
};

/* Why an issue is blocked (bd's blocked set). Owned by struct ready_state. */
struct ready_block {
    enum ready_dep_type type;
    char *by;               /* blocker (blocks) or spawner (waits-for), printable */
    char *by_status;        /* blocks: the blocker's status */
    int gate_any;           /* waits-for */
    size_t active_children; /* waits-for: the spawner's active children */
    char *children;         /* waits-for: the first few of them, ", "-separated */
};

struct ready_state {
    struct ready_map *status;    /* id -> char* status (issues table) */
    struct ready_map *blocked;   /* id -> struct ready_block* */
    struct ready_map *parent_blocked;  /* child id -> char* parent id */
    struct ready_map *parent_deferred; /* child id -> char* parent id */
};
/* Empty state (maps allocated). 0 or BS_ENOMEM. */
int ready_state_init(struct ready_state *st);
void ready_state_free(struct ready_state *st);
/* Records the status of id as read from issues. */
int ready_state_status(struct ready_state *st, struct ready_id id, const char *status, size_t len);

/* "Active" as bd means it: the issue exists and is neither closed nor pinned. */
int ready_active(const struct ready_state *st, struct ready_id id);

/* bd's blocked set (ComputeBlockedIDs): an active issue is blocked when it
 * has a blocks/conditional-blocks dependency on an active issue, or a
 * waits-for dependency whose gate is not met by the spawner's direct
 * children (spawner_children: parent-child rows whose parent is a spawner;
 * all-children: blocked while any child is active; any-children: blocked
 * while no child is closed and some child is active; no children: not
 * blocked). Statuses of every issue, target and child must be recorded
 * first; an id without a status does not exist. Fills st->blocked. */
int ready_compute_blocked(struct ready_state *st, const struct ready_dep *deps, size_t ndeps,
                          const struct ready_edge *spawner_children, size_t nchildren);
/* Marks the children in edges whose parent is blocked (bd excludes the
 * direct children of blocked issues) and, separately, those whose parent
 * is in deferred (issues with defer_until in the future). */
int ready_mark_children(struct ready_state *st, const struct ready_edge *edges, size_t nedges,
                        const struct ready_map *deferred);

/* The row facts of one bead, as read from issues. */
struct ready_row {
    struct ready_id id;
    const char *status;
    const char *assignee;      /* NULL for SQL NULL */
    const char *issue_type;
    int pinned, ephemeral;     /* -1 for SQL NULL, else the value */
    int deferred;              /* defer_until after the server's UTC_TIMESTAMP() */
    int has_acceptance;        /* acceptance criteria hold a non-space character */
};

/* The rules in the order the dispatcher applies them. */
enum ready_rule {
    RR_ID,               /* the id round-trips through a C string (no NUL byte) */
    RR_ASSIGNEE,
    RR_STATUS,
    RR_ACCEPTANCE,
    RR_PINNED,
    RR_EPHEMERAL,
    RR_TYPE,
    RR_DEFERRED,
    RR_PARENT_DEFERRED,
    RR_BLOCKED,
    RR_PARENT_BLOCKED,
    RR_COUNT
};
extern const char *const ready_rule_name[RR_COUNT];

struct ready_result {
    int ok;
    char seen[480];      /* what was seen, printable */
};
/* Evaluates every rule for row against st; returns the first failing rule,
 * or RR_COUNT when the bead is ready. out may be NULL (then only the
 * verdict is computed). */
int ready_rules(const struct ready_row *row, const char *assignee, const struct ready_state *st,
                struct ready_result out[RR_COUNT]);

/* Issue types bd never offers as ready work. */
int ready_excluded_type(const char *type);
#define READY_EXCLUDED_TYPES_SQL "'merge-request','gate','molecule','message','agent','role','rig'"
#endif
