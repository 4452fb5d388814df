#!/usr/bin/env bash
# Dispatcher integration tests: the real binary against a private MariaDB
# (both schema variants, with and without the Dolt emulation) and the fake
# agent service.
source "$(dirname "$0")/lib.sh"

ISO='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z'
UUID='[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}'

capacity_and_order() { # variant...
  t_new_db "$@"; t_agent --capacity 3
  t_env "$T_TMP/cap.$T_DB.db"
  local i
  for i in $(seq 1 10); do
    # priority 2 for all but b7 (1) and b9 (0); ages make b1 the oldest.
    local p=2; [ "$i" = 7 ] && p=1; [ "$i" = 9 ] && p=0
    t_bead "b$i" "priority=$p" "updated_at=UTC_TIMESTAMP() - INTERVAL $((100 - i)) MINUTE"
  done
  t_once
  t_eq "[$*] capacity 3 of 10 eligible: 3 POSTs" 3 "$(t_posts)"
  t_eq "[$*] 3 beads in_progress" "b1 b7 b9" "$(t_sql "SELECT id FROM issues WHERE status='in_progress' ORDER BY id" | xargs)"
  t_eq "[$*] store: 3 dispatched" 3 "$(t_store "SELECT count(*) FROM journal WHERE state='dispatched'")"
  local notes job_store job_fake
  notes=$(t_sql "SELECT notes FROM issues WHERE id='b9'")
  t_match "[$*] claim note" "^auto-dispatcher claimed at $ISO \(dispatch $UUID\)" "$notes"
  job_store=$(t_store "SELECT job_id FROM journal WHERE bead_id='b9'")
  t_match "[$*] dispatched note carries the store's job id" "dispatched: job=$job_store\$" "$notes"
  job_fake=$(t_stats | jq -r '.jobs[] | select(.bead_id=="b9") | .job_id')
  t_eq "[$*] job id matches the agent's" "$job_fake" "$job_store"
  local dispatch
  dispatch=$(t_store "SELECT dispatch_id FROM journal WHERE bead_id='b9'")
  t_eq "[$*] metadata carries the dispatch id" "$dispatch" "$(t_stats | jq -r '.jobs[] | select(.bead_id=="b9") | .dispatch_id')"
  t_eq "[$*] claimed event in beads events" 1 "$(t_sql "SELECT count(*) FROM events WHERE issue_id='b9' AND event_type='claimed'")"
  if [ "$1" = current ]; then
    t_eq "[$*] started_at set" 1 "$(t_sql "SELECT started_at IS NOT NULL FROM issues WHERE id='b9'")"
  fi
  t_agent_stop
}

not_ready() { # variant...
  t_new_db "$@"; t_agent --capacity 10
  t_env "$T_TMP/nr.$T_DB.db"
  t_bead ok1
  t_bead noac "acceptance_criteria=' \n\t '"
  t_bead deferred "defer_until=UTC_TIMESTAMP() + INTERVAL 1 DAY"
  t_bead gate1 "issue_type='gate'"
  t_bead mol "issue_type='molecule'"
  t_bead human "assignee='alice'"
  t_bead closedone "status='closed'"
  t_bead eph "ephemeral=1"
  t_bead pin "pinned=1"
  t_bead blocker "assignee='alice'"
  t_bead blocked
  t_sql "INSERT INTO dependencies (issue_id, depends_on_id, type, created_at, created_by) VALUES ('blocked', 'blocker', 'blocks', UTC_TIMESTAMP(), 'test')"
  t_bead freed
  t_sql "INSERT INTO dependencies (issue_id, depends_on_id, type, created_at, created_by) VALUES ('freed', 'closedone', 'blocks', UTC_TIMESTAMP(), 'test')"
  t_once
  local expect="freed ok1"
  t_eq "[$*] only ready beads with acceptance dispatched" "$expect" "$(t_sql "SELECT id FROM issues WHERE status='in_progress' ORDER BY id" | xargs)"
  t_eq "[$*] no-acceptance bead noted once" 1 "$(t_sql "SELECT (LENGTH(notes) - LENGTH(REPLACE(notes, 'no acceptance criteria', ''))) DIV LENGTH('no acceptance criteria') FROM issues WHERE id='noac'")"
  t_once
  t_eq "[$*] note not repeated while the bead is unchanged" 1 "$(t_sql "SELECT (LENGTH(notes) - LENGTH(REPLACE(notes, 'no acceptance criteria', ''))) DIV LENGTH('no acceptance criteria') FROM issues WHERE id='noac'")"
  t_sql "UPDATE issues SET title='clearer', updated_at=UTC_TIMESTAMP() + INTERVAL 1 SECOND WHERE id='noac'"
  t_once
  t_eq "[$*] noted again after the bead changed" 2 "$(t_sql "SELECT (LENGTH(notes) - LENGTH(REPLACE(notes, 'no acceptance criteria', ''))) DIV LENGTH('no acceptance criteria') FROM issues WHERE id='noac'")"
  t_eq "[$*] noac never dispatched" open "$(t_sql "SELECT status FROM issues WHERE id='noac'")"
  t_agent_stop
}

