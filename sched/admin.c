/* The admin endpoint: libmicrohttpd on one internal polling thread serving
 * /metrics, /healthz and /readyz. The listening socket is bound here rather
 * than by libmicrohttpd so a bind failure is reported with its own errno.
 *
 * Ownership: struct admin owns the MHD daemon, which owns the listening
 * socket once MHD_start_daemon succeeded; admin_stop frees both. */
#include "admin.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Scrapers and probes need a handful of connections. A slow or hostile
 * client (slowloris: many connections, each sending a request a byte at a
 * time) must not starve the probes: each address gets at most a few
 * connections, an idle connection is dropped after a few seconds, and there
 * are enough slots for many addresses at once (MHD polls with epoll, so the
 * count is not bound by FD_SETSIZE). A probe from an address that is not
 * flooding always finds a slot. */
#define ADMIN_CONNECTION_LIMIT 512u
#define ADMIN_PER_IP_CONNECTION_LIMIT 8u
#define ADMIN_CONNECTION_TIMEOUT_S 3u
#define ADMIN_LISTEN_BACKLOG 128

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_CONTENT_TYPE "text/plain; charset=utf-8"

struct admin {
    struct MHD_Daemon *mhd;
    struct admin_callbacks cb; /* copied at start; function pointers may be NULL */
    unsigned port;
};

/* Routes libmicrohttpd's own messages (bind/accept failures, resource
 * limits) into our log, one line each. */
__attribute__((format(printf, 2, 0)))
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn("admin http server", "detail", msg);
}

/* Queues a response whose body is copied (or owned, when must_free) and
 * returns what MHD_queue_response said. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
                             char *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, mode);
    if (!resp) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO; /* MHD closes the connection */
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_static(struct MHD_Connection *conn, unsigned status,
                                    const char *body)
{
    return reply(conn, status, TEXT_CONTENT_TYPE, (char *)body, strlen(body),
                 MHD_RESPMEM_PERSISTENT);
}

/* 200 "ok\n" when check says so (or is not set), else 503 with the reason
 * on one line (control bytes blanked; fallback when the callback gave
 * none). */
static enum MHD_Result reply_probe(struct MHD_Connection *conn,
                                   int (*check)(void *, char *, size_t), void *arg,
                                   const char *fallback)
{
    char why[256] = "";
    if (!check || check(arg, why, sizeof why))
        return reply_static(conn, MHD_HTTP_OK, "ok\n");
    why[sizeof why - 1] = '\0'; /* defensive: the callback may not terminate */
    char body[sizeof why + 1];
    size_t n = 0;
    for (const char *p = why; *p; p++)
        body[n++] = ((unsigned char)*p < 0x20 || *p == 0x7f) ? ' ' : *p;
    while (n > 0 && body[n - 1] == ' ')
        n--;
    if (n == 0)
        n = (size_t)snprintf(body, sizeof body, "%s", fallback);
    body[n++] = '\n';
    return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT_CONTENT_TYPE, body, n,
                 MHD_RESPMEM_MUST_COPY);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    struct admin *a = cls;
    int metrics = strcmp(url, ADMIN_PATH_METRICS) == 0;
    int healthz = strcmp(url, ADMIN_PATH_HEALTHZ) == 0;
    int readyz = strcmp(url, ADMIN_PATH_READYZ) == 0;

    /* Every reply is decided on the first call, before any upload is read;
     * MHD then closes a connection whose body was left unread. */
    if (!metrics && !healthz && !readyz)
        return reply_static(conn, MHD_HTTP_NOT_FOUND, "not found\n");
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_static(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (healthz)
        return reply_probe(conn, a->cb.healthy, a->cb.arg, "unhealthy");
    if (readyz)
        return reply_probe(conn, a->cb.ready, a->cb.arg, "not ready");

    char *text = metrics_render();
    if (!text)
        return reply_static(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    return reply(conn, MHD_HTTP_OK, METRICS_CONTENT_TYPE, text, strlen(text),
                 MHD_RESPMEM_MUST_FREE);
}

/* "host:port", with IPv6 literals in brackets and an empty host as "*". */
static void format_address(char *out, size_t len, const char *host, unsigned port)
{
    if (!host || !*host)
        snprintf(out, len, "*:%u", port);
    else if (strchr(host, ':') && host[0] != '[')
        snprintf(out, len, "[%s]:%u", host, port);
    else
        snprintf(out, len, "%s:%u", host, port);
}

/* A non-blocking, close-on-exec socket bound to ai and listening. Returns
 * the fd, or -1 with errno set (nothing left open). */
static int listen_socket(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
        return -1;
    int on = 1, off = 0;
    /* A restart must not wait for TIME_WAIT; on Linux this still refuses a
     * port another socket listens on. */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    /* "::" means every address, IPv4 included, whatever the sysctl says. */
    if (ai->ai_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, ADMIN_LISTEN_BACKLOG) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Resolves host (literal or name; brackets around an IPv6 literal allowed;
 * empty or NULL = every address) and binds the first address that takes
 * it. Returns the listening fd and its family, or -1 with err filled. */
static int bind_address(const char *host, unsigned port, int *family, char *err, size_t errlen)
{
    char name[256];
    const char *node = NULL;
    if (host && *host) {
        size_t n = strlen(host);
        if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
            host++;
            n -= 2;
        }
        if (n >= sizeof name) {
            snprintf(err, errlen, "admin address too long: %.64s...", host);
            return -1;
        }
        memcpy(name, host, n);
        name[n] = '\0';
        node = name;
    }
    char addr[sizeof name + 16];
    format_address(addr, sizeof addr, node, port);

    char service[8];
    snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (node ? 0 : AI_PASSIVE)};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(node, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve admin address %s: %s", addr,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    int fd = -1, e = EADDRNOTAVAIL;
    for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = listen_socket(ai);
        if (fd < 0)
            e = errno;
        else
            *family = ai->ai_family;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(e));
    return fd;
}

