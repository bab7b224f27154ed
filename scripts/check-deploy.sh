#!/usr/bin/env bash
# Checks everything that deploys rwsplit, with no Docker engine and no Kubernetes cluster:
# - every compose file parses (`docker-compose config`);
# - the image recipe: .dockerignore, a non-root runtime with a HEALTHCHECK, and the
#   healthcheck script against a live HTTP endpoint (scripts/check_image.py);
# - Kubernetes: every overlay builds with `kubectl kustomize`, validates against current
#   Kubernetes schemas (kubernetes-validate, offline) and keeps its promises, with a self-test
#   that breaks each promise (deploy/kubernetes/check.py); the config it ships passes both
#   binaries' --check-config when they are built (BIN_DIR, default target/debug).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}
VENV="$ROOT/.scratch/venv-deploy"

for compose in docker/docker-compose*.yml; do
  docker-compose -f "$compose" config --quiet
  echo "$compose: valid"
done

python3 scripts/check_image.py

"$ROOT/scripts/install-deploy-tools.sh"
bin_args=()
if [ -x "$BIN_DIR/rwsplit-proxy" ] && [ -x "$BIN_DIR/rwsplit-binlog-reader" ]; then
  bin_args=(--bin-dir "$BIN_DIR")
else
  echo "check-deploy: no binaries in $BIN_DIR: the Kubernetes config is not run through --check-config" >&2
  [ -z "${RWSPLIT_REQUIRE_CLUSTER:-}" ] || { echo "check-deploy: make test builds them first" >&2; exit 1; }
fi
"$VENV/bin/python" deploy/kubernetes/check.py --self-test "${bin_args[@]}"
