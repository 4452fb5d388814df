#!/usr/bin/env bash
# The agent service as it really behaves (CONTRACTS.md section 2), one
# situation per function: a `timeout` whose agent keeps working, a crash
# right after the 202, a proxy's 504 after the service took the job, the
# store locked by an operator, one GET /jobs that times out, two instances
# on one database, a wrong token, a wrong URL, a full service, the
# single-slot service, a failed job with a multi-MiB record, a 202 naming
# the job "..". The fake
# agent's agent side plays the beads-task-runner: it knows only its prompt. Each situation ends with the
# same checks: one agent run at a time per bead, nothing lost, the journal
# and the bead agree, the notes are few and true.
source "$(dirname "$0")/lib.sh"
t_needs_hooks # a crash point and the results pause


fast_env() { # intervals for tests
  export BEADS_SCHED_REAP_INTERVAL=1s BEADS_SCHED_RETRY_BACKOFF=1s BEADS_SCHED_STALE_AFTER=2s
  export BEADS_SCHED_DISPATCH_INTERVAL=1s BEADS_SCHED_MAX_ATTEMPTS=3
}

# agent_side [fake-agent args...]: a fake agent whose agent side writes to
# the current test database, as the beads-task-runner would.
agent_side() { t_agent --capacity 10 --agent-db "$T_DOLT_URL" "$@"; }

# daemon_notes BEAD: the daemon's own lines in BEAD's notes.
daemon_notes() { t_notes_count "$1" '^(auto-dispatcher|dispatched: job=|reaper:|dispatch failed)'; }

# end_checks WHAT MAX_DAEMON_NOTES BEAD...: the four checks every situation ends with.
end_checks() {
  local what=$1 max=$2 b n; shift 2
  t_eq "$what: one agent run at a time per bead" "1 {}" \
    "$(t_stats | jq -r '"\([.processes.max_alive_per_bead, 1] | min) \(.processes.overlaps | tojson)"')"
  t_consistent "$what"
  local bad=""
  for b in "$@"; do
    # The bead's state and the newest attempt's agree.
    local st js
    st=$(t_sql "SELECT status FROM issues WHERE id='$b'")
    js=$(t_store "SELECT state FROM journal WHERE bead_id='$b' ORDER BY attempt DESC LIMIT 1")
    case "$st:$js" in
      closed:closed|blocked:blocked|blocked:gave_up|in_progress:dispatched|in_progress:unknown|open:refused|open:retrying|open:released|open:) ;;
      *) bad+=" $b($st/$js)" ;;
    esac
    n=$(daemon_notes "$b")
    [ "$n" -le "$max" ] || bad+=" $b(notes:$n>$max)"
  done
  t_eq "$what: journal and bead agree, notes few" "" "$bad"
}

# --- a job marked timeout whose agent keeps working ---
timeout_keeps_running() {
  t_new_db current dolt
  agent_side --timeout-ms 600 --agent-note-ms 300 --job-ms 5000
  t_env "$T_TMP/tmo.db"; fast_env
  t_bead tk1
  "$BS_BIN" run 2>"$T_TMP/tmo.log" & local pid=$!
  t_wait 20 bash -c "[ \"\$(mariadb --no-defaults -uroot --socket=$BS_TEST_MYSQL_DIR/mysqld.sock -N $T_DB -e \"SELECT status FROM issues WHERE id='tk1'\")\" = closed ]" || true
  sleep 2
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "timeout: the service marked the job timeout" timeout "$(t_stats | jq -r '.jobs[0].status')"
  t_eq "timeout: its agent closed the bead" closed "$(t_sql "SELECT status FROM issues WHERE id='tk1'")"
  t_eq "timeout: never released while its agent worked" 0 "$(t_notes_count tk1 'released for retry')"
  t_eq "timeout: one POST" 1 "$(t_posts)"
  t_match "timeout: the close is credited to the attempt whose id it names" "closed\|bead closed by this attempt's agent" \
    "$(t_store "SELECT state, detail FROM journal WHERE bead_id='tk1'")"
  end_checks timeout 2 tk1
  t_agent_stop

  # The same, but the agent stops without closing: released only once the
  # bead has been quiet for STALE_AFTER since, and the note says why.
  t_new_db current dolt
  agent_side --timeout-ms 600 --agent-note-ms 300 --job-ms 2500 --agent-outcome leave
  t_env "$T_TMP/tmo2.db"; fast_env; export BEADS_SCHED_MAX_ATTEMPTS=2
  t_bead tk2
  "$BS_BIN" run 2>"$T_TMP/tmo2.log" & pid=$!
  t_wait 30 bash -c "[ \"\$(mariadb --no-defaults -uroot --socket=$BS_TEST_MYSQL_DIR/mysqld.sock -N $T_DB -e \"SELECT status FROM issues WHERE id='tk2'\")\" = blocked ]" || true
  kill -TERM "$pid"; wait "$pid" || true
  t_match "timeout, then quiet: release note says the agent was not stopped" \
    "reaper: job [0-9a-f]{12} timeout; the service does not stop its agent, and the bead has been quiet for [0-9]+s since, bead still in_progress; released for retry \\(attempt 1/2\\)" \
    "$(t_sql "SELECT notes FROM issues WHERE id='tk2'")"
  t_eq "timeout, then quiet: blocked after MAX_ATTEMPTS" blocked "$(t_sql "SELECT status FROM issues WHERE id='tk2'")"
  t_eq "timeout, then quiet: two POSTs, one per attempt" 2 "$(t_posts)"
  end_checks "timeout, then quiet" 6 tk2
  unset BEADS_SCHED_MAX_ATTEMPTS
  t_agent_stop
}

