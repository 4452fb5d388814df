-- Read-only views for operators using the stock sqlite3 shell
-- (DESIGN.md "Inspection"): states as words, timestamps as UTC ISO-8601
-- text with milliseconds (2026-11-21T04:50:00.123Z), NULL when not set.
--
--   sqlite3 store.db "SELECT * FROM attempts WHERE finished_at IS NULL"
--   sqlite3 store.db "SELECT * FROM history WHERE bead_id = 'bd-42'"

-- One row per journal row (dispatch attempt).
CREATE VIEW attempts AS
SELECT j.bead_id     AS bead_id,
       j.attempt     AS attempt,
       j.state       AS state,
       j.job_id      AS job_id,
       j.dispatch_id AS dispatch_id,
       strftime('%Y-%m-%dT%H:%M:%fZ', j.claimed_at / 1000.0, 'unixepoch')    AS claimed_at,
       strftime('%Y-%m-%dT%H:%M:%fZ', j.dispatched_at / 1000.0, 'unixepoch') AS dispatched_at,
       strftime('%Y-%m-%dT%H:%M:%fZ', j.finished_at / 1000.0, 'unixepoch')   AS finished_at,
       j.outcome     AS outcome,
       j.detail      AS detail
FROM journal AS j;

-- One row per event, oldest first; `attempt` is the bead's attempt number
-- (NULL for events not tied to an attempt).
CREATE VIEW history AS
SELECT strftime('%Y-%m-%dT%H:%M:%fZ', e.at / 1000.0, 'unixepoch') AS at,
       e.bead_id  AS bead_id,
       j.attempt  AS attempt,
       e.event    AS event,
       e.job_id   AS job_id,
       e.detail   AS detail
FROM event_log AS e
LEFT JOIN journal AS j ON j.id = e.attempt_id
ORDER BY e.id;
