#!/usr/bin/env bash
# Installs the real client libraries the proxy_clients tests drive through the proxy:
# PyMySQL (with `cryptography`, which its caching_sha2_password RSA path needs) and
# mysql-connector-python in a venv under .scratch/, Node's mysql2 under
# integration-tests/clients/node/. Idempotent: does nothing when they are already there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.scratch/venv-clients"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import pymysql, mysql.connector, cryptography' 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check PyMySQL mysql-connector-python cryptography
fi

if command -v npm >/dev/null 2>&1; then
  if [ ! -d "$here/node/node_modules/mysql2" ]; then
    (cd "$here/node" && npm install --no-audit --no-fund --silent)
  fi
else
  echo "install.sh: npm not found; the Node mysql2 test will be skipped" >&2
fi
echo "clients installed: $venv, $here/node/node_modules"
