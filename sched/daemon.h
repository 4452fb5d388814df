#ifndef BS_DAEMON_H
#define BS_DAEMON_H
/* The long-running scheduler: one libuv loop owning timers, signals, the
 * HTTP client and the Dolt worker's completions. */
#include "config.h"

struct daemon_opts {
    int once;     /* run one dispatch cycle, then stop */
    int dry_run;  /* print what would be dispatched; write nothing anywhere */
};

/* Opens the store (single-writer lock; read-only in dry-run), runs until a
 * stop signal (or, with once, until one cycle ended), closes every handle.
 * Returns the process exit status: 0 on a clean stop (and, with once, a
 * cycle that ran), 1 otherwise (already logged). */
int daemon_run(const struct config *cfg, const struct daemon_opts *opts);
#endif
