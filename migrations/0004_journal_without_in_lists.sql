-- The journal's state rules without IN lists. SQLite evaluates `state IN
-- (...)` in a CHECK constraint or in a partial index's WHERE by building a
-- temporary b-tree each time a row is written: three for every change of
-- an attempt's state (the CHECK, the index's test of the old row and of the
-- new one), two for every new attempt. That was most of the cost of a
-- journal write. The same rules written as OR chains compare in place.
--
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt
-- (https://sqlite.org/lang_altertable.html, "Making Other Kinds Of Table
-- Schema Changes"): same columns, same rows and ids, so event_log's
-- attempt_id still points at the same attempts. The migration runner runs
-- every migration with foreign keys off (else dropping the old table would
-- delete every event through ON DELETE CASCADE) and checks them with PRAGMA
-- foreign_key_check before it commits. The views name the table: they are
-- dropped first and made again unchanged.
--
-- Queries that want the partial index must repeat its WHERE exactly
-- (ACTIVE_WHERE in store/store_internal.h).

DROP VIEW history;
DROP VIEW attempts;

CREATE TABLE journal_new (
    id              INTEGER PRIMARY KEY,
    bead_id         TEXT    NOT NULL,
    attempt         INTEGER NOT NULL CHECK (attempt >= 1),
    dispatch_id     TEXT    NOT NULL UNIQUE,
    state           TEXT    NOT NULL CHECK (
                        state = 'claiming' OR state = 'claimed' OR state = 'posting' OR
                        state = 'unknown' OR state = 'dispatched' OR state = 'closed' OR
                        state = 'blocked' OR state = 'released' OR state = 'refused' OR
                        state = 'lost_race' OR state = 'retrying' OR state = 'gave_up'),
    job_id          TEXT,
    created_at      INTEGER NOT NULL,
    claimed_at      INTEGER,
    posting_at      INTEGER,
    dispatched_at   INTEGER,
    finished_at     INTEGER,
    outcome         TEXT,
    detail          TEXT,
    bead_updated_at TEXT,
    prior_attempts  INTEGER NOT NULL DEFAULT 0 CHECK (prior_attempts >= 0),
    UNIQUE (bead_id, attempt)
);

INSERT INTO journal_new (id, bead_id, attempt, dispatch_id, state, job_id, created_at,
                         claimed_at, posting_at, dispatched_at, finished_at, outcome, detail,
                         bead_updated_at, prior_attempts)
SELECT id, bead_id, attempt, dispatch_id, state, job_id, created_at,
       claimed_at, posting_at, dispatched_at, finished_at, outcome, detail,
       bead_updated_at, prior_attempts
FROM journal;

DROP TABLE journal;
ALTER TABLE journal_new RENAME TO journal;

-- The restart and reaper scans read only the non-terminal rows.
CREATE INDEX journal_active ON journal (state)
    WHERE state = 'claiming' OR state = 'claimed' OR state = 'posting' OR
          state = 'unknown' OR state = 'dispatched';
CREATE INDEX journal_finished ON journal (finished_at) WHERE finished_at IS NOT NULL;

-- The views of 0002_views.sql, unchanged.
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
