#!/usr/bin/env bash
# What the binlog reader's replica polling costs: applied-position queries per second per replica
# (rwsplit_replica_polls_total of a sidecar), idle and under writes on the primary, with the
# default poll settings and with fast polls off (sidecar.fast_poll_interval_ms: 0, the former
# behaviour). Used for docs/BENCHMARKS.md.
#
# Usage: scripts/bench_poll_cost.sh [BASE_PORT] [SECONDS]
# The topology must be up (BASE_PORT=3390 scripts/cluster.sh up) and the sidecar built
# (cargo build -p binlog-reader --bins; CARGO_TARGET_DIR is honoured; BUILD=release for a
# release build).
set -euo pipefail
base=${1:-3310}
secs=${2:-10}
target=${CARGO_TARGET_DIR:-$(dirname "$0")/../target}
bin=$target/${BUILD:-debug}/rwsplit-binlog-reader
http=$((base + 3002))
dir=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
sql() { mariadb -h127.0.0.1 -P"$base" -uapp -papp-password rwsplit_test "$@"; }
sql -e "CREATE TABLE IF NOT EXISTS poll_cost (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"

# Sum of rwsplit_replica_polls_total over the replicas.
polls() { curl -s "http://127.0.0.1:$http/metrics" | awk '/^rwsplit_replica_polls_total\{/ { s += $NF } END { print s + 0 }'; }

# Writes on the primary for the whole measurement (and 2 s more), one autocommit INSERT at a
# time on one connection: $1 per second, or as fast as it goes for 0. The loop runs on the server
# and ends by itself.
write() {
  local pause=0
  [ "$1" != 0 ] && pause=$(awk -v r="$1" 'BEGIN { printf "%.4f", 1 / r }')
  sql <<SQL &
DELIMITER //
BEGIN NOT ATOMIC
  DECLARE t DATETIME(6) DEFAULT SYSDATE(6) + INTERVAL $((secs + 3)) SECOND;
  WHILE SYSDATE(6) < t DO
    INSERT INTO poll_cost (v) VALUES (1);
    IF $pause > 0 THEN DO SLEEP($pause); END IF;
  END WHILE;
END//
SQL
  writer=$!
}

for fast in default 0; do
  extra=""
  [ "$fast" = 0 ] && extra="  fast_poll_interval_ms: 0"
  cat > "$dir/sidecar.yaml" <<YAML
servers:
  - { name: primary, host: 127.0.0.1, port: $base, role: primary }
  - { name: replica1, host: 127.0.0.1, port: $((base + 1)), role: replica }
  - { name: replica2, host: 127.0.0.1, port: $((base + 2)), role: replica }
monitor:
  user: rwsplit_monitor
  password: monitor-password
sidecar:
  http_listen: 127.0.0.1:$http
  server_id: $((base + 4100))
$extra
YAML
  "$bin" --config "$dir/sidecar.yaml" >"$dir/sidecar.log" 2>&1 &
  pid=$!
  sleep 3
  for load in idle 20 200 0; do
    [ "$load" != idle ] && write "$load"
    sleep 1
    before=$(polls); rows_before=$(sql -N -e "SELECT COALESCE(MAX(id), 0) FROM poll_cost")
    sleep "$secs"
    after=$(polls); rows_after=$(sql -N -e "SELECT COALESCE(MAX(id), 0) FROM poll_cost")
    if [ "$load" != idle ]; then wait "$writer"; writer=0; fi
    case $load in idle) what="idle";; 0) what="writes as fast as one connection goes";; *) what="$load writes/s";; esac
    awk -v f="$fast" -v w="$what" -v n=$((after - before)) -v s="$secs" -v r=$((rows_after - rows_before)) 'BEGIN {
      printf "fast_poll_interval_ms %-7s %-40s %7.1f writes/s %7.1f polls/s per replica\n", f, w, r / s, n / s / 2 }'
    sleep 2
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=0
done
