#!/usr/bin/env bash
# Batches and pickup: what one dispatch costs the Dolt server, against the
# CronJob baseline, on the Dolt emulation (MariaDB +
# tests/fixtures/dolt_emulation.sql), beads-sched at its default settings.
# One run, four phases, each on a fresh database of one private MariaDB:
#
#   A. baseline   tests/bench/baseline_cronjob.sh with BASELINE_DOLT=1 (every
#                 bd write versioned as bd does on Dolt: one transaction, one
#                 DOLT_COMMIT), dispatcher ticks back to back until no bead is
#                 left, BASE beads (default 30).
#   B. batches    `beads-sched run`, defaults; ROUNDS (5) rounds, each assigns
#                 BATCH (10) beads in one UPDATE, the fake agent has room for
#                 all; a round ends when the BATCH beads are dispatched (journal
#                 and `dispatched: job=` notes in Dolt) plus 1.5 s for whatever
#                 the daemon does next.
#   C. throughput `beads-sched run`, defaults; THR (1000) beads assigned in one
#                 UPDATE, fake agent with capacity for all; on the Dolt
#                 emulation, then again on plain MariaDB (no emulation: no Dolt
#                 commits, the daemon's own cost without the stand-in's), then
#                 `beads-sched once` on the emulation (its cycles of at most
#                 128 beads follow each other at once; in `run` the next
#                 cycle waits for the probe, as the printed cycles show). The
#                 emulation's DOLT_COMMIT counts every write row ever made
#                 under a shared lock, so its cost grows with the history;
#                 the script prints what one costs at the end.
#   D. pickup     `beads-sched run`, defaults; SAMPLES (60) beads assigned one at
#                 a time at random moments (0.3-1.3 s apart).
#
# What each figure counts (the server is private: nobody else writes to it):
#   transactions  InnoDB's `trx_rw_commits` counter (information_schema.
#                 INNODB_METRICS, switched on by this script): read-write
#                 transactions committed, explicit or autocommit, including
#                 the COMMIT inside the emulated DOLT_COMMIT. Exact: this
#                 script switches off InnoDB's background statistics writes
#                 (innodb_stats_persistent, innodb_stats_auto_recalc), the only
#                 other source, and subtracts its own assigning UPDATEs.
#                 Read-only transactions (the probe, the candidate reads) do
#                 not count: on Dolt they write nothing either.
#   Dolt commits  rows added to dolt_emul_commits (one per successful
#                 DOLT_COMMIT call).
#   statements    rows of the general log (log_output=TABLE) of type Query or
#                 Execute sent by the `beads` account (both sides use it; this
#                 script's own queries run as root), without the emulation's
#                 trigger bodies, which the general log also shows. START
#                 TRANSACTION, COMMIT and CALL each count as one. The periodic
#                 ones (change probe `dolt_hashof_db()`, lease check
#                 `IS_USED_LOCK`) are shown apart and not in the per-dispatch
#                 figure. General log on in A and B only.
#   cost          client CPU per dispatch, as tests/bench/bench_cost.sh: for
#                 the baseline, user+sys of the whole process tree
#                 (/usr/bin/time); for beads-sched, the daemon's threads' run
#                 time (/proc/PID/task/*/schedstat, ns) over B's rounds. The
#                 ratio is baseline / beads-sched. mariadbd CPU per dispatch
#                 (clock ticks) is shown beside it.
#   throughput    dispatches / (last POST /execute arriving at the fake agent
#                 - first `claiming` row in the journal), both wall-clock ms.
#   pickup        POST /execute arriving at the fake agent (its log) - the
#                 server's clock right after the assigning UPDATE committed
#                 (`SELECT UNIX_TIMESTAMP(NOW(6))` in the same session).
#
# Usage: tests/bench/bench_batch.sh [THR (1000) [SAMPLES (60) [BATCH (10) [ROUNDS (5)]]]]
# BENCH_MYSQL_PORT (33981), BENCH_BASELINE_BEADS (30).
# Needs build/beads-sched and build/fake-agent (cmake --build build); curl,
# jq, mariadb, sqlite3 (bash ops/dev/setup.sh).
# shellcheck disable=SC2154 # c_* and p_* are set by throughput() (printf -v)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
THR=${1:-1000}
SAMPLES=${2:-60}
BATCH=${3:-10}
ROUNDS=${4:-5}
BASE=${BENCH_BASELINE_BEADS:-30}
PORT=${BENCH_MYSQL_PORT:-33981}
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
bench_positive bench_batch.sh "$THR" "$SAMPLES" "$BATCH" "$ROUNDS" "$BASE"
W=$(mktemp -d /var/tmp/bs-bench-batch.XXXXXX) # real disk: the journal's fsyncs count
trap bench_cleanup EXIT

