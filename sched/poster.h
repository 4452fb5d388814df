#ifndef BS_POSTER_H
#define BS_POSTER_H
/* The poster sends POST /execute for claimed attempts and journals what
 * came back, for the dispatcher's cycles and for recovery's owed POSTs
 * alike: dispatched and unknown in one store transaction, then the
 * `dispatched:` notes; refusals and claims given back revert the claim in
 * Dolt, then are journaled (DESIGN.md's protocol). Results that cannot be
 * journaled wait in memory and are retried; nothing the agent said is lost.
 *
 * Threads: poster_send, poster_retry and the callbacks run on the loop
 * thread; the journaling runs on the Dolt worker; results_build_bodies,
 * results_prepare_bodies and results_journal are worker functions,
 * results_render_bodies runs on any thread (results.h). */
#include <stddef.h>
#include <stdint.h>

#include "owed.h"
#include "pick.h"
#include "session.h"
#include "store.h"
#include "throttle.h"

struct poster_hooks {
    /* A refused bead may be tried again at `at`: the dispatcher looks then. */
    void (*retry_due)(void *arg, int64_t at);
    /* Everything sent was answered and journaled (rc: the first journaling
     * error, results then wait in memory or, in once mode, for recovery). */
    void (*done)(void *arg, int rc);
    void *arg;
};

struct poster;
int poster_init(struct poster **out, struct session *s, struct throttle *t, struct owed *owed,
                const struct poster_hooks *hooks);
void poster_free(struct poster *p);
/* `once`: a failed journaling is not retried (recovery settles it). */
void poster_set_once(struct poster *p, int once);

/* Loop: sends every pick of list in posting (takes the list); hooks.done runs
 * when all are answered and journaled (at once when none was sent). A send
 * may start while an earlier one is still out: hooks.done then runs once,
 * when both are over. */
void poster_send(struct poster *p, struct pick *list);
/* Loop: a send is not over (POSTs in flight, or results not journaled yet). */
int poster_busy(const struct poster *p);
/* Loop: POSTs in flight (sent, not answered). */
size_t poster_in_flight(const struct poster *p);
/* The next poster_send will send list: busy, and the POSTs it will send
 * count as in flight, from now on (a cycle that starts before they go out). */
void poster_announce(struct poster *p, const struct pick *list);
/* Loop: the last journaling of results failed; they wait for a retry. */
int poster_failing(const struct poster *p);
/* Loop: results whose journaling failed are retried when due. */
void poster_retry(struct poster *p);
#endif