# --- the daemon killed right after the 202, before journaling it ---
crash_after_202() {
  t_new_db current dolt
  agent_side --agent-note-ms 300 --job-ms 0
  t_env "$T_TMP/c202.db"; fast_env
  t_bead cr1
  set +e
  BEADS_SCHED_CRASH_AT=after_post_response "$BS_BIN" once 2>>"$T_TMP/c202.log"
  t_eq "crash after 202: the process died there" 137 $?
  set -e
  t_eq "crash after 202: the journal says posting" posting "$(t_store "SELECT state FROM journal WHERE bead_id='cr1'")"
  "$BS_BIN" run 2>>"$T_TMP/c202.log" & local pid=$!
  sleep 7 # 3x STALE_AFTER: its agent notes all along
  t_eq "crash after 202: never POSTed again while the job runs" 1 "$(t_stats | jq -r '.requests.execute')"
  t_match "crash after 202: the agent's claim note proves it reached the agent" \
    "unknown\|reached the agent \(its claim note carries dispatch [0-9a-f-]{36}\)" \
    "$(t_store "SELECT state, detail FROM journal WHERE bead_id='cr1'")"
  local job; job=$(t_stats | jq -r '.jobs[0].job_id')
  t_fake "jobs/$job" '{"status": "completed"}' # the agent closes the bead
  t_wait 10 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT state FROM journal WHERE bead_id='cr1'\")\" = closed ]" || true
  kill -TERM "$pid"; wait "$pid" || true
  t_match "crash after 202: the close is credited to that attempt" "closed\|bead closed by this attempt's agent" \
    "$(t_store "SELECT state, detail FROM journal WHERE bead_id='cr1'")"
  end_checks "crash after 202" 1 cr1
  t_agent_stop
}

# --- a proxy answers 504 after the service took the job ---
proxy_504() {
  t_new_db current dolt
  agent_side --agent-note-ms 300 --job-ms 0
  t_env "$T_TMP/p504.db"; fast_env
  t_bead px1
  local how="proxy 504"
  t_fake config '{"proxy_status": 504}' 2>/dev/null || { how="no answer after sending"; t_fake config '{"no_response": true, "shape_paths": ["execute"]}'; }
  "$BS_BIN" run 2>"$T_TMP/p504.log" & local pid=$!
  sleep 6 # many RETRY_BACKOFFs and STALE_AFTERs
  t_eq "$how: one POST, never repeated" 1 "$(t_stats | jq -r '.requests.execute')"
  t_eq "$how: one live job for the bead" 1 "$(t_stats | jq -r '[.jobs[] | select(.status == "running" or .status == "queued")] | length')"
  t_eq "$how: the bead stays with its agent" in_progress "$(t_sql "SELECT status FROM issues WHERE id='px1'")"
  t_fake config '{"proxy_status": 0}' 2>/dev/null || t_fake config '{"no_response": false}'
  local job; job=$(t_stats | jq -r '.jobs[0].job_id')
  t_fake "jobs/$job" '{"status": "completed"}'
  t_wait 10 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT state FROM journal WHERE bead_id='px1'\")\" = closed ]" || true
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "$how: the agent's close is recorded" closed "$(t_store "SELECT state FROM journal WHERE bead_id='px1'")"
  end_checks "$how" 1 px1
  t_agent_stop
}

