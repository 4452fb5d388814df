#ifndef BS_CLI_H
#define BS_CLI_H
/* The read-only operator commands and the helpers they share.
 *
 *   status   [--json]                   cli_status.c
 *   history  [BEAD] [--json] [--limit N] cli_history.c
 *   explain  BEAD [--json]              cli_explain.c
 *
 * Each command gets the loaded configuration and the arguments left after
 * the command name and the configuration flags; it prints to stdout (errors
 * to stderr, one line starting "beads-sched: ") and returns the process
 * exit status: 0 success, 1 runtime failure (no store, Dolt unreachable,
 * unknown bead), 2 bad usage. None of them writes to the store, Dolt or
 * the agent; none prints a secret. Text read from the store or Dolt is
 * untrusted: text output replaces control characters, JSON is jansson's. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "store.h"

int cli_status(const struct config *cfg, int argc, char **argv);
int cli_history(const struct config *cfg, int argc, char **argv);
int cli_explain(const struct config *cfg, int argc, char **argv);

/* ---- shared helpers (cli_common.c) ---- */

/* The read commands log warnings and errors only unless LOG_LEVEL=debug,
 * so informational log lines do not mix with their output. */
void cli_quiet_logs(const struct config *cfg);

/* Opens cfg->store with STORE_OPEN_READ. Returns 0 with *out set; 1 with
 * *out NULL and a message on stderr when it cannot be opened; with
 * missing_ok, a store that does not exist is not an error: returns 0 with
 * *out NULL and nothing printed. */
int cli_open_store(const struct config *cfg, int missing_ok, struct store **out);

/* "2026-11-21T04:50:00.123Z" (UTC, milliseconds, like the store's views);
 * "-" for 0. */
void cli_iso_ms(int64_t ms, char *buf, size_t len);
/* A short duration: "850ms", "42s", "3m05s", "2h07m", "3d04h". Negative
 * values are printed as their absolute value. */
void cli_duration(int64_t ms, char *buf, size_t len);
/* Parses a non-negative decimal integer (the whole string). 0 or BS_EINVAL. */
int cli_parse_count(const char *s, int64_t *out);

/* A malloc'd copy of s safe to print on a terminal: invalid UTF-8 replaced
 * (U+FFFD), control characters (newlines, ESC, ...) as spaces. NULL gives
 * "". NULL only when out of memory. */
char *cli_printable(const char *s);
/* A JSON string of s with invalid UTF-8 replaced; json null for NULL. New
 * reference; NULL only when out of memory. */
json_t *cli_json_text(const char *s);
/* Prints j compactly on one line to stdout followed by a newline, and
 * releases it. Returns 0, or 1 with a message when it could not be built
 * (j NULL: out of memory). */
int cli_json_print(json_t *j);

/* An aligned text table: columns separated by two spaces, the last one not
 * padded. Rows are kept until the first flush_rows have been seen, then
 * printed with the widths found so far; later rows print at once with
 * those widths (a longer cell pushes its row out of line, nothing is cut),
 * so memory stays bounded whatever the row count. Cells are copied through
 * cli_printable. */
struct cli_table {
    FILE *out;
    const char *indent;
    size_t ncols;
    size_t *width;     /* display width per column */
    char **cells;      /* nrows * ncols, row-major, buffered rows only */
    size_t nrows, cap;
    size_t flush_rows; /* 0 = buffer everything */
    int streaming;     /* the buffered rows were printed */
    int failed;        /* out of memory: the table is incomplete */
};
/* Starts a table with a header row. Returns 0 or BS_ENOMEM. */
int cli_table_init(struct cli_table *t, FILE *out, const char *indent, size_t ncols,
                   const char *const *headers, size_t flush_rows);
/* Adds a row of ncols cells (NULL cells print as ""). 0 or BS_ENOMEM. */
int cli_table_add(struct cli_table *t, const char *const *cells);
/* Prints what is still buffered and frees the table. Returns 0, or BS_ENOMEM
 * if a row was lost along the way. */
int cli_table_finish(struct cli_table *t);
/* Frees the table without printing what is still buffered. */
void cli_table_drop(struct cli_table *t);
#endif
