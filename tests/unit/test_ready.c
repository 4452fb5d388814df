/* Readiness as bd ready decides it (sched/ready.c): the blocked set,
 * waits-for gates, children of blocked and deferred parents, and the rules
 * of one row, as tables of cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "errors.h"
#include "ready.h"

static struct ready_id rid(const char *s)
{
    return (struct ready_id){s, strlen(s)};
}

static void test_gate(void **state)
{
    (void)state;
    static const struct {
        const char *metadata;
        int any;
    } cases[] = {
        {"", 0},
        {"{}", 0},
        {"{\"gate\":\"any-children\"}", 1},
        {"{\"gate\": \"all-children\"}", 0},
        {"{\"Gate\":\"any-children\"}", 1},          /* Go matches keys without case */
        {"{\"gate\":\"ANY-CHILDREN\"}", 0},          /* ...but values exactly */
        {"{\"gate\":1}", 0},
        {"not json", 0},
        {"[\"any-children\"]", 0},
        {"null", 0},
        {"{\"other\":\"x\",\"gate\":\"any-children\"}", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (ready_gate_any(cases[i].metadata, strlen(cases[i].metadata)) != cases[i].any)
            fail_msg("gate of '%s': want %d", cases[i].metadata, cases[i].any);
    }
    assert_int_equal(ready_gate_any(NULL, 0), 0);
    assert_int_equal(ready_dep_type("blocks", 6), RD_BLOCKS);
    assert_int_equal(ready_dep_type("conditional-blocks", 18), RD_CONDITIONAL_BLOCKS);
    assert_int_equal(ready_dep_type("waits-for", 9), RD_WAITS_FOR);
    assert_int_equal(ready_dep_type("parent-child", 12), -1);
    assert_int_equal(ready_dep_type("related", 7), -1);
}

/* A case: statuses "id=status ...", blocking deps "issue>target:type[:any]"
 * separated by spaces, parent-child edges "child<parent", deferred parents,
 * and what bd would say: the blocked set, the children excluded for a
 * blocked parent, those excluded for a deferred parent. */
struct graph_case {
    const char *name;
    const char *statuses;
    const char *deps;
    const char *edges;
    const char *deferred;
    const char *blocked;
    const char *parent_blocked;
    const char *parent_deferred;
};

static const struct graph_case graph_cases[] = {
    {"blocks on an open issue", "a=open b=open", "a>b:blocks", "", "", "a", "", ""},
    {"blocks on an in_progress issue", "a=open b=in_progress", "a>b:blocks", "", "", "a", "", ""},
    {"blocks on a blocked issue", "a=open b=blocked", "a>b:blocks", "", "", "a", "", ""},
    {"blocks on a closed issue", "a=open b=closed", "a>b:blocks", "", "", "", "", ""},
    {"blocks on a pinned issue", "a=open b=pinned", "a>b:blocks", "", "", "", "", ""},
    {"blocks on a missing issue", "a=open", "a>zz:blocks", "", "", "", "", ""},
    {"blocks on a custom status", "a=open b=review", "a>b:blocks", "", "", "a", "", ""},
    {"conditional-blocks on an open issue", "a=open b=open", "a>b:conditional-blocks", "", "", "a", "", ""},
    {"conditional-blocks on a closed issue", "a=open b=closed", "a>b:conditional-blocks", "", "", "", "", ""},
    {"a closed issue is never blocked", "a=closed b=open", "a>b:blocks", "", "", "", "", ""},
    {"the blocked issue is blocked, not its blocker", "a=open b=open", "a>b:blocks", "", "", "a", "", ""},
    /* waits-for: the spawner's children decide, not the spawner. */
    {"waits-for, spawner without children", "w=open s=open", "w>s:waits-for", "", "", "", "", ""},
    {"waits-for, spawner closed but a child active", "w=open s=closed c1=open", "w>s:waits-for", "c1<s", "",
     "w", "", ""},
    {"waits-for all-children, one child active", "w=open s=open c1=closed c2=open", "w>s:waits-for",
     "c1<s c2<s", "", "w", "", ""},
    {"waits-for all-children, every child closed", "w=open s=open c1=closed c2=closed", "w>s:waits-for",
     "c1<s c2<s", "", "", "", ""},
    {"waits-for all-children, children pinned", "w=open s=open c1=pinned", "w>s:waits-for", "c1<s", "",
     "", "", ""},
    {"waits-for any-children, one child closed", "w=open s=open c1=closed c2=open", "w>s:waits-for:any",
     "c1<s c2<s", "", "", "", ""},
    {"waits-for any-children, none closed", "w=open s=open c1=open c2=in_progress", "w>s:waits-for:any",
     "c1<s c2<s", "", "w", "", ""},
    {"waits-for any-children, only pinned children", "w=open s=open c1=pinned", "w>s:waits-for:any", "c1<s",
     "", "", "", ""},
    /* children of blocked issues: depth 1 only, as bd does */
    {"child of a blocked epic", "e=open b=open k=open g=open", "e>b:blocks", "k<e g<k", "", "e", "k", ""},
    {"child of an unblocked epic", "e=open b=closed k=open", "e>b:blocks", "k<e", "", "", "", ""},
    {"child of a blocked in_progress epic", "e=in_progress b=open k=open", "e>b:blocks", "k<e", "", "e", "k",
     ""},
    {"child of a deferred epic", "e=open k=open g=open", "", "k<e g<k", "e", "", "", "k"},
    {"deferred and blocked parent", "e=open b=open k=open", "e>b:blocks", "k<e", "e", "e", "k", "k"},
};

