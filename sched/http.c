#include "http.h"
#include "errors.h"
#include "log.h"

#include <curl/curl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HTTP_DEFAULT_CONNECT_TIMEOUT_MS 5000L
#define HTTP_DEFAULT_TIMEOUT_MS 30000L
#define HTTP_DEFAULT_MAX_RESPONSE ((size_t)1 << 20)

/* One request in flight. Owned by the client from http_request_start until
 * its callback has returned; freed by call_free. */
struct http_call {
    struct http_client *client;
    CURL *easy;
    struct curl_slist *headers;
    int is_post;
    http_done_cb cb;
    void *arg;
    char *body;                 /* response body so far, NUL-terminated once allocated */
    size_t body_len, body_cap, max_response;
    int too_large;              /* the write callback stopped at max_response */
    int send_attempts;          /* times libcurl was about to send the request */
    uint64_t start_ns;
    char errbuf[CURL_ERROR_SIZE];
    struct http_call *prev, *next;
};

/* One socket libcurl asked us to watch. Created by the socket callback,
 * attached to the socket with curl_multi_assign, freed in its close callback. */
struct http_socket {
    uv_poll_t poll;
    curl_socket_t fd;
    struct http_client *client;
    struct http_socket *prev, *next;
};

struct http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct http_call *calls;       /* in flight */
    int ncalls;
    struct http_socket *sockets;   /* polls not yet closing */
    int open_handles;              /* timer + polls whose close callback has not run */
    int driving;                   /* depth of on_poll/on_timeout frames using multi */
    int closing;
    void (*on_closed)(void *arg);
    void *closed_arg;
};

const char *http_outcome_name(enum http_outcome o)
{
    switch (o) {
    case HTTP_RESPONSE: return "response";
    case HTTP_REFUSED: return "refused";
    case HTTP_UNKNOWN: return "unknown";
    case HTTP_TOO_LARGE: return "too_large";
    case HTTP_CANCELLED: return "cancelled";
    }
    return "?";
}

/* ---- close bookkeeping --------------------------------------------------- */

/* Called by every close callback: frees the client once the last handle is
 * closed, then tells the owner. */
static void client_handle_closed(struct http_client *c)
{
    c->open_handles--;
    if (c->closing && c->multi == NULL && c->open_handles == 0) {
        void (*on_closed)(void *) = c->on_closed;
        void *arg = c->closed_arg;
        free(c);
        if (on_closed)
            on_closed(arg);
    }
}

/* Close callbacks: the only places where handle memory is released. */
static void on_timer_closed(uv_handle_t *h)
{
    client_handle_closed(h->data);
}

static void on_poll_closed(uv_handle_t *h)
{
    struct http_socket *s = h->data;
    struct http_client *c = s->client;
    free(s);
    client_handle_closed(c);
}

/* Stops watching a socket and starts closing its poll; the memory goes in
 * on_poll_closed. */
static void socket_close(struct http_socket *s)
{
    struct http_client *c = s->client;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->sockets = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_poll_closed);
}

/* ---- requests -------------------------------------------------------------- */

/* Takes call out of the client's in-flight list (not out of the multi). */
static void call_unlink(struct http_call *call)
{
    struct http_client *c = call->client;
    if (call->prev)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
    c->ncalls--;
}

/* Frees call and everything it owns; the easy handle must not be in the multi. */
static void call_free(struct http_call *call)
{
    if (call->easy)
        curl_easy_cleanup(call->easy);
    curl_slist_free_all(call->headers);
    free(call->body);
    free(call);
}

/* Body cap: keeps at most max_response bytes. Returning less than asked
 * makes libcurl fail the transfer with CURLE_WRITE_ERROR, which
 * call_outcome reads as HTTP_TOO_LARGE because too_large is set. */
