#!/usr/bin/env bash
# The Python tools the deployment checks use, in a venv under .scratch/ (idempotent):
# kubernetes-validate (offline Kubernetes JSON schemas; pinned, so the versions validated
# against do not move under us) and PyYAML (which it brings).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.scratch/venv-deploy"
KUBERNETES_VALIDATE=1.37.0
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import kubernetes_validate, yaml, sys; sys.exit(kubernetes_validate.__version__ != '$KUBERNETES_VALIDATE')" 2>/dev/null; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE"
fi
