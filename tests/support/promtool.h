#ifndef BS_TEST_PROMTOOL_H
#define BS_TEST_PROMTOOL_H
/* Validates Prometheus text with the real promtool ($PROMTOOL, default
 * /usr/bin/promtool). */

/* Runs `promtool check metrics` with text on stdin. Returns its exit code
 * (0: valid, no lint problems), or -1 when it could not be run or took
 * longer than 30 s. *output (may be NULL) gets what it printed on stdout and
 * stderr, malloc'd; the caller frees it. */
int test_promtool_check(const char *text, char **output);
#endif
