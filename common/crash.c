#include "crash.h"

#ifdef BEADS_SCHED_TEST_HOOKS
#include "log.h"

#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void crash_point(const char *name)
{
    static atomic_long hits;
    const char *want = getenv("BEADS_SCHED_CRASH_AT");
    if (!want)
        return;
    size_t n = strcspn(want, ":");
    if (strlen(name) != n || strncmp(want, name, n) != 0)
        return;
    long nth = want[n] == ':' ? strtol(want + n + 1, NULL, 10) : 1;
    if (atomic_fetch_add(&hits, 1) + 1 < nth)
        return;
    log_warn("crash point reached, killing process", "point", name);
    raise(SIGKILL);
    _exit(137); /* not reached */
}

void test_pause(const char *name)
{
    char var[96];
    snprintf(var, sizeof var, "BEADS_SCHED_TEST_%s_MS", name);
    const char *v = getenv(var);
    long ms = v ? strtol(v, NULL, 10) : 0;
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}
#endif
