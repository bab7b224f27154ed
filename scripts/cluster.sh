#!/usr/bin/env bash
# A real local replication topology for demos and tests: one primary and N replicas, each its own
# server process with its own data folder under .scratch/, GTID replication, loopback ports only.
#
#   scripts/cluster.sh up | down | status | switchover N
#
# `switchover N` makes server N (0 = the first primary, i = replica i) the primary by hand, as an
# operator or Orchestrator would (MariaDB): the current writer set read-only, N promoted once it
# applied everything, every other server pointed at N by GTID. The proxy follows it as an
# external failover; `POST /admin/switchover` on the proxy does the same without client errors.
#
# Environment:
#   BASE_PORT    primary port; replica i listens on BASE_PORT+i          (default 3310)
#   REPLICAS     number of replicas                                      (default 2)
#   CLUSTER_DIR  scratch folder                                          (default .scratch/cluster-$BASE_PORT)
#   SERVER_PATH  where to look for mariadbd/mysqld                       (default $PATH:/usr/sbin:/usr/local/sbin)
#   MAX_CONNECTIONS  each server's max_connections (default 4000; `make bench` raises it for 5,000 clients)
#   TLS          1: servers accept TLS with a certificate for 127.0.0.1 signed by a CA made at
#                first `up` in $CLUSTER_DIR/tls (ca.pem for clients' `servers[].tls.ca`) (default 0)
#
# Works with Debian's MariaDB (mariadbd, installed on demand) and with MySQL 8 (mysqld) where that
# is what the machine has. Servers are stopped by their pid files, never by name.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_PORT=${BASE_PORT:-3310}
REPLICAS=${REPLICAS:-2}
CLUSTER_DIR=${CLUSTER_DIR:-$ROOT/.scratch/cluster-$BASE_PORT}
OS_USER=$(id -un)

APP_USER=app APP_PASSWORD=app-password
MONITOR_USER=rwsplit_monitor MONITOR_PASSWORD=monitor-password
ADMIN_USER=admin ADMIN_PASSWORD=admin-password
TEST_DB=rwsplit_test

say() { echo "cluster: $*"; }
die() { echo "cluster: error: $*" >&2; exit 1; }

# --- finding (or installing) a server ------------------------------------------------------------

find_server() {
  SERVER_BIN=""
  local candidate
  for candidate in mariadbd mysqld; do
    if PATH="${SERVER_PATH:-$PATH:/usr/sbin:/usr/local/sbin}" command -v "$candidate" >/dev/null 2>&1; then
      SERVER_BIN=$(PATH="${SERVER_PATH:-$PATH:/usr/sbin:/usr/local/sbin}" command -v "$candidate")
      break
    fi
  done
}

