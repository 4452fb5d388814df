/* Fuzz target: configuration parsing (sched/config.c).
 *
 * Input: lines. "BEADS_SCHED_NAME=value" lines become the environment,
 * "--flag=value" and "--flag" lines become argv (a line after a bare flag is
 * its value, as on a command line); every other line goes to
 * config_parse_duration and config_parse_dolt_url on its own. Then
 * config_load runs on the assembled environment and argv.
 *
 * Variables and flags naming files (*_FILE) are dropped: config_load would
 * open whatever path the fuzzer made up, which tests the file system, not
 * the parser.
 *
 * Properties checked beyond memory safety (aborts when broken):
 *   - a duration that parses formats to text that parses to the same value;
 *   - a parsed DOLT_URL has user, host and database, and a port in 1-65535;
 *   - config_load fails with a non-empty message, or succeeds and then
 *     config_print never shows the agent token: unless the input sets a
 *     token itself, the harness sets one (SECRET_MARKER) and looks for it in
 *     the error text and the printout. */
#include "fuzz_targets.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "errors.h"

#define MAX_LINES 64
#define SECRET_MARKER "Qz7-fuzz-token-marker-7zQ"

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_config: property broken: %s\n", what);
        abort();
    }
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* Length of the name part of "NAME=value" (the whole line without '='). */
static size_t name_len(const char *line) { return strcspn(line, "="); }

static void fuzz_duration(const char *s)
{
    uint64_t ms = 0, again = 0;
    char buf[64];
    if (config_parse_duration(s, &ms) != 0)
        return;
    config_format_duration(ms, buf, sizeof buf);
    check(config_parse_duration(buf, &again) == 0, "formatted duration parses");
    check(again == ms, "duration round-trips through config_format_duration");
}

static void fuzz_dolt_url(const char *s)
{
    struct dolt_target t;
    char err[256];
    err[0] = '\0';
    int rc = config_parse_dolt_url(s, &t, err, sizeof err);
    if (rc == 0) {
        check(t.user && t.host && t.database, "parsed DOLT_URL has user, host and database");
        check(t.port >= 1 && t.port <= 65535, "parsed DOLT_URL port in range");
        dolt_target_free(&t);
    } else {
        check(err[0] != '\0', "DOLT_URL error has a message");
    }
}

static void fuzz_load(char **lines, size_t nlines)
{
    char *envp[MAX_LINES + 2];
    char *argv[MAX_LINES + 2];
    size_t ne = 0;
    int argc = 0;
    int token_from_input = 0, marker_in_input = 0;
    static char marker_env[] = "BEADS_SCHED_AGENT_TOKEN=" SECRET_MARKER;
    static char prog[] = "beads-sched";

    argv[argc++] = prog;
    for (size_t i = 0; i < nlines; i++) {
        char *l = lines[i];
        size_t n = name_len(l);
        if (strstr(l, SECRET_MARKER))
            marker_in_input = 1;
        if (strncmp(l, "BEADS_SCHED_", 12) == 0) {
            if (ends_with(l, n, "_FILE"))
                continue;
            if (n == strlen("BEADS_SCHED_AGENT_TOKEN") && strncmp(l, "BEADS_SCHED_AGENT_TOKEN", n) == 0)
                token_from_input = 1;
            envp[ne++] = l;
        } else if (strncmp(l, "--", 2) == 0) {
            if (ends_with(l, n, "-file"))
                continue;
            if (n == strlen("--agent-token") && strncmp(l, "--agent-token", n) == 0)
                token_from_input = 1;
            argv[argc++] = l;
        } else if (argc > 1 && !strchr(argv[argc - 1], '=') && strncmp(argv[argc - 1], "--", 2) == 0) {
            argv[argc++] = l; /* the value of a bare --flag before it */
        }
    }
    if (!token_from_input)
        envp[ne++] = marker_env;
    envp[ne] = NULL;
    argv[argc] = NULL;

    struct config cfg;
    char err[512];
    err[0] = '\0';
    int rc = config_load(&cfg, &argc, argv, envp, err, sizeof err);
    int check_secret = !token_from_input && !marker_in_input;
    if (rc != 0) {
        check(err[0] != '\0', "config_load failure has a message");
        check(!check_secret || !strstr(err, SECRET_MARKER), "config_load error hides the agent token");
        return;
    }
    check(argc >= 1 && argv[argc] == NULL, "config_load leaves argv NULL-terminated");
    (void)config_require(&cfg, CONFIG_NEED_DOLT | CONFIG_NEED_AGENT, err, sizeof err);

    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    if (f) {
        config_print(&cfg, f);
        fclose(f);
        check(!check_secret || !memmem(out, outlen, SECRET_MARKER, strlen(SECRET_MARKER)),
              "config_print hides the agent token");
        free(out);
    }
    config_free(&cfg);
}

int fuzz_config_input(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';

    char *lines[MAX_LINES];
    size_t nlines = 0;
    char *save = NULL;
    for (char *l = strtok_r(buf, "\n", &save); l && nlines < MAX_LINES; l = strtok_r(NULL, "\n", &save))
        lines[nlines++] = l;

    for (size_t i = 0; i < nlines; i++) {
        if (strncmp(lines[i], "BEADS_SCHED_", 12) != 0 && strncmp(lines[i], "--", 2) != 0) {
            fuzz_duration(lines[i]);
            fuzz_dolt_url(lines[i]);
        }
    }
    fuzz_load(lines, nlines);
    free(buf);
    return 0;
}

#ifndef BS_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_config_input(data, size); }
#endif
