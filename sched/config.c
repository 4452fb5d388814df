#include "config.h"
#include "dolt.h"
#include "errors.h"
#include "prompt.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define ENV_PREFIX "BEADS_SCHED_"

enum cfg_type {
    CT_STRING,   /* char * */
    CT_SECRET,   /* char *, printed as *** */
    CT_PATH,     /* char *, a file path */
    CT_DURATION, /* uint64_t ms */
    CT_INT,      /* int64_t */
    CT_FLOAT,    /* double */
    CT_BOOL,     /* int */
    CT_ENUM,     /* int: index into choices */
    CT_MYSQL_URL,/* char *, password inside redacted */
    CT_HTTP_URL, /* char * */
    CT_LISTEN,   /* char *, host:port or empty */
};

enum cfg_flag {
    CF_NEED_DOLT = 1 << 0,  /* required when the command talks to Dolt */
    CF_NEED_AGENT = 1 << 1, /* required when the command talks to the agent */
};

struct cfg_entry {
    const char *name;     /* without the BEADS_SCHED_ prefix */
    enum cfg_type type;
    const char *def;      /* default as text, NULL = unset */
    unsigned flags;
    size_t offset;        /* into struct config */
    int64_t min, max;     /* CT_INT, CT_DURATION (ms) */
    const char *const *choices; /* CT_ENUM, NULL-terminated */
    const char *help;
};

