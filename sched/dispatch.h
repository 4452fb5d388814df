#ifndef BS_DISPATCH_H
#define BS_DISPATCH_H
/* The dispatcher: fills the agent's free slots with ready beads, following
 * the journal protocol (DESIGN.md): claiming -> Dolt CAS -> claimed ->
 * posting -> POST /execute -> dispatched | refused | unknown, each state
 * committed to the store before the next external step.
 *
 * Threads: dispatcher_* functions run on the loop thread. Everything that
 * blocks (Dolt, the store) runs as work items on the Dolt worker, which is
 * the only thread touching the store while the daemon runs. */
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "dolt.h"
#include "http.h"
#include "store.h"

struct dispatcher;

/* Whether the store says a ready bead must wait: retry backoff pending
 * (its end goes to *retry_at, may be NULL), attempts used up, an attempt
 * still in flight, or the store cannot tell. s may be NULL (never waits).
 * The one rule the dispatcher and `explain` share. */
int dispatch_bead_waits(struct store *s, const struct config *cfg, const char *bead_id,
                        int64_t now, int64_t *retry_at);

struct dispatch_env {
    uv_loop_t *loop;
    const struct config *cfg;
    struct store *store;        /* NULL in dry-run without a store file */
    struct dolt *dolt;
    struct http_client *http;
    int dry_run;                /* print what would be dispatched; write nothing */
    /* Called on the loop thread after each full cycle; ok = the cycle ran
     * (Dolt and the agent answered). */
    void (*on_cycle)(void *arg, int ok);
    /* Called on the Dolt worker before each batch of claims and each reap
     * pass's writes (NULL: always allowed): non-zero stops the batch, which
     * writes nothing. The single-active lock's check (lease_check). */
    int (*may_write)(struct dolt_conn *c, void *arg);
    /* Called on the loop thread after each reap pass (recovery = the first). */
    void (*on_reap)(void *arg, int recovery, int ok);
    void *arg;
};

int dispatcher_init(struct dispatcher **out, const struct dispatch_env *env);
/* The probe timer's tick: probes Dolt for changes and starts a cycle when
 * something changed or DISPATCH_INTERVAL has passed since the last one. */
void dispatcher_tick(struct dispatcher *d);
/* Starts a full cycle now (or right after the running one). */
void dispatcher_cycle(struct dispatcher *d);
/* The reap timer's tick: a reap pass (after the running cycle if any). */
void dispatcher_reap(struct dispatcher *d);
/* For `once`: start-up recovery, then one cycle, then on_cycle. */
void dispatcher_once(struct dispatcher *d);
/* Start-up recovery runs again before the next cycle: for an instance that
 * becomes active after standing by (its journal may be behind what another
 * instance did meanwhile). */
void dispatcher_recover_again(struct dispatcher *d);
/* Stop starting work; what is in flight finishes at a journal boundary. */
void dispatcher_stop(struct dispatcher *d);
void dispatcher_free(struct dispatcher *d);

/* When Dolt last answered (ms; 0 = never). Safe from any thread. */
int64_t dispatcher_dolt_ok_at(const struct dispatcher *d);
/* 1 when Dolt answered the last request made of it (a probe, a cycle's
 * reads and writes, a reap), 0 before the first answer and after any
 * connection error. Safe from any thread. */
int dispatcher_dolt_ready(const struct dispatcher *d);
/* Whether the agent service refuses our token or URL (claims stopped);
 * fills why. Safe from any thread. */
int dispatcher_agent_refusing(const struct dispatcher *d, char *why, size_t len);
#endif
