#!/usr/bin/env bash
# Reaper and restart-safe recovery: crash points, SIGKILL chaos, an agent
# restart, failed jobs, orphans, a MariaDB restart and the read-write race.
source "$(dirname "$0")/lib.sh"
t_needs_hooks # crash points and the reaper pause

# BS_ONLY="section ..." runs only those sections (crash_points reap_crashes
# chaos agent_restart failed_job orphan race db_restart); all by default.
section() {
  [ -z "${BS_ONLY:-}" ] || [[ " $BS_ONLY " == *" $1 "* ]] || return 0
  echo "# $1"
  "$1"
}

reap_env() { # fast intervals for tests
  export BEADS_SCHED_REAP_INTERVAL=1s BEADS_SCHED_RETRY_BACKOFF=1s BEADS_SCHED_STALE_AFTER=30m
  export BEADS_SCHED_DISPATCH_INTERVAL=1s
}

# --- every crash point: crash there, restart, settle ---
crash_point() { # point [force_status]
  local point=$1 force=${2:-0}
  t_new_db current; t_agent --capacity 10
  t_env "$T_TMP/crash.$point.db"; reap_env
  t_bead c1 "priority=0"; t_bead c2 "priority=1"; t_bead c3 "priority=2"
  [ "$force" != 0 ] && t_fake config "{\"force_status\": $force}"
  set +e
  BEADS_SCHED_CRASH_AT=$point "$BS_BIN" once 2>>"$T_TMP/crash.log"
  local rc=$?
  set -e
  t_eq "[$point] the process died there" 137 "$rc"
  t_fake config '{"force_status": 0}'
  # Restart and let it settle while the agents work (their first action is
  # the claim note with the job id their prompt gave, then progress notes):
  # attempts whose POST never left are released for a new attempt once the
  # bead has been quiet for STALE_AFTER (2 s here); an attempt whose 202 was
  # lost in the crash is known by the agent's claim note and never re-POSTed
  # while its agent works (3x STALE_AFTER here).
  export BEADS_SCHED_STALE_AFTER=2s
  "$BS_BIN" run 2>>"$T_TMP/crash.log" & local pid=$!
  t_agents_work 14
  t_wait 20 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(DISTINCT bead_id) FROM journal WHERE state IN ('dispatched', 'unknown')\")\" = 3 ]" || true
  kill -TERM "$pid"; wait "$pid" || true
  t_consistent "[$point]"
  t_eq "[$point] every bead dispatched, or its agent's claim note seen" 3 "$(t_store "SELECT count(DISTINCT bead_id) FROM journal WHERE state IN ('dispatched', 'unknown')")"
  t_eq "[$point] one accepted POST per bead" "1 1 1" "$(t_stats | jq -r '[.by_bead[]] | map(tostring) | join(" ")')"
  t_eq "[$point] one agent run per bead" "" "$(t_stats | jq -r '[.jobs[] | select(.status == "running" or .status == "queued") | .bead_id] | group_by(.) | map(select(length > 1) | .[0]) | join(" ")')"
  # The agents finish: each close is credited to the attempt whose id it names.
  for b in c1 c2 c3; do t_agent_close "$b"; done
  "$BS_BIN" run 2>>"$T_TMP/crash.log" & pid=$!
  t_wait 15 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal WHERE state = 'closed'\")\" = 3 ]" || true
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "[$point] every close credited to the attempt that ran" 3 "$(t_store "SELECT count(*) FROM journal WHERE state = 'closed' AND detail LIKE 'bead closed by this attempt''s agent%'")"
  t_agent_stop
}
crash_points() {
  local p
  for p in after_claiming_commit after_dolt_claim after_claimed_commit after_posting_commit \
           after_post_response after_dispatched_commit; do
    crash_point "$p"
  done
  crash_point after_dolt_revert 422
}
section crash_points

