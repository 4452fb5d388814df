#!/usr/bin/env bash
# Cost per dispatch: beads-sched against the old CronJob pipeline
# (tests/bench/baseline_cronjob.sh), the same N beads each (default 200),
# each on a fresh database of the same private MariaDB, in one run.
#
#   baseline     `baseline_cronjob.sh dispatcher 0 0`: dispatcher ticks back
#                to back (one bead per tick, as the original) until none is
#                left. Client CPU: user+sys of the whole process tree
#                (/usr/bin/time: getrusage of waited-for descendants);
#                processes: one line per exec logged by the script.
#   sched run    `beads-sched run` (default intervals) started with the beads
#                unassigned; one UPDATE assigns them all; measured from that
#                UPDATE until the journal holds N dispatched. Client CPU:
#                utime+stime delta of the daemon (/proc/PID/stat, all threads).
#   sched once   `beads-sched once` on an existing store: one process, one
#                cycle, start-up included (/usr/bin/time).
#
# The fake agent's CPU is left out on both sides. MariaDB's own CPU (the
# mariadbd /proc stat delta over each phase) is a separate column: the
# server does roughly the same work for either client.
# CPU figures come from clock ticks (1/CLK_TCK s, usually 10 ms).
#
# Usage: tests/bench/bench_cost.sh [beads (200)]
# Needs build/beads-sched and build/fake-agent; curl, jq, mariadb, sqlite3.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${1:-200}
PORT=${BENCH_MYSQL_PORT:-33971}
W=$(mktemp -d /var/tmp/bs-bench-cost.XXXXXX) # real disk: the journal's fsyncs count
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
trap bench_cleanup EXIT

echo "machine: $(bench_machine)"
bench_start_db
bench_start_agent 100000

