#include "errors.h"

#include <stdarg.h>
#include <stdio.h>

const char *bs_strerror(int err)
{
    switch (err) {
    case BS_OK: return "ok";
    case BS_ERR: return "error";
    case BS_ENOMEM: return "out of memory";
    case BS_EINVAL: return "invalid argument";
    case BS_EIO: return "i/o error";
    case BS_EBUSY: return "in use";
    case BS_ENEWER: return "store newer than binary";
    case BS_ECORRUPT: return "corrupt";
    case BS_ENOTFOUND: return "not found";
    case BS_ECONFLICT: return "conflict";
    case BS_ESTATE: return "state changed";
    case BS_ECONN: return "connection error";
    case BS_EFULL: return "disk full";
    case BS_ERDONLY: return "read-only";
    }
    return "unknown error";
}

void bs_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
