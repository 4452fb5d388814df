/* The asynchronous HTTP client (sched/http.c) against the fake agent, on a
 * real uv loop; plus the fake agent's own contract (CONTRACTS.md section 2).
 * Each test starts its own fake and ends by checking uv_loop_close == 0. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "errors.h"
#include "fakeagent.h"
#include "http.h"
#include "proc.h"
#include "util.h"

#define TOKEN "test-token-1"
#define AUTH "Authorization: Bearer " TOKEN

struct env {
    struct fake_agent fa;
    uv_loop_t loop;
    struct http_client *client;   /* NULL once a test closed it itself */
    int closed;                   /* on_closed ran */
};

/* What a callback saw; body copied because the response dies with the call. */
struct result {
    int calls;
    enum http_outcome outcome;
    long status;
    char *body;
    size_t body_len;
    char error[CURL_ERROR_SIZE + 64];
    double total_ms;
    struct env *env;
    void (*then)(struct result *r); /* optional follow-up, run inside the callback */
};

static void on_done(const struct http_response *resp, void *arg)
{
    struct result *r = arg;
    r->calls++;
    r->outcome = resp->outcome;
    r->status = resp->status;
    r->body_len = resp->body_len;
    free(r->body);
    r->body = malloc(resp->body_len + 1);
    memcpy(r->body, resp->body, resp->body_len + 1);
    snprintf(r->error, sizeof r->error, "%s", resp->error);
    r->total_ms = resp->total_ms;
    if (r->then)
        r->then(r);
}

static void on_closed(void *arg)
{
    ((struct env *)arg)->closed = 1;
}

static int env_open(void **state, const char *const *fake_args)
{
    struct env *e = calloc(1, sizeof *e);
    if (!e || fake_agent_start(&e->fa, fake_args) != 0)
        return -1;
    if (uv_loop_init(&e->loop) != 0 || http_client_init(&e->client, &e->loop) != 0)
        return -1;
    *state = e;
    return 0;
}

static int setup(void **state)
{
    static const char *const args[] = {"--token", TOKEN, "--queue-limit", "1000", NULL};
    return env_open(state, args);
}

static int setup_small(void **state)
{
    static const char *const args[] = {"--token", TOKEN, "--capacity", "2", NULL};
    return env_open(state, args);
}

static int teardown(void **state)
{
    struct env *e = *state;
    int rc = 0;
    if (!e)
        return 0;
    if (e->client) {
        http_client_close(e->client, on_closed, e);
        e->client = NULL;
    }
    uv_run(&e->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&e->loop) != 0) {
        fprintf(stderr, "uv_loop_close: handles left open\n");
        rc = -1;
    }
    if (fake_agent_stop(&e->fa) != 0) {
        fprintf(stderr, "fake-agent did not exit cleanly\n");
        rc = -1;
    }
    free(e);
    return rc;
}

/* Runs the loop until *count reaches want; fails the test after timeout_ms. */
static void run_until(struct env *e, const int *count, int want, int timeout_ms)
{
    uv_update_time(&e->loop);
    uint64_t deadline = uv_now(&e->loop) + (uint64_t)timeout_ms;
    while (*count < want) {
        uv_run(&e->loop, UV_RUN_ONCE);
        uv_update_time(&e->loop);
        if (uv_now(&e->loop) > deadline)
            fail_msg("timed out waiting for %d callbacks (have %d)", want, *count);
    }
}

static void start(struct env *e, const char *method, const char *path, const char *body,
                  const char *const *headers, const struct http_request *base, struct result *r)
{
    char url[512];
    struct http_request req = base ? *base : (struct http_request){0};
    if (strncmp(path, "/", 1) == 0)
        snprintf(url, sizeof url, "%s%s", e->fa.url, path);
    else
        snprintf(url, sizeof url, "%s", path);
    req.method = method;
    req.url = url;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.headers = headers;
    r->env = e;
    assert_int_equal(http_request_start(e->client, &req, on_done, r), 0);
}

/* One request, run to completion. */
static void call(struct env *e, const char *method, const char *path, const char *body,
                 const char *const *headers, const struct http_request *base, struct result *r)
{
    start(e, method, path, body, headers, base, r);
    run_until(e, &r->calls, 1, 20000);
    assert_int_equal(r->calls, 1);
}

static json_t *body_json(const struct result *r)
{
    return json_loadb(r->body, r->body_len, 0, NULL);
}

static const char *const auth_headers[] = {AUTH, "Content-Type: application/json", NULL};
static const char *const execute_body =
    "{\"prompt\":\"close the bead\",\"agent\":\"beads-task-runner\",\"max_budget_usd\":5,"
    "\"timeout_seconds\":900,\"metadata\":{\"bead_id\":\"code-1\",\"dispatch_id\":\"d-1\",\"attempt\":1}}";