static const char *const dolt_commit_choices[] = {"auto", "on", "off", NULL};
static const char *const log_level_choices[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_format_choices[] = {"logfmt", "json", NULL};
static const char *const mode_choices[] = {"agent", "beadboard", NULL};

#define OFF(f) offsetof(struct config, f)
#define CFG_SEC 1000LL
#define CFG_MIN (60 * CFG_SEC)
#define CFG_HOUR (60 * CFG_MIN)
#define CFG_DAY (24 * CFG_HOUR)

/* The configuration table. Order is the order of `config` and the README. */
static const struct cfg_entry table[] = {
    {"DOLT_URL", CT_MYSQL_URL, NULL, CF_NEED_DOLT, OFF(dolt_url), 0, 0, NULL,
     "Dolt server: mysql://user[:pass]@host[:port]/db, ?socket=/path for a Unix socket"},
    {"DOLT_PASSWORD_FILE", CT_PATH, NULL, 0, OFF(dolt_password_file), 0, 0, NULL,
     "File holding the Dolt password (overrides one in DOLT_URL)"},
    {"DOLT_TLS", CT_BOOL, "false", 0, OFF(dolt_tls), 0, 0, NULL,
     "Require TLS to Dolt"},
    {"DOLT_TLS_CA", CT_PATH, NULL, 0, OFF(dolt_tls_ca), 0, 0, NULL,
     "CA file to verify Dolt's certificate (implies DOLT_TLS)"},
    {"DOLT_COMMIT", CT_ENUM, "auto", 0, OFF(dolt_commit), 0, 0, dolt_commit_choices,
     "Make a Dolt commit after each write: auto (if the server is Dolt), on, off"},
    {"AGENT_URL", CT_HTTP_URL, NULL, CF_NEED_AGENT, OFF(agent_url), 0, 0, NULL,
     "Agent service base URL, e.g. http://claude-agent-service.claude-agent.svc"},
    {"AGENT_TOKEN", CT_SECRET, NULL, 0, OFF(agent_token), 0, 0, NULL,
     "Bearer token for the agent service (prefer AGENT_TOKEN_FILE)"},
    {"AGENT_TOKEN_FILE", CT_PATH, NULL, 0, OFF(agent_token_file), 0, 0, NULL,
     "File holding the agent bearer token"},
    {"AGENT_NAME", CT_STRING, "beads-task-runner", 0, OFF(agent_name), 0, 0, NULL,
     "Agent that runs dispatched beads"},
    {"BD_DB", CT_STRING, "/workspace/.beads", 0, OFF(bd_db), 0, 0, NULL,
     "Path the agent passes to `bd --db` (told in the prompt, {{bd_db}})"},
    {"ASSIGNEE", CT_STRING, "agent", 0, OFF(assignee), 0, 0, NULL,
     "Beads assigned to this user are dispatched"},
    {"ACTOR", CT_STRING, "beads-sched", 0, OFF(actor), 0, 0, NULL,
     "Actor name in bead events and Dolt commit authors"},
    {"ACTOR_EMAIL", CT_STRING, "beads-sched@localhost", 0, OFF(actor_email), 0, 0, NULL,
     "Email in Dolt commit authors (\"ACTOR <ACTOR_EMAIL>\")"},
    {"MODE", CT_ENUM, "agent", 0, OFF(mode), 0, 0, mode_choices,
     "agent: POST /execute directly; beadboard: dispatch through BeadBoard"},
    {"BEADBOARD_URL", CT_HTTP_URL, NULL, 0, OFF(beadboard_url), 0, 0, NULL,
     "BeadBoard base URL (MODE=beadboard)"},
    {"JOB_BUDGET_USD", CT_FLOAT, "5.0", 0, OFF(job_budget_usd), 0, 1000, NULL,
     "max_budget_usd sent with each job"},
    {"JOB_TIMEOUT", CT_DURATION, "45m", 0, OFF(job_timeout_ms), CFG_SEC, CFG_DAY, NULL,
     "timeout_seconds sent with each job"},
    {"MAX_IN_FLIGHT", CT_INT, "0", 0, OFF(max_in_flight), 0, 100000, NULL,
     "Most attempts in flight at once (0: only the agent's capacity limits)"},
    {"PROMPT_TEMPLATE_FILE", CT_PATH, NULL, 0, OFF(prompt_template_file), 0, 0, NULL,
     "Prompt template ({{id}}, {{title}}, {{description}}, ...); built-in if unset"},
    {"STORE", CT_PATH, "./beads-sched.db", 0, OFF(store), 0, 0, NULL,
     "SQLite job store (journal of every attempt)"},
    {"PROBE_INTERVAL", CT_DURATION, "1s", 0, OFF(probe_interval_ms), 100, CFG_HOUR, NULL,
     "How often to probe Dolt for changes (unset: 250ms on Dolt, whose probe costs the same at any size)"},
    {"DISPATCH_INTERVAL", CT_DURATION, "2m", 0, OFF(dispatch_interval_ms), CFG_SEC, CFG_DAY, NULL,
     "Full dispatch cycle at least this often, changes or not"},
    {"REAP_INTERVAL", CT_DURATION, "1m", 0, OFF(reap_interval_ms), CFG_SEC, CFG_DAY, NULL,
     "How often to reconcile in-flight attempts"},
    {"STALE_AFTER", CT_DURATION, "30m", 0, OFF(stale_after_ms), CFG_SEC, 30 * CFG_DAY, NULL,
     "An in-progress bead without update for this long is stale"},
    {"MAX_ATTEMPTS", CT_INT, "3", 0, OFF(max_attempts), 1, 100, NULL,
     "Dispatch attempts per bead before it is blocked"},
    {"RETRY_BACKOFF", CT_DURATION, "1m", 0, OFF(retry_backoff_ms), 0, CFG_DAY, NULL,
     "First retry delay; doubles per attempt, capped at 1h"},
    {"RETAIN", CT_DURATION, "30d", 0, OFF(retain_ms), CFG_HOUR, 3650 * CFG_DAY, NULL,
     "Finished attempts and their events are pruned after this long"},
    {"RETAIN_FAILED", CT_DURATION, "90d", 0, OFF(retain_failed_ms), CFG_HOUR, 3650 * CFG_DAY, NULL,
     "Attempts that did not end closed are kept this long"},
    {"HTTP_CONNECT_TIMEOUT", CT_DURATION, "3s", 0, OFF(http_connect_timeout_ms), 100, 5 * CFG_MIN, NULL,
     "Connect timeout for agent requests"},
    {"HTTP_TIMEOUT", CT_DURATION, "15s", 0, OFF(http_timeout_ms), 100, 30 * CFG_MIN, NULL,
     "Total timeout for agent requests"},
    {"LISTEN", CT_LISTEN, "127.0.0.1:9464", 0, OFF(listen), 0, 0, NULL,
     "Admin endpoint (metrics, health) host:port; empty turns it off"},
    {"PAUSED", CT_BOOL, "false", 0, OFF(paused), 0, 0, NULL,
     "Start with dispatching paused (reaping continues)"},
    {"SINGLE_ACTIVE", CT_BOOL, "true", 0, OFF(single_active), 0, 0, NULL,
     "Only the instance holding the Dolt lock beads-sched/<db>/<assignee> dispatches and reaps"},
    {"LOG_LEVEL", CT_ENUM, "info", 0, OFF(log_level), 0, 0, log_level_choices,
     "debug, info, warn or error"},
    {"LOG_FORMAT", CT_ENUM, "logfmt", 0, OFF(log_format), 0, 0, log_format_choices,
     "logfmt or json, one line per event on stderr"},
};
#define NENTRIES (sizeof table / sizeof table[0])

/* Where a value came from, for the printout. */
enum cfg_source { SRC_DEFAULT, SRC_ENV, SRC_FLAG };
static const char *const source_names[] = {"default", "env", "flag"};
/* Per-load bookkeeping of sources, kept in a static array the size of the
 * table: config_load runs once per process (tests call it repeatedly, each
 * call resets it). */
static enum cfg_source sources[NENTRIES];


static int secret_type(enum cfg_type t) { return t == CT_SECRET; }
static int string_type(enum cfg_type t)
{
    return !(t == CT_DURATION || t == CT_INT || t == CT_FLOAT || t == CT_BOOL || t == CT_ENUM);
}

/* "PROBE_INTERVAL" -> "--probe-interval" */
static void flag_name(const char *name, char *buf, size_t len)
{
    size_t k = 0;
    if (len < 3)
        return;
    buf[k++] = '-';
    buf[k++] = '-';
    for (const char *p = name; *p && k + 1 < len; p++)
        buf[k++] = *p == '_' ? '-' : (char)tolower((unsigned char)*p);
    buf[k] = '\0';
}

int config_parse_duration(const char *s, uint64_t *ms)
{
    static const struct { const char *unit; uint64_t ms; } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    uint64_t total = 0;
    const char *p = s;
    if (!s || !*s)
        return BS_EINVAL;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return BS_EINVAL;
        errno = 0;
        char *end;
        unsigned long long n = strtoull(p, &end, 10);
        if (errno || end == p)
            return BS_EINVAL;
        p = end;
        size_t ulen = 0;
        while (isalpha((unsigned char)p[ulen]))
            ulen++;
        if (ulen == 0)
            return BS_EINVAL; /* a bare number: which unit? */
        uint64_t mult = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            if (strlen(units[i].unit) == ulen && strncmp(p, units[i].unit, ulen) == 0)
                mult = units[i].ms;
        }
        if (mult == 0 || n > UINT64_MAX / mult || total > UINT64_MAX - n * mult)
            return BS_EINVAL;
        total += n * mult;
        p += ulen;
    }
    *ms = total;
    return 0;
}

