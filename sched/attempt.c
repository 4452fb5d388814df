#include "attempt.h"

int64_t attempt_backoff_ms(int64_t base_ms, int steps, int64_t cap_ms)
{
    int64_t b = base_ms;
    for (int i = 1; i < steps && b < cap_ms; i++)
        b *= 2;
    if (b > cap_ms)
        b = cap_ms;
    return b > 0 ? b : 1;
}
