#include "owed.h"

#include "errors.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

struct owed_note {
    struct owed_note *next;
    char *bead_id;
    char *note;
};

static void note_free(struct owed_note *n)
{
    free(n->bead_id);
    free(n->note);
    free(n);
}

void owed_add(struct owed *o, const char *bead_id, const char *note)
{
    if (o->n >= OWED_NOTES_MAX) {
        log_error("too many notes owed to beads; dropping one", "bead", bead_id, "note", note);
        return;
    }
    struct owed_note *n = calloc(1, sizeof *n);
    if (!n || !(n->bead_id = strdup(bead_id)) || !(n->note = strdup(note))) {
        if (n)
            free(n->bead_id);
        free(n);
        log_error("out of memory: a note owed to a bead is dropped", "bead", bead_id, "note", note);
        return;
    }
    n->next = o->head;
    o->head = n;
    o->n++;
}

void owed_pay(struct owed *o, struct session *s, struct dolt_conn *c)
{
    struct owed_note **pp = &o->head;
    while (*pp && !session_stopping(s)) {
        struct owed_note *n = *pp;
        int rc = session_add_note(s, c, n->bead_id, n->note);
        if (rc == BS_ECONN || rc == BS_EIO || rc == BS_ECONFLICT) {
            pp = &n->next; /* Dolt trouble: keep it for later */
            if (rc == BS_ECONN) {
                atomic_store(&s->dolt_lost, 1);
                return;
            }
            continue;
        }
        if (rc == 0)
            log_info("owed note written", "bead", n->bead_id, "note", n->note);
        else /* the bead moved on (closed, reopened): the note no longer applies */
            log_info("owed note dropped: bead no longer in progress", "bead", n->bead_id, "note", n->note);
        *pp = n->next;
        note_free(n);
        o->n--;
    }
}

void owed_free(struct owed *o)
{
    while (o->head) {
        struct owed_note *n = o->head;
        o->head = n->next;
        note_free(n);
    }
    o->n = 0;
}