void config_format_duration(uint64_t ms, char *buf, size_t len)
{
    static const struct { const char *unit; uint64_t ms; } units[] = {
        {"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    }
    snprintf(buf, len, "%llums", (unsigned long long)ms);
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = 1; return 0; }
        if (strcasecmp(s, no[i]) == 0) { *out = 0; return 0; }
    }
    return BS_EINVAL;
}

void dolt_target_free(struct dolt_target *t)
{
    free(t->user);
    if (t->password) {
        memset(t->password, 0, strlen(t->password));
        free(t->password);
    }
    free(t->host);
    free(t->database);
    free(t->socket);
    memset(t, 0, sizeof *t);
}

/* Copies a curl-owned string into malloc'd memory and frees the original. */
static char *take_curl(char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    curl_free(s);
    return d;
}

/* The port of DOLT_URL: 1-65535. Returns 0 or BS_EINVAL with err set. */
static int dolt_url_port(const char *port, unsigned *out, char *err, size_t errlen)
{
    char *end;
    long p = strtol(port, &end, 10);
    if (*end || p < 1 || p > 65535) {
        bs_set_err(err, errlen, "port %s out of range", port);
        return BS_EINVAL;
    }
    *out = (unsigned)p;
    return 0;
}

/* The query of DOLT_URL: only socket= is understood; anything else is a
 * typo worth reporting. Returns 0, BS_ENOMEM, or BS_EINVAL with err naming
 * the parameter. */
static int dolt_url_query(const char *query, struct dolt_target *t, char *err, size_t errlen)
{
    char *q = strdup(query);
    char *save = NULL;
    int rc = 0;
    if (!q) {
        bs_set_err(err, errlen, "out of memory");
        return BS_ENOMEM;
    }
    for (char *kv = strtok_r(q, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
        if (strncmp(kv, "socket=", 7) == 0 && kv[7]) {
            int n = 0;
            char *dec = curl_easy_unescape(NULL, kv + 7, 0, &n);
            free(t->socket);
            t->socket = dec ? strdup(dec) : NULL;
            curl_free(dec);
        } else {
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)strcspn(kv, "="), kv);
            bs_set_err(err, errlen, "unknown query parameter '%s' (only socket= is supported)", name);
            rc = BS_EINVAL;
            break;
        }
    }
    free(q);
    return rc;
}

