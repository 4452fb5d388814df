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
#else
#define CRASH_POINT(name) ((void)0)
#endif
#endif
