#!/usr/bin/env bash
# Throughput of sysbench through rwsplit-proxy versus directly to the primary, in one run,
# plus the proxy's own CPU time per query (from /proc/PID/stat). Used for docs/BENCHMARKS.md.
#
# Usage: bench_proxy.sh PROXY_PORT PROXY_PID [PRIMARY_PORT] [SECONDS] [THREADS]
# The topology must be up (BASE_PORT=3330 scripts/cluster.sh up) and the proxy running with a
# release build in front of it.
#
# With REFERENCE_BACKEND=HOST:PORT (the replica the proxy reads from) and HAProxy installed
# (`apt-get install -y haproxy`), the same runs also go through HAProxy in plain TCP mode, one
# thread: a relay that parses nothing, which bounds what any proxy process can reach on this
# machine.
set -euo pipefail
proxy_port=$1
proxy_pid=$2
primary_port=${3:-3330}
secs=${4:-20}
threads=${5:-8}
common=(--mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app-password
        --mysql-db=rwsplit_test --tables=4 --table-size=10000)
tick=$(getconf CLK_TCK)

sysbench oltp_read_only "${common[@]}" --mysql-port="$primary_port" cleanup >/dev/null 2>&1 || true
sysbench oltp_read_only "${common[@]}" --mysql-port="$primary_port" prepare >/dev/null
sleep 3  # let the replicas apply the prepared tables

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
qps() { grep -E '^ +queries:' | awk '{gsub(/\(/,"",$3); print $3}'; }
errs() { grep -E 'ignored errors' | awk '{print $3}'; }

ref_port=""
if [[ -n ${REFERENCE_BACKEND:-} ]] && command -v haproxy >/dev/null; then
  ref_port=$((proxy_port + 11))
  ref_dir=$(mktemp -d)
  printf 'global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\nlisten mysql\n  bind 127.0.0.1:%s\n  server backend %s\n' \
    "$ref_port" "$REFERENCE_BACKEND" > "$ref_dir/haproxy.cfg"
  haproxy -f "$ref_dir/haproxy.cfg" -D -p "$ref_dir/pid"
  trap 'kill $(cat "$ref_dir/pid") 2>/dev/null; rm -rf "$ref_dir"' EXIT
  sleep 0.5
fi

for test in oltp_point_select oltp_read_only; do
  run=(sysbench "$test" "${common[@]}" --threads="$threads" --time="$secs" --report-interval=0)
  direct_out=$("${run[@]}" --mysql-port="$primary_port" run)
  if [[ -n $ref_port ]]; then
    ref_pid=$(cat "$ref_dir/pid")
    h0=$(cpu "$ref_pid")
    ref_out=$("${run[@]}" --mysql-port="$ref_port" run)
    h1=$(cpu "$ref_pid")
    awk -v t="$test" -v d="$(echo "$direct_out" | qps)" -v p="$(echo "$ref_out" | qps)" \
        -v c="$((h1 - h0))" -v hz="$tick" -v q="$(echo "$ref_out" | grep -E '^ +queries:' | awk '{print $2}')" 'BEGIN {
      printf "%-18s direct %9.0f q/s  haproxy %8.0f q/s  ratio %.2f  haproxy CPU %.1f us/query (reference)\n",
        t, d, p, p / d, (c / hz) * 1e6 / q }'
  fi
  c0=$(cpu "$proxy_pid")
  proxy_out=$("${run[@]}" --mysql-port="$proxy_port" run)
  c1=$(cpu "$proxy_pid")
  d=$(echo "$direct_out" | qps); p=$(echo "$proxy_out" | qps)
  pq=$(echo "$proxy_out" | grep -E '^ +queries:' | awk '{print $2}')
  awk -v t="$test" -v d="$d" -v p="$p" -v c="$((c1 - c0))" -v hz="$tick" -v q="$pq" \
      -v de="$(echo "$direct_out" | errs)" -v pe="$(echo "$proxy_out" | errs)" 'BEGIN {
    printf "%-18s direct %9.0f q/s  proxy %9.0f q/s  ratio %.2f  proxy CPU %.1f us/query  errors direct %s proxy %s\n",
      t, d, p, p / d, (c / hz) * 1e6 / q, de, pe }'
done