int config_parse_dolt_url(const char *url, struct dolt_target *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    CURLU *u = curl_url();
    char *scheme = NULL, *port = NULL, *path = NULL, *query = NULL, *host = NULL;
    int rc = BS_EINVAL;
    if (!u) {
        bs_set_err(err, errlen, "out of memory");
        return BS_ENOMEM;
    }
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
    if (uc != CURLUE_OK) {
        /* curl's text names the part that is wrong, never the value. */
        bs_set_err(err, errlen, "not a valid URL (%s); expected mysql://user[:pass]@host[:port]/db",
                curl_url_strerror(uc));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || strcmp(scheme, "mysql") != 0) {
        bs_set_err(err, errlen, "scheme must be mysql:// (got %s://)", scheme ? scheme : "?");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, CURLU_URLDECODE) != CURLUE_OK || !*host) {
        bs_set_err(err, errlen, "no host; expected mysql://user[:pass]@host[:port]/db");
        goto out;
    }
    t->host = take_curl(host);
    host = NULL;
    if (curl_url_get(u, CURLUPART_USER, &t->user, CURLU_URLDECODE) != CURLUE_OK || !t->user || !*t->user) {
        bs_set_err(err, errlen, "no user; expected mysql://user[:pass]@host[:port]/db");
        goto out;
    }
    t->user = take_curl(t->user);
    char *pw = NULL;
    if (curl_url_get(u, CURLUPART_PASSWORD, &pw, CURLU_URLDECODE) == CURLUE_OK && pw) {
        t->password = strdup(pw);
        memset(pw, 0, strlen(pw));
        curl_free(pw);
    }
    t->port = 3306;
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK && port &&
        dolt_url_port(port, &t->port, err, errlen))
        goto out;
    if (curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE) != CURLUE_OK || !path ||
        strlen(path) < 2 || strchr(path + 1, '/')) {
        bs_set_err(err, errlen, "no database; expected mysql://user[:pass]@host[:port]/db");
        goto out;
    }
    t->database = strdup(path + 1);
    /* rc from the query: out of memory there is not a bad URL. */
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK && query &&
        (rc = dolt_url_query(query, t, err, errlen)))
        goto out;
    if (!t->user || !t->host || !t->database) {
        bs_set_err(err, errlen, "out of memory");
        rc = BS_ENOMEM;
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(host);
    curl_url_cleanup(u);
    if (rc)
        dolt_target_free(t);
    return rc;
}

static int check_http_url(const char *url, char *why, size_t len)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = BS_EINVAL;
    if (!u)
        return BS_ENOMEM;
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK)
        snprintf(why, len, "not a valid URL (%s)", curl_url_strerror(uc));
    else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
             (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
        snprintf(why, len, "scheme must be http:// or https://");
    else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
        snprintf(why, len, "no host");
    else
        rc = 0;
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

static int parse_listen(const char *s, char **host, unsigned *port, char *why, size_t len)
{
    *host = NULL;
    *port = 0;
    if (!*s)
        return 0; /* off */
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s) {
        snprintf(why, len, "expected host:port, e.g. 127.0.0.1:9464 (empty turns it off)");
        return BS_EINVAL;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || p < 1 || p > 65535) {
        snprintf(why, len, "port must be 1-65535");
        return BS_EINVAL;
    }
    size_t hlen = (size_t)(colon - s);
    /* [::1]:9464 */
    if (s[0] == '[' && hlen >= 2 && s[hlen - 1] == ']') {
        *host = strndup(s + 1, hlen - 2);
    } else {
        *host = strndup(s, hlen);
    }
    *port = (unsigned)p;
    return *host ? 0 : BS_ENOMEM;
}

/* The setters below parse text into field, the member of struct config
 * that entry e describes. why gets the reason on failure (never the value
 * itself for secret-bearing types). Each returns 0, BS_EINVAL or
 * BS_ENOMEM. */

static int set_string(char *field, const struct cfg_entry *e, const char *text, char *why,
                      size_t len)
{
    char **sp = (char **)(void *)field;
    if (e->type == CT_HTTP_URL && *text && check_http_url(text, why, len))
        return BS_EINVAL;
    if ((e->type == CT_STRING || e->type == CT_PATH) && !*text) {
        snprintf(why, len, "must not be empty");
        return BS_EINVAL;
    }
    char *copy = strdup(text);
    if (!copy)
        return BS_ENOMEM;
    if (*sp && secret_type(e->type))
        memset(*sp, 0, strlen(*sp));
    free(*sp);
    *sp = copy;
    return 0;
}

static int set_duration(char *field, const struct cfg_entry *e, const char *text, char *why,
                        size_t len)
{
    uint64_t ms;
    char a[32], b[32];
    if (config_parse_duration(text, &ms)) {
        snprintf(why, len, "\"%.40s\" is not a duration (use e.g. 500ms, 90s, 2m, 1h)", text);
        return BS_EINVAL;
    }
    if ((int64_t)ms < e->min || (int64_t)ms > e->max) {
        config_format_duration((uint64_t)e->min, a, sizeof a);
        config_format_duration((uint64_t)e->max, b, sizeof b);
        snprintf(why, len, "%.40s is out of range (%s to %s)", text, e->min ? a : "0s", b);
        return BS_EINVAL;
    }
    *(uint64_t *)(void *)field = ms;
    return 0;
}

static int set_int(char *field, const struct cfg_entry *e, const char *text, char *why, size_t len)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end) {
        snprintf(why, len, "\"%.40s\" is not a whole number", text);
        return BS_EINVAL;
    }
    if (v < e->min || v > e->max) {
        snprintf(why, len, "%lld is out of range (%lld to %lld)", v, (long long)e->min,
                 (long long)e->max);
        return BS_EINVAL;
    }
    *(int64_t *)(void *)field = v;
    return 0;
}

