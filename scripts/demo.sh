#!/usr/bin/env bash
# `make demo`: a local primary with two replicas, the binlog-reader sidecar and the proxy, a
# sample read/write workload through the proxy, then a live view of where queries went and each
# replica's lag until Ctrl-C, which stops everything the demo started.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CONFIG=examples/local-cluster.yaml
RUN=.scratch/demo
PROXY_PORT=6033 PROXY_HTTP=9033 SIDECAR_HTTP=9034
mkdir -p "$RUN"
step() { printf '\n==> %s\n' "$*"; }

pids=()
cleanup() {
  trap - EXIT
  step "stopping the demo"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  scripts/cluster.sh down
}

for port in $PROXY_PORT $PROXY_HTTP $SIDECAR_HTTP; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "demo: error: port $port is already in use (another demo still running?): stop it first" >&2
    exit 1
  fi
done

step "installing what is missing (MariaDB, sysbench)"
scripts/install-deps.sh --demo

step "building rwsplit (release)"
cargo build --release --bins

step "starting the topology: primary 127.0.0.1:3310, replica1 :3311 (zone-a), replica2 :3312 (zone-b)"
trap cleanup EXIT
trap 'exit 0' INT TERM # Ctrl-C is how the demo is meant to end
scripts/cluster.sh up

step "starting the binlog-reader sidecar (http://127.0.0.1:$SIDECAR_HTTP) and the proxy (127.0.0.1:$PROXY_PORT)"
RUST_LOG=${RUST_LOG:-info} target/release/rwsplit-binlog-reader --config "$CONFIG" >"$RUN/sidecar.log" 2>&1 &
pids+=($!)
RUST_LOG=${RUST_LOG:-info} target/release/rwsplit-proxy --config "$CONFIG" >"$RUN/proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && break
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null \
  || { echo "demo: the proxy did not start; see $RUN/proxy.log:" >&2; tail -n 20 "$RUN/proxy.log" >&2; exit 1; }
sleep 1 # let the monitor see every server once

mysql_proxy() { mariadb --no-defaults -h127.0.0.1 -P$PROXY_PORT -uapp -papp-password rwsplit_test "$@"; }

step "a few statements through the proxy: writes go to the primary, reads to a replica"
mysql_proxy -t -e "
  CREATE TABLE IF NOT EXISTS demo_events (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64), at TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP(3));
  INSERT INTO demo_events (note) VALUES ('hello through rwsplit');
  SELECT LAST_INSERT_ID() AS id_of_our_insert, @@port AS served_by_port;
  SELECT COUNT(*) AS events, @@port AS read_served_by_port FROM demo_events;
  BEGIN; SELECT @@port AS in_transaction_port; COMMIT;"

step "sample workload: sysbench oltp_read_write in autocommit mode through the proxy, 4 threads, 10 s"
echo "(autocommit reads go to replica1, in the proxy's own location zone-a; replica2 in zone-b"
echo " takes reads only when replica1 is unavailable or too far behind)"
SB=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-port=$PROXY_PORT --mysql-user=app
    --mysql-password=app-password --mysql-db=rwsplit_test --tables=2 --table-size=2000 --skip_trx=on --delete_inserts=0)
sysbench oltp_read_write "${SB[@]}" cleanup >/dev/null 2>&1 || true
sysbench oltp_read_write "${SB[@]}" prepare >"$RUN/sysbench-prepare.log" 2>&1
sysbench oltp_read_write "${SB[@]}" --threads=4 --time=10 --report-interval=2 run | grep -E '^\[|queries:|transactions:|errors'

summary() {
  echo
  echo "-- where queries went (rwsplit_queries_total by route and backend) --"
  curl -fsS "http://127.0.0.1:$PROXY_HTTP/metrics" 2>/dev/null \
    | awk '/^rwsplit_queries_total\{/ { match($0, /route="[^"]*"/); r=substr($0, RSTART+7, RLENGTH-8);
             match($0, /backend="[^"]*"/); b=substr($0, RSTART+9, RLENGTH-10); n[r" -> "b]+=$NF }
           END { for (k in n) printf "  %-28s %d\n", k, n[k] }' | sort
  echo "-- replica lag (sidecar /lag) --"
  curl -fsS "http://127.0.0.1:$SIDECAR_HTTP/lag" 2>/dev/null | python3 -c '
import json, sys
doc = json.load(sys.stdin)
for name, r in sorted(doc.get("replicas", {}).items()):
    lag = r.get("lag_ms")
    shown = "unknown" if lag is None else "%s ms" % lag
    print("  %-10s lag %s" % (name, shown))' || echo "  (sidecar not answering; see $RUN/sidecar.log)"
}
summary

cat <<MSG

Running. Try it yourself:
  mariadb -h127.0.0.1 -P$PROXY_PORT -uapp -papp-password rwsplit_test
  proxy:   http://127.0.0.1:$PROXY_HTTP/metrics   http://127.0.0.1:$PROXY_HTTP/servers   http://127.0.0.1:$PROXY_HTTP/healthz
  sidecar: http://127.0.0.1:$SIDECAR_HTTP/metrics  http://127.0.0.1:$SIDECAR_HTTP/lag
  logs:    $RUN/proxy.log  $RUN/sidecar.log
A light workload keeps running; the summary refreshes every 5 s. Ctrl-C stops everything.
MSG
while true; do
  mysql_proxy -e "INSERT INTO demo_events (note) VALUES ('tick'); SELECT COUNT(*) FROM demo_events" >/dev/null 2>&1 || true
  sysbench oltp_read_write "${SB[@]}" --threads=2 --time=5 --rate=50 run >/dev/null 2>&1 || sleep 5
  summary
done
