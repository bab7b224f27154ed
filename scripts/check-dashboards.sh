#!/usr/bin/env bash
# Checks the shipped alert/recording rules with promtool, and that every metric a dashboard panel
# or rule uses is one the code defines (a renamed metric must not leave a panel silently empty).
# The end-to-end version of this check, against live /metrics and a real Prometheus that must return
# data for every panel's query, is integration-tests/tests/dashboards.rs; the dashboard JSON's lint
# (data source variable, units, titles) is integration-tests/tests/dashboard_lint.rs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
for rules in dashboards/*.rules.yml; do
  promtool check rules "$rules"
done
for t in dashboards/tests/*.yml; do
  promtool test rules "$t"
done
python3 scripts/dashboard_metrics.py
# Every alert has a promtool unit test in which it fires (an untested alert may never fire).
python3 - <<'PY'
import glob, re, sys
rules = open("dashboards/rwsplit.rules.yml").read()
alerts = re.findall(r"^\s*- alert:\s*(\S+)", rules, re.M)
tested = set()
for path in glob.glob("dashboards/tests/*.yml"):
    text = open(path).read()
    # an `alertname: X` whose exp_alerts list is not empty
    for m in re.finditer(r"alertname:\s*(\S+)\s*\n\s*exp_alerts:\s*(\[\])?", text):
        if not m.group(2):
            tested.add(m.group(1))
missing = [a for a in alerts if a not in tested]
if missing:
    sys.exit("alerts with no promtool test that makes them fire: " + ", ".join(missing))
print(f"every alert ({len(alerts)}) has a promtool test in which it fires")
PY
# Every panel expression over the binlog readers' families (per replica, per binlog stream:
# exported once per reader, and readers run in pairs) has a two-reader test, verbatim.
python3 - <<'PY'
import json, re, sys
doc = json.load(open("dashboards/rwsplit-overview.json"))
def exprs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                yield v
            else:
                yield from exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from exprs(v)
READER = re.compile(r"\brwsplit_(replica_(lag_seconds|lag_known|seconds_behind_master|io_lag_seconds|up|applied_gtid_seq|poll_errors_total)|binlog_[a-z_]+)\b")
tested = set(re.findall(r"^\s*- expr:\s*(.+?)\s*$", open("dashboards/tests/two_readers.test.yml").read(), re.M))
missing = sorted({e for e in exprs(doc) if READER.search(e) and e not in tested})
if missing:
    sys.exit("panel expressions over reader families with no two-reader test in dashboards/tests/two_readers.test.yml:\n  " + "\n  ".join(missing))
print("every panel over the readers' families has a two-reader test")
PY
