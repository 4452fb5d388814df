#!/usr/bin/env bash
# Scale: 100,000 issues, of which 10,000 are open, assigned to the agent and
# eligible (the rest: other assignees and statuses, and agent beads that are
# closed), on the bd 1.0.x schema (single-column indexes, as bd creates
# them).
#
#   1. the eligibility query: the SQL of sched/beads.c beads_candidates
#      without exclusions (no dependencies here; copied below, placeholders
#      filled in; tests/bench/bench_ready.sh measures the readiness
#      statements and the NOT IN lists), timed by
#      MariaDB itself (ANALYZE FORMAT=JSON, r_total_time_ms; median of 5),
#      for the daemon's first page (LIMIT 256), its last page and all
#      10,000 rows; the query for beads without acceptance criteria that
#      every cycle runs first (sched/dispatch.c note_unready, LIMIT 100); the
#      change probe of a non-Dolt server;
#   2. `beads-sched once --dry-run`, fake agent with 10,000 free slots: one
#      process that reads every candidate page and prints 10,000 picks;
#   3. `beads-sched once`, 1 free slot: one real dispatch; the per-cycle
#      overhead (start-up, schema detection, /health, one page, one claim);
#   4. `beads-sched once`, 1,000,000 free slots: the full cycle dispatching
#      the remaining 9,999 beads at once (journal fsynced, store on the real
#      disk); the fake agent serves at most 4,000 connections at a time and
#      closes the others unanswered, which the daemon records as `unknown`;
#   5. fresh data and store: `beads-sched once` repeated with at most 2,500
#      free slots each (BENCH_SCALE_CHUNK) until every bead is dispatched.
# Wall times by date +%s%3N around the process, CPU by /usr/bin/time.
#
# Usage: tests/bench/bench_scale.sh [issues (100000)] [eligible (10000)]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
TOTAL=${1:-100000}
ELIGIBLE=${2:-10000}
PORT=${BENCH_MYSQL_PORT:-33971}
W=$(mktemp -d /var/tmp/bs-bench-scale.XXXXXX)
# shellcheck source=tests/bench/lib.sh
. "$ROOT/tests/bench/lib.sh"
trap bench_cleanup EXIT
STEP=$((TOTAL / ELIGIBLE))
[ "$STEP" -ge 2 ] || { echo "bench_scale.sh: eligible must be at most half the issues" >&2; exit 2; }

echo "machine: $(bench_machine)"
bench_start_db
bench_start_agent 1
# seq % STEP = 0: eligible agent bead; = 1: the agent's, closed; otherwise
# one of 50 users, any status.
fill() {
  bash tests/harness/newdb.sh "$W/db" scale current >/dev/null
  bench_sql scale -e "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes,
    status, priority, issue_type, assignee, created_at, updated_at)
    SELECT CONCAT('scale-', seq), CONCAT('bead ', seq), REPEAT('context ', 50), '', 'it works', '',
           CASE WHEN seq % $STEP = 0 THEN 'open' WHEN seq % $STEP = 1 THEN 'closed'
                ELSE ELT(seq % 4 + 1, 'open', 'closed', 'in_progress', 'blocked') END,
           seq % 5, 'task',
           CASE WHEN seq % $STEP IN (0, 1) THEN 'agent' ELSE CONCAT('user', seq % 50) END,
           UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL seq SECOND
    FROM seq_1_to_$TOTAL; ANALYZE TABLE issues" >/dev/null
}
t0=$(now_ms)
fill
fill_ms=$(( $(now_ms) - t0 ))
counts=$(bench_sql scale -e "SELECT COUNT(*), SUM(assignee = 'agent' AND status = 'open') FROM issues")
echo "filled: $counts (issues, eligible) in $fill_ms ms"