/* POSTs execute_body with the bearer token; returns the job id (static). */
static const char *post_job(struct env *e)
{
    static char id[13];
    struct result r = {0};
    call(e, "POST", "/execute", execute_body, auth_headers, NULL, &r);
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(r.status, 202);
    json_t *j = body_json(&r);
    assert_non_null(j);
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(j, "job_id")));
    json_decref(j);
    free(r.body);
    return id;
}

static json_t *get_json(struct env *e, const char *path, long want_status)
{
    struct result r = {0};
    call(e, "GET", path, NULL, auth_headers, NULL, &r);
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(r.status, want_status);
    json_t *j = body_json(&r);
    assert_non_null(j);
    free(r.body);
    return j;
}

static long stat_int(struct env *e, const char *k1, const char *k2)
{
    json_t *s = fake_agent_stats(&e->fa);
    assert_non_null(s);
    json_t *v = json_object_get(s, k1);
    if (k2)
        v = json_object_get(v, k2);
    long n = (long)json_integer_value(v);
    json_decref(s);
    return n;
}

/* A loopback port with nothing listening. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- the client ----------------------------------------------------------- */

static void test_outcome_names(void **state)
{
    (void)state;
    assert_string_equal(http_outcome_name(HTTP_RESPONSE), "response");
    assert_string_equal(http_outcome_name(HTTP_REFUSED), "refused");
    assert_string_equal(http_outcome_name(HTTP_UNKNOWN), "unknown");
    assert_string_equal(http_outcome_name(HTTP_TOO_LARGE), "too_large");
    assert_string_equal(http_outcome_name(HTTP_CANCELLED), "cancelled");
}

static void test_health_get(void **state)
{
    struct env *e = *state;
    struct result r = {0};
    call(e, "GET", "/health", NULL, NULL, NULL, &r);
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.error, "");
    assert_true(r.total_ms > 0);
    json_t *j = body_json(&r);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    assert_true(json_is_false(json_object_get(j, "busy")));
    assert_int_equal(json_integer_value(json_object_get(j, "active")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "queued")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "capacity")), 10);
    json_decref(j);
    free(r.body);
    assert_int_equal(http_client_pending(e->client), 0);
}

static void test_execute_202(void **state)
{
    struct env *e = *state;
    struct result r = {0};
    call(e, "POST", "/execute", execute_body, auth_headers, NULL, &r);
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(r.status, 202);
    json_t *j = body_json(&r);
    assert_non_null(j);
    const char *id = json_string_value(json_object_get(j, "job_id"));
    assert_non_null(id);
    assert_int_equal(strlen(id), 12);
    assert_int_equal(strspn(id, "0123456789abcdef"), 12);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "queued");
    json_decref(j);
    free(r.body);
    assert_int_equal(stat_int(e, "posts", NULL), 1);
    assert_int_equal(fake_agent_posts_for(&e->fa, "code-1"), 1);
}

static void test_unauthorized_401(void **state)
{
    struct env *e = *state;
    /* Without a JSON Content-Type the real service never reads the body as
     * JSON and answers 422 before looking at the token. */
    static const char *const json_only[] = {"Content-Type: application/json", NULL};
    static const char *const wrong[] = {"Authorization: Bearer nope", "Content-Type: application/json", NULL};
    struct result r = {0};
    call(e, "POST", "/execute", execute_body, json_only, NULL, &r);
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(r.status, 401);
    r.calls = 0;
    call(e, "POST", "/execute", execute_body, wrong, NULL, &r);
    assert_int_equal(r.status, 401);
    r.calls = 0;
    call(e, "GET", "/jobs/000000000000", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 401);
    free(r.body);
    assert_int_equal(stat_int(e, "posts", NULL), 0);

    /* A service with no token configured refuses everyone. */
    struct fake_agent bare;
    assert_int_equal(fake_agent_start(&bare, NULL), 0);
    assert_int_equal(fake_agent_execute(&bare, TOKEN, "b", NULL), 401);
    assert_int_equal(fake_agent_execute(&bare, "", "b", NULL), 401);
    assert_int_equal(fake_agent_stop(&bare), 0);
}

static void test_refused_closed_port(void **state)
{
    struct env *e = *state;
    char url[64];
    struct result r = {0};
    snprintf(url, sizeof url, "http://127.0.0.1:%d/execute", closed_port());
    call(e, "POST", url, execute_body, auth_headers, NULL, &r);
    assert_int_equal(r.outcome, HTTP_REFUSED);
    assert_int_equal(r.status, 0);
    assert_true(strlen(r.error) > 0);
    free(r.body);
}

static void test_refused_dns(void **state)
{
    struct env *e = *state;
    struct http_request base = {.connect_timeout_ms = 3000, .timeout_ms = 5000};
    struct result r = {0};
    call(e, "POST", "http://nonexistent.invalid/execute", execute_body, auth_headers, &base, &r);
    printf("# dns failure: %s (%s)\n", http_outcome_name(r.outcome), r.error);
    assert_int_equal(r.outcome, HTTP_REFUSED);
    assert_int_equal(r.status, 0);
    free(r.body);
}

