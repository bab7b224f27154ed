#!/usr/bin/env python3
"""Checks the container image's recipe without a Docker engine (none runs on the test machines).

- .dockerignore keeps build output, scratch data and history out of the build context
  (target/ alone is gigabytes; .scratch/ holds test databases and TLS keys);
- every file the Dockerfile COPYs from the context exists and is not ignored;
- the runtime stage runs as a numeric non-root user (Kubernetes' runAsNonRoot can verify only a
  numeric one) and has a HEALTHCHECK;
- docker/healthcheck.sh, the HEALTHCHECK command, succeeds against a live /healthz answering
  200 and fails against 503 and against a closed port.
Exit 1 with what is wrong.
"""
import fnmatch
import http.server
import os
import re
import socket
import subprocess
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MUST_IGNORE = ["target/release/rwsplit-proxy", "proxy/target/x", ".scratch/venv/x", ".git/HEAD",
               "integration-tests/clients/node/node_modules/x/index.js"]


def ignore_patterns():
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("#")]


def ignored(path, patterns):
    """Docker's rules, as far as this repo uses them: a pattern matches the path or a parent
    folder of it; `**/` matches any number of folders."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        pat = pat.rstrip("/")
        alts = [pat]
        if pat.startswith("**/"):
            alts.append(pat[3:])
        for p in alts:
            for prefix in prefixes:
                if fnmatch.fnmatch(prefix, p) or (p.startswith("**/") and any(
                        fnmatch.fnmatch("/".join(parts[j:i + 1]), p[3:])
                        for i in range(len(parts)) for j in range(i + 1))):
                    return True
    return False


def dockerfile_problems():
    problems = []
    patterns = ignore_patterns()
    for path in MUST_IGNORE:
        if not ignored(path, patterns):
            problems.append(f".dockerignore: {path} would be sent to the build")
    with open(os.path.join(ROOT, "docker", "Dockerfile")) as f:
        text = f.read()
    stages = re.split(r"(?m)^FROM ", text)[1:]
    if len(stages) < 2:
        return problems + ["docker/Dockerfile: expected a build stage and a runtime stage"]
    for stage in stages:
        for m in re.finditer(r"(?m)^COPY (?!--from)(.+)$", stage):
            srcs = m.group(1).split()[:-1]
            for src in srcs:
                if src == ".":
                    continue
                if not os.path.exists(os.path.join(ROOT, src)):
                    problems.append(f"docker/Dockerfile: COPY {src}: no such file")
                elif ignored(src, patterns):
                    problems.append(f"docker/Dockerfile: COPY {src}: excluded by .dockerignore")
    runtime = stages[-1]
    users = re.findall(r"(?m)^USER\s+(\S+)", runtime)
    if not users:
        problems.append("docker/Dockerfile: the runtime stage has no USER (runs as root)")
    else:
        uid = users[-1].split(":")[0]
        if not uid.isdigit() or uid == "0":
            problems.append(f"docker/Dockerfile: USER {users[-1]}: must be a numeric non-zero uid")
    if not re.search(r"(?m)^HEALTHCHECK\s+.*CMD", runtime):
        problems.append("docker/Dockerfile: the runtime stage has no HEALTHCHECK")
    return problems


class Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        code = Health.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok\n" if code == 200 else b"no\n")

    def log_message(self, *args):
        pass


def healthcheck_problems():
    script = os.path.join(ROOT, "docker", "healthcheck.sh")
    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    server.handle_error = lambda *a: None  # the script hangs up after the status line
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def run(p):
        env = dict(os.environ, RWSPLIT_HEALTH_PORT=str(p))
        return subprocess.run(["bash", script], env=env, capture_output=True, timeout=20).returncode

    problems = []
    try:
        if run(port) != 0:
            problems.append("docker/healthcheck.sh fails against a healthy /healthz (200)")
        Health.status = 503
        if run(port) == 0:
            problems.append("docker/healthcheck.sh passes against an unhealthy /healthz (503)")
    finally:
        server.shutdown()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    if run(closed) == 0:
        problems.append("docker/healthcheck.sh passes with nothing listening")
    return problems


def main():
    problems = dockerfile_problems() + healthcheck_problems()
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        return 1
    print("image: .dockerignore, Dockerfile (non-root, HEALTHCHECK) and healthcheck.sh ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
