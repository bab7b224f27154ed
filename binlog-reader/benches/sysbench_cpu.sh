#!/usr/bin/env bash
# Binlog events parsed per CPU-second by the sidecar while sysbench oltp_write_only drives the
# primary at full speed: CPU from /proc/<pid>/stat, events from the sidecar's own /metrics.
#
#   BASE_PORT=3320 scripts/cluster.sh up
#   cargo build --release -p binlog-reader
#   BASE_PORT=3320 binlog-reader/benches/sysbench_cpu.sh [seconds] [threads]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BASE_PORT=${BASE_PORT:-3320}
SECONDS_RUN=${1:-30}
THREADS=${2:-4}
HTTP=127.0.0.1:$((BASE_PORT + 6000))
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/rwsplit-binlog-reader}
WORK=$(mktemp -d)
SB=(--mysql-host=127.0.0.1 --mysql-port="$BASE_PORT" --mysql-user=app --mysql-password=app-password
    --mysql-db=rwsplit_test --tables=4 --table-size=10000)

cat >"$WORK/c.yaml" <<EOF
servers:
  - {name: primary, host: 127.0.0.1, port: $BASE_PORT, role: primary}
  - {name: replica1, host: 127.0.0.1, port: $((BASE_PORT + 1)), role: replica}
  - {name: replica2, host: 127.0.0.1, port: $((BASE_PORT + 2)), role: replica}
monitor: {user: rwsplit_monitor, password: monitor-password}
sidecar: {http_listen: "$HTTP", server_id: $((BASE_PORT + 7000)), poll_interval_ms: 100}
EOF

sysbench oltp_write_only "${SB[@]}" prepare >/dev/null 2>&1 || true  # tables may exist already
"$BIN" --config "$WORK/c.yaml" >"$WORK/sidecar.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -sf "http://$HTTP/lag" | grep -q '"caught_up":true' && break; sleep 0.1; done

ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
events() { curl -sf "http://$HTTP/metrics" | awk '/^rwsplit_binlog_events_total/ {s += $2} END {print s + 0}'; }
txns() { curl -sf "http://$HTTP/metrics" | awk '/^rwsplit_binlog_transactions_total/ {print $2}'; }
HZ=$(getconf CLK_TCK)

t0=$(ticks); e0=$(events); x0=$(txns); s0=$(date +%s.%N)
sysbench oltp_write_only "${SB[@]}" --threads="$THREADS" --time="$SECONDS_RUN" --report-interval=0 run \
  >"$WORK/sysbench.txt"
sleep 1 # let the sidecar drain the tail of the stream
t1=$(ticks); e1=$(events); x1=$(txns); s1=$(date +%s.%N)

awk -v t0="$t0" -v t1="$t1" -v e0="$e0" -v e1="$e1" -v x0="$x0" -v x1="$x1" -v s0="$s0" -v s1="$s1" -v hz="$HZ" '
BEGIN {
  cpu = (t1 - t0) / hz; wall = s1 - s0; ev = e1 - e0; tx = x1 - x0;
  printf "wall %.1f s, sidecar CPU %.2f s (%.1f%% of one core)\n", wall, cpu, 100 * cpu / wall;
  printf "events %d (%.0f/s), transactions %d (%.0f/s)\n", ev, ev / wall, tx, tx / wall;
  if (cpu > 0) printf "events per CPU-second: %.0f\n", ev / cpu;
}'
grep -E "transactions:|queries:" "$WORK/sysbench.txt"
curl -sf "http://$HTTP/lag"; echo
