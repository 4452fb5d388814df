#ifndef BS_LOG_H
#define BS_LOG_H
/* Structured logging: one line per event on stderr, logfmt or JSON.
 *
 *   log_info("dispatched", "bead", bead_id, "attempt", LOG_INT(n), "job", job_id);
 *
 * Arguments after the message are key/value pairs of strings; a NULL value
 * drops the pair. The level is checked before anything is formatted. Never
 * pass a secret (token, password) as a value. Thread-safe: each line is
 * written with one fwrite under a lock. */
#include <stdint.h>

enum log_level { LL_DEBUG = 0, LL_INFO = 1, LL_WARN = 2, LL_ERROR = 3, LL_OFF = 4 };
enum log_format { LF_LOGFMT = 0, LF_JSON = 1 };

extern enum log_level log_min_level;

void log_setup(enum log_level min, enum log_format format);
/* Parses "debug|info|warn|error"; returns 0 or BS_EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_name(enum log_level l);

/* Writes one line; the variadic part is key, value, ..., NULL. */
void log_emit(enum log_level lvl, const char *msg, ...);

/* Formats an integer into a temporary that lives until the end of the
 * enclosing full expression's block; for use as a log value. */
const char *log_i64(char *buf, int64_t v);
#define LOG_INT(v) log_i64((char[24]){0}, (int64_t)(v))

#define LOG_AT(lvl, ...) \
    do { if ((lvl) >= log_min_level) log_emit((lvl), __VA_ARGS__, (const char *)0); } while (0)
#define log_debug(...) LOG_AT(LL_DEBUG, __VA_ARGS__)
#define log_info(...)  LOG_AT(LL_INFO, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LL_WARN, __VA_ARGS__)
#define log_error(...) LOG_AT(LL_ERROR, __VA_ARGS__)
#endif