refusals() { # variant...
  local code
  # The service refused this bead's request (400/422): the claim is given
  # back with the service's reason; it counts as an attempt.
  for code in 400 422; do
    t_new_db "$@"; t_agent --capacity 10
    t_env "$T_TMP/ref$code.$T_DB.db"
    t_bead r1
    t_fake config "{\"force_status\": $code}"
    t_once
    t_eq "[$*] HTTP $code: claim released" open "$(t_sql "SELECT status FROM issues WHERE id='r1'")"
    t_match "[$*] HTTP $code: failure note" "dispatch failed HTTP $code: " "$(t_sql "SELECT notes FROM issues WHERE id='r1'")"
    t_eq "[$*] HTTP $code: journal says retrying, rejected" "retrying rejected" "$(t_store "SELECT state, outcome FROM journal WHERE bead_id='r1'" | tr '|' ' ')"
    t_agent_stop
  done
  # Not the bead's fault (429 queue full, 409 single-slot busy, 401 token):
  # the claim is given back without a failure note and no attempt is used.
  for code in 429 409 401; do
    t_new_db "$@"; t_agent --capacity 10
    t_env "$T_TMP/ref$code.$T_DB.db"
    t_bead r1
    t_fake config "{\"force_status\": $code}"
    t_once || true
    t_eq "[$*] HTTP $code: claim given back" open "$(t_sql "SELECT status FROM issues WHERE id='r1'")"
    t_eq "[$*] HTTP $code: no failure note" 0 "$(t_notes_count r1 'dispatch failed')"
    t_eq "[$*] HTTP $code: journal says refused, not an attempt" refused "$(t_store "SELECT state FROM journal WHERE bead_id='r1'")"
    t_eq "[$*] HTTP $code: no attempt used" 0 "$(t_store "SELECT count(*) FROM journal WHERE bead_id='r1' AND state <> 'refused'")"
    t_agent_stop
  done
  # 500, 502, 503, 504: a proxy may answer so after the service took the
  # job: ambiguous, never re-POSTed; the bead stays claimed for the reaper.
  for code in 500 502 503 504; do
    t_new_db "$@"; t_agent --capacity 10
    t_env "$T_TMP/ref$code.$T_DB.db"
    t_bead r1
    t_fake config "{\"force_status\": $code}"
    t_once
    t_eq "[$*] HTTP $code: bead stays claimed" in_progress "$(t_sql "SELECT status FROM issues WHERE id='r1'")"
    t_eq "[$*] HTTP $code: journal says unknown" unknown "$(t_store "SELECT state FROM journal WHERE bead_id='r1'")"
    t_once; t_once
    t_eq "[$*] HTTP $code: never re-POSTed" 1 "$(t_stats | jq -r '.requests.execute')"
    t_agent_stop
  done
  # A wrong token: found by the start-up check (GET /jobs/<an id that
  # cannot exist> answers 401), so nothing is claimed at all.
  t_new_db "$@"; t_agent --capacity 10
  t_env "$T_TMP/tok.$T_DB.db"; export BEADS_SCHED_AGENT_TOKEN=wrong-token
  t_bead r2
  t_once || true
  t_eq "[$*] bad token: nothing claimed" open "$(t_sql "SELECT status FROM issues WHERE id='r2'")"
  t_eq "[$*] bad token: no note" "" "$(t_sql "SELECT notes FROM issues WHERE id='r2'")"
  t_eq "[$*] bad token: no POST" 0 "$(t_stats | jq -r '.requests.execute')"
  t_match "[$*] bad token: logged at error level" "level=error msg=\"agent service refuses our token" "$(cat "$T_TMP/once.log")"
  t_agent_stop
}

