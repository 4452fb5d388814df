/* Fuzz target: configuration parsing (sched/config.c).
 *
 * Input: lines. "BEADS_SCHED_NAME=value" lines become the environment,
 * "--flag=value" and "--flag" lines become argv (a line after a bare flag is
 * its value, as on a command line); every other line goes to
 * config_parse_duration and config_parse_dolt_url on its own. Then
 * config_load runs on the assembled environment and argv.
 *
 * Variables and flags naming files (*_FILE, --*-file=): the harness writes
 * the value (with "\n" turned into a newline) into a file of its own
 * private directory and passes that path instead, so config_load reads
 * fuzzed secret and template files but never a path the fuzzer made up. A
 * bare --*-file flag is dropped.
 *
 * Properties checked beyond memory safety (aborts when broken):
 *   - a duration that parses formats to text that parses to the same value;
 *   - a parsed DOLT_URL has user, host and database, and a port in 1-65535;
 *   - config_load fails with a non-empty message, or succeeds;
 *   - secrets stay secret: the harness appends SECRET_MARKER to every agent
 *     token and to the Dolt password file's content (or sets a token of
 *     just the marker when the input has none); the marker must not appear
 *     in config_load's error text nor in config_print's output, unless the
 *     input itself contains it. */
#include "fuzz_targets.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "errors.h"

#define MAX_LINES 64 /* more lines than this are ignored */
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

/* Strings made for one input, freed together. */
struct arena {
    char *s[4 * MAX_LINES];
    size_t n;
};

static char *arena_keep(struct arena *a, char *s)
{
    if (!s || a->n == sizeof a->s / sizeof a->s[0]) {
        free(s);
        return NULL;
    }
    return a->s[a->n++] = s;
}

static char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return arena_keep(a, s);
}

static void arena_free(struct arena *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->s[i]);
    a->n = 0;
}

/* The harness's own directory for the files *_FILE variables name. */
static char file_dir[64];

static void remove_files(void)
{
    char path[sizeof file_dir + 256];
    DIR *d = opendir(file_dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", file_dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(file_dir);
}

/* Writes value (with the two characters \n as a newline) plus suffix into
 * file `name` of the private directory; returns its path, or NULL. */
static char *write_file(struct arena *a, const char *name, const char *value, const char *suffix)
{
    if (!file_dir[0]) {
        snprintf(file_dir, sizeof file_dir, "%s/bs-fuzz-config.XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(file_dir)) {
            file_dir[0] = '\0';
            return NULL;
        }
        atexit(remove_files);
    }
    char *path = arena_printf(a, "%s/%s", file_dir, name);
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f)
        return NULL;
    for (const char *p = value; *p; p++) {
        if (p[0] == '\\' && p[1] == 'n') {
            fputc('\n', f);
            p++;
        } else {
            fputc(*p, f);
        }
    }
    fputs(suffix, f);
    fclose(f);
    return path;
}

/* name is the part before '=' (n bytes): is it this variable or flag? */
static int is(const char *name, size_t n, const char *what)
{
    return n == strlen(what) && strncmp(name, what, n) == 0;
}

/* A "NAME=value" line with a file variable or flag: the same line naming
 * the harness's file holding the value (plus suffix). */
static char *file_line(struct arena *a, const char *line, size_t n, const char *suffix)
{
    const char *eq = line[n] == '=' ? line + n + 1 : NULL;
    if (!eq)
        return NULL;
    char name[32];
    snprintf(name, sizeof name, "f%zu", a->n);
    char *path = write_file(a, name, eq, suffix);
    return path ? arena_printf(a, "%.*s=%s", (int)n, line, path) : NULL;
}

static void fuzz_load(char **lines, size_t nlines)
{
    char *envp[MAX_LINES + 2];
    char *argv[MAX_LINES + 2];
    size_t ne = 0;
    int argc = 0;
    int token_set = 0, marker_in_input = 0, bare_token_flag = 0;
    static char marker_env[] = "BEADS_SCHED_AGENT_TOKEN=" SECRET_MARKER;
    static char prog[] = "beads-sched";
    struct arena a = {.n = 0};

    argv[argc++] = prog;
    for (size_t i = 0; i < nlines; i++) {
        char *l = lines[i];
        size_t n = name_len(l);
        if (strstr(l, SECRET_MARKER))
            marker_in_input = 1;
        if (strncmp(l, "BEADS_SCHED_", 12) == 0) {
            if (is(l, n, "BEADS_SCHED_AGENT_TOKEN") && l[n] == '=') {
                l = arena_printf(&a, "%s%s", l, SECRET_MARKER);
                token_set = 1;
            } else if (ends_with(l, n, "_FILE")) {
                int tok = is(l, n, "BEADS_SCHED_AGENT_TOKEN_FILE");
                int secret = tok || is(l, n, "BEADS_SCHED_DOLT_PASSWORD_FILE");
                l = file_line(&a, l, n, secret ? SECRET_MARKER : "");
                token_set |= tok && l;
            }
            if (l)
                envp[ne++] = l;
        } else if (strncmp(l, "--", 2) == 0) {
            bare_token_flag = 0;
            if (is(l, n, "--agent-token")) {
                if (l[n] == '=')
                    l = arena_printf(&a, "%s%s", l, SECRET_MARKER);
                else
                    bare_token_flag = 1;
                token_set = 1;
            } else if (ends_with(l, n, "-file")) {
                int tok = is(l, n, "--agent-token-file");
                int secret = tok || is(l, n, "--dolt-password-file");
                l = file_line(&a, l, n, secret ? SECRET_MARKER : "");
                token_set |= tok && l;
            }
            if (l)
                argv[argc++] = l;
        } else if (argc > 1 && !strchr(argv[argc - 1], '=') && strncmp(argv[argc - 1], "--", 2) == 0) {
            /* the value of a bare --flag before it */
            argv[argc++] = bare_token_flag ? arena_printf(&a, "%s%s", l, SECRET_MARKER) : l;
            if (!argv[argc - 1])
                argc--;
            bare_token_flag = 0;
        }
    }
    if (!token_set)
        envp[ne++] = marker_env;
    envp[ne] = NULL;
    argv[argc] = NULL;

    struct config cfg;
    char err[512];
    err[0] = '\0';
    int rc = config_load(&cfg, &argc, argv, envp, err, sizeof err);
    int check_secret = !marker_in_input;
    if (rc != 0) {
        check(err[0] != '\0', "config_load failure has a message");
        check(!check_secret || !strstr(err, SECRET_MARKER), "config_load error hides secrets");
        arena_free(&a);
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
              "config_print hides secrets");
        free(out);
    }
    config_free(&cfg);
    arena_free(&a);
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
