#include "log.h"
#include "errors.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

enum log_level log_min_level = LL_INFO;
static enum log_format log_format = LF_LOGFMT;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void log_setup(enum log_level min, enum log_format format)
{
    log_min_level = min;
    log_format = format;
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = LL_DEBUG; i <= LL_OFF; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = LL_WARN;
        return 0;
    }
    return BS_EINVAL;
}

const char *log_level_name(enum log_level l)
{
    return (l >= LL_DEBUG && l <= LL_OFF) ? level_names[l] : "?";
}

const char *log_i64(char *buf, int64_t v)
{
    snprintf(buf, 24, "%" PRId64, v);
    return buf;
}

/* A growable line buffer; on allocation failure the line is cut, never lost
 * entirely. */
struct line {
    char *p;
    size_t len, cap;
};

static void line_put(struct line *l, const char *s, size_t n)
{
    if (l->len + n + 2 > l->cap) {
        size_t cap = l->cap ? l->cap : 256;
        while (l->len + n + 2 > cap)
            cap *= 2;
        char *np = realloc(l->p, cap);
        if (!np)
            return;
        l->p = np;
        l->cap = cap;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void line_puts(struct line *l, const char *s) { line_put(l, s, strlen(s)); }

/* logfmt value: bare when it has no space, quote, '=' or control byte. */
static void line_put_value(struct line *l, const char *v)
{
    int bare = *v != '\0';
    for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
        if (*c <= ' ' || *c == '"' || *c == '=' || *c == '\\' || *c == 0x7f) {
            bare = 0;
            break;
        }
    }
    if (bare) {
        line_puts(l, v);
        return;
    }
    line_put(l, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
        char esc[8];
        switch (*c) {
        case '"': line_put(l, "\\\"", 2); break;
        case '\\': line_put(l, "\\\\", 2); break;
        case '\n': line_put(l, "\\n", 2); break;
        case '\r': line_put(l, "\\r", 2); break;
        case '\t': line_put(l, "\\t", 2); break;
        default:
            if (*c < 0x20 || *c == 0x7f) {
                snprintf(esc, sizeof esc, "\\x%02x", *c);
                line_puts(l, esc);
            } else {
                line_put(l, (const char *)c, 1);
            }
        }
    }
    line_put(l, "\"", 1);
}

static void timestamp(char *buf, size_t n)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%03dZ", (int)(tv.tv_usec / 1000));
}

void log_emit(enum log_level lvl, const char *msg, ...)
{
    char ts[40];
    timestamp(ts, sizeof ts);
    va_list ap;
    va_start(ap, msg);
    struct line l = {0};

    if (log_format == LF_JSON) {
        json_t *o = json_object();
        json_object_set_new(o, "ts", json_string(ts));
        json_object_set_new(o, "level", json_string(log_level_name(lvl)));
        json_object_set_new(o, "msg", json_string(msg));
        for (const char *k = va_arg(ap, const char *); k; k = va_arg(ap, const char *)) {
            const char *v = va_arg(ap, const char *);
            if (v)
                json_object_set_new(o, k, json_string(v));
        }
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        if (s) {
            line_puts(&l, s);
            free(s);
        }
    } else {
        line_puts(&l, "ts=");
        line_puts(&l, ts);
        line_puts(&l, " level=");
        line_puts(&l, log_level_name(lvl));
        line_puts(&l, " msg=");
        line_put_value(&l, msg);
        for (const char *k = va_arg(ap, const char *); k; k = va_arg(ap, const char *)) {
            const char *v = va_arg(ap, const char *);
            if (!v)
                continue;
            line_put(&l, " ", 1);
            line_puts(&l, k);
            line_put(&l, "=", 1);
            line_put_value(&l, v);
        }
    }
    va_end(ap);
    if (!l.p)
        return;
    l.p[l.len++] = '\n';
    pthread_mutex_lock(&log_lock);
    fwrite(l.p, 1, l.len, stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
    free(l.p);
}