static void test_refused_bad_url_and_protocol(void **state)
{
    struct env *e = *state;
    struct result r = {0};
    call(e, "GET", "http://[::1/health", NULL, NULL, NULL, &r);
    assert_int_equal(r.outcome, HTTP_REFUSED);
    r.calls = 0;
    call(e, "GET", "ftp://127.0.0.1/health", NULL, NULL, NULL, &r);
    assert_int_equal(r.outcome, HTTP_REFUSED);
    r.calls = 0;
    call(e, "GET", "file:///etc/passwd", NULL, NULL, NULL, &r);
    assert_int_equal(r.outcome, HTTP_REFUSED);
    assert_int_equal(r.body_len, 0);
    free(r.body);
}

/* A listener whose accept queue is full drops new SYNs: connect times out
 * and no request byte was sent, so the outcome is REFUSED, not UNKNOWN. */
static void test_connect_timeout_is_refused(void **state)
{
    struct env *e = *state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    int fillers[4];
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&sa, sizeof sa);
    }
    proc_sleep_ms(50);

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/execute", ntohs(sa.sin_port));
    struct http_request base = {.connect_timeout_ms = 300, .timeout_ms = 2000};
    struct result r = {0};
    call(e, "POST", url, execute_body, auth_headers, &base, &r);
    printf("# full backlog: %s (%s)\n", http_outcome_name(r.outcome), r.error);
    assert_int_equal(r.outcome, HTTP_REFUSED);
    free(r.body);
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(lfd);
}

static void test_hang_timeout_is_unknown(void **state)
{
    struct env *e = *state;
    assert_int_equal(fake_agent_config(&e->fa, "{\"hang\":true}"), 0);
    struct http_request base = {.timeout_ms = 400};
    struct result r = {0};
    call(e, "POST", "/execute", execute_body, auth_headers, &base, &r);
    printf("# hung reply: %s (%s)\n", http_outcome_name(r.outcome), r.error);
    assert_int_equal(r.outcome, HTTP_UNKNOWN);
    assert_int_equal(r.status, 0);
    /* The request did reach the service: that is why it must be UNKNOWN. */
    assert_int_equal(stat_int(e, "posts", NULL), 1);
    assert_int_equal(fake_agent_config(&e->fa, "{\"hang\":false}"), 0);
    free(r.body);
}

static void test_size_cap(void **state)
{
    struct env *e = *state;
    const size_t cap = 64 * 1024;
    struct http_request base = {.max_response = cap};
    struct result r = {0};
    assert_int_equal(fake_agent_config(&e->fa, "{\"big_body_bytes\":10485760}"), 0);
    call(e, "GET", "/health", NULL, NULL, &base, &r);
    assert_int_equal(r.outcome, HTTP_TOO_LARGE);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, cap);
    assert_int_equal(strlen(r.body), cap);
    assert_memory_equal(r.body, "{\"status\":\"ok\"", 14);
    r.calls = 0;
    call(e, "POST", "/execute", execute_body, auth_headers, &base, &r);
    assert_int_equal(r.outcome, HTTP_TOO_LARGE);
    assert_int_equal(r.status, 202);
    assert_int_equal(r.body_len, cap);

    /* Declared Content-Length above the cap: refused by the early guard
     * before any body byte is read. */
    assert_int_equal(fake_agent_config(&e->fa, "{\"big_body_chunked\":false}"), 0);
    r.calls = 0;
    call(e, "GET", "/health", NULL, NULL, &base, &r);
    assert_int_equal(r.outcome, HTTP_TOO_LARGE);
    assert_int_equal(r.status, 200);
    assert_true(r.body_len <= cap);
    printf("# content-length over cap: body_len=%zu (%s)\n", r.body_len, r.error);

    /* Exactly at the cap is fine, chunked or not. */
    assert_int_equal(fake_agent_config(&e->fa, "{\"big_body_bytes\":65536}"), 0);
    r.calls = 0;
    call(e, "GET", "/health", NULL, NULL, &base, &r);
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(r.body_len, cap);
    assert_int_equal(fake_agent_config(&e->fa, "{\"big_body_chunked\":true}"), 0);
    r.calls = 0;
    call(e, "GET", "/health", NULL, NULL, &base, &r);
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(r.body_len, cap);
    json_t *j = body_json(&r); /* padding is whitespace: still JSON */
    assert_non_null(j);
    json_decref(j);
    free(r.body);
}

