/* The single-active lock: see lease.h.
 *
 * Ownership: struct lease owns its timer and its struct dolt (worker thread
 * and connection). Fields marked "worker" are touched only by work items on
 * that worker; atomics are shared; the rest belongs to the loop thread. */
#include "lease.h"

#include "clock.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "text.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lease {
    struct dolt *worker;
    uv_timer_t timer;
    char name[LEASE_NAME_MAX + 1];
    lease_change_fn on_change;
    void *arg;
    int in_flight;            /* an upkeep item is queued or running */
    int stopping;
    int timer_closed, worker_closed;
    void (*on_closed)(void *arg);
    void *closed_arg;

    uint64_t held_gen;        /* worker: session generation holding the lock; 0 = none */
    int worker_holds;         /* worker: result of the last upkeep, read in its done */

    _Atomic int active;
    _Atomic int lost;         /* a writer's check found the lock gone; the loop learns at the next upkeep */
    _Atomic int answered;     /* the role has been decided at least once */
    _Atomic int64_t since_ms;
    _Atomic int64_t session_id; /* CONNECTION_ID() of the session holding the lock */
    _Atomic int64_t dolt_ok_ms;
    _Atomic int dolt_ok;
};

void lease_name(const char *database, const char *assignee, char *buf, size_t len)
{
    int n = snprintf(buf, len, "beads-sched/%s/%s", database ? database : "",
                     assignee ? assignee : "");
    if (n >= 0 && (size_t)n <= LEASE_NAME_MAX && (size_t)n < len)
        return;
    /* FNV-1a, 64 bits: stable across builds and machines, which is all a
     * lock name shared by every instance needs. */
    uint64_t h = TEXT_FNV1A_SEED;
    const char *parts[] = {database ? database : "", "/", assignee ? assignee : ""};
    for (size_t i = 0; i < 3; i++)
        h = text_fnv1a(h, parts[i], strlen(parts[i]));
    snprintf(buf, len, "beads-sched/#%016llx", (unsigned long long)h);
}

int lease_active(const struct lease *l) { return l ? l->active && !l->lost : 1; }
int64_t lease_since_ms(const struct lease *l) { return l ? l->since_ms : 0; }
int64_t lease_dolt_ok_ms(const struct lease *l) { return l ? l->dolt_ok_ms : 0; }
int lease_dolt_ok(const struct lease *l) { return l ? l->dolt_ok : 0; }

static int int_row(const struct dolt_row *r, void *arg)
{
    int64_t *out = arg;
    out[0] = r->ncols > 0 && r->vals[0] ? strtoll(r->vals[0], NULL, 10) : -1;
    if (r->ncols > 1)
        out[1] = r->vals[1] ? strtoll(r->vals[1], NULL, 10) : -1;
    return 0;
}

/* Worker: keeps or takes the lock. A session replaced by a reconnect lost
 * the lock with the old session, whatever the server says now. */
