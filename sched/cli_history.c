/* `beads-sched history [BEAD] [--json] [--limit N]`: the event log joined
 * with the journal (the store's `history` view), oldest first: the newest N
 * events (default 100, 0 = all) of one bead or of the whole store. Reads
 * the store only. Stays fast on a huge log: one index probe, then one step
 * per row shown (store_history); rows are streamed, never all held. */
#include "cli.h"

#include "errors.h"
#include "log.h"
#include "report.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HISTORY_DEFAULT_LIMIT 100
#define TABLE_FLUSH_ROWS 1000

struct history_out {
    int json;
    int64_t rows;
    struct cli_table table;
};

/* store_history callback: prints one event as a table row or a JSON array
 * element. 0 or BS_ENOMEM. */
static int print_event(const struct store_event_row *r, void *arg)
{
    struct history_out *h = arg;
    char at[40];
    cli_iso_ms(r->at, at, sizeof at);
    if (h->json) {
        json_t *o = json_object();
        json_object_set_new(o, "at", json_string(at));
        json_object_set_new(o, "at_ms", json_integer(r->at));
        json_object_set_new(o, "bead_id", cli_json_text(r->bead_id));
        json_object_set_new(o, "attempt", r->attempt ? json_integer(r->attempt) : json_null());
        json_object_set_new(o, "event", cli_json_text(r->event));
        json_object_set_new(o, "job_id", cli_json_text(r->job_id));
        json_object_set_new(o, "detail", cli_json_text(r->detail));
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!text)
            return BS_ENOMEM;
        printf("%s%s", h->rows ? "," : "", text);
        free(text);
    } else {
        char attempt[16] = "";
        if (r->attempt)
            snprintf(attempt, sizeof attempt, "%d", r->attempt);
        const char *row[] = {at, r->bead_id ? r->bead_id : "-", attempt, r->event,
                             r->job_id ? r->job_id : "", r->detail ? r->detail : ""};
        int rc = cli_table_add(&h->table, row);
        if (rc)
            return rc;
    }
    h->rows++;
    return 0;
}

/* Monotonic microseconds, for the query time logged at debug level. */
static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The arguments of `history`: [BEAD] [--json] [--limit N]. Returns 0, or 2
 * after printing what is wrong. */
static int parse_args(int argc, char **argv, const char **bead, int64_t *limit, int *json)
{
    for (int i = 0; i < argc; i++) {
        const char *value = NULL;
        if (strcmp(argv[i], "--json") == 0) {
            *json = 1;
            continue;
        }
        if (strcmp(argv[i], "--limit") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "beads-sched: --limit needs a number\n");
                return 2;
            }
            value = argv[++i];
        } else if (strncmp(argv[i], "--limit=", 8) == 0) {
            value = argv[i] + 8;
        }
        if (value) {
            if (cli_parse_count(value, limit)) {
                fprintf(stderr, "beads-sched: --limit: not a number of events (0 = all)\n");
                return 2;
            }
            continue;
        }
        if (*bead || argv[i][0] == '\0') {
            fprintf(stderr, "beads-sched: history takes at most one bead id (see beads-sched help)\n");
            return 2;
        }
        *bead = argv[i];
    }
    return 0;
}

/* Prints what comes before the rows: the JSON object's head, or sets up
 * the table. 0 or BS_ENOMEM. */
static int print_head(struct history_out *h, const char *bead, int64_t limit)
{
    if (!h->json) {
        static const char *const head[] = {"AT", "BEAD", "ATTEMPT", "EVENT", "JOB", "DETAIL"};
        return cli_table_init(&h->table, stdout, "", 6, head, TABLE_FLUSH_ROWS);
    }
    json_t *b = cli_json_text(bead);
    char *bt = b ? json_dumps(b, JSON_ENCODE_ANY) : NULL;
    json_decref(b);
    if (!bt)
        return BS_ENOMEM;
    printf("{\"bead\":%s,\"limit\":%lld,\"events\":[", bt, (long long)limit);
    free(bt);
    return 0;
}

/* Prints what comes after the rows (rc: how reading them went): the JSON
 * object's tail, or the rest of the table. Returns rc, or the table's
 * error. */
static int print_tail(struct history_out *h, int rc, int more)
{
    if (h->json) {
        if (rc == 0)
            printf("],\"more\":%s}\n", more ? "true" : "false");
    } else if (h->table.width && h->rows == 0) {
        cli_table_drop(&h->table); /* no header without rows */
    } else if (h->table.width) {
        int trc = cli_table_finish(&h->table);
        if (rc == 0)
            rc = trc;
    }
    return rc;
}

/* The note on stderr after a table: no events, or only the newest shown. */
static void print_note(const struct history_out *h, const char *bead, int64_t limit, int more)
{
    fflush(stdout); /* the note comes after the rows, also on a shared terminal */
    char *pb = bead ? cli_printable(bead) : NULL;
    if (h->rows == 0)
        fprintf(stderr, "beads-sched: no events%s%s in the store\n", pb ? " for bead " : "",
                pb ? pb : "");
    else if (more)
        fprintf(stderr, "beads-sched: only the newest %lld events are shown (--limit N, 0 = all)\n",
                (long long)limit);
    free(pb);
}

/* See cli.h. */
int cli_history(const struct config *cfg, int argc, char **argv)
{
    const char *bead = NULL;
    int64_t limit = HISTORY_DEFAULT_LIMIT;
    struct history_out h = {0};
    if (parse_args(argc, argv, &bead, &limit, &h.json))
        return 2;
    cli_quiet_logs(cfg);
    struct store *s;
    if (cli_open_store(cfg, 0, &s))
        return 1;

    int more = 0;
    int rc = print_head(&h, bead, limit);
    int64_t t0 = mono_us();
    if (rc == 0)
        rc = store_history(s, bead, limit, print_event, &h, &more);
    int64_t took = mono_us() - t0;
    log_debug("history read", "bead", bead, "limit", LOG_INT(limit), "rows", LOG_INT(h.rows),
              "query_us", LOG_INT(took));
    rc = print_tail(&h, rc, more);
    store_close(s);
    if (rc) {
        if (h.json)
            printf("\n");
        fprintf(stderr, "beads-sched: cannot read the history from %s: %s\n", cfg->store,
                bs_strerror(rc));
        return 1;
    }
    if (!h.json)
        print_note(&h, bead, limit, more);
    return 0;
}