# --- an operator holds the store's write lock while 202s arrive ---
store_locked() {
  t_new_db current dolt
  agent_side --agent-note-ms 0 --job-ms 0
  t_env "$T_TMP/lock.db"; fast_env; export BEADS_SCHED_STALE_AFTER=3s
  "$BS_BIN" migrate 2>/dev/null
  t_bead lk1; t_bead lk2
  # The worker pauses before journaling the 202s; the operator's
  # BEGIN IMMEDIATE lands in that gap and is held for 12 s (over two
  # busy timeouts of 5 s).
  BEADS_SCHED_TEST_RECORD_RESULTS_MS=1500 "$BS_BIN" run 2>"$T_TMP/lock.log" & local pid=$!
  t_wait 10 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq -r .posts)\" = 2 ]" || true
  { echo "BEGIN IMMEDIATE;"; sleep 12; echo "COMMIT;"; } | sqlite3 "$BEADS_SCHED_STORE" &
  local lock=$!
  sleep 11
  t_eq "store locked: the 202s wait in memory, not journaled yet" "posting posting" "$(t_store "SELECT state FROM journal ORDER BY bead_id" 2>/dev/null | xargs || echo locked)"
  wait "$lock"
  t_wait 15 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal WHERE state='dispatched'\")\" = 2 ]" || true
  sleep 4 # past STALE_AFTER: nothing dispatched twice
  kill -TERM "$pid"; wait "$pid" || true
  t_match "store locked: the failure was logged, the results kept" "keeping them and retrying" "$(cat "$T_TMP/lock.log")"
  t_eq "store locked: both 202s journaled" "dispatched dispatched" "$(t_store "SELECT state FROM journal ORDER BY bead_id" | xargs)"
  t_eq "store locked: both dispatched notes written" "1 1" "$(t_notes_count lk1 '^dispatched: job=') $(t_notes_count lk2 '^dispatched: job=')"
  t_eq "store locked: one POST per bead" 2 "$(t_posts)"
  end_checks "store locked" 2 lk1 lk2
  t_agent_stop
}

# --- one GET /jobs that times out does not block a quiet live bead ---
one_missed_answer() {
  t_new_db current dolt
  agent_side --agent-note-ms 0 --job-ms 0
  t_env "$T_TMP/miss.db"; fast_env; export BEADS_SCHED_HTTP_TIMEOUT=1s BEADS_SCHED_REAP_INTERVAL=2s
  t_bead ms1
  "$BS_BIN" run 2>"$T_TMP/miss.log" & local pid=$!
  t_wait 10 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT state FROM journal WHERE bead_id='ms1'\")\" = dispatched ]" || true
  # A quiet agent: quiet for far longer than STALE_AFTER, and for under a
  # minute so the stale note below gives seconds whichever write (ours or
  # the agent's note) lands last.
  t_sql "UPDATE issues SET updated_at = UTC_TIMESTAMP() - INTERVAL 20 SECOND WHERE id='ms1'"
  local n0; n0=$(t_stats | jq -r '.requests.jobs')
  t_fake config '{"hang": true, "shape_paths": ["jobs"]}'
  t_wait 10 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq -r .requests.jobs)\" -gt $n0 ]" || true
  sleep 1.5 # that one GET times out
  t_fake config '{"hang": false}'
  sleep 5 # two more passes, answered
  t_eq "one missed answer: the live bead is not blocked" in_progress "$(t_sql "SELECT status FROM issues WHERE id='ms1'")"
  t_eq "one missed answer: no stale note" 0 "$(t_notes_count ms1 'no progress for')"
  # Unreachable pass after pass: the old rule applies (the agent can't say).
  t_fake config '{"hang": true, "shape_paths": ["jobs"]}'
  t_wait 15 bash -c "[ \"\$(mariadb --no-defaults -uroot --socket=$BS_TEST_MYSQL_DIR/mysqld.sock -N $T_DB -e \"SELECT status FROM issues WHERE id='ms1'\")\" = blocked ]" || true
  t_fake config '{"hang": false}'
  kill -TERM "$pid"; wait "$pid" || true
  t_match "unreachable twice: the old stale rule" "reaper: no progress for [0-9]+s \\(threshold [1-9][0-9]*s\\) — blocking" "$(t_sql "SELECT notes FROM issues WHERE id='ms1'")"
  end_checks "one missed answer" 3 ms1
  unset BEADS_SCHED_HTTP_TIMEOUT
  t_agent_stop
}