static void test_malformed_and_truncated(void **state)
{
    struct env *e = *state;
    struct result r = {0};
    assert_int_equal(fake_agent_config(&e->fa, "{\"malformed\":true}"), 0);
    call(e, "GET", "/health", NULL, NULL, NULL, &r);
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(r.status, 200);
    assert_true(r.body_len > 0);
    assert_null(body_json(&r));
    r.calls = 0;
    call(e, "POST", "/execute", execute_body, auth_headers, NULL, &r);
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(r.status, 202);
    assert_null(body_json(&r));

    assert_int_equal(fake_agent_config(&e->fa, "{\"malformed\":false,\"truncated\":true}"), 0);
    r.calls = 0;
    call(e, "GET", "/health", NULL, NULL, NULL, &r);
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(r.status, 200);
    assert_true(r.body_len > 0);
    assert_memory_equal(r.body, "{\"status\":", 10);
    assert_null(body_json(&r));
    free(r.body);
}

/* A reply that dies mid-body (declared length not reached) is UNKNOWN. */
static void test_partial_body_is_unknown(void **state)
{
    struct env *e = *state;
    struct result r = {0};
    assert_int_equal(fake_agent_config(&e->fa, "{\"drop_mid_body\":true}"), 0);
    call(e, "POST", "/execute", execute_body, auth_headers, NULL, &r);
    printf("# cut reply: %s status=%ld (%s)\n", http_outcome_name(r.outcome), r.status, r.error);
    assert_int_equal(r.outcome, HTTP_UNKNOWN);
    assert_int_equal(r.status, 202);
    free(r.body);
}

/* The service acts on the POST, then closes without a reply. On a reused
 * connection libcurl would silently send it again; the client must not. */
static void test_no_reply_post_not_resent(void **state)
{
    struct env *e = *state;
    struct result r = {0};
    call(e, "GET", "/health", NULL, NULL, NULL, &r); /* leaves a kept-alive connection */
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(fake_agent_config(&e->fa, "{\"no_response\":true}"), 0);

    r.calls = 0;
    call(e, "POST", "/execute", execute_body, auth_headers, NULL, &r);
    printf("# no reply (reused connection): %s (%s)\n", http_outcome_name(r.outcome), r.error);
    assert_int_equal(r.outcome, HTTP_UNKNOWN);
    assert_int_equal(stat_int(e, "posts", NULL), 1);
    assert_int_equal(stat_int(e, "requests", "execute"), 1);

    r.calls = 0;
    call(e, "POST", "/execute", execute_body, auth_headers, NULL, &r);
    printf("# no reply (new connection): %s (%s)\n", http_outcome_name(r.outcome), r.error);
    assert_int_equal(r.outcome, HTTP_UNKNOWN);
    assert_int_equal(stat_int(e, "posts", NULL), 2);

    r.calls = 0;
    call(e, "GET", "/health", NULL, NULL, NULL, &r);
    assert_int_equal(r.outcome, HTTP_UNKNOWN);
    free(r.body);
}

static void test_force_status(void **state)
{
    struct env *e = *state;
    struct result r = {0};
    assert_int_equal(fake_agent_config(&e->fa, "{\"force_status\":503}"), 0);
    call(e, "POST", "/execute", execute_body, auth_headers, NULL, &r);
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(r.status, 503);
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "forced");
    json_decref(j);
    r.calls = 0;
    call(e, "GET", "/health", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(fake_agent_config(&e->fa, "{\"force_status_paths\":[\"health\",\"/jobs\"]}"), 0);
    r.calls = 0;
    call(e, "GET", "/health", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 503);
    r.calls = 0;
    call(e, "POST", "/execute", execute_body, auth_headers, NULL, &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(stat_int(e, "posts", NULL), 1);
    free(r.body);
}

/* All requests of a batch are inside the service at once: when the first
 * reply arrives, the fake has already counted every one of them. */
struct batch {
    struct result r[10];
    int done;
    long seen_at_first;
};

static struct batch *the_batch;

static void count_then(struct result *r)
{
    struct batch *b = the_batch;
    if (b->done++ == 0)
        b->seen_at_first = stat_int(r->env, "requests", "health");
}

static void test_latency_concurrency(void **state)
{
    struct env *e = *state;
    struct batch *b = calloc(1, sizeof *b);
    the_batch = b;
    assert_int_equal(fake_agent_config(&e->fa, "{\"latency_ms\":300}"), 0);
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < 10; i++) {
        b->r[i].then = count_then;
        start(e, "GET", "/health", NULL, NULL, NULL, &b->r[i]);
    }
    assert_int_equal(http_client_pending(e->client), 10);
    run_until(e, &b->done, 10, 20000);
    printf("# 10 requests with 300 ms latency took %.0f ms\n", (double)(uv_hrtime() - t0) / 1e6);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(b->r[i].calls, 1);
        assert_int_equal(b->r[i].outcome, HTTP_RESPONSE);
        assert_int_equal(b->r[i].status, 200);
        free(b->r[i].body);
    }
    assert_int_equal(b->seen_at_first, 10);
    assert_int_equal(http_client_pending(e->client), 0);
    free(b);
}