/* Splits s at spaces into a static copy; returns the count. */
static size_t words(const char *s, char *buf, size_t len, char **out, size_t max)
{
    snprintf(buf, len, "%s", s);
    size_t n = 0;
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w && n < max; w = strtok_r(NULL, " ", &save))
        out[n++] = w;
    return n;
}

/* "a,b" of the keys of m, sorted. */
static int key_of(struct ready_id id, void *value, void *arg)
{
    (void)value;
    char **v = arg;
    size_t i = 0;
    while (v[i])
        i++;
    v[i] = strndup(id.p, id.n);
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void keys(const struct ready_map *m, char *out, size_t len)
{
    char *v[64] = {0};
    ready_map_each(m, key_of, v);
    size_t n = 0;
    while (v[n])
        n++;
    qsort(v, n, sizeof *v, cmp);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strncat(out, i ? "," : "", len - strlen(out) - 1);
        strncat(out, v[i], len - strlen(out) - 1);
        free(v[i]);
    }
}

static void join_spaces_to_commas(const char *s, char *out, size_t len)
{
    snprintf(out, len, "%s", s);
    for (char *p = out; *p; p++)
        if (*p == ' ')
            *p = ',';
}

static void test_graph(void **state)
{
    (void)state;
    for (size_t ci = 0; ci < sizeof graph_cases / sizeof graph_cases[0]; ci++) {
        const struct graph_case *gc = &graph_cases[ci];
        struct ready_state st;
        assert_int_equal(ready_state_init(&st), 0);
        char b1[512], b2[512], b3[512], b4[512];
        char *w[32];
        size_t n = words(gc->statuses, b1, sizeof b1, w, 32);
        for (size_t i = 0; i < n; i++) {
            char *eq = strchr(w[i], '=');
            *eq = '\0';
            assert_int_equal(ready_state_status(&st, rid(w[i]), eq + 1, strlen(eq + 1)), 0);
        }
        struct ready_dep deps[16];
        size_t nd = words(gc->deps, b2, sizeof b2, w, 16);
        for (size_t i = 0; i < nd; i++) {
            char *gt = strchr(w[i], '>');
            char *c1 = strchr(gt, ':');
            char *c2 = strchr(c1 + 1, ':');
            *gt = *c1 = '\0';
            if (c2)
                *c2 = '\0';
            deps[i] = (struct ready_dep){rid(w[i]), rid(gt + 1), (enum ready_dep_type)ready_dep_type(c1 + 1, strlen(c1 + 1)),
                                         c2 && strcmp(c2 + 1, "any") == 0};
        }
        struct ready_edge edges[16];
        size_t ne = words(gc->edges, b3, sizeof b3, w, 16);
        for (size_t i = 0; i < ne; i++) {
            char *lt = strchr(w[i], '<');
            *lt = '\0';
            edges[i] = (struct ready_edge){rid(w[i]), rid(lt + 1)};
        }
        struct ready_map *deferred = ready_map_new();
        size_t nf = words(gc->deferred, b4, sizeof b4, w, 16);
        for (size_t i = 0; i < nf; i++)
            assert_non_null(ready_map_put(deferred, rid(w[i]), NULL));

        /* All edges are offered as spawner children: only spawners' count. */
        assert_int_equal(ready_compute_blocked(&st, deps, nd, edges, ne), 0);
        assert_int_equal(ready_mark_children(&st, edges, ne, deferred), 0);
        char got[256];
        keys(st.blocked, got, sizeof got);
        if (strcmp(got, gc->blocked) != 0)
            fail_msg("%s: blocked '%s', want '%s'", gc->name, got, gc->blocked);
        keys(st.parent_blocked, got, sizeof got);
        if (strcmp(got, gc->parent_blocked) != 0)
            fail_msg("%s: children of blocked '%s', want '%s'", gc->name, got, gc->parent_blocked);
        keys(st.parent_deferred, got, sizeof got);
        char want[256];
        join_spaces_to_commas(gc->parent_deferred, want, sizeof want);
        if (strcmp(got, want) != 0)
            fail_msg("%s: children of deferred '%s', want '%s'", gc->name, got, want);
        ready_map_free(deferred);
        ready_state_free(&st);
    }
}

