#!/usr/bin/env bash
# make bench: rwsplit against a direct connection and against HAProxy (TCP mode, one thread: a
# byte relay that parses nothing, the floor any proxy is measured against), in one run,
# alternating paths within each scenario so that background load hits them alike:
#
#   oltp_point_select and oltp_read_only at 8 threads, oltp_point_select at 1 thread
#       direct to replica1 | HAProxy (round robin over both replicas) | rwsplit (defaults:
#       statement-level multiplexing) | rwsplit_keep (`proxy.pool.release_delay_ms: 60000`: each
#       session keeps its connections, what multiplexing costs is the difference)
#   web pool: oltp_point_select with 1,000 and 5,000 client connections at a fixed total rate
#       (sysbench --rate, default 4,000 statements/s)
#       direct to replica1 | rwsplit (defaults)
#
# It starts what it needs (a release build, the local topology on its own ports, the proxy,
# HAProxy, installing Debian's haproxy if missing), prints a table (q/s, ratio to direct and to
# the relay of the same round, p50/p95/p99 latency, proxy or relay CPU µs per query, server
# connections held) and, with BENCH_ROUNDS > 1, a summary per scenario and path (median q/s and
# CPU, min and median of the per-round ratios), appends them with the command and date to
# docs/BENCHMARKS.md, and stops everything it started, also on Ctrl-C. A topology already
# running on its ports is used and left running.
#
# Environment:
#   BENCH_SECONDS      length of each sysbench run                     (default 20)
#   BENCH_ROUNDS       times the whole alternation is repeated          (default 1)
#   BENCH_BASE_PORT    primary port of the topology; replicas +1, +2,
#                      HAProxy +7, rwsplit +8 (HTTP +9), rwsplit_keep
#                      +10 (HTTP +11)                                   (default 3450)
#   BENCH_RATE         total statements/s of the web-pool scenario      (default 4000)
#   BENCH_WEB_CLIENTS  client connections of the web-pool runs          (default "1000 5000")
#   BENCH_RECORD       0: print only, do not append to docs/BENCHMARKS.md (default 1)
#   BENCH_SCENARIOS    which to run, of: point_select_8t read_only_8t point_select_1t web
#                                                                       (default all)
#   BENCH_BASELINE     another rwsplit-proxy binary (e.g. main's), run with the same default
#                      config as path `baseline` right after `rwsplit` in every scenario
#                      (rwsplit +12, HTTP +13), to compare two builds in one run (default none)
# sysbench's output of each run stays in .scratch/bench-$BENCH_BASE_PORT/ (the last run's).
#   CARGO_TARGET_DIR   where the release build goes                     (default target/)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECS=${BENCH_SECONDS:-20}
ROUNDS=${BENCH_ROUNDS:-1}
BASE=${BENCH_BASE_PORT:-3450}
RATE=${BENCH_RATE:-4000}
WEB_CLIENTS=${BENCH_WEB_CLIENTS:-1000 5000}
RECORD=${BENCH_RECORD:-1}
SCENARIOS=${BENCH_SCENARIOS:-point_select_8t read_only_8t point_select_1t web}
BASELINE=${BENCH_BASELINE:-}
OUTDIR=$ROOT/.scratch/bench-$BASE
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
REPLICA1=$((BASE + 1)) REPLICA2=$((BASE + 2))
RELAY_PORT=$((BASE + 7)) PROXY_PORT=$((BASE + 8)) HTTP_PORT=$((BASE + 9))
PROXY0_PORT=$((BASE + 10)) HTTP0_PORT=$((BASE + 11))
BASE_PROXY_PORT=$((BASE + 12)) BASE_HTTP_PORT=$((BASE + 13))
ADMIN=(-h127.0.0.1 -uadmin -padmin-password --batch --skip-column-names)
COMMON=(--mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app-password
        --mysql-db=rwsplit_test --tables=4 --table-size=10000)
TICK=$(getconf CLK_TCK)
# Enough server connections for the biggest web-pool run direct, plus the proxy's pools.
MAX_CONN=$(( $(tr ' ' '\n' <<<"$WEB_CLIENTS" | sort -n | tail -1) + 1000 ))

say() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

WORK=$(mktemp -d)
bench_pid="" proxy_pid="" proxy0_pid="" baseline_pid="" relay_pid="" sampler_pid="" started_cluster=0
cleanup() {
  trap - EXIT INT TERM
  for pid in $bench_pid $sampler_pid $proxy_pid $proxy0_pid $baseline_pid $relay_pid; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $bench_pid $sampler_pid $proxy_pid $proxy0_pid $baseline_pid $relay_pid; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ $started_cluster == 1 ]]; then
    BASE_PORT=$BASE "$ROOT/scripts/cluster.sh" down >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'say "interrupted: stopping what was started"; exit 130' INT TERM

# --- what the runs need ---------------------------------------------------------------------------

command -v sysbench >/dev/null || die "sysbench not found: apt-get install -y sysbench"
command -v mysql >/dev/null || die "the mysql client is needed: apt-get install -y mariadb-client"
if ! command -v haproxy >/dev/null; then
  say "installing Debian's haproxy (the relay reference)..."
  sudo_=(); [[ $(id -u) == 0 ]] || sudo_=(sudo -n)
  DEBIAN_FRONTEND=noninteractive "${sudo_[@]}" apt-get install -y -qq haproxy >/dev/null \
    || die "could not install haproxy: run 'sudo apt-get install -y haproxy' and retry"
fi
# One descriptor per client connection, in sysbench, the proxy and the servers.
hard=$(ulimit -Hn)
[[ $hard == unlimited ]] && hard=1048576
want=$(( MAX_CONN * 2 + 1024 ))
(( want > hard )) && want=$hard
ulimit -n "$want"
(( want >= MAX_CONN + 100 )) || say "warning: ulimit -n is $want; the ${WEB_CLIENTS##* }-client run may fail to connect"

say "release build..."
(cd "$ROOT" && cargo build -q --release -p proxy --bin rwsplit-proxy)

server_up() { mysql "${ADMIN[@]}" -P"$1" -e 'SELECT 1' >/dev/null 2>&1; }
if server_up "$BASE"; then
  say "using the topology already running on $BASE"
else
  say "starting the topology on $BASE-$REPLICA2..."
  BASE_PORT=$BASE MAX_CONNECTIONS=$MAX_CONN "$ROOT/scripts/cluster.sh" up >&2
  started_cluster=1
fi
for port in $BASE $REPLICA1 $REPLICA2; do
  # sysbench prepares 4 statements per connection: 5,000 clients need more than the default.
  mysql "${ADMIN[@]}" -P"$port" -e "SET GLOBAL max_connections = $MAX_CONN; SET GLOBAL max_prepared_stmt_count = 1048576"
done

cat >"$WORK/proxy.yaml" <<EOF
servers:
  - { name: primary, host: 127.0.0.1, port: $BASE, role: primary }
  - { name: replica1, host: 127.0.0.1, port: $REPLICA1, role: replica }
  - { name: replica2, host: 127.0.0.1, port: $REPLICA2, role: replica }
routing:
  max_lag_ms: 5000
  lag_recovery_ms: 4000
monitor:
  user: rwsplit_monitor
  password: monitor-password
proxy:
  listen: 127.0.0.1:$PROXY_PORT
  http_listen: 127.0.0.1:$HTTP_PORT
  lag_source: seconds_behind_master
  users:
    - name: app
      password: app-password
EOF
"$TARGET/release/rwsplit-proxy" -c "$WORK/proxy.yaml" >"$WORK/proxy.log" 2>&1 &
proxy_pid=$!
sed -e "s/127.0.0.1:$PROXY_PORT/127.0.0.1:$PROXY0_PORT/" -e "s/127.0.0.1:$HTTP_PORT/127.0.0.1:$HTTP0_PORT/" \
  "$WORK/proxy.yaml" >"$WORK/proxy0.yaml"