echo "machine: $(bench_machine)"
bench_start_db
bench_sql -e "SET GLOBAL innodb_monitor_enable = 'trx_rw_commits';
              SET GLOBAL innodb_monitor_enable = 'trx_rollbacks';
              SET GLOBAL innodb_stats_persistent = OFF; SET GLOBAL innodb_stats_auto_recalc = OFF;
              SET GLOBAL log_output = 'TABLE'; SET GLOBAL general_log = OFF"

# counters DB: "rw_commits rollbacks dolt_commits"
counters() {
  bench_sql "$1" -e "SELECT (SELECT count FROM information_schema.INNODB_METRICS WHERE name = 'trx_rw_commits'),
                            (SELECT count FROM information_schema.INNODB_METRICS WHERE name = 'trx_rollbacks'),
                            (SELECT COUNT(*) FROM dolt_emul_commits)" | tr '\t' ' '
}
glog_reset() { bench_sql -e "SET GLOBAL general_log = OFF; TRUNCATE mysql.general_log; SET GLOBAL general_log = ON"; }
glog_off() { bench_sql -e "SET GLOBAL general_log = OFF"; }
# glog_count: "statements periodic" sent by the beads account since glog_reset.
glog_count() {
  bench_sql -e "SELECT COUNT(*), COALESCE(SUM(argument LIKE '%dolt_hashof_db()%' OR argument LIKE '%IS_USED_LOCK(%'), 0)
                FROM mysql.general_log WHERE user_host LIKE 'beads[%' AND command_type IN ('Query', 'Execute')
                AND argument NOT LIKE 'INSERT INTO dolt_emul_writes (tbl, op, row_id) VALUES%'" | tr '\t' ' '
}
per() { awk -v a="$1" -v n="$2" -v f="${3:-%.2f}" 'BEGIN { if (n > 0) printf f, a / n; else print "n/a" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0fx", a / b; else print "n/a" }'; }
# dispatched_in DB: beads whose notes hold the dispatched note.
dispatched_in() { bench_sql "$1" -e "SELECT COUNT(*) FROM issues WHERE notes LIKE '%dispatched: job=%'"; }
journal_dispatched() { sqlite3 "$1" "SELECT count(*) FROM journal WHERE state = 'dispatched'" 2>/dev/null || echo 0; }
# start_sched DB STORE LOG: beads-sched run at its defaults; sets SCHED_PID.
start_sched() {
  sched_env "$1" "$2"
  unset BEADS_SCHED_PROBE_INTERVAL BEADS_SCHED_DISPATCH_INTERVAL
  build/beads-sched migrate >/dev/null
  build/beads-sched run 2>"$3" &
  SCHED_PID=$!
  BENCH_PIDS="$BENCH_PIDS $SCHED_PID"
  sleep 3 # started, schema detected, first probe and cycle done
}
stop_sched() { kill "$SCHED_PID" 2>/dev/null || true; wait "$SCHED_PID" 2>/dev/null || true; }

# ---- A. baseline: the CronJob pipeline, versioned as bd does on Dolt ----
bench_start_agent 100000
bash tests/harness/newdb.sh "$W/db" base current dolt >/dev/null
bench_fill base "$BASE"
baseline_env base
export BASELINE_DOLT=1 BASELINE_EXEC_LOG=$W/base.execs
: >"$BASELINE_EXEC_LOG"
read -r bx0 _ bc0 < <(counters base)
glog_reset
m0=$(cpu_ticks "$MARIADBD_PID")
/usr/bin/time -f '%U %S' -o "$W/base.time" bash tests/bench/baseline_cronjob.sh dispatcher 0 0 >"$W/base.out"
m1=$(cpu_ticks "$MARIADBD_PID")
glog_off
read -r base_stmts base_periodic < <(glog_count)
read -r bx1 _ bc1 < <(counters base)
unset BASELINE_EXEC_LOG BASELINE_DOLT
base_done=$(dispatched_in base)
base_cpu_ms=$(awk '{ printf "%d", ($1 + $2) * 1000 }' "$W/base.time")
base_db_ms=$(ticks_ms $((m1 - m0)))
base_trx=$((bx1 - bx0)) base_commits=$((bc1 - bc0))
bench_stop_agent