# --- two instances against one database ---
two_instances() {
  t_new_db current dolt
  agent_side --agent-note-ms 0 --job-ms 0
  fast_env
  local i
  for i in 1 2 3 4 5 6; do t_bead "two$i" "priority=$((i % 3))"; done
  t_env "$T_TMP/two.a.db"; fast_env
  "$BS_BIN" run 2>"$T_TMP/two.a.log" & local pa=$!
  t_env "$T_TMP/two.b.db"; fast_env
  "$BS_BIN" run 2>"$T_TMP/two.b.log" & local pb=$!
  t_wait 10 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq -r .posts)\" = 6 ]" || true
  # The agents are quiet (no notes after the claim) for 3x STALE_AFTER.
  t_sql "UPDATE issues SET updated_at = UTC_TIMESTAMP() - INTERVAL 1 HOUR"
  sleep 6
  t_eq "two instances: no live bead blocked as an orphan" 0 "$(t_sql "SELECT count(*) FROM issues WHERE status='blocked'")"
  t_eq "two instances: six beads, six POSTs" "6 1" "$(t_posts) $(t_stats | jq -r '[.by_bead[]] | max')"
  t_eq "two instances: each bead dispatched by exactly one of them" "1 1 1 1 1 1" \
    "$(for i in 1 2 3 4 5 6; do echo $(( $(sqlite3 "$T_TMP/two.a.db" "SELECT count(*) FROM journal WHERE bead_id='two$i' AND state <> 'lost_race'") + $(sqlite3 "$T_TMP/two.b.db" "SELECT count(*) FROM journal WHERE bead_id='two$i' AND state <> 'lost_race'") )); done | xargs)"
  t_fake complete-all '{"status": "completed"}' # the agents close their beads
  closed_both() { echo $(( $(sqlite3 "$T_TMP/two.a.db" "SELECT count(*) FROM journal WHERE state='closed'") + $(sqlite3 "$T_TMP/two.b.db" "SELECT count(*) FROM journal WHERE state='closed'") )); }
  local i2
  for i2 in $(seq 50); do [ "$(closed_both)" = 6 ] && break; sleep 0.2; done
  kill -TERM "$pa" "$pb"; wait "$pa" || true; wait "$pb" || true
  t_eq "two instances: every attempt ends closed, in the store that made it" 6 "$(closed_both)"
  local s
  for s in a b; do
    BEADS_SCHED_STORE=$T_TMP/two.$s.db T_OTHER_STORES=1 end_checks "two instances ($s)" 2 \
      $(sqlite3 "$T_TMP/two.$s.db" "SELECT DISTINCT bead_id FROM journal WHERE state <> 'lost_race'")
  done
  t_agent_stop
}

# --- a wrong token: no claims, /readyz says why, resumes when it works ---
wrong_token() {
  t_new_db current dolt
  local port; port=$(free_port)
  t_agent --port "$port" --capacity 10 --token other-token
  t_env "$T_TMP/tok.db"; fast_env
  local aport; aport=$(free_port)
  export BEADS_SCHED_LISTEN=127.0.0.1:$aport
  t_bead wt1; t_bead wt2
  local c0; c0=$(t_sql "SELECT count(*) FROM dolt_emul_commits")
  "$BS_BIN" run 2>"$T_TMP/tok.log" & local pid=$!
  sleep 5
  t_eq "wrong token: nothing claimed" "open open" "$(t_sql "SELECT status FROM issues ORDER BY id" | xargs)"
  t_eq "wrong token: no notes" "0 0" "$(daemon_notes wt1) $(daemon_notes wt2)"
  t_eq "wrong token: no Dolt commits" "$c0" "$(t_sql "SELECT count(*) FROM dolt_emul_commits")"
  t_eq "wrong token: no POST" 0 "$(t_stats | jq -r '.requests.execute')"
  t_eq "wrong token: logged once at error level" 1 "$(grep -c 'level=error msg="agent service refuses our token' "$T_TMP/tok.log")"
  t_match "wrong token: /readyz 503 says why" "^503 agent refuses our token" \
    "$(curl -s -w '%{http_code} ' -o "$T_TMP/ready.txt" "http://127.0.0.1:$aport/readyz"; cat "$T_TMP/ready.txt")"
  t_match "wrong token: the metric says why" "beads_sched_agent_token_refused 1" "$(curl -s "http://127.0.0.1:$aport/metrics")"
  # The service gets the right token (restarted on the same port).
  t_agent_stop; sleep 0.3
  t_agent --port "$port" --capacity 10
  t_wait 15 bash -c "[ \"\$(mariadb --no-defaults -uroot --socket=$BS_TEST_MYSQL_DIR/mysqld.sock -N $T_DB -e \"SELECT count(*) FROM issues WHERE status='in_progress'\")\" = 2 ]" \
    && t_ok "wrong token: claims resume once the token works" || t_fail "wrong token: never resumed"
  t_eq "wrong token: /readyz 200 again" 200 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$aport/readyz")"
  kill -TERM "$pid"; wait "$pid" || true
  unset BEADS_SCHED_LISTEN
  end_checks "wrong token" 2 wt1 wt2
  t_agent_stop
}

