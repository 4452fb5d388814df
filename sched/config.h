#ifndef BS_CONFIG_H
#define BS_CONFIG_H
/* Configuration: one table (config.c) drives the environment variables
 * (BEADS_SCHED_<NAME>), the matching --flags (--name-in-lower-kebab), their
 * validation and defaults, and the `config` printout (secrets as ***).
 *
 * Precedence: flag > environment > default. A malformed value is reported
 * as one line naming the variable (or flag) and what is wrong; the caller
 * exits 2 before touching the store or the network. Secret values (tokens,
 * passwords, the password inside DOLT_URL) never appear in messages. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

enum dolt_commit_mode { DOLT_COMMIT_AUTO = 0, DOLT_COMMIT_ON, DOLT_COMMIT_OFF };
enum sched_mode { MODE_AGENT = 0, MODE_BEADBOARD };

/* The parts of DOLT_URL (mysql://user[:pass]@host[:port]/db[?socket=path]). */
struct dolt_target {
    char *user;
    char *password; /* from the URL or DOLT_PASSWORD_FILE; secret */
    char *host;
    unsigned port;
    char *database;
    char *socket;   /* NULL unless ?socket= was given */
};

struct config {
    /* Raw values as the table stores them. */
    char *dolt_url;
    char *dolt_password_file;
    int dolt_tls;
    char *dolt_tls_ca;
    char *agent_url;
    char *agent_token;
    char *agent_token_file;
    char *store;
    char *assignee;
    char *agent_name;
    char *bd_db;
    char *actor;
    char *actor_email;
    uint64_t probe_interval_ms;
    int probe_interval_set;   /* PROBE_INTERVAL was given: no default for Dolt (250 ms) */
    uint64_t dispatch_interval_ms;
    uint64_t reap_interval_ms;
    uint64_t stale_after_ms;
    int64_t max_attempts;
    uint64_t retry_backoff_ms;
    uint64_t http_connect_timeout_ms;
    uint64_t http_timeout_ms;
    double job_budget_usd;
    uint64_t job_timeout_ms;
    int64_t max_in_flight;
    char *prompt_template_file;
    int mode;           /* enum sched_mode */
    char *beadboard_url;
    uint64_t retain_ms;
    uint64_t retain_failed_ms;
    char *listen;
    int paused;
    int single_active;    /* take the Dolt lock; only its holder dispatches and reaps */
    int dolt_commit;    /* enum dolt_commit_mode */
    int log_level;      /* enum log_level */
    int log_format;     /* enum log_format */

    /* Derived by config_load. */
    struct dolt_target dolt;
    char *listen_host;  /* NULL when LISTEN is empty (admin endpoint off) */
    unsigned listen_port;
    char *prompt_template; /* contents of PROMPT_TEMPLATE_FILE, NULL = built-in */
};

/* What a command needs from the configuration. */
enum config_need {
    CONFIG_NEED_NONE = 0,
    CONFIG_NEED_DOLT = 1 << 0,  /* DOLT_URL required */
    CONFIG_NEED_AGENT = 1 << 1, /* AGENT_URL and a token (or BEADBOARD_URL in beadboard mode) */
};

/* Fills cfg from defaults, then the environment (envp, NULL-terminated
 * "NAME=value" strings), then flags. Flags are the "--name=value" or
 * "--name value" items of argv that match a config name; they are removed
 * from argv (argc updated) so the caller sees only the rest. Secret files
 * are read here. Returns 0, or BS_EINVAL with err holding one line. On
 * failure cfg is freed already. */
int config_load(struct config *cfg, int *argc, char **argv, char **envp, char *err,
                size_t errlen);
/* Checks that what a command needs (enum config_need bits) is set; returns
 * 0 or BS_EINVAL with err naming the first missing variable. */
int config_require(const struct config *cfg, unsigned need, char *err, size_t errlen);
void config_free(struct config *cfg);

/* Prints "NAME=value  # source" lines, secrets as ***. */
void config_print(const struct config *cfg, FILE *out);
/* Prints the table as help: variable, flag, default, meaning. */
void config_print_help(FILE *out);
/* Prints the table as a Markdown table (for the README). */
void config_print_markdown(FILE *out);

/* Parses "500ms", "90s", "2m", "1h", "7d" (also combined, e.g. "1h30m");
 * a bare number is refused (ambiguous). Returns 0 or BS_EINVAL. */
int config_parse_duration(const char *s, uint64_t *ms);
/* Formats ms as the shortest exact unit string ("2m", "1500ms"). */
void config_format_duration(uint64_t ms, char *buf, size_t len);
/* Parses DOLT_URL into t (strings malloc'd). err gets the reason without
 * echoing the password. */
int config_parse_dolt_url(const char *url, struct dolt_target *t, char *err, size_t errlen);
void dolt_target_free(struct dolt_target *t);

struct dolt_options;
/* The Dolt connection options the configuration describes (pointers into
 * cfg, valid while it lives). */
void config_dolt_options(const struct config *cfg, struct dolt_options *o);
#endif
