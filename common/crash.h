#ifndef BS_CRASH_H
#define BS_CRASH_H
/* Crash points: test builds (BEADS_SCHED_TEST_HOOKS) can kill the process
 * at each boundary of the journal, chosen at run time by
 *   BEADS_SCHED_CRASH_AT=<point>[:<n>]   (die at the n-th pass, default 1)
 * The process dies by SIGKILL, as kill -9 would: no cleanup, no flush.
 * Release builds compile every point out. */
#ifdef BEADS_SCHED_TEST_HOOKS
void crash_point(const char *name);
#define CRASH_POINT(name) crash_point(name)
/* Sleeps BEADS_SCHED_TEST_<name>_MS milliseconds if that is set: widens a
 * race window (e.g. between the reaper's read and its write) for a test. */
void test_pause(const char *name);
#define TEST_PAUSE(name) test_pause(name)
#else
#define CRASH_POINT(name) ((void)0)
#define TEST_PAUSE(name) ((void)0)
#endif
#endif
