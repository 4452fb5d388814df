#!/usr/bin/env bash
# The read-only operator commands: status, history and explain, against
# stores and beads left by real dispatch cycles (private MariaDB, both
# schema variants, fake agent). The reaper is simulated by editing the
# journal and the bead the way it will.
source "$(dirname "$0")/lib.sh"

ISO='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z'
now_ms() { date +%s%3N; }
# run OUT_VAR RC_VAR CMD...: captures stdout and the exit status.
run() {
  local __o __r=0
  __o=$("${@:3}" 2>"$T_TMP/err") || __r=$?
  printf -v "$1" '%s' "$__o"; printf -v "$2" '%s' "$__r"
}
# what the reaper will do when a job ends: the attempt ends in `state`.
reap_as() { # BEAD STATE [FINISHED_MS]
  t_store "UPDATE journal SET state='$2', outcome='$2', finished_at=${3:-$(now_ms)} WHERE bead_id='$1' AND finished_at IS NULL"
}

status_and_history() {
  t_new_db current; t_agent --capacity 10
  t_env "$T_TMP/ops.$T_DB.db"
  local out rc
  run out rc "$BS_BIN" status
  t_eq "status without a store: exit 1" 1 "$rc"
  t_match "status without a store: says so" "no store at .*ops\.$T_DB\.db" "$(cat "$T_TMP/err")"
  run out rc "$BS_BIN" history
  t_eq "history without a store: exit 1" 1 "$rc"
  [ -e "$BEADS_SCHED_STORE" ] && t_fail "status created the store" || t_ok "status and history create no store"

  t_bead s1 "priority=0"; t_bead s2 "priority=1"
  t_once
  t_bead s3
  t_fake config '{"force_status": 429}'
  t_once
  t_fake config '{"force_status": 0}'
  t_eq "setup: s3 refused" refused "$(t_store "SELECT state FROM journal WHERE bead_id='s3'")"
  reap_as s1 closed
  # An attempt that finished two days ago is not in the 24 h counts.
  t_store "INSERT INTO journal (bead_id, attempt, dispatch_id, state, created_at, finished_at, outcome)
           VALUES ('old1', 1, 'old-dispatch-1', 'gave_up', $(( $(now_ms) - 172800000 )), $(( $(now_ms) - 172800000 )), 'gave_up')"

  local before; before=$(md5sum <"$BEADS_SCHED_STORE")
  run out rc "$BS_BIN" status
  t_eq "status: exit 0" 0 "$rc"
  t_match "status: not paused" "dispatching +active" "$out"
  t_match "status: in-flight count" "in flight +1 attempt$" "$(grep '^in flight' <<<"$out")"
  t_match "status: in-flight row (bead, attempt, state, job, age)" "^  s2 +1 +dispatched +[0-9a-f]{12} +[0-9]+(ms|s) +$ISO$" "$(grep '^  s2' <<<"$out")"
  t_match "status: 24 h counts" "last 24 h +2 finished: (closed 1, refused 1|refused 1, closed 1)$" "$out"
  # The daemon records a cycle only when it did something (an idle daemon
  # writes nothing); the recovery passes settled nothing, so no reap yet.
  t_match "status: last cycle with its result, no reap yet" "last cycle +$ISO \([0-9]+(ms|s) ago\): dispatched 0, refused 1, unknown 0.*last reap +never" "$(tr '\n' ' ' <<<"$out")"
  t_eq "status wrote nothing" "$before" "$(md5sum <"$BEADS_SCHED_STORE")"

  run out rc "$BS_BIN" status --json
  t_eq "status --json: exit 0" 0 "$rc"
  t_eq "status --json: in flight" "s2 1 dispatched" "$(jq -r '.in_flight[] | "\(.bead_id) \(.attempt) \(.state)"' <<<"$out")"
  t_eq "status --json: job id" "$(t_store "SELECT job_id FROM journal WHERE bead_id='s2'")" "$(jq -r '.in_flight[0].job_id' <<<"$out")"
  t_eq "status --json: 24 h counts" '{"closed":1,"refused":1} 2' "$(jq -c '[.finished_24h, .finished_24h_total] | "\(.[0]|tostring) \(.[1])"' -r <<<"$out")"
  t_eq "status --json: not paused, last cycle, no reap" "false dispatched 0, refused 1, unknown 0 null" "$(jq -r '"\(.paused) \(.last_cycle.result) \(.last_reap)"' <<<"$out")"

  local t; t=$(( $(now_ms) - 65000 ))
  t_store "INSERT OR REPLACE INTO settings VALUES ('last_cycle_at', '$t', $t), ('last_cycle_result', 'ok: 2 dispatched', $t),
                                       ('last_reap_at', '$t', $t), ('last_reap_result', 'failed: agent unreachable', $t)"
  run out rc "$BS_BIN" status
  t_match "status: last cycle time, age and result" "last cycle +$ISO \(1m0[0-9]s ago\): ok: 2 dispatched" "$out"
  t_match "status: last reap result" "last reap +$ISO .*failed: agent unreachable" "$out"
  run out rc "$BS_BIN" status --json
  t_eq "status --json: last cycle" "ok: 2 dispatched $t" "$(jq -r '"\(.last_cycle.result) \(.last_cycle.at_ms)"' <<<"$out")"

  "$BS_BIN" pause >/dev/null
  run out rc "$BS_BIN" status
  t_match "status: paused by the store flag" "dispatching +PAUSED \(store flag" "$out"
  run out rc env BEADS_SCHED_PAUSED=true "$BS_BIN" status --json
  t_eq "status --json: both pause sources" "true true true" "$(jq -r '"\(.paused) \(.paused_store) \(.paused_config)"' <<<"$out")"
  "$BS_BIN" resume >/dev/null
  run out rc env BEADS_SCHED_PAUSED=true "$BS_BIN" status
  t_match "status: paused by the configuration" "PAUSED \(BEADS_SCHED_PAUSED=true" "$out"
  run out rc "$BS_BIN" status --bogus
  t_eq "status --bogus: exit 2" 2 "$rc"

  # --- history ---
  local events; events=$(t_store "SELECT count(*) FROM event_log")
  run out rc "$BS_BIN" history
  t_eq "history: exit 0" 0 "$rc"
  t_match "history: header" "^AT +BEAD +ATTEMPT +EVENT +JOB +DETAIL$" "$(head -1 <<<"$out")"
  t_eq "history: every event, one line each" "$events" "$(($(wc -l <<<"$out") - 1))"
  t_eq "history: oldest first" "claiming" "$(sed -n 2p <<<"$out" | awk '{print $4}')"
  t_match "history: pause and resume listed without a bead" "^$ISO +- +paused +by the pause/resume command" "$(grep ' paused ' <<<"$out")"
  run out rc "$BS_BIN" history s3
  t_eq "history s3: its events in order" "claiming claimed posting refused" "$(tail -n +2 <<<"$out" | awk '{print $4}' | xargs)"
  t_match "history s3: refusal detail" "refused +claim given back, not an attempt: agent full: HTTP 429: " "$(tail -1 <<<"$out")"
  t_match "history s3: columns aligned" "^$ISO  s3    1        refused " "$(tail -1 <<<"$out")"
  run out rc "$BS_BIN" history --limit 2
  t_eq "history --limit 2: two rows" 3 "$(wc -l <<<"$out")"
  t_match "history --limit 2: says older ones were left out" "only the newest 2 events" "$(cat "$T_TMP/err")"
  t_eq "history --limit 2: the newest" "resumed" "$(tail -1 <<<"$out" | awk '{print $3}')"
  run out rc "$BS_BIN" history s2 --json
  t_eq "history --json: parses, bead and events" "s2 4 false" "$(jq -r '"\(.bead) \(.events | length) \(.more)"' <<<"$out")"
  t_eq "history --json: event fields" "s2 1 dispatched" "$(jq -r '.events[-1] | "\(.bead_id) \(.attempt) \(.event)"' <<<"$out")"
  t_match "history --json: job id" "^[0-9a-f]{12}$" "$(jq -r '.events[-1].job_id' <<<"$out")"
  run out rc "$BS_BIN" history --json --limit=0
  t_eq "history --json --limit=0: everything" "$events" "$(jq '.events | length' <<<"$out")"
  run out rc "$BS_BIN" history nosuch
  t_eq "history of an unknown bead: exit 0, nothing" "0:" "$rc:$out"
  t_match "history of an unknown bead: says so" "no events for bead nosuch" "$(cat "$T_TMP/err")"
  run out rc "$BS_BIN" history --limit x
  t_eq "history --limit x: exit 2" 2 "$rc"
  run out rc "$BS_BIN" history a b
  t_eq "history with two beads: exit 2" 2 "$rc"
  # A hostile bead id is printed harmlessly.
  t_store "INSERT INTO event_log (at, bead_id, event, detail) VALUES ($(now_ms), 'evil'||char(27)||'[2J', 'note', 'line1'||char(10)||'line2')"
  run out rc "$BS_BIN" history --limit 1
  [[ $out == *$'\e'* ]] && t_fail "history printed an escape character" || t_ok "history: control characters not printed"
  t_match "history: newline in detail flattened" "line1 line2$" "$(tail -1 <<<"$out")"
  t_agent_stop
}

