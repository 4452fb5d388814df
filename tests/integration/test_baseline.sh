#!/usr/bin/env bash
# tests/bench/baseline_cronjob.sh, the re-created CronJobs the benchmarks
# compare against, behaves as CONTRACTS.md section 1 says the originals did:
# order, notes, one bead per tick, busy, HTTP failure, the reaper rule.
source "$(dirname "$0")/lib.sh"
BASELINE=$BS_SOURCE_DIR/tests/bench/baseline_cronjob.sh
unset "${!BASELINE_@}"

t_new_db current
t_agent --capacity 100
export BASELINE_DB_HOST=127.0.0.1 BASELINE_DB_PORT=$BS_TEST_MYSQL_PORT BASELINE_DB_USER=beads
export BASELINE_DB_PASSWORD=beads-test-pw BASELINE_DB_NAME=$T_DB
export BASELINE_AGENT_URL=$T_AGENT_URL BASELINE_AGENT_TOKEN=test-token

# --- dispatcher: order, notes, one bead per tick ---
t_bead b-late priority=1 "updated_at=UTC_TIMESTAMP() - INTERVAL 1 MINUTE"
t_bead b-early priority=1 "updated_at=UTC_TIMESTAMP() - INTERVAL 2 MINUTE"
t_bead b-urgent priority=0 "updated_at=UTC_TIMESTAMP()"
t_bead tmp-id priority=3
t_sql "UPDATE issues SET id = 'q''x\\\\y' WHERE id = 'tmp-id'" # q'x\y
t_bead b-blank "acceptance_criteria=''"
t_bead b-other assignee="'alice'" priority=0
t_bead b-done status="'closed'" priority=0

set +e
out=$(bash "$BASELINE" dispatcher-tick); rc=$?
set -e
t_eq "one tick: exit 0" 0 "$rc"
t_eq "one tick dispatches one bead" 1 "$(t_posts)"
t_eq "highest priority first" "b-urgent" "$(t_posts '.jobs[0].bead_id')"
notes=$(t_sql "SELECT notes FROM issues WHERE id = 'b-urgent'" | sed 's/\\n/|/g')
t_match "claim and dispatch notes" \
  "^auto-dispatcher claimed at [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\\|dispatched: job=[0-9a-f]{12}$" "$notes"
t_eq "claimed bead in_progress" in_progress "$(t_sql "SELECT status FROM issues WHERE id = 'b-urgent'")"

out=$(bash "$BASELINE" dispatcher 0 0)
t_eq "loop until nothing is left" "dispatcher: ticks=4 done=3 failed=0 idle=1" "$out"
t_eq "ties: oldest updated_at first; quotes in ids" "b-urgent b-early b-late q'x\\y" \
  "$(t_posts '[.jobs[].bead_id] | join(" ")')"
t_eq "empty acceptance criteria: skipped silently" "open|" \
  "$(t_sql "SELECT CONCAT(status, '|', notes) FROM issues WHERE id = 'b-blank'")"
t_eq "closed and other assignee beads untouched" "closed open" \
  "$(t_sql "SELECT GROUP_CONCAT(status ORDER BY id SEPARATOR ' ') FROM issues WHERE id IN ('b-other', 'b-done')")"

# --- busy, and HTTP failure ---
t_bead b-next
t_fake config '{"capacity": 4}'
set +e
bash "$BASELINE" dispatcher-tick >/dev/null; rc=$?
set -e
t_eq "agent busy: exit 4" 4 "$rc"
t_eq "agent busy: nothing claimed" open "$(t_sql "SELECT status FROM issues WHERE id = 'b-next'")"
t_fake config '{"capacity": 100, "force_status": 503}'
set +e
bash "$BASELINE" dispatcher-tick >/dev/null; rc=$?
set -e
t_eq "HTTP failure: exit 1" 1 "$rc"
t_eq "HTTP failure: back to open" open "$(t_sql "SELECT status FROM issues WHERE id = 'b-next'")"
t_match "HTTP failure: noted with code and body" "dispatch failed HTTP 503: \\{\"detail\":\"forced\"\\}$" \
  "$(t_sql "SELECT notes FROM issues WHERE id = 'b-next'")"
t_fake config '{"force_status": 0}'

# --- BeadBoard front door ---
export BASELINE_BEADBOARD_URL=$T_AGENT_URL
bash "$BASELINE" dispatcher-tick >/dev/null
t_match "via BeadBoard: dispatched" "dispatched: job=[0-9a-f]{12}$" \
  "$(t_sql "SELECT notes FROM issues WHERE id = 'b-next'")"
unset BASELINE_BEADBOARD_URL

# --- reaper ---
t_bead r-stale status="'in_progress'" "updated_at=UTC_TIMESTAMP() - INTERVAL 45 MINUTE"
t_bead r-fresh status="'in_progress'" "updated_at=UTC_TIMESTAMP() - INTERVAL 20 MINUTE"
t_bead r-theirs status="'in_progress'" assignee="'alice'" "updated_at=UTC_TIMESTAMP() - INTERVAL 2 HOUR"
out=$(bash "$BASELINE" reaper 0 1)
t_eq "reaper tick" "reaper: ticks=1 done=1 failed=0 idle=0" "$out"
t_eq "stale bead blocked with the reaper's note" "blocked|reaper: no progress for 45m (threshold 30m) — blocking" \
  "$(t_sql "SELECT CONCAT(status, '|', notes) FROM issues WHERE id = 'r-stale'")"
t_eq "fresh and other beads untouched" "in_progress in_progress" \
  "$(t_sql "SELECT GROUP_CONCAT(status ORDER BY id SEPARATOR ' ') FROM issues WHERE id IN ('r-fresh', 'r-theirs')")"
set +e
bash "$BASELINE" reaper-tick >/dev/null; rc=$?
set -e
t_eq "nothing left to reap: exit 3" 3 "$rc"

# --- counting processes ---
export BASELINE_EXEC_LOG=$T_TMP/execs
: >"$BASELINE_EXEC_LOG"
t_bead c-1
bash "$BASELINE" dispatcher 0 1 >/dev/null
t_eq "processes of a dispatching tick" "1 bash, 2 curl, 1 date, 4 jq, 4 mariadb" \
  "$(sort "$BASELINE_EXEC_LOG" | uniq -c | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')"
t_done
