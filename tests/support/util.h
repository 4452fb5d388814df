#ifndef BS_TEST_UTIL_H
#define BS_TEST_UTIL_H
/* Small helpers shared by the tests. */
#include <stddef.h>

/* Value of a required environment variable; aborts the test run with a
 * message when it is missing (tests are started by ctest, which sets them). */
const char *test_env(const char *name);
/* Creates a fresh private directory under $TMPDIR (or /tmp); returns a
 * malloc'd path. */
char *test_tmpdir(const char *prefix);
/* Removes a directory tree (rm -rf semantics); ignores errors. */
void test_rmtree(const char *path);
/* Reads a whole file; returns a malloc'd NUL-terminated buffer or NULL. */
char *test_read_file(const char *path, size_t *len);
/* Writes a whole file; returns 0 or -1. */
int test_write_file(const char *path, const void *data, size_t len);
#endif