static int set_float(char *field, const struct cfg_entry *e, const char *text, char *why,
                     size_t len)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || v != v) {
        snprintf(why, len, "\"%.40s\" is not a number", text);
        return BS_EINVAL;
    }
    if (v < (double)e->min || v > (double)e->max) {
        snprintf(why, len, "%.40s is out of range (%lld to %lld)", text, (long long)e->min,
                 (long long)e->max);
        return BS_EINVAL;
    }
    *(double *)(void *)field = v;
    return 0;
}

static int set_enum(char *field, const struct cfg_entry *e, const char *text, char *why, size_t len)
{
    for (int i = 0; e->choices[i]; i++) {
        if (strcmp(text, e->choices[i]) == 0) {
            *(int *)(void *)field = i;
            return 0;
        }
    }
    size_t k = (size_t)snprintf(why, len, "\"%.40s\" is not one of ", text);
    for (int i = 0; e->choices[i] && k < len; i++)
        k += (size_t)snprintf(why + k, len - k, "%s%s", i ? "|" : "", e->choices[i]);
    return BS_EINVAL;
}

/* Parses text into the field of entry e. why gets the reason on failure
 * (never the value itself for secret-bearing types). */
static int set_value(struct config *cfg, const struct cfg_entry *e, const char *text,
                     char *why, size_t len)
{
    char *field = (char *)cfg + e->offset;
    switch (e->type) {
    case CT_STRING:
    case CT_SECRET:
    case CT_PATH:
    case CT_MYSQL_URL:
    case CT_HTTP_URL:
    case CT_LISTEN:
        return set_string(field, e, text, why, len);
    case CT_DURATION:
        return set_duration(field, e, text, why, len);
    case CT_INT:
        return set_int(field, e, text, why, len);
    case CT_FLOAT:
        return set_float(field, e, text, why, len);
    case CT_BOOL:
        if (parse_bool(text, (int *)(void *)field)) {
            snprintf(why, len, "\"%.40s\" is not a boolean (true/false)", text);
            return BS_EINVAL;
        }
        return 0;
    case CT_ENUM:
        return set_enum(field, e, text, why, len);
    }
    return BS_EINVAL;
}

/* The name a user would recognise for entry i: the flag if the value came
 * from one, else the environment variable. */
static void display_name(size_t i, char *buf, size_t len)
{
    if (sources[i] == SRC_FLAG)
        flag_name(table[i].name, buf, len);
    else
        snprintf(buf, len, ENV_PREFIX "%s", table[i].name);
}

/* Reads and checks a prompt template file (at most 256 KiB). */
static int read_template(const char *path, char **out, char *why, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, len, "cannot read %s: %s", path, strerror(errno));
        return BS_EINVAL;
    }
    size_t cap = 256 * 1024;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return BS_ENOMEM;
    }
    size_t n = fread(buf, 1, cap, f);
    int toolong = n == cap && fgetc(f) != EOF;
    fclose(f);
    buf[n] = '\0';
    if (toolong || n == 0 || strlen(buf) != n) {
        snprintf(why, len, "%s is %s", path, toolong ? "larger than 256 KiB" : n ? "not text" : "empty");
        free(buf);
        return BS_EINVAL;
    }
    char tw[128];
    if (prompt_template_check(buf, tw, sizeof tw)) {
        snprintf(why, len, "%s: %s", path, tw);
        free(buf);
        return BS_EINVAL;
    }
    *out = buf;
    return 0;
}

static size_t entry_index(size_t offset)
{
    for (size_t i = 0; i < NENTRIES; i++) {
        if (table[i].offset == offset)
            return i;
    }
    abort(); /* programming error: every field passed here is in the table */
}

static const struct cfg_entry *find_flag(const char *arg, size_t namelen)
{
    char flag[64];
    for (size_t i = 0; i < NENTRIES; i++) {
        flag_name(table[i].name, flag, sizeof flag);
        if (strlen(flag) == namelen && strncmp(flag, arg, namelen) == 0)
            return &table[i];
    }
    return NULL;
}

static const char *env_lookup(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    }
    return NULL;
}

/* Reads a secret file: the whole content, trailing newlines stripped. */
static int read_secret_file(const char *path, char **out, char *why, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, len, "cannot read %s: %s", path, strerror(errno));
        return BS_EINVAL;
    }
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    int toolong = n == sizeof buf - 1 && fgetc(f) != EOF;
    fclose(f);
    if (toolong) {
        snprintf(why, len, "%s is larger than 4 KiB; expected just the secret", path);
        memset(buf, 0, sizeof buf);
        return BS_EINVAL;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    if (n == 0) {
        snprintf(why, len, "%s is empty", path);
        return BS_EINVAL;
    }
    *out = strdup(buf);
    memset(buf, 0, sizeof buf);
    return *out ? 0 : BS_ENOMEM;
}