ensure_server() {
  find_server
  if [ -z "$SERVER_BIN" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      say "no mariadbd or mysqld found: installing Debian's mariadb-server (apt-get)..."
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null || die "apt-get update failed: check the package mirror, then retry"
      apt-get install -y -qq mariadb-server mariadb-client >/dev/null \
        || die "apt-get install mariadb-server failed: install it by hand and retry"
      find_server
    elif command -v apt-get >/dev/null 2>&1; then
      die "no mariadbd or mysqld found: run 'sudo apt-get update && sudo apt-get install -y mariadb-server mariadb-client'"
    else
      die "no mariadbd or mysqld found: install MariaDB 10.6+ (package mariadb-server) or MySQL 8 so that 'mariadbd' or 'mysqld' is on PATH"
    fi
    [ -n "$SERVER_BIN" ] || die "mariadb-server installed but no mariadbd found on PATH"
  fi
  if "$SERVER_BIN" --version 2>/dev/null | grep -qi mariadb; then
    FLAVOR=mariadb
    CLIENT_BIN=$(command -v mariadb || command -v mysql || true)
    INSTALL_DB=$(command -v mariadb-install-db || command -v mysql_install_db || true)
  else
    FLAVOR=mysql
    CLIENT_BIN=$(command -v mysql || true)
  fi
  [ -n "$CLIENT_BIN" ] || die "no command-line client (mariadb or mysql) found: install mariadb-client"
}

# --- per-server helpers --------------------------------------------------------------------------

server_dir() { echo "$CLUSTER_DIR/server$1"; }
server_port() { echo $((BASE_PORT + $1)); }
server_name() { if [ "$1" = 0 ]; then echo primary; else echo "replica$1"; fi; }
pid_of() { local f; f="$(server_dir "$1")/mysqld.pid"; [ -s "$f" ] && cat "$f" || true; }

alive() {
  local pid; pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Runs SQL as the local superuser over the server's unix socket.
sql() {
  local i=$1; shift
  "$CLIENT_BIN" --no-defaults -S "$(server_dir "$i")/mysqld.sock" -uroot -N -B -e "$*"
}

# Like sql, but keeps column names (for \G output).
sql_vertical() {
  local i=$1; shift
  "$CLIENT_BIN" --no-defaults -S "$(server_dir "$i")/mysqld.sock" -uroot -e "$*"
}

write_cnf() {
  local i=$1 dir port section
  dir=$(server_dir "$i"); port=$(server_port "$i")
  section=mariadbd; [ "$FLAVOR" = mysql ] && section=mysqld
  {
    echo "[$section]"
    echo "datadir=$dir/data"
    echo "port=$port"
    echo "bind-address=127.0.0.1"
    echo "socket=$dir/mysqld.sock"
    echo "pid-file=$dir/mysqld.pid"
    echo "log-error=$dir/error.log"
    echo "server-id=$((i + 1))"
    echo "log-bin=binlog"
    echo "relay-log=relay-bin"
    echo "binlog_format=ROW"
    echo "max_allowed_packet=1G"
    echo "local_infile=ON"
    echo "max_connections=${MAX_CONNECTIONS:-4000}"
    echo "skip-name-resolve"
    echo "character-set-server=utf8mb4"
    echo "innodb_buffer_pool_size=128M"
    echo "innodb_flush_log_at_trx_commit=2"
    echo "sync_binlog=0"
    echo "report_host=127.0.0.1"
    echo "report_port=$port"
    if [ "$FLAVOR" = mariadb ]; then
      echo "log_slave_updates=ON"
      echo "gtid_strict_mode=ON"
      echo "innodb_log_file_size=48M"
      echo "performance_schema=OFF"
    else
      echo "log_replica_updates=ON"
      echo "gtid_mode=ON"
      echo "enforce_gtid_consistency=ON"
      echo "mysqlx=OFF"
      echo "performance_schema=OFF"
    fi
    if [ "$i" -gt 0 ]; then echo "read_only=ON"; fi
    if [ "${TLS:-0}" = 1 ]; then
      echo "ssl-ca=$CLUSTER_DIR/tls/ca.pem"
      echo "ssl-cert=$CLUSTER_DIR/tls/server.pem"
      echo "ssl-key=$CLUSTER_DIR/tls/server-key.pem"
    fi
  } >"$dir/my.cnf"
}

# TLS=1: a CA and a server certificate for 127.0.0.1 (shared by the topology's servers), made
# once per cluster folder with the openssl CLI.
make_tls() {
  local d=$CLUSTER_DIR/tls
  [ -s "$d/server.pem" ] && return 0
  command -v openssl >/dev/null 2>&1 || die "TLS=1 needs the openssl command (apt-get install openssl)"
  mkdir -p "$d"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=rwsplit test CA" \
      -keyout "$d/ca-key.pem" -out "$d/ca.pem" &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$d/server-key.pem" -out "$d/server.csr" &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$d/ext.cnf" &&
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" \
      -CAcreateserial -days 3650 -extfile "$d/ext.cnf" -out "$d/server.pem"
  } >"$d/openssl.log" 2>&1 || die "making TLS certificates failed; see $d/openssl.log"
}

# One initialised datadir per machine and flavour, copied for every server: concurrent topologies
# (parallel tests) then never run the installer at the same time, and a topology starts in ~1 s.
TEMPLATE_ROOT=${TEMPLATE_ROOT:-$ROOT/.scratch}

init_template() {
  TEMPLATE=$TEMPLATE_ROOT/template-$FLAVOR
  mkdir -p "$TEMPLATE_ROOT"
  exec 9>"$TEMPLATE.lock"
  flock 9
  if [ ! -d "$TEMPLATE/data" ]; then
    local attempt log
    for attempt in 1 2; do
      rm -rf "$TEMPLATE.tmp"; mkdir -p "$TEMPLATE.tmp"
      log=$TEMPLATE_ROOT/template-$FLAVOR-install.log
      if [ "$FLAVOR" = mariadb ]; then
        [ -n "$INSTALL_DB" ] || die "mariadb-install-db not found: install mariadb-server"
        "$INSTALL_DB" --no-defaults --datadir="$TEMPLATE.tmp/data" --user="$OS_USER" \
          --auth-root-authentication-method=normal --skip-test-db >"$log" 2>&1 && break
      else
        "$SERVER_BIN" --no-defaults --initialize-insecure --datadir="$TEMPLATE.tmp/data" \
          --user="$OS_USER" >"$log" 2>&1 && break
      fi
      if [ "$attempt" = 2 ]; then
        die "initialising a datadir failed: $(grep -iE 'error|fatal' "$log" | tail -n 1); full log: $log"
      fi
      sleep 1
    done
    mv "$TEMPLATE.tmp" "$TEMPLATE"
  fi
  flock -u 9
  exec 9>&- # servers started next must not inherit it
}

start_server() {
  local i=$1 dir; dir=$(server_dir "$i")
  mkdir -p "$dir"
  if [ ! -d "$dir/data" ]; then
    cp -a "$TEMPLATE/data" "$dir/data"
    rm -f "$dir/data/auto.cnf" # MySQL: each server needs its own server_uuid
  fi
  write_cnf "$i"
  rm -f "$dir/mysqld.pid"
  setsid "$SERVER_BIN" --defaults-file="$dir/my.cnf" --user="$OS_USER" \
    </dev/null >>"$dir/stdout.log" 2>&1 &
}

wait_started() {
  local i=$1 dir; dir=$(server_dir "$i")
  for _ in $(seq 1 300); do
    if [ -S "$dir/mysqld.sock" ] && sql "$i" "SELECT 1" >/dev/null 2>&1; then return 0; fi
    if [ $((SECONDS - START)) -gt 3 ] && ! alive "$i" && [ -s "$dir/error.log" ] \
       && grep -q "ERROR" "$dir/error.log"; then
      tail -n 5 "$dir/error.log" >&2
      die "$(server_name "$i") on port $(server_port "$i") failed to start; see $dir/error.log"
    fi
    sleep 0.1
  done
  die "$(server_name "$i") on port $(server_port "$i") did not answer within 30 s; see $dir/error.log"
}

configure_primary() {
  local marker; marker="$(server_dir 0)/.configured"
  [ -f "$marker" ] && return 0
  local app_grants="SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES,
    LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER,
    REFERENCES, PROCESS, FILE"
  local monitor_grants
  if [ "$FLAVOR" = mariadb ]; then
    monitor_grants="SELECT, PROCESS, REPLICATION SLAVE, REPLICATION CLIENT, SLAVE MONITOR, BINLOG MONITOR"
  else
    monitor_grants="SELECT, PROCESS, REPLICATION SLAVE, REPLICATION CLIENT"
  fi
  sql 0 "
    CREATE USER IF NOT EXISTS '$APP_USER'@'%' IDENTIFIED BY '$APP_PASSWORD';
    GRANT $app_grants ON *.* TO '$APP_USER'@'%';
    CREATE USER IF NOT EXISTS '$MONITOR_USER'@'%' IDENTIFIED BY '$MONITOR_PASSWORD';
    GRANT $monitor_grants ON *.* TO '$MONITOR_USER'@'%';
    CREATE USER IF NOT EXISTS '$ADMIN_USER'@'%' IDENTIFIED BY '$ADMIN_PASSWORD';
    GRANT ALL PRIVILEGES ON *.* TO '$ADMIN_USER'@'%' WITH GRANT OPTION;
    CREATE DATABASE IF NOT EXISTS $TEST_DB;
  " || die "could not create users on the primary; see $(server_dir 0)/error.log"
  touch "$marker"
}

configure_replica() {
  local i=$1 marker; marker="$(server_dir "$i")/.configured"
  [ -f "$marker" ] && return 0
  if [ "$FLAVOR" = mariadb ]; then
    sql "$i" "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$BASE_PORT,
      MASTER_USER='$MONITOR_USER', MASTER_PASSWORD='$MONITOR_PASSWORD',
      MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE;"
  else
    sql "$i" "CHANGE REPLICATION SOURCE TO SOURCE_HOST='127.0.0.1', SOURCE_PORT=$BASE_PORT,
      SOURCE_USER='$MONITOR_USER', SOURCE_PASSWORD='$MONITOR_PASSWORD',
      SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1, SOURCE_CONNECT_RETRY=1; START REPLICA;"
  fi || die "could not start replication on $(server_name "$i"); see $(server_dir "$i")/error.log"
  touch "$marker"
}

# "Yes Yes" when both replication threads run.
replication_threads() {
  local i=$1
  if [ "$FLAVOR" = mariadb ]; then
    sql_vertical "$i" "SHOW SLAVE STATUS\G" 2>/dev/null | awk '/Slave_IO_Running:/{io=$2} /Slave_SQL_Running:/{s=$2} END{print io" "s}'
  else
    sql_vertical "$i" "SHOW REPLICA STATUS\G" 2>/dev/null | awk '/Replica_IO_Running:/{io=$2} /Replica_SQL_Running:/{s=$2} END{print io" "s}'
  fi
}

gtid_position() {
  local i=$1
  if [ "$FLAVOR" = mariadb ]; then
    if [ "$i" = 0 ]; then sql 0 "SELECT @@gtid_binlog_pos"; else sql "$i" "SELECT @@gtid_slave_pos"; fi
  else
    sql "$i" "SELECT REPLACE(@@gtid_executed, '\n', '')"
  fi
}

# Whether replica position $1 includes position $2: MariaDB positions (domain-server-seq,...)
# by sequence number per domain, so a replica that moved past $2 (clients keep writing while
# `up` waits, e.g. other tests on the shared topology) counts as caught up; MySQL GTID sets
# must be equal.
gtid_covers() {
  local have=$1 want=$2 w d n h
  [ "$have" = "$want" ] && return 0
  [ "$FLAVOR" = mariadb ] || return 1
  for w in ${want//,/ }; do
    IFS=- read -r d _ n <<<"$w"
    h=$(tr ',' '\n' <<<"$have" | awk -F- -v d="$d" '$1 == d { print $3 }' | head -n 1)
    [ -n "$h" ] && [ "$h" -ge "$n" ] || return 1
  done
}

wait_replication() {
  local i want
  want=$(gtid_position 0)
  for i in $(seq 1 "$REPLICAS"); do
    for _ in $(seq 1 300); do
      if [ "$(replication_threads "$i")" = "Yes Yes" ] && gtid_covers "$(gtid_position "$i")" "$want"; then
        continue 2
      fi
      sleep 0.1
    done
    die "$(server_name "$i") did not catch up with the primary within 30 s (threads: $(replication_threads "$i")); see $(server_dir "$i")/error.log"
  done
}

# --- commands ------------------------------------------------------------------------------------

cmd_up() {
  ensure_server
  mkdir -p "$CLUSTER_DIR"
  local i port
  for i in $(seq 0 "$REPLICAS"); do
    port=$(server_port "$i")
    if ! alive "$i" && port_taken "$port"; then
      die "port $port ($(server_name "$i")) is already in use by another process: stop it, or choose other ports with BASE_PORT=NNNN"
    fi
  done
  init_template
  if [ "${TLS:-0}" = 1 ]; then make_tls; fi
  START=$SECONDS
  local started=()
  for i in $(seq 0 "$REPLICAS"); do
    if ! alive "$i"; then start_server "$i"; started+=("$(server_name "$i")"); fi
  done
  for i in $(seq 0 "$REPLICAS"); do wait_started "$i"; done
  configure_primary
  for i in $(seq 1 "$REPLICAS"); do configure_replica "$i"; done
  wait_replication
  if [ ${#started[@]} -eq 0 ]; then
    say "already up ($FLAVOR): primary 127.0.0.1:$BASE_PORT, $REPLICAS replicas on $((BASE_PORT + 1))-$((BASE_PORT + REPLICAS)), replication running"
  else
    say "up ($FLAVOR, started ${started[*]} in $((SECONDS - START)) s): primary 127.0.0.1:$BASE_PORT, $REPLICAS replicas on $((BASE_PORT + 1))-$((BASE_PORT + REPLICAS)), replication running at $(gtid_position 0)"
  fi
}

cmd_down() {
  [ -d "$CLUSTER_DIR" ] || { say "nothing to stop in $CLUSTER_DIR"; return 0; }
  local dir pid stopped=0
  for dir in "$CLUSTER_DIR"/server*; do
    [ -s "$dir/mysqld.pid" ] || continue
    pid=$(cat "$dir/mysqld.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -CONT "$pid" 2>/dev/null || true # a test may have paused it
      kill -TERM "$pid" 2>/dev/null || true
      stopped=$((stopped + 1))
    fi
  done
  for dir in "$CLUSTER_DIR"/server*; do
    [ -s "$dir/mysqld.pid" ] || continue
    pid=$(cat "$dir/mysqld.pid")
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
  done
  rm -rf "$CLUSTER_DIR"
  say "down: stopped $stopped server(s), removed $CLUSTER_DIR"
}

cmd_status() {
  [ -d "$CLUSTER_DIR" ] || { say "not up (no $CLUSTER_DIR)"; return 1; }
  find_server
  [ -n "$SERVER_BIN" ] || die "no mariadbd or mysqld found"
  ensure_server
  local i ro threads
  printf '%-10s %-6s %-8s %-10s %-12s %s\n' SERVER PORT ROLE STATE REPLICATION GTID
  for i in $(seq 0 "$REPLICAS"); do
    [ -d "$(server_dir "$i")" ] || continue
    if ! alive "$i"; then
      printf '%-10s %-6s %-8s %-10s %-12s %s\n' "$(server_name "$i")" "$(server_port "$i")" - stopped - -
      continue
    fi
    ro=$(sql "$i" "SELECT @@read_only" 2>/dev/null || echo "?")
    threads=$(replication_threads "$i")
    local role=replica; [ -z "${threads// /}" ] && role=primary
    local repl=${threads:-none}; [ -z "${threads// /}" ] && repl=none
    printf '%-10s %-6s %-8s %-10s %-12s %s\n' "$(server_name "$i")" "$(server_port "$i")" \
      "$role" "running$([ "$ro" = 1 ] && echo ',ro')" "${repl// //}" "$(gtid_position "$i" 2>/dev/null || echo '?')"
  done
}

# The index of the server that is writable and replicates from no one (empty if none).
current_writer() {
  local i
  for i in $(seq 0 "$REPLICAS"); do
    alive "$i" || continue
    if [ "$(sql "$i" "SELECT @@read_only")" = 0 ] && [ -z "$(replication_threads "$i" | tr -d ' ')" ]; then
      echo "$i"; return 0
    fi
  done
}

cmd_switchover() {
  local new=${1:-} old i pos
  [ -d "$CLUSTER_DIR" ] || die "not up (no $CLUSTER_DIR)"
  [ "$FLAVOR" = mariadb ] || die "switchover: MariaDB only"
  [[ "$new" =~ ^[0-9]+$ ]] && [ "$new" -le "$REPLICAS" ] || die "usage: scripts/cluster.sh switchover N (0..$REPLICAS)"
  old=$(current_writer)
  [ -n "$old" ] || die "switchover: no writable server that replicates from no one"
  [ "$old" != "$new" ] || { say "$(server_name "$new") is the primary already"; return 0; }
  sql "$old" "SET GLOBAL read_only = 1"
  pos=$(sql "$old" "SELECT @@gtid_binlog_pos")
  [ "$(sql "$new" "SELECT MASTER_GTID_WAIT('$pos', 30)")" = 0 ] \
    || { sql "$old" "SET GLOBAL read_only = 0"; die "switchover: $(server_name "$new") did not apply $pos within 30 s; undone"; }
  sql "$new" "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = 0"
  for i in $(seq 0 "$REPLICAS"); do
    [ "$i" = "$new" ] && continue
    alive "$i" || continue
    if [ "$i" = "$old" ]; then sql "$i" "STOP SLAVE; SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos"; fi
    sql "$i" "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$(server_port "$new"),
      MASTER_USER='$MONITOR_USER', MASTER_PASSWORD='$MONITOR_PASSWORD',
      MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE"
  done
  say "switchover: $(server_name "$new") (port $(server_port "$new")) is the primary; $(server_name "$old") replicates from it"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  switchover) ensure_server; cmd_switchover "${2:-}" ;;
  *) echo "usage: scripts/cluster.sh up|down|status|switchover N   (env: BASE_PORT, REPLICAS, CLUSTER_DIR)" >&2; exit 2 ;;
esac
