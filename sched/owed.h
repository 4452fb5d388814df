#ifndef BS_OWED_H
#define BS_OWED_H
/* Notes owed to beads: a note whose write failed (Dolt trouble, a bead that
 * refused the write) waits here and is written at the next chance; one
 * whose bead moved on is dropped. Worker thread only. */
#include <stddef.h>

#include "session.h"

/* At most this many notes wait; more are dropped with an error line. */
#define OWED_NOTES_MAX 10000

struct owed_note;
struct owed {
    struct owed_note *head;
    size_t n;
};

void owed_add(struct owed *o, const char *bead_id, const char *note);
/* Writes the notes owed; those that fail again stay owed. Stops at a lost
 * connection. */
void owed_pay(struct owed *o, struct session *s, struct dolt_conn *c);
void owed_free(struct owed *o);
#endif
