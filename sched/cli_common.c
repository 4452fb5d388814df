/* Helpers shared by the read-only commands (cli.h): opening the store for
 * reading, time and duration formats, printable text, JSON output and the
 * aligned table. */
#include "cli.h"

#include "clock.h"
#include "errors.h"
#include "log.h"
#include "text.h"

#include <stdlib.h>
#include <string.h>

/* See cli.h: info becomes warn; debug and the quieter levels stay. */
void cli_quiet_logs(const struct config *cfg)
{
    if (cfg->log_level > LL_DEBUG && cfg->log_level < LL_WARN)
        log_setup(LL_WARN, (enum log_format)cfg->log_format);
}

/* See cli.h. */
int cli_open_store(const struct config *cfg, int missing_ok, struct store **out)
{
    char err[512];
    int rc = store_open(out, cfg->store, STORE_OPEN_READ, err, sizeof err);
    if (rc == 0)
        return 0;
    *out = NULL;
    if (rc == BS_ENOTFOUND) {
        if (missing_ok)
            return 0;
        fprintf(stderr,
                "beads-sched: no store at %s: the daemon has not run with this store yet "
                "(or BEADS_SCHED_STORE / --store points elsewhere)\n", cfg->store);
        return 1;
    }
    fprintf(stderr, "beads-sched: %s\n", err);
    return 1;
}

/* See cli.h. Never fails; a negative ms rounds towards the past. */
void cli_iso_ms(int64_t ms, char *buf, size_t len)
{
    if (ms == 0) {
        snprintf(buf, len, "-");
        return;
    }
    clock_utc(ms, CLOCK_UTC_ISO_MS, buf, len);
}

/* See cli.h. Never fails (output cut to len). */
void cli_duration(int64_t ms, char *buf, size_t len)
{
    if (ms < 0)
        ms = -ms;
    int64_t s = ms / 1000;
    if (ms < 1000)
        snprintf(buf, len, "%lldms", (long long)ms);
    else if (s < 60)
        snprintf(buf, len, "%llds", (long long)s);
    else if (s < 3600)
        snprintf(buf, len, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
    else if (s < 86400)
        snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
    else
        snprintf(buf, len, "%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
}

/* See cli.h: digits only, no sign, no overflow. */
int cli_parse_count(const char *s, int64_t *out)
{
    if (!s || !*s)
        return BS_EINVAL;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10)
            return BS_EINVAL;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return 0;
}

/* See cli.h. */
char *cli_printable(const char *s)
{
    if (!s)
        s = "";
    char *p = text_utf8_clean(s, strlen(s));
    if (!p)
        return NULL;
    for (unsigned char *c = (unsigned char *)p; *c; c++) {
        if (*c < 0x20 || *c == 0x7f)
            *c = ' ';
    }
    /* C1 controls (U+0080..U+009F, "\xc2\x80".."\xc2\x9f") also steer
     * terminals: replace them by two spaces, keeping the length. */
    for (unsigned char *c = (unsigned char *)p; *c; c++) {
        if (c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f)
            c[0] = c[1] = ' ';
    }
    return p;
}

/* See cli.h. */
json_t *cli_json_text(const char *s)
{
    if (!s)
        return json_null();
    char *clean = text_utf8_clean(s, strlen(s));
    if (!clean)
        return NULL;
    json_t *j = json_string(clean);
    free(clean);
    return j;
}

/* See cli.h. */
int cli_json_print(json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        fprintf(stderr, "beads-sched: out of memory building the JSON output\n");
        return 1;
    }
    puts(text);
    free(text);
    return 0;
}

/* Display width of UTF-8 text: its code point count (every character is
 * taken as one column, which holds for the ids and words printed here). */
static size_t display_width(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        n += (*p & 0xC0) != 0x80;
    return n;
}

/* Prints one row padded to the column widths known so far (at least two
 * spaces between cells), without trailing blanks. */
static void print_row(const struct cli_table *t, char *const *row)
{
    fputs(t->indent, t->out);
    size_t last = t->ncols;
    while (last > 1 && !*row[last - 1])
        last--; /* no trailing blanks for empty last cells */
    for (size_t c = 0; c < last; c++) {
        fputs(row[c], t->out);
        if (c + 1 < last) {
            size_t w = display_width(row[c]);
            size_t to = (w > t->width[c] ? w : t->width[c]) + 2;
            for (size_t k = w; k < to; k++)
                fputc(' ', t->out);
        }
    }
    fputc('\n', t->out);
}

/* Frees the buffered cells; the table can keep buffering. */
static void free_rows(struct cli_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    t->nrows = 0;
}

/* Prints the buffered rows and frees them. */
static void flush(struct cli_table *t)
{
    for (size_t r = 0; r < t->nrows; r++)
        print_row(t, &t->cells[r * t->ncols]);
    free_rows(t);
}

/* See cli.h. */
int cli_table_init(struct cli_table *t, FILE *out, const char *indent, size_t ncols,
                   const char *const *headers, size_t flush_rows)
{
    memset(t, 0, sizeof *t);
    t->out = out;
    t->indent = indent ? indent : "";
    t->ncols = ncols;
    t->flush_rows = flush_rows;
    t->width = calloc(ncols, sizeof *t->width);
    if (!t->width)
        return BS_ENOMEM;
    return cli_table_add(t, headers);
}

/* See cli.h. On BS_ENOMEM the row is dropped and the table marked failed. */
int cli_table_add(struct cli_table *t, const char *const *cells)
{
    char *row[t->ncols];
    for (size_t c = 0; c < t->ncols; c++) {
        row[c] = cli_printable(cells[c]);
        if (!row[c]) {
            for (size_t k = 0; k < c; k++)
                free(row[k]);
            t->failed = 1;
            return BS_ENOMEM;
        }
    }
    if (t->streaming) {
        print_row(t, row);
        for (size_t c = 0; c < t->ncols; c++)
            free(row[c]);
        return 0;
    }
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **grown = realloc(t->cells, cap * t->ncols * sizeof *grown);
        if (!grown) {
            for (size_t c = 0; c < t->ncols; c++)
                free(row[c]);
            t->failed = 1;
            return BS_ENOMEM;
        }
        t->cells = grown;
        t->cap = cap;
    }
    for (size_t c = 0; c < t->ncols; c++) {
        size_t w = display_width(row[c]);
        if (w > t->width[c])
            t->width[c] = w;
        t->cells[t->nrows * t->ncols + c] = row[c];
    }
    t->nrows++;
    if (t->flush_rows && t->nrows >= t->flush_rows) {
        flush(t);
        t->streaming = 1;
    }
    return 0;
}

/* See cli.h. */
int cli_table_finish(struct cli_table *t)
{
    flush(t);
    free(t->cells);
    free(t->width);
    int failed = t->failed;
    memset(t, 0, sizeof *t);
    return failed ? BS_ENOMEM : 0;
}

/* See cli.h. */
void cli_table_drop(struct cli_table *t)
{
    free_rows(t);
    free(t->cells);
    free(t->width);
    memset(t, 0, sizeof *t);
}
