/* beads-sched: command-line entry point. Exit status: 0 success, 1 runtime
 * failure, 2 bad usage or configuration (reported before anything is
 * touched). */
#include "cli.h"
#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: beads-sched [--flag=value ...] COMMAND\n"
            "\n"
            "commands:\n"
            "  run        run the scheduler daemon until SIGTERM/SIGINT [--dry-run]\n"
            "  once       run one dispatch cycle, then exit [--dry-run]\n"
            "  pause      stop dispatching (the running daemon reads this each cycle)\n"
            "  resume     undo pause\n"
            "  migrate    create or upgrade the store, then exit\n"
            "  config     print the effective configuration (secrets as ***)\n"
            "  status     paused or not, attempts in flight, last cycle and reap, outcomes of\n"
            "             the last 24 h, from the store [--json]\n"
            "  history    events of every bead, or of one, oldest first\n"
            "             [BEAD] [--limit N (default 100, 0 = all)] [--json]\n"
            "  explain    why a bead is or is not dispatched now, rule by rule: BEAD [--json]\n"
            "  version    print the version\n"
            "  help       this text\n"
            "\n"
            "configuration (environment variable, flag, meaning, default):\n");
    config_print_help(out);
}

struct command {
    const char *name;
    unsigned need; /* enum config_need */
    int (*fn)(const struct config *cfg, int argc, char **argv);
};

static int has_flag(int argc, char **argv, const char *flag)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], flag) == 0)
            return 1;
    }
    return 0;
}

static int cmd_run(const struct config *cfg, int argc, char **argv)
{
    struct daemon_opts o = {.dry_run = has_flag(argc, argv, "--dry-run")};
    return daemon_run(cfg, &o);
}

static int cmd_once(const struct config *cfg, int argc, char **argv)
{
    struct daemon_opts o = {.once = 1, .dry_run = has_flag(argc, argv, "--dry-run")};
    return daemon_run(cfg, &o);
}

/* Opens (creating or upgrading) the store for a short command; NULL after
 * printing why. */
static struct store *open_store_for_command(const struct config *cfg)
{
    char err[512];
    struct store *s;
    if (store_open(&s, cfg->store, STORE_OPEN_MIGRATE, err, sizeof err)) {
        fprintf(stderr, "beads-sched: %s\n", err);
        return NULL;
    }
    return s;
}

/* pause/resume: the store flag the daemon reads every cycle. */
static int set_paused(const struct config *cfg, const char *value)
{
    struct store *s = open_store_for_command(cfg);
    if (!s)
        return 1;
    int rc = store_setting_set(s, "paused", value, clock_now_ms());
    if (rc == 0)
        rc = store_event_add(s, NULL, 0, value[0] == '1' ? "paused" : "resumed", NULL,
                             "by the pause/resume command", clock_now_ms());
    store_close(s);
    if (rc) {
        fprintf(stderr, "beads-sched: could not write the store: %s\n", bs_strerror(rc));
        return 1;
    }
    return 0;
}

static int cmd_pause(const struct config *cfg, int argc, char **argv)
{
    (void)argc; (void)argv;
    int rc = set_paused(cfg, "1");
    if (rc == 0)
        printf("dispatching paused (store %s); reaping continues\n", cfg->store);
    return rc;
}

static int cmd_resume(const struct config *cfg, int argc, char **argv)
{
    (void)argc; (void)argv;
    int rc = set_paused(cfg, "0");
    if (rc == 0) {
        printf("dispatching resumed (store %s)\n", cfg->store);
        if (cfg->paused)
            printf("note: BEADS_SCHED_PAUSED=true still pauses the daemon it is set for\n");
    }
    return rc;
}

static int cmd_migrate(const struct config *cfg, int argc, char **argv)
{
    (void)argc; (void)argv;
    struct store *s = open_store_for_command(cfg);
    if (!s)
        return 1;
    printf("store %s at schema version %d\n", cfg->store, store_schema_version(s));
    store_close(s);
    return 0;
}