# ---- 1. the eligibility query (sched/beads.c beads_candidates, current schema) ----
candidates_sql() { # LIMIT OFFSET [unready]; "unready": the skip-note query (no criteria)
  local with=1 neg=""
  [ "${3:-}" = unready ] && with=0 neg="NOT "
  cat <<EOF
SELECT DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s'), priority, id, status, assignee, issue_type,
       pinned, ephemeral, (defer_until IS NOT NULL AND defer_until > UTC_TIMESTAMP()),
       (acceptance_criteria IS NOT NULL AND acceptance_criteria REGEXP '[^[:space:]]'),
       DATE_FORMAT(defer_until, '%Y-%m-%d %H:%i:%s'), OCTET_LENGTH(notes) FROM issues
WHERE assignee = 'agent' AND status = 'open'
  AND ${neg}(acceptance_criteria IS NOT NULL AND acceptance_criteria REGEXP '[^[:space:]]')
  AND (pinned = 0 OR pinned IS NULL) AND (ephemeral = 0 OR ephemeral IS NULL)
  AND issue_type NOT IN ('merge-request','gate','molecule','message','agent','role','rig')
  AND (defer_until IS NULL OR defer_until <= UTC_TIMESTAMP())
ORDER BY priority ASC, updated_at ASC, id ASC LIMIT $1 OFFSET $2
EOF
}
probe_sql="SELECT COUNT(*), MAX(updated_at) FROM issues WHERE assignee = 'agent'"
server_ms() { # SQL -> median r_total_time_ms of 5 runs, and rows of the last
  local t=() i
  for i in 1 2 3 4 5; do
    t+=("$(bench_sql scale --raw -e "ANALYZE FORMAT=JSON $1" | jq '.query_block.r_total_time_ms')")
  done
  printf '%s\n' "${t[@]}" | sort -g | awk 'NR == 3 { printf "%.2f", $1 }'
}
q_page=$(server_ms "$(candidates_sql 256 0)")
q_all=$(server_ms "$(candidates_sql "$ELIGIBLE" 0)")
q_last=$(server_ms "$(candidates_sql 256 $((ELIGIBLE - 256)))")
q_unready=$(server_ms "$(candidates_sql 100 0 unready)")
q_probe=$(server_ms "$probe_sql")
plan=$(bench_sql scale -e "EXPLAIN $(candidates_sql 256 0)" | awk -F'\t' '{ print "type=" $4 ", key=" $6 ", rows=" $9 ", " $10 }')

# ---- 2. once --dry-run, 10,000 free slots ----
sched_env scale "$W/scale.db"
export BEADS_SCHED_HTTP_TIMEOUT=5m
build/beads-sched migrate >/dev/null
curl -s -X POST "$AGENT_URL/_fake/config" -d "{\"capacity\": $ELIGIBLE}" >/dev/null
t0=$(now_ms)
/usr/bin/time -f '%U %S %M' -o "$W/dry.time" build/beads-sched once --dry-run >"$W/dry.out" 2>"$W/dry.log"
dry_ms=$(( $(now_ms) - t0 ))
dry_picks=$(grep -c '^dry-run: would dispatch' "$W/dry.out" || true)
dry_cpu=$(tail -1 "$W/dry.time" | awk '{ printf "%d", ($1 + $2) * 1000 }')

# ---- 3. once, 1 free slot ----
curl -s -X POST "$AGENT_URL/_fake/config" -d '{"capacity": 1}' >/dev/null
t0=$(now_ms)
/usr/bin/time -f '%U %S %M' -o "$W/one.time" build/beads-sched once 2>"$W/one.log"
one_ms=$(( $(now_ms) - t0 ))
one_done=$(sqlite3 "$W/scale.db" "SELECT count(*) FROM journal WHERE state = 'dispatched'")
one_cpu=$(tail -1 "$W/one.time" | awk '{ printf "%d", ($1 + $2) * 1000 }')
t0=$(now_ms)
build/beads-sched once --dry-run >/dev/null 2>&1
one_dry_ms=$(( $(now_ms) - t0 )) # agent now full: start-up + /health + no page

