# Shared helpers for the bash integration tests. Source it; ctest sets
# BS_BIN, BS_FAKE_AGENT, BS_SOURCE_DIR, BS_TEST_MYSQL_DIR, BS_TEST_MYSQL_PORT.
set -euo pipefail

: "${BS_BIN:?run through ctest}" "${BS_FAKE_AGENT:?}" "${BS_SOURCE_DIR:?}" "${BS_TEST_MYSQL_DIR:?}"
HARNESS=$BS_SOURCE_DIR/tests/harness
T_TMP=$(mktemp -d "${TMPDIR:-/tmp}/bs-it.XXXXXX")
T_FAILS=0
T_PASSES=0
T_AGENT_PIDS=()
T_DBS=()

# A command failing under set -e ends the script: say which, where.
set -o errtrace
t_on_err() {
  local rc=$1 line=$2 cmd=$3
  [[ $- == *e* ]] || return 0 # a deliberate `set +e` section
  echo "FAIL - command failed (status $rc) at line $line: $cmd" >&2
  [ -s "$T_TMP/once.log" ] && tail -5 "$T_TMP/once.log" >&2
  return 0
}
trap 't_on_err $? $LINENO "$BASH_COMMAND"' ERR

t_cleanup() {
  for p in "${T_AGENT_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in "${T_DBS[@]}"; do t_sql_root -e "DROP DATABASE IF EXISTS \`$d\`" 2>/dev/null || true; done
  if [ -n "${T_KEEP:-}" ]; then echo "# kept $T_TMP" >&2; else rm -rf "$T_TMP"; fi
}
trap t_cleanup EXIT

t_sql_root() { mariadb --no-defaults --user=root --socket="$BS_TEST_MYSQL_DIR/mysqld.sock" --batch --skip-column-names "$@"; }
# t_sql SQL: runs SQL in the current test database, prints rows tab-separated.
t_sql() { t_sql_root "$T_DB" -e "$1"; }

# t_new_db current|older [dolt]: fresh database; sets T_DB and T_DOLT_URL.
t_new_db() {
  T_DB="bs_${$}_${#T_DBS[@]}"
  T_DBS+=("$T_DB")
  bash "$HARNESS/newdb.sh" "$BS_TEST_MYSQL_DIR" "$T_DB" "$@" >/dev/null
  T_DOLT_URL="mysql://beads:beads-test-pw@127.0.0.1:$BS_TEST_MYSQL_PORT/$T_DB"
}

# t_bead ID [key=value ...]: inserts a bead assigned to the agent, open,
# priority 2, with acceptance criteria; keys override columns.
t_bead() {
  local id=$1; shift
  declare -A c=([title]="'bead $id'" [description]="'do $id'" [design]="''"
                [acceptance_criteria]="'it works'" [notes]="''" [status]="'open'" [priority]=2
                [issue_type]="'task'" [assignee]="'agent'" [created_at]="UTC_TIMESTAMP()"
                [updated_at]="UTC_TIMESTAMP() - INTERVAL 1 HOUR")
  local kv
  for kv in "$@"; do c[${kv%%=*}]=${kv#*=}; done
  local cols="id" vals="'$id'" k
  for k in "${!c[@]}"; do cols+=", $k"; vals+=", ${c[$k]}"; done
  t_sql "INSERT INTO issues ($cols) VALUES ($vals)"
}

# t_beads PREFIX N: N open beads PREFIX1..PREFIXN assigned to the agent,
# priority 2, with acceptance criteria, in one INSERT.
t_beads() {
  t_sql "INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status, priority,
         issue_type, assignee, created_at, updated_at)
         SELECT CONCAT('$1', seq), 'bead', 'd', '', 'ac', '', 'open', 2, 'task', 'agent', UTC_TIMESTAMP(),
                UTC_TIMESTAMP() FROM seq_1_to_$2"
}

# t_agent [fake-agent args...]: starts a fake agent; sets T_AGENT_URL.
t_agent() {
  # A name no earlier agent of this run used: a port file left by one
  # (killed since) would be read before the new agent writes its own.
  T_AGENT_SEQ=$((${T_AGENT_SEQ:-0} + 1))
  local pf="$T_TMP/agent.$T_AGENT_SEQ.port"
  rm -f "$pf"
  "$BS_FAKE_AGENT" --port 0 --port-file "$pf" --token test-token "$@" >"$T_TMP/agent.log" 2>&1 &
  T_AGENT_PIDS+=($!)
  local i
  for i in $(seq 100); do [ -s "$pf" ] && break; sleep 0.05; done
  [ -s "$pf" ] || { echo "fake agent did not start"; cat "$T_TMP/agent.log"; exit 1; }
  T_AGENT_URL="http://127.0.0.1:$(cat "$pf")"
}
t_agent_stop() { kill "${T_AGENT_PIDS[-1]}" 2>/dev/null || true; }
t_fake() { curl -sf -X POST "$T_AGENT_URL/_fake/$1" -H 'Content-Type: application/json' -d "${2:-{\}}" >/dev/null; }
t_stats() { curl -sf "$T_AGENT_URL/_fake/stats"; }
t_posts() { t_stats | jq -r "${1:-.posts}"; }

# free_port: a loopback TCP port free right now (for admin endpoints).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# t_needs_hooks: for a test that uses the fault seams (crash points,
# BEADS_SCHED_TEST_*_MS pauses, the clock skew), which only a build with
# -DBEADS_SCHED_TEST_HOOKS=ON has. Elsewhere the test exits 77, which ctest
# reports as skipped, rather than fail for a reason that is not a bug.
t_needs_hooks() {
  [ "${BS_TEST_HOOKS:-0}" = 1 ] && return 0
  echo "SKIPPED: $(basename "$0") needs a build configured with -DBEADS_SCHED_TEST_HOOKS=ON"
  exit 77
}

# t_env STORE: exports the daemon's configuration for the current db/agent.
t_env() {
  export BEADS_SCHED_DOLT_URL=$T_DOLT_URL BEADS_SCHED_AGENT_URL=$T_AGENT_URL
  export BEADS_SCHED_AGENT_TOKEN=test-token BEADS_SCHED_STORE=$1 BEADS_SCHED_LISTEN=
  export BEADS_SCHED_PROBE_INTERVAL=200ms BEADS_SCHED_DISPATCH_INTERVAL=2s
  export BEADS_SCHED_HTTP_TIMEOUT=3s BEADS_SCHED_LOG_LEVEL=info
}
# t_once [args]: one cycle; stderr to $T_TMP/once.log; returns its status.
t_once() { "$BS_BIN" once "$@" 2>>"$T_TMP/once.log"; }
t_store() { sqlite3 "$BEADS_SCHED_STORE" "$1"; }

t_ok() { T_PASSES=$((T_PASSES + 1)); echo "ok - $1"; }
t_fail() { T_FAILS=$((T_FAILS + 1)); echo "FAIL - $1"; }
# t_eq WHAT EXPECTED ACTUAL
t_eq() { if [ "$2" == "$3" ]; then t_ok "$1"; else t_fail "$1: expected '$2', got '$3'"; fi; }
# t_match WHAT REGEX TEXT
t_match() { if [[ $3 =~ $2 ]]; then t_ok "$1"; else t_fail "$1: '$3' does not match /$2/"; fi; }
# t_wait SECONDS COMMAND...: polls until COMMAND succeeds.
t_wait() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -ge $deadline ] && return 1; sleep 0.1; done
}
t_done() {
  echo "$T_PASSES passed, $T_FAILS failed"
  if [ "$T_FAILS" -eq 0 ]; then exit 0; else exit 1; fi
}

# t_job_prompt JOB: the prompt the agent received for service job JOB
# (GET /jobs/JOB, as the real contract returns it).
t_job_prompt() {
  curl -sf -H 'Authorization: Bearer test-token' "$T_AGENT_URL/jobs/$1" | jq -r '.prompt // ""'
}
# t_job_prompt_id JOB: that prompt's "Job id:" line.
t_job_prompt_id() { t_job_prompt "$1" | sed -n 's/^Job id: //p' | head -1; }

# t_agent_claims: does what the real agent's first action is, knowing only
# its prompt: for every job the fake agent holds, note "claimed by agent
# <the prompt's job id>" on its bead (once). A prompt without a job id
# gets no note (the agent could not know one).
t_agent_claims() {
  local bead job id seen="$T_TMP/claimed.jobs" sql=""
  touch "$seen"
  while read -r bead job; do
    [ -n "$job" ] || continue
    grep -qx "$job" "$seen" && continue
    echo "$job" >>"$seen"
    id=$(t_job_prompt_id "$job")
    [ -n "$id" ] || continue
    sql+="UPDATE issues SET notes = CONCAT(notes, IF(notes = '', '', '\n'), 'claimed by agent $id'),
          updated_at = UTC_TIMESTAMP() WHERE id = '$bead' AND notes NOT LIKE '%claimed by agent $id%';"
  done < <(t_stats | jq -r '.jobs[] | "\(.bead_id) \(.job_id)"')
  [ -z "$sql" ] || t_sql "$sql"
}

# t_agent_progress: every running or timed-out job's agent notes progress on
# its bead (the service does not stop a timed-out agent). One statement.
t_agent_progress() {
  local ids
  ids=$(t_stats | jq -r '[.jobs[] | select(.status == "running" or .status == "timeout") | .bead_id | "'"'"'\(.)'"'"'"] | unique | join(",")')
  [ -n "$ids" ] || return 0
  t_sql "UPDATE issues SET notes = CONCAT(notes, '\nprogress'), updated_at = UTC_TIMESTAMP()
         WHERE id IN ($ids) AND status = 'in_progress'"
}

# t_agents_work ROUNDS: the test's agents at work for ROUNDS half-seconds
# (t_agent_claims, then t_agent_progress, every 0.5 s).
t_agents_work() {
  local i
  for i in $(seq "$1"); do t_agent_claims; t_agent_progress; sleep 0.5; done
}

# t_agents_until COUNT TIMEOUT_S: the test's agents at work until COUNT
# beads are dispatched, or their agents' claim notes seen (journal state
# dispatched or unknown), or TIMEOUT_S seconds have passed.
t_agents_until() {
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    t_agent_claims; t_agent_progress
    [ "$(t_store "SELECT count(DISTINCT bead_id) FROM journal WHERE state IN ('dispatched', 'unknown')")" = "$1" ] && break
    sleep 0.5
  done
}

# t_agent_close BEAD: the agent of BEAD's running job closes it as the
# beads-task-runner does, naming the job id its prompt gave it.
t_agent_close() {
  local job id
  job=$(t_stats | jq -r --arg b "$1" '[.jobs[] | select(.bead_id == $b)] | last | .job_id')
  id=$(t_job_prompt_id "$job")
  t_sql "UPDATE issues SET status = 'closed', closed_at = UTC_TIMESTAMP(), updated_at = UTC_TIMESTAMP(),
         notes = CONCAT(notes, '\ncompleted by agent $id') WHERE id = '$1'"
}

# t_notes_count BEAD REGEX: how many lines of BEAD's notes match REGEX.
t_notes_count() { t_sql "SELECT notes FROM issues WHERE id='$1'" | sed 's/\\n/\n/g' | grep -cE "$2" || true; }

# t_consistent WHAT: every bead POSTed at most once per attempt; no attempt
# left in a non-terminal state other than dispatched, or unknown with the
# agent's claim note proving it reached the agent; every dispatched attempt's
# bead is in_progress with the job id in its notes. T_OTHER_STORES=1: other
# daemons share the fake agent, so its POST counts are not this store's.
t_consistent() {
  local what=$1 dup bad job bead st notes
  # Accepted POSTs per bead against the attempts that may have reached the
  # agent (a retry after the agent stopped is a new attempt, not a re-POST).
  local b n
  dup=""
  while IFS=$'\t' read -r b n; do
    [ -n "$b" ] || continue
    [ "$n" -le "$(t_store "SELECT count(*) FROM journal WHERE bead_id='$b' AND posting_at IS NOT NULL AND state <> 'refused'")" ] || dup+=" $b"
  done < <(t_stats | jq -r '.by_bead | to_entries[] | "\(.key)\t\(.value)"')
  [ -n "${T_OTHER_STORES:-}" ] || t_eq "$what: no attempt POSTed twice" "" "$(echo $dup)"
  bad=$(t_store "SELECT bead_id || ':' || state FROM journal WHERE state IN ('claiming','claimed','posting')" | xargs)
  local disp
  while IFS='|' read -r bead disp; do
    [ -n "$bead" ] || continue
    notes=$(t_sql "SELECT notes FROM issues WHERE id='$bead'")
    [[ $notes == *"claimed by agent $disp"* ]] || bad+=" $bead:unknown"
  done < <(t_store "SELECT bead_id, dispatch_id FROM journal WHERE state = 'unknown'")
  t_eq "$what: no attempt left half-way" "" "$(echo $bad)"
  bad=""
  while IFS='|' read -r bead job; do
    [ -n "$bead" ] || continue
    st=$(t_sql "SELECT status FROM issues WHERE id='$bead'")
    notes=$(t_sql "SELECT notes FROM issues WHERE id='$bead'")
    [[ $st == in_progress && $notes == *"dispatched: job=$job"* ]] || bad+=" $bead($st)"
  done < <(t_store "SELECT bead_id, job_id FROM journal WHERE state = 'dispatched'")
  t_eq "$what: Dolt agrees with the store" "" "$bad"
}
