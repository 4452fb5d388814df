# Helpers shared by the benchmark scripts (sourced, not run). Each script
# sets W (its temp dir, on the real disk) and PORT before calling these, and
# calls bench_cleanup from its EXIT trap.

CLK_TCK=$(getconf CLK_TCK)

# bench_positive SCRIPT VALUE...: exits 2, naming SCRIPT, unless every
# VALUE is a positive number (the scripts' numeric arguments).
bench_positive() {
  local script=$1 v
  shift
  for v in "$@"; do
    case $v in '' | *[!0-9]* | 0) echo "$script: arguments are positive numbers (got '$v')" >&2; exit 2 ;; esac
  done
}

# Pids this script started and must stop.
BENCH_PIDS=""

bench_cleanup() {
  local p
  for p in $BENCH_PIDS; do kill "$p" 2>/dev/null || true; done
  for p in $BENCH_PIDS; do wait "$p" 2>/dev/null || true; done
  bash "$ROOT/tests/harness/mariadb.sh" stop "$W/db" >/dev/null 2>&1 || true
  rm -rf "$W"
}

# Private MariaDB on 127.0.0.1:$PORT in $W/db.
bench_start_db() {
  bash "$ROOT/tests/harness/mariadb.sh" start "$W/db" "$PORT" >/dev/null
  MARIADBD_PID=$(cat "$W/db/mysqld.pid")
}

bench_sql() { mariadb --no-defaults -uroot --socket="$W/db/mysqld.sock" -N --batch "$@"; }

# bench_fill DB N ASSIGNEE: N open beads with acceptance criteria, priorities
# 0-3, distinct updated_at (as bench_dispatch.sh). ASSIGNEE NULL = unassigned.
bench_fill() {
  local db=$1 n=$2 who=${3:-"'agent'"}
  bench_sql "$db" -e "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes,
    status, priority, issue_type, assignee, created_at, updated_at)
    SELECT CONCAT('bench-', seq), CONCAT('bench bead ', seq), REPEAT('context ', 50), '', 'it works', '',
           'open', seq % 4, 'task', $who, UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL seq SECOND
    FROM seq_1_to_$n"
}

# bench_start_agent CAPACITY [POST_LOG]: the fake agent on an ephemeral
# port; sets AGENT_URL and AGENT_PID. POST_LOG: a file that gets one JSON
# line per accepted POST /execute (bead_id, job_id, t_ms: arrival, epoch ms).
bench_start_agent() {
  rm -f "$W/agent.port"
  "$ROOT/build/fake-agent" --port 0 --port-file "$W/agent.port" --token bench \
    --capacity "${1:-100000}" --queue-limit 1000000 --idle-timeout-s 0 ${2:+--log "$2"} >"$W/agent.log" 2>&1 &
  AGENT_PID=$!
  BENCH_PIDS="$BENCH_PIDS $AGENT_PID"
  for _ in $(seq 100); do [ -s "$W/agent.port" ] && break; sleep 0.05; done
  AGENT_URL="http://127.0.0.1:$(cat "$W/agent.port")"
}

bench_stop_agent() {
  kill "$AGENT_PID" 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
}

# CPU time of a live process (all threads), in clock ticks: utime + stime.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# Time on CPU of a live process's current threads, in ns (scheduler
# accounting, finer than clock ticks; threads that already exited are not
# in it).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d", s }'; }
ticks_ms() { echo $(( $1 * 1000 / CLK_TCK )); }

now_ms() { date +%s%3N; }

# bench_claim_to_post STORE POST_LOG: ms from the first `claiming` row in the
# journal to the last POST /execute arriving at the fake agent (its log).
bench_claim_to_post() {
  echo $(($(jq -s 'map(.t_ms) | max' "$2") - $(sqlite3 "$1" "SELECT min(created_at) FROM journal")))
}
# bench_rate N MS: N per second over MS milliseconds (0 unless MS > 0).
bench_rate() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }'; }

# Environment for beads-sched against database $1 with store $2.
sched_env() {
  export BEADS_SCHED_DOLT_URL="mysql://beads:beads-test-pw@127.0.0.1:$PORT/$1"
  export BEADS_SCHED_STORE=$2 BEADS_SCHED_AGENT_URL=$AGENT_URL BEADS_SCHED_AGENT_TOKEN=bench
  export BEADS_SCHED_LISTEN= BEADS_SCHED_LOG_LEVEL=warn
}

# Environment for tests/bench/baseline_cronjob.sh against database $1.
baseline_env() {
  export BASELINE_DB_HOST=127.0.0.1 BASELINE_DB_PORT=$PORT BASELINE_DB_USER=beads
  export BASELINE_DB_PASSWORD=beads-test-pw BASELINE_DB_NAME=$1
  export BASELINE_AGENT_URL=$AGENT_URL BASELINE_AGENT_TOKEN=bench
}

# Prints the machine line the BENCHMARKS.md entries quote.
bench_machine() {
  printf '%s, %s vCPU, %s GiB RAM, %s; load average at start: %s\n' \
    "$(uname -m)" "$(nproc)" "$(awk '/MemTotal/ { printf "%d", $2 / 1048576 }' /proc/meminfo)" \
    "$(. /etc/os-release && echo "$PRETTY_NAME")" "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# The closing table every script prints, in bench_dispatch.sh's format;
# run_all.sh collects the rows after the "benchmark result" header.
result_header() { printf '\n%-46s %s\n' "benchmark" "result"; }
result_row() { printf '%-46s %s\n' "$1" "$2"; }
