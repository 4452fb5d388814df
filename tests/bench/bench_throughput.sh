#!/usr/bin/env bash
# Throughput at THR beads, run after run: what bench_batch.sh's phase C
# measures once, RUNS times on the Dolt emulation and RUNS times on plain
# MariaDB, alternating, each run on a fresh database of one private MariaDB.
# `beads-sched run` at its default settings; THR beads assigned in one
# UPDATE while it runs; the fake agent has room for all.
#
# Per run: dispatches/s (first `claiming` row in the journal -> last POST
# /execute arriving at the fake agent, wall-clock ms, as bench_batch.sh);
# CPU of the daemon, of mariadbd and of the fake agent from the assigning
# UPDATE to the last journaled dispatch; the medians of the steps of the
# cycles of 128 (the daemon's debug lines `claim steps` and `record
# steps`, ms).
#
# The last run of each kind also has the server's slow log on
# (long_query_time=0): the server's own time for every statement the
# daemon sent, summed by the statement's first words. The daemon sends
# them one at a time on its Dolt connection, and the dispatched notes on a
# second one beside the next claims: the claims' share of the sum bounds
# the throughput whatever the daemon does around them. (The log costs the
# server some time itself: that run's rate is not in the ranges.)
#
# Usage: tests/bench/bench_throughput.sh [THR (1000) [RUNS (3)]]
# BENCH_MYSQL_PORT (33981); BENCH_BIN: the beads-sched binary to measure
# (build/beads-sched), e.g. one built from an older commit, to compare two
# side by side on the same machine. Needs build/beads-sched and build/fake-agent
# (cmake --build build); curl, jq, mariadb, sqlite3 (bash ops/dev/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
THR=${1:-1000}
RUNS=${2:-3}
PORT=${BENCH_MYSQL_PORT:-33981}
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
bench_positive bench_throughput.sh "$THR" "$RUNS"
BIN=${BENCH_BIN:-build/beads-sched}
W=$(mktemp -d /var/tmp/bs-bench-thr.XXXXXX) # real disk: the journal's fsyncs count
trap bench_cleanup EXIT

echo "machine: $(bench_machine)"
bench_start_db
# Sessions copy long_query_time and slow_query_log when they connect: both
# are set before the daemon connects, the log only for the runs that keep it.
bench_sql -e "SET GLOBAL long_query_time = 0"

# median_of KEY LOG: median of KEY=<n> over the cycles of 128 in LOG.
median_of() {
  grep -E 'msg="(claim|record) steps"' "$2" | grep -vE 'beads=([0-9]|[0-9][0-9]|1[01][0-9]|12[0-7]) ' |
    grep -oE "(^| )$1=[0-9]+" | cut -d= -f2 | sort -n |
    awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'
}

# server_time SLOWLOG: the beads account's statements, "ms count words".
server_time() {
  awk '
    /^# User@Host: / { user = ($3 ~ /^beads\[/); qt = ""; want = 0; next }
    /^# Query_time: / { qt = $3; want = user; next }
    /^#/ || /^SET timestamp=/ || /^use / { next }
    want && qt != "" {
      key = $0; gsub(/[ \t]+/, " ", key); key = substr(key, 1, 44)
      ms[key] += qt * 1000; n[key]++; want = 0
    }
    END { for (k in ms) printf "%.1f %d %s\n", ms[k], n[k], k }' "$1" | sort -rn
}