# A crash inside the reaper's own writes: the job failed, the reaper
# releases the bead for a retry and dies after the Dolt write / the commit.
reap_crash() { # point
  local point=$1
  t_new_db current; t_agent --capacity 10 --job-ms 200 --final-status failed
  t_env "$T_TMP/rcrash.$point.db"; reap_env
  t_bead r1
  t_once
  sleep 0.5 # the job fails
  set +e
  BEADS_SCHED_CRASH_AT=$point timeout 20 "$BS_BIN" run 2>>"$T_TMP/rcrash.log"
  t_eq "[$point] the reaper died there" 137 $?
  set -e
  "$BS_BIN" run 2>>"$T_TMP/rcrash.log" & local pid=$!
  t_wait 15 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal WHERE bead_id='r1' AND attempt=2 AND state='dispatched'\")\" = 1 ]" \
    && t_ok "[$point] attempt 2 dispatched after the restart" || t_fail "[$point] no attempt 2"
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "[$point] attempt 1 ended retrying" retrying "$(t_store "SELECT state FROM journal WHERE bead_id='r1' AND attempt=1")"
  t_eq "[$point] two accepted POSTs, one per attempt" 2 "$(t_posts '.by_bead.r1')"
  t_agent_stop
}
reap_crashes() {
  reap_crash after_reap_dolt_write
  reap_crash after_reap_commit
}
section reap_crashes

# --- chaos: SIGKILL at random moments, 300 beads ---
chaos() {
  t_new_db current; t_agent --capacity 1000 --queue-limit 1000
  t_env "$T_TMP/chaos.db"; reap_env
  t_fake config '{"latency_ms": 15}'
  t_sql "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status, priority,
         issue_type, assignee, created_at, updated_at)
         SELECT CONCAT('k', seq), 'chaos', 'd', '', 'ac', '', 'open', seq % 5, 'task', 'agent',
                UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL seq SECOND FROM seq_1_to_300"
  local kills=0 i
  for i in $(seq 1 24); do
    "$BS_BIN" run 2>>"$T_TMP/chaos.log" &
    local pid=$!
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", 0.05 + (r % 400) / 1000 }')"
    kill -KILL "$pid" 2>/dev/null && kills=$((kills + 1))
    wait "$pid" 2>/dev/null || true
    t_agent_claims; t_agent_progress
  done
  [ "$kills" -ge 20 ] && t_ok "chaos: killed $kills times" || t_fail "chaos: only $kills kills"
  # Attempts killed between their posting commit and the POST are released
  # for a new attempt once their bead has been quiet for STALE_AFTER; those
  # whose 202 was lost are known by their agent's claim note, and their
  # agents keep working.
  # (STALE_AFTER is 20 s: with 300 beads one round of the test's agents
  # noting takes seconds, more on a loaded machine, and a quiet agent is
  # rightly taken for a stopped one.)
  export BEADS_SCHED_STALE_AFTER=20s
  "$BS_BIN" run 2>>"$T_TMP/chaos.log" & local pid=$!
  t_agents_until 300 90
  t_agents_work 6
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "chaos: every bead dispatched, or its agent's claim note seen" 300 "$(t_store "SELECT count(DISTINCT bead_id) FROM journal WHERE state IN ('dispatched', 'unknown')")"
  t_eq "chaos: 300 accepted POSTs" 300 "$(t_posts)"
  t_eq "chaos: none left open" 0 "$(t_sql "SELECT count(*) FROM issues WHERE status='open'")"
  t_consistent "chaos"
  t_agent_stop
}
section chaos

