/* `beads-sched status [--json]`: what the scheduler is doing, from the
 * store alone (opened read-only; Dolt and the agent are not asked):
 * paused or not, the attempts in flight, the last cycle and reap as the
 * daemon recorded them in settings, and the outcomes of the last 24 hours. */
#include "cli.h"

#include "clock.h"
#include "errors.h"
#include "report.h"

#include <stdlib.h>
#include <string.h>

#define DAY_MS (24 * 3600 * 1000LL)
#define IN_FLIGHT_MAX 1000 /* rows listed; the count is always exact */
#define SETTING_MAX 512

struct in_flight {
    struct store_attempt *v;
    size_t n, cap;
    int64_t total;
};

/* store_attempts_active callback: keeps the first IN_FLIGHT_MAX rows,
 * counts all. */
static int collect_active(const struct store_attempt *a, void *arg)
{
    struct in_flight *f = arg;
    f->total++;
    if (f->n == IN_FLIGHT_MAX)
        return 0;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        struct store_attempt *v = realloc(f->v, cap * sizeof *v);
        if (!v)
            return BS_ENOMEM;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = *a;
    return 0;
}

struct outcome {
    char state[32];
    int64_t count;
};
struct outcomes {
    struct outcome v[AS_STATE_COUNT + 4]; /* one per terminal state, room for oddities */
    size_t n;
    int64_t total;
};

/* store_outcome_counts callback: keeps each state's count and the total. */
static int collect_outcome(const char *state, int64_t count, void *arg)
{
    struct outcomes *o = arg;
    o->total += count;
    if (o->n < sizeof o->v / sizeof o->v[0]) {
        snprintf(o->v[o->n].state, sizeof o->v[o->n].state, "%s", state);
        o->v[o->n++].count = count;
    }
    return 0;
}

/* A "last_*" pair of settings as the daemon writes them. */
struct last_run {
    int present;
    char at[SETTING_MAX];      /* raw setting value */
    int64_t at_ms;             /* when the value is epoch milliseconds, else 0 */
    char result[SETTING_MAX];  /* "" when absent */
};

/* Reads settings at_key / result_key. Absent keys read as "never"; other
 * errors are returned. A value of digits only is taken as epoch
 * milliseconds; anything else (an ISO time, say) is shown as it is. */
