-- The write-ahead journal of dispatch attempts (DESIGN.md "The journal").
-- Timestamps are integer milliseconds since the Unix epoch, UTC; the views in
-- later migrations render them as ISO-8601 for the sqlite3 shell.

-- One row per dispatch attempt. `state` only moves forward:
-- claiming -> claimed -> posting -> (unknown | dispatched) -> terminal.
CREATE TABLE journal (
    id              INTEGER PRIMARY KEY,
    bead_id         TEXT    NOT NULL,
    attempt         INTEGER NOT NULL CHECK (attempt >= 1),
    dispatch_id     TEXT    NOT NULL UNIQUE,
    state           TEXT    NOT NULL CHECK (state IN (
                        'claiming', 'claimed', 'posting', 'unknown', 'dispatched',
                        'closed', 'blocked', 'released', 'refused', 'lost_race',
                        'retrying', 'gave_up')),
    job_id          TEXT,
    created_at      INTEGER NOT NULL,
    claimed_at      INTEGER,
    posting_at      INTEGER,
    dispatched_at   INTEGER,
    finished_at     INTEGER,
    outcome         TEXT,
    detail          TEXT,
    bead_updated_at TEXT,
    UNIQUE (bead_id, attempt)
);
-- The restart and reaper scans read only the non-terminal rows.
CREATE INDEX journal_active ON journal (state)
    WHERE state IN ('claiming', 'claimed', 'posting', 'unknown', 'dispatched');
CREATE INDEX journal_finished ON journal (finished_at) WHERE finished_at IS NOT NULL;

-- Append-only log of everything that happened, one row per event.
CREATE TABLE event_log (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    bead_id    TEXT,
    attempt_id INTEGER REFERENCES journal (id) ON DELETE CASCADE,
    event      TEXT    NOT NULL,
    job_id     TEXT,
    detail     TEXT
);
CREATE INDEX event_log_bead ON event_log (bead_id, id);
CREATE INDEX event_log_attempt ON event_log (attempt_id);

-- Per-bead retry state. `attempts` only grows, across restarts and releases.
CREATE TABLE bead_state (
    bead_id       TEXT    PRIMARY KEY,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_retry_at INTEGER,
    skip_noted_at TEXT
) WITHOUT ROWID;

-- Operator settings that survive restarts (e.g. paused).
CREATE TABLE settings (
    key        TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
