#ifndef BS_DAEMON_H
#define BS_DAEMON_H
/* The long-running scheduler: one libuv loop owning timers, signals, the
 * HTTP client and the Dolt worker's completions. daemon_run returns when a
 * SIGTERM/SIGINT has stopped everything and the loop closed cleanly. */
#include "config.h"

/* Opens the store (single-writer lock), runs the loop until a stop signal,
 * closes every handle. Returns 0 on a clean stop, 1 on a startup or
 * shutdown failure (already logged). */
int daemon_run(const struct config *cfg);
#endif