# ---- B. beads-sched, batches of BATCH beads ----
NB=$((BATCH * ROUNDS))
bench_start_agent 100000
bash tests/harness/newdb.sh "$W/db" b current dolt >/dev/null
bench_fill b "$NB" NULL
start_sched b "$W/b.db" "$W/b.log"
b_trx=0 b_rb=0 b_commits=0 b_stmts=0 b_periodic=0 b_cpu_ns=0 b_db_ticks=0 b_rounds=""
for r in $(seq 1 "$ROUNDS"); do
  read -r x0 rb0 c0 < <(counters b)
  glog_reset
  s0=$(cpu_ns "$SCHED_PID")
  m0=$(cpu_ticks "$MARIADBD_PID")
  bench_sql b -e "UPDATE issues SET assignee = 'agent', updated_at = UTC_TIMESTAMP()
                  WHERE id IN (SELECT CONCAT('bench-', seq) FROM seq_$(((r - 1) * BATCH + 1))_to_$((r * BATCH)))"
  for _ in $(seq 600); do
    [ "$(journal_dispatched "$W/b.db")" -ge $((r * BATCH)) ] && [ "$(dispatched_in b)" -ge $((r * BATCH)) ] && break
    sleep 0.05
  done
  sleep 1.5 # whatever the daemon does next (capacity re-check, owed notes) counts too
  s1=$(cpu_ns "$SCHED_PID")
  m1=$(cpu_ticks "$MARIADBD_PID")
  read -r st pe < <(glog_count)
  read -r x1 rb1 c1 < <(counters b)
  tx=$((x1 - x0 - 1)) # minus the assigning UPDATE
  b_trx=$((b_trx + tx)) b_rb=$((b_rb + rb1 - rb0)) b_commits=$((b_commits + c1 - c0))
  b_stmts=$((b_stmts + st - pe)) b_periodic=$((b_periodic + pe))
  b_cpu_ns=$((b_cpu_ns + s1 - s0)) b_db_ticks=$((b_db_ticks + m1 - m0))
  b_rounds="$b_rounds ${tx}/$((c1 - c0))"
done
glog_off
stop_sched
b_done=$(journal_dispatched "$W/b.db")
b_notes=$(dispatched_in b)
b_msgs=$(bench_sql b -e "SELECT SUBSTRING_INDEX(message, ' ', 2), COUNT(*) FROM dolt_emul_commits GROUP BY 1 ORDER BY 1" |
         awk -F'\t' '{ printf "%s%s \"%s\"", (NR > 1 ? ", " : ""), $2, $1 }')
b_cpu_ms=$(awk -v ns="$b_cpu_ns" 'BEGIN { printf "%.1f", ns / 1e6 }')
b_db_ms=$(ticks_ms "$b_db_ticks")
bench_stop_agent

