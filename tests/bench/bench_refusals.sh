#!/usr/bin/env bash
# Notes and Dolt commits per bead while the agent service refuses work that
# is not the beads' fault: a wrong token (401 on everything), and a full
# service (429 on every POST /execute while /health shows free slots, the
# worst case: a MAX_QUEUE_DEPTH below the capacity, or other clients
# filling the queue between our /health and our POST).
#
# The daemon runs with the default settings except RETRY_BACKOFF=1s instead
# of 1m, so one second of the run stands for one minute: the full-service
# backoff doubles from RETRY_BACKOFF (1, 2, 4, ... s here; minutes in
# production) and a refused bead waits an hour (not scaled) before it is
# claimed again unless the service takes a job or /health shows room. The
# figures per bead per hour are the counts of a 60 s run (= an hour at the
# default RETRY_BACKOFF) divided by the number of beads.
#
# Usage: tests/bench/bench_refusals.sh [beads (20)] [seconds (60)]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BEADS=${1:-20}
SECS=${2:-60}
PORT=${BENCH_MYSQL_PORT:-33973}
W=$(mktemp -d /var/tmp/bs-bench-refusals.XXXXXX)
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
trap bench_cleanup EXIT

echo "machine: $(bench_machine)"
bench_start_db

# run CASE: a fresh database with BEADS beads, the fake agent set up for the
# case, the daemon for SECS seconds; prints the counts.
run() {
  local case=$1 db="ref_$1"
  bash tests/harness/newdb.sh "$W/db" "$db" current dolt >/dev/null
  bench_fill "$db" "$BEADS"
  rm -f "$W/agent.port"
  local token=bench
  [ "$case" = wrong_token ] && token=another-token
  "$ROOT/build/fake-agent" --port 0 --port-file "$W/agent.port" --token "$token" \
    --capacity 10 --queue-limit 1000000 --idle-timeout-s 0 >"$W/agent.log" 2>&1 &
  AGENT_PID=$!
  BENCH_PIDS="$BENCH_PIDS $AGENT_PID"
  for _ in $(seq 100); do [ -s "$W/agent.port" ] && break; sleep 0.05; done
  AGENT_URL="http://127.0.0.1:$(cat "$W/agent.port")"
  [ "$case" = full ] && curl -sf -X POST "$AGENT_URL/_fake/config" -d '{"force_status": 429}' >/dev/null
  sched_env "$db" "$W/$case.db"
  export BEADS_SCHED_RETRY_BACKOFF=1s BEADS_SCHED_LOG_LEVEL=info
  local c0; c0=$(bench_sql "$db" -e "SELECT count(*) FROM dolt_emul_commits")
  build/beads-sched run 2>"$W/$case.log" &
  local pid=$!
  BENCH_PIDS="$BENCH_PIDS $pid"
  sleep "$SECS"
  kill -TERM "$pid"; wait "$pid" || true
  local notes max commits posts lines
  notes=$(bench_sql "$db" -e "SELECT COALESCE(SUM((LENGTH(notes) - LENGTH(REPLACE(notes, '\n', ''))) + (notes <> '')), 0) FROM issues")
  max=$(bench_sql "$db" -e "SELECT COALESCE(MAX((LENGTH(notes) - LENGTH(REPLACE(notes, '\n', ''))) + (notes <> '')), 0) FROM issues")
  commits=$(( $(bench_sql "$db" -e "SELECT count(*) FROM dolt_emul_commits") - c0 ))
  posts=$(curl -sf "$AGENT_URL/_fake/stats" | jq -r '.requests.execute')
  lines=$(wc -l <"$W/$case.log")
  printf '%-12s beads %3d  run %3ds  notes %4d (max %d on one bead)  Dolt commits %4d  POSTs %4d  log lines %d\n' \
    "$case" "$BEADS" "$SECS" "$notes" "$max" "$commits" "$posts" "$lines"
  awk -v n="$notes" -v c="$commits" -v b="$BEADS" -v s="$SECS" 'BEGIN {
    printf "%-12s per bead per hour (1 s = 1 min): notes %.2f, Dolt commits %.2f\n", "", n / b * 60 / s, c / b * 60 / s }'
  kill "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
}

run wrong_token
run full