/* Closing with requests in flight: every callback runs with HTTP_CANCELLED
 * before http_client_close returns, and the loop closes cleanly. */
struct close_ctx {
    struct env *e;
    struct result r[3];
    int cancelled;
    int restart_rc;
    uv_timer_t poll;
    int returned;
};

static void cancel_seen(const struct http_response *resp, void *arg)
{
    struct close_ctx *c = arg;
    if (resp->outcome == HTTP_CANCELLED)
        c->cancelled++;
    /* Starting a request on a closing client fails and never calls back. */
    struct http_request req = {.method = "GET", .url = c->e->fa.url};
    c->restart_rc = http_request_start(c->e->client, &req, cancel_seen, c);
    assert_string_equal(resp->body, resp->body_len ? resp->body : "");
}

static void on_poll_timer_closed(uv_handle_t *h)
{
    (void)h;
}

static void close_when_received(uv_timer_t *t)
{
    struct close_ctx *c = t->data;
    if (stat_int(c->e, "requests", "health") + stat_int(c->e, "requests", "execute") < 3)
        return;
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, on_poll_timer_closed);
    assert_int_equal(http_client_pending(c->e->client), 3);
    http_client_close(c->e->client, on_closed, c->e);
    c->returned = c->cancelled;
}

static void test_close_in_flight(void **state)
{
    struct env *e = *state;
    struct close_ctx c = {.e = e};
    assert_int_equal(fake_agent_config(&e->fa, "{\"hang\":true}"), 0);
    struct http_request get = {.method = "GET"}, post = {.method = "POST"};
    char health[128], execute[128];
    snprintf(health, sizeof health, "%s/health", e->fa.url);
    snprintf(execute, sizeof execute, "%s/execute", e->fa.url);
    get.url = health;
    post.url = execute;
    post.body = execute_body;
    post.body_len = strlen(execute_body);
    post.headers = auth_headers;
    assert_int_equal(http_request_start(e->client, &get, cancel_seen, &c), 0);
    assert_int_equal(http_request_start(e->client, &get, cancel_seen, &c), 0);
    assert_int_equal(http_request_start(e->client, &post, cancel_seen, &c), 0);
    assert_int_equal(c.cancelled, 0); /* never called back from inside start */

    uv_timer_init(&e->loop, &c.poll);
    c.poll.data = &c;
    uv_timer_start(&c.poll, close_when_received, 20, 20);
    uv_update_time(&e->loop);
    uint64_t deadline = uv_now(&e->loop) + 10000;
    while (!e->closed && uv_now(&e->loop) < deadline)
        uv_run(&e->loop, UV_RUN_ONCE);
    assert_int_equal(c.returned, 3);
    assert_int_equal(c.cancelled, 3);
    assert_true(c.restart_rc < 0);
    assert_true(e->closed);
    e->client = NULL;
    assert_int_equal(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    assert_int_equal(uv_loop_init(&e->loop), 0); /* for teardown */
    assert_int_equal(fake_agent_config(&e->fa, "{\"hang\":false}"), 0);
}

/* A callback that closes the client while others are still in flight. */
struct close_cb_ctx {
    struct env *e;
    int first, cancelled;
};

static void close_from_cb(const struct http_response *resp, void *arg)
{
    struct close_cb_ctx *c = arg;
    if (resp->outcome == HTTP_CANCELLED) {
        c->cancelled++;
        return;
    }
    c->first++;
    http_client_close(c->e->client, on_closed, c->e);
    http_client_close(c->e->client, on_closed, c->e); /* a second close is ignored */
}

static void test_close_from_callback(void **state)
{
    struct env *e = *state;
    struct close_cb_ctx c = {.e = e};
    char health[128], stats[128];
    snprintf(health, sizeof health, "%s/health", e->fa.url);
    snprintf(stats, sizeof stats, "%s/_fake/stats", e->fa.url);
    assert_int_equal(fake_agent_config(&e->fa, "{\"latency_ms\":5000}"), 0);
    struct http_request slow = {.method = "GET", .url = health};
    struct http_request fast = {.method = "GET", .url = stats};
    assert_int_equal(http_request_start(e->client, &slow, close_from_cb, &c), 0);
    assert_int_equal(http_request_start(e->client, &slow, close_from_cb, &c), 0);
    assert_int_equal(http_request_start(e->client, &fast, close_from_cb, &c), 0);
    uv_update_time(&e->loop);
    uint64_t deadline = uv_now(&e->loop) + 10000;
    while (!e->closed && uv_now(&e->loop) < deadline)
        uv_run(&e->loop, UV_RUN_ONCE);
    assert_int_equal(c.first, 1);
    assert_int_equal(c.cancelled, 2);
    assert_true(e->closed);
    e->client = NULL;
    assert_int_equal(uv_run(&e->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    assert_int_equal(uv_loop_init(&e->loop), 0);
}

/* Callbacks may start the next request (connection reused). */
struct chain {
    struct env *e;
    int left, ok;
};

static void chain_next(const struct http_response *resp, void *arg)
{
    struct chain *ch = arg;
    if (resp->outcome == HTTP_RESPONSE && resp->status == 200)
        ch->ok++;
    if (--ch->left > 0) {
        char url[128];
        snprintf(url, sizeof url, "%s/health", ch->e->fa.url);
        struct http_request req = {.method = "GET", .url = url};
        assert_int_equal(http_request_start(ch->e->client, &req, chain_next, ch), 0);
    }
}

static void test_chain_from_callback(void **state)
{
    struct env *e = *state;
    struct chain ch = {.e = e, .left = 50};
    char url[128];
    snprintf(url, sizeof url, "%s/health", e->fa.url);
    struct http_request req = {.method = "GET", .url = url};
    assert_int_equal(http_request_start(e->client, &req, chain_next, &ch), 0);
    while (ch.left > 0 || http_client_pending(e->client) > 0)
        uv_run(&e->loop, UV_RUN_ONCE);
    assert_int_equal(ch.ok, 50);
}

static void test_many_concurrent(void **state)
{
    struct env *e = *state;
    enum { N = 200 };
    struct result *r = calloc(N, sizeof *r);
    char (*bodies)[256] = calloc(N, 256);
    int done = 0;
    for (int i = 0; i < N; i++) {
        if (i % 2) {
            snprintf(bodies[i], 256, "{\"prompt\":\"p\",\"agent\":\"a\",\"metadata\":{\"bead_id\":\"bead-%d\"}}", i);
            start(e, "POST", "/execute", bodies[i], auth_headers, NULL, &r[i]);
        } else {
            start(e, "GET", "/health", NULL, NULL, NULL, &r[i]);
        }
    }
    assert_int_equal(http_client_pending(e->client), N);
    uv_update_time(&e->loop);
    uint64_t deadline = uv_now(&e->loop) + 20000;
    while (http_client_pending(e->client) > 0 && uv_now(&e->loop) < deadline)
        uv_run(&e->loop, UV_RUN_ONCE);
    for (int i = 0; i < N; i++) {
        done += r[i].calls;
        assert_int_equal(r[i].outcome, HTTP_RESPONSE);
        assert_int_equal(r[i].status, i % 2 ? 202 : 200);
        free(r[i].body);
    }
    assert_int_equal(done, N);
    assert_int_equal(stat_int(e, "posts", NULL), N / 2);
    assert_int_equal(fake_agent_posts_for(&e->fa, "bead-7"), 1);
    free(r);
    free(bodies);
}

static void never_called(const struct http_response *resp, void *arg)
{
    (void)resp;
    (*(int *)arg)++;
}

static void test_bad_arguments(void **state)
{
    struct env *e = *state;
    int calls = 0;
    struct http_request req = {.method = "PUT", .url = e->fa.url};
    assert_int_equal(http_request_start(e->client, &req, never_called, &calls), BS_EINVAL);
    req.method = "GET";
    req.url = NULL;
    assert_int_equal(http_request_start(e->client, &req, never_called, &calls), BS_EINVAL);
    req.url = e->fa.url;
    assert_int_equal(http_request_start(e->client, &req, NULL, &calls), BS_EINVAL);
    assert_int_equal(http_client_pending(e->client), 0);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_int_equal(calls, 0);
}

/* ---- the fake agent's contract ------------------------------------------------ */

static void test_fake_forget_404(void **state)
{
    struct env *e = *state;
    char path[64];
    snprintf(path, sizeof path, "/jobs/%s", post_job(e));
    json_t *j = get_json(e, path, 200);
    json_decref(j);
    assert_int_equal(fake_agent_forget(&e->fa), 0);
    j = get_json(e, path, 404);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "Job not found");
    json_decref(j);
    assert_int_equal(stat_int(e, "posts", NULL), 1); /* counters survive a restart */
    assert_int_equal(fake_agent_posts_for(&e->fa, "code-1"), 1);
}

static void test_fake_queue_full_429(void **state)
{
    struct env *e = *state;
    assert_int_equal(fake_agent_config(&e->fa, "{\"capacity\":1,\"queue_limit\":3}"), 0);
    for (int i = 0; i < 3; i++)
        post_job(e);
    struct result r = {0};
    call(e, "POST", "/execute", execute_body, auth_headers, NULL, &r);
    assert_int_equal(r.outcome, HTTP_RESPONSE);
    assert_int_equal(r.status, 429);
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "Queue full");
    json_decref(j);
    free(r.body);
    assert_int_equal(stat_int(e, "posts", NULL), 3);
    j = get_json(e, "/health", 200);
    assert_true(json_is_true(json_object_get(j, "busy")));
    assert_int_equal(json_integer_value(json_object_get(j, "active")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "queued")), 2);
    json_decref(j);
}

