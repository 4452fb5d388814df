#!/usr/bin/env bash
# Resource use of `beads-sched run`, for sizing the pod (ops/k8s/README.md):
# peak resident memory (VmHWM) and CPU seconds (utime + stime) of the daemon
#   1. idle for IDLE seconds (no beads), production intervals;
#   2. while dispatching N beads assigned at once (short descriptions);
#   3. while dispatching N more beads whose description is BIG bytes
#      (the prompt caps each field at 64 KiB; default 60000).
# The database is MariaDB with the Dolt emulation (dolt_hashof_db probe,
# DOLT_COMMIT after every write), the agent is the fake agent with room for
# every job (worst case: every bead of a burst fits in one cycle), or with
# CAPACITY=10 JOB_MS=2000 the agent's real shape (10 slots, so at most 10
# beads per cycle). Logs are JSON at level info, as in the pod.
# Usage: [CAPACITY=n] [JOB_MS=ms] tests/bench/bench_resources.sh [N] [IDLE] [BIG]
# Needs build/beads-sched and build/fake-agent, or BS_BUILD_DIR pointing at
# another build directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${1:-1000}
IDLE=${2:-60}
BIG=${3:-60000}
BUILD=${BS_BUILD_DIR:-build}
PORT=${BENCH_MYSQL_PORT:-33963}
CAPACITY=${CAPACITY:-100000}
JOB_MS=${JOB_MS:-0}
W=$(mktemp -d "${TMPDIR:-/tmp}/bs-res.XXXXXX")
PIDS=
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null || true; done
  bash "$ROOT/tests/harness/mariadb.sh" stop "$W/db" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT

bash tests/harness/mariadb.sh start "$W/db" "$PORT" >/dev/null
bash tests/harness/newdb.sh "$W/db" res current dolt >/dev/null
sql() { mariadb --no-defaults -uroot --socket="$W/db/mysqld.sock" -N --batch res "$@"; }

"$BUILD/fake-agent" --port 0 --port-file "$W/agent.port" --token bench --capacity "$CAPACITY" \
  --queue-limit 100000 --job-ms "$JOB_MS" >"$W/agent.log" 2>&1 &
PIDS="$PIDS $!"
for _ in $(seq 100); do [ -s "$W/agent.port" ] && break; sleep 0.05; done

export BEADS_SCHED_DOLT_URL="mysql://beads:beads-test-pw@127.0.0.1:$PORT/res"
export BEADS_SCHED_AGENT_URL="http://127.0.0.1:$(cat "$W/agent.port")"
export BEADS_SCHED_AGENT_TOKEN=bench BEADS_SCHED_STORE="$W/store.db" BEADS_SCHED_LISTEN=
export BEADS_SCHED_LOG_FORMAT=json BEADS_SCHED_LOG_LEVEL=info
"$BUILD/beads-sched" run 2>"$W/daemon.log" &
DAEMON=$!
PIDS="$PIDS $DAEMON"

tck=$(getconf CLK_TCK)
# cpu: utime + stime in seconds (fields 14 and 15 of /proc/PID/stat).
cpu() { sed 's/^.*) //' "/proc/$DAEMON/stat" | awk -v t="$tck" '{ printf "%.2f", ($12 + $13) / t }'; }
kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$DAEMON/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
dispatched() { sqlite3 "$W/store.db" "SELECT count(*) FROM journal WHERE state = 'dispatched'" 2>/dev/null || echo 0; }
report() { # phase, cpu before, seconds
  printf '%-44s VmRSS %6s MiB  VmHWM %6s MiB  CPU %6.2f s over %s s\n' "$1" \
    "$(mib "$(kib VmRSS)")" "$(mib "$(kib VmHWM)")" "$(awk -v a="$(cpu)" -v b="$2" 'BEGIN { print a - b }')" "$3"
}
# burst NAME FIRST COUNT DESCRIPTION_BYTES: assigns COUNT beads at once and
# waits until the store has recorded every one dispatched.
burst() {
  local name=$1 first=$2 count=$3 bytes=$4 target c0 t0
  target=$(( $(dispatched) + count ))
  c0=$(cpu); t0=$SECONDS
  sql -e "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status,
    priority, issue_type, assignee, created_at, updated_at)
    SELECT CONCAT('$name-', seq), CONCAT('bead ', seq), REPEAT('x', $bytes), '', 'it works', '',
           'open', seq % 4, 'task', 'agent', UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL seq SECOND
    FROM seq_${first}_to_$((first + count - 1))"
  until [ "$(dispatched)" -ge "$target" ]; do
    [ $((SECONDS - t0)) -lt 900 ] || { echo "burst $name: only $(dispatched)/$target dispatched" >&2; exit 1; }
    sleep 0.2
  done
  report "$count beads, ${bytes}-byte descriptions" "$c0" "$((SECONDS - t0))"
}

sleep 2
c0=$(cpu)
printf '%-44s VmRSS %6s MiB  VmHWM %6s MiB\n' "after start-up" "$(mib "$(kib VmRSS)")" "$(mib "$(kib VmHWM)")"
sleep "$IDLE"
report "idle" "$c0" "$IDLE"
burst small 1 "$N" 400
burst big 1 "$N" "$BIG"
sleep 5
c0=$(cpu)
sleep "$IDLE"
report "idle again, $((2 * N)) beads in flight" "$c0" "$IDLE"
printf '%-44s %s s\n' "total CPU since start" "$(cpu)"
kill -TERM "$DAEMON"
wait "$DAEMON" && echo "daemon stopped cleanly"
