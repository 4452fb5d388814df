#!/usr/bin/env bash
# Idle cost: beads-sched `run` at default intervals (probe 1 s, dispatch
# cycle 2 m) for a while with nothing to dispatch, against the two old
# CronJobs (tests/bench/baseline_cronjob.sh) doing their idle ticks.
#
# The database holds 100 beads, none eligible (closed, open or in_progress
# but assigned to someone else, or without acceptance criteria), so the
# reaper has nothing in progress to look at either. The store is on the real disk (/var/tmp), so a write would
# show in write_bytes. Measured for the daemon, after a 5 s warm-up:
#   CPU           utime+stime delta of the process (/proc/PID/stat, clock
#                 ticks) and, finer, the delta of its threads' run time
#                 (/proc/PID/task/*/schedstat, ns); per day is from the latter
#   peak RSS      VmHWM (/proc/PID/status) at the end
#   disk writes   write_bytes delta (/proc/PID/io); store and WAL sizes
#   log output    bytes the daemon wrote to stderr
#   queries       delta of MariaDB's Questions, Com_select and
#                 Com_stmt_execute (private server, nobody else connected;
#                 our own SHOW STATUS subtracted)
#   processes     children of the daemon, sampled every 5 s (max), threads
#   agent calls   GET /health received by the fake agent
# Baseline: an idle dispatcher tick and an idle reaper tick, each run
# under strace (execve calls that succeeded, the tick's shell included), and
# 10 of each under /usr/bin/time (mean CPU, max RSS); client write_bytes from the parent's
# /proc/PID/io (it includes waited-for children). Per day: 720 dispatcher
# and 144 reaper ticks, i.e. 864 pods.
#
# Usage: tests/bench/bench_idle.sh [minutes (10), fractions allowed: 0.5]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
MINUTES=${1:-10}
SECS=$(awk -v m="$MINUTES" 'BEGIN { s = int(m * 60); if (s < 10) s = 10; print s }')
PORT=${BENCH_MYSQL_PORT:-33971}
W=$(mktemp -d /var/tmp/bs-bench-idle.XXXXXX)
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
trap bench_cleanup EXIT

echo "machine: $(bench_machine)"
bench_start_db
bench_start_agent 10
bash tests/harness/newdb.sh "$W/db" idle current >/dev/null
bench_sql idle -e "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes,
  status, priority, issue_type, assignee, created_at, updated_at)
  SELECT CONCAT('idle-', seq), 'not eligible', 'x', '', IF(seq % 4 = 3, '', 'it works'), '',
         ELT(seq % 4 + 1, 'closed', 'open', 'in_progress', 'open'), 2, 'task',
         IF(seq % 4 IN (1, 2), 'someone', 'agent'), UTC_TIMESTAMP(), UTC_TIMESTAMP()
  FROM seq_1_to_100"
status() { bench_sql -e "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions','Com_select','Com_stmt_execute')" |
  awk '{ v[$1] = $2 } END { print v["Questions"], v["Com_select"], v["Com_stmt_execute"] }'; }
io_write() { awk '/^write_bytes/ { print $2 }' "/proc/$1/io"; }
health_calls() { curl -s "$AGENT_URL/_fake/stats" | jq '.requests.health'; }

# ---- beads-sched run, idle ----
sched_env idle "$W/idle.db"
unset BEADS_SCHED_PROBE_INTERVAL BEADS_SCHED_DISPATCH_INTERVAL BEADS_SCHED_REAP_INTERVAL
export BEADS_SCHED_LOG_LEVEL=info # default level: an idle daemon should log nothing anyway
build/beads-sched run 2>"$W/idle.log" &
SCHED_PID=$!
BENCH_PIDS="$BENCH_PIDS $SCHED_PID"
sleep 5
store_files() { stat -c '%n=%s' "$W"/idle.db* 2>/dev/null | sed "s|$W/||" | tr '\n' ' '; }
files0=$(store_files)
c0=$(cpu_ticks "$SCHED_PID"); n0=$(cpu_ns "$SCHED_PID"); w0=$(io_write "$SCHED_PID"); l0=$(stat -c %s "$W/idle.log")
m0=$(cpu_ticks "$MARIADBD_PID"); h0=$(health_calls)
read -r q0 s0 e0 < <(status)
t0=$(now_ms)
max_children=0
max_threads=0
end=$((SECONDS + SECS))
while [ $SECONDS -lt $end ]; do
  sleep 5
  ch=$(pgrep -c -P "$SCHED_PID" || true)
  th=$(ls "/proc/$SCHED_PID/task" | wc -l)
  [ "$ch" -gt "$max_children" ] && max_children=$ch
  [ "$th" -gt "$max_threads" ] && max_threads=$th
done
read -r q1 s1 e1 < <(status)
t1=$(now_ms)
c1=$(cpu_ticks "$SCHED_PID"); n1=$(cpu_ns "$SCHED_PID"); w1=$(io_write "$SCHED_PID"); l1=$(stat -c %s "$W/idle.log")
m1=$(cpu_ticks "$MARIADBD_PID"); h1=$(health_calls)
hwm=$(awk '/^VmHWM/ { print $2 " " $3 }' "/proc/$SCHED_PID/status")
files1=$(store_files)
kill "$SCHED_PID"; wait "$SCHED_PID" 2>/dev/null || true

