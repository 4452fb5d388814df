#ifndef BS_CLOCK_H
#define BS_CLOCK_H
#include <stddef.h>
#include <stdint.h>
/* Wall-clock milliseconds since the Unix epoch (UTC). */
int64_t clock_now_ms(void);
/* Formats ms as UTC ISO-8601 with seconds ("2026-11-21T04:50:00Z"). */
void clock_iso8601(int64_t ms, char *buf, size_t len);
#endif
