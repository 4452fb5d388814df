#!/usr/bin/env bash
# The candidate query, all its statements (sched/beads.c beads_ready_load
# and beads_candidates), on the bd 1.0.x schema:
#
#   A. 100,000 issues, 10,000 of them open, assigned to the agent and
#      eligible; 10,000 dependencies among the other issues (7,000 blocks,
#      1,000 conditional-blocks, 1,000 waits-for, 1,000 parent-child; the
#      dependents are closed or blocked, their targets open or in progress),
#      so bd's blocked set has real work to do (about 4,000 blocked);
#   B. the same plus a backlog of 1,000 open agent beads that are blocked
#      (each by an open bead of another user).
#
# Each: `beads-sched once --dry-run` with 10 free slots and the debug log
# (A with the harness's 64 MiB InnoDB buffer pool and with 512 MiB),
# 7 runs; the median of the times the daemon logs for the readiness
# snapshot (every statement that computes the blocked set, the deferred
# parents and their children), and for the candidate page queries (the
# skip-note page and the dispatch page, with their NOT IN lists), and the
# wall time of the whole process. Figures go to BENCHMARKS.md.
#
# Usage: tests/bench/bench_ready.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PORT=${BENCH_MYSQL_PORT:-33975}
W=$(mktemp -d /var/tmp/bs-bench-ready.XXXXXX)
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
trap bench_cleanup EXIT

echo "machine: $(bench_machine)"
bench_start_db
bench_start_agent 10
bash tests/harness/newdb.sh "$W/db" ready current >/dev/null
# seq % 10 = 0: eligible agent bead; otherwise one of 50 users, any status.
bench_sql ready -e "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes,
  status, priority, issue_type, assignee, created_at, updated_at)
  SELECT CONCAT('r-', seq), CONCAT('bead ', seq), REPEAT('context ', 50), '', 'it works', '',
         CASE WHEN seq % 10 = 0 THEN 'open' ELSE ELT(seq % 4 + 1, 'open', 'closed', 'in_progress', 'blocked') END,
         seq % 5, 'task', CASE WHEN seq % 10 = 0 THEN 'agent' ELSE CONCAT('user', seq % 50) END,
         UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL seq SECOND
  FROM seq_1_to_100000;
  INSERT INTO dependencies (issue_id, depends_on_id, type, created_by, metadata)
  SELECT CONCAT('r-', seq * 10 - 5), CONCAT('r-', seq * 10 - 2),
         CASE WHEN seq % 10 < 7 THEN 'blocks' WHEN seq % 10 = 7 THEN 'conditional-blocks'
              WHEN seq % 10 = 8 THEN 'waits-for' ELSE 'parent-child' END, 'bench',
         CASE WHEN seq % 20 = 8 THEN '{\"gate\":\"any-children\"}' ELSE '{}' END
  FROM seq_1_to_10000;
  ANALYZE TABLE issues, dependencies" >/dev/null

sched_env ready "$W/ready.db"
build/beads-sched migrate >/dev/null

# run LABEL: 7 dry runs; prints the medians.
run() {
  local label=$1 i
  : >"$W/runs"
  for i in 1 2 3 4 5 6 7; do
    local t0; t0=$(now_ms)
    BEADS_SCHED_LOG_LEVEL=debug build/beads-sched once --dry-run >"$W/out" 2>"$W/log"
    local wall=$(( $(now_ms) - t0 ))
    local snap pages stmts excl picks
    snap=$(sed -n 's/.*msg="readiness snapshot".* us=\([0-9]*\).*/\1/p' "$W/log" | head -1)
    stmts=$(sed -n 's/.*msg="readiness snapshot".* statements=\([0-9]*\).*/\1/p' "$W/log" | head -1)
    excl=$(sed -n 's/.*msg="readiness snapshot".* excluded=\([0-9]*\).*/\1/p' "$W/log" | head -1)
    pages=$(sed -n 's/.*msg="candidate page".* us=\([0-9]*\).*/\1/p' "$W/log" | awk '{ s += $1 } END { print s }')
    picks=$(grep -c '^dry-run: would dispatch' "$W/out" || true)
    echo "$snap $pages $wall $stmts $excl $picks" >>"$W/runs"
  done
  sort -n -k1 "$W/runs" | awk -v l="$label" 'NR == 4 {
    printf "%s: readiness snapshot %.1f ms (%d statements, %d ids excluded), candidate pages %.1f ms, once --dry-run %d ms wall, %d picks\n",
      l, $1 / 1000, $4, $5, $2 / 1000, $3, $6 }'
}

echo "data: $(bench_sql ready -e "SELECT COUNT(*) FROM issues") issues, $(bench_sql ready -e "SELECT COUNT(*) FROM dependencies") dependencies, $(bench_sql ready -e "SELECT COUNT(*) FROM issues WHERE assignee = 'agent' AND status = 'open'") open agent beads"
run "A, 64 MiB buffer pool (the test harness's; the data does not fit)"
# The issues table (~70 MB here) fits a 512 MiB pool, as on a server that
# holds its working set in memory; one warm-up run first.
bench_sql -e "SET GLOBAL innodb_buffer_pool_size = 536870912"
sleep 2
BEADS_SCHED_LOG_LEVEL=warn build/beads-sched once --dry-run >/dev/null 2>&1
run "A (100k issues, 10k deps, 10k eligible), 512 MiB buffer pool"

# B: 1,000 agent beads blocked by open beads of other users.
bench_sql ready -e "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes,
  status, priority, issue_type, assignee, created_at, updated_at)
  SELECT CONCAT('blocked-', seq), 'blocked', '', '', 'it works', '', 'open', 0, 'task', 'agent',
         UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL 2 DAY FROM seq_1_to_1000;
  INSERT INTO dependencies (issue_id, depends_on_id, type, created_by)
  SELECT CONCAT('blocked-', seq), CONCAT('r-', seq * 40 + 1), 'blocks', 'bench' FROM seq_1_to_1000;
  UPDATE issues SET status = 'open' WHERE id IN (SELECT depends_on_id FROM dependencies WHERE issue_id LIKE 'blocked-%');
  ANALYZE TABLE issues, dependencies" >/dev/null
echo "data: $(bench_sql ready -e "SELECT COUNT(*) FROM dependencies") dependencies, $(bench_sql ready -e "SELECT COUNT(*) FROM issues WHERE assignee = 'agent' AND status = 'open'") open agent beads, 1,000 of them blocked"
run "B (plus a backlog of 1,000 blocked agent beads)"
grep -q "would dispatch blocked-" "$W/out" && echo "ERROR: a blocked bead was picked" >&2 && exit 1
exit 0
