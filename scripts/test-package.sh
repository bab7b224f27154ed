#!/usr/bin/env bash
# The .deb packages install on this machine, both services start from their systemd units
# against the local topology and answer /healthz, the proxy serves a query and reloads on
# ExecReload, and purging leaves no file and no process behind.
#
# No systemd runs in these containers, so each unit's ExecStartPre and ExecStart lines run as
# written, with its EnvironmentFile, as an unprivileged user with no new privileges (what
# DynamicUser= and NoNewPrivileges= give), and the hardening directives are checked in the
# installed unit (with `systemd-analyze verify` where it exists). Packages the debug binaries
# (PROFILE=debug): the test is about packaging, not optimisation. Needs root (dpkg -i) and the
# topology on RWSPLIT_TEST_BASE_PORT (default 3310); refuses to touch an existing install.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BASE_PORT=${RWSPLIT_TEST_BASE_PORT:-3310}
PKGS=(rwsplit-proxy rwsplit-binlog-reader rwsplit-common)
say() { echo "test-package: $*"; }
die() { echo "test-package: FAIL: $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
  [ -n "${RWSPLIT_REQUIRE_CLUSTER:-}" ] && die "needs root to install packages"
  say "SKIP: needs root (dpkg -i)"; exit 0
fi
for p in "${PKGS[@]}"; do
  if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q installed; then
    die "$p is already installed here; this test installs and purges it: remove it first"
  fi
done
[ -e /etc/rwsplit ] && die "/etc/rwsplit exists (not ours): move it away first"

OUT="$ROOT/.scratch/dist"
rm -rf "$OUT"
PROFILE=debug OUT="$OUT" DEB_COMPRESS=none scripts/package.sh

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  dpkg --purge "${PKGS[@]}" >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "installing $(ls "$OUT")"
dpkg -i "$OUT"/*.deb >/dev/null
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
for bin in rwsplit-proxy rwsplit-binlog-reader; do
  got=$("/usr/bin/$bin" --version)
  [ "$got" = "$bin $version" ] || die "$bin --version printed '$got', expected '$bin $version'"
  unit=/lib/systemd/system/$bin.service
  [ -f "$unit" ] || die "$unit not installed"
  for want in "DynamicUser=yes" "ProtectSystem=strict" "NoNewPrivileges=yes" "Restart=on-failure" \
              'ExecReload=/bin/kill -HUP $MAINPID' "ExecStart=/usr/bin/$bin --config /etc/rwsplit/rwsplit.yaml"; do
    grep -qxF "$want" "$unit" || die "$unit lacks '$want'"
  done
  if command -v systemd-analyze >/dev/null 2>&1; then
    # verify exits 0 on values it ignores ("Failed to parse …"): any output is a failure.
    out=$(systemd-analyze verify --man=no "$unit" 2>&1) || true
    [ -z "$out" ] || die "systemd-analyze verify $unit: $out"
    # systemd's own exposure score (0 = locked down, 10 = unprotected): stay at "OK" or better.
    systemd-analyze security --offline=true --threshold=20 "$unit" >/dev/null \
      || die "$unit: exposure above 2.0: systemd-analyze security --offline=true $unit"
  fi
done
[ "$(stat -c %a /etc/rwsplit/rwsplit.env)" = 600 ] || die "/etc/rwsplit/rwsplit.env must be mode 0600"
say "--version, units and conffiles ok"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listen=$(free_port); http=$(free_port); reader_http=$(free_port)
cat > /etc/rwsplit/rwsplit.yaml <<YAML
location: zone-a
servers:
  - { name: primary,  host: 127.0.0.1, port: $BASE_PORT, role: primary, location: zone-a }
  - { name: replica1, host: 127.0.0.1, port: $((BASE_PORT + 1)), role: replica, location: zone-a }
  - { name: replica2, host: 127.0.0.1, port: $((BASE_PORT + 2)), role: replica, location: zone-b }
routing:
  location_fallback: [zone-b]
monitor:
  user: rwsplit_monitor
  password_env: RWSPLIT_MONITOR_PASSWORD
proxy:
  listen: 127.0.0.1:$listen
  http_listen: 127.0.0.1:$http
  users:
    - name: app
      password_env: RWSPLIT_APP_PASSWORD
  lag_source:
    sidecar:
      url: http://127.0.0.1:$reader_http/lag
sidecar:
  http_listen: 127.0.0.1:$reader_http
  server_id: $((BASE_PORT + 4000))
YAML
printf 'RWSPLIT_MONITOR_PASSWORD=monitor-password\nRWSPLIT_APP_PASSWORD=app-password\n' > /etc/rwsplit/rwsplit.env

# Runs a unit the way systemd would here: EnvironmentFile, ExecStartPre, then ExecStart in the
# background as nobody with no new privileges. Prints the main pid.
start_unit() {
  local unit=/lib/systemd/system/$1.service env_file line
  local -a env=()
  env_file=$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$unit")
  while IFS= read -r line; do
    case "$line" in ''|'#'*) ;; *) env+=("$line") ;; esac
  done < "$env_file"
  local run=(env -i PATH=/usr/bin:/bin "${env[@]}" setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs)
  line=$(sed -n 's/^ExecStartPre=//p' "$unit")
  [ -z "$line" ] || "${run[@]}" $line >/dev/null || die "$1: ExecStartPre failed: $line"
  line=$(sed -n 's/^ExecStart=//p' "$unit")
  "${run[@]}" $line >"$OUT/$1.log" 2>&1 &
  echo $!
}

wait_healthy() { # name port
  local deadline=$((SECONDS + 30))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2/healthz")" = 200 ]; do
    [ $SECONDS -lt $deadline ] || { cat "$OUT/$1.log" >&2; die "$1: /healthz not 200 after 30 s"; }
    sleep 0.2
  done
  say "$1: /healthz 200"
}

reader_pid=$(start_unit rwsplit-binlog-reader); pids+=("$reader_pid")
proxy_pid=$(start_unit rwsplit-proxy); pids+=("$proxy_pid")
wait_healthy rwsplit-binlog-reader "$reader_http"
wait_healthy rwsplit-proxy "$http"
[ "$(ps -o user= -p "$proxy_pid" | tr -d ' ')" != root ] || die "the proxy runs as root"

client=$(command -v mariadb || command -v mysql)
got=$("$client" --no-defaults -h127.0.0.1 -P"$listen" -uapp -papp-password -N -e 'SELECT 40 + 2')
[ "$got" = 42 ] || die "a query through the installed proxy returned '$got'"
say "a query through the proxy works"

# ExecReload, as systemd would run it with MAINPID.
reload=$(sed -n 's/^ExecReload=//p' /lib/systemd/system/rwsplit-proxy.service)
MAINPID=$proxy_pid eval "$reload"
deadline=$((SECONDS + 10))
until curl -s "http://127.0.0.1:$http/metrics" | grep -q '^rwsplit_config_reloads_total{result="ok"} 1'; do
  [ $SECONDS -lt $deadline ] || die "ExecReload did not reload the proxy"
  sleep 0.2
done
say "ExecReload reloads the configuration"

kill -TERM "$proxy_pid" "$reader_pid"
for pid in "$proxy_pid" "$reader_pid"; do
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && die "pid $pid did not stop on SIGTERM"
done
pids=()

dpkg --purge "${PKGS[@]}" >/dev/null
for f in /usr/bin/rwsplit-proxy /usr/bin/rwsplit-binlog-reader /lib/systemd/system/rwsplit-proxy.service \
         /lib/systemd/system/rwsplit-binlog-reader.service /etc/rwsplit /usr/share/doc/rwsplit-common; do
  [ ! -e "$f" ] || die "$f left behind after purge"
done
for exe in /proc/[0-9]*/exe; do
  case "$(readlink "$exe" 2>/dev/null)" in
    /usr/bin/rwsplit-*) die "a process still runs $(readlink "$exe") after purge" ;;
  esac
done
trap - EXIT
say "ok: installed, started, healthy, reloaded, purged with nothing left"
