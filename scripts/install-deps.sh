#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine, skipping what is there:
# MariaDB server and client, sysbench, the openssl CLI, Prometheus (promtool checks the alert rules),
# docker-compose (checks the compose files; no engine needed), kubectl (builds the Kubernetes
# overlays) and kubernetes-validate (in a venv), the Rust fmt/clippy components,
# and the real client drivers the end-to-end tests drive (integration-tests/clients/install.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

need_apt=()
command -v mariadbd >/dev/null 2>&1 || command -v mysqld >/dev/null 2>&1 || need_apt+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || command -v mysql >/dev/null 2>&1 || need_apt+=(mariadb-client)
command -v sysbench >/dev/null 2>&1 || need_apt+=(sysbench)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# TLS tests make certificates with it (client TLS, reload, TLS=1 topologies).
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ "${1:-}" != "--demo" ]; then
  command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
  command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
  # `kubectl kustomize` builds the Kubernetes overlays (any kubectl will do; Debian's is enough).
  command -v kubectl >/dev/null 2>&1 || need_apt+=(kubernetes-client)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing ${need_apt[*]}: run 'sudo apt-get update && sudo apt-get install -y ${need_apt[*]}'" >&2
    exit 1
  fi
  echo "install-deps: installing ${need_apt[*]} (apt-get)..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian's packages start their own services where an init system runs; the tests start
  # their own servers on other ports, so stop any that came up to keep the machine quiet.
  for svc in mariadb prometheus; do
    command -v service >/dev/null 2>&1 && service "$svc" stop >/dev/null 2>&1 || true
  done
fi

if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" \
      || rustup component add "$component"
  done
fi

if [ "${1:-}" != "--demo" ] && [ -x "$ROOT/integration-tests/clients/install.sh" ]; then
  "$ROOT/integration-tests/clients/install.sh"
fi
if [ "${1:-}" != "--demo" ]; then
  "$ROOT/scripts/install-deploy-tools.sh" # kubernetes-validate in .scratch/venv-deploy
fi
echo "install-deps: ok"
