#ifndef BS_ERRORS_H
#define BS_ERRORS_H
/* Error codes shared by every module. Functions return 0 on success or one of
 * these negative values; library codes (SQLite rc, MySQL errno, CURLcode) are
 * translated at the module boundary and logged there with their own text. */
enum bs_err {
    BS_OK = 0,
    BS_ERR = -1,        /* generic failure; details were logged or put in err */
    BS_ENOMEM = -2,
    BS_EINVAL = -3,     /* bad argument or bad input */
    BS_EIO = -4,        /* I/O error: disk, network, server */
    BS_EBUSY = -5,      /* resource in use (store lock held by another process) */
    BS_ENEWER = -6,     /* store schema newer than this binary */
    BS_ECORRUPT = -7,   /* store failed its integrity check */
    BS_ENOTFOUND = -8,  /* no such row / key */
    BS_ECONFLICT = -9,  /* lost a race: Dolt error 1213 / SQLSTATE 40001 */
    BS_ESTATE = -10,    /* compare-and-swap found a different state */
    BS_ECONN = -11,     /* connection to a server lost or not established */
    BS_EFULL = -12,     /* disk full */
    BS_ERDONLY = -13,   /* read-only store or file system */
};

/* Returns a short static name for an error code ("conflict", "io", ...). */
const char *bs_strerror(int err);

/* snprintf into a caller's error buffer; does nothing when err is NULL or
 * errlen is 0 (callers may not want the text). */
#include <stddef.h>
void bs_set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
