#!/usr/bin/env bash
# Failover time: two instances (separate stores) against one database and
# one agent, at default settings except the probe interval given. Each run
# kills the active instance with SIGKILL (node lost, OOM), assigns a new
# bead at the same moment, and measures the time from the kill to that
# bead's POST /execute by the instance that was standing by. The killed one
# is then started again as the new standby. Prints every run, then
# min/median/max.
#
# Usage: tests/bench/bench_failover.sh [runs (10)] [probe interval (1s)]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RUNS=${1:-10}
PROBE=${2:-1s}
W=$(mktemp -d /var/tmp/bs-failover.XXXXXX)
PORT=${BENCH_MYSQL_PORT:-34511}
source tests/bench/lib.sh
trap bench_cleanup EXIT
[ -x build/beads-sched ] || { echo "build first: bash ops/build.sh build"; exit 1; }

bench_start_db
bash tests/harness/newdb.sh "$W/db" fo current >/dev/null
bench_start_agent 1000
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
posts() { curl -sf "$AGENT_URL/_fake/stats" | jq .posts; }
active_of() { curl -s -m 1 "http://127.0.0.1:$1/metrics" | awk '$1 == "beads_sched_active" {print $2}'; }
bead() {
  bench_sql fo -e "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status,
    priority, issue_type, assignee, created_at, updated_at)
    VALUES ('$1', 't', 'd', '', 'ac', '', 'open', 2, 'task', 'agent', UTC_TIMESTAMP(), UTC_TIMESTAMP())"
}

export BEADS_SCHED_DOLT_URL="mysql://beads:beads-test-pw@127.0.0.1:$PORT/fo" BEADS_SCHED_AGENT_URL=$AGENT_URL
export BEADS_SCHED_AGENT_TOKEN=bench BEADS_SCHED_PROBE_INTERVAL=$PROBE BEADS_SCHED_LOG_LEVEL=warn
declare -A PID APORT
start() { # NAME
  APORT[$1]=$(free_port)
  BEADS_SCHED_STORE="$W/$1.db" BEADS_SCHED_LISTEN="127.0.0.1:${APORT[$1]}" build/beads-sched run 2>>"$W/$1.log" &
  PID[$1]=$!
  BENCH_PIDS="$BENCH_PIDS ${PID[$1]}"
}
start a
for _ in $(seq 100); do [ "$(active_of "${APORT[a]}")" = 1 ] && break; sleep 0.1; done
start b
sleep 2
results=()
for r in $(seq "$RUNS"); do
  if [ "$(active_of "${APORT[a]}")" = 1 ]; then act=a sby=b; else act=b sby=a; fi
  [ "$(active_of "${APORT[$sby]}")" = 0 ] || { echo "run $r: no standby"; exit 1; }
  bead "warm$r" # the active one has work in flight when it dies
  for _ in $(seq 100); do [ "$(posts)" -ge "$((2 * r - 1))" ] && break; sleep 0.05; done
  before=$(posts)
  t0=$(date +%s%N)
  kill -KILL "${PID[$act]}"
  bead "fo$r"
  until [ "$(posts)" -gt "$before" ]; do sleep 0.01; done
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  wait "${PID[$act]}" 2>/dev/null || true
  results+=("$ms")
  printf 'run %2d: %s killed -> first dispatch by %s in %5d ms\n' "$r" "$act" "$sby" "$ms"
  start "$act"
  sleep 1.5
done
dups=$(curl -sf "$AGENT_URL/_fake/stats" | jq -r '.by_bead | to_entries[] | select(.value != 1) | .key' | xargs)
sorted=$(printf '%s\n' "${results[@]}" | sort -n)
n=${#results[@]}
min=$(echo "$sorted" | head -1); max=$(echo "$sorted" | tail -1)
med=$(echo "$sorted" | sed -n "$(( (n + 1) / 2 ))p")
echo "failover over $n runs (probe interval $PROBE): min $min ms, median $med ms, max $max ms"
echo "beads POSTed more than once: ${dups:-none}"
