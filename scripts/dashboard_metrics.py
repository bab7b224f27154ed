#!/usr/bin/env python3
"""Every rwsplit_* metric a Grafana panel or a Prometheus rule uses must be defined in the code.

Metric names are a user interface (DESIGN.md §6): a panel whose metric was renamed shows nothing
and an alert on it never fires. This reads the names used in dashboards/ (JSON `expr` fields and
rule files), drops recording-rule outputs and histogram suffixes, and looks for each as a string
literal in the Rust sources. Exit 1 with the list of missing names.
"""
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = re.compile(r"\brwsplit_[a-z0-9_]+\b")
SUFFIXES = ("_bucket", "_sum", "_count")


def exprs_in_json(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from exprs_in_json(value)
    elif isinstance(node, list):
        for item in node:
            yield from exprs_in_json(item)


def main():
    used, recorded = {}, set()
    for path in sorted(glob.glob(os.path.join(ROOT, "dashboards", "*.json"))):
        with open(path) as f:
            doc = json.load(f)
        for expr in exprs_in_json(doc):
            for name in NAME.findall(expr):
                used.setdefault(name, path)
    for path in sorted(glob.glob(os.path.join(ROOT, "dashboards", "*.rules.yml"))):
        with open(path) as f:
            for line in f:
                m = re.match(r"\s*-?\s*record:\s*(\S+)", line)
                if m:
                    recorded.add(m.group(1))
                    continue
                if re.match(r"\s*-?\s*expr:", line) or line.startswith(" " * 6):
                    for name in NAME.findall(line.split("#")[0]):
                        used.setdefault(name, path)
    if not used:
        print("dashboard_metrics: no rwsplit_* metric found in dashboards/: nothing checked", file=sys.stderr)
        return 1

    sources = []
    for path in glob.glob(os.path.join(ROOT, "*", "src", "**", "*.rs"), recursive=True):
        with open(path) as f:
            sources.append(f.read())
    code = "\n".join(sources)

    missing = []
    for name, where in sorted(used.items()):
        if name in recorded or ":" in name:
            continue
        base = name
        for suffix in SUFFIXES:
            if base.endswith(suffix) and f'"{base[: -len(suffix)]}"' in code:
                base = base[: -len(suffix)]
                break
        if f'"{base}"' not in code:
            missing.append(f"{name} (used in {os.path.relpath(where, ROOT)})")
    if missing:
        print("metrics used by dashboards/rules but not defined in the code:", file=sys.stderr)
        for m in missing:
            print("  " + m, file=sys.stderr)
        return 1
    print(f"dashboard_metrics: {len(used)} metric names used in dashboards/ are all defined in the code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
