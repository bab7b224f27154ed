#!/usr/bin/env bash
# Lag accuracy side by side: the sidecar's lag_ms, Seconds_Behind_Master and pt-heartbeat
# (percona-toolkit), sampled every ~200 ms on replica1 through the same induced delays:
#   1. SQL thread stopped for 3 s, then started again (pt-heartbeat writing every 100 ms);
#   2. MASTER_DELAY=2 under the same steady writes;
#   3. an idle primary (pt-heartbeat stopped).
# Prints CSV: phase,elapsed_ms,reader_lag_ms,seconds_behind_master,pt_heartbeat_s
#
#   BASE_PORT=3320 scripts/cluster.sh up
#   cargo build --release -p binlog-reader
#   BASE_PORT=3320 binlog-reader/benches/lag_accuracy.sh > lag.csv
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BASE_PORT=${BASE_PORT:-3320}
HTTP=127.0.0.1:$((BASE_PORT + 6001))
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/rwsplit-binlog-reader}
WORK=$(mktemp -d)
R1=$((BASE_PORT + 1))
CLI=(mariadb --no-defaults -h127.0.0.1 -uadmin -padmin-password -N -B)
PT=(-h 127.0.0.1 -u admin -p admin-password -D rwsplit_test)

cat >"$WORK/c.yaml" <<EOF
servers:
  - {name: primary, host: 127.0.0.1, port: $BASE_PORT, role: primary}
  - {name: replica1, host: 127.0.0.1, port: $R1, role: replica}
monitor: {user: rwsplit_monitor, password: monitor-password}
sidecar: {http_listen: "$HTTP", server_id: $((BASE_PORT + 7001)), poll_interval_ms: 100}
EOF

"$BIN" --config "$WORK/c.yaml" >"$WORK/sidecar.log" 2>&1 &
PID=$!
HB=""
MON=""
cleanup() {
  kill $PID 2>/dev/null || true
  [ -n "$HB" ] && kill "$HB" 2>/dev/null || true
  kill "$MON" 2>/dev/null || true
  "${CLI[@]}" -P$R1 -e "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0; START SLAVE" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

pt-heartbeat "${PT[@]}" -P "$BASE_PORT" --update --create-table --interval 0.1 >/dev/null 2>&1 &
HB=$!
# pt-heartbeat's own reading of replica1, refreshed every 100 ms into a file.
pt-heartbeat "${PT[@]}" -P "$R1" --monitor --master-server-id 1 --interval 0.1 --file "$WORK/pt" >/dev/null 2>&1 &
MON=$!
sleep 2

sample() { # phase t0
  local lag sbm pth
  lag=$(curl -sf "http://$HTTP/lag" | sed -E 's/.*"replica1":\{"lag_ms":([0-9a-z]+).*/\1/')
  sbm=$("${CLI[@]/-N/}" -P$R1 -e "SHOW SLAVE STATUS\G" | awk '/Seconds_Behind_Master/ {print $2}')
  pth=$(awk '{print $1; exit}' "$WORK/pt" 2>/dev/null | tr -d s)
  echo "$1,$(( $(date +%s%3N) - $2 )),$lag,$sbm,$pth"
}
run_for() { # phase seconds
  local t0 end; t0=$(date +%s%3N); end=$(( t0 + $2 * 1000 ))
  while [ "$(date +%s%3N)" -lt $end ]; do sample "$1" "$t0"; sleep 0.1; done
}

echo "phase,elapsed_ms,reader_lag_ms,seconds_behind_master,pt_heartbeat_s"
run_for steady 2
"${CLI[@]}" -P$R1 -e "STOP SLAVE SQL_THREAD"
run_for sql_stopped 3
"${CLI[@]}" -P$R1 -e "START SLAVE SQL_THREAD"
run_for caught_up 2
"${CLI[@]}" -P$R1 -e "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=2; START SLAVE"
run_for master_delay_warmup 3 >/dev/null
run_for master_delay_2 4
"${CLI[@]}" -P$R1 -e "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0; START SLAVE"
kill "$HB"; HB=""
sleep 1
run_for idle 5
