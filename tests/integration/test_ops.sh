#!/usr/bin/env bash
# The daemon as operators see it: /metrics, /healthz and /readyz (flipping
# when Dolt stops), and SIGTERM during a busy cycle.
source "$(dirname "$0")/lib.sh"


# --- admin endpoint against a private MariaDB we can stop ---
PRIV=$T_TMP/privdb
PPORT=$((BS_TEST_MYSQL_PORT + 8))
bash "$HARNESS/mariadb.sh" start "$PRIV" "$PPORT" >/dev/null
trap 'bash "$HARNESS/mariadb.sh" stop "$PRIV" >/dev/null 2>&1 || true; t_cleanup' EXIT
bash "$HARNESS/newdb.sh" "$PRIV" ops current >/dev/null
psql() { mariadb --no-defaults -uroot --socket="$PRIV/mysqld.sock" -N --batch ops -e "$1"; }
psql "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status, priority, issue_type,
      assignee, created_at, updated_at) VALUES ('m1', 't', 'd', '', 'ac', '', 'open', 2, 'task', 'agent',
      UTC_TIMESTAMP(), UTC_TIMESTAMP())"
t_agent --capacity 10
T_DOLT_URL="mysql://beads:beads-test-pw@127.0.0.1:$PPORT/ops"
t_env "$T_TMP/ops.db"
APORT=$(free_port)
export BEADS_SCHED_LISTEN=127.0.0.1:$APORT BEADS_SCHED_PROBE_INTERVAL=300ms
ADMIN=http://127.0.0.1:$APORT
"$BS_BIN" run 2>"$T_TMP/ops.log" &
pid=$!
t_wait 10 bash -c "curl -sf $ADMIN/readyz >/dev/null" && t_ok "readyz 200 once Dolt answered" || t_fail "never ready"
t_eq "healthz 200" 200 "$(curl -s -o /dev/null -w '%{http_code}' $ADMIN/healthz)"
t_wait 10 bash -c "curl -s $ADMIN/metrics | grep -q '^beads_sched_dispatches_total{outcome=\"dispatched\"} 1\$'" \
  && t_ok "dispatch counter moved to 1" || t_fail "dispatch counter: $(curl -s $ADMIN/metrics | grep dispatches_total)"
curl -s "$ADMIN/metrics" >"$T_TMP/metrics.txt"
if promtool check metrics <"$T_TMP/metrics.txt" >"$T_TMP/promtool.out" 2>&1; then t_ok "promtool accepts /metrics"; else t_fail "promtool: $(cat "$T_TMP/promtool.out")"; fi
t_match "in-flight gauge" "beads_sched_in_flight_attempts 1" "$(cat "$T_TMP/metrics.txt")"
t_match "cycle histogram" "beads_sched_cycle_duration_seconds_count [1-9]" "$(cat "$T_TMP/metrics.txt")"
t_match "latency histogram" "beads_sched_dispatch_latency_seconds_count 1" "$(cat "$T_TMP/metrics.txt")"
grep -q "test-token" "$T_TMP/metrics.txt" && t_fail "token in /metrics" || t_ok "no secret in /metrics"
t_eq "anything else is 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' $ADMIN/config)"

bash "$HARNESS/mariadb.sh" halt "$PRIV" >/dev/null
t_wait 10 bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' $ADMIN/readyz)\" = 503 ]" \
  && t_ok "readyz 503 while Dolt is down" || t_fail "readyz never flipped to 503"
