#ifndef BS_RESULTS_H
#define BS_RESULTS_H
/* Journaling what happens to claimed attempts, for the dispatcher, the
 * poster and recovery. Dolt worker thread only (the store and Dolt), but
 * for the dispatched notes' functions at the end, which say which. */
#include <stdint.h>

#include "owed.h"
#include "pick.h"
#include "session.h"

/* Builds the request body of every claimed pick that has none yet (from
 * its bead text, read at claim time) and frees its bead text. BS_ENOMEM
 * leaves the picks claimed. */
int results_build_bodies(struct session *s, struct pick *list);

/* Bodies built early, while the claims are in Dolt (dispatch.c):
 * results_prepare_bodies (worker: reads the store) sets the attempt number
 * each of the n picks of[] will show; results_render_bodies (any thread)
 * then builds the bodies of the picks of list so marked, reading only cfg
 * and each pick's bead, ids and shown number and writing only its body.
 * BS_ENOMEM if a body could not be built (results_build_bodies tries it
 * again). A body built for a claim that is then lost is freed with its
 * pick. */
void results_prepare_bodies(struct session *s, struct pick *const *of, size_t n);
int results_render_bodies(const struct config *cfg, struct pick *list);
/* Moves every pick in journal state `from` to `to` (AS_STATE_COUNT: to its
 * decision's first step, via or else next), in one store transaction; their
 * state follows once it is committed. */
int results_journal(struct session *s, struct pick *list, enum attempt_state from, enum attempt_state to,
                   int64_t now);
/* Journals a batch of POST results: each answer's decision (attempt_decide,
 * with the attempts the bead has used), dispatched and unknown in one
 * transaction, then the dispatched notes (a failed one is owed); refusals
 * and claims given back revert the claim in Dolt, then are journaled. Each
 * pick remembers how far it got, so a batch that failed (store locked,
 * Dolt down) is retried whole without redoing anything. */
int results_record(struct session *s, struct owed *owed, struct dolt_conn *c, struct pick *list);

/* The dispatched notes. results_record only marks them due (note_due); the
 * poster then writes them on the notes worker (s->notes), beside the next
 * claims, and hands the failed ones back to the Dolt worker:
 *   results_write_notes (the thread that owns c and the picks; schema and
 *   w are that connection's): writes the note of every pick with note_due,
 *   in batches of BEADS_BATCH_MAX (one transaction, one Dolt commit each),
 *   and sets each one's note_rc; err gets the server's text of the first
 *   failure. Reads only s->cfg; may set s->dolt_lost.
 *   results_notes_not_written: the due notes not written at all (rc).
 *   results_owe_notes (Dolt worker: the store and the owed list): the
 *   failed ones (results_note_owed) are owed, a bead that refused the
 *   write is on record; clears note_rc. */
void results_write_notes(struct session *s, const struct beads_schema *schema, const struct beads_writer *w,
                         struct dolt_conn *c, struct pick *list, char *err, size_t errlen);
void results_notes_not_written(struct pick *list, int rc);
void results_owe_notes(struct session *s, struct owed *owed, struct pick *list, const char *err);
int results_note_owed(int rc);
#endif