/* ACTOR and ACTOR_EMAIL become the Dolt commit author "ACTOR <ACTOR_EMAIL>".
 * Dolt reads that with a pattern of the form "([^)]+) <([^)]+)" and drops
 * every '>' from the email, so a ')', '<' or '>' in either part, a control
 * byte (a newline splits the pattern's lines), an empty part or one with
 * spaces at its ends makes every commit fail or names someone else. Checked
 * at start-up so the daemon never claims a bead it cannot commit. Returns 0
 * or BS_EINVAL with err naming the variable. */
static int check_author_part(size_t offset, const char *value, int allow_space, char *err,
                             size_t errlen)
{
    char name[96];
    display_name(entry_index(offset), name, sizeof name);
    const char *why = NULL;
    size_t n = value ? strlen(value) : 0;
    if (n == 0)
        why = "must not be empty";
    else if (n > 200)
        why = "longer than 200 bytes";
    else if (value[0] == ' ' || value[n - 1] == ' ')
        why = "must not start or end with a space";
    for (const unsigned char *p = (const unsigned char *)value; !why && p && *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            why = "contains a control character";
        else if (*p == '<' || *p == '>' || *p == ')' || *p == '(')
            why = "contains one of < > ( ) (the Dolt commit author is \"ACTOR <ACTOR_EMAIL>\")";
        else if (*p == ' ' && !allow_space)
            why = "contains a space";
    }
    if (!why)
        return 0;
    bs_set_err(err, errlen, "%s: %s", name, why);
    return BS_EINVAL;
}

static int check_author(const struct config *cfg, char *err, size_t errlen)
{
    int rc = check_author_part(OFF(actor), cfg->actor, 1, err, errlen);
    return rc ? rc : check_author_part(OFF(actor_email), cfg->actor_email, 0, err, errlen);
}

/* err gets "NAME: why" for the entry at offset, NAME as display_name
 * gives it. Returns rc. */
static int entry_error(size_t offset, int rc, const char *why, char *err, size_t errlen)
{
    char name[96];
    display_name(entry_index(offset), name, sizeof name);
    bs_set_err(err, errlen, "%s: %s", name, why);
    return rc;
}

/* Step 1 of config_load: every entry that has a default gets it. */
static int load_defaults(struct config *cfg, char *err, size_t errlen)
{
    char why[256] = "out of memory";
    for (size_t i = 0; i < NENTRIES; i++) {
        sources[i] = SRC_DEFAULT;
        if (table[i].def && set_value(cfg, &table[i], table[i].def, why, sizeof why)) {
            bs_set_err(err, errlen, "internal: bad default for %s: %s", table[i].name, why);
            return BS_EINVAL;
        }
    }
    return 0;
}

/* Step 2: BEADS_SCHED_<NAME> variables of envp override the defaults. */
static int load_env(struct config *cfg, char **envp, char *err, size_t errlen)
{
    char why[256] = "out of memory";
    int rc;
    for (size_t i = 0; i < NENTRIES; i++) {
        char var[96];
        snprintf(var, sizeof var, ENV_PREFIX "%s", table[i].name);
        const char *v = env_lookup(envp, var);
        if (!v)
            continue;
        if ((rc = set_value(cfg, &table[i], v, why, sizeof why))) {
            bs_set_err(err, errlen, "%s: %s", var, why);
            return rc;
        }
        sources[i] = SRC_ENV;
    }
    return 0;
}

/* The value of flag argv[*i] ("--name=value" or "--name value"; *i moves
 * past a separate value). Returns it, or NULL with err set when there is
 * none. */
static const char *flag_value(int argc, char **argv, int *i, char *err, size_t errlen)
{
    const char *a = argv[*i];
    const char *eq = strchr(a, '=');
    if (eq)
        return eq + 1;
    if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0)
        return argv[++*i];
    /* Never take the next flag as this one's value: its text could be a
     * secret (--agent-token=...), and the error would echo it. */
    bs_set_err(err, errlen, "%s: needs a value", a);
    return NULL;
}

/* The table entry flag a names ("--name" or "--name=..."), or NULL. */
static const struct cfg_entry *flag_entry(const char *a)
{
    if (strncmp(a, "--", 2) != 0)
        return NULL;
    const char *eq = strchr(a, '=');
    return find_flag(a, eq ? (size_t)(eq - a) : strlen(a));
}

/* Step 3: flags override the environment. The ones that name config
 * entries are consumed; the rest stay in argv (argc updated), everything
 * after "--" untouched. */
