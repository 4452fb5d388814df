#include "strbuf.h"

#include "text.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STRBUF_FIRST_CAP = 256 };

void strbuf_init(struct strbuf *b, size_t max)
{
    *b = (struct strbuf)STRBUF_INIT;
    b->max = max;
}

/* Makes room for more bytes plus the NUL; on failure sets nomem. */
static int strbuf_grow(struct strbuf *b, size_t more)
{
    if (more > SIZE_MAX / 2 - b->len) {
        b->nomem = 1;
        return -1;
    }
    size_t need = b->len + more + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : STRBUF_FIRST_CAP;
    while (cap < need)
        cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) {
        b->nomem = 1;
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

void strbuf_put(struct strbuf *b, const void *s, size_t n)
{
    if (!strbuf_ok(b))
        return;
    if (b->max && n > b->max - b->len) {
        n = text_utf8_prefix(s, n, b->max - b->len);
        b->overflow = 1;
    }
    if (strbuf_grow(b, n) != 0)
        return;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void strbuf_puts(struct strbuf *b, const char *s)
{
    strbuf_put(b, s, strlen(s));
}

void strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
    if (!strbuf_ok(b))
        return;
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->nomem = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        strbuf_put(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->nomem = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    strbuf_put(b, big, (size_t)n);
    free(big);
}

void strbuf_set_nomem(struct strbuf *b)
{
    b->nomem = 1;
}

int strbuf_ok(const struct strbuf *b)
{
    return !b->nomem && !b->overflow;
}

char *strbuf_take(struct strbuf *b)
{
    if (!b->p && !b->nomem && strbuf_grow(b, 0) == 0)
        b->p[0] = '\0';
    char *p = b->p;
    if (b->nomem) {
        free(p);
        p = NULL;
    }
    strbuf_init(b, b->max);
    return p;
}

void strbuf_free(struct strbuf *b)
{
    free(b->p);
    strbuf_init(b, b->max);
}
