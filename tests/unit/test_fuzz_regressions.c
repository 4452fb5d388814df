/* Unit test: replays every input under tests/fuzz/regressions/<target>/
 * (inputs that once crashed a fuzz target) and the seed corpus
 * tests/fuzz/corpus/<target>/ through the same functions the libFuzzer
 * targets run (tests/fuzz/fuzz_targets.h), in the ordinary build, so a
 * regression fails here without clang. A broken property aborts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_targets.h"

typedef int (*fuzz_fn)(const uint8_t *data, size_t size);

/* Reads a whole file into a malloc'd buffer; fails the test on error. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

/* Feeds every regular file of $BS_SOURCE_DIR/tests/fuzz/<kind>/<target> to
 * fn; returns how many there were (0 when the directory does not exist). */
static int replay(const char *kind, const char *target, fuzz_fn fn)
{
    const char *src = getenv("BS_SOURCE_DIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/%s/%s", src ? src : ".", kind, target);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        uint8_t *data = slurp(path, &len);
        print_message("replaying %s\n", path);
        assert_int_equal(fn(data, len), 0);
        free(data);
        count++;
    }
    closedir(d);
    return count;
}

static void test_config_inputs(void **state)
{
    (void)state;
    replay("regressions", "fuzz_config", fuzz_config_input);
    assert_true(replay("corpus", "fuzz_config", fuzz_config_input) > 0);
}

static void test_agent_inputs(void **state)
{
    (void)state;
    replay("regressions", "fuzz_agent", fuzz_agent_input);
    assert_true(replay("corpus", "fuzz_agent", fuzz_agent_input) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_inputs),
        cmocka_unit_test(test_agent_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
