#include "clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int64_t clock_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_now_ms(void)
{
    int64_t ms = clock_real_ms();
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

void clock_utc(int64_t ms, enum clock_utc_form form, char *buf, size_t len)
{
    if (len == 0)
        return;
    int64_t sec = ms / 1000;
    int frac = (int)(ms % 1000);
    if (frac < 0) {
        sec -= 1;
        frac += 1000;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        buf[0] = '\0';
        return;
    }
    int year = tm.tm_year + 1900, mon = tm.tm_mon + 1;
    switch (form) {
    case CLOCK_UTC_ISO:
        snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", year, mon, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);
        break;
    case CLOCK_UTC_ISO_MS:
        snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, mon, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
        break;
    case CLOCK_UTC_SQL:
        snprintf(buf, len, "%04d-%02d-%02d %02d:%02d:%02d", year, mon, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);
        break;
    default:
        buf[0] = '\0';
    }
}