static int load_flags(struct config *cfg, int *argc, char **argv, char *err, size_t errlen)
{
    char why[256] = "out of memory";
    int rc, out = 1;
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            while (i < *argc)
                argv[out++] = argv[i++];
            break;
        }
        const struct cfg_entry *e = flag_entry(argv[i]);
        if (!e) {
            argv[out++] = argv[i];
            continue;
        }
        const char *val = flag_value(*argc, argv, &i, err, errlen);
        if (!val)
            return BS_EINVAL;
        if ((rc = set_value(cfg, e, val, why, sizeof why))) {
            char flag[64];
            flag_name(e->name, flag, sizeof flag);
            bs_set_err(err, errlen, "%s: %s", flag, why);
            return rc;
        }
        sources[e - table] = SRC_FLAG;
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

/* Step 4a: the parts of DOLT_URL, and the password from its file. */
static int derive_dolt(struct config *cfg, char *err, size_t errlen)
{
    char why[256] = "out of memory";
    int rc;
    if (cfg->dolt_url && *cfg->dolt_url &&
        (rc = config_parse_dolt_url(cfg->dolt_url, &cfg->dolt, why, sizeof why)))
        return entry_error(OFF(dolt_url), rc, why, err, errlen);
    if (cfg->dolt_password_file) {
        char *pw = NULL;
        if ((rc = read_secret_file(cfg->dolt_password_file, &pw, why, sizeof why)))
            return entry_error(OFF(dolt_password_file), rc, why, err, errlen);
        if (cfg->dolt.password) {
            memset(cfg->dolt.password, 0, strlen(cfg->dolt.password));
            free(cfg->dolt.password);
        }
        cfg->dolt.password = pw;
    }
    return 0;
}

static void trim_slashes(char *url)
{
    size_t n = url ? strlen(url) : 0;
    while (n > 0 && url[n - 1] == '/')
        url[--n] = '\0';
}

/* Step 4b: the agent token (given or from its file), base URLs without a
 * trailing slash. */
static int derive_agent(struct config *cfg, char *err, size_t errlen)
{
    char why[256] = "out of memory";
    int rc;
    if (cfg->agent_token && cfg->agent_token_file) {
        bs_set_err(err, errlen, ENV_PREFIX "AGENT_TOKEN_FILE: set together with "
                ENV_PREFIX "AGENT_TOKEN; use one");
        return BS_EINVAL;
    }
    if (cfg->agent_token_file &&
        (rc = read_secret_file(cfg->agent_token_file, &cfg->agent_token, why, sizeof why)))
        return entry_error(OFF(agent_token_file), rc, why, err, errlen);
    trim_slashes(cfg->agent_url);
    trim_slashes(cfg->beadboard_url);
    return 0;
}

/* Step 4: cross-field checks and derived values, in the order a reader of
 * the table meets them, so the first problem reported is the first there. */
static int derive(struct config *cfg, char *err, size_t errlen)
{
    char why[256] = "out of memory";
    int rc;
    if ((rc = derive_dolt(cfg, err, errlen)) || (rc = derive_agent(cfg, err, errlen)))
        return rc;
    if (cfg->dolt_tls_ca)
        cfg->dolt_tls = 1;
    if (cfg->prompt_template_file &&
        (rc = read_template(cfg->prompt_template_file, &cfg->prompt_template, why, sizeof why)))
        return entry_error(OFF(prompt_template_file), rc, why, err, errlen);
    if ((rc = parse_listen(cfg->listen, &cfg->listen_host, &cfg->listen_port, why, sizeof why)))
        return entry_error(OFF(listen), rc, why, err, errlen);
    return check_author(cfg, err, errlen);
}

int config_load(struct config *cfg, int *argc, char **argv, char **envp, char *err,
                size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    int rc = load_defaults(cfg, err, errlen);
    if (rc == 0)
        rc = load_env(cfg, envp, err, errlen);
    if (rc == 0)
        rc = load_flags(cfg, argc, argv, err, errlen);
    if (rc == 0)
        rc = derive(cfg, err, errlen);
    for (size_t i = 0; rc == 0 && i < NENTRIES; i++) {
        if (table[i].offset == OFF(probe_interval_ms))
            cfg->probe_interval_set = sources[i] != SRC_DEFAULT;
    }
    if (rc)
        config_free(cfg);
    return rc;
}

int config_require(const struct config *cfg, unsigned need, char *err, size_t errlen)
{
    for (size_t i = 0; i < NENTRIES; i++) {
        const struct cfg_entry *e = &table[i];
        int needed = ((e->flags & CF_NEED_DOLT) && (need & CONFIG_NEED_DOLT)) ||
                     ((e->flags & CF_NEED_AGENT) && (need & CONFIG_NEED_AGENT) &&
                      cfg->mode == MODE_AGENT);
        const char *sval = string_type(e->type)
            ? *(char *const *)(const void *)((const char *)cfg + e->offset) : "";
        if (needed && (!sval || !*sval)) {
            bs_set_err(err, errlen, ENV_PREFIX "%s: required but not set (%s)", e->name, e->help);
            return BS_EINVAL;
        }
    }
    if ((need & CONFIG_NEED_AGENT) && cfg->mode == MODE_BEADBOARD && !cfg->beadboard_url) {
        bs_set_err(err, errlen, ENV_PREFIX "BEADBOARD_URL: required but not set (MODE=beadboard)");
        return BS_EINVAL;
    }
    if ((need & CONFIG_NEED_AGENT) && cfg->mode == MODE_AGENT &&
        (!cfg->agent_token || !*cfg->agent_token)) {
        bs_set_err(err, errlen, ENV_PREFIX "AGENT_TOKEN: required but not set (set it or "
                ENV_PREFIX "AGENT_TOKEN_FILE)");
        return BS_EINVAL;
    }
    return 0;
}

