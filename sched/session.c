#include "session.h"

#include "clock.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"

#include <stdio.h>
#include <string.h>

void session_init(struct session *s, const struct config *cfg)
{
    s->cfg = cfg;
    atomic_store(&s->dolt_ok, -1);
    snprintf(s->author, sizeof s->author, "%s <%s>", cfg->actor, cfg->actor_email);
    s->writer.actor = cfg->actor;
    s->writer.author = s->author;
}

int session_writer_refresh(const struct config *cfg, struct dolt_conn *c, struct beads_schema *schema,
                           struct beads_writer *w)
{
    int rc = beads_schema_detect(c, schema);
    if (rc)
        return rc;
    w->dolt_commit = cfg->dolt_commit == DOLT_COMMIT_ON || (cfg->dolt_commit == DOLT_COMMIT_AUTO && schema->is_dolt);
    return 0;
}

int session_refresh(struct session *s, struct dolt_conn *c)
{
    return session_writer_refresh(s->cfg, c, &s->schema, &s->writer);
}

void session_count_dolt_error(int rc)
{
    if (rc == BS_ECONN)
        metrics_count(MC_DOLT_ERRORS, "connection", 1);
    else if (rc == BS_ECONFLICT)
        metrics_count(MC_DOLT_ERRORS, "conflict", 1);
    else if (rc == BS_EIO)
        metrics_count(MC_DOLT_ERRORS, "io", 1);
}

void session_write_failed(struct session *s, struct dolt_conn *c, const char *bead_id,
                          int64_t attempt_id, const char *what, int rc)
{
    session_write_failed_text(s, c ? dolt_conn_error(c) : NULL, bead_id, attempt_id, what, rc);
}

void session_write_failed_text(struct session *s, const char *server_error, const char *bead_id,
                               int64_t attempt_id, const char *what, int rc)
{
    char detail[STORE_DETAIL_MAX];
    snprintf(detail, sizeof detail, "%s not written to the bead: %s%s%.300s", what, bs_strerror(rc),
             server_error ? ": " : "", server_error ? server_error : "");
    session_count_dolt_error(rc);
    log_warn("bead write failed; only this bead is affected", "bead", bead_id, "write", what,
             "error", bs_strerror(rc), "detail", server_error);
    if (s->store && !s->dry_run)
        store_event_add(s->store, bead_id, attempt_id, "write_failed", NULL, detail, clock_now_ms());
}

void session_note_dolt(struct session *s, int rc)
{
    int ok = rc == 0;
    metrics_gauge_set(MG_DOLT_UP, ok);
    if (ok)
        atomic_store(&s->dolt_ok_ms, clock_now_ms());
    else
        session_count_dolt_error(rc);
    if (ok == atomic_load(&s->dolt_ok))
        return;
    if (ok)
        log_info("dolt reachable");
    else
        log_warn("dolt unreachable; dispatch waits", "error", bs_strerror(rc));
    atomic_store(&s->dolt_ok, ok);
}

void session_in_flight_gauge(struct session *s)
{
    int64_t active = 0;
    if (store_attempts_active_count(s->store, &active) == 0)
        metrics_gauge_set(MG_IN_FLIGHT, (double)active);
}

int session_paused(struct session *s)
{
    char v[16];
    if (s->cfg->paused)
        return 1;
    if (s->store && store_setting_get(s->store, "paused", v, sizeof v) == 0)
        return strcmp(v, "1") == 0;
    return 0;
}

int session_add_note(struct session *s, struct dolt_conn *c, const char *bead_id, const char *note)
{
    struct bead_move m = {
        .id = bead_id, .assignee = s->cfg->assignee, .from = "in_progress", .to = "in_progress",
        .note = note, .event_type = "updated", .verb = "note",
    };
    return beads_move(c, &s->schema, &s->writer, &m);
}
