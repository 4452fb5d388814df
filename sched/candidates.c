/* Choosing what a dispatch cycle takes (Dolt worker thread): the ready
 * beads in dispatch order, skipping those the journal says must wait, and
 * the skip note on beads without acceptance criteria. */
#include "candidates.h"

#include "clock.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "notes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


int dispatch_bead_waits(struct store *s, const struct config *cfg, const char *bead_id,
                        int64_t now, int64_t *retry_at)
{
    if (!s)
        return 0;
    struct store_bead b;
    if (store_bead_get(s, bead_id, &b))
        return 1; /* can't tell: don't risk a duplicate */
    if (b.next_retry_at > now) {
        if (retry_at)
            *retry_at = b.next_retry_at;
        return 1;
    }
    int used = 0;
    if (store_bead_attempts_used(s, bead_id, &used) || used >= cfg->max_attempts)
        return 1;
    struct store_attempt a;
    int rc = store_attempt_latest(s, bead_id, &a);
    if (rc == 0 && !attempt_state_terminal(a.state))
        return 1;
    return rc != 0 && rc != BS_ENOTFOUND;
}

/* dispatch_bead_waits for a candidate of this cycle; a backoff's end is
 * folded into cy->next_retry_at so the dispatcher comes back for it. */
static int candidate_waits(struct session *s, struct selection *cy, const char *bead_id, int64_t now)
{
    int64_t retry_at = 0;
    int waits = dispatch_bead_waits(s->store, s->cfg, bead_id, now, &retry_at);
    if (retry_at && (cy->next_retry_at == 0 || retry_at < cy->next_retry_at))
        cy->next_retry_at = retry_at;
    return waits;
}

/* Notes once on each open, agent-assigned bead without acceptance criteria
 * that it is skipped and why; again only after the bead changes. */
void candidates_note_unready(struct session *s, struct dolt_conn *c, struct selection *cy, int64_t now)
{
    char now_dt[32];
    /* Page through all of them: the ones already noted stay in the list (a
     * person has not added criteria yet), so a fixed first page could hide
     * newer ones for ever. */
    for (size_t offset = 0; offset < CANDIDATE_SCAN_MAX && !session_stopping(s);) {
        struct candidate *v = NULL;
        size_t n = 0;
        if (beads_candidates(c, &s->schema, cy->ready, s->cfg->assignee, 0, offset, CANDIDATE_PAGE, &v, &n))
            return;
        if (s->dry_run) {
            /* Keep them for the dry-run printout (one page is plenty). */
            if (offset == 0) {
                cy->unready = v;
                cy->nunready = n;
            } else {
                candidates_free(v, n);
            }
            return;
        }
        for (size_t i = 0; i < n && !session_stopping(s); i++) {
            struct store_bead sb;
            if (store_bead_get(s->store, v[i].id, &sb) || strcmp(sb.skip_noted_at, v[i].updated_at) == 0)
                continue;
            char note[NOTES_MAX + 1];
            notes_skipped(note, sizeof note, v[i].id);
            struct bead_move m = {
                .id = v[i].id, .assignee = s->cfg->assignee, .from = "open", .to = "open",
                .expect_updated_at = v[i].updated_at, .note = note, .event_type = "updated",
                .verb = "note", .wrote_updated_at = now_dt,
            };
            int mrc = beads_move(c, &s->schema, &s->writer, &m);
            if (mrc) {
                if (mrc != BS_ESTATE && mrc != BS_ECONFLICT)
                    session_write_failed(s, c, v[i].id, 0, "skip note", mrc);
                continue; /* changed meanwhile or Dolt trouble: next cycle */
            }
            if (store_bead_set_skip_noted(s->store, v[i].id, now_dt) == 0)
                store_event_add(s->store, v[i].id, 0, "skipped_no_acceptance", NULL,
                                "noted on the bead: no acceptance criteria", now);
            log_info("bead skipped: no acceptance criteria (noted)", "bead", v[i].id);
        }
        candidates_free(v, n);
        if (n < CANDIDATE_PAGE)
            break;
        offset += n;
    }
}

/* Chooses up to cy->want beads to dispatch, in eligibility order. */
int candidates_choose(struct session *s, struct dolt_conn *c, struct selection *cy, int64_t now)
{
    struct pick **tail = &cy->picks;
    long chosen = 0;
    int rc = 0;
    for (size_t offset = 0; rc == 0 && chosen < cy->want && offset < CANDIDATE_SCAN_MAX;) {
        struct candidate *v = NULL;
        size_t n = 0;
        if ((rc = beads_candidates(c, &s->schema, cy->ready, s->cfg->assignee, 1, offset, CANDIDATE_PAGE, &v, &n)))
            break;
        /* The page's journal reads in one snapshot: one read lock, not three per bead. */
        int snap = s->store && store_read_begin(s->store) == 0;
        for (size_t i = 0; i < n && chosen < cy->want; i++) {
            if (candidate_waits(s, cy, v[i].id, now))
                continue;
            struct pick *p = calloc(1, sizeof *p);
            if (!p) {
                rc = BS_ENOMEM;
                break;
            }
            p->state = AS_STATE_COUNT; /* chosen, nothing recorded */
            p->bead_id = v[i].id;
            p->cand_updated_at = v[i].updated_at;
            p->priority = v[i].priority;
            v[i].id = v[i].updated_at = NULL;
            *tail = p;
            tail = &p->next;
            chosen++;
            cy->chosen = chosen;
        }
        if (snap)
            store_read_end(s->store);
        candidates_free(v, n);
        if (n < CANDIDATE_PAGE)
            break;
        offset += n;
    }
    if (rc)
        return rc;
    /* What the cycle found ready, up to what it looked for: with free slots
     * and ready beads, a dispatch follows; the alert on "ready but nothing
     * dispatched" reads this. */
    metrics_gauge_set(MG_READY_BEADS, (double)chosen);
    return 0;
}