static int read_last(struct store *s, const char *at_key, const char *result_key,
                     struct last_run *out)
{
    memset(out, 0, sizeof *out);
    int rc = store_setting_get(s, at_key, out->at, sizeof out->at);
    if (rc == BS_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    out->present = 1;
    int64_t ms;
    if (cli_parse_count(out->at, &ms) == 0 && ms > 0)
        out->at_ms = ms;
    rc = store_setting_get(s, result_key, out->result, sizeof out->result);
    return rc == BS_ENOTFOUND ? 0 : rc;
}

struct status {
    const char *store_path;
    int schema;
    int64_t now;
    int paused_store, paused_config;
    struct in_flight active;
    struct last_run cycle, reap;
    struct last_run role;       /* at = role_since, result = active | standby */
    struct outcomes done;
};

/* Everything status shows, read in one go. 0 or a store error. */
static int gather(struct store *s, const struct config *cfg, struct status *st)
{
    st->store_path = cfg->store;
    st->now = clock_now_ms();
    st->schema = store_schema_version(s);
    st->paused_config = cfg->paused;
    char v[16];
    int rc = store_setting_get(s, "paused", v, sizeof v);
    if (rc == 0)
        st->paused_store = strcmp(v, "1") == 0;
    else if (rc != BS_ENOTFOUND)
        return rc;
    if ((rc = store_attempts_active(s, collect_active, &st->active)) ||
        (rc = read_last(s, "last_cycle_at", "last_cycle_result", &st->cycle)) ||
        (rc = read_last(s, "last_reap_at", "last_reap_result", &st->reap)) ||
        (rc = read_last(s, "role_since", "role", &st->role)))
        return rc;
    return store_outcome_counts(s, st->now - DAY_MS, collect_outcome, &st->done);
}

/* ---- text ---- */

/* Prints a "last cycle"/"last reap" line: time, age and result, or never. */
static void print_last(const char *label, const struct last_run *l, int64_t now)
{
    if (!l->present) {
        printf("%-13s never\n", label);
        return;
    }
    char *result = cli_printable(l->result[0] ? l->result : "(no result recorded)");
    if (l->at_ms) {
        char iso[40], ago[32];
        cli_iso_ms(l->at_ms, iso, sizeof iso);
        cli_duration(now - l->at_ms, ago, sizeof ago);
        printf("%-13s %s (%s %s): %s\n", label, iso, ago, l->at_ms <= now ? "ago" : "ahead",
               result ? result : "");
    } else {
        char *at = cli_printable(l->at);
        printf("%-13s %s: %s\n", label, at ? at : "", result ? result : "");
        free(at);
    }
    free(result);
}

/* Prints the aligned text form. Exit status. */
static int print_text(const struct status *st)
{
    char *path = cli_printable(st->store_path);
    printf("%-13s %s (schema %d)\n", "store", path ? path : "", st->schema);
    free(path);
    if (!st->paused_store && !st->paused_config)
        printf("%-13s active\n", "dispatching");
    else
        printf("%-13s PAUSED (%s%s%s); reaping continues\n", "dispatching",
               st->paused_store ? "store flag: `beads-sched resume` clears it" : "",
               st->paused_store && st->paused_config ? "; " : "",
               st->paused_config ? "BEADS_SCHED_PAUSED=true in this configuration" : "");
    if (st->role.present && st->role.at_ms) {
        char iso[40], ago[32];
        cli_iso_ms(st->role.at_ms, iso, sizeof iso);
        cli_duration(st->now - st->role.at_ms, ago, sizeof ago);
        char *role = cli_printable(st->role.result);
        printf("%-13s %s since %s (%s ago)%s\n", "role", role ? role : "", iso, ago,
               strcmp(st->role.result, "standby") == 0
                   ? ": another instance holds the lock; this one dispatches nothing" : "");
        free(role);
    } else {
        printf("%-13s not recorded (SINGLE_ACTIVE off, or the daemon never ran)\n", "role");
    }
    print_last("last cycle", &st->cycle, st->now);
    print_last("last reap", &st->reap, st->now);

    printf("%-13s %lld attempt%s\n", "in flight", (long long)st->active.total,
           st->active.total == 1 ? "" : "s");
    int rc = 0;
    if (st->active.n > 0) {
        struct cli_table t;
        static const char *const head[] = {"BEAD", "ATTEMPT", "STATE", "JOB", "AGE", "STARTED"};
        if ((rc = cli_table_init(&t, stdout, "  ", 6, head, 0)) == 0) {
            for (size_t i = 0; i < st->active.n; i++) {
                const struct store_attempt *a = &st->active.v[i];
                char num[16], age[32], started[40];
                snprintf(num, sizeof num, "%d", a->attempt);
                cli_duration(st->now - a->created_at, age, sizeof age);
                cli_iso_ms(a->created_at, started, sizeof started);
                const char *row[] = {a->bead_id, num, attempt_state_name(a->state),
                                     a->job_id[0] ? a->job_id : "-", age, started};
                cli_table_add(&t, row);
            }
            rc = cli_table_finish(&t);
        }
        if (st->active.total > (int64_t)st->active.n)
            printf("  ... and %lld more\n", (long long)(st->active.total - (int64_t)st->active.n));
    }

    printf("%-13s ", "last 24 h");
    if (st->done.total == 0) {
        printf("no attempt finished\n");
    } else {
        printf("%lld finished:", (long long)st->done.total);
        for (size_t i = 0; i < st->done.n; i++)
            printf("%s %s %lld", i ? "," : "", st->done.v[i].state, (long long)st->done.v[i].count);
        printf("\n");
    }
    if (rc) {
        fprintf(stderr, "beads-sched: out of memory\n");
        return 1;
    }
    return 0;
}

/* ---- JSON ---- */

/* {at, at_ms, age_s, result} for a recorded run, JSON null for never. */
static json_t *last_json(const struct last_run *l, int64_t now)
{
    if (!l->present)
        return json_null();
    json_t *j = json_object();
    if (l->at_ms) {
        char iso[40];
        cli_iso_ms(l->at_ms, iso, sizeof iso);
        json_object_set_new(j, "at", json_string(iso));
        json_object_set_new(j, "at_ms", json_integer(l->at_ms));
        json_object_set_new(j, "age_s", json_integer((now - l->at_ms) / 1000));
    } else {
        json_object_set_new(j, "at", cli_json_text(l->at));
    }
    json_object_set_new(j, "result", cli_json_text(l->result[0] ? l->result : NULL));
    return j;
}

/* Prints the JSON form (one object). Exit status. */
static int print_json(const struct status *st)
{
    char iso[40];
    json_t *j = json_object();
    json_object_set_new(j, "store", cli_json_text(st->store_path));
    json_object_set_new(j, "schema_version", json_integer(st->schema));
    cli_iso_ms(st->now, iso, sizeof iso);
    json_object_set_new(j, "now", json_string(iso));
    json_object_set_new(j, "paused", json_boolean(st->paused_store || st->paused_config));
    json_object_set_new(j, "paused_store", json_boolean(st->paused_store));
    json_object_set_new(j, "paused_config", json_boolean(st->paused_config));
    json_object_set_new(j, "role", st->role.present ? cli_json_text(st->role.result) : json_null());
    if (st->role.present && st->role.at_ms) {
        cli_iso_ms(st->role.at_ms, iso, sizeof iso);
        json_object_set_new(j, "role_since", json_string(iso));
    } else {
        json_object_set_new(j, "role_since", json_null());
    }
    json_object_set_new(j, "last_cycle", last_json(&st->cycle, st->now));
    json_object_set_new(j, "last_reap", last_json(&st->reap, st->now));
    json_object_set_new(j, "in_flight_count", json_integer(st->active.total));
    json_t *arr = json_array();
    for (size_t i = 0; i < st->active.n; i++) {
        const struct store_attempt *a = &st->active.v[i];
        json_t *o = json_object();
        json_object_set_new(o, "bead_id", cli_json_text(a->bead_id));
        json_object_set_new(o, "attempt", json_integer(a->attempt));
        json_object_set_new(o, "state", json_string(attempt_state_name(a->state)));
        json_object_set_new(o, "job_id", a->job_id[0] ? cli_json_text(a->job_id) : json_null());
        json_object_set_new(o, "dispatch_id", cli_json_text(a->dispatch_id));
        cli_iso_ms(a->created_at, iso, sizeof iso);
        json_object_set_new(o, "created_at", json_string(iso));
        json_object_set_new(o, "age_s", json_integer((st->now - a->created_at) / 1000));
        json_array_append_new(arr, o);
    }
    json_object_set_new(j, "in_flight", arr);
    json_t *done = json_object();
    for (size_t i = 0; i < st->done.n; i++)
        json_object_set_new(done, st->done.v[i].state, json_integer(st->done.v[i].count));
    json_object_set_new(j, "finished_24h", done);
    json_object_set_new(j, "finished_24h_total", json_integer(st->done.total));
    return cli_json_print(j);
}

/* See cli.h. */
int cli_status(const struct config *cfg, int argc, char **argv)
{
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else {
            fprintf(stderr, "beads-sched: status takes no argument '%s' (see beads-sched help)\n",
                    argv[i]);
            return 2;
        }
    }
    cli_quiet_logs(cfg);
    struct store *s;
    if (cli_open_store(cfg, 0, &s))
        return 1;
    struct status st = {0};
    int rc = gather(s, cfg, &st);
    store_close(s);
    int status;
    if (rc) {
        fprintf(stderr, "beads-sched: cannot read the store %s: %s\n", cfg->store, bs_strerror(rc));
        status = 1;
    } else {
        status = json ? print_json(&st) : print_text(&st);
    }
    free(st.active.v);
    return status;
}
