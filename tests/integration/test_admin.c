/* The admin endpoint (sched/admin.c) on a real socket, spoken to with
 * libcurl and raw sockets: metrics, probes flipping with their callbacks,
 * 404/405, address errors, and stopping with a slow client connected. Needs
 * no MariaDB; runs under the fixture like every integration test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "errors.h"
#include "metrics.h"
#include "promtool.h"

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* What the fake daemon tells the probes; flipped by the tests while the
 * admin thread reads it. */
struct probes {
    atomic_int healthy, ready;
    char health_why[64], ready_why[64]; /* written only while the flag is 1 */
};

static int fake_healthy(void *arg, char *why, size_t len)
{
    struct probes *p = arg;
    if (atomic_load(&p->healthy))
        return 1;
    snprintf(why, len, "%s", p->health_why);
    return 0;
}

static int fake_ready(void *arg, char *why, size_t len)
{
    struct probes *p = arg;
    if (atomic_load(&p->ready))
        return 1;
    snprintf(why, len, "%s", p->ready_why);
    return 0;
}

struct env {
    struct probes probes;
    struct admin *admin;
    unsigned port;
};

static int env_open(void **state)
{
    struct env *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    atomic_store(&e->probes.healthy, 1);
    atomic_store(&e->probes.ready, 1);
    struct admin_callbacks cb = {fake_healthy, fake_ready, &e->probes};
    char err[256];
    if (admin_start(&e->admin, "127.0.0.1", 0, &cb, err, sizeof err) != 0) {
        fprintf(stderr, "admin_start: %s\n", err);
        free(e);
        return -1;
    }
    e->port = admin_port(e->admin);
    metrics_reset();
    *state = e;
    return 0;
}

static int env_close(void **state)
{
    struct env *e = *state;
    admin_stop(e->admin);
    free(e);
    return 0;
}

struct reply {
    long status;
    char *body;
    size_t len;
    char content_type[128];
    char allow[64];
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    char *nb = realloc(r->body, r->len + size * n + 1);
    if (!nb)
        return 0;
    memcpy(nb + r->len, data, size * n);
    r->len += size * n;
    nb[r->len] = '\0';
    r->body = nb;
    return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct reply *r = arg;
    size_t len = size * n;
    if (len > 6 && strncasecmp(data, "Allow:", 6) == 0) {
        size_t k = len - 6;
        while (k > 0 && (data[6 + k - 1] == '\r' || data[6 + k - 1] == '\n'))
            k--;
        snprintf(r->allow, sizeof r->allow, "%.*s", (int)k, data + 6);
    }
    return len;
}

/* One request; method "HEAD" sends no body back, body (may be NULL) is sent
 * with other methods. Fails the test on a transport error. */
static void request(const char *method, const char *url, const char *body, struct reply *r)
{
    memset(r, 0, sizeof *r);
    r->body = calloc(1, 1);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fail_msg("%s %s: %s", method, url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r->content_type, sizeof r->content_type, "%s", ct ? ct : "");
    curl_easy_cleanup(c);
}

static void get(struct env *e, const char *method, const char *path, struct reply *r)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", e->port, path);
    request(method, url, NULL, r);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A raw TCP connection to 127.0.0.1:port, for clients curl won't play. */
static int raw_connect(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* Waits up to timeout_ms for the server to close fd (EOF or reset).
 * Returns 1 when it did. */
static int closed_by_peer(int fd, int timeout_ms)
{
    double end = now_s() + timeout_ms / 1000.0;
    char buf[4096];
    for (;;) {
        int left = (int)((end - now_s()) * 1000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) <= 0)
            return 0;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return 1;
    }
}