# --- the agent forgets every job (restart) ---
agent_restart() {
  t_new_db current; t_agent --capacity 10
  t_env "$T_TMP/forget.db"; reap_env; export BEADS_SCHED_REAP_INTERVAL=2s BEADS_SCHED_MAX_ATTEMPTS=3
  t_bead f1; t_bead f2
  "$BS_BIN" run 2>"$T_TMP/forget.log" & local pid=$!
  local n
  for n in 2 3; do
    t_wait 10 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal WHERE attempt=$((n-1)) AND state='dispatched'\")\" = 2 ]" || true
    local t0=$SECONDS
    t_fake forget
    t_wait 10 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal WHERE attempt=$n AND state='dispatched'\")\" = 2 ]" \
      && t_ok "agent restart: both beads re-dispatched as attempt $n ($((SECONDS - t0)) s)" || t_fail "agent restart: attempt $n not dispatched"
  done
  t_match "agent restart: release note names job, status and attempt" "reaper: job [0-9a-f]+ not found at the agent .* released for retry \\(attempt 1/3\\)" "$(t_sql "SELECT notes FROM issues WHERE id='f1'")"
  t_fake forget
  t_wait 10 bash -c "[ \"\$(mariadb --no-defaults -uroot --socket=$BS_TEST_MYSQL_DIR/mysqld.sock -N $T_DB -e \"SELECT count(*) FROM issues WHERE status='blocked'\")\" = 2 ]" \
    && t_ok "agent restart: blocked after MAX_ATTEMPTS" || t_fail "agent restart: not blocked"
  t_match "agent restart: exhausted note" "attempts exhausted \\(3/3\\), blocking" "$(t_sql "SELECT notes FROM issues WHERE id='f2'")"
  t_eq "agent restart: 3 POSTs per bead" "3 3" "$(t_stats | jq -r '[.by_bead[]] | map(tostring) | join(" ")')"
  t_eq "agent restart: attempt 3 gave up" "gave_up gave_up" "$(t_store "SELECT state FROM journal WHERE attempt=3" | xargs)"
  # A person reopens a bead the reaper gave up on: a fresh round, attempt 4.
  t_sql "UPDATE issues SET status='open', updated_at=UTC_TIMESTAMP() WHERE id='f1'"
  t_wait 10 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT state FROM journal WHERE bead_id='f1' AND attempt=4\")\" = dispatched ]" \
    && t_ok "agent restart: reopened after giving up, dispatched as attempt 4" || t_fail "agent restart: reopened bead not dispatched"
  kill -TERM "$pid"; wait "$pid" || true
  unset BEADS_SCHED_MAX_ATTEMPTS
  t_agent_stop
}
section agent_restart

# --- a job that ends failed while the bead stays in_progress ---
failed_job() {
  t_new_db older dolt; t_agent --capacity 10 --job-ms 300 --final-status failed
  t_env "$T_TMP/failed.db"; reap_env; export BEADS_SCHED_MAX_ATTEMPTS=2
  t_bead j1
  "$BS_BIN" run 2>"$T_TMP/failed.log" & local pid=$!
  t_wait 15 bash -c "[ \"\$(mariadb --no-defaults -uroot --socket=$BS_TEST_MYSQL_DIR/mysqld.sock -N $T_DB -e \"SELECT status FROM issues WHERE id='j1'\")\" = blocked ]" || true
  kill -TERM "$pid"; wait "$pid" || true
  local notes; notes=$(t_sql "SELECT notes FROM issues WHERE id='j1'")
  t_match "failed job: retry note names job and status" "reaper: job [0-9a-f]{12} failed \\(exit [0-9]+[^)]*\\), bead still in_progress; released for retry \\(attempt 1/2\\)" "$notes"
  t_match "failed job: then blocked, exhausted" "reaper: job [0-9a-f]{12} failed \\(exit [0-9]+[^)]*\\); attempts exhausted \\(2/2\\), blocking" "$notes"
  t_eq "failed job: blocked" blocked "$(t_sql "SELECT status FROM issues WHERE id='j1'")"
  t_eq "failed job: journal" "retrying gave_up" "$(t_store "SELECT state FROM journal WHERE bead_id='j1' ORDER BY attempt" | xargs)"
  t_match "failed job: Dolt commits for the reaper's writes" "beads-sched: release j1.*beads-sched: block j1" "$(t_sql "SELECT message FROM dolt_emul_commits ORDER BY seq" | xargs)"
  unset BEADS_SCHED_MAX_ATTEMPTS
  t_agent_stop
}
section failed_job

# --- an orphan: in_progress, agent-assigned, 2 h without update, unknown to the store ---
orphan() {
  t_new_db current; t_agent
  t_env "$T_TMP/orphan.db"; reap_env
  t_bead o1 "status='in_progress'" "updated_at=UTC_TIMESTAMP() - INTERVAL 2 HOUR"
  t_bead o2 "status='in_progress'" "updated_at=UTC_TIMESTAMP() - INTERVAL 5 MINUTE"
  t_once
  t_eq "orphan: blocked" blocked "$(t_sql "SELECT status FROM issues WHERE id='o1'")"
  t_match "orphan: the old reaper note" "^reaper: no progress for 1[12][0-9]m \\(threshold 30m\\) — blocking\$" "$(t_sql "SELECT notes FROM issues WHERE id='o1'")"
  t_eq "orphan: a fresh one is left alone" in_progress "$(t_sql "SELECT status FROM issues WHERE id='o2'")"
  t_eq "orphan: recorded in the history" orphan_blocked "$(t_store "SELECT event FROM history WHERE bead_id='o1'")"
  t_agent_stop
}
section orphan

