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
