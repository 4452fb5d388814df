-- An attempt adopted from another beads-sched instance (a hand-over: the
-- bead was dispatched by the instance that was active before) carries the
-- number of attempts the bead had already had elsewhere, counted from the
-- claim notes on the bead, so MAX_ATTEMPTS counts them too.
ALTER TABLE journal ADD COLUMN prior_attempts INTEGER NOT NULL DEFAULT 0 CHECK (prior_attempts >= 0);