# one KIND(dolt|plain) N SLOW(0|1): one run; prints its line, appends the
# rate to $W/rates.KIND (not with SLOW), keeps the slow log as $W/slow.KIND.
one() {
  local kind=$1 n=$2 slow=$3 db="t$1$2" emul=
  [ "$kind" = dolt ] && emul=dolt
  bench_start_agent 100000 "$W/$db.posts"
  bash tests/harness/newdb.sh "$W/db" "$db" current $emul >/dev/null
  bench_fill "$db" "$THR" NULL
  sched_env "$db" "$W/$db.db"
  unset BEADS_SCHED_PROBE_INTERVAL BEADS_SCHED_DISPATCH_INTERVAL
  export BEADS_SCHED_LOG_LEVEL=debug
  "$BIN" migrate >/dev/null 2>&1
  [ "$slow" = 1 ] && bench_sql -e "SET GLOBAL slow_query_log_file = '$W/slow.start'; SET GLOBAL slow_query_log = ON"
  "$BIN" run 2>"$W/$db.log" &
  local pid=$!
  BENCH_PIDS="$BENCH_PIDS $pid"
  sleep 3 # started, schema detected, first probe and cycle done
  # From here on (start-up left in slow.start).
  [ "$slow" = 1 ] && bench_sql -e "SET GLOBAL slow_query_log_file = '$W/slow.$kind'"
  local s0 m0 a0 s1 m1 a1
  s0=$(cpu_ns "$pid"); m0=$(cpu_ticks "$MARIADBD_PID"); a0=$(cpu_ticks "$AGENT_PID")
  bench_sql "$db" -e "UPDATE issues SET assignee = 'agent', updated_at = UTC_TIMESTAMP() WHERE id LIKE 'bench-%'"
  for _ in $(seq 4800); do
    [ "$(sqlite3 "$W/$db.db" "SELECT count(*) FROM journal WHERE state = 'dispatched'")" -ge "$THR" ] && break
    sleep 0.05
  done
  s1=$(cpu_ns "$pid"); m1=$(cpu_ticks "$MARIADBD_PID"); a1=$(cpu_ticks "$AGENT_PID")
  [ "$slow" = 1 ] && bench_sql -e "SET GLOBAL slow_query_log = OFF"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  bench_stop_agent
  local posts span rate
  posts=$(wc -l <"$W/$db.posts")
  span=$(bench_claim_to_post "$W/$db.db" "$W/$db.posts")
  rate=$(bench_rate "$posts" "$span")
  [ "$slow" = 1 ] || echo "$rate" >>"$W/rates.$kind"
  printf '%-5s run %d%s: %s dispatches/s (%d POSTs, %d ms); CPU ms daemon %d, mariadbd %d, fake agent %d;' \
    "$kind" "$n" "$([ "$slow" = 1 ] && echo ' (slow log on)')" "$rate" "$posts" "$span" \
    "$(((s1 - s0) / 1000000))" "$(ticks_ms $((m1 - m0)))" "$(ticks_ms $((a1 - a0)))"
  local k
  for k in choose_ms claiming_ms dolt_ms claimed_ms bodies_ms posting_ms journal_ms; do
    printf ' %s %s' "${k%_ms}" "$(median_of "$k" "$W/$db.log")"
  done
  echo
}

for i in $(seq 1 "$RUNS"); do
  one dolt "$i" 0
  one plain "$i" 0
done
one dolt $((RUNS + 1)) 1
one plain $((RUNS + 1)) 1

for kind in dolt plain; do
  echo
  echo "server time of the daemon's statements, $kind, $THR beads (slow log; ms, count, statement):"
  server_time "$W/slow.$kind" | head -12 | sed 's/^/  /'
  echo "  total: $(server_time "$W/slow.$kind" | awk '{ s += $1 } END { printf "%.0f", s }') ms"
done

range() { sort -n "$W/rates.$1" | awk '{ v[NR] = $1 } END { printf "median %s/s [%s-%s] over %d runs", v[int((NR + 1) / 2)], v[1], v[NR], NR }'; }
total() { server_time "$W/slow.$1" | awk -v n="$THR" '{ s += $1 } END { printf "%.0f ms for %d dispatches", s, n }'; }
result_header
result_row "throughput: $THR beads, run, Dolt emulation" "$(range dolt) (target >= 1000/s)"
result_row "throughput: $THR beads, run, plain MariaDB" "$(range plain)"
result_row "throughput: server statement time, emulation" "$(total dolt), both connections"
result_row "throughput: server statement time, plain" "$(total plain), both connections"
