#!/usr/bin/env bash
# The README's first command: sets up a local demo stack on this machine and
# runs the scheduler's main job against it.
#   - installs packages (ops/dev/setup.sh) and builds build/beads-sched
#   - starts a private MariaDB (the Dolt stand-in) with a beads schema and
#     sample beads, and the fake agent service (capacity 4, jobs take 3 s)
#   - runs the daemon until every eligible bead is dispatched, stops it with
#     SIGTERM, and prints the beads' notes and the store's history
# Everything lives in $DEMO_DIR (default /tmp/beads-sched-demo) and is torn
# down at the end, except the store and logs, which are kept for inspection.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DEMO=${DEMO_DIR:-/tmp/beads-sched-demo}
PORT=${DEMO_MYSQL_PORT:-33951}

bash ops/dev/setup.sh
bash ops/build.sh build RelWithDebInfo --target beads-sched --target fake-agent >/dev/null

rm -rf "$DEMO"
mkdir -p "$DEMO"
cleanup() {
  [ -n "${DAEMON_PID:-}" ] && kill "$DAEMON_PID" 2>/dev/null || true
  [ -n "${AGENT_PID:-}" ] && kill "$AGENT_PID" 2>/dev/null || true
  bash "$ROOT/tests/harness/mariadb.sh" stop "$DEMO/mariadb" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== starting MariaDB (Dolt stand-in) on 127.0.0.1:$PORT"
bash tests/harness/mariadb.sh start "$DEMO/mariadb" "$PORT" >/dev/null
bash tests/harness/newdb.sh "$DEMO/mariadb" code current
sql() { mariadb --no-defaults --user=root --socket="$DEMO/mariadb/mysqld.sock" code "$@"; }

echo "== loading sample beads"
sql <<'SQL'
INSERT INTO issues (id, title, description, design, acceptance_criteria, notes, status, priority,
                    issue_type, assignee, created_at, updated_at, defer_until) VALUES
 ('demo-1', 'Rotate the backup key', 'The backup key expires next week.', '', 'New key in Vault; old key revoked.', '', 'open', 0, 'task', 'agent', UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL 50 MINUTE, NULL),
 ('demo-2', 'Bump the ingress chart', 'Chart 4.10 fixes a CVE.', '', 'Chart at 4.10; pods healthy.', '', 'open', 1, 'task', 'agent', UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL 40 MINUTE, NULL),
 ('demo-3', 'Document the DNS failover', 'Nobody remembers how it works.', '', 'Runbook page exists and was tried once.', '', 'open', 2, 'task', 'agent', UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL 30 MINUTE, NULL),
 ('demo-4', 'Clean up old PVCs', 'Released volumes pile up.', '', 'No Released PVs older than 30 days.', '', 'open', 2, 'chore', 'agent', UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL 20 MINUTE, NULL),
 ('demo-5', 'Raise the Grafana memory limit', 'It OOMs on big dashboards.', '', 'No OOMKilled events for a day.', '', 'open', 3, 'bug', 'agent', UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL 10 MINUTE, NULL),
 ('demo-6', 'Tidy the Terraform warnings', 'Deprecated resources warn on plan.', '', 'terraform validate prints no deprecation warnings.', '', 'open', 4, 'chore', 'agent', UTC_TIMESTAMP(), UTC_TIMESTAMP() - INTERVAL 5 MINUTE, NULL),
 ('demo-7', 'Something vague', 'Make it better.', '', '  ', '', 'open', 1, 'task', 'agent', UTC_TIMESTAMP(), UTC_TIMESTAMP(), NULL),
 ('demo-8', 'Blocked by demo-1', 'Needs the new key.', '', 'Done after demo-1.', '', 'open', 0, 'task', 'agent', UTC_TIMESTAMP(), UTC_TIMESTAMP(), NULL),
 ('demo-9', 'Deferred to next month', 'Not yet.', '', 'Later.', '', 'open', 0, 'task', 'agent', UTC_TIMESTAMP(), UTC_TIMESTAMP(), UTC_TIMESTAMP() + INTERVAL 30 DAY),
 ('demo-10', 'Assigned to a human', 'Alice has it.', '', 'Alice is done.', '', 'open', 0, 'task', 'alice', UTC_TIMESTAMP(), UTC_TIMESTAMP(), NULL);
INSERT INTO dependencies (issue_id, depends_on_id, type, created_by) VALUES ('demo-8', 'demo-1', 'blocks', 'demo');
SQL
sql -t -e "SELECT id, priority AS p, status, assignee, defer_until, TRIM(acceptance_criteria) <> '' AS has_ac FROM issues ORDER BY id"

echo "== starting the fake agent service (capacity 4, jobs run 3 s)"
echo "demo-token" > "$DEMO/agent-token"
build/fake-agent --port 0 --port-file "$DEMO/agent.port" --token demo-token --capacity 4 \
  --job-ms 3000 --log "$DEMO/agent-posts.jsonl" >"$DEMO/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 100); do [ -s "$DEMO/agent.port" ] && break; sleep 0.1; done
AGENT_PORT=$(cat "$DEMO/agent.port")

echo "== running beads-sched (logs below; store $DEMO/beads-sched.db)"
export BEADS_SCHED_DOLT_URL="mysql://beads:beads-test-pw@127.0.0.1:$PORT/code"
export BEADS_SCHED_AGENT_URL="http://127.0.0.1:$AGENT_PORT"
export BEADS_SCHED_AGENT_TOKEN_FILE="$DEMO/agent-token"
export BEADS_SCHED_STORE="$DEMO/beads-sched.db"
export BEADS_SCHED_PROBE_INTERVAL=500ms BEADS_SCHED_DISPATCH_INTERVAL=2s BEADS_SCHED_LISTEN=
build/beads-sched config | sed 's/^/  /'
build/beads-sched run 2> >(tee "$DEMO/daemon.log" >&2) &
DAEMON_PID=$!
for _ in $(seq 120); do
  n=$(sqlite3 "$BEADS_SCHED_STORE" "SELECT count(*) FROM journal WHERE state = 'dispatched'" 2>/dev/null || echo 0)
  [ "$n" -ge 6 ] && break
  sleep 0.5
done
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" && echo "== daemon stopped cleanly (exit 0)"
DAEMON_PID=

echo "== beads after the run"
sql -t -e "SELECT id, status, REPLACE(notes, '\n', ' | ') AS notes FROM issues ORDER BY id"
echo "== attempts (sqlite3 $BEADS_SCHED_STORE 'SELECT * FROM attempts')"
sqlite3 -box "$BEADS_SCHED_STORE" "SELECT bead_id, attempt, state, job_id, claimed_at, dispatched_at FROM attempts ORDER BY bead_id"
echo "== history"
sqlite3 -box "$BEADS_SCHED_STORE" "SELECT at, bead_id, attempt, event, job_id FROM history"
echo "== the agent received $(wc -l <"$DEMO/agent-posts.jsonl") jobs; store and logs kept in $DEMO"