static int upkeep_work(struct dolt_conn *c, void *arg)
{
    struct lease *l = arg;
    int rc = dolt_conn_ensure(c);
    if (rc == 0 && l->held_gen && l->held_gen != dolt_conn_generation(c))
        l->held_gen = 0;
    int64_t v[2] = {-1, -1};
    if (rc == 0 && l->held_gen) {
        struct dolt_value p = DOLT_TEXT(l->name);
        rc = dolt_query(c, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", &p, 1, int_row, v, NULL);
        if (rc || v[0] != 1 || l->held_gen != dolt_conn_generation(c))
            l->held_gen = 0;
    } else if (rc == 0) {
        struct dolt_value p = DOLT_TEXT(l->name);
        rc = dolt_query(c, "SELECT GET_LOCK(?, 0), CONNECTION_ID()", &p, 1, int_row, v, NULL);
        if (rc == 0 && v[0] == 1) {
            l->held_gen = dolt_conn_generation(c);
            l->session_id = v[1];
        }
    }
    l->worker_holds = l->held_gen != 0;
    return rc;
}

/* lost: a writer found the lock gone since the last upkeep; whatever this
 * upkeep found, the role is announced again. */
static void set_role(struct lease *l, int active, int lost)
{
    int was = l->active, decided = l->answered;
    if (decided && was == active && !lost)
        return;
    l->active = active;
    l->answered = 1;
    l->since_ms = clock_now_ms();
    log_info(active ? "role: active (holding the lock)" : "role: standby (another instance holds the lock)",
             "lock", l->name);
    if (l->on_change)
        l->on_change(l->arg, active);
}

static void upkeep_done(int rc, void *arg)
{
    struct lease *l = arg;
    l->in_flight = 0;
    if (rc == 0) {
        l->dolt_ok_ms = clock_now_ms();
        l->dolt_ok = 1;
    } else {
        l->dolt_ok = 0;
        if (rc == BS_ECONN) /* the lock's connection is a Dolt connection too */
            metrics_count(MC_DOLT_ERRORS, "connection", 1);
    }
    if (l->stopping)
        return;
    if (!l->active) /* a standby asks Dolt nothing else */
        metrics_gauge_set(MG_DOLT_UP, rc == 0);
    if (rc && l->active)
        log_warn("lock connection failed; standing by", "lock", l->name, "error", bs_strerror(rc));
    set_role(l, rc == 0 && l->worker_holds, atomic_exchange(&l->lost, 0));
}

static void upkeep_tick(uv_timer_t *t)
{
    struct lease *l = t->data;
    if (l->stopping || l->in_flight)
        return;
    if (dolt_submit(l->worker, upkeep_work, upkeep_done, l) == 0)
        l->in_flight = 1;
}

int lease_start(struct lease **out, uv_loop_t *loop, const struct dolt_options *opts,
                const char *name, uint64_t interval_ms, lease_change_fn on_change, void *arg)
{
    *out = NULL;
    if (!name || strlen(name) > LEASE_NAME_MAX || interval_ms == 0)
        return BS_EINVAL;
    struct lease *l = calloc(1, sizeof *l);
    if (!l)
        return BS_ENOMEM;
    memcpy(l->name, name, strlen(name) + 1);
    l->on_change = on_change;
    l->arg = arg;
    int rc = dolt_start(&l->worker, loop, opts);
    if (rc) {
        free(l);
        return rc;
    }
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, upkeep_tick, 0, interval_ms);
    *out = l;
    return 0;
}

int lease_check(struct lease *l, struct dolt_conn *c)
{
    if (!l)
        return 0;
    int64_t holder = -1;
    struct dolt_value p = DOLT_TEXT(l->name);
    int64_t v[2] = {-1, -1};
    int rc = dolt_query(c, "SELECT IS_USED_LOCK(?)", &p, 1, int_row, v, NULL);
    if (rc)
        return rc;
    holder = v[0];
    if (l->active && !l->lost && holder == l->session_id)
        return 0;
    if (l->active && !atomic_exchange(&l->lost, 1)) {
        /* The loop learns it at the next upkeep; nothing more is written
         * meanwhile because every batch asks here first. */
        log_warn("lock lost; writing nothing until it is back", "lock", l->name);
    }
    return BS_ESTATE;
}

static void maybe_closed(struct lease *l)
{
    if (!l->timer_closed || !l->worker_closed)
        return;
    void (*cb)(void *) = l->on_closed;
    void *arg = l->closed_arg;
    free(l);
    if (cb)
        cb(arg);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct lease *l = h->data;
    l->timer_closed = 1;
    maybe_closed(l);
}

static void on_worker_closed(void *arg)
{
    struct lease *l = arg;
    l->worker_closed = 1;
    maybe_closed(l);
}

/* Worker: gives the lock back so a standby need not wait for the
 * connection to close. */
static int release_work(struct dolt_conn *c, void *arg)
{
    struct lease *l = arg;
    if (l->held_gen && l->held_gen == dolt_conn_generation(c)) {
        struct dolt_value p = DOLT_TEXT(l->name);
        (void)dolt_query(c, "SELECT RELEASE_LOCK(?)", &p, 1, NULL, NULL, NULL);
    }
    l->held_gen = 0;
    return 0;
}

static void release_done(int rc, void *arg) { (void)rc; (void)arg; }

void lease_stop(struct lease *l, void (*on_closed)(void *arg), void *arg)
{
    if (!l || l->stopping)
        return;
    l->stopping = 1;
    l->active = 0;
    l->on_closed = on_closed;
    l->closed_arg = arg;
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, on_timer_closed);
    (void)dolt_submit(l->worker, release_work, release_done, l);
    dolt_stop(l->worker, on_worker_closed, l);
}
