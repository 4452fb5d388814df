#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int64_t clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#ifdef BEADS_SCHED_TEST_HOOKS
    /* Test seam: a daemon whose clock is off (BEADS_SCHED_TEST_CLOCK_SKEW_MS,
     * signed). Nothing the daemon writes to a bead or compares with a
     * bead's times may depend on it. */
    const char *v = getenv("BEADS_SCHED_TEST_CLOCK_SKEW_MS");
    if (v)
        ms += strtoll(v, NULL, 10);
#endif
    return ms;
}

void clock_iso8601(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