# --- a wrong URL: 404 on /execute ---
wrong_url() {
  t_new_db current dolt
  t_agent --capacity 10
  t_env "$T_TMP/url.db"; fast_env
  local aport; aport=$(free_port)
  export BEADS_SCHED_LISTEN=127.0.0.1:$aport
  t_bead wu1
  t_fake config '{"force_status": 404}'
  "$BS_BIN" run 2>"$T_TMP/url.log" & local pid=$!
  sleep 4
  t_eq "wrong URL: the claim given back" open "$(t_sql "SELECT status FROM issues WHERE id='wu1'")"
  t_eq "wrong URL: no failure note" 0 "$(t_notes_count wu1 'dispatch failed')"
  t_eq "wrong URL: one POST, then no more claims" 1 "$(t_stats | jq -r '.requests.execute')"
  t_match "wrong URL: /readyz 503 says why" "^503 agent URL answers 404 on /execute" \
    "$(curl -s -w '%{http_code} ' -o "$T_TMP/ready.txt" "http://127.0.0.1:$aport/readyz"; cat "$T_TMP/ready.txt")"
  t_match "wrong URL: the metric says why" "beads_sched_agent_url_wrong 1" "$(curl -s "http://127.0.0.1:$aport/metrics")"
  t_fake config '{"force_status": 0}' # the service is found there again
  t_wait 20 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT state FROM journal WHERE bead_id='wu1' ORDER BY attempt DESC LIMIT 1\")\" = dispatched ]" \
    && t_ok "wrong URL: claims resume once it answers" || t_fail "wrong URL: never resumed"
  kill -TERM "$pid"; wait "$pid" || true
  unset BEADS_SCHED_LISTEN
  end_checks "wrong URL" 3 wu1
  t_agent_stop
}

# --- a full service (429): claims given back without notes, backing off ---
full_agent() {
  t_new_db current dolt
  t_agent --capacity 10 --queue-limit 100
  t_env "$T_TMP/full.db"; fast_env
  local i
  for i in 1 2 3 4 5; do t_bead "fu$i"; done
  t_fake config '{"force_status": 429}'
  "$BS_BIN" run 2>"$T_TMP/full.log" & local pid=$!
  sleep 8
  t_eq "full: nothing dispatched" 0 "$(t_posts)"
  t_eq "full: no failure notes" 0 "$(for i in 1 2 3 4 5; do t_notes_count "fu$i" 'dispatch failed'; done | awk '{ s += $1 } END { print s + 0 }')"
  local claims; claims=$(for i in 1 2 3 4 5; do t_notes_count "fu$i" '^auto-dispatcher claimed'; done | awk '{ s += $1 } END { print s + 0 }')
  [ "$claims" -le 5 ] && t_ok "full: $claims claims in 8 s for 5 beads (at most one per bead)" || t_fail "full: $claims claims in 8 s"
  t_eq "full: no attempt used" 0 "$(t_store "SELECT count(*) FROM journal WHERE state <> 'refused'")"
  # It takes jobs again. The beads it refused wait (up to an hour, so that
  # each gets at most one claim note an hour) until it takes one: here a
  # new bead, never refused, goes first.
  t_fake config '{"force_status": 0}'
  t_bead fu6
  t_wait 40 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq -r .posts)\" = 6 ]" || true
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "full: all dispatched once it takes a job again" 6 "$(t_posts)"
  t_eq "full: the prompts say attempt 1 of 3" "Attempt 1 of 3." \
    "$(for j in $(t_stats | jq -r '.jobs[].job_id'); do t_job_prompt "$j" | grep '^Attempt'; done | sort -u | xargs)"
  end_checks full 3 fu1 fu2 fu3 fu4 fu5 fu6
  t_agent_stop
}