malformed_replies() { # variant...
  # A 202 whose body is not the contract's JSON: the agent took the job, we
  # cannot tell which; never re-POST, leave it to the reaper.
  t_new_db "$@"; t_agent --capacity 10
  t_env "$T_TMP/mal.$T_DB.db"
  t_bead mal1
  t_fake config '{"malformed": true, "shape_paths": ["execute"]}'
  t_once
  t_eq "[$*] malformed 202: journal unknown" unknown "$(t_store "SELECT state FROM journal WHERE bead_id='mal1'")"
  t_eq "[$*] malformed 202: bead stays claimed" in_progress "$(t_sql "SELECT status FROM issues WHERE id='mal1'")"
  t_fake config '{"malformed": false}'
  t_once; t_once
  t_eq "[$*] malformed 202: never re-POSTed" 1 "$(t_posts)"
  t_agent_stop
  # An error status with a malformed body (a proxy's HTML page, say): the
  # service may have the job behind the proxy: ambiguous as well.
  t_new_db "$@"; t_agent --capacity 10
  t_env "$T_TMP/mal2.$T_DB.db"
  t_bead mal2
  t_fake config '{"force_status": 502, "malformed": true, "shape_paths": ["execute"]}'
  t_once
  t_eq "[$*] malformed 502: bead stays claimed" in_progress "$(t_sql "SELECT status FROM issues WHERE id='mal2'")"
  t_match "[$*] malformed 502: journal unknown, says why" "unknown\|HTTP 502 \(the service may have taken the job\)" "$(t_store "SELECT state, detail FROM journal WHERE bead_id='mal2'")"
  t_agent_stop
}

beadboard_mode() { # variant...
  t_new_db "$@"; t_agent --capacity 2
  t_env "$T_TMP/bb.$T_DB.db"
  export BEADS_SCHED_MODE=beadboard BEADS_SCHED_BEADBOARD_URL=$T_AGENT_URL
  unset BEADS_SCHED_AGENT_URL BEADS_SCHED_AGENT_TOKEN
  t_bead bb1 "priority=0"; t_bead bb2 "priority=1"; t_bead bb3 "priority=2"; t_bead bb4 "priority=3"
  t_once
  t_eq "[$*] beadboard: one bead per cycle" 1 "$(t_posts)"
  local job
  job=$(t_stats | jq -r '.jobs[] | select(.bead_id=="bb1") | .job_id')
  t_match "[$*] beadboard: same notes" "auto-dispatcher claimed at .*dispatched: job=$job\$" "$(t_sql "SELECT REPLACE(notes, '\n', ' ') FROM issues WHERE id='bb1'")"
  t_eq "[$*] beadboard: journal has the job" "$job" "$(t_store "SELECT job_id FROM journal WHERE bead_id='bb1' AND state='dispatched'")"
  t_once; t_once
  t_eq "[$*] beadboard: stops while busy" 2 "$(t_posts)"
  t_fake config '{"capacity": 10, "force_status": 409, "force_status_paths": ["beadboard"]}'
  t_once
  t_eq "[$*] beadboard 409: claim given back" open "$(t_sql "SELECT status FROM issues WHERE id='bb3'")"
  t_eq "[$*] beadboard 409 (busy): no failure note" 0 "$(t_notes_count bb3 'dispatch failed')"
  unset BEADS_SCHED_MODE BEADS_SCHED_BEADBOARD_URL
  t_agent_stop
}