static void test_fake_health_counts(void **state)
{
    struct env *e = *state;
    for (int i = 0; i < 5; i++)
        post_job(e);
    json_t *j = get_json(e, "/health", 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    assert_true(json_is_true(json_object_get(j, "busy")));
    assert_int_equal(json_integer_value(json_object_get(j, "active")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "queued")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "capacity")), 2);
    json_decref(j);
    assert_int_equal(fake_agent_complete_all(&e->fa, "completed"), 5);
    j = get_json(e, "/health", 200);
    assert_true(json_is_false(json_object_get(j, "busy")));
    assert_int_equal(json_integer_value(json_object_get(j, "active")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "queued")), 0);
    json_decref(j);
}

static void test_fake_job_ms_completion(void **state)
{
    struct env *e = *state;
    assert_int_equal(fake_agent_config(&e->fa, "{\"capacity\":1,\"job_ms\":100}"), 0);
    char ids[3][13], path[64];
    for (int i = 0; i < 3; i++)
        snprintf(ids[i], sizeof ids[i], "%s", post_job(e));
    snprintf(path, sizeof path, "/jobs/%s", ids[0]);
    json_t *j = get_json(e, path, 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "running");
    json_decref(j);
    proc_sleep_ms(400);
    char prev_finish[64] = "";
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "/jobs/%s", ids[i]);
        j = get_json(e, path, 200);
        assert_string_equal(json_string_value(json_object_get(j, "status")), "completed");
        assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 0);
        assert_null(json_object_get(j, "error")); /* the real record has no error key then */
        assert_true(json_is_string(json_object_get(j, "finished_at")));
        /* FIFO, one at a time: each starts when the previous one finished. */
        if (i > 0)
            assert_string_equal(json_string_value(json_object_get(j, "started_at")), prev_finish);
        snprintf(prev_finish, sizeof prev_finish, "%s",
                 json_string_value(json_object_get(j, "finished_at")));
        json_decref(j);
    }
}