# explain_rule OUTPUT RULE: the result word of RULE in explain's table.
rule_of() { grep -E "^  $2  " <<<"$1" | awk -v n="$(wc -w <<<"$2")" '{print $(n + 1)}'; }

explain_current() {
  t_new_db current; t_agent --capacity 10
  t_env "$T_TMP/ex.$T_DB.db"; export BEADS_SCHED_RETRY_BACKOFF=1h
  local out rc
  t_bead blocker "assignee='alice'"
  t_bead blk
  t_sql "INSERT INTO dependencies (issue_id, depends_on_id, type, created_by) VALUES ('blk', 'blocker', 'blocks', 'test')"
  t_bead def "defer_until=UTC_TIMESTAMP() + INTERVAL 1 DAY"
  t_bead noac "acceptance_criteria=' \n\t '"
  t_bead gate1 "issue_type='gate'"

  # Never seen, no store yet: explain works and says so.
  t_bead fresh
  run out rc "$BS_BIN" explain fresh
  t_eq "explain without a store: exit 0" 0 "$rc"
  t_match "explain without a store: attempts" "0 of MAX_ATTEMPTS=3 used \(no store yet\)" "$out"
  t_match "explain fresh: verdict" "^verdict: would be dispatched at the next cycle$" "$(tail -1 <<<"$out")"
  [ -e "$BEADS_SCHED_STORE" ] && t_fail "explain created the store" || t_ok "explain creates no store"
  t_once # dispatches fresh

  t_bead bo1
  t_fake config '{"force_status": 429}'
  t_once
  t_fake config '{"force_status": 0}'
  t_eq "setup: bo1 refused" refused "$(t_store "SELECT state FROM journal WHERE bead_id='bo1'")"
  t_bead ex1
  t_once
  t_eq "setup: ex1 dispatched" dispatched "$(t_store "SELECT state FROM journal WHERE bead_id='ex1'")"
  # ex1's job ended without finishing: the reaper reopens it for a retry.
  reap_as ex1 retrying
  t_sql "UPDATE issues SET status='open' WHERE id='ex1'"
  t_bead ready1 "priority=0"

  local before; before=$(md5sum <"$BEADS_SCHED_STORE"; t_sql "CHECKSUM TABLE issues, events")

  run out rc "$BS_BIN" explain blk
  t_eq "explain blocked: exit 0" 0 "$rc"
  t_match "explain blocked: names the rule and the blocker" "^verdict: not dispatched: blocked: blocks: blocker \(open\)$" "$(tail -1 <<<"$out")"
  t_eq "explain blocked: rule FAIL" FAIL "$(rule_of "$out" blocked)"
  t_eq "explain blocked: other rules pass" pass "$(rule_of "$out" status)"
  run out rc "$BS_BIN" explain def
  t_match "explain deferred" "^verdict: not dispatched: deferred: until [0-9-]+ [0-9:]+ UTC$" "$(tail -1 <<<"$out")"
  run out rc "$BS_BIN" explain noac
  t_match "explain no acceptance criteria" "^verdict: not dispatched: acceptance criteria: empty or blank$" "$(tail -1 <<<"$out")"
  run out rc "$BS_BIN" explain gate1
  t_match "explain excluded issue type" "^verdict: not dispatched: issue type: gate \(never dispatched" "$(tail -1 <<<"$out")"
  run out rc "$BS_BIN" explain blocker
  t_match "explain other assignee" "^verdict: not dispatched: assignee: alice \(want agent\)$" "$(tail -1 <<<"$out")"
  run out rc "$BS_BIN" explain bo1
  t_match "explain backing off" "^verdict: not dispatched: retry backoff: waiting until $ISO \(in (59m[0-9]{2}s|1h00m)\)$" "$(tail -1 <<<"$out")"
  t_match "explain backing off: latest attempt refused" "in flight +pass +attempt 1 is refused" "$out"
  t_match "explain backing off: refusal does not use an attempt" "attempts +pass +0 of MAX_ATTEMPTS=3 used" "$out"
  run out rc env BEADS_SCHED_MAX_ATTEMPTS=1 "$BS_BIN" explain ex1
  t_match "explain exhausted" "^verdict: not dispatched: attempts: 1 of MAX_ATTEMPTS=1 used$" "$(tail -1 <<<"$out")"
  run out rc "$BS_BIN" explain fresh
  t_match "explain in progress" "^verdict: not dispatched: status: in_progress \(want open\)$" "$(tail -1 <<<"$out")"
  t_match "explain in progress: attempt in flight with its job" "in flight +FAIL +attempt 1 is still dispatched \(job [0-9a-f]{12}\) since $ISO" "$out"

  run out rc "$BS_BIN" explain ready1
  t_eq "explain ready: exit 0" 0 "$rc"
  t_eq "explain ready: verdict" "verdict: would be dispatched at the next cycle" "$(tail -1 <<<"$out")"
  t_match "explain ready: capacity from /health" "agent capacity +pass +8 free slots \(capacity 10, active 2, queued 0\)" "$out"
  t_match "explain ready: first in line" "queue position +pass +0 ready beads ahead" "$out"
  run out rc "$BS_BIN" explain ex1
  t_match "explain ex1: behind ready1" "queue position +pass +1 ready bead ahead in dispatch order, 8 slots free" "$out"
  t_eq "explain ex1: retry allowed" "verdict: would be dispatched at the next cycle" "$(tail -1 <<<"$out")"

  run out rc "$BS_BIN" explain ready1 --json
  t_eq "explain --json: exit 0" 0 "$rc"
  t_eq "explain --json: verdict" "true would be dispatched at the next cycle" "$(jq -r '"\(.dispatchable) \(.verdict)"' <<<"$out")"
  t_eq "explain --json: rules array" "exists id assignee status acceptance criteria pinned ephemeral issue type deferred parent deferred blocked parent blocked notes attempts retry backoff in flight paused agent capacity queue position" "$(jq -r '.rules[].rule' <<<"$out" | xargs)"
  t_eq "explain --json: every rule passes" "true" "$(jq '[.rules[].ok] | all' <<<"$out")"
  run out rc "$BS_BIN" explain blk --json
  t_eq "explain --json blocked" "false blocked false" "$(jq -r '"\(.dispatchable) \(.rules[] | select(.ok == false) | .rule) \(.rules[10].ok)"' <<<"$out")"
  t_match "explain --json blocked: names the blocker" "blocks: blocker \(open\)" "$(jq -r '.rules[] | select(.rule == "blocked") | .seen' <<<"$out")"

  # Capacity: the agent full, unreachable, or not configured.
  t_fake config '{"capacity": 2}'
  run out rc "$BS_BIN" explain ready1
  t_match "explain agent full" "^verdict: not dispatched: agent capacity: 0 free slots \(capacity 2, active 2, queued 0\)$" "$(tail -1 <<<"$out")"
  t_fake config '{"capacity": 10}'
  run out rc env BEADS_SCHED_MAX_IN_FLIGHT=1 "$BS_BIN" explain ready1
  t_match "explain MAX_IN_FLIGHT reached" "^verdict: not dispatched: agent capacity: .*MAX_IN_FLIGHT=1 reached \(1 in flight\)$" "$(tail -1 <<<"$out")"
  run out rc env BEADS_SCHED_AGENT_URL=http://127.0.0.1:9 "$BS_BIN" explain ready1
  t_eq "explain agent unreachable: exit 0" 0 "$rc"
  t_match "explain agent unreachable" "^verdict: not dispatched: agent capacity: agent unreachable: GET /health: " "$(tail -1 <<<"$out")"
  run out rc env -u BEADS_SCHED_AGENT_URL "$BS_BIN" explain ready1
  t_match "explain without AGENT_URL" "^verdict: would be dispatched at the next cycle \(unless agent capacity says otherwise: not checked: BEADS_SCHED_AGENT_URL not set\)$" "$(tail -1 <<<"$out")"

  # Paused, by the store flag or the configuration.
  "$BS_BIN" pause >/dev/null
  run out rc "$BS_BIN" explain ready1
  t_match "explain paused (store flag)" "^verdict: not dispatched: paused: store flag set" "$(tail -1 <<<"$out")"
  "$BS_BIN" resume >/dev/null
  run out rc env BEADS_SCHED_PAUSED=true "$BS_BIN" explain ready1
  t_match "explain paused (config)" "^verdict: not dispatched: paused: BEADS_SCHED_PAUSED=true$" "$(tail -1 <<<"$out")"

  t_eq "explain wrote nothing to Dolt" "$(sed 1d <<<"$before")" "$(t_sql "CHECKSUM TABLE issues, events")"

  # Errors.
  run out rc "$BS_BIN" explain nosuch
  t_eq "explain unknown bead: exit 1" 1 "$rc"
  t_match "explain unknown bead: message" "^beads-sched: no bead 'nosuch' in Dolt" "$(cat "$T_TMP/err")"
  run out rc "$BS_BIN" explain nosuch --json
  t_eq "explain --json unknown bead: exit 1, no output" "1:" "$rc:$out"
  run out rc env BEADS_SCHED_DOLT_URL="mysql://beads:beads-test-pw@127.0.0.1:9/$T_DB" "$BS_BIN" explain ready1
  t_eq "explain Dolt unreachable: exit 1" 1 "$rc"
  t_match "explain Dolt unreachable: message" "cannot reach Dolt at 127.0.0.1:9/$T_DB" "$(cat "$T_TMP/err")"
  [[ $(cat "$T_TMP/err") == *beads-test-pw* ]] && t_fail "explain printed the password" || t_ok "explain error hides the password"
  run out rc "$BS_BIN" explain
  t_eq "explain without a bead: exit 2" 2 "$rc"
  run out rc env -u BEADS_SCHED_DOLT_URL "$BS_BIN" explain ready1
  t_eq "explain without DOLT_URL: exit 2" 2 "$rc"
  unset BEADS_SCHED_RETRY_BACKOFF
  t_agent_stop
}