idle_writes_nothing() { # variant...
  t_new_db "$@"; t_agent --capacity 10
  t_env "$T_TMP/idle.$T_DB.db"; export BEADS_SCHED_DISPATCH_INTERVAL=1s
  t_bead human "assignee='alice'"
  t_bead noac "acceptance_criteria=''"
  "$BS_BIN" run 2>"$T_TMP/idle.log" &
  local pid=$!
  t_wait 10 grep -q "no acceptance criteria" "$T_TMP/idle.log" || true
  sleep 1
  local before lines io0 io1
  before=$(cat "$BEADS_SCHED_STORE" "$BEADS_SCHED_STORE-wal" 2>/dev/null | md5sum)
  lines=$(wc -l <"$T_TMP/idle.log")
  io0=$(awk '/^write_bytes/ { print $2 }' "/proc/$pid/io")
  sleep 4 # 20 probes and 4 full cycles
  io1=$(awk '/^write_bytes/ { print $2 }' "/proc/$pid/io")
  t_eq "[$*] idle: store and WAL unchanged" "$before" "$(cat "$BEADS_SCHED_STORE" "$BEADS_SCHED_STORE-wal" 2>/dev/null | md5sum)"
  t_eq "[$*] idle: no log line" "$lines" "$(wc -l <"$T_TMP/idle.log")"
  t_eq "[$*] idle: no bytes written by the process" 0 "$((io1 - io0))"
  t_match "[$*] idle: full cycles did run" "[0-9]" "$(t_stats | jq '.requests.health')"
  local cycles; cycles=$(t_stats | jq '.requests.health')
  [ "$cycles" -ge 4 ] && t_ok "[$*] idle: $cycles health checks (one per cycle)" || t_fail "[$*] idle: only $cycles cycles"
  kill -TERM "$pid"; wait "$pid" || true
  unset BEADS_SCHED_DISPATCH_INTERVAL
  t_agent_stop
}

daemon_survives_bad_replies() { # variant...
  t_new_db "$@"; t_agent --capacity 10
  t_env "$T_TMP/alive.$T_DB.db"; export BEADS_SCHED_RETRY_BACKOFF=1s BEADS_SCHED_REAP_INTERVAL=1s
  # Recovery must come from the probe, not the 10-minute full cycle.
  export BEADS_SCHED_DISPATCH_INTERVAL=10m
  t_bead m1
  t_fake config '{"malformed": true}'
  "$BS_BIN" run 2>"$T_TMP/alive.log" &
  local pid=$!
  sleep 2
  t_fake config '{"malformed": false, "force_status": 422}'
  sleep 1
  t_fake config '{"force_status": 0, "truncated": true}'
  sleep 1
  if kill -0 "$pid" 2>/dev/null; then t_ok "[$*] daemon alive after malformed, 422 and truncated replies"; else t_fail "[$*] daemon died"; fi
  t_match "[$*] health failure logged" "agent health check failed" "$(cat "$T_TMP/alive.log")"
  t_fake config '{"truncated": false}'
  # A POST that met the truncated phase is rightly "unknown": the agent has
  # the job, and its claim note (what the real agent writes first, with the
  # job id its prompt gave) proves it; either way m1 reaches the agent
  # exactly once and is never re-POSTed.
  t_wait 10 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq -r '.by_bead.m1 // 0')\" = 1 ]" \
    && t_ok "[$*] dispatches once the agent answers properly" \
    || { t_fail "[$*] m1 never dispatched"; tail -20 "$T_TMP/alive.log"; t_store "SELECT * FROM history"; }
  t_agent_claims; sleep 2
  t_match "[$*] the 422 was noted on the bead" "dispatch failed HTTP 422: " "$(t_sql "SELECT notes FROM issues WHERE id='m1'")"
  t_eq "[$*] m1 accepted by the agent exactly once" 1 "$(t_posts '.by_bead.m1')"
  t_consistent "[$*] bad replies"
  kill -TERM "$pid"; wait "$pid"; t_eq "[$*] SIGTERM exit status" 0 $?
  unset BEADS_SCHED_RETRY_BACKOFF BEADS_SCHED_DISPATCH_INTERVAL BEADS_SCHED_REAP_INTERVAL
  t_agent_stop
}