t_eq "healthz stays 200 (the loop turns)" 200 "$(curl -s -o /dev/null -w '%{http_code}' $ADMIN/healthz)"
bash "$HARNESS/mariadb.sh" start "$PRIV" "$PPORT" >/dev/null
t_wait 20 bash -c "curl -sf $ADMIN/readyz >/dev/null" && t_ok "readyz back to 200 after Dolt returns" || t_fail "not ready again"
t_match "Dolt connection errors counted" 'beads_sched_dolt_errors_total\{kind="connection"\} [1-9]' "$(curl -s $ADMIN/metrics)"
# Dolt hangs (frozen, not down): a query sits in a read; SIGTERM must
# still end the process within 10 s.
kill -STOP "$(cat "$PRIV/mysqld.pid")"
sleep 2
start=$(date +%s%N)
kill -TERM "$pid"
set +e; wait "$pid"; rc=$?; set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
kill -CONT "$(cat "$PRIV/mysqld.pid")"
t_eq "SIGTERM with Dolt hung: exit 0" 0 "$rc"
[ "$ms" -le 10000 ] && t_ok "SIGTERM with Dolt hung: stopped in $ms ms" || t_fail "SIGTERM with Dolt hung took $ms ms"
t_eq "healthz gone after stop" 000 "$(curl -s -o /dev/null -w '%{http_code}' $ADMIN/healthz || true)"
t_agent_stop

# --- SIGTERM during a busy cycle ---
t_new_db current; t_agent --capacity 1000 --queue-limit 1000
t_env "$T_TMP/busy.db"
t_fake config '{"latency_ms": 200}'
t_beads s 400
"$BS_BIN" run 2>"$T_TMP/busy.log" &
pid=$!
t_wait 10 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(*) FROM journal WHERE state='posting'\" 2>/dev/null || echo 0)\" -gt 0 ]" || true
start=$(date +%s%N)
kill -TERM "$pid"
set +e; wait "$pid"; rc=$?; set -e
ms=$(( ($(date +%s%N) - start) / 1000000 ))
t_eq "SIGTERM mid-cycle: exit 0" 0 "$rc"
[ "$ms" -le 10000 ] && t_ok "SIGTERM mid-cycle: stopped in $ms ms" || t_fail "took $ms ms"
t_fake config '{"latency_ms": 0}'
t_agent_claims
export BEADS_SCHED_STALE_AFTER=2s BEADS_SCHED_REAP_INTERVAL=1s BEADS_SCHED_RETRY_BACKOFF=1s BEADS_SCHED_DISPATCH_INTERVAL=1s
"$BS_BIN" run 2>>"$T_TMP/busy.log" &
pid=$!
t_wait 30 bash -c "[ \"\$(sqlite3 '$BEADS_SCHED_STORE' \"SELECT count(DISTINCT bead_id) FROM journal WHERE state='dispatched'\")\" = 400 ]" || true
kill -TERM "$pid"; wait "$pid" || true
t_eq "after restart: all 400 dispatched" 400 "$(t_store "SELECT count(DISTINCT bead_id) FROM journal WHERE state='dispatched'")"
t_consistent "SIGTERM mid-cycle"
t_agent_stop

# --- logs: JSON lines with the ids as fields, never a secret ---
t_new_db current; t_agent --capacity 10
t_env "$T_TMP/logs.db"
export BEADS_SCHED_LOG_FORMAT=json
t_fake config '{"force_status": 0}'
t_bead lg1; t_bead lg2 "acceptance_criteria=''"
"$BS_BIN" once 2>"$T_TMP/json.log" || true
bad=$(while IFS= read -r line; do jq -e 'has("ts") and has("level") and has("msg")' <<<"$line" >/dev/null 2>&1 || echo "$line"; done <"$T_TMP/json.log")
t_eq "every log line is a JSON object with ts, level, msg" "" "$bad"
t_eq "dispatch line carries bead, attempt, job and dispatch ids" "lg1 1 true true" \
  "$(jq -r 'select(.msg == "dispatched") | "\(.bead) \(.attempt) \(.job | length == 12) \(.dispatch | length == 36)"' "$T_TMP/json.log")"
grep -q "test-token\|beads-test-pw" "$T_TMP/json.log" && t_fail "a secret reached the log" || t_ok "no secret in the log"
unset BEADS_SCHED_LOG_FORMAT
t_agent_stop
t_done
