#include "throttle.h"

#include "attempt.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bead_list_free(struct bead_list *l)
{
    while (l) {
        struct bead_list *n = l->next;
        free(l->bead_id);
        free(l);
        l = n;
    }
}

void bead_list_join(struct bead_list **a, struct bead_list *b)
{
    while (*a)
        a = &(*a)->next;
    *a = b;
}

void throttle_init(struct throttle *t, const struct config *cfg)
{
    memset(t, 0, sizeof *t);
    t->cfg = cfg;
}

void throttle_free(struct throttle *t) { bead_list_free(t->deferred); }

int throttle_gate_closed(const struct throttle *t) { return t->gate == GATE_TOKEN || t->gate == GATE_URL; }

void throttle_gate_close(struct throttle *t, enum agent_gate why, long status)
{
    if (t->gate != why) {
        log_error(why == GATE_TOKEN ? "agent service refuses our token; no claims until it accepts it"
                                    : "agent service URL answers 404 on /execute; no claims until it works",
                  "status", LOG_INT(status), "url", t->cfg->agent_url);
        t->gate_steps = 1;
    } else {
        t->gate_steps++;
    }
    t->gate = why;
    atomic_store(&t->gate_reason, why);
    t->gate_check_at = clock_now_ms() + attempt_backoff_ms(GATE_BACKOFF_MS, t->gate_steps, GATE_BACKOFF_CAP_MS);
    metrics_gauge_set(MG_AGENT_TOKEN_REFUSED, why == GATE_TOKEN);
    metrics_gauge_set(MG_AGENT_URL_WRONG, why == GATE_URL);
}

void throttle_gate_open(struct throttle *t)
{
    if (throttle_gate_closed(t))
        log_info("agent service accepts our token again; claims resume");
    t->gate = GATE_OPEN;
    atomic_store(&t->gate_reason, GATE_OPEN);
    t->gate_steps = 0;
    metrics_gauge_set(MG_AGENT_TOKEN_REFUSED, 0);
    metrics_gauge_set(MG_AGENT_URL_WRONG, 0);
}

void throttle_full(struct throttle *t, long status, const char *detail)
{
    int64_t base = (int64_t)t->cfg->retry_backoff_ms;
    if (base < FULL_BACKOFF_MIN_MS)
        base = FULL_BACKOFF_MIN_MS;
    int first = t->full_steps == 0;
    if (first || clock_now_ms() >= t->full_until_ms) /* one doubling per round, not per bead */
        t->full_steps++;
    int64_t backoff = attempt_backoff_ms(base, t->full_steps, FULL_BACKOFF_CAP_MS);
    t->full_until_ms = clock_now_ms() + backoff;
    t->full_load = t->last_load;
    metrics_gauge_set(MG_AGENT_FULL_BACKOFF, (double)backoff / 1000.0);
    if (first)
        log_warn("agent service is full or unreachable; claims given back, dispatch backs off",
                 "status", LOG_INT(status), "detail", detail, "backoff_ms", LOG_INT(backoff));
}

void throttle_accepted(struct throttle *t)
{
    if (t->deferred)
        t->undefer = 1;
    if (t->full_steps) {
        t->full_steps = 0;
        t->full_until_ms = 0;
        metrics_gauge_set(MG_AGENT_FULL_BACKOFF, 0);
        log_info("agent service takes jobs again");
    }
    if (t->gate != GATE_OPEN)
        throttle_gate_open(t);
}

void throttle_defer(struct throttle *t, const char *bead_id)
{
    if (t->ndeferred >= DEFERRED_MAX)
        return;
    struct bead_list *n = calloc(1, sizeof *n);
    if (n && (n->bead_id = strdup(bead_id))) {
        n->next = t->deferred;
        t->deferred = n;
        t->ndeferred++;
    } else {
        free(n);
    }
}

int throttle_cycle_allowed(const struct throttle *t, int64_t now, int once)
{
    if (t->cfg->mode == MODE_BEADBOARD || once)
        return 1;
    if (throttle_gate_closed(t) && now < t->gate_check_at)
        return 0; /* the token is refused: nothing to claim until the next check */
    if (t->full_until_ms && now < t->full_until_ms)
        return 0; /* the service said it is full: wait out the backoff */
    return 1;
}

void throttle_health(struct throttle *t, long load, long *want, struct bead_list **due)
{
    t->last_load = load;
    if (t->deferred && load < t->full_load) {
        /* Jobs ended since the service said full: the beads it refused
         * then need not wait any more. */
        bead_list_join(due, t->deferred);
        t->deferred = NULL;
        t->ndeferred = 0;
    }
    if (t->full_steps && *want > 1)
        *want = 1; /* it said full lately: one bead until it takes one */
}

struct bead_list *throttle_take_due(struct throttle *t)
{
    if (!t->undefer)
        return NULL;
    struct bead_list *l = t->deferred;
    t->deferred = NULL;
    t->ndeferred = 0;
    t->undefer = 0;
    return l;
}

void throttle_untake(struct throttle *t, struct bead_list *l)
{
    if (!l)
        return;
    bead_list_join(&l, t->deferred);
    t->deferred = l;
    t->undefer = 1;
}

int throttle_waiting(const struct throttle *t) { return throttle_gate_closed(t) || t->full_until_ms; }

int throttle_refusing(const struct throttle *t, char *why, size_t len)
{
    switch ((enum agent_gate)atomic_load(&t->gate_reason)) {
    case GATE_TOKEN:
        snprintf(why, len, "agent refuses our token (HTTP 401/403): check AGENT_TOKEN");
        return 1;
    case GATE_URL:
        snprintf(why, len, "agent URL answers 404 on /execute: check AGENT_URL");
        return 1;
    default:
        return 0;
    }
}
