#include "log.h"
#include "clock.h"
#include "errors.h"
#include "strbuf.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* logfmt value: bare when it has no space, quote, '=' or control byte. */
static void line_put_value(struct strbuf *l, const char *v)
{
    int bare = *v != '\0';
    for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
        if (*c <= ' ' || *c == '"' || *c == '=' || *c == '\\' || *c == 0x7f) {
            bare = 0;
            break;
        }
    }
    if (bare) {
        strbuf_puts(l, v);
        return;
    }
    strbuf_put(l, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)v; *c; c++) {
        char esc[8];
        switch (*c) {
        case '"': strbuf_put(l, "\\\"", 2); break;
        case '\\': strbuf_put(l, "\\\\", 2); break;
        case '\n': strbuf_put(l, "\\n", 2); break;
        case '\r': strbuf_put(l, "\\r", 2); break;
        case '\t': strbuf_put(l, "\\t", 2); break;
        default:
            if (*c < 0x20 || *c == 0x7f) {
                snprintf(esc, sizeof esc, "\\x%02x", *c);
                strbuf_puts(l, esc);
            } else {
                strbuf_put(l, (const char *)c, 1);
            }
        }
    }
    strbuf_put(l, "\"", 1);
}

void log_emit(enum log_level lvl, const char *msg, ...)
{
    char ts[CLOCK_UTC_MAX];
    clock_utc(clock_real_ms(), CLOCK_UTC_ISO_MS, ts, sizeof ts);
    va_list ap;
    va_start(ap, msg);
    struct strbuf l = STRBUF_INIT;

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
            strbuf_puts(&l, s);
            free(s);
        }
    } else {
        strbuf_puts(&l, "ts=");
        strbuf_puts(&l, ts);
        strbuf_puts(&l, " level=");
        strbuf_puts(&l, log_level_name(lvl));
        strbuf_puts(&l, " msg=");
        line_put_value(&l, msg);
        for (const char *k = va_arg(ap, const char *); k; k = va_arg(ap, const char *)) {
            const char *v = va_arg(ap, const char *);
            if (!v)
                continue;
            strbuf_put(&l, " ", 1);
            strbuf_puts(&l, k);
            strbuf_put(&l, "=", 1);
            line_put_value(&l, v);
        }
    }
    va_end(ap);
    /* After an allocation failure the line is cut, never lost entirely. */
    if (!l.p)
        return;
    l.p[l.len] = '\n'; /* over the NUL: the buffer always has room for it */
    pthread_mutex_lock(&log_lock);
    fwrite(l.p, 1, l.len + 1, stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
    free(l.p);
}
