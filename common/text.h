#ifndef BS_TEXT_H
#define BS_TEXT_H
/* Text helpers for untrusted bead text. */
#include <stddef.h>
#include <stdint.h>

/* The one "cut at a UTF-8 boundary": length of the longest prefix of
 * s[0..len) that is at most max bytes and does not end inside a UTF-8
 * sequence. Text that is not UTF-8 where it is cut (more than 3
 * continuation bytes in a row) gets a plain byte cut at max. Never fails. */
size_t text_utf8_prefix(const char *s, size_t len, size_t max);

/* Returns a malloc'd, NUL-terminated copy of s[0..len) that is valid UTF-8:
 * invalid bytes and NULs become U+FFFD. NULL on allocation failure. */
char *text_utf8_clean(const char *s, size_t len);

/* Returns a malloc'd copy of s capped at max bytes (UTF-8 safe); when cut,
 * the copy ends with marker_fmt's expansion, e.g. "\n[... cut: 1234 more bytes]".
 * *cut (may be NULL) is set to 1 if it was cut. */
char *text_cap(const char *s, size_t len, size_t max, int *cut);

/* FNV-1a, 64 bits, over n bytes of p, continuing from h (start with
 * TEXT_FNV1A_SEED): stable across builds and machines. */
#define TEXT_FNV1A_SEED 0xcbf29ce484222325ULL
uint64_t text_fnv1a(uint64_t h, const void *p, size_t n);

/* A random RFC 4122 version 4 UUID, lowercase, into buf (>= 37 bytes). */
void text_uuid4(char *buf);
#endif
