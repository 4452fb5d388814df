#!/usr/bin/env bash
# Store benchmarks (figures, not pass/fail):
#   1. bytes per attempt: the unit test test_bytes_per_attempt writes N
#      finished attempts (default 100000) through the store API, ~6 events
#      each as the daemon writes them, and prints file size / attempts.
#   2. history at scale: a store with EVENTS events (default 1000000) for
#      one bead, plus a fifth as many for other beads interleaved, built
#      with the sqlite3 shell; then `beads-sched history BEAD` (newest 100),
#      `--limit 1000`, `history` of the whole store, and `status`: the query
#      time the command logs at debug level (query_us) and the wall time of
#      the whole process (which includes store_open's PRAGMA quick_check).
# Usage: tests/bench/bench_store.sh [build-dir] [attempts] [events]
# Needs <build-dir>/beads-sched and <build-dir>/tests/test_report.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
ATTEMPTS=${2:-100000}
EVENTS=${3:-1000000}
BIN=$BUILD/beads-sched
[ -x "$BIN" ] && [ -x "$BUILD/tests/test_report" ] || { echo "build $BUILD first" >&2; exit 1; }
W=$(mktemp -d "${TMPDIR:-/tmp}/bs-bench-store.XXXXXX")
trap 'rm -rf "$W"' EXIT
ms() { date +%s%N | cut -b1-13; }

echo "== 1. bytes per finished attempt ($ATTEMPTS attempts, through the store API)"
BS_BENCH_ATTEMPTS=$ATTEMPTS TMPDIR=$W "$BUILD/tests/test_report" 2>&1 | grep '^# bytes per attempt'

echo "== 2. history with $EVENTS events for one bead"
export BEADS_SCHED_STORE=$W/big.db BEADS_SCHED_LOG_LEVEL=debug BEADS_SCHED_LOG_FORMAT=logfmt
"$BIN" migrate >/dev/null 2>&1
T0=$(( $(date +%s) * 1000 - 90 * 86400000 ))
NOISE=$(( EVENTS / 5 ))
ATT=$(( (EVENTS + 5) / 6 ))
t=$(ms)
sqlite3 "$BEADS_SCHED_STORE" >/dev/null <<SQL
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $ATT)
INSERT INTO journal (id, bead_id, attempt, dispatch_id, state, job_id, created_at, claimed_at,
                     posting_at, dispatched_at, finished_at, outcome, detail)
SELECT i, 'code-big', i, printf('%08x-1c24-442f-a22e-%012x', i, i), 'retrying', printf('%012x', i * 7919),
       $T0 + i * 40000, $T0 + i * 40000 + 12, $T0 + i * 40000 + 13, $T0 + i * 40000 + 18,
       $T0 + i * 40000 + 30000, 'retrying', 'job failed: exit 1'
FROM n;
-- Six events per attempt for code-big; every sixth event overall belongs to
-- another bead (skips, other attempts' notes), so the bead's rows are spread.
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $EVENTS + $NOISE - 1)
INSERT INTO event_log (at, bead_id, attempt_id, event, job_id, detail)
SELECT $T0 + i * 3000,
       CASE WHEN i % 6 = 5 THEN printf('code-n%d', i % 997) ELSE 'code-big' END,
       CASE WHEN i % 6 = 5 THEN NULL ELSE ((i - i / 6) / 6) + 1 END,
       CASE WHEN i % 6 = 5 THEN 'skipped_no_acceptance'
            ELSE CASE (i - i / 6) % 6 WHEN 0 THEN 'claiming' WHEN 1 THEN 'claimed' WHEN 2 THEN 'posting'
                 WHEN 3 THEN 'dispatched' WHEN 4 THEN 'alive' ELSE 'retrying' END END,
       CASE WHEN i % 6 <> 5 AND (i - i / 6) % 6 IN (3, 4) THEN printf('%012x', ((i - i / 6) / 6 + 1) * 7919) END,
       CASE WHEN i % 6 = 5 THEN 'noted on the bead: no acceptance criteria'
            WHEN (i - i / 6) % 6 = 5 THEN 'job failed: exit 1' END
FROM n;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
echo "built in $(( $(ms) - t )) ms: $(sqlite3 "$BEADS_SCHED_STORE" "SELECT count(*) FROM event_log WHERE bead_id = 'code-big'") events for code-big," \
     "$(sqlite3 "$BEADS_SCHED_STORE" "SELECT count(*) FROM event_log") in all, $(( $(stat -c %s "$BEADS_SCHED_STORE") / 1048576 )) MiB"

measure() { # LABEL ARGS...
  local label=$1; shift
  local best_q=999999999 best_w=999999999 q w t0 i
  for i in 1 2 3 4 5; do
    t0=$(ms)
    "$BIN" "$@" >/dev/null 2>"$W/err"
    w=$(( $(ms) - t0 ))
    q=$(grep -o 'query_us=[0-9]*' "$W/err" | cut -d= -f2 || true)
    [ -n "$q" ] && [ "$q" -lt "$best_q" ] && best_q=$q
    [ "$w" -lt "$best_w" ] && best_w=$w
  done
  if [ "$best_q" = 999999999 ]; then
    printf '%-44s process %5d ms\n' "$label" "$best_w"
  else
    printf '%-44s query %8.3f ms   process %5d ms   (best of 5)\n' "$label" \
      "$(awk -v q="$best_q" 'BEGIN { print q / 1000 }')" "$best_w"
  fi
}
measure "history code-big (newest 100)" history code-big
measure "history code-big --limit 1000" history code-big --limit 1000
measure "history code-n5 (a bead with ~200 events)" history code-n5
measure "history (whole store, newest 100)" history
measure "status" status
echo "-- the same through the sqlite3 shell and the history view:"
for q in "SELECT * FROM history WHERE bead_id = 'code-big' ORDER BY at DESC LIMIT 20" \
         "SELECT * FROM history WHERE bead_id = 'code-big' LIMIT 20" \
         "SELECT count(*) FROM history WHERE bead_id = 'code-big'"; do
  t=$(ms); sqlite3 "$BEADS_SCHED_STORE" "$q" >/dev/null; echo "$(( $(ms) - t )) ms  $q"
done
echo "-- PRAGMA quick_check alone (run by every store_open):"
t=$(ms); sqlite3 "$BEADS_SCHED_STORE" "PRAGMA quick_check" >/dev/null; echo "$(( $(ms) - t )) ms"
