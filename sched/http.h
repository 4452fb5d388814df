#ifndef BS_HTTP_H
#define BS_HTTP_H
/* Asynchronous HTTP client: libcurl multi driven by libuv (curl's multi-uv
 * pattern: one uv_poll_t per socket attached with curl_multi_assign, one
 * uv_timer_t armed by the timer callback, curl_multi_info_read drained after
 * every curl_multi_socket_action). Everything runs on the loop thread; no
 * function here may be called from another thread.
 *
 * Ownership: the client is owned by its creator and freed by http_client_close
 * (asynchronously, once its uv handles are closed). A request's inputs are
 * copied at start; the response passed to the callback is owned by the client
 * and valid only during the callback. */
#include <stddef.h>
#include <uv.h>

struct http_client;

/* Connections open at once, over all requests; more requests wait. */
#define HTTP_MAX_CONNECTIONS 64

/* What happened to a request, as far as the caller's retry logic cares. */
enum http_outcome {
    HTTP_RESPONSE = 0,   /* a complete response arrived (any status code) */
    HTTP_REFUSED,        /* definitely not sent: resolve/connect failed, bad URL,
                            or the request never left (request size 0) */
    HTTP_UNKNOWN,        /* sent or possibly sent, no complete response: timeout
                            after connect, reset mid-response, partial body */
    HTTP_TOO_LARGE,      /* response body exceeded max_response; status is known,
                            body holds the first max_response bytes (none when the
                            server announced a Content-Length above the cap: that
                            reply is refused before its body is read) */
    HTTP_CANCELLED,      /* the client was closed before the request finished */
};
const char *http_outcome_name(enum http_outcome o);

struct http_request {
    const char *method;                /* "GET" or "POST" */
    const char *url;
    const char *body;                  /* POST body, may be NULL */
    size_t body_len;
    const char *const *headers;        /* NULL-terminated "Name: value" list, may be NULL */
    long connect_timeout_ms;           /* 0 = 5000 */
    long timeout_ms;                   /* total, 0 = 30000 */
    size_t max_response;               /* body cap in bytes, 0 = 1 MiB */
};

struct http_response {
    enum http_outcome outcome;
    long status;                       /* HTTP status, 0 when none arrived */
    const char *body;                  /* NUL-terminated, never NULL ("" when empty) */
    size_t body_len;
    const char *error;                 /* curl's error text, "" on success */
    double total_ms;                   /* wall time of the transfer */
};

typedef void (*http_done_cb)(const struct http_response *resp, void *arg);

int http_client_init(struct http_client **out, uv_loop_t *loop);

/* Starts a request. On success cb is called exactly once, later, on the loop
 * thread (never from inside this call). On failure (negative return) cb is
 * never called: BS_EINVAL for a bad request (method other than GET/POST,
 * a GET with a body, no URL, no cb), BS_ESTATE once http_client_close has been called, BS_ENOMEM,
 * BS_ERR if libcurl refuses the transfer. cb may start requests or close the
 * client.
 *
 * A POST is sent at most once: libcurl re-sends a request by itself when a
 * reused keep-alive connection dies without a response byte; for a POST that
 * re-send is blocked and the outcome is HTTP_UNKNOWN. A GET may be re-sent. */
int http_request_start(struct http_client *c, const struct http_request *req,
                       http_done_cb cb, void *arg);

/* Number of requests in flight. */
int http_client_pending(const struct http_client *c);

/* Cancels every request in flight (their callbacks run with HTTP_CANCELLED
 * before this returns), closes the uv handles and frees the client once they
 * are closed; on_closed (may be NULL) is called then. May be called from a
 * request callback; a second call is ignored. */
void http_client_close(struct http_client *c, void (*on_closed)(void *arg), void *arg);
#endif
