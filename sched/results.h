#ifndef BS_RESULTS_H
#define BS_RESULTS_H
/* Journaling what happens to claimed attempts, for the dispatcher, the
 * poster and recovery. Dolt worker thread only (the store and Dolt). */
#include <stdint.h>

#include "owed.h"
#include "pick.h"
#include "session.h"

/* Builds the request body of every claimed pick (from its bead text, read
 * at claim time). BS_ENOMEM leaves the picks claimed. */
int results_build_bodies(struct session *s, struct pick *list);
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
#endif