static int cmd_config(const struct config *cfg, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--markdown") == 0) {
            config_print_markdown(stdout);
            return 0;
        }
    }
    config_print(cfg, stdout);
    return 0;
}

static int cmd_version(const struct config *cfg, int argc, char **argv)
{
    (void)cfg; (void)argc; (void)argv;
    printf("beads-sched %s (store schema %d)\n", BEADS_SCHED_VERSION, store_latest_version());
    return 0;
}

static const struct command commands[] = {
    {"run", CONFIG_NEED_DOLT | CONFIG_NEED_AGENT, cmd_run},
    {"once", CONFIG_NEED_DOLT | CONFIG_NEED_AGENT, cmd_once},
    {"pause", CONFIG_NEED_NONE, cmd_pause},
    {"resume", CONFIG_NEED_NONE, cmd_resume},
    {"migrate", CONFIG_NEED_NONE, cmd_migrate},
    {"config", CONFIG_NEED_NONE, cmd_config},
    {"version", CONFIG_NEED_NONE, cmd_version},
    {"status", CONFIG_NEED_NONE, cli_status},
    {"history", CONFIG_NEED_NONE, cli_history},
    {"explain", CONFIG_NEED_DOLT, cli_explain},
};

/* Flags a command accepts besides the configuration flags. */
static int command_flag_ok(const struct command *c, const char *flag)
{
    if (strcmp(c->name, "config") == 0)
        return strcmp(flag, "--markdown") == 0;
    if (strcmp(c->name, "run") == 0 || strcmp(c->name, "once") == 0)
        return strcmp(flag, "--dry-run") == 0;
    if (strcmp(c->name, "history") == 0 &&
        (strcmp(flag, "--limit") == 0 || strncmp(flag, "--limit=", 8) == 0))
        return 1;
    if (strcmp(c->name, "status") == 0 || strcmp(c->name, "history") == 0 ||
        strcmp(c->name, "explain") == 0)
        return strcmp(flag, "--json") == 0;
    return 0;
}

int main(int argc, char **argv)
{
    /* `help` works whatever the environment holds. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0 ||
            strcmp(argv[i], "help") == 0) {
            usage(stdout);
            return 0;
        }
    }
    metrics_init();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "beads-sched: cannot initialise libcurl\n");
        return 1;
    }

    struct config cfg;
    char err[512];
    if (config_load(&cfg, &argc, argv, environ, err, sizeof err)) {
        fprintf(stderr, "beads-sched: %s\n", err);
        curl_global_cleanup();
        return 2;
    }
    /* What is left: argv[0], the command, and the command's own arguments. */
    const struct command *cmd = NULL;
    int rest = 0;
    char *args[argc > 0 ? argc : 1];
    for (int i = 1; i < argc; i++) {
        if (!cmd && strncmp(argv[i], "--", 2) != 0) {
            for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++) {
                if (strcmp(commands[k].name, argv[i]) == 0)
                    cmd = &commands[k];
            }
            if (!cmd) {
                fprintf(stderr, "beads-sched: unknown command '%s' (see beads-sched help)\n", argv[i]);
                goto usage_error;
            }
            continue;
        }
        args[rest++] = argv[i];
    }
    if (!cmd) {
        usage(stderr);
        goto usage_error;
    }
    for (int i = 0; i < rest; i++) {
        if (strncmp(args[i], "--", 2) == 0 && !command_flag_ok(cmd, args[i])) {
            fprintf(stderr, "beads-sched: unknown flag %s (see beads-sched help)\n", args[i]);
            goto usage_error;
        }
    }
    if (config_require(&cfg, cmd->need, err, sizeof err)) {
        fprintf(stderr, "beads-sched: %s\n", err);
        goto usage_error;
    }
    log_setup((enum log_level)cfg.log_level, (enum log_format)cfg.log_format);
    int status = cmd->fn(&cfg, rest, args);
    config_free(&cfg);
    curl_global_cleanup();
    return status;
usage_error:
    config_free(&cfg);
    curl_global_cleanup();
    return 2;
}
