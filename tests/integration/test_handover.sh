#!/usr/bin/env bash
# Two instances, one active: each with its own store against one database
# and one agent. Only the holder of the Dolt lock beads-sched/<db>/<assignee>
# dispatches; when it is killed, or loses the lock, the other takes over
# without dispatching anything twice.
source "$(dirname "$0")/lib.sh"
t_needs_hooks # the claim pause (BEADS_SCHED_TEST_CLAIM_MS)

metric() { curl -s -m 2 "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
active_of() { metric "$1" beads_sched_active; }
# start_daemon NAME: runs an instance with store NAME.db and an admin port;
# sets PID_<NAME> and PORT_<NAME>.
start_daemon() {
  local port
  port=$(free_port)
  BEADS_SCHED_STORE="$T_TMP/$1.db" BEADS_SCHED_LISTEN="127.0.0.1:$port" "$BS_BIN" run 2>>"$T_TMP/$1.log" &
  printf -v "PID_$1" %s $!
  printf -v "PORT_$1" %s "$port"
  t_wait 10 bash -c "curl -sf http://127.0.0.1:$port/healthz >/dev/null" || t_fail "$1 never healthy"
}
journal_count() { sqlite3 "$T_TMP/$1.db" "SELECT count(*) FROM journal" 2>/dev/null || echo 0; }
all_once() { t_stats | jq -r '.by_bead | to_entries[] | select(.value != 1) | .key' | xargs; }
# neighbour_takes_lock SECONDS: a neighbour session waits for the lock,
# then the holder's lock session is killed: the server hands the lock to
# the waiting neighbour at once (no instance can take it back in between),
# which holds it SECONDS. Sets NEIGHBOUR (its pid).
neighbour_takes_lock() {
  local holder now
  holder=$(t_sql "SELECT IS_USED_LOCK('$LOCK')")
  t_sql_root "$T_DB" -e "SELECT GET_LOCK('$LOCK', 20); SELECT SLEEP($1)" >>"$T_TMP/neighbour.out" 2>&1 &
  NEIGHBOUR=$!
  sleep 0.5
  t_sql_root -e "KILL CONNECTION $holder"
  for _ in $(seq 50); do
    now=$(t_sql "SELECT IS_USED_LOCK('$LOCK')")
    [ -n "$now" ] && [ "$now" != NULL ] && [ "$now" != "$holder" ] && return 0
    sleep 0.1
  done
  t_fail "the neighbour never took the lock (holder $holder, now ${now:-none})"
}

t_new_db current
t_agent --capacity 100 --queue-limit 100
t_env "$T_TMP/unused.db"
export BEADS_SCHED_PROBE_INTERVAL=300ms BEADS_SCHED_REAP_INTERVAL=1s
LOCK="beads-sched/$T_DB/agent"

# --- exactly one dispatches ---
start_daemon A
t_wait 10 bash -c "[ \"\$(curl -s http://127.0.0.1:$PORT_A/metrics | awk '\$1==\"beads_sched_active\"{print \$2}')\" = 1 ]" \
  && t_ok "the first instance becomes active" || t_fail "A never active: $(tail -3 "$T_TMP/A.log")"
start_daemon B
sleep 1
t_eq "the second stands by" 0 "$(active_of "$PORT_B")"
t_eq "both ready (readiness means healthy, in either role)" "200 200" \
  "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_A/readyz") $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_B/readyz")"
t_match "B logs its role" 'msg="role: standby' "$(cat "$T_TMP/B.log")"
for i in $(seq 1 20); do t_bead "h$i"; done
t_wait 20 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq .posts)\" = 20 ]" \
  && t_ok "20 beads dispatched" || t_fail "only $(t_posts) of 20 dispatched"
t_eq "every bead POSTed once" "" "$(all_once)"
t_eq "all by the active instance" "20 0" "$(journal_count A) $(journal_count B)"
t_match "status says active, since when" "role +active since 20" \
  "$(BEADS_SCHED_STORE="$T_TMP/A.db" "$BS_BIN" status)"
t_match "status --json has the role" '"role":"standby"' \
  "$(BEADS_SCHED_STORE="$T_TMP/B.db" "$BS_BIN" status --json)"
set +e
out=$(BEADS_SCHED_STORE="$T_TMP/C.db" "$BS_BIN" once 2>&1); rc=$?
set -e
t_eq "once while another instance is active: exit 1" 1 "$rc"
t_match "once says why" "another beads-sched instance holds the lock" "$out"

# --- the active one killed with jobs in flight ---
kill -KILL "$PID_A"; wait "$PID_A" 2>/dev/null || true
killed=$(date +%s%N)
t_wait 10 bash -c "[ \"\$(curl -s http://127.0.0.1:$PORT_B/metrics | awk '\$1==\"beads_sched_active\"{print \$2}')\" = 1 ]" \
  && t_ok "B takes over after A is killed ($(( ($(date +%s%N) - killed) / 1000000 )) ms)" || t_fail "B never took over"
