#!/usr/bin/env bash
# ops/monitoring: the alert rules load and pass their unit tests
# (promtool), and every query of the dashboard and the rules parses and
# names only metrics a real beads-sched serves on /metrics. Also proves the
# check catches a misspelt metric.
source "$(dirname "$0")/lib.sh"

MON=$BS_SOURCE_DIR/ops/monitoring
CHECK=$BS_SOURCE_DIR/tests/monitoring/check_queries.py

if out=$(promtool check rules "$MON/alerts.yml" 2>&1); then t_ok "promtool check rules alerts.yml"; else t_fail "promtool check rules: $out"; fi
if out=$(cd "$MON" && promtool test rules alerts_test.yml 2>&1); then t_ok "promtool test rules alerts_test.yml"; else t_fail "promtool test rules: $out"; fi
t_eq "every alert has for:, severity, summary and a runbook section that exists" "" "$(python3 - "$MON/alerts.yml" "$BS_SOURCE_DIR/ops/RUNBOOK.md" <<'PY'
import re, sys, yaml
rules = [r for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"]]
anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip("# \n").lower()).replace(" ", "-")
           for h in open(sys.argv[2]) if h.startswith("#")}
for r in rules:
    a = r.get("annotations", {})
    if not r.get("for") or r.get("labels", {}).get("severity") not in ("critical", "warning") or not a.get("summary"):
        print(r["alert"], "lacks for/severity/summary")
    rb = a.get("runbook", "")
    if not rb.startswith("ops/RUNBOOK.md#") or rb.split("#", 1)[1] not in anchors:
        print(r["alert"], "runbook", rb, "has no section")
PY
)"
t_eq "every alert is tested in alerts_test.yml" "" "$(python3 - "$MON/alerts.yml" "$MON/alerts_test.yml" <<'PY'
import sys, yaml
alerts = {r["alert"] for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"]}
tested = {a["alertname"] for t in yaml.safe_load(open(sys.argv[2]))["tests"] for a in t.get("alert_rule_test", [])}
print(" ".join(sorted(alerts - tested)))
PY
)"

# A real /metrics, from a daemon that dispatched something.
t_new_db current
t_agent --capacity 10
t_env "$T_TMP/mon.db"
APORT=$(free_port)
export BEADS_SCHED_LISTEN=127.0.0.1:$APORT
t_bead m1
"$BS_BIN" run 2>"$T_TMP/mon.log" &
pid=$!
t_wait 10 bash -c "[ \"\$(curl -sf $T_AGENT_URL/_fake/stats | jq .posts)\" = 1 ]" || t_fail "nothing dispatched"
curl -sf "http://127.0.0.1:$APORT/metrics" >"$T_TMP/metrics.txt"
kill -TERM "$pid"; wait "$pid" || true

if out=$(python3 "$CHECK" "$T_TMP/metrics.txt" "$MON/dashboard.json" "$MON/alerts.yml" 2>&1); then
  t_ok "dashboard and alert queries parse and name exported metrics ($(tail -1 <<<"$out"))"
else
  t_fail "query check: $out"
fi
# The check must fail on a misspelt metric, naming it.
sed 's/beads_sched_dispatch_latency_seconds_bucket/beads_sched_dispatch_latncy_seconds_bucket/' \
  "$MON/dashboard.json" >"$T_TMP/misspelt.json"
set +e; out=$(python3 "$CHECK" "$T_TMP/metrics.txt" "$T_TMP/misspelt.json" 2>&1); rc=$?; set -e
t_eq "a misspelt metric fails the check" 1 "$rc"
t_match "and the check names it" "metric beads_sched_dispatch_latncy_seconds_bucket is not exported" "$out"
# ...and on a query that does not parse.
sed 's/sum by (outcome) (rate(/sum by (outcome) (rate((/' "$MON/dashboard.json" >"$T_TMP/broken.json"
set +e; out=$(python3 "$CHECK" "$T_TMP/metrics.txt" "$T_TMP/broken.json" 2>&1); rc=$?; set -e
t_eq "a query that does not parse fails the check" 1 "$rc"
# ...and on a fixed datasource uid.
sed 's/"uid": "${datasource}"/"uid": "P1809F7CD0C75ACF3"/' "$MON/dashboard.json" >"$T_TMP/fixed.json"
set +e; out=$(python3 "$CHECK" "$T_TMP/metrics.txt" "$T_TMP/fixed.json" 2>&1); rc=$?; set -e
t_eq "a fixed datasource uid fails the check" 1 "$rc"
t_done