int admin_start(struct admin **out, const char *host, unsigned port,
                const struct admin_callbacks *cb, char *err, size_t errlen)
{
    char scratch[1];
    if (!err || errlen == 0) { /* defensive: callers always pass a buffer */
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = '\0';
    *out = NULL;
    if (port > 65535) {
        snprintf(err, errlen, "admin port %u out of range", port);
        return BS_EINVAL;
    }
    int family = AF_INET;
    int fd = bind_address(host, port, &family, err, errlen);
    if (fd < 0)
        return BS_EIO;

    struct admin *a = calloc(1, sizeof *a);
    struct stat st;
    if (!a || fstat(fd, &st) != 0) {
        free(a);
        close(fd);
        snprintf(err, errlen, "out of memory");
        return BS_ENOMEM;
    }
    if (cb)
        a->cb = *cb;

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (family == AF_INET6)
        flags |= MHD_USE_IPv6;
    a->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, a,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, (void *)NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_CONNECTION_LIMIT, ADMIN_CONNECTION_LIMIT,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, ADMIN_PER_IP_CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, ADMIN_CONNECTION_TIMEOUT_S,
        MHD_OPTION_END);
    if (!a->mhd) {
        /* libmicrohttpd closes a socket it was given on most failure paths
         * but not all; close it only if fd still names the same socket. */
        struct stat now;
        if (fstat(fd, &now) == 0 && now.st_dev == st.st_dev && now.st_ino == st.st_ino)
            close(fd);
        free(a);
        char addr[300];
        format_address(addr, sizeof addr, host, port);
        snprintf(err, errlen, "cannot start the admin server on %s (see the log)", addr);
        return BS_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_BIND_PORT);
    a->port = info ? info->port : port;

    char addr[300];
    format_address(addr, sizeof addr, host, a->port);
    log_info("admin endpoint listening", "addr", addr);
    *out = a;
    return 0;
}

unsigned admin_port(const struct admin *a)
{
    return a ? a->port : 0;
}

void admin_stop(struct admin *a)
{
    if (!a)
        return;
    /* Closes every connection, half-read requests included, and joins the
     * polling thread; no callback runs after this returns. */
    MHD_stop_daemon(a->mhd);
    free(a);
}