/* The rules of one row, in order; the first failing one is the verdict. */
static void test_rules(void **state)
{
    (void)state;
    struct ready_state st;
    assert_int_equal(ready_state_init(&st), 0);
    ready_state_status(&st, rid("x"), "open", 4);
    ready_state_status(&st, rid("blk"), "in_progress", 11);
    ready_state_status(&st, rid("e"), "open", 4);
    struct ready_dep d[] = {{rid("x"), rid("blk"), RD_BLOCKS, 0}, {rid("e"), rid("blk"), RD_BLOCKS, 0}};
    struct ready_edge kid[] = {{rid("k"), rid("e")}};
    assert_int_equal(ready_compute_blocked(&st, d, 2, NULL, 0), 0);
    assert_int_equal(ready_mark_children(&st, kid, 1, NULL), 0);

    static const char nul_id[] = "ok\0evil";
    static const struct {
        struct ready_row row;
        int first;
        const char *seen;   /* substring of the failing rule's text */
    } cases[] = {
        {{{"ok", 2}, "open", "agent", "task", 0, 0, 0, 1}, RR_COUNT, NULL},
        {{{"ok", 2}, "open", "agent", "task", -1, -1, 0, 1}, RR_COUNT, NULL}, /* NULL flags count as 0 */
        {{{nul_id, sizeof nul_id - 1}, "open", "agent", "task", 0, 0, 0, 1}, RR_ID, "NUL byte"},
        {{{"ok", 2}, "open", "alice", "task", 0, 0, 0, 1}, RR_ASSIGNEE, "alice (want agent)"},
        {{{"ok", 2}, "open", NULL, "task", 0, 0, 0, 1}, RR_ASSIGNEE, "(none)"},
        {{{"ok", 2}, "in_progress", "agent", "task", 0, 0, 0, 1}, RR_STATUS, "want open"},
        {{{"ok", 2}, "open", "agent", "task", 0, 0, 0, 0}, RR_ACCEPTANCE, "empty or blank"},
        {{{"ok", 2}, "open", "agent", "task", 1, 0, 0, 1}, RR_PINNED, "pinned=1"},
        {{{"ok", 2}, "open", "agent", "task", 0, 1, 0, 1}, RR_EPHEMERAL, "ephemeral=1"},
        {{{"ok", 2}, "open", "agent", "gate", 0, 0, 0, 1}, RR_TYPE, "gate"},
        {{{"ok", 2}, "open", "agent", "merge-request", 0, 0, 0, 1}, RR_TYPE, "merge-request"},
        {{{"ok", 2}, "open", "agent", "molecule", 0, 0, 0, 1}, RR_TYPE, "molecule"},
        {{{"ok", 2}, "open", "agent", "message", 0, 0, 0, 1}, RR_TYPE, "message"},
        {{{"ok", 2}, "open", "agent", "agent", 0, 0, 0, 1}, RR_TYPE, "agent"},
        {{{"ok", 2}, "open", "agent", "role", 0, 0, 0, 1}, RR_TYPE, "role"},
        {{{"ok", 2}, "open", "agent", "rig", 0, 0, 0, 1}, RR_TYPE, "rig"},
        {{{"ok", 2}, "open", "agent", "epic", 0, 0, 0, 1}, RR_COUNT, NULL},
        {{{"ok", 2}, "open", "agent", "task", 0, 0, 1, 1}, RR_DEFERRED, "future"},
        {{{"x", 1}, "open", "agent", "task", 0, 0, 0, 1}, RR_BLOCKED, "blocks: blk (in_progress)"},
        {{{"k", 1}, "open", "agent", "task", 0, 0, 0, 1}, RR_PARENT_BLOCKED, "parent e is blocked (by blk)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ready_result res[RR_COUNT];
        int first = ready_rules(&cases[i].row, "agent", &st, res);
        if (first != cases[i].first)
            fail_msg("case %zu: first failing rule %d, want %d", i, first, cases[i].first);
        assert_int_equal(ready_rules(&cases[i].row, "agent", &st, NULL), first);
        if (cases[i].seen && !strstr(res[first].seen, cases[i].seen))
            fail_msg("case %zu: '%s' lacks '%s'", i, res[first].seen, cases[i].seen);
    }
    ready_state_free(&st);
}

static void test_map(void **state)
{
    (void)state;
    struct ready_map *m = ready_map_new();
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "code-%d", i);
        int fresh = 0;
        void **v = ready_map_put(m, rid(id), &fresh);
        assert_non_null(v);
        assert_int_equal(fresh, 1);
    }
    assert_int_equal(ready_map_count(m), 5000);
    assert_non_null(ready_map_get(m, rid("code-4999")));
    assert_null(ready_map_get(m, rid("code-5000")));
    /* Ids are bytes: "a\0b" is neither "a" nor "a\0c". */
    assert_non_null(ready_map_put(m, (struct ready_id){"a\0b", 3}, NULL));
    assert_null(ready_map_get(m, rid("a")));
    assert_null(ready_map_get(m, (struct ready_id){"a\0c", 3}));
    assert_non_null(ready_map_get(m, (struct ready_id){"a\0b", 3}));
    ready_map_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gate),
        cmocka_unit_test(test_graph),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
