#!/usr/bin/env bash
# The runbook's end-to-end smoke test (ops/RUNBOOK.md) on the local stack:
# the daemon as the pod runs it (`run`, production intervals, JSON logs), a
# bead created, then assigned to the agent; within a few seconds it carries
# the old dispatcher's two notes; SIGTERM stops the daemon with status 0.
source "$(dirname "$0")/lib.sh"
ISO='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z'

t_new_db current
t_agent --capacity 10
t_env "$T_TMP/smoke.db"
# The ConfigMap's intervals and log format, not the fast test ones.
export BEADS_SCHED_PROBE_INTERVAL=1s BEADS_SCHED_DISPATCH_INTERVAL=2m BEADS_SCHED_REAP_INTERVAL=1m
export BEADS_SCHED_LOG_FORMAT=json BEADS_SCHED_HTTP_TIMEOUT=15s
LOG=$T_TMP/daemon.log
"$BS_BIN" run 2>"$LOG" &
DAEMON=$!
stop_daemon() { kill -KILL "$DAEMON" 2>/dev/null || true; t_cleanup; }
trap stop_daemon EXIT
t_wait 15 grep -q '"msg":"dolt reachable"' "$LOG" || { cat "$LOG"; t_fail "daemon did not reach the database"; t_done; }
t_wait 15 grep -q '"msg":"agent healthy"' "$LOG" || { cat "$LOG"; t_fail "daemon did not reach the agent"; t_done; }
t_ok "daemon up: database and agent reachable"

# bd create: a bead nobody is assigned to; the daemon leaves it alone.
t_bead smoke-1 "assignee=NULL" "updated_at=UTC_TIMESTAMP()" \
  "title='auto-dispatch smoke test'" "description='Read /etc/hostname inside the agent sandbox and close.'" \
  "acceptance_criteria='A note includes hostname= and the bead is closed.'"
sleep 2
t_eq "an unassigned bead is not dispatched" "open 0" "$(t_sql "SELECT status, LENGTH(notes) FROM issues WHERE id='smoke-1'" | xargs)"

# bd assign smoke-1 agent
t_sql "UPDATE issues SET assignee='agent', updated_at=UTC_TIMESTAMP() WHERE id='smoke-1'"
start=$SECONDS
both_notes() {
  local n; n=$(t_sql "SELECT notes FROM issues WHERE id='smoke-1'")
  [[ $n == *"auto-dispatcher claimed at"* && $n == *"dispatched: job="* ]]
}
if t_wait 5 both_notes; then
  t_ok "both notes within $((SECONDS - start)) s of the assignment (limit 5 s)"
else
  t_fail "notes after 5 s: '$(t_sql "SELECT notes FROM issues WHERE id='smoke-1'")'"
fi
notes=$(t_sql "SELECT notes FROM issues WHERE id='smoke-1'")
t_match "claim note as the old dispatcher wrote it" "auto-dispatcher claimed at $ISO" "$notes"
job=$(t_stats | jq -r '.jobs[] | select(.bead_id=="smoke-1") | .job_id')
t_match "dispatched note names the agent's job" "dispatched: job=$job" "$notes"
t_eq "bead in_progress, still the agent's" "in_progress agent" "$(t_sql "SELECT status, assignee FROM issues WHERE id='smoke-1'" | xargs)"
t_eq "one POST /execute" 1 "$(t_posts)"
t_eq "store: the attempt is recorded dispatched with that job" "$job" \
  "$(t_store "SELECT job_id FROM attempts WHERE bead_id='smoke-1' AND state='dispatched'")"

# The pod's stop: SIGTERM, and a kill if it is not gone within 10 s.
start=$SECONDS
kill -TERM "$DAEMON"
# Polled, not a watchdog subshell: a subshell killed right after its fork
# can run this script's EXIT trap (which removes the test's directory).
while kill -0 "$DAEMON" 2>/dev/null && [ $((SECONDS - start)) -lt 10 ]; do sleep 0.1; done
kill -KILL "$DAEMON" 2>/dev/null || true
status=0
wait "$DAEMON" || status=$?
t_eq "SIGTERM: exit status 0 within 10 s" 0 "$status"
t_ok "stopped $((SECONDS - start)) s after SIGTERM"
bad=$(grep -cv '^{.*}$' "$LOG" || true)
t_eq "every log line is a JSON object" 0 "$bad"
t_eq "every log line parses as JSON" "$(wc -l <"$LOG")" "$(jq -c . "$LOG" 2>/dev/null | wc -l)"
t_match "the stop is logged" '"msg":"stopped"' "$(tail -1 "$LOG")"
t_done
