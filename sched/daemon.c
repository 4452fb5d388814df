#include "daemon.h"

#include "clock.h"
#include "dolt.h"
#include "errors.h"
#include "http.h"
#include "log.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct daemon {
    uv_loop_t loop;
    const struct config *cfg;
    struct store *store;
    struct http_client *http;
    struct dolt *dolt;
    uv_signal_t sigterm, sigint;
    uv_timer_t probe_timer;
    int stopping;
    int probe_in_flight;
    int dolt_up;          /* last probe reached Dolt */
    int64_t dolt_ok_at;   /* ms of the last successful probe */
};

static void dolt_options_from(const struct config *cfg, struct dolt_options *o)
{
    memset(o, 0, sizeof *o);
    o->host = cfg->dolt.host;
    o->port = cfg->dolt.port;
    o->socket = cfg->dolt.socket;
    o->user = cfg->dolt.user;
    o->password = cfg->dolt.password;
    o->database = cfg->dolt.database;
    o->tls = cfg->dolt_tls;
    o->tls_ca = cfg->dolt_tls_ca;
}

/* ---- probe: is Dolt reachable? (the dispatcher hangs its change probe here) ---- */

static int probe_work(struct dolt_conn *c, void *arg)
{
    (void)arg;
    int rc = dolt_conn_ensure(c);
    if (rc)
        return rc;
    return dolt_query(c, "SELECT 1", NULL, 0, NULL, NULL, NULL);
}

static void probe_done(int rc, void *arg)
{
    struct daemon *d = arg;
    d->probe_in_flight = 0;
    int up = rc == 0;
    if (up != d->dolt_up) {
        if (up)
            log_info("dolt reachable");
        else
            log_warn("dolt unreachable", "error", bs_strerror(rc));
    }
    d->dolt_up = up;
    if (up)
        d->dolt_ok_at = clock_now_ms();
}

static void probe_tick(uv_timer_t *t)
{
    struct daemon *d = t->data;
    if (d->stopping || d->probe_in_flight)
        return;
    if (dolt_submit(d->dolt, probe_work, probe_done, d) == 0)
        d->probe_in_flight = 1;
}

/* ---- shutdown ---- */

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void on_dolt_stopped(void *arg)
{
    struct daemon *d = arg;
    d->dolt = NULL;
}

static void on_http_closed(void *arg)
{
    struct daemon *d = arg;
    d->http = NULL;
}

/* Starts an orderly stop: no new work; in-flight Dolt items finish (they end
 * at a journal boundary), HTTP requests are cancelled, handles close. */
static void daemon_stop(struct daemon *d)
{
    if (d->stopping)
        return;
    d->stopping = 1;
    uv_timer_stop(&d->probe_timer);
    uv_close((uv_handle_t *)&d->probe_timer, on_handle_closed);
    uv_close((uv_handle_t *)&d->sigterm, on_handle_closed);
    uv_close((uv_handle_t *)&d->sigint, on_handle_closed);
    if (d->http)
        http_client_close(d->http, on_http_closed, d);
    if (d->dolt)
        dolt_stop(d->dolt, on_dolt_stopped, d);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct daemon *d = s->data;
    log_info("stopping", "signal", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    daemon_stop(d);
}

int daemon_run(const struct config *cfg)
{
    struct daemon *d = calloc(1, sizeof *d);
    char err[512];
    int rc;
    if (!d) {
        log_error("out of memory");
        return 1;
    }
    d->cfg = cfg;
    if ((rc = store_open(&d->store, cfg->store, STORE_OPEN_DAEMON, err, sizeof err))) {
        log_error("cannot open store", "store", cfg->store, "error", err);
        free(d);
        return 1;
    }
    if (uv_loop_init(&d->loop)) {
        log_error("cannot initialise event loop");
        store_close(d->store);
        free(d);
        return 1;
    }
    d->probe_timer.data = d->sigterm.data = d->sigint.data = d;
    uv_timer_init(&d->loop, &d->probe_timer);
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);

    struct dolt_options dopts;
    dolt_options_from(cfg, &dopts);
    int failed = 0;
    if ((rc = http_client_init(&d->http, &d->loop)) || (rc = dolt_start(&d->dolt, &d->loop, &dopts))) {
        log_error("cannot start clients", "error", bs_strerror(rc));
        failed = 1;
        daemon_stop(d);
    } else {
        uv_timer_start(&d->probe_timer, probe_tick, 0, cfg->probe_interval_ms);
        log_info("started", "version", BEADS_SCHED_VERSION, "store", cfg->store,
                 "schema", LOG_INT(store_schema_version(d->store)), "dolt_host", cfg->dolt.host,
                 "dolt_db", cfg->dolt.database, "agent", cfg->agent_url);
    }

    uv_run(&d->loop, UV_RUN_DEFAULT);
    int closed = uv_loop_close(&d->loop);
    if (closed)
        log_error("event loop did not close cleanly", "error", uv_strerror(closed));
    store_close(d->store);
    free(d);
    log_info("stopped");
    return (closed || failed) ? 1 : 0;
}