void config_free(struct config *cfg)
{
    for (size_t i = 0; i < NENTRIES; i++) {
        const struct cfg_entry *e = &table[i];
        if (!string_type(e->type))
            continue;
        char **sp = (char **)(void *)((char *)cfg + e->offset);
        if (*sp && secret_type(e->type))
            memset(*sp, 0, strlen(*sp));
        free(*sp);
        *sp = NULL;
    }
    dolt_target_free(&cfg->dolt);
    free(cfg->listen_host);
    cfg->listen_host = NULL;
    free(cfg->prompt_template);
    cfg->prompt_template = NULL;
}

/* Renders the value of entry e for humans, secrets redacted. */
static void render(const struct config *cfg, const struct cfg_entry *e, char *buf, size_t len)
{
    const char *field = (const char *)cfg + e->offset;
    switch (e->type) {
    case CT_DURATION:
        config_format_duration(*(const uint64_t *)(const void *)field, buf, len);
        return;
    case CT_INT:
        snprintf(buf, len, "%lld", (long long)*(const int64_t *)(const void *)field);
        return;
    case CT_FLOAT:
        snprintf(buf, len, "%g", *(const double *)(const void *)field);
        return;
    case CT_BOOL:
        snprintf(buf, len, "%s", *(const int *)(const void *)field ? "true" : "false");
        return;
    case CT_ENUM:
        snprintf(buf, len, "%s", e->choices[*(const int *)(const void *)field]);
        return;
    default:
        break;
    }
    const char *s = *(char *const *)(const void *)field;
    if (!s) {
        snprintf(buf, len, "(unset)");
    } else if (e->type == CT_SECRET) {
        snprintf(buf, len, "***");
    } else if (e->type == CT_MYSQL_URL && cfg->dolt.host) {
        const struct dolt_target *t = &cfg->dolt;
        snprintf(buf, len, "mysql://%s%s@%s:%u/%s%s%s", t->user,
                 strchr(s, '@') && strchr(s, ':') && t->password ? ":***" : "", t->host, t->port,
                 t->database, t->socket ? "?socket=" : "", t->socket ? t->socket : "");
    } else if (e->type == CT_MYSQL_URL) {
        snprintf(buf, len, "(set, unparsed)");
    } else {
        snprintf(buf, len, "%s", s);
    }
}

void config_print(const struct config *cfg, FILE *out)
{
    char val[1024];
    for (size_t i = 0; i < NENTRIES; i++) {
        render(cfg, &table[i], val, sizeof val);
        fprintf(out, ENV_PREFIX "%s=%s  # %s\n", table[i].name, val, source_names[sources[i]]);
    }
}

void config_print_help(FILE *out)
{
    char flag[64];
    for (size_t i = 0; i < NENTRIES; i++) {
        flag_name(table[i].name, flag, sizeof flag);
        fprintf(out, "  " ENV_PREFIX "%-22s %-24s %s (default: %s)\n", table[i].name, flag,
                table[i].help, table[i].def ? (*table[i].def ? table[i].def : "\"\"") : "none");
    }
}

void config_print_markdown(FILE *out)
{
    char flag[64];
    fprintf(out, "| variable | flag | default | meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < NENTRIES; i++) {
        flag_name(table[i].name, flag, sizeof flag);
        fprintf(out, "| `" ENV_PREFIX "%s` | `%s` | %s%s%s | %s |\n", table[i].name, flag,
                table[i].def ? "`" : "", table[i].def ? (*table[i].def ? table[i].def : "\"\"") :
                (table[i].flags ? "required" : "unset"), table[i].def ? "`" : "", table[i].help);
    }
}

void config_dolt_options(const struct config *cfg, struct dolt_options *o)
{
    memset(o, 0, sizeof *o);
    o->host = cfg->dolt.host;
    o->port = cfg->dolt.port;
    o->socket = cfg->dolt.socket;
    o->user = cfg->dolt.user;
    o->password = cfg->dolt.password;
    o->database = cfg->dolt.database;
    o->tls = cfg->dolt_tls;
    o->tls_ca = cfg->dolt_tls_ca;
}
