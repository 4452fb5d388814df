#!/usr/bin/env python3
"""Checks the queries of ops/monitoring against promtool and a real /metrics.

    check_queries.py METRICS_FILE DASHBOARD_JSON [ALERTS_YML]

Every expression in the Grafana dashboard (and in the alert rules, if
given) must parse (promtool check rules, each wrapped in a recording rule,
Grafana's $__rate_interval / $__interval read as 5m / 1m), and every metric
it names must be one the daemon exports: a name in METRICS_FILE (the text
of a real /metrics scrape), histogram series suffixes included, or a series
Prometheus itself makes (up). The dashboard's datasource must be the
$datasource variable everywhere, never a fixed uid. Prints one line per
problem and exits 1 if there is any.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "sum", "min", "max", "avg", "count", "stddev", "stdvar",
    "topk", "bottomk", "quantile", "count_values", "group", "atan2",
}
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def exported_names(metrics_text):
    names = set()
    for line in metrics_text.splitlines():
        m = re.match(r"# (?:HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(\w*)", line)
        if not m:
            continue
        names.add(m.group(1))
        if line.startswith("# TYPE") and m.group(2) == "histogram":
            names.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
    return names


def metric_names(expr):
    """Metric names an expression selects (label matchers, strings, ranges,
    grouping lists and functions left out)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)           # strings
    e = re.sub(r"\{[^}]*\}", " ", e)                        # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                       # ranges, subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def grafana_to_promql(expr):
    return expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$__range", "1h")


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    exported = exported_names(open(sys.argv[1]).read())
    if not exported:
        print("%s: no metric names (not a /metrics scrape?)" % sys.argv[1])
        return 1
    problems = []
    dash = json.load(open(sys.argv[2]))
    queries = []  # (where, expr)
    tvars = [v.get("name") for v in dash.get("templating", {}).get("list", []) if v.get("type") == "datasource"]
    if "datasource" not in tvars:
        problems.append("dashboard: no datasource variable named 'datasource'")

    def walk(obj, where):
        if isinstance(obj, dict):
            ds = obj.get("datasource")
            if isinstance(ds, dict) and ds.get("uid") != "${datasource}":
                problems.append("%s: datasource uid %r is fixed, not ${datasource}" % (where, ds.get("uid")))
            for k, v in obj.items():
                walk(v, where)
        elif isinstance(obj, list):
            for v in obj:
                walk(v, where)

    for p in dash.get("panels", []):
        where = "dashboard panel %r" % p.get("title")
        walk(p, where)
        targets = p.get("targets", [])
        if not targets:
            problems.append("%s: no query" % where)
        for t in targets:
            queries.append((where, grafana_to_promql(t.get("expr", ""))))
    if len(sys.argv) == 4:
        rules = yaml.safe_load(open(sys.argv[3]))
        for g in rules.get("groups", []):
            for r in g.get("rules", []):
                queries.append(("alert %s" % r.get("alert", r.get("record")), r.get("expr", "")))

    for where, expr in queries:
        for name in sorted(metric_names(expr)):
            if name not in exported and name not in PROMETHEUS_OWN:
                problems.append("%s: metric %s is not exported by beads-sched" % (where, name))

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "queries.yml")
        doc = {"groups": [{"name": "queries", "rules": [
            {"record": "check:query_%d" % i, "expr": expr} for i, (_, expr) in enumerate(queries)]}]}
        with open(path, "w") as f:
            yaml.safe_dump(doc, f)
        out = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
        if out.returncode != 0:
            problems.append("promtool does not parse every query: %s" % (out.stdout + out.stderr).strip())

    for p in problems:
        print("FAIL - " + p)
    print("%d queries checked, %d problem(s)" % (len(queries), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