printf '  pool:\n    release_delay_ms: 60000\n' >>"$WORK/proxy0.yaml"
"$TARGET/release/rwsplit-proxy" -c "$WORK/proxy0.yaml" >"$WORK/proxy0.log" 2>&1 &
proxy0_pid=$!
if [[ -n $BASELINE ]]; then
  [[ -x $BASELINE ]] || die "BENCH_BASELINE=$BASELINE is not an executable"
  sed -e "s/127.0.0.1:$PROXY_PORT/127.0.0.1:$BASE_PROXY_PORT/" -e "s/127.0.0.1:$HTTP_PORT/127.0.0.1:$BASE_HTTP_PORT/" \
    "$WORK/proxy.yaml" >"$WORK/baseline.yaml"
  "$BASELINE" -c "$WORK/baseline.yaml" >"$WORK/baseline.log" 2>&1 &
  baseline_pid=$!
fi

cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn $MAX_CONN
defaults
  mode tcp
  timeout connect 2s
  timeout client 1h
  timeout server 1h
listen mysql
  bind 127.0.0.1:$RELAY_PORT
  balance roundrobin
  server replica1 127.0.0.1:$REPLICA1
  server replica2 127.0.0.1:$REPLICA2
EOF
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
relay_pid=$!

for _ in $(seq 100); do
  if mysql -h127.0.0.1 -P"$PROXY_PORT" -uapp -papp-password -e 'SELECT 1' >/dev/null 2>&1; then
    break
  fi
  kill -0 "$proxy_pid" 2>/dev/null || die "the proxy exited: $(tail -5 "$WORK/proxy.log")"
  sleep 0.2
done
sleep 0.5
kill -0 "$relay_pid" 2>/dev/null || die "haproxy exited: $(tail -5 "$WORK/haproxy.log")"

say "preparing 4 tables x 10,000 rows..."
sysbench oltp_read_only "${COMMON[@]}" --mysql-port="$BASE" cleanup >/dev/null 2>&1 || true
sysbench oltp_read_only "${COMMON[@]}" --mysql-port="$BASE" prepare >/dev/null
sleep 3 # the replicas apply the tables; the proxy's monitor sees them caught up

# --- one run --------------------------------------------------------------------------------------

cpu() {
  if [[ -n $1 ]] && [[ -r /proc/$1/stat ]]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi
}

# The most TCP connections to the three servers that processes matching $2 (`pid=N,` or a
# process name as `ss -p` prints it) held at once, sampled every 0.2 s: what this path costs the
# servers, not counting what another path left open.
sample_connections() {
  local most=0 n
  local filter="( dport = :$BASE or dport = :$REPLICA1 or dport = :$REPLICA2 )"
  while :; do
    n=$(ss -tnpH state established "$filter" 2>/dev/null | grep -c -- "$2" || true)
    if (( n > most )); then most=$n; echo "$most" >"$1"; fi
    sleep 0.2
  done
}

