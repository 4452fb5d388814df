#!/usr/bin/env bash
# Dispatcher benchmarks (figures, not pass/fail):
#   1. throughput: N eligible beads (default 1000), a fake agent with room for
#      all of them, one `beads-sched once`; dispatches/s measured from the
#      store's own timestamps (first claiming -> last dispatched), journal
#      fsynced (synchronous=FULL).
#   2. latency: the daemon at default intervals (probe 1s, dispatch 2m);
#      beads assigned to the agent one at a time at random moments; time from
#      the assigning UPDATE to the fake agent receiving POST /execute.
# Usage: tests/bench/bench_dispatch.sh [beads] [latency-samples]
# Needs build/beads-sched and build/fake-agent (cmake --build build).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${1:-1000}
SAMPLES=${2:-40}
PORT=${BENCH_MYSQL_PORT:-33961}
W=$(mktemp -d "${TMPDIR:-/tmp}/bs-bench.XXXXXX")
cleanup() {
  for p in ${PIDS:-}; do kill "$p" 2>/dev/null || true; done
  bash "$ROOT/tests/harness/mariadb.sh" stop "$W/db" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
bash tests/harness/mariadb.sh start "$W/db" "$PORT" >/dev/null
sql() { mariadb --no-defaults -uroot --socket="$W/db/mysqld.sock" -N --batch "$@"; }
now_ms() { date +%s%3N; }

start_agent() {
  build/fake-agent --port 0 --port-file "$W/agent.port" --token bench --capacity 100000 \
    --queue-limit 100000 --log "$W/posts.jsonl" >"$W/agent.log" 2>&1 &
  PIDS="${PIDS:-} $!"
  for _ in $(seq 100); do [ -s "$W/agent.port" ] && break; sleep 0.05; done
  export BEADS_SCHED_AGENT_URL="http://127.0.0.1:$(cat "$W/agent.port")"
}
export BEADS_SCHED_AGENT_TOKEN=bench BEADS_SCHED_LISTEN= BEADS_SCHED_LOG_LEVEL=warn

# ---- 1. throughput ----
bash tests/harness/newdb.sh "$W/db" thr current >/dev/null
sql thr -e "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status,
  priority, issue_type, assignee, created_at, updated_at)
  SELECT CONCAT('bench-', seq), CONCAT('bench bead ', seq), REPEAT('context ', 50), '', 'it works', '',
         'open', seq % 4, 'task', 'agent', UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL seq SECOND
  FROM seq_1_to_$N"
start_agent
export BEADS_SCHED_DOLT_URL="mysql://beads:beads-test-pw@127.0.0.1:$PORT/thr" BEADS_SCHED_STORE="$W/thr.db"
t0=$(now_ms)
build/beads-sched once
t1=$(now_ms)
dispatched=$(sqlite3 "$W/thr.db" "SELECT count(*) FROM journal WHERE state='dispatched'")
span=$(sqlite3 "$W/thr.db" "SELECT max(dispatched_at) - min(created_at) FROM journal")
posts=$(wc -l <"$W/posts.jsonl")
rate=$(awk -v n="$dispatched" -v ms="$span" 'BEGIN { printf "%.0f", n * 1000 / (ms > 0 ? ms : 1) }')
rate_wall=$(awk -v n="$dispatched" -v ms="$((t1 - t0))" 'BEGIN { printf "%.0f", n * 1000 / ms }')
kill $PIDS; wait 2>/dev/null || true; PIDS=

# ---- 2. latency at default intervals ----
bash tests/harness/newdb.sh "$W/db" lat current >/dev/null
sql lat -e "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status,
  priority, issue_type, assignee, created_at, updated_at)
  SELECT CONCAT('lat-', seq), 'latency bead', 'x', '', 'it works', '', 'open', 2, 'task', NULL,
         UTC_TIMESTAMP(), UTC_TIMESTAMP() FROM seq_1_to_$SAMPLES"
rm -f "$W/agent.port" "$W/posts.jsonl"
start_agent
export BEADS_SCHED_DOLT_URL="mysql://beads:beads-test-pw@127.0.0.1:$PORT/lat" BEADS_SCHED_STORE="$W/lat.db"
unset BEADS_SCHED_PROBE_INTERVAL BEADS_SCHED_DISPATCH_INTERVAL
build/beads-sched run 2>"$W/daemon.log" &
PIDS="$PIDS $!"
sleep 2
: >"$W/assigned"
for i in $(seq 1 "$SAMPLES"); do
  sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", 0.3 + (r % 1000) / 1000 }')"
  echo "lat-$i $(now_ms)" >>"$W/assigned"
  sql lat -e "UPDATE issues SET assignee='agent', updated_at=UTC_TIMESTAMP() WHERE id='lat-$i'"
done
for _ in $(seq 100); do [ "$(wc -l <"$W/posts.jsonl")" -ge "$SAMPLES" ] && break; sleep 0.1; done
lat=$(jq -r '"\(.bead_id) \(.t_ms)"' "$W/posts.jsonl" | sort >"$W/posted"; sort "$W/assigned" >"$W/assigned.s";
      join "$W/assigned.s" "$W/posted" | awk '{ print $3 - $2 }' | sort -n)
count=$(echo "$lat" | grep -c . || true)
pct() { echo "$lat" | awk -v p="$1" -v n="$count" 'NR == int((n - 1) * p / 100) + 1 { print; exit }'; }

printf '\n%-46s %s\n' "benchmark" "result"
printf '%-46s %s\n' "throughput: beads dispatched / POSTs received" "$dispatched / $posts of $N"
printf '%-46s %s dispatches/s (%s ms, store timestamps)\n' "throughput: first claim to last dispatched" "$rate" "$span"
printf '%-46s %s dispatches/s (%s ms incl. start-up)\n' "throughput: whole 'once' process" "$rate_wall" "$((t1 - t0))"
printf '%-46s p50 %s ms, p99 %s ms, max %s ms (%s samples)\n' "latency: assign -> POST /execute (defaults)" \
  "$(pct 50)" "$(pct 99)" "$(echo "$lat" | tail -1)" "$count"
