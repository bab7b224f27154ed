#!/usr/bin/env python3
"""Nothing in the repository may read a file outside it: `make test` must pass on a plain clone.

The binlog-reader's tests once read binlog files from a folder that sat beside the repository on
the developers' machines only, so a user's clone failed. This looks at every Rust
source, shell and Python script, Makefile and Cargo manifest, and fails on:

- a Rust `include_str!`/`include_bytes!` path, or a `CARGO_MANIFEST_DIR` `.join("…")` path, that
  resolves outside the repository root;
- a relative path in a script that climbs out of the repository (`$ROOT/../x`, `../../x`),
  counted from the script's own folder;
- an absolute path into a developer's machine (`/work/`, `/home/`, `/root/`).

Exit 1 with `file:line: why` for each finding.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_DIRS = {".git", "target", ".scratch", "node_modules", "__pycache__", ".venv", "fuzz"}
SUFFIXES = (".rs", ".sh", ".py", ".toml", ".js", ".yml", ".yaml")
NAMES = ("Makefile",)

INCLUDE = re.compile(r'include_(?:str|bytes)!\(\s*"([^"]+)"')
MANIFEST_JOIN = re.compile(r'env!\("CARGO_MANIFEST_DIR"\)\)?((?:\s*\.join\(\s*"[^"]*"\s*\))+)')
JOIN_PART = re.compile(r'\.join\(\s*"([^"]*)"\s*\)')
# A literal path that climbs two levels or more: inside the repository's own layout no file
# needs that except through a crate-relative include, which is resolved exactly above.
CLIMB = re.compile(r'(?:\.\./){2,}[A-Za-z_][\w.-]*')
ABSOLUTE = re.compile(r'(?<![\w.])/(?:work|home|root)/[\w.-]+')


def inside(path):
    real = os.path.normpath(path)
    return real == ROOT or real.startswith(ROOT + os.sep)


def crate_dir(path):
    d = os.path.dirname(path)
    while inside(d):
        if os.path.exists(os.path.join(d, "Cargo.toml")):
            return d
        d = os.path.dirname(d)
    return ROOT


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def check(path):
    rel = os.path.relpath(path, ROOT)
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    found = []
    if path.endswith(".rs"):
        for m in INCLUDE.finditer(text):
            target = os.path.join(os.path.dirname(path), m.group(1))
            if not inside(target):
                found.append((line_of(text, m.start()), f"includes {m.group(1)}, outside the repository"))
        for m in MANIFEST_JOIN.finditer(text):
            parts = JOIN_PART.findall(m.group(1))
            target = os.path.join(crate_dir(path), *parts)
            if not inside(target):
                found.append((line_of(text, m.start()), f"reads {'/'.join(parts)} from CARGO_MANIFEST_DIR, outside the repository"))
    else:
        for m in CLIMB.finditer(text):
            target = os.path.join(os.path.dirname(path), m.group(0))
            if not inside(target):
                found.append((line_of(text, m.start()), f"{m.group(0)} climbs out of the repository"))
    for m in ABSOLUTE.finditer(text):
        found.append((line_of(text, m.start()), f"absolute path {m.group(0)} on a developer's machine"))
    return [f"{rel}:{line}: {why}" for line, why in found]


def main():
    problems = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            if name.endswith(SUFFIXES) or name in NAMES:
                path = os.path.join(dirpath, name)
                if os.path.abspath(path) == os.path.abspath(__file__):
                    continue
                problems += check(path)
    if problems:
        print("files that read outside the repository (a plain clone would fail):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print("self-contained: no test, bench or script reads outside the repository")
    return 0


if __name__ == "__main__":
    sys.exit(main())