static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct http_call *call = userdata;
    size_t n = size * nmemb;
    size_t room = call->max_response - call->body_len;
    size_t take = n < room ? n : room;
    if (call->body_len + take + 1 > call->body_cap) {
        size_t cap = call->body_cap ? call->body_cap : 4096;
        while (cap < call->body_len + take + 1)
            cap *= 2;
        if (cap > call->max_response + 1)
            cap = call->max_response + 1;
        char *nb = realloc(call->body, cap);
        if (!nb)
            return 0; /* CURLE_WRITE_ERROR without too_large: HTTP_UNKNOWN */
        call->body = nb;
        call->body_cap = cap;
    }
    memcpy(call->body + call->body_len, ptr, take);
    call->body_len += take;
    call->body[call->body_len] = '\0';
    if (take < n) {
        call->too_large = 1;
        return 0;
    }
    return n;
}

/* libcurl calls this right before it sends the request, on a new or a reused
 * connection. A second call means libcurl is about to send the request again
 * by itself: it does so when a reused connection died without a single
 * response byte, assuming the server closed it before reading. That
 * assumption is wrong when the server processed the request and then lost the
 * connection, so a POST (not idempotent) is never re-sent: the transfer is
 * aborted and reported as HTTP_UNKNOWN. A GET may be retried. */
static int on_prereq(void *clientp, char *conn_primary_ip, char *conn_local_ip,
                     int conn_primary_port, int conn_local_port)
{
    struct http_call *call = clientp;
    call->send_attempts++;
    if (call->is_post && call->send_attempts > 1)
        return CURL_PREREQFUNC_ABORT;
    return CURL_PREREQFUNC_OK;
}

/* Classifies a finished transfer for the caller's retry logic.
 *
 * The question is "could the server have acted on this request?".
 * - CURLE_OK: a complete response arrived, whatever its status.
 * - The body cap (our write callback, or CURLE_FILESIZE_EXCEEDED from a
 *   Content-Length above the cap): the server answered; HTTP_TOO_LARGE.
 * - libcurl re-sent the request on its own (send_attempts > 1): an earlier
 *   attempt was written to a connection that then died, so the server may
 *   have it: HTTP_UNKNOWN, whatever the last attempt's error.
 * - Resolve failure, connect failure, malformed URL, disallowed protocol:
 *   no connection to the server ever existed: HTTP_REFUSED.
 * - Any other failure with CURLINFO_REQUEST_SIZE == 0: libcurl counts request
 *   bytes as they are handed to the socket, so 0 means not one byte of the
 *   request left this process (e.g. a connect timeout, a TLS handshake
 *   failure, a send that failed outright): HTTP_REFUSED.
 * - Everything else (timeout after sending, reset while receiving, empty
 *   reply, partial body, a send error mid-request, anything unexpected):
 *   bytes went out, the server may have acted: HTTP_UNKNOWN. When unsure,
 *   UNKNOWN is the safe answer: the caller must not blindly re-send. */
static enum http_outcome call_outcome(struct http_call *call, CURLcode rc)
{
    if (rc == CURLE_OK)
        return HTTP_RESPONSE;
    if ((rc == CURLE_WRITE_ERROR && call->too_large) || rc == CURLE_FILESIZE_EXCEEDED)
        return HTTP_TOO_LARGE;
    if (call->send_attempts > 1)
        return HTTP_UNKNOWN;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return HTTP_REFUSED;
    default:
        break;
    }
    long request_size = -1;
    if (curl_easy_getinfo(call->easy, CURLINFO_REQUEST_SIZE, &request_size) == CURLE_OK &&
        request_size == 0)
        return HTTP_REFUSED;
    return HTTP_UNKNOWN;
}

/* Reports a call to its owner and frees it. The call must already be out of
 * the multi handle and out of the client's list. */
static void call_finish(struct http_call *call, enum http_outcome outcome, CURLcode rc)
{
    struct http_response resp;
    long status = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    resp.outcome = outcome;
    resp.status = status;
    resp.body = call->body ? call->body : "";
    resp.body_len = call->body_len;
    if (outcome == HTTP_CANCELLED)
        resp.error = "cancelled: client closed";
    else if (rc == CURLE_OK)
        resp.error = "";
    else
        resp.error = call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc);
    resp.total_ms = (double)(uv_hrtime() - call->start_ns) / 1e6;
    if (outcome != HTTP_RESPONSE)
        log_debug("http request failed", "method", call->is_post ? "POST" : "GET",
                  "outcome", http_outcome_name(outcome), "status", LOG_INT(status),
                  "curl", resp.error);
    call->cb(&resp, call->arg);
    call_free(call);
}