/* The record has only the keys the real service has set so far, in its
 * order: no job_id, no finished_at while running, output/stderr/exit_code
 * once the agent exited. */
static void test_fake_job_record(void **state)
{
    struct env *e = *state;
    char path[64], id[13];
    snprintf(id, sizeof id, "%s", post_job(e));
    snprintf(path, sizeof path, "/jobs/%s", id);
    json_t *j = get_json(e, path, 200);
    static const char *const running[] = {"status", "prompt", "agent", "created_at", "metadata",
                                          "started_at"};
    size_t i = 0;
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        assert_true(i < sizeof running / sizeof *running);
        assert_string_equal(key, running[i++]);
    }
    assert_int_equal(i, sizeof running / sizeof *running);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "running");
    assert_string_equal(json_string_value(json_object_get(j, "agent")), "beads-task-runner");
    assert_string_equal(json_string_value(json_object_get(j, "prompt")), "close the bead");
    json_t *meta = json_object_get(j, "metadata");
    assert_string_equal(json_string_value(json_object_get(meta, "bead_id")), "code-1");
    assert_string_equal(json_string_value(json_object_get(meta, "dispatch_id")), "d-1");
    assert_int_equal(json_integer_value(json_object_get(meta, "attempt")), 1);
    const char *created = json_string_value(json_object_get(j, "created_at"));
    assert_non_null(created);
    assert_int_equal(strlen(created), strlen("2025-01-01T00:00:00.000000+00:00"));
    assert_int_equal(created[10], 'T');
    json_decref(j);

    assert_int_equal(fake_agent_set_job(&e->fa, id, "completed"), 200);
    j = get_json(e, path, 200);
    static const char *const done[] = {"status", "prompt", "agent", "created_at", "metadata",
                                       "started_at", "exit_code", "output", "stderr",
                                       "finished_at", "finished_epoch"};
    i = 0;
    json_object_foreach(j, key, v) {
        assert_true(i < sizeof done / sizeof *done);
        assert_string_equal(key, done[i++]);
    }
    assert_int_equal(i, sizeof done / sizeof *done);
    assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 0);
    assert_true(json_is_array(json_object_get(j, "output")));
    assert_true(json_is_real(json_object_get(j, "finished_epoch")));
    json_decref(j);

    j = get_json(e, "/jobs/ffffffffffff", 404);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), "Job not found");
    json_decref(j);
}