for i in $(seq 21 25); do t_bead "h$i"; done
t_wait 15 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq .posts)\" = 25 ]" \
  && t_ok "B dispatches newly assigned beads" || t_fail "B dispatched $(($(t_posts) - 20)) of 5"
sleep 2 # a few reap passes over A's in-flight beads
t_eq "A's in-flight beads stay in progress (none blocked or released)" 20 \
  "$(t_sql "SELECT count(*) FROM issues WHERE id IN ($(printf "'h%d'," $(seq 1 20) | sed 's/,$//')) AND status = 'in_progress'")"
t_eq "every bead POSTed once after the take-over" "" "$(all_once)"
t_eq "B's journal: the 5 it dispatched, and A's 20 in-flight attempts adopted" "5 20" \
  "$(sqlite3 "$T_TMP/B.db" "SELECT count(*) FILTER (WHERE detail IS NULL OR detail NOT LIKE 'adopted%'), count(*) FILTER (WHERE detail LIKE 'adopted%') FROM journal" | tr '|' ' ')"

# --- the lock lost while the process lives: it stops writing at once ---
# A comes back as standby. Then B's lock session is killed while a
# neighbour waits for the lock, so the neighbour gets it: B still has its
# main connection but must not claim anything from then on, nor may A.
start_daemon A
sleep 1
t_eq "A back as standby" 0 "$(active_of "$PORT_A")"
neighbour_takes_lock 4
for i in $(seq 26 30); do t_bead "h$i"; done
sleep 2
t_eq "nobody claims while a neighbour holds the lock" 25 "$(t_posts)"
t_eq "h26..h30 still open" 5 "$(t_sql "SELECT count(*) FROM issues WHERE id IN ('h26','h27','h28','h29','h30') AND status = 'open'")"
t_eq "neither instance active" "0 0" "$(active_of "$PORT_A") $(active_of "$PORT_B")"
wait "$NEIGHBOUR" || true
t_wait 15 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq .posts)\" = 30 ]" \
  && t_ok "once the neighbour lets go, one instance takes over and dispatches" || t_fail "dispatched $(($(t_posts) - 25)) of 5"
t_eq "exactly one active" 1 "$(( $(active_of "$PORT_A") + $(active_of "$PORT_B") ))"
t_eq "every bead POSTed once, all along" "" "$(all_once)"
claims() { sqlite3 "$1" "SELECT DISTINCT bead_id FROM journal WHERE detail IS NULL OR detail NOT LIKE 'adopted%'" | sort; }
t_eq "no bead claimed by both instances (adopting the other's attempt is not a claim)" "" \
  "$(comm -12 <(claims "$T_TMP/A.db") <(claims "$T_TMP/B.db") | xargs)"

kill -TERM "$PID_A" "$PID_B"
set +e; wait "$PID_A"; ra=$?; wait "$PID_B"; rb=$?; set -e
t_eq "both stop cleanly" "0 0" "$ra $rb"

# --- the lock lost in the middle of a cycle: the claim batch asks first ---
# C chooses a bead, then waits 5 s before claiming (a test seam). Meanwhile
# its lock session is killed and a neighbour takes the lock. C's main
# connection is fine; its claim must still not happen.
BEADS_SCHED_DISPATCH_INTERVAL=10m BEADS_SCHED_TEST_CLAIM_MS=5000 start_daemon C
t_wait 10 bash -c "[ \"\$(curl -s http://127.0.0.1:$PORT_C/metrics | awk '\$1==\"beads_sched_active\"{print \$2}')\" = 1 ]" \
  || t_fail "C never active"
sleep 6 # C's start-up cycle (with its pause) is over; the next one starts on a change
t_bead h31
chosen_at=$SECONDS
sleep 1 # the probe saw h31 (300 ms), C chose it and is inside the 5 s pause
neighbour_takes_lock 10
wait_s=$(( chosen_at + 7 - SECONDS )); [ "$wait_s" -gt 0 ] && sleep "$wait_s" # the pause is over: the claim batch has asked
t_eq "the chosen bead was not claimed" "open" "$(t_sql "SELECT status FROM issues WHERE id = 'h31'")"
t_eq "nothing POSTed" 30 "$(t_posts)"
t_eq "no journal row for it" "" "$(sqlite3 "$T_TMP/C.db" "SELECT bead_id FROM journal WHERE bead_id = 'h31'")"
t_match "C says why" 'role: standby|lock lost; writing nothing' "$(cat "$T_TMP/C.log")"
wait "$NEIGHBOUR" || true
t_wait 20 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq .posts)\" = 31 ]" \
  && t_ok "with the lock back, C dispatches it once" || t_fail "h31 never dispatched"
t_eq "every bead POSTed once, all along" "" "$(all_once)"
kill -TERM "$PID_C"; wait "$PID_C" || true
t_agent_stop

