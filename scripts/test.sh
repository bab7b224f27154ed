#!/usr/bin/env bash
# `make test`: everything, on a fresh machine: install what is missing, start a real MariaDB
# topology, then unit tests, integration tests, dashboard/alert checks, fmt and clippy.
# Any failure fails the whole run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies"
scripts/install-deps.sh

step "the repository is self-contained (no test, bench or script reads outside it)"
python3 scripts/check_self_contained.py

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building binaries (the integration tests run them)"
cargo build --workspace --bins --locked

step "starting the shared test topology (primary :3310, replicas :3311, :3312)"
scripts/cluster.sh up
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true' EXIT # also when a step fails
# Under `make test` a missing topology is a failure, never a skip.
export RWSPLIT_REQUIRE_CLUSTER=1
# Every test binary shares this topology; destructive tests start private ones on free ports.
export RWSPLIT_TEST_BASE_PORT=3310

step "cargo test (unit and integration tests against the real topology)"
cargo test --workspace --locked --no-fail-fast

step "Debian packages: install, start from the units against the topology, /healthz, purge"
scripts/test-package.sh

step "dashboards and alert rules"
scripts/check-dashboards.sh

step "deployment: compose files, image recipe, Kubernetes manifests"
scripts/check-deploy.sh

echo
echo "make test: all checks passed"
