#ifndef BS_RETENTION_H
#define BS_RETENTION_H
/* Retention of the journal and event log: old finished attempts are deleted
 * in small batches so the store stays small on a daemon that runs for years.
 * Meant to run off the hot path (a timer on the store's owning thread); each
 * call is one short write transaction. */
#include <stdint.h>

#include "store.h"

/* Deletes up to `batch` terminal attempts whose finished_at is older than
 * their retention, together with their event_log rows, and up to `batch`
 * free-standing events (attempt_id NULL: skips, pause/resume) older than
 * retain_failed_ms:
 *   - successes (state or outcome "closed") are kept retain_ok_ms after
 *     finished_at;
 *   - every other terminal attempt (blocked, refused, gave_up, ...) is kept
 *     retain_failed_ms.
 * Oldest first. Attempts that are not terminal are never deleted, whatever
 * their age. bead_state is left alone, so attempt numbers never repeat;
 * pruned attempts no longer count towards MAX_ATTEMPTS (they are older than
 * the retention, which should be far longer than any retry sequence).
 *
 * All in one transaction (or a savepoint inside the caller's): on failure
 * nothing is deleted. *deleted (may be NULL) gets the number of attempts
 * plus free-standing events removed (the attempts' own events are not
 * counted); 0 means nothing was due, so a caller can repeat while it is
 * non-zero. Deleted pages are reused by later writes; the file does not
 * shrink.
 *
 * Returns 0, BS_EINVAL (batch < 1, a negative retention), BS_ERDONLY on a
 * READ handle, or a translated error. */
int store_prune(struct store *s, int64_t now_ms, int64_t retain_ok_ms, int64_t retain_failed_ms,
                int batch, int *deleted);
#endif