/* Drains every finished transfer. Stops early if a callback closed the client
 * (close removed the remaining transfers from the multi handle). */
static void client_drain(struct http_client *c)
{
    CURLMsg *msg;
    int left;
    while (!c->closing && (msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result; /* msg is invalid after remove_handle */
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        struct http_call *call = (struct http_call *)priv;
        curl_multi_remove_handle(c->multi, easy);
        call_unlink(call);
        call_finish(call, call_outcome(call, rc), rc);
    }
}

/* Second half of http_client_close, run once no frame is using the multi
 * handle: libcurl closes its cached connections (socket callbacks close their
 * polls), then the remaining uv handles are closed. */
static void client_release(struct http_client *c)
{
    if (c->multi == NULL)
        return;
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    /* Defensive: libcurl announces every socket removal, but never leave a
     * poll open behind it. */
    while (c->sockets)
        socket_close(c->sockets);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/* Runs curl_multi_socket_action and everything it finished. */
static void client_drive(struct http_client *c, curl_socket_t fd, int ev_bitmask)
{
    int running;
    c->driving++;
    CURLMcode mc = curl_multi_socket_action(c->multi, fd, ev_bitmask, &running);
    if (mc != CURLM_OK)
        log_error("curl_multi_socket_action failed", "error", curl_multi_strerror(mc));
    client_drain(c);
    c->driving--;
    if (c->closing && c->driving == 0)
        client_release(c);
}

static void on_timeout(uv_timer_t *t)
{
    client_drive(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct http_socket *s = p->data;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    /* The socket callback may close s during the action; client_drive does
     * not touch s. */
    client_drive(s->client, s->fd, flags);
}

/* CURLMOPT_SOCKETFUNCTION: keep one uv_poll_t per socket in step with what
 * libcurl wants to wait for. Returns -1 (fails the transfer) if the poll
 * cannot be set up. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct http_client *c = userp;
    struct http_socket *s = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(c->multi, fd, NULL);
            socket_close(s);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        int rc = uv_poll_init_socket(c->loop, &s->poll, fd);
        if (rc < 0) {
            log_error("uv_poll_init_socket failed", "error", uv_strerror(rc));
            free(s);
            return -1;
        }
        s->fd = fd;
        s->client = c;
        s->poll.data = s;
        s->next = c->sockets;
        if (c->sockets)
            c->sockets->prev = s;
        c->sockets = s;
        c->open_handles++;
        curl_multi_assign(c->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    int rc = uv_poll_start(&s->poll, events, on_poll);
    if (rc < 0) {
        log_error("uv_poll_start failed", "error", uv_strerror(rc));
        return -1;
    }
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms the timer; libcurl is called from
 * on_timeout, never from here. 0 means "as soon as possible": the timer fires
 * on the next loop iteration. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_client *c = userp;
    if (c->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

int http_client_init(struct http_client **out, uv_loop_t *loop)
{
    struct http_client *c = calloc(1, sizeof *c);
    if (!c)
        return BS_ENOMEM;
    c->loop = loop;
    c->multi = curl_multi_init();
    if (!c->multi) {
        log_error("curl_multi_init failed");
        free(c);
        return BS_ENOMEM;
    }
    int rc = uv_timer_init(loop, &c->timer);
    if (rc < 0) {
        log_error("uv_timer_init failed", "error", uv_strerror(rc));
        curl_multi_cleanup(c->multi);
        free(c);
        return BS_ERR;
    }
    c->timer.data = c;
    c->open_handles = 1;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    /* A burst (a cycle's POSTs, a reap pass's job checks) must not open
     * thousands of sockets at once: a server may drop what it cannot
     * accept, which turns a POST into an ambiguous outcome. Beyond the cap
     * requests wait inside libcurl; one that times out before it was sent
     * reports HTTP_REFUSED (nothing left), which is safe to retry. */
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)HTTP_MAX_CONNECTIONS);
    *out = c;
    return 0;
}