static void test_metrics_endpoint(void **state)
{
    struct env *e = *state;
    assert_true(e->port > 0 && e->port < 65536);
    struct reply r;
    get(e, "GET", ADMIN_PATH_METRICS, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, METRICS_TYPE);
    assert_non_null(strstr(r.body, "\nbeads_sched_dispatches_total{outcome=\"dispatched\"} 0\n"));
    char *out = NULL;
    int code = test_promtool_check(r.body, &out);
    if (code != 0)
        fail_msg("promtool exited %d: %s", code, out ? out : "");
    free(out);
    free(r.body);

    /* Counters, gauges and histograms move between scrapes. */
    metrics_count(MC_DISPATCHES, "dispatched", 3);
    metrics_count(MC_CYCLES, "probe", 1);
    metrics_gauge_set(MG_IN_FLIGHT, 5);
    metrics_observe(MH_CYCLE_DURATION, 0.02);
    get(e, "GET", ADMIN_PATH_METRICS "?from=test", &r); /* a query string is ignored */
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\nbeads_sched_dispatches_total{outcome=\"dispatched\"} 3\n"));
    assert_non_null(strstr(r.body, "\nbeads_sched_cycles_total{kind=\"probe\"} 1\n"));
    assert_non_null(strstr(r.body, "\nbeads_sched_in_flight_attempts 5\n"));
    assert_non_null(strstr(r.body, "\nbeads_sched_cycle_duration_seconds_count 1\n"));
    free(r.body);

    get(e, "HEAD", ADMIN_PATH_METRICS, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, METRICS_TYPE);
    assert_int_equal(r.len, 0);
    free(r.body);
}