# ---- C. throughput: THR beads at once ----
# throughput NAME run|once [dolt]: sets <NAME>_done _posts _span _span_disp
# _rate _trx _commits. run: the daemon, beads assigned in one UPDATE while it
# runs; once: `beads-sched once` over beads already assigned (one process,
# its cycles back to back, no probe between them).
throughput() {
  local name=$1 mode=$2 emul=${3:-} x0 rb0 c0=0 x1 rb1 c1=0 sub=1
  bench_start_agent 100000 "$W/$name.posts"
  bash tests/harness/newdb.sh "$W/db" "$name" current $emul >/dev/null
  if [ "$mode" = run ]; then
    bench_fill "$name" "$THR" NULL
    start_sched "$name" "$W/$name.db" "$W/$name.log"
  else
    bench_fill "$name" "$THR"
    sched_env "$name" "$W/$name.db"
    build/beads-sched migrate >/dev/null
    sub=0
  fi
  if [ -n "$emul" ]; then read -r x0 rb0 c0 < <(counters "$name"); else read -r x0 rb0 < <(counters_plain); fi
  if [ "$mode" = run ]; then
    bench_sql "$name" -e "UPDATE issues SET assignee = 'agent', updated_at = UTC_TIMESTAMP() WHERE id LIKE 'bench-%'"
    for _ in $(seq 4800); do
      [ "$(journal_dispatched "$W/$name.db")" -ge "$THR" ] && [ "$(dispatched_in "$name")" -ge "$THR" ] && break
      sleep 0.05
    done
    sleep 1.5
  else
    build/beads-sched once 2>"$W/$name.log"
  fi
  if [ -n "$emul" ]; then read -r x1 rb1 c1 < <(counters "$name"); else read -r x1 rb1 < <(counters_plain); fi
  [ "$mode" = run ] && stop_sched
  local ndone posts span span_disp
  ndone=$(journal_dispatched "$W/$name.db")
  posts=$(wc -l <"$W/$name.posts")
  span=$(bench_claim_to_post "$W/$name.db" "$W/$name.posts")
  span_disp=$(sqlite3 "$W/$name.db" "SELECT max(dispatched_at) - min(created_at) FROM journal")
  printf -v "${name}_done" %s "$ndone"
  printf -v "${name}_posts" %s "$posts"
  printf -v "${name}_span" %s "$span"
  printf -v "${name}_span_disp" %s "$span_disp"
  printf -v "${name}_rate" %s "$(bench_rate "$ndone" "$span")"
  printf -v "${name}_trx" %s "$((x1 - x0 - sub))"
  printf -v "${name}_commits" %s "$((c1 - c0))"
  bench_stop_agent
}
counters_plain() {
  bench_sql -e "SELECT (SELECT count FROM information_schema.INNODB_METRICS WHERE name = 'trx_rw_commits'),
                       (SELECT count FROM information_schema.INNODB_METRICS WHERE name = 'trx_rollbacks')" | tr '\t' ' '
}
throughput c run dolt
# What one DOLT_COMMIT costs the emulation at the end of C (it counts every
# write row under a shared lock: the cost grows with the history).
c_hist=$(bench_sql c -e "SELECT COUNT(*) FROM dolt_emul_writes")
c_commit_ms=$(bench_sql c -e "SET @t = NOW(6); UPDATE issues SET notes = 'x' WHERE id = 'bench-1';
  CALL DOLT_COMMIT('-m', 'bench', '--author', 'Bench <bench@localhost>');
  SELECT ROUND(TIMESTAMPDIFF(MICROSECOND, @t, NOW(6)) / 1000, 1)" | tail -1)
throughput p run
throughput o once dolt

# ---- D. pickup: assign -> POST, one bead at a time ----
bench_start_agent 100000 "$W/d.posts"
bash tests/harness/newdb.sh "$W/db" d current dolt >/dev/null
bench_fill d "$SAMPLES" NULL
start_sched d "$W/d.db" "$W/d.log"
: >"$W/assigned"
for i in $(seq 1 "$SAMPLES"); do
  sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", 0.3 + (r % 1000) / 1000 }')"
  at=$(bench_sql d -e "UPDATE issues SET assignee = 'agent', updated_at = UTC_TIMESTAMP() WHERE id = 'bench-$i';
                       SELECT ROUND(UNIX_TIMESTAMP(NOW(6)) * 1000)")
  echo "bench-$i $at" >>"$W/assigned"
done
for _ in $(seq 100); do [ "$(wc -l <"$W/d.posts")" -ge "$SAMPLES" ] && break; sleep 0.1; done
stop_sched
jq -r '"\(.bead_id) \(.t_ms)"' "$W/d.posts" | sort >"$W/posted"
sort "$W/assigned" >"$W/assigned.s"
lat=$(join "$W/assigned.s" "$W/posted" | awk '{ print $3 - $2 }' | sort -n)
count=$(echo "$lat" | grep -c . || true)
pct() { echo "$lat" | awk -v p="$1" -v n="$count" 'NR == int((n - 1) * p / 100) + 1 { print; exit }'; }

# ---- figures ----
b_cpu_per=$(per "$b_cpu_ms" "$b_done")
base_cpu_per=$(per "$base_cpu_ms" "$base_done")
echo
echo "A. baseline (CronJob, bd versioning on Dolt): $base_done dispatched of $BASE, $(wc -l <"$W/base.execs") processes"
echo "   transactions $base_trx, Dolt commits $base_commits, statements $base_stmts (+ $base_periodic periodic)"
echo "B. beads-sched, $ROUNDS rounds of $BATCH: $b_done dispatched, $b_notes dispatched notes in Dolt"
echo "   transactions $b_trx (rollbacks $b_rb), Dolt commits $b_commits, statements $b_stmts (+ $b_periodic periodic: probe, lease)"
echo "   per round (transactions/Dolt commits):$b_rounds"
echo "   Dolt commit messages: $b_msgs"
echo "C. $THR beads at once on the Dolt emulation: $c_done dispatched, $c_posts POSTs; first claim -> last POST $c_span ms," \
     "-> last dispatched journaled $c_span_disp ms; transactions $c_trx, Dolt commits $c_commits;" \
     "one DOLT_COMMIT of the emulation at the end: $c_commit_ms ms ($c_hist write rows)"
echo "   on plain MariaDB (no emulation, no Dolt commits): $p_done dispatched, $p_posts POSTs; first claim -> last POST" \
     "$p_span ms, -> last dispatched journaled $p_span_disp ms; transactions $p_trx"
echo "   \`once\` on the Dolt emulation (cycles back to back): $o_done dispatched, $o_posts POSTs; first claim -> last POST" \
     "$o_span ms, -> last dispatched journaled $o_span_disp ms; transactions $o_trx, Dolt commits $o_commits"
echo "   cycles of the run on the Dolt emulation (start after the first claim, ms: claims):" \
     "$(sqlite3 "$W/c.db" "SELECT created_at, count(*) FROM journal GROUP BY created_at ORDER BY created_at" |
        awk -F'|' 'NR == 1 { t0 = $1 } { printf "%s+%d: %d", (NR > 1 ? ", " : ""), $1 - t0, $2 }')"
echo "D. pickup: $count samples of $SAMPLES"

result_header
result_row "batch: transactions per dispatch (batch $BATCH)" "$(per "$b_trx" "$b_done") (baseline $(per "$base_trx" "$base_done"); target <= 0.2)"
result_row "batch: Dolt commits per dispatch (batch $BATCH)" "$(per "$b_commits" "$b_done") (baseline $(per "$base_commits" "$base_done"); target <= 0.2)"
result_row "batch: statements per dispatch (batch $BATCH)" "$(per "$b_stmts" "$b_done" %.1f) (baseline $(per "$base_stmts" "$base_done" %.1f)); periodic excluded"
result_row "batch: client CPU ms per dispatch" "$b_cpu_per ms (baseline $base_cpu_per ms)"
result_row "batch: cost ratio baseline / beads-sched" "$(ratio "$base_cpu_per" "$b_cpu_per") client CPU per dispatch (target >= 100x)"
result_row "batch: mariadbd CPU ms per dispatch" "$(per "$b_db_ms" "$b_done") (baseline $(per "$base_db_ms" "$base_done"))"
result_row "batch: $THR beads, first claim -> last POST" "$c_rate dispatches/s ($c_span ms; $c_done/$THR dispatched; Dolt emulation; target >= 1000/s)"
result_row "batch: $THR beads, transactions / Dolt commits" "$(per "$c_trx" "$c_done") / $(per "$c_commits" "$c_done") per dispatch"
result_row "batch: $THR beads, once, Dolt emulation" "$o_rate dispatches/s ($o_span ms; $o_done/$THR; $(per "$o_trx" "$o_done") / $(per "$o_commits" "$o_done") transactions / Dolt commits per dispatch)"
result_row "batch: $THR beads, plain MariaDB, claim -> POST" "$p_rate dispatches/s ($p_span ms; $p_done/$THR; $(per "$p_trx" "$p_done") transactions per dispatch)"
result_row "batch: pickup assign -> POST (defaults)" "p50 $(pct 50) ms, p99 $(pct 99) ms, max $(echo "$lat" | tail -1) ms ($count samples; target p50 <= 250 ms)"
