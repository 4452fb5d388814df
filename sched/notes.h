#ifndef BS_NOTES_H
#define BS_NOTES_H
/* Every note beads-sched writes to a bead, built here, and every note it
 * reads back (its own, another instance's, the old CronJobs', the agent's),
 * parsed here, so the words written and the words looked for cannot drift
 * apart. Pure; any thread. Built notes are at most NOTES_MAX bytes (and at
 * most len - 1), cut at a UTF-8 boundary, and one line: a CR or LF in a
 * variable part becomes a space (the whole notes column is bounded by
 * beads.c). Where a note has a fixed ending that is parsed back or grepped
 * for ("released for retry (attempt n/m)", "attempts exhausted ..."), a long
 * variable part is cut so that the ending stays whole. Users and their
 * scripts grep for these words: they are the old CronJobs' where the
 * CronJobs wrote one.
 *
 * Parsers take notes as read from the bead: NULL, empty, many lines from
 * other writers, LF or CRLF line ends, an id at the very end with no
 * newline. An id is matched whole ("ab" is not found in "abc"), and an id
 * that does not fit the caller's buffer is not returned cut. */
#include <stddef.h>
#include <stdint.h>

/* The largest note built here, in bytes (without the NUL): buffers of
 * NOTES_MAX + 1 bytes always hold a whole note. */
#define NOTES_MAX 1200

/* --- written by beads-sched --------------------------------------------- */

/* "auto-dispatcher claimed at <server time> (dispatch <id>)"; time NULL: "?" */
void notes_claim(char *out, size_t len, const char *server_time, const char *dispatch_id);
/* "(dispatch <id>)": what marks our claim in the notes, or in the comment of
 * the claim's events row when the note did not fit in the notes. */
void notes_claim_mark(char *out, size_t len, const char *dispatch_id);
/* "dispatched: job=<id>" */
void notes_dispatched(char *out, size_t len, const char *job_id);
/* "dispatch failed HTTP <status>: <detail>" (detail cut to 900 bytes) and,
 * when used >= max, "; attempts exhausted (<used>/<max>), blocking" */
void notes_refused(char *out, size_t len, long status, const char *detail, int used, int max);
/* "auto-dispatcher: skipped, no acceptance criteria. Add them (bd update <id>
 * --acceptance \"...\") and the bead will be dispatched." (id cut to 100
 * bytes) */
void notes_skipped(char *out, size_t len, const char *bead_id);

/* The reaper's notes. `what` says how the attempt ended: notes_why_*, or the
 * job's line as agent_job_describe gives it ("job <id> failed (exit 1)"). */
/* "reaper: <what>, bead still in_progress; released for retry (attempt <used>/<max>)" */
void notes_reap_retry(char *out, size_t len, const char *what, int used, int max);
/* "reaper: <what>; attempts exhausted (<used>/<max>), blocking" */
void notes_reap_give_up(char *out, size_t len, const char *what, int used, int max);
/* "reaper: no progress for <span> (threshold <span>) — blocking" */
void notes_reap_stale(char *out, size_t len, int64_t quiet_ms, int64_t threshold_ms);
/* "reaper: job <id> still <status> after <span> (limit <span>) — blocking" */
void notes_reap_hard_limit(char *out, size_t len, const char *job_id, const char *status,
                           int64_t ran_ms, int64_t limit_ms);

/* The `what` of a retry / give-up note (also the journal's detail):
 * job missing: "job <id> not found at the agent (restarted, or record
 *   expired)" or, seen timeout/error before, "job <id> not found at the
 *   agent (record expired after a timeout/error; bead quiet for long
 *   enough)";
 * maybe running: "<job line>; the service does not stop its agent, and the
 *   bead has been quiet for <span> since" (job line cut to 300 bytes);
 * no job id: "the agent of dispatch <id> (job id unknown) has been quiet for
 *   <span>" (reached) / "dispatch <id> got no answer and no claim note from
 *   the agent in <span>" (not reached). */
void notes_why_missing(char *out, size_t len, const char *job_id, int seen_maybe_running);
void notes_why_maybe_running(char *out, size_t len, const char *job_line, int64_t quiet_ms);
void notes_why_no_job_id(char *out, size_t len, const char *dispatch_id, int reached, int64_t quiet_ms);

/* A duration as notes give it: "<n>s" under a minute, else whole "<n>m"
 * (the old reaper's "31m"; never "0m" for a short STALE_AFTER); negative
 * reads as 0. Returns buf (24 bytes hold any). */
const char *notes_span(int64_t ms, char *buf, size_t len);

/* --- read back ---------------------------------------------------------- */

/* The job id of the last "dispatched: job=<id>" note (ours, another
 * instance's, the old CronJobs'); 1 when found and a valid job id
 * (agent_job_id_valid), else 0 and job "". */
int notes_last_dispatched_job(const char *notes, char *job, size_t len);
/* Whether "dispatched: job=<job_id>" is there (that id, whole). */
int notes_has_dispatched(const char *notes, const char *job_id);
/* The claims recorded ("auto-dispatcher claimed at ..."): how many, and the
 * dispatch id of the last one, from its "(dispatch <id>)" on the same line
 * ("" when it names none, as the CronJobs', or when that is cut off). */
int notes_claims(const char *notes, char *last_dispatch, size_t len);
/* Whether the agent's "claimed by agent <dispatch_id>" note is there (that
 * id, whole: followed by the end, a space or punctuation). */
int notes_agent_claimed(const char *notes, const char *dispatch_id);
/* The id in the last "completed by agent <id>" (the agent's close reason or
 * note), without trailing punctuation; 1 when found. An id longer than
 * len - 1 is cut (at a UTF-8 boundary), so compare with ids shorter than
 * that. */
int notes_agent_completed(const char *notes, char *id, size_t len);
/* Whether our reaper released this job's attempt for retry ("reaper: job
 * <id> ... released for retry", on one line). */
int notes_released_for_retry(const char *notes, const char *job_id);
/* The text that starts every reaper note about a job ("reaper: job <id> "),
 * for searching events when the note did not fit in the notes. */
void notes_reaper_job_mark(char *out, size_t len, const char *job_id);

/* The phrases the prompt asks the agent to write (prompt.c uses these). */
#define NOTES_AGENT_CLAIMED "claimed by agent "
#define NOTES_AGENT_COMPLETED "completed by agent "
#endif
