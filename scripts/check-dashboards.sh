#!/usr/bin/env bash
# Checks the shipped alert/recording rules with promtool, and that every metric a dashboard panel
# or rule uses is one the code defines (a renamed metric must not leave a panel silently empty).
# The end-to-end version of this check, against live /metrics, is integration-tests/tests/dashboards.rs.
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
