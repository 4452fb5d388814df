#ifndef BS_CLOCK_H
#define BS_CLOCK_H
#include <stddef.h>
#include <stdint.h>
/* Wall-clock milliseconds since the Unix epoch (UTC). Test builds
 * (BEADS_SCHED_TEST_HOOKS) add BEADS_SCHED_TEST_CLOCK_SKEW_MS to it. */
int64_t clock_now_ms(void);
/* The machine's clock as it is, never skewed: for log timestamps. */
int64_t clock_real_ms(void);

/* The one UTC formatter. Forms:
 *   CLOCK_UTC_ISO     2026-11-21T04:50:00Z       (ISO 8601, seconds)
 *   CLOCK_UTC_ISO_MS  2026-11-21T04:50:00.123Z   (ISO 8601, milliseconds)
 *   CLOCK_UTC_SQL     2026-11-21 04:50:00        (SQL DATETIME, as Dolt stores it) */
enum clock_utc_form { CLOCK_UTC_ISO, CLOCK_UTC_ISO_MS, CLOCK_UTC_SQL };
/* Formats ms since the epoch as UTC in the given form into buf, cut to len
 * (CLOCK_UTC_MAX always fits). A negative ms rounds towards the past.
 * Never fails. */
void clock_utc(int64_t ms, enum clock_utc_form form, char *buf, size_t len);
#define CLOCK_UTC_MAX 40
#endif