backlog_refills() { # variant...
  # More beads than slots; jobs finish without touching Dolt. Freed slots
  # are noticed at the next probe, not at the 10-minute full cycle.
  t_new_db "$@"; t_agent --capacity 2 --job-ms 1000
  t_env "$T_TMP/backlog.$T_DB.db"; export BEADS_SCHED_DISPATCH_INTERVAL=10m
  local i
  for i in $(seq 1 6); do t_bead "bl$i"; done
  "$BS_BIN" run 2>"$T_TMP/backlog.log" &
  local pid=$!
  t_wait 15 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq .posts)\" = 6 ]" \
    && t_ok "[$*] backlog: all 6 dispatched as slots freed" || t_fail "[$*] backlog: only $(t_posts) of 6 dispatched"
  t_eq "[$*] backlog: never more than capacity running" 0 "$(t_stats | jq '[.jobs[] | select(.status=="queued")] | length')"
  kill -TERM "$pid"; wait "$pid" || true
  unset BEADS_SCHED_DISPATCH_INTERVAL
  t_agent_stop
}

two_daemons() { # variant...
  t_new_db "$@"; t_agent --capacity 1000 --queue-limit 1000
  local i
  for i in $(seq 1 60); do t_bead "two$i"; done
  t_env "$T_TMP/twoA.$T_DB.db"
  # Both dispatch at once (the single-active lock off): the claims' CAS is what keeps them apart.
  export BEADS_SCHED_SINGLE_ACTIVE=false
  "$BS_BIN" run 2>"$T_TMP/twoA.log" & local a=$!
  BEADS_SCHED_STORE="$T_TMP/twoB.$T_DB.db" "$BS_BIN" run 2>"$T_TMP/twoB.log" & local b=$!
  t_wait 30 bash -c "[ \"\$(mariadb --no-defaults -uroot --socket=$BS_TEST_MYSQL_DIR/mysqld.sock -N $T_DB -e \"SELECT count(*) FROM issues WHERE status='open'\")\" = 0 ]" || true
  sleep 1
  kill -TERM "$a" "$b"; wait "$a" "$b" || true
  unset BEADS_SCHED_SINGLE_ACTIVE
  t_eq "[$*] two daemons: 60 POSTs" 60 "$(t_posts)"
  t_eq "[$*] two daemons: every bead POSTed exactly once" "" "$(t_stats | jq -r '.by_bead | to_entries[] | select(.value != 1) | .key')"
  t_eq "[$*] two daemons: no bead left open" 0 "$(t_sql "SELECT count(*) FROM issues WHERE status='open'")"
  t_agent_stop
}

lost_race_1213() { # variant (dolt only)
  t_new_db "$@"; t_agent --capacity 10
  t_env "$T_TMP/race.$T_DB.db"
  t_bead race1
  t_sql "INSERT INTO dolt_emul_fail (issue_id) VALUES ('race1')"
  t_once
  t_eq "[$*] 1213: no POST" 0 "$(t_posts)"
  t_eq "[$*] 1213: journal lost_race" lost_race "$(t_store "SELECT state FROM journal WHERE bead_id='race1'")"
  t_eq "[$*] 1213: bead untouched" open "$(t_sql "SELECT status FROM issues WHERE id='race1'")"
  t_agent_stop
}