static void test_probes_follow_callbacks(void **state)
{
    struct env *e = *state;
    struct reply r;
    get(e, "GET", ADMIN_PATH_HEALTHZ, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    free(r.body);
    get(e, "GET", ADMIN_PATH_READYZ, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    free(r.body);

    snprintf(e->probes.health_why, sizeof e->probes.health_why, "loop stalled for 12s");
    atomic_store(&e->probes.healthy, 0);
    get(e, "GET", ADMIN_PATH_HEALTHZ, &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "loop stalled for 12s\n");
    free(r.body);
    get(e, "GET", ADMIN_PATH_READYZ, &r); /* the probes are independent */
    assert_int_equal(r.status, 200);
    free(r.body);
    get(e, "HEAD", ADMIN_PATH_HEALTHZ, &r);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.len, 0);
    free(r.body);

    snprintf(e->probes.ready_why, sizeof e->probes.ready_why, "dolt silent for 45s\nsecond line");
    atomic_store(&e->probes.ready, 0);
    get(e, "GET", ADMIN_PATH_READYZ, &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "dolt silent for 45s second line\n"); /* one line */
    free(r.body);

    e->probes.ready_why[0] = '\0'; /* no reason given: a generic one */
    get(e, "GET", ADMIN_PATH_READYZ, &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready\n");
    free(r.body);

    atomic_store(&e->probes.healthy, 1);
    atomic_store(&e->probes.ready, 1);
    get(e, "GET", ADMIN_PATH_HEALTHZ, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    get(e, "GET", ADMIN_PATH_READYZ, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    free(r.body);
}

static void test_not_found_and_methods(void **state)
{
    struct env *e = *state;
    struct reply r;
    const char *missing[] = {"/nope", "/", "/metrics/", "/metricsx", "/healthz/x", "/READYZ"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        get(e, "GET", missing[i], &r);
        if (r.status != 404)
            fail_msg("GET %s: %ld", missing[i], r.status);
        free(r.body);
    }
    get(e, "POST", "/nope", &r);
    assert_int_equal(r.status, 404);
    free(r.body);

    const char *methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
    const char *paths[] = {ADMIN_PATH_METRICS, ADMIN_PATH_HEALTHZ, ADMIN_PATH_READYZ};
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        for (size_t p = 0; p < 3; p++) {
            get(e, methods[m], paths[p], &r);
            if (r.status != 405)
                fail_msg("%s %s: %ld", methods[m], paths[p], r.status);
            assert_string_equal(r.allow, " GET, HEAD");
            free(r.body);
        }
    }
    /* A POST with a body is refused without reading it. */
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", e->port, ADMIN_PATH_METRICS);
    request("POST", url, "reset=1", &r);
    assert_int_equal(r.status, 405);
    free(r.body);
    /* The server still answers afterwards. */
    get(e, "GET", ADMIN_PATH_HEALTHZ, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
}

static void test_address_errors(void **state)
{
    struct env *e = *state;
    struct admin_callbacks cb = {0};
    struct admin *b = NULL;
    char err[256], want[64];

    assert_int_equal(admin_start(&b, "127.0.0.1", e->port, &cb, err, sizeof err), BS_EIO);
    assert_null(b);
    snprintf(want, sizeof want, "127.0.0.1:%u", e->port);
    if (!strstr(err, want) || !strstr(err, strerror(EADDRINUSE)))
        fail_msg("error does not name %s and the cause: %s", want, err);

    /* An address this host does not have (TEST-NET-1). */
    assert_int_equal(admin_start(&b, "192.0.2.1", 19464, &cb, err, sizeof err), BS_EIO);
    assert_null(b);
    if (!strstr(err, "192.0.2.1:19464") || !strstr(err, strerror(EADDRNOTAVAIL)))
        fail_msg("error does not name 192.0.2.1:19464 and the cause: %s", err);

    /* The first server is unharmed. */
    struct reply r;
    get(e, "GET", ADMIN_PATH_HEALTHZ, &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    admin_stop(NULL); /* no-op */
}

/* Hostnames and IPv6 literals (bracketed or not); NULL callbacks count as
 * healthy and ready. IPv6 is skipped where the host has no ::1. */
static void test_other_addresses(void **state)
{
    (void)state;
    const char *hosts[] = {"localhost", "::1", "[::1]"};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++) {
        struct admin *a = NULL;
        char err[256];
        int rc = admin_start(&a, hosts[i], 0, NULL, err, sizeof err);
        if (rc != 0 && strchr(hosts[i], ':') && strstr(err, strerror(EADDRNOTAVAIL))) {
            fprintf(stderr, "no IPv6 loopback here, skipped %s: %s\n", hosts[i], err);
            continue;
        }
        if (rc != 0)
            fail_msg("admin_start %s: %s", hosts[i], err);
        unsigned port = admin_port(a);
        assert_true(port > 0);
        char url[128];
        snprintf(url, sizeof url, "http://%s:%u%s",
                 strcmp(hosts[i], "localhost") == 0 ? "localhost" : "[::1]", port,
                 ADMIN_PATH_READYZ);
        struct reply r;
        request("GET", url, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "ok\n");
        free(r.body);
        admin_stop(a);
    }
}

static void test_stop_with_slow_clients(void **state)
{
    struct env *e = *state;
    /* One client sent half a request, one connected and said nothing. */
    int half = raw_connect(e->port);
    const char partial[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    assert_int_equal(send(half, partial, sizeof partial - 1, MSG_NOSIGNAL), (ssize_t)(sizeof partial - 1));
    int idle = raw_connect(e->port);

    /* They don't hold up anyone else. */
    struct reply r;
    get(e, "GET", ADMIN_PATH_METRICS, &r);
    assert_int_equal(r.status, 200);
    free(r.body);

    double t0 = now_s();
    admin_stop(e->admin);
    double took = now_s() - t0;
    e->admin = NULL;
    if (took > 1.0)
        fail_msg("admin_stop took %.3f s with slow clients connected", took);
    assert_true(closed_by_peer(half, 2000));
    assert_true(closed_by_peer(idle, 2000));
    close(half);
    close(idle);

    /* The port is free again. */
    struct admin_callbacks cb = {fake_healthy, fake_ready, &e->probes};
    char err[256];
    assert_int_equal(admin_start(&e->admin, "127.0.0.1", e->port, &cb, err, sizeof err), 0);
    assert_int_equal(admin_port(e->admin), e->port);
}

/* A client that stalls mid-request is dropped after the connection timeout
 * (3 s: a few seconds, so a slowloris cannot hold slots), not kept forever. */
static void test_slow_client_times_out(void **state)
{
    struct env *e = *state;
    int fd = raw_connect(e->port);
    const char partial[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    assert_int_equal(send(fd, partial, sizeof partial - 1, MSG_NOSIGNAL), (ssize_t)(sizeof partial - 1));
    double t0 = now_s();
    assert_true(closed_by_peer(fd, 20000));
    double took = now_s() - t0;
    close(fd);
    if (took < 2.0 || took > 8.0)
        fail_msg("stalled client dropped after %.1f s, expected about 3 s", took);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics_endpoint, env_open, env_close),
        cmocka_unit_test_setup_teardown(test_probes_follow_callbacks, env_open, env_close),
        cmocka_unit_test_setup_teardown(test_not_found_and_methods, env_open, env_close),
        cmocka_unit_test_setup_teardown(test_address_errors, env_open, env_close),
        cmocka_unit_test(test_other_addresses),
        cmocka_unit_test_setup_teardown(test_stop_with_slow_clients, env_open, env_close),
        cmocka_unit_test_setup_teardown(test_slow_client_times_out, env_open, env_close),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