# --- hand-over with jobs in flight, supervised to their end ---
# The agent side of the fake is on: each job notes "claimed by agent <id>"
# and waits. The active instance is killed with six jobs running; the other
# adopts them (numbered from the claims in the notes), leaves the running
# ones alone, retries the one whose agent died, and sees the rest closed.
t_new_db current
export -f t_sql t_sql_root; export T_DB # for the t_wait conditions below
t_agent --capacity 100 --queue-limit 100 --agent-db "$T_DOLT_URL" --job-ms 0
t_env "$T_TMP/unused2.db"
export BEADS_SCHED_PROBE_INTERVAL=300ms BEADS_SCHED_REAP_INTERVAL=1s BEADS_SCHED_RETRY_BACKOFF=1s
start_daemon D
t_wait 10 bash -c "[ \"\$(curl -s http://127.0.0.1:$PORT_D/metrics | awk '\$1==\"beads_sched_active\"{print \$2}')\" = 1 ]" \
  || t_fail "D never active"
start_daemon E
for i in $(seq 1 6); do t_bead "x$i"; done
t_wait 15 bash -c "[ \"\$(t_sql \"SELECT count(*) FROM issues WHERE notes LIKE '%claimed by agent%'\")\" = 6 ]" \
  && t_ok "six jobs running, each agent's claim noted" || t_fail "claims: $(t_sql "SELECT count(*) FROM issues WHERE notes LIKE '%claimed by agent%'")"
job() { t_stats | jq -r --arg b "$1" '[.jobs[] | select(.bead_id == $b)] | last | .job_id'; }
# x5's first agent dies: D retries it (attempt 2) before it is killed itself.
t_fake "jobs/$(job x5)" '{"process":"kill"}'
t_wait 15 bash -c "[ \"\$(t_sql \"SELECT (LENGTH(notes) - LENGTH(REPLACE(notes, 'claimed by agent', ''))) DIV 16 FROM issues WHERE id = 'x5'\")\" = 2 ]" \
  && t_ok "D retried x5 (attempt 2 running)" || t_fail "x5 not retried by D: $(t_sql "SELECT status FROM issues WHERE id = 'x5'")"
kill -KILL "$PID_D"; wait "$PID_D" 2>/dev/null || true
t_wait 10 bash -c "[ \"\$(sqlite3 $T_TMP/E.db \"SELECT count(*) FROM journal WHERE state = 'dispatched' AND detail LIKE 'adopted%'\" 2>/dev/null)\" = 6 ]" \
  && t_ok "E adopts the six attempts D left" || t_fail "E adopted $(sqlite3 "$T_TMP/E.db" "SELECT count(*) FROM journal WHERE detail LIKE 'adopted%'")"
t_eq "adopted attempts keep their number from the notes (x5: 2) and their job ids" "1,1,1,1,2,1" \
  "$(sqlite3 "$T_TMP/E.db" "SELECT group_concat(attempt) FROM (SELECT attempt FROM journal WHERE job_id IS NOT NULL AND detail LIKE 'adopted%' ORDER BY bead_id)")"
for i in 1 2 3 4; do t_fake "jobs/$(job "x$i")" '{"status":"completed"}'; done
t_fake "jobs/$(job x5)" '{"process":"kill"}'
t_wait 15 bash -c "[ \"\$(t_sql \"SELECT count(*) FROM issues WHERE id IN ('x1','x2','x3','x4') AND status = 'closed'\")\" = 4 ]" \
  && t_ok "four agents finish and close their beads" || t_fail "closed: $(t_sql "SELECT group_concat(id) FROM issues WHERE status = 'closed'")"
t_wait 15 bash -c "[ \"\$(sqlite3 $T_TMP/E.db \"SELECT count(*) FROM journal WHERE bead_id = 'x5' AND attempt = 3\")\" = 1 ]" \
  && t_ok "x5, whose second agent died too, is retried as attempt 3" || t_fail "x5: $(sqlite3 "$T_TMP/E.db" "SELECT attempt, state FROM journal WHERE bead_id = 'x5'")"
t_match "E's release note numbers on from D's attempts" 'released for retry \(attempt 2/3\)' \
  "$(t_sql "SELECT notes FROM issues WHERE id = 'x5'")"
t_wait 10 bash -c "[ \"\$(sqlite3 $T_TMP/E.db \"SELECT group_concat(state) FROM journal WHERE bead_id IN ('x1','x2','x3','x4')\")\" = closed,closed,closed,closed ]" \
  && t_ok "the adopted attempts end closed in E's journal" || t_fail "E: $(sqlite3 "$T_TMP/E.db" "SELECT bead_id, state FROM journal ORDER BY bead_id")"
t_eq "the running one is left alone" "in_progress" "$(t_sql "SELECT status FROM issues WHERE id = 'x6'")"
t_eq "nothing blocked" 0 "$(t_sql "SELECT count(*) FROM issues WHERE status = 'blocked'")"
t_eq "POSTs: six, D's retry of x5 and E's" 8 "$(t_posts)"
t_eq "never two agents on one bead" "1" "$(t_stats | jq '.processes.max_alive_per_bead')"
kill -TERM "$PID_E"; wait "$PID_E" || true
t_done
