#!/usr/bin/env bash
# Reaper pass over N in-flight attempts (default 10 000): N beads dispatched
# to a fake agent whose jobs keep running, then the daemon's reap passes
# timed from its own debug log (load from the store and Dolt, N GET
# /jobs/{id} at 32 concurrent, decide; every job alive, so nothing written).
# Usage: tests/bench/bench_reap.sh [attempts]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${1:-10000}
PORT=${BENCH_MYSQL_PORT:-33969}
W=$(mktemp -d "${TMPDIR:-/tmp}/bs-bench-reap.XXXXXX")
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  bash "$ROOT/tests/harness/mariadb.sh" stop "$W/db" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
bash tests/harness/mariadb.sh start "$W/db" "$PORT" >/dev/null
bash tests/harness/newdb.sh "$W/db" reap current >/dev/null
mariadb --no-defaults -uroot --socket="$W/db/mysqld.sock" reap -e "
  INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status, priority,
                      issue_type, assignee, created_at, updated_at)
  SELECT CONCAT('r', seq), 'reap bench', 'd', '', 'ac', '', 'open', 2, 'task', 'agent',
         UTC_TIMESTAMP(), UTC_TIMESTAMP() FROM seq_1_to_$N"
build/fake-agent --port 0 --port-file "$W/agent.port" --token bench --capacity $((N * 2)) \
  --queue-limit $((N * 2)) >"$W/agent.log" 2>&1 &
PIDS="$PIDS $!"
for _ in $(seq 100); do [ -s "$W/agent.port" ] && break; sleep 0.05; done
export BEADS_SCHED_AGENT_URL="http://127.0.0.1:$(cat "$W/agent.port")" BEADS_SCHED_AGENT_TOKEN=bench
export BEADS_SCHED_DOLT_URL="mysql://beads:beads-test-pw@127.0.0.1:$PORT/reap" BEADS_SCHED_STORE="$W/reap.db"
export BEADS_SCHED_LISTEN= BEADS_SCHED_LOG_LEVEL=warn
build/beads-sched once
inflight=$(sqlite3 "$W/reap.db" "SELECT count(*) FROM journal WHERE state = 'dispatched'")
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime, clock ticks
AGENT_PID=${PIDS##* }
agent_cpu0=$(cpu "$AGENT_PID")
BEADS_SCHED_LOG_LEVEL=debug BEADS_SCHED_REAP_INTERVAL=2s build/beads-sched run 2>"$W/daemon.log" &
PIDS="$PIDS $!"
DAEMON_PID=$!
for _ in $(seq 300); do [ "$(grep -c "msg=\"reap pass done\"" "$W/daemon.log")" -ge 4 ] && break; sleep 0.2; done
daemon_cpu=$(cpu "$DAEMON_PID"); agent_cpu=$(( $(cpu "$AGENT_PID") - agent_cpu0 ))
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true
passes=$(grep 'msg="reap pass done"' "$W/daemon.log" | sed -E 's/.* attempts=([0-9]+) settled=([0-9]+) ms=([0-9]+).*/\1 \2 \3/')
printf '\n%-44s %s\n' "benchmark" "result"
printf '%-44s %s\n' "in-flight attempts (dispatched, jobs running)" "$inflight"
printf '%-44s %s s beads-sched, %s s fake agent\n' "CPU over all passes" "$(awk -v t="$daemon_cpu" 'BEGIN { print t / 100 }')" "$(awk -v t="$agent_cpu" 'BEGIN { print t / 100 }')"
i=0
while read -r n settled ms; do
  i=$((i + 1))
  label="reap pass $i$([ $i = 1 ] && echo ' (start-up recovery)' || true)"
  printf '%-44s %s ms over %s attempts (%s settled)\n' "$label" "$ms" "$n" "$settled"
done <<<"$passes"
