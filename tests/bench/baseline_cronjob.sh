#!/usr/bin/env bash
# The setup beads-sched replaces, re-created for benchmarks: the two
# CronJobs of CONTRACTS.md section 1 (dispatcher every 2 min, reaper every
# 10 min), one process per step as they were: a shell per tick (the pod),
# curl for HTTP, jq for JSON, and the `mariadb` client standing in for `bd`
# (the real `bd` is a Go binary that loads its config and opens a connection
# per call; the mariadb client is lighter, so figures from this script are
# a lower bound on the old setup's cost). Pod creation itself is not
# modelled.
#
# Usage:
#   baseline_cronjob.sh dispatcher [INTERVAL_S (120) [TICKS (1)]]
#   baseline_cronjob.sh reaper     [INTERVAL_S (600) [TICKS (1)]]
#   baseline_cronjob.sh dispatcher-tick | reaper-tick     one tick, in this shell
# TICKS 0 runs until a tick finds nothing to do (dispatcher: agent busy or
# no eligible bead; reaper: nothing reaped). INTERVAL_S 0 runs ticks back
# to back. Each tick is a new `bash` process, like a new pod.
#
# Dispatcher tick: GET /health, jq .busy (BASELINE_BEADBOARD_URL set:
# BeadBoard's /api/agent-status instead); if not busy, the highest-priority
# open bead assigned to BASELINE_ASSIGNEE with non-empty acceptance criteria
# (ties: oldest updated_at); set it in_progress; note `auto-dispatcher
# claimed at <UTC ISO-8601>`; POST /execute with the bearer token (or
# BeadBoard's /api/agent-dispatch {"taskId"}); jq the job id; note
# `dispatched: job=<id>`. Any other HTTP answer: back to open, note
# `dispatch failed HTTP <code>: <body>`. One bead per tick.
# Exit status: 0 dispatched, 3 nothing eligible, 4 agent busy, 1 dispatch
# failed, 2 usage.
#
# Reaper tick: every in_progress bead of BASELINE_ASSIGNEE whose updated_at
# is more than BASELINE_STALE_MIN (30) minutes old gets the note `reaper: no
# progress for <N>m (threshold 30m) — blocking` and status blocked.
# Exit status: 0 something reaped, 3 nothing to reap.
#
# Environment: BASELINE_DB_HOST (127.0.0.1), BASELINE_DB_PORT (3306),
# BASELINE_DB_SOCKET (instead of host/port), BASELINE_DB_USER (beads),
# BASELINE_DB_PASSWORD, BASELINE_DB_NAME (code), BASELINE_AGENT_URL,
# BASELINE_AGENT_TOKEN, BASELINE_BEADBOARD_URL, BASELINE_ASSIGNEE (agent),
# BASELINE_STALE_MIN (30). BASELINE_EXEC_LOG: a file that gets one line per
# process the pipeline starts (for counting). BASELINE_DOLT=1: every write
# is versioned as bd does it on Dolt (CONTRACTS.md section 5): in the same
# client process, START TRANSACTION, the write, CALL DOLT_ADD('issues'),
# CALL DOLT_COMMIT('-m', 'bd: <verb> <id>', '--author', BASELINE_DOLT_AUTHOR)
# (default 'bd <bd@localhost>'); for a database with the Dolt emulation.
set -euo pipefail
SELF=${BASH_SOURCE[0]}
ASSIGNEE=${BASELINE_ASSIGNEE:-agent}
STALE_MIN=${BASELINE_STALE_MIN:-30}
TMP=${TMPDIR:-/tmp}

usage() {
  echo "usage: baseline_cronjob.sh dispatcher|reaper [INTERVAL_S [TICKS]] | dispatcher-tick | reaper-tick" >&2
  exit 2
}

# Runs an external command, counting it when BASELINE_EXEC_LOG is set.
x() {
  [ -z "${BASELINE_EXEC_LOG:-}" ] || printf '%s\n' "$1" >>"$BASELINE_EXEC_LOG"
  "$@"
}