/* Case-insensitive "does this header line set name?". */
static int header_is(const char *line, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* Builds the easy handle for req. Returns 0 or a negative error; on error the
 * caller frees call (and its easy handle). */
static int call_setup(struct http_call *call, const struct http_request *req)
{
    CURL *e = call->easy;
    long connect_ms = req->connect_timeout_ms > 0 ? req->connect_timeout_ms
                                                  : HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
    long total_ms = req->timeout_ms > 0 ? req->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;
    int has_expect = 0;
    CURLcode rc = CURLE_OK;

    if (req->headers) {
        for (const char *const *h = req->headers; *h; h++) {
            struct curl_slist *nl = curl_slist_append(call->headers, *h);
            if (!nl)
                return BS_ENOMEM;
            call->headers = nl;
            if (header_is(*h, "Expect"))
                has_expect = 1;
        }
    }
    if (call->is_post && !has_expect) {
        /* No "Expect: 100-continue" round trip for large bodies. */
        struct curl_slist *nl = curl_slist_append(call->headers, "Expect:");
        if (!nl)
            return BS_ENOMEM;
        call->headers = nl;
    }

#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PRIVATE, (void *)call);
    SET(CURLOPT_ERRORBUFFER, call->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    /* HTTP/1.1 only: call_outcome reasons about request bytes on one stream. */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SET(CURLOPT_TIMEOUT_MS, total_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)call->max_response);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, (void *)call);
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, (void *)call);
    if (call->headers)
        SET(CURLOPT_HTTPHEADER, call->headers);
    if (call->is_post) {
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
        /* Copies the body now: the caller's buffer may go after we return. */
        SET(CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
    } else {
        SET(CURLOPT_HTTPGET, 1L);
    }
#undef SET
    if (rc != CURLE_OK) {
        log_error("curl_easy_setopt failed", "error", curl_easy_strerror(rc));
        return rc == CURLE_OUT_OF_MEMORY ? BS_ENOMEM : BS_EINVAL;
    }
    return 0;
}

int http_request_start(struct http_client *c, const struct http_request *req,
                       http_done_cb cb, void *arg)
{
    if (!c || !req || !cb || !req->url || !req->method)
        return BS_EINVAL;
    if (c->closing)
        return BS_ESTATE;
    int is_post;
    if (strcmp(req->method, "GET") == 0)
        is_post = 0;
    else if (strcmp(req->method, "POST") == 0)
        is_post = 1;
    else
        return BS_EINVAL;
    if (req->body && req->body_len > 0 && !is_post)
        return BS_EINVAL;

    struct http_call *call = calloc(1, sizeof *call);
    if (!call)
        return BS_ENOMEM;
    call->client = c;
    call->is_post = is_post;
    call->cb = cb;
    call->arg = arg;
    call->max_response = req->max_response > 0 ? req->max_response : HTTP_DEFAULT_MAX_RESPONSE;
    call->easy = curl_easy_init();
    if (!call->easy) {
        call_free(call);
        return BS_ENOMEM;
    }
    int rc = call_setup(call, req);
    if (rc < 0) {
        call_free(call);
        return rc;
    }
    call->start_ns = uv_hrtime();
    CURLMcode mc = curl_multi_add_handle(c->multi, call->easy);
    if (mc != CURLM_OK) {
        log_error("curl_multi_add_handle failed", "error", curl_multi_strerror(mc));
        call_free(call);
        return mc == CURLM_OUT_OF_MEMORY ? BS_ENOMEM : BS_ERR;
    }
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    c->ncalls++;
    return 0;
}

int http_client_pending(const struct http_client *c)
{
    return c->ncalls;
}

void http_client_close(struct http_client *c, void (*on_closed)(void *arg), void *arg)
{
    if (c->closing)
        return; /* defensive: a second close is ignored */
    c->closing = 1;
    c->on_closed = on_closed;
    c->closed_arg = arg;
    uv_timer_stop(&c->timer);
    while (c->calls) {
        struct http_call *call = c->calls;
        curl_multi_remove_handle(c->multi, call->easy);
        call_unlink(call);
        call_finish(call, HTTP_CANCELLED, CURLE_OK);
    }
    /* Inside on_poll/on_timeout the multi handle is still in use up the
     * stack: client_drive finishes the close when it unwinds. */
    if (c->driving == 0)
        client_release(c);
}