# --- the older single-slot service ---
single_slot() {
  t_new_db current dolt
  agent_side --single-slot --agent-note-ms 200 --job-ms 800
  t_env "$T_TMP/single.db"; fast_env
  t_bead ss1 "priority=0"; t_bead ss2 "priority=1"; t_bead ss3 "priority=2"
  "$BS_BIN" run 2>"$T_TMP/single.log" & local pid=$!
  t_wait 30 bash -c "[ \"\$(mariadb --no-defaults -uroot --socket=$BS_TEST_MYSQL_DIR/mysqld.sock -N $T_DB -e \"SELECT count(*) FROM issues WHERE status='closed'\")\" = 3 ]" || true
  sleep 2
  kill -TERM "$pid"; wait "$pid" || true
  t_eq "single-slot: every bead dispatched and closed by its agent" "closed closed closed" "$(t_sql "SELECT status FROM issues ORDER BY id" | xargs)"
  t_eq "single-slot: one POST per bead" "3 1" "$(t_posts) $(t_stats | jq -r '[.by_bead[]] | max')"
  t_eq "single-slot: the journal" "closed closed closed" "$(t_store "SELECT state FROM journal WHERE state <> 'refused' ORDER BY bead_id" | xargs)"
  end_checks single-slot 3 ss1 ss2 ss3
  t_agent_stop
}

# --- a failed job whose record is 3 MiB ---
big_failed_record() {
  t_new_db current dolt
  agent_side --agent-note-ms 0 --job-ms 0 --agent-outcome none
  t_env "$T_TMP/big.db"; fast_env; export BEADS_SCHED_MAX_ATTEMPTS=1
  t_fake config '{"output_bytes": 3145728, "exit_code": 3, "stderr": "warming up\nError: bd: database is locked\n"}'
  t_bead bg1
  "$BS_BIN" run 2>"$T_TMP/big.log" & local pid=$!
  t_wait 10 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq -r .posts)\" = 1 ]" || true
  local job; job=$(t_stats | jq -r '.jobs[0].job_id')
  t_fake "jobs/$job" '{"status": "failed"}'
  t_wait 10 bash -c "[ \"\$(mariadb --no-defaults -uroot --socket=$BS_TEST_MYSQL_DIR/mysqld.sock -N $T_DB -e \"SELECT status FROM issues WHERE id='bg1'\")\" = blocked ]" || true
  kill -TERM "$pid"; wait "$pid" || true
  t_match "big record: the note says why the job failed" \
    "reaper: job $job failed \\(exit 3, stderr: Error: bd: database is locked\\); attempts exhausted \\(1/1\\), blocking" \
    "$(t_sql "SELECT notes FROM issues WHERE id='bg1'")"
  t_eq "big record: not taken for an unreachable agent" 0 "$(t_notes_count bg1 'no progress for')"
  end_checks "big record" 3 bg1
  unset BEADS_SCHED_MAX_ATTEMPTS
  t_agent_stop
}

# --- a 202 naming the job "..": never a GET /jobs/.. (which is GET /) ---
dotdot_job_id() {
  local id
  for id in '..' '.' 'x/../health'; do
    t_new_db current dolt
    agent_side --agent-note-ms 300 --job-ms 0
    t_env "$T_TMP/dd.db"; fast_env
    rm -f "$T_TMP/dd.db"
    t_bead dd1
    t_fake config "$(jq -cn --arg id "$id" '{reply_job_id: $id}')"
    "$BS_BIN" run 2>"$T_TMP/dd.log" & local pid=$!
    sleep 5 # a dozen reap passes
    t_eq "job id '$id': one POST, never repeated" 1 "$(t_stats | jq -r '.requests.execute')"
    t_eq "job id '$id': no GET of it, nor of any path it would make" "0 0" \
      "$(t_stats | jq -r '"\(.requests.reply_id_gets) \(.requests.stray)"')"
    t_eq "job id '$id': the attempt is unknown (a 202 that can't be used), the bead with its agent" \
      "unknown in_progress" "$(t_store "SELECT state FROM journal WHERE bead_id='dd1'") $(t_sql "SELECT status FROM issues WHERE id='dd1'")"
    kill -TERM "$pid"; wait "$pid" || true
    end_checks "job id '$id'" 1 dd1
    t_agent_stop
  done
}

only=${BS_ONLY:-}
for f in timeout_keeps_running crash_after_202 proxy_504 store_locked one_missed_answer two_instances \
         wrong_token wrong_url full_agent single_slot big_failed_record dotdot_job_id; do
  [ -z "$only" ] || [[ " $only " == *" $f "* ]] || continue
  echo "# $f"
  $f
done
t_done