# ---- baseline: the CronJob pipeline ----
bash tests/harness/newdb.sh "$W/db" base current >/dev/null
bench_fill base "$N"
baseline_env base
export BASELINE_EXEC_LOG=$W/base.execs
: >"$BASELINE_EXEC_LOG"
m0=$(cpu_ticks "$MARIADBD_PID")
t0=$(now_ms)
/usr/bin/time -f '%U %S' -o "$W/base.time" bash tests/bench/baseline_cronjob.sh dispatcher 0 0 >"$W/base.out"
t1=$(now_ms)
m1=$(cpu_ticks "$MARIADBD_PID")
unset BASELINE_EXEC_LOG
base_done=$(bench_sql base -e "SELECT COUNT(*) FROM issues WHERE notes LIKE '%dispatched: job=%'")
base_cpu_ms=$(awk '{ printf "%d", ($1 + $2) * 1000 }' "$W/base.time")
base_procs=$(( $(wc -l <"$W/base.execs") + 1 )) # + the driver's own bash
base_wall_ms=$((t1 - t0))
base_db_ms=$(ticks_ms $((m1 - m0)))
base_mix=$(sort "$W/base.execs" | uniq -c | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')

# ---- beads-sched run: the daemon at default intervals ----
bash tests/harness/newdb.sh "$W/db" run current >/dev/null
bench_fill run "$N" NULL
sched_env run "$W/run.db"
build/beads-sched migrate >/dev/null
build/beads-sched run 2>"$W/run.log" &
SCHED_PID=$!
BENCH_PIDS="$BENCH_PIDS $SCHED_PID"
sleep 3 # started, schema detected, first probe and cycle done
s0=$(cpu_ticks "$SCHED_PID")
m0=$(cpu_ticks "$MARIADBD_PID")
t0=$(now_ms)
bench_sql run -e "UPDATE issues SET assignee = 'agent', updated_at = UTC_TIMESTAMP() WHERE id LIKE 'bench-%'"
run_done=0
for _ in $(seq 600); do
  run_done=$(sqlite3 "$W/run.db" "SELECT count(*) FROM journal WHERE state = 'dispatched'" 2>/dev/null || echo 0)
  [ "$run_done" -ge "$N" ] && break
  sleep 0.05
done
t1=$(now_ms)
s1=$(cpu_ticks "$SCHED_PID")
m1=$(cpu_ticks "$MARIADBD_PID")
run_children=$(pgrep -c -P "$SCHED_PID" || true)
run_threads=$(ls "/proc/$SCHED_PID/task" | wc -l)
kill "$SCHED_PID"; wait "$SCHED_PID" 2>/dev/null || true
run_cpu_ms=$(ticks_ms $((s1 - s0)))
run_wall_ms=$((t1 - t0))
run_db_ms=$(ticks_ms $((m1 - m0)))
run_last=$(sqlite3 "$W/run.db" "SELECT max(dispatched_at) - min(created_at) FROM journal")

# ---- beads-sched once: one process, one cycle ----
bash tests/harness/newdb.sh "$W/db" once current >/dev/null
bench_fill once "$N"
sched_env once "$W/once.db"
build/beads-sched migrate >/dev/null
m0=$(cpu_ticks "$MARIADBD_PID")
t0=$(now_ms)
/usr/bin/time -f '%U %S' -o "$W/once.time" build/beads-sched once 2>"$W/once.log"
t1=$(now_ms)
m1=$(cpu_ticks "$MARIADBD_PID")
once_done=$(sqlite3 "$W/once.db" "SELECT count(*) FROM journal WHERE state = 'dispatched'")
once_cpu_ms=$(awk '{ printf "%d", ($1 + $2) * 1000 }' "$W/once.time")
once_wall_ms=$((t1 - t0))
once_db_ms=$(ticks_ms $((m1 - m0)))

per() { awk -v a="$1" -v n="$2" 'BEGIN { if (n > 0) printf "%.2f", a / n; else print "n/a" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0fx", a / b; else print "n/a (below tick resolution)" }'; }
base_per=$(per "$base_cpu_ms" "$base_done")
run_per=$(per "$run_cpu_ms" "$run_done")
once_per=$(per "$once_cpu_ms" "$once_done")

echo
printf '%-24s %10s %9s %13s %12s %10s %14s %12s\n' "side ($N beads)" dispatched processes "client CPU ms" "CPU ms/disp" "wall ms" "mariadbd CPU ms" "db ms/disp"
printf '%-24s %10s %9s %13s %12s %10s %14s %12s\n' "baseline (CronJob)" "$base_done" "$base_procs" "$base_cpu_ms" "$base_per" "$base_wall_ms" "$base_db_ms" "$(per "$base_db_ms" "$base_done")"
printf '%-24s %10s %9s %13s %12s %10s %14s %12s\n' "beads-sched run" "$run_done" "0 new" "$run_cpu_ms" "$run_per" "$run_wall_ms" "$run_db_ms" "$(per "$run_db_ms" "$run_done")"
printf '%-24s %10s %9s %13s %12s %10s %14s %12s\n' "beads-sched once" "$once_done" 1 "$once_cpu_ms" "$once_per" "$once_wall_ms" "$once_db_ms" "$(per "$once_db_ms" "$once_done")"
echo
echo "baseline processes: $base_mix"
echo "beads-sched run: $run_children child processes, $run_threads threads; journal first claim -> last dispatched ${run_last} ms (the rest of the wall time is the 1 s change probe noticing the UPDATE)"
echo "target: beads-sched client CPU per dispatch at least 25x lower than the baseline"

result_header
result_row "cost: baseline CPU ms/dispatch ($N beads)" "$base_per ms ($base_procs processes, $(per "$base_procs" "$base_done")/dispatch; wall $base_wall_ms ms)"
result_row "cost: beads-sched run CPU ms/dispatch" "$run_per ms (wall $run_wall_ms ms incl. probe)"
result_row "cost: beads-sched once CPU ms/dispatch" "$once_per ms incl. start-up (wall $once_wall_ms ms)"
result_row "cost: ratio baseline / beads-sched (run, once)" "$(ratio "$base_per" "$run_per"), $(ratio "$base_per" "$once_per") (target >= 25x)"
result_row "cost: mariadbd CPU ms/dispatch (base, run, once)" "$(per "$base_db_ms" "$base_done"), $(per "$run_db_ms" "$run_done"), $(per "$once_db_ms" "$once_done")"