dolt_commits() { # variant (dolt only)
  t_new_db "$@"; t_agent --capacity 10
  t_env "$T_TMP/dc.$T_DB.db"
  t_bead dc1
  t_once
  local msgs
  msgs=$(t_sql "SELECT CONCAT(message, ' / ', author) FROM dolt_emul_commits ORDER BY seq" | xargs)
  t_match "[$*] Dolt commit for the claim" "beads-sched: claim dc1" "$msgs"
  t_match "[$*] Dolt commit author" "beads-sched <beads-sched@localhost>" "$msgs"
  t_agent_stop
}

dry_run() { # variant...
  t_new_db "$@"; t_agent --capacity 10
  t_env "$T_TMP/dry.$T_DB.db"
  t_bead d1; t_bead d2 "acceptance_criteria=''"
  local before after out
  before=$(t_sql "CHECKSUM TABLE issues, events" | md5sum)
  out=$(t_once --dry-run)
  after=$(t_sql "CHECKSUM TABLE issues, events" | md5sum)
  t_eq "[$*] dry-run: database unchanged" "$before" "$after"
  t_eq "[$*] dry-run: no POST" 0 "$(t_posts)"
  [ -e "$BEADS_SCHED_STORE" ] && t_fail "[$*] dry-run created the store" || t_ok "[$*] dry-run: no store created"
  t_match "[$*] dry-run prints the pick" "would dispatch d1" "$out"
  t_match "[$*] dry-run prints the skip" "would note d2" "$out"
  # With an existing store: unchanged byte for byte.
  "$BS_BIN" migrate >/dev/null
  before=$(md5sum <"$BEADS_SCHED_STORE")
  t_once --dry-run >/dev/null
  t_eq "[$*] dry-run: existing store unchanged" "$before" "$(md5sum <"$BEADS_SCHED_STORE")"
  # More free slots than one cycle takes: a dry run shows one cycle and ends
  # (it claims nothing, so continuing would show the same beads for ever).
  t_fake config '{"capacity": 1000, "queue_limit": 1000}'
  t_beads dr 200
  out=$(timeout 30 "$BS_BIN" once --dry-run 2>/dev/null) && t_ok "[$*] dry-run with 1000 free slots ends" || t_fail "[$*] dry-run did not end"
  t_eq "[$*] dry-run shows one cycle's worth" 128 "$(grep -c 'would dispatch' <<<"$out")"
  t_agent_stop
}

pause_resume() { # variant...
  t_new_db "$@"; t_agent --capacity 10
  t_env "$T_TMP/pause.$T_DB.db"
  t_bead p1
  "$BS_BIN" pause >/dev/null
  t_once
  t_eq "[$*] paused: no POST" 0 "$(t_posts)"
  BEADS_SCHED_PAUSED=true "$BS_BIN" resume >/dev/null
  BEADS_SCHED_PAUSED=true t_once
  t_eq "[$*] PAUSED=true pauses too" 0 "$(t_posts)"
  t_once
  t_eq "[$*] resumed: dispatched" 1 "$(t_posts)"
  t_eq "[$*] pause/resume recorded in history" "paused resumed" "$(t_store "SELECT event FROM history WHERE event IN ('paused','resumed')" | xargs)"
  t_agent_stop
}

for variant in "current" "older" "current dolt" "older dolt"; do
  # shellcheck disable=SC2086
  set -- $variant
  capacity_and_order "$@"
  not_ready "$@"
  refusals "$@"
  malformed_replies "$@"
  beadboard_mode "$@"
  dry_run "$@"
  pause_resume "$@"
  if [ "${2:-}" = dolt ]; then
    lost_race_1213 "$@"
    dolt_commits "$@"
  fi
done
daemon_survives_bad_replies current
idle_writes_nothing current
backlog_refills current
idle_writes_nothing older dolt
two_daemons current
two_daemons current dolt
t_done