# `bd` stand-in: one mariadb client process per statement.
db() {
  local conn=(--no-defaults --user="${BASELINE_DB_USER:-beads}")
  if [ -n "${BASELINE_DB_SOCKET:-}" ]; then
    conn+=(--socket="$BASELINE_DB_SOCKET")
  else
    conn+=(--host="${BASELINE_DB_HOST:-127.0.0.1}" --port="${BASELINE_DB_PORT:-3306}" --protocol=tcp)
  fi
  MYSQL_PWD=${BASELINE_DB_PASSWORD:-} x mariadb "${conn[@]}" --batch --raw -N \
    "${BASELINE_DB_NAME:-code}" -e "$1"
}

# SQL string literal of $2 into the variable named $1 (no subshell).
sqlq() {
  local s=${2//\\/\\\\}
  s=${s//\'/\\\'}
  printf -v "$1" "'%s'" "$s"
}

# A bd write command: the statement, versioned when BASELINE_DOLT=1.
dbw() { # VERB ID SQL
  if [ "${BASELINE_DOLT:-}" != 1 ]; then
    db "$3"
    return
  fi
  local msg author
  sqlq msg "bd: $1 $2"
  sqlq author "${BASELINE_DOLT_AUTHOR:-bd <bd@localhost>}"
  db "START TRANSACTION; $3; CALL DOLT_ADD('issues'); CALL DOLT_COMMIT('-m', $msg, '--author', $author)" >/dev/null
}

# bd note: beads' append rule, old + "\n" + new (no newline when empty).
note() {
  local id note
  sqlq id "$1"
  sqlq note "$2"
  dbw note "$1" "UPDATE issues SET notes = IF(notes = '', $note, CONCAT(notes, '\n', $note)),
      updated_at = UTC_TIMESTAMP() WHERE id = $id"
}

# bd update -s STATUS
set_status() {
  local id st
  sqlq id "$1"
  sqlq st "$2"
  dbw update "$1" "UPDATE issues SET status = $st, updated_at = UTC_TIMESTAMP() WHERE id = $id"
}

dispatcher_tick() {
  local busy bead id now body code resp job who
  sqlq who "$ASSIGNEE"
  # 1. busy? (an error reads as not busy; the POST will tell)
  if [ -n "${BASELINE_BEADBOARD_URL:-}" ]; then
    busy=$(x curl -sS --max-time 10 "$BASELINE_BEADBOARD_URL/api/agent-status" | x jq -r '.busy') || busy=
  else
    busy=$(x curl -sS --max-time 10 "$BASELINE_AGENT_URL/health" | x jq -r '.busy') || busy=
  fi
  if [ "$busy" = true ]; then
    echo "agent busy, skipping"
    return 4
  fi
  # 2. the highest-priority eligible bead (bd query ... --json)
  bead=$(db "SELECT JSON_OBJECT('id', id, 'title', title, 'description', description,
               'acceptance_criteria', acceptance_criteria, 'priority', priority)
             FROM issues WHERE assignee = $who AND status = 'open'
               AND acceptance_criteria <> ''
             ORDER BY priority ASC, updated_at ASC LIMIT 1")
  if [ -z "$bead" ]; then
    echo "no eligible bead"
    return 3
  fi
  id=$(x jq -r '.id' <<<"$bead")
  # 3. claim, 4. note
  set_status "$id" in_progress
  now=$(x date -u +%Y-%m-%dT%H:%M:%SZ)
  note "$id" "auto-dispatcher claimed at $now"
  # 5. POST
  resp=$TMP/baseline-dispatch.$$.body
  if [ -n "${BASELINE_BEADBOARD_URL:-}" ]; then
    body=$(x jq -nc --arg id "$id" '{taskId: $id}')
    code=$(x curl -sS --max-time 15 -o "$resp" -w '%{http_code}' -X POST \
      -H 'Content-Type: application/json' --data-binary "$body" \
      "$BASELINE_BEADBOARD_URL/api/agent-dispatch" || true)
  else
    body=$(x jq -c '{prompt: ("Work on bead " + .id + ": " + .title + "\n\n" + .description
                     + "\n\nAcceptance criteria:\n" + .acceptance_criteria),
                     agent: "beads-task-runner", max_budget_usd: 5.0, timeout_seconds: 2700,
                     metadata: {bead_id: .id}}' <<<"$bead")
    code=$(x curl -sS --max-time 15 -o "$resp" -w '%{http_code}' -X POST \
      -H "Authorization: Bearer ${BASELINE_AGENT_TOKEN:-}" -H 'Content-Type: application/json' \
      --data-binary "$body" "$BASELINE_AGENT_URL/execute" || true)
  fi
  code=${code:-000}
  if [ "$code" = 202 ] || [ "$code" = 200 ]; then
    job=$(x jq -r '.job_id' <"$resp")
    rm -f "$resp"
    note "$id" "dispatched: job=$job"
    echo "dispatched $id job=$job"
    return 0
  fi
  local text=""
  [ -f "$resp" ] && text=$(<"$resp")
  rm -f "$resp"
  set_status "$id" open
  note "$id" "dispatch failed HTTP $code: ${text:0:500}"
  echo "dispatch of $id failed: HTTP $code"
  return 1
}

reaper_tick() {
  local beads now id updated age mins who reaped=0
  sqlq who "$ASSIGNEE"
  # bd query 'assignee=agent AND status=in_progress' --json
  beads=$(db "SELECT COALESCE(JSON_ARRAYAGG(JSON_OBJECT('id', id,
               'updated_at', DATE_FORMAT(updated_at, '%Y-%m-%dT%H:%i:%sZ'))), '[]')
             FROM issues WHERE assignee = $who AND status = 'in_progress'")
  now=$(x date -u +%s)
  while IFS=$'\t' read -r id updated; do
    [ -n "$id" ] || continue
    # The original parsed the timestamp with python3; date -d does the same job.
    age=$(( now - $(x date -u -d "$updated" +%s) ))
    mins=$(( age / 60 ))
    if [ "$mins" -gt "$STALE_MIN" ]; then
      note "$id" "reaper: no progress for ${mins}m (threshold ${STALE_MIN}m) — blocking"
      set_status "$id" blocked
      echo "reaped $id (${mins}m)"
      reaped=$((reaped + 1))
    fi
  done < <(x jq -r '.[] | "\(.id)\t\(.updated_at)"' <<<"$beads")
  [ "$reaped" -gt 0 ] || { echo "nothing to reap"; return 3; }
  return 0
}