# --- the reaper never overwrites a bead closed between its read and its write ---
race() {
  t_new_db current; t_agent --capacity 10
  t_env "$T_TMP/race.db"; reap_env
  t_bead w1
  t_once
  local job; job=$(t_store "SELECT job_id FROM journal WHERE bead_id='w1'")
  t_fake "jobs/$job" '{"status": "completed"}'   # the reaper would release it for a retry...
  BEADS_SCHED_TEST_REAP_APPLY_MS=3000 "$BS_BIN" run 2>"$T_TMP/race.log" & local pid=$!
  sleep 1.5                                      # ...but it has read the bead and waits
  t_sql "UPDATE issues SET status='closed', closed_at=UTC_TIMESTAMP(), updated_at=UTC_TIMESTAMP() + INTERVAL 1 SECOND,
         notes=CONCAT(notes, '\ndone by the agent') WHERE id='w1'"
  t_wait 15 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT state FROM journal WHERE bead_id='w1'\")\" = closed ]" || true
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "race: the bead stays closed" closed "$(t_sql "SELECT status FROM issues WHERE id='w1'")"
  t_eq "race: no release note written" 0 "$(t_sql "SELECT notes LIKE '%released for retry%' FROM issues WHERE id='w1'")"
  t_match "race: lost race recorded" "lost_race" "$(t_store "SELECT group_concat(event, ' ') FROM history WHERE bead_id='w1'")"
  t_eq "race: attempt ends closed" closed "$(t_store "SELECT state FROM journal WHERE bead_id='w1'")"
  t_match "race: logged as a lost race" 'reason=lost_race' "$(cat "$T_TMP/race.log")"
  t_eq "race: never called an unknown error" 0 "$(grep -c 'unknown error' "$T_TMP/race.log" || true)"
  t_agent_stop
}
section race

# --- MariaDB restarted in the middle of a cycle ---
db_restart() {
  local priv=$T_TMP/rdb port=$((BS_TEST_MYSQL_PORT + 10))
  bash "$HARNESS/mariadb.sh" start "$priv" "$port" >/dev/null
  bash "$HARNESS/newdb.sh" "$priv" rs current >/dev/null
  local saved_db=$T_DB
  T_DB=rs
  t_sql_root() { mariadb --no-defaults --user=root --socket="$priv/mysqld.sock" --batch --skip-column-names "$@"; }
  t_agent --capacity 1000 --queue-limit 1000
  T_DOLT_URL="mysql://beads:beads-test-pw@127.0.0.1:$port/rs"
  t_env "$T_TMP/rs.db"; reap_env; export BEADS_SCHED_STALE_AFTER=10s
  t_fake config '{"latency_ms": 100}'
  t_beads d 200
  "$BS_BIN" run 2>"$T_TMP/rs.log" & local pid=$!
  t_wait 10 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal WHERE state='posting'\" 2>/dev/null)\" -gt 0 ]" || true
  bash "$HARNESS/mariadb.sh" restart "$priv" "$port" >/dev/null
  t_fake config '{"latency_ms": 0}'
  t_agents_until 200 40
  kill -TERM "$pid"; wait "$pid" || true
  # (Anywhere after: the answers of POSTs that were out meanwhile are logged between.)
  t_match "db restart: the daemon saw the connection drop and came back" "dolt reachable" "$(sed -n '/dolt unreachable/,$p' "$T_TMP/rs.log")"
  t_eq "db restart: all 200 dispatched, or their agents' claim notes seen" 200 "$(t_store "SELECT count(DISTINCT bead_id) FROM journal WHERE state IN ('dispatched', 'unknown')")"
  t_eq "db restart: 200 accepted POSTs" 200 "$(t_posts)"
  t_consistent "db restart"
  t_agent_stop
  bash "$HARNESS/mariadb.sh" stop "$priv" >/dev/null
  t_sql_root() { mariadb --no-defaults --user=root --socket="$BS_TEST_MYSQL_DIR/mysqld.sock" --batch --skip-column-names "$@"; }
  T_DB=$saved_db
}
section db_restart

t_done