# ---- 4. once, room for all ----
curl -s -X POST "$AGENT_URL/_fake/config" -d '{"capacity": 1000000}' >/dev/null
m0=$(cpu_ticks "$MARIADBD_PID")
t0=$(now_ms)
/usr/bin/time -f '%U %S %M' -o "$W/all.time" build/beads-sched once 2>"$W/all.log"
all_ms=$(( $(now_ms) - t0 ))
m1=$(cpu_ticks "$MARIADBD_PID")
all_done=$(( $(sqlite3 "$W/scale.db" "SELECT count(*) FROM journal WHERE state = 'dispatched'") - one_done ))
all_span=$(sqlite3 "$W/scale.db" "SELECT max(dispatched_at) - min(created_at) FROM journal WHERE created_at >= $t0")
all_cpu=$(tail -1 "$W/all.time" | awk '{ printf "%d", ($1 + $2) * 1000 }')
all_rss=$(tail -1 "$W/all.time" | awk '{ print $3 }')
posts=$(curl -s "$AGENT_URL/_fake/stats" | jq '.posts')
rate=$(awk -v n="$all_done" -v ms="$all_ms" 'BEGIN { printf "%.0f", n * 1000 / ms }')
states=$(sqlite3 "$W/scale.db" "SELECT group_concat(state || '=' || n, ' ') FROM (SELECT state, count(*) n FROM journal GROUP BY state)")
echo "journal after the full cycle: $states"
if [ "$all_done" -lt $((ELIGIBLE - one_done)) ]; then
  echo "not every bead was dispatched; last lines of the daemon's log:"
  tail -n 5 "$W/all.log" | cut -c1-400
fi

# ---- 5. fresh data, cycles of at most CHUNK free slots until all are out ----
# The fake agent closes connections beyond 4,000 at once, so step 4 cannot
# succeed for every bead with it; here each `once` gets CHUNK free slots.
CHUNK=${BENCH_SCALE_CHUNK:-2500}
bench_stop_agent
bench_start_agent 1
export BEADS_SCHED_AGENT_URL=$AGENT_URL
fill
rm -f "$W/scale.db"*
build/beads-sched migrate >/dev/null
cycles=0 chunk_cpu=0
t0=$(now_ms)
while :; do
  active=$(curl -s "$AGENT_URL/_fake/stats" | jq '.active + .queued')
  curl -s -X POST "$AGENT_URL/_fake/config" -d "{\"capacity\": $((active + CHUNK))}" >/dev/null
  /usr/bin/time -f '%U %S' -o "$W/chunk.time" build/beads-sched once 2>>"$W/chunk.log"
  chunk_cpu=$((chunk_cpu + $(tail -1 "$W/chunk.time" | awk '{ printf "%d", ($1 + $2) * 1000 }')))
  cycles=$((cycles + 1))
  left=$(bench_sql scale -e "SELECT COUNT(*) FROM issues WHERE assignee = 'agent' AND status = 'open'")
  [ "$left" -gt 0 ] && [ "$cycles" -lt $((ELIGIBLE / CHUNK + 3)) ] || break
done
chunk_ms=$(( $(now_ms) - t0 ))
chunk_done=$(sqlite3 "$W/scale.db" "SELECT count(*) FROM journal WHERE state = 'dispatched'")
chunk_states=$(sqlite3 "$W/scale.db" "SELECT group_concat(state || '=' || n, ' ') FROM (SELECT state, count(*) n FROM journal GROUP BY state)")
echo "journal after $cycles cycles of at most $CHUNK: $chunk_states"

echo
echo "eligibility query plan (first page): $plan"
result_header
result_row "scale: issues / eligible" "$TOTAL / $ELIGIBLE"
result_row "scale: eligibility query, first page (256)" "$q_page ms (server time, median of 5)"
result_row "scale: eligibility query, last page (256)" "$q_last ms"
result_row "scale: eligibility query, all $ELIGIBLE rows" "$q_all ms"
result_row "scale: skip-note query (no criteria), every cycle" "$q_unready ms (LIMIT 100, none match: scans the backlog)"
result_row "scale: change probe (COUNT, MAX updated_at)" "$q_probe ms"
result_row "scale: once --dry-run, $ELIGIBLE free slots" "$dry_ms ms wall, $dry_cpu ms CPU, $dry_picks picks"
result_row "scale: once, 1 free slot (per-cycle overhead)" "$one_ms ms wall, $one_cpu ms CPU, $one_done dispatched"
result_row "scale: once --dry-run, agent full" "$one_dry_ms ms wall"
result_row "scale: once, room for all (full cycle)" "$all_ms ms wall for $all_done dispatches ($rate/s; first claim to last dispatched $all_span ms), $all_cpu ms CPU, max RSS $all_rss kB"
result_row "scale: full cycle, outcome" "$states (mariadbd CPU $(ticks_ms $((m1 - m0))) ms; POSTs seen $posts)"
result_row "scale: $cycles cycles of <= $CHUNK free slots" "$chunk_ms ms wall for $chunk_done dispatches, $chunk_cpu ms CPU (start-up each cycle)"
