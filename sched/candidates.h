#ifndef BS_CANDIDATES_H
#define BS_CANDIDATES_H
/* What a dispatch cycle takes: the ready beads in dispatch order (priority,
 * oldest updated_at, id), skipping those the journal says must wait; and
 * the one skip note on ready beads without acceptance criteria.
 *
 * Threads: Dolt worker (candidates_*); dispatch_bead_waits wherever its
 * store handle is used (the worker, or `explain`'s own process). */
#include <stdint.h>

#include "beads.h"
#include "poster.h"
#include "session.h"

/* How many candidate rows one page of the eligibility query reads. */
#define CANDIDATE_PAGE 256
/* How many rows a cycle (or `explain`) reads at most while skipping beads
 * that wait out a backoff or have used their attempts. */
#define CANDIDATE_SCAN_MAX 20000

/* Whether the store says a ready bead must wait: retry backoff pending
 * (its end goes to *retry_at, may be NULL), attempts used up, an attempt
 * still in flight, or the store cannot tell. s may be NULL (never waits).
 * The one rule the dispatcher and `explain` share. */
int dispatch_bead_waits(struct store *s, const struct config *cfg, const char *bead_id,
                        int64_t now, int64_t *retry_at);

struct selection {
    struct beads_ready *ready;  /* the readiness snapshot while selecting */
    long want;                  /* free agent slots */
    long chosen;                /* beads picked */
    struct pick *picks;         /* the chosen, in order (state PICK_NEW) */
    int64_t next_retry_at;      /* earliest backoff end among skipped beads, 0 = none */
    struct candidate *unready;  /* dry-run: beads that would be noted */
    size_t nunready;
};

/* Chooses up to sel->want beads into sel->picks. */
int candidates_choose(struct session *s, struct dolt_conn *c, struct selection *sel, int64_t now);
/* Notes once on each ready, agent-assigned bead without acceptance
 * criteria that it is skipped and why; again only after the bead changes.
 * A dry run keeps them in sel->unready instead. */
void candidates_note_unready(struct session *s, struct dolt_conn *c, struct selection *sel, int64_t now);
#endif