static void test_fake_knobs(void **state)
{
    struct env *e = *state;
    char id[13], path[64];
    snprintf(id, sizeof id, "%s", post_job(e));
    snprintf(path, sizeof path, "/jobs/%s", id);
    assert_int_equal(fake_agent_set_job(&e->fa, id, "failed"), 200);
    json_t *j = get_json(e, path, 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "failed");
    assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 1);
    assert_true(strlen(json_string_value(json_object_get(j, "stderr"))) > 0);
    assert_null(json_object_get(j, "error"));
    json_decref(j);
    assert_int_equal(fake_agent_set_job(&e->fa, "000000000000", "failed"), 404);
    assert_int_equal(fake_agent_set_job(&e->fa, id, "bogus"), 422);

    assert_int_equal(fake_agent_config(&e->fa, "{\"final_status\":\"timeout\",\"job_ms\":1}"), 0);
    snprintf(path, sizeof path, "/jobs/%s", post_job(e));
    proc_sleep_ms(20);
    j = get_json(e, path, 200);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "timeout");
    json_decref(j);

    assert_int_equal(fake_agent_config(&e->fa, "{\"nope\":1}"), -1);
    assert_int_equal(fake_agent_config(&e->fa, "{\"capacity\":\"ten\"}"), -1);
    assert_int_equal(fake_agent_config(&e->fa, "{\"final_status\":\"queued\"}"), -1);

    /* 422: bad JSON, missing prompt, wrong types. */
    struct result r = {0};
    call(e, "POST", "/execute", "{not json", auth_headers, NULL, &r);
    assert_int_equal(r.status, 422);
    j = body_json(&r);
    assert_non_null(json_object_get(j, "detail"));
    json_decref(j);
    r.calls = 0;
    call(e, "POST", "/execute", "{\"agent\":\"x\"}", auth_headers, NULL, &r);
    assert_int_equal(r.status, 422);
    r.calls = 0;
    call(e, "POST", "/execute", "{\"prompt\":\"x\",\"metadata\":[1]}", auth_headers, NULL, &r);
    assert_int_equal(r.status, 422);
    free(r.body);

    /* Per-bead counters and the job list in /_fake/stats. */
    assert_int_equal(fake_agent_execute(&e->fa, TOKEN, "code-2", NULL), 202);
    assert_int_equal(fake_agent_execute(&e->fa, TOKEN, "code-2", NULL), 202);
    json_t *s = fake_agent_stats(&e->fa);
    assert_int_equal(json_integer_value(json_object_get(s, "posts")), 4);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(s, "by_bead"), "code-1")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(s, "by_bead"), "code-2")), 2);
    json_t *jobs = json_object_get(s, "jobs");
    assert_int_equal(json_array_size(jobs), 4);
    json_t *first = json_array_get(jobs, 0);
    assert_string_equal(json_string_value(json_object_get(first, "job_id")), id);
    assert_string_equal(json_string_value(json_object_get(first, "bead_id")), "code-1");
    assert_string_equal(json_string_value(json_object_get(first, "dispatch_id")), "d-1");
    assert_int_equal(json_integer_value(json_object_get(first, "attempt")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(s, "requests"), "execute")), 7);
    json_decref(s);

    /* One log line per accepted POST. */
    size_t len = 0;
    char *log = test_read_file(e->fa.log_path, &len);
    assert_non_null(log);
    int lines = 0;
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *l = json_loads(line, 0, NULL);
        assert_non_null(l);
        assert_non_null(json_object_get(l, "job_id"));
        assert_non_null(json_object_get(l, "bead_id"));
        assert_non_null(json_object_get(l, "dispatch_id"));
        assert_non_null(json_object_get(l, "attempt"));
        assert_true(json_integer_value(json_object_get(l, "t_ms")) > 0);
        json_decref(l);
        lines++;
    }
    assert_int_equal(lines, 4);
    free(log);
}

/* Finished records go job_ttl_ms after finishing, but only when the sweep
 * runs, which is when some job finishes. */
static void test_fake_job_ttl(void **state)
{
    struct env *e = *state;
    char path[64];
    assert_int_equal(fake_agent_config(&e->fa, "{\"job_ttl_ms\":50}"), 0);
    snprintf(path, sizeof path, "/jobs/%s", post_job(e));
    char second[13];
    snprintf(second, sizeof second, "%s", post_job(e));
    assert_int_equal(fake_agent_set_job(&e->fa, path + 6, "completed"), 200);
    json_t *j = get_json(e, path, 200);
    json_decref(j);
    proc_sleep_ms(100);
    j = get_json(e, path, 200); /* expired, but nothing finished since */
    json_decref(j);
    assert_int_equal(fake_agent_set_job(&e->fa, second, "failed"), 200);
    j = get_json(e, path, 404);
    json_decref(j);
    char p2[64];
    snprintf(p2, sizeof p2, "/jobs/%s", second);
    j = get_json(e, p2, 200); /* the one that just finished stays */
    json_decref(j);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcome_names),
        cmocka_unit_test_setup_teardown(test_health_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_execute_202, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unauthorized_401, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_closed_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_dns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_bad_url_and_protocol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hang_timeout_is_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_and_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_body_is_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_reply_post_not_resent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_force_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latency_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fake_forget_404, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fake_queue_full_429, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fake_health_counts, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_fake_job_ms_completion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fake_job_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fake_knobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fake_job_ttl, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
