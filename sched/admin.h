#ifndef BS_ADMIN_H
#define BS_ADMIN_H
/* The admin endpoint on LISTEN: Prometheus metrics and health probes, served
 * by libmicrohttpd on its own thread so it never blocks the loop. Nothing
 * else is served (404), no secret is ever rendered.
 *
 * The paths are part of the deployment contract: ops/k8s and ops/terraform
 * point their probes and scrape annotations at them, and a consistency test
 * checks they agree with these definitions. */
#include <stddef.h>

#define ADMIN_PATH_METRICS "/metrics"
#define ADMIN_PATH_HEALTHZ "/healthz" /* 200 while the loop is turning, else 503 */
#define ADMIN_PATH_READYZ "/readyz"   /* 200 when the store is open and Dolt answered lately */

struct admin;

/* Called on the admin thread; must only read atomics or take short locks.
 * Each returns 1 for healthy/ready, 0 otherwise, and may fill why (a short
 * reason shown in the 503 body). */
struct admin_callbacks {
    int (*healthy)(void *arg, char *why, size_t len);
    int (*ready)(void *arg, char *why, size_t len);
    void *arg;
};

/* Starts serving on host:port. Returns 0, or BS_EIO with err naming the
 * address (e.g. port in use). */
int admin_start(struct admin **out, const char *host, unsigned port,
                const struct admin_callbacks *cb, char *err, size_t errlen);
/* Port actually bound (useful when port 0 was asked for). */
unsigned admin_port(const struct admin *a);
/* Stops the server and joins its thread; a is freed. NULL is a no-op. */
void admin_stop(struct admin *a);
#endif