min=$(awk -v ms="$((t1 - t0))" 'BEGIN { printf "%.3f", ms / 60000 }')
pm() { awk -v d="$1" -v m="$min" 'BEGIN { printf "%.1f", d / m }'; }
cpu_ms=$(ticks_ms $((c1 - c0)))
cpu_ms_fine=$(awk -v n="$((n1 - n0))" 'BEGIN { printf "%.1f", n / 1e6 }')
db_ms=$(ticks_ms $((m1 - m0)))
questions=$((q1 - q0 - 1)) # minus our second SHOW STATUS
cpu_day=$(awk -v c="$cpu_ms_fine" -v m="$min" 'BEGIN { printf "%.2f", c / m * 1440 / 1000 }')
db_day=$(awk -v c="$db_ms" -v m="$min" 'BEGIN { printf "%.1f", c / m * 1440 / 1000 }')

# ---- baseline: one idle tick of each CronJob ----
baseline_env idle
tick() { # kind -> "execs cpu_ms maxrss_kb write_bytes"; $W/<kind>.execs lists the programs
  local kind=$1 cpu rss wb
  mkdir -p "$W/$kind.strace"
  # -ff: one file per process, so concurrent execve calls never interleave.
  strace -f -ff -qq -e trace=execve -o "$W/$kind.strace/p" \
    bash tests/bench/baseline_cronjob.sh "$kind-tick" >/dev/null || true
  cat "$W/$kind.strace"/p.* | sed -nE 's/^execve\("([^"]*)".*\) = 0$/\1/p' | sed 's|.*/||' >"$W/$kind.execs"
  # CPU: the mean of 10 ticks back to back (one tick is close to the clock tick).
  /usr/bin/time -f '%U %S %M' -o "$W/$kind.time" bash tests/bench/baseline_cronjob.sh "$kind" 0 10 >/dev/null || true
  cpu=$(tail -1 "$W/$kind.time" | awk '{ printf "%.1f", ($1 + $2) * 1000 / 10 }')
  rss=$(tail -1 "$W/$kind.time" | awk '{ print $3 }')
  # A parent's /proc/PID/io includes its waited-for children.
  wb=$(bash -c 'bash tests/bench/baseline_cronjob.sh "$1-tick" >/dev/null || true
                awk "/^write_bytes/ { print \$2 }" /proc/$$/io' _ "$kind")
  echo "$(wc -l <"$W/$kind.execs") $cpu $rss $wb"
}
mix() { sort "$1" | uniq -c | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }'; }
read -r d_execs d_cpu d_rss d_wb < <(tick dispatcher)
read -r r_execs r_cpu r_rss r_wb < <(tick reaper)
d_mix=$(mix "$W/dispatcher.execs")
r_mix=$(mix "$W/reaper.execs")
procs_day=$((720 * d_execs + 144 * r_execs))
base_cpu_day=$(awk -v d="$d_cpu" -v r="$r_cpu" 'BEGIN { printf "%.1f", (720 * d + 144 * r) / 1000 }')
base_q_min=$(awk 'BEGIN { printf "%.1f", 1 / 2 + 1 / 10 }')

echo
echo "idle for $min min (beads-sched at default intervals; baseline per day from idle ticks)"
printf '%-34s %-36s %s\n' "figure" "beads-sched run" "baseline CronJobs"
printf '%-34s %-36s %s\n' "client CPU" "$cpu_ms_fine ms ($cpu_day s/day; stat: $cpu_ms ms)" "dispatcher tick $d_cpu ms, reaper tick $r_cpu ms ($base_cpu_day s/day)"
printf '%-34s %-36s %s\n' "peak RSS" "$hwm (VmHWM)" "largest process of a tick: dispatcher $d_rss kB, reaper $r_rss kB"
printf '%-34s %-36s %s\n' "disk writes by the client" "$((w1 - w0)) bytes" "dispatcher tick $d_wb bytes, reaper tick $r_wb bytes (pods, logs, etcd not modelled)"
printf '%-34s %-36s %s\n' "store files (start -> end)" "$files0-> $files1" "-"
printf '%-34s %-36s %s\n' "log output" "$((l1 - l0)) bytes" "a few lines per tick (pod logs)"
printf '%-34s %-36s %s\n' "queries to Dolt per minute" "$(pm "$questions") (Com_select $(pm $((s1 - s0))), stmt_execute $(pm $((e1 - e0))))" "$base_q_min (1 per dispatcher tick, 1 per reaper tick)"
printf '%-34s %-36s %s\n' "mariadbd CPU" "$db_ms ms ($db_day s/day)" "-"
printf '%-34s %-36s %s\n' "agent /health calls" "$((h1 - h0)) ($(pm $((h1 - h0)))/min)" "0.5/min"
printf '%-34s %-36s %s\n' "processes started per day" "0 (children max $max_children, threads max $max_threads)" "864 pods; $procs_day processes ($d_execs per dispatcher tick: $d_mix; $r_execs per reaper tick: $r_mix)"

result_header
result_row "idle: beads-sched CPU ($min min)" "$cpu_ms_fine ms = $cpu_day s/day (baseline $base_cpu_day s/day)"
result_row "idle: beads-sched peak RSS" "$hwm"
result_row "idle: beads-sched disk writes" "$((w1 - w0)) bytes, $((l1 - l0)) log bytes"
result_row "idle: queries to Dolt per minute" "$(pm "$questions") (baseline $base_q_min)"
result_row "idle: processes started per day" "beads-sched 0 (max children $max_children); baseline 864 pods, $procs_day processes"