# Runs TICKS ticks of KIND, INTERVAL_S apart, each in a new bash process.
loop() {
  local kind=$1 interval=$2 ticks=$3 n=0 rc ok=0 failed=0 idle=0
  case "$interval$ticks" in *[!0-9]*) usage ;; esac
  while :; do
    n=$((n + 1))
    [ -z "${BASELINE_EXEC_LOG:-}" ] || printf 'bash\n' >>"$BASELINE_EXEC_LOG"
    rc=0
    bash "$SELF" "$kind-tick" >/dev/null || rc=$?
    case $rc in
      0) ok=$((ok + 1)) ;;
      3|4) idle=$((idle + 1)) ;;
      *) failed=$((failed + 1)) ;;
    esac
    if [ "$ticks" -eq 0 ]; then
      [ "$rc" -ne 3 ] && [ "$rc" -ne 4 ] || break
    elif [ "$n" -ge "$ticks" ]; then
      break
    fi
    [ "$interval" -eq 0 ] || sleep "$interval"
  done
  echo "$kind: ticks=$n done=$ok failed=$failed idle=$idle"
}

[ $# -ge 1 ] || usage
case "$1" in
  dispatcher-tick)
    [ -n "${BASELINE_AGENT_URL:-}${BASELINE_BEADBOARD_URL:-}" ] || { echo "set BASELINE_AGENT_URL" >&2; exit 2; }
    rc=0; dispatcher_tick || rc=$?; exit $rc ;;
  reaper-tick)
    rc=0; reaper_tick || rc=$?; exit $rc ;;
  dispatcher) loop dispatcher "${2:-120}" "${3:-1}" ;;
  reaper) loop reaper "${2:-600}" "${3:-1}" ;;
  *) usage ;;
esac
