#!/usr/bin/env bash
# sysbench oltp_read_write through rwsplit-proxy under each routing.consistency level: throughput,
# the share of statements that ran on replicas, and how the reads with a requirement ended
# (rwsplit_consistent_reads_total), and what the embedded reader's replica polls cost meanwhile
# (rwsplit_replica_polls_total per replica). Default poll settings. Used for docs/BENCHMARKS.md.
#
# Usage: scripts/bench_consistency.sh [BASE_PORT] [SECONDS] [THREADS]
# The topology must be up (BASE_PORT=3390 scripts/cluster.sh up) and the proxy built in release
# mode (cargo build --release -p proxy; CARGO_TARGET_DIR is honoured).
set -euo pipefail
base=${1:-3310}
secs=${2:-20}
threads=${3:-8}
target=${CARGO_TARGET_DIR:-$(dirname "$0")/../target}
proxy_bin=$target/release/rwsplit-proxy
listen=$((base + 3000))
http=$((base + 3001))
common=(--mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app-password
        --mysql-db=rwsplit_test --tables=4 --table-size=10000)
dir=$(mktemp -d)
# Only the proxy this script started: `kill 0` would signal the whole process group.
pid=""
trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT

sysbench oltp_read_write "${common[@]}" --mysql-port="$base" cleanup >/dev/null 2>&1 || true
sysbench oltp_read_write "${common[@]}" --mysql-port="$base" prepare >/dev/null
sleep 3

# Sum of the series of family $1 whose labels include $2 (any order).
metric() { curl -s "http://127.0.0.1:$http/metrics" | awk -v m="$1{" -v l="$2" 'index($0, m) == 1 && index($0, l) { s += $NF } END { print s + 0 }'; }

for level in lag read_your_writes monotonic causal; do
  cat > "$dir/proxy.yaml" <<YAML
servers:
  - { name: primary, host: 127.0.0.1, port: $base, role: primary }
  - { name: replica1, host: 127.0.0.1, port: $((base + 1)), role: replica }
  - { name: replica2, host: 127.0.0.1, port: $((base + 2)), role: replica }
routing:
  consistency: $level
  causal_wait_ms: 10
monitor:
  user: rwsplit_monitor
  password: monitor-password
proxy:
  listen: 127.0.0.1:$listen
  http_listen: 127.0.0.1:$http
  lag_source: embedded
  users:
    - name: app
      password: app-password
sidecar:
  server_id: $((base + 4000))
YAML
  "$proxy_bin" --config "$dir/proxy.yaml" >"$dir/proxy.log" 2>&1 &
  pid=$!
  sleep 3
  polls_before=$(metric rwsplit_replica_polls_total '')
  out=$(sysbench oltp_read_write "${common[@]}" --skip_trx=on --mysql-ignore-errors=1062 --mysql-port="$listen" --threads="$threads" \
        --time="$secs" --report-interval=0 run)
  tps=$(echo "$out" | grep -E '^ +transactions:' | awk '{gsub(/\(/,"",$3); print $3}')
  qps=$(echo "$out" | grep -E '^ +queries:' | awk '{gsub(/\(/,"",$3); print $3}')
  replica=$(metric rwsplit_queries_total 'route="replica"')
  all=$(metric rwsplit_queries_total '')
  on_replica=$(metric rwsplit_consistent_reads_total 'level="'"$level"'",outcome="replica"')
  waited=$(metric rwsplit_consistent_reads_total 'level="'"$level"'",outcome="waited"')
  primary=$(metric rwsplit_consistent_reads_total 'level="'"$level"'",outcome="primary"')
  polls=$(( $(metric rwsplit_replica_polls_total '') - polls_before ))
  awk -v l="$level" -v t="$tps" -v q="$qps" -v r="$replica" -v a="$all" -v o="$on_replica" \
      -v w="$waited" -v p="$primary" -v n="$polls" -v s="$secs" 'BEGIN {
    printf "%-16s %8.1f tps %9.1f q/s  statements on replicas %5.1f %%  consistent reads: replica %d, waited %d, primary %d  polls %.0f/s per replica\n",
      l, t, q, (a > 0 ? 100 * r / a : 0), o, w, p, n / s / 2 }'
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=""
done
