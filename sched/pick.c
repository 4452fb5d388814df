#include "pick.h"

#include <stdlib.h>

void pick_free(struct pick *p)
{
    free(p->bead_id);
    free(p->cand_updated_at);
    free(p->body);
    bead_free(&p->bead);
    free(p);
}

void picks_free(struct pick *p)
{
    while (p) {
        struct pick *n = p->next;
        pick_free(p);
        p = n;
    }
}