explain_older() { # variant...
  t_new_db older "$@"; t_agent --capacity 10
  local v="older${*:+ $*}"
  t_env "$T_TMP/exo.$T_DB.db"
  local out rc
  t_bead blocker "assignee='alice'"
  t_bead closedone "status='closed'"
  t_bead blk
  t_bead freed
  t_sql "INSERT INTO dependencies (issue_id, depends_on_id, type, created_by) VALUES ('blk', 'blocker', 'blocks', 't'), ('blk', 'closedone', 'blocks', 't'), ('freed', 'closedone', 'blocks', 't')"
  run out rc "$BS_BIN" explain blk
  t_match "[$v] explain: open blocker from dependencies, closed one not named" "^verdict: not dispatched: blocked: blocks: blocker \(open\)$" "$(tail -1 <<<"$out")"
  run out rc "$BS_BIN" explain freed
  t_match "[$v] explain: closed blocker does not block" "blocked +pass +no active blocker" "$out"
  t_eq "[$v] explain freed: verdict" "verdict: would be dispatched at the next cycle" "$(tail -1 <<<"$out")"
  run out rc "$BS_BIN" explain blk --json
  t_eq "[$v] explain --json: schema (no started_at)" false "$(jq -r '.schema.started_at' <<<"$out")"
  # The dispatcher agrees: freed is dispatched, blk is not.
  t_once
  t_eq "[$v] dispatcher agrees with explain" "freed" "$(t_sql "SELECT id FROM issues WHERE status='in_progress'" | xargs)"
  t_agent_stop
}

status_and_history
explain_current
explain_older
explain_older dolt
t_done
