#ifndef BS_STRBUF_H
#define BS_STRBUF_H
/* A growable, NUL-terminated string buffer with an optional size cap.
 *
 *   struct strbuf b = STRBUF_INIT;          (or strbuf_init(&b, max))
 *   strbuf_puts(&b, "attempt ");
 *   strbuf_printf(&b, "%d", n);
 *   char *s = strbuf_take(&b);              (NULL if an allocation failed)
 *
 * Errors are sticky, not returned by each append: once an allocation fails
 * (nomem) or an append would pass the cap (overflow), every later append is
 * a no-op, so the contents are always a clean prefix of what was asked for.
 * An append that passes the cap keeps what fits, cut at a UTF-8 boundary.
 * The buffer owns p until strbuf_take or strbuf_free; it is not shared
 * between threads. */
#include <stddef.h>

struct strbuf {
    char *p;       /* NULL until the first append; then always NUL-terminated */
    size_t len;    /* bytes in p, without the NUL */
    size_t cap;    /* bytes allocated at p */
    size_t max;    /* largest len allowed; 0: no cap */
    int nomem;     /* an allocation failed */
    int overflow;  /* an append was cut at max */
};

#define STRBUF_INIT {NULL, 0, 0, 0, 0, 0}

/* Empties b and sets its cap (0: none). b must not hold memory. */
void strbuf_init(struct strbuf *b, size_t max);
/* Appends s[0..n) (any bytes, NULs included). */
void strbuf_put(struct strbuf *b, const void *s, size_t n);
/* Appends the string s. */
void strbuf_puts(struct strbuf *b, const char *s);
/* Appends printf(fmt, ...). A format error counts as nomem. */
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Marks b as failed by nomem, e.g. when a caller's own allocation for its
 * next piece failed: what follows would be a wrong string. */
void strbuf_set_nomem(struct strbuf *b);
/* 1 if nothing was lost so far (no nomem, no overflow). */
int strbuf_ok(const struct strbuf *b);
/* Hands the string over to the caller (free() it): "" when nothing was
 * appended, NULL after nomem (the partial text is freed). Overflowed text
 * is returned, cut; check strbuf_ok first if that matters. b is empty
 * afterwards, with the same cap. */
char *strbuf_take(struct strbuf *b);
/* Frees the memory; b is empty afterwards, with the same cap. */
void strbuf_free(struct strbuf *b);
#endif