# run SCENARIO PATH PORT PID TEST THREADS [RATE]: one sysbench run, one result row in $WORK/rows.
run() {
  local scenario=$1 path=$2 port=$3 pid=$4 test=$5 threads=$6 rate=${7:-0} out c0 c1
  local extra=()
  (( rate > 0 )) && extra=(--rate="$rate" --mysql-ignore-errors=all)
  echo 0 >"$WORK/conns"
  local match='"sysbench"'
  [[ -n $pid ]] && match="pid=$pid,"
  sample_connections "$WORK/conns" "$match" &
  sampler_pid=$!
  c0=$(cpu "$pid")
  # In the background with `wait`: a Ctrl-C then reaches the trap at once (bash defers SIGINT
  # while a foreground child that survives it, as sysbench does, is running).
  sysbench "$test" "${COMMON[@]}" --mysql-port="$port" --threads="$threads" --time="$SECS" \
    --report-interval=0 --histogram=on "${extra[@]}" run >"$OUTDIR/$scenario-$path.out" 2>&1 &
  bench_pid=$!
  wait "$bench_pid" || true
  bench_pid=""
  out=$(cat "$OUTDIR/$scenario-$path.out")
  c1=$(cpu "$pid")
  kill "$sampler_pid" 2>/dev/null; wait "$sampler_pid" 2>/dev/null || true
  sampler_pid=""
  awk -v s="$scenario" -v p="$path" -v dc="$((c1 - c0))" -v hz="$TICK" -v pid="$pid" -v r="$round" \
      -v conns="$(cat "$WORK/conns")" '
    /^ +queries:/ { q = $2; gsub(/\(/, "", $3); qps = $3 }
    /ignored errors:/ { errs = $3 }
    /FATAL: MySQL error/ && !fatal { fatal = $0; sub(/.*FATAL: MySQL error: */, "", fatal); gsub(/\|/, "/", fatal) }
    /FATAL/ && !anyfatal { anyfatal = $0; sub(/.*FATAL: */, "", anyfatal); gsub(/\|/, "/", anyfatal) }
    /^ +[0-9.]+ +\|.* [0-9]+$/ { n++; v[n] = $1; c[n] = $NF; total += $NF }
    END {
      split("50 95 99", ps, " ")
      for (k = 1; k <= 3; k++) {
        want = total * ps[k] / 100; acc = 0; lat[k] = "-"
        for (i = 1; i <= n; i++) { acc += c[i]; if (acc >= want) { lat[k] = v[i]; break } }
      }
      cpu = (pid != "" && q > 0) ? sprintf("%.1f", (dc / hz) * 1e6 / q) : "-"
      if (!fatal) fatal = anyfatal
      if (fatal) errs = errs " (aborted: " substr(fatal, 1, 120) ")"
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s, p, (qps == "" ? 0 : qps), lat[1], lat[2], lat[3], cpu, (errs == "" ? 0 : errs), conns, r
    }' <<<"$out" >>"$WORK/rows"
  say "$(tail -1 "$WORK/rows" | tr '\t' ' ')"
}

: >"$WORK/rows"
mkdir -p "$OUTDIR"
wanted() { [[ " $SCENARIOS " == *" $1 "* ]]; }
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
  say "round $round of $ROUNDS (${SECS}s per run)"
  for spec in "point_select_8t oltp_point_select 8" "read_only_8t oltp_read_only 8" "point_select_1t oltp_point_select 1"; do
    read -r scenario test threads <<<"$spec"
    wanted "$scenario" || continue
    run "$scenario" direct "$REPLICA1" "" "$test" "$threads"
    run "$scenario" haproxy "$RELAY_PORT" "$relay_pid" "$test" "$threads"
    run "$scenario" rwsplit "$PROXY_PORT" "$proxy_pid" "$test" "$threads"
    if [[ -n $BASELINE ]]; then
      run "$scenario" baseline "$BASE_PROXY_PORT" "$baseline_pid" "$test" "$threads"
    fi
    run "$scenario" rwsplit_keep "$PROXY0_PORT" "$proxy0_pid" "$test" "$threads"
  done
  wanted web || continue
  for clients in $WEB_CLIENTS; do
    run "web_${clients}c" direct "$REPLICA1" "" oltp_point_select "$clients" "$RATE"
    run "web_${clients}c" rwsplit "$PROXY_PORT" "$proxy_pid" oltp_point_select "$clients" "$RATE"
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the table ------------------------------------------------------------------------------------

# One row per run, its ratios against the direct and relay runs of the same round; with several
# rounds, a summary per scenario and path: the median q/s and CPU, and the ratio to the relay
# round by round (min and median: a target "steadily over N runs" is about the min).
table=$(awk -F'\t' '
  BEGIN {
    print "| round | scenario | path | q/s | vs direct | vs relay | p50 ms | p95 ms | p99 ms | CPU µs/query | errors | server conns (max) |"
    print "|---|---|---|---|---|---|---|---|---|---|---|---|"
  }
  {
    if ($2 == "direct") d[$1 "#" $10] = $3
    if ($2 == "haproxy") h[$1 "#" $10] = $3
    row[NR] = $0
  }
  END {
    for (i = 1; i <= NR; i++) {
      split(row[i], f, "\t")
      k = f[1] "#" f[10]
      vd = (d[k] > 0) ? sprintf("%.2f", f[3] / d[k]) : "-"
      vh = (h[k] > 0) ? sprintf("%.2f", f[3] / h[k]) : "-"
      printf "| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n", f[10], f[1], f[2], f[3], vd, vh, f[4], f[5], f[6], f[7], f[8], f[9]
    }
  }' "$WORK/rows")
summary=""
if (( ROUNDS > 1 )); then
  summary=$(awk -F'\t' '
    # Median of the n values a[1..n] (sorted in place; n is small).
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function minimum(a, n,   i, m) { m = a[1]; for (i = 2; i <= n; i++) if (a[i] < m) m = a[i]; return m }
    BEGIN {
      print "| scenario | path | rounds | q/s (median) | vs direct (median) | vs relay (min) | vs relay (median) | CPU µs/query (median) | errors (all rounds) |"
      print "|---|---|---|---|---|---|---|---|---|"
    }
    {
      row[NR] = $0
      if ($2 == "direct") d[$1 "#" $10] = $3
      if ($2 == "haproxy") h[$1 "#" $10] = $3
      k = $1 "#" $2
      if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
    }
    END {
      for (x = 1; x <= nk; x++) {
        split(order[x], sp, "#")
        n = 0; nd = 0; nh = 0; nc = 0; errs = 0
        delete q; delete vd; delete vh; delete cpu
        for (i = 1; i <= NR; i++) {
          split(row[i], f, "\t")
          if (f[1] != sp[1] || f[2] != sp[2]) continue
          q[++n] = f[3]
          r = f[1] "#" f[10]
          if (d[r] > 0) vd[++nd] = f[3] / d[r]
          if (h[r] > 0) vh[++nh] = f[3] / h[r]
          if (f[7] != "-") cpu[++nc] = f[7]
          e = f[8]; sub(/ .*/, "", e); errs += e
        }
        printf "| %s | %s | %d | %.0f | %s | %s | %s | %s | %d |\n", sp[1], sp[2], n, median(q, n),
          (nd ? sprintf("%.2f", median(vd, nd)) : "-"),
          (nh ? sprintf("%.2f", minimum(vh, nh)) : "-"),
          (nh ? sprintf("%.2f", median(vh, nh)) : "-"),
          (nc ? sprintf("%.1f", median(cpu, nc)) : "-"), errs
      }
    }' "$WORK/rows")
  table="$table

Per scenario and path over the $ROUNDS rounds (each ratio taken against the same round's run):

$summary"
fi
echo
echo "$table"

if [[ $RECORD == 1 ]]; then
  {
    echo
    echo "### \`make bench\`, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Command: \`BENCH_SECONDS=$SECS BENCH_ROUNDS=$ROUNDS BENCH_RATE=$RATE BENCH_WEB_CLIENTS=\"$WEB_CLIENTS\" BENCH_SCENARIOS=\"$SCENARIOS\" make bench\`"
    echo "(commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)). Machine: $(nproc) CPUs shared by sysbench, the three"
    echo "servers, HAProxy and the proxy; load average $load_before before, $load_after after."
    echo "Direct runs go to replica1; HAProxy (one thread, TCP mode) balances connections over both"
    echo "replicas; rwsplit uses its defaults (reads over both replicas, statement-level multiplexing);"
    echo "rwsplit_keep is the same with \`proxy.pool.release_delay_ms: 60000\` (sessions keep their"
    echo "connections). Web-pool runs use"
    echo "\`--rate=$RATE\` and \`--mysql-ignore-errors=all\` (errors counted, not fatal). Latency from"
    echo "sysbench's histogram; CPU from /proc/PID/stat of the proxy or the relay around each run;"
    echo "server conns: most TCP connections to the three servers held by the path's process (sysbench"
    echo "direct, HAProxy, the proxy incl. its 3 monitor connections), from \`ss -tnp\` every 0.2 s."
    echo
    echo "$table"
  } >>"$ROOT/docs/BENCHMARKS.md"
  say "appended to docs/BENCHMARKS.md"
fi
