#!/usr/bin/env bash
# Throughput of sysbench oltp_write_only through two rwsplit-proxy processes in front of the same
# topology, one with the audit log off and one with it on (`proxy.audit`, statements: writes),
# alternating short runs so that both see the same machine. Used for docs/BENCHMARKS.md.
#
# Usage: [PS_MODE=auto|disable] bench_audit.sh OFF_PORT ON_PORT AUDIT_FILE [SECONDS] [THREADS] [ROUNDS]
#   PS_MODE  sysbench --db-ps-mode: auto (server-side prepared statements, sysbench's default and
#            what most drivers do; their executions are audited) or disable (text statements).
#            Default auto.
set -euo pipefail
off_port=$1
on_port=$2
audit_file=$3
secs=${4:-10}
threads=${5:-4}
rounds=${6:-3}
common=(--mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app-password
        --mysql-db=rwsplit_test --tables=4 --table-size=10000 --db-ps-mode="${PS_MODE:-auto}")

sysbench oltp_write_only "${common[@]}" --mysql-port="$off_port" cleanup >/dev/null 2>&1 || true
sysbench oltp_write_only "${common[@]}" --mysql-port="$off_port" prepare >/dev/null
sleep 3

tps() { grep -E '^ +transactions:' | awk '{gsub(/\(/,"",$3); print $3}'; }
run() { sysbench oltp_write_only "${common[@]}" --threads="$threads" --time="$secs" \
          --report-interval=0 --mysql-port="$1" run | tps; }

sum_off=0; sum_on=0
for r in $(seq 1 "$rounds"); do
  # Odd rounds run off first, even rounds on first: neither always gets the warmer start.
  if (( r % 2 )); then off=$(run "$off_port"); fi
  before=$(cat "$audit_file" 2>/dev/null | wc -l)
  on=$(run "$on_port")
  after=$(cat "$audit_file" 2>/dev/null | wc -l)
  if (( r % 2 == 0 )); then off=$(run "$off_port"); fi
  printf 'round %d  audit off %8.1f tps   audit on %8.1f tps   (%d audit lines)\n' \
    "$r" "$off" "$on" "$((after - before))"
  sum_off=$(awk -v a="$sum_off" -v b="$off" 'BEGIN{print a+b}')
  sum_on=$(awk -v a="$sum_on" -v b="$on" 'BEGIN{print a+b}')
done
awk -v a="$sum_off" -v b="$sum_on" -v n="$rounds" 'BEGIN {
  printf "mean      audit off %8.1f tps   audit on %8.1f tps   ratio %.3f\n", a/n, b/n, b/a }'
sysbench oltp_write_only "${common[@]}" --mysql-port="$off_port" cleanup >/dev/null 2>&1 || true
