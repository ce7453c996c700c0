#!/usr/bin/env bash
# Local servers for chatmq's development, tests and benchmarks, without Docker:
#
#   scripts/services.sh up     [kafka|mongo|nginx|metrics ...]   install if needed, start, wait until ready
#   scripts/services.sh down   [kafka|mongo|nginx|metrics ...]   stop (SIGTERM, wait, then SIGKILL); data is kept
#   scripts/services.sh status [kafka|mongo|nginx|metrics ...]   one line per service; exit 3 if any is stopped
#   scripts/services.sh install [kafka|mongo|nginx|metrics ...]  install only (nginx: with the stream module)
#
# No name means all four. Each server listens on 127.0.0.1 only.
#
#   kafka    Apache Kafka 4.x, single node KRaft (broker+controller), jars from Maven Central
#            (scripts/services/kafka/pom.xml). Ready when a Metadata request lists the broker.
#   mongo    MongoDB wire protocol: FerretDB 1.24 embedded in our own Go program
#            (scripts/services/ferretdb). Ready when {ping: 1} answers ok. Its backend is
#            $CHATMQ_FERRETDB_BACKEND: sqlite (default; nothing else runs) or postgresql:
#            then `up mongo` also installs Debian's postgresql if missing, initialises a
#            cluster in <dir>/pg (trust auth, socket and 127.0.0.1 only; run as the postgres
#            user, who must reach <dir>, when this script runs as root), starts it on
#            $CHATMQ_PG_PORT, creates the database `ferretdb` and points FerretDB at it;
#            `down mongo` stops both, FerretDB first (PostgreSQL with SIGINT, its "fast"
#            shutdown); `status mongo` adds a `pg` line. A running mongo is not switched to
#            the other backend: `down mongo` first (each backend keeps its own data).
#   nginx    Debian's nginx, with $CHATMQ_NGINX_CONF or a generated minimal conf serving
#            GET /healthz -> 200. Ready when /healthz answers 200 (any HTTP answer for a
#            conf of your own).
#   metrics  Debian's victoria-metrics (InfluxDB line protocol / v2 write API, PromQL).
#            Ready when /health answers 200.
#
# Everything this script makes (jars, binaries, configs, data, logs, pid files) lives under
# one folder, ${CHATMQ_SERVICES_DIR:-<repo>/.services}:
#   logs/<service>.log   server output (also logs/nginx-*.log, logs/*-install.log)
#   run/<service>.pid    pid of the running server; run/<service>.port its client port
#   kafka/lib            the jars; kafka/server.properties; kafka/data (log.dirs, KRaft metadata)
#   bin/chatmq-ferretdb  built from scripts/services/ferretdb; mongo/ its SQLite databases
#   pg/data              the PostgreSQL cluster (postgresql backend), pg/sock its Unix socket,
#                        logs/pg.log; run/mongo.backend the backend of the running mongo
#   nginx/               prefix, generated nginx.conf, temp paths; vm/ victoria-metrics' data
# `down` keeps all of it; delete the folder to start from scratch.
#
# Kafka's command-line tools are in the same jars, e.g.
#   java -cp "$dir/kafka/lib/*" org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
# (also ConsoleProducer, consumer.ConsoleConsumer, ClusterTool, GetOffsetShell under org.apache.kafka.tools).
#
# Environment (defaults in brackets):
#   CHATMQ_SERVICES_DIR            [<repo>/.services]
#   CHATMQ_KAFKA_PORT              [9092]   client (PLAINTEXT) listener
#   CHATMQ_KAFKA_CONTROLLER_PORT   [9093]   KRaft controller listener
#   CHATMQ_KAFKA_HEAP              [1g]     -Xmx of the broker (512m ran out of heap with the topics of a busy day of tests)
#   CHATMQ_MONGO_PORT              [27017]
#   CHATMQ_FERRETDB_BACKEND        [sqlite] FerretDB's backend: sqlite or postgresql
#   CHATMQ_PG_PORT                 [5433]   PostgreSQL's port (postgresql backend only)
#   CHATMQ_NGINX_PORT              [8080]   port of the generated conf, and the one checked
#   CHATMQ_NGINX_CONF              [generated]  an nginx.conf of your own; it must not set
#                                  `pid` or `daemon` (given on the command line); relative
#                                  paths in it resolve under <dir>/nginx/
#   CHATMQ_VM_PORT                 [8428]
#   CHATMQ_SERVICES_TIMEOUT        [120]    seconds to wait for a server to answer
#   CHATMQ_SERVICES_STOP_TIMEOUT   [30]     seconds between SIGTERM and SIGKILL
#   PYTHON                         [python3] runs scripts/services/probe.py (stdlib only)
#   JAVA_HOME                      [java on PATH]  Java 17+ for Kafka
#
# Needs: bash, python3, Java 17+ and Maven (kafka), Go 1.26 (mongo), root or sudo for
# apt-get (nginx, metrics, postgresql; installed only when missing).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
here=$repo/scripts/services
dir=${CHATMQ_SERVICES_DIR:-$repo/.services}
py=${PYTHON:-python3}
host=127.0.0.1

KAFKA_PORT=${CHATMQ_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${CHATMQ_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_HEAP=${CHATMQ_KAFKA_HEAP:-1g}
MONGO_PORT=${CHATMQ_MONGO_PORT:-27017}
FERRETDB_BACKEND=${CHATMQ_FERRETDB_BACKEND:-sqlite}
PG_PORT=${CHATMQ_PG_PORT:-5433}
PG_DB=ferretdb
NGINX_PORT=${CHATMQ_NGINX_PORT:-8080}
VM_PORT=${CHATMQ_VM_PORT:-8428}
TIMEOUT=${CHATMQ_SERVICES_TIMEOUT:-120}
STOP_TIMEOUT=${CHATMQ_SERVICES_STOP_TIMEOUT:-30}

ALL=(kafka mongo nginx metrics)

# --- helpers ---------------------------------------------------------------------------------

say() { printf 'services: %s\n' "$*"; }
warn() { printf 'services: WARNING: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

now() { printf '%s' "${EPOCHREALTIME/[.,]/}"; }          # microseconds
since() { local us=$(( $(now) - $1 )); printf '%d.%01ds' $((us / 1000000)) $((us % 1000000 / 100000)); }

show_log_tail() { # file [lines]
  local f=$1 n=${2:-40}
  if [ -s "$f" ]; then
    printf 'services: ---- last %s lines of %s ----\n' "$n" "$f" >&2
    tail -n "$n" "$f" >&2
    printf 'services: ---- end of %s ----\n' "$f" >&2
  else
    printf 'services: (%s is empty or missing)\n' "$f" >&2
  fi
}

# Run a long step with its output appended to a log file, printing a line every 15 s meanwhile.
run_logged() { # label logfile cmd...
  local label=$1 logf=$2; shift 2
  local t0; t0=$(now)
  say "$label (output: $logf) ..."
  printf '\n==== %s: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$logf"
  "$@" >>"$logf" 2>&1 9>&- &
  local pid=$! next=15 waited=0 rc=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    waited=$((waited + 1))
    if [ "$waited" -ge "$next" ]; then
      say "  ... still at it (${waited}s; last output: $(tail -n 1 "$logf" | cut -c1-100))"
      next=$((next + 15))
    fi
  done
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    show_log_tail "$logf" 40
    die "$label failed (exit $rc); see $logf"
  fi
  say "  done in $(since "$t0")"
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

apt_updated=0
apt_install() { # packages...
  if [ "$apt_updated" -eq 0 ]; then
    run_logged "apt-get update" "$dir/logs/apt-install.log" as_root apt-get update -q
    apt_updated=1
  fi
  run_logged "apt-get install $*" "$dir/logs/apt-install.log" \
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# A live process: not gone, and not a zombie waiting for its parent (here pid 1, which may
# take a second or two) to reap it.
alive() { # pid
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

pidfile() { printf '%s/run/%s.pid' "$dir" "$1"; }
logfile() { printf '%s/logs/%s.log' "$dir" "$1"; }

# What the command line of each server contains: a pid file whose process does not match
# (a pid reused after a reboot) counts as stopped.
marker() {
  case $1 in
    kafka) echo kafka.Kafka ;;
    mongo) echo chatmq-ferretdb ;;
    pg) echo "postgres -D $dir/pg/data" ;;
    nginx) echo nginx ;;
    metrics) echo victoria-metrics ;;
  esac
}

# Prints the pid of a running service, or fails.
running_pid() { # service
  local f pid
  f=$(pidfile "$1")
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  local cmd
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *"$(marker "$1")"* ]] || return 1
  printf '%s' "$pid"
}

port_of() { # service (the port it was asked for now)
  case $1 in
    kafka) echo "$KAFKA_PORT" ;;
    mongo) echo "$MONGO_PORT" ;;
    pg) echo "$PG_PORT" ;;
    nginx) echo "$NGINX_PORT" ;;
    metrics) echo "$VM_PORT" ;;
  esac
}

port_open() { # port
  timeout 2 bash -c "exec 3<>/dev/tcp/$host/$1" 2>/dev/null
}

# Start a server detached from this shell (own session, no stdin, output to its log), with
# its pid (the server's own: the wrapper execs it) in run/<service>.pid.
spawn() { # service cmd...
  local name=$1; shift
  local pf lf
  pf=$(pidfile "$name")
  lf=$(logfile "$name")
  rm -f "$pf"
  printf '\n==== %s: %s starting: %s\n' "$(date -u +%FT%TZ)" "$name" "$*" >>"$lf"
  # 9>&-: the server must not inherit the lock of this script (see main).
  # shellcheck disable=SC2016 # $$ and $@ are the inner shell's
  setsid bash -c 'echo $$ >"$1"; shift; exec nohup "$@"' spawn "$pf" "$@" </dev/null >>"$lf" 2>&1 9>&- &
  local _
  for _ in $(seq 50); do [ -s "$pf" ] && break; sleep 0.1; done
  [ -s "$pf" ] || die "$name: could not start (no pid file $pf)"
}

# The probe command of each service.
probe() { # service
  case $1 in
    kafka) "$py" "$here/probe.py" kafka "$host" "$KAFKA_PORT" ;;
    mongo) "$py" "$here/probe.py" mongo "$host" "$MONGO_PORT" ;;
    pg) "$(pg_bindir)/pg_isready" -h "$host" -p "$PG_PORT" -U postgres -d postgres ;;
    nginx)
      if [ -n "${CHATMQ_NGINX_CONF:-}" ]; then
        "$py" "$here/probe.py" http "http://$host:$NGINX_PORT/" --any-status
      else
        "$py" "$here/probe.py" http "http://$host:$NGINX_PORT/healthz"
      fi ;;
    metrics) "$py" "$here/probe.py" http "http://$host:$VM_PORT/health" ;;
  esac
}

# PostgreSQL's SIGTERM ("smart") waits for every client to leave; SIGINT ("fast") ends them.
stop_signal() { case $1 in pg) echo INT ;; *) echo TERM ;; esac; }

stop_pid() { # service pid
  local name=$1 pid=$2 waited=0 sig
  sig=$(stop_signal "$name")
  kill -"$sig" "$pid" 2>/dev/null || true
  while alive "$pid"; do
    if [ "$waited" -ge $((STOP_TIMEOUT * 10)) ]; then
      warn "$name (pid $pid) still running ${STOP_TIMEOUT}s after SIG$sig: sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

# Wait until the probe passes; on a timeout or an early exit, stop the server and fail
# with the tail of its log.
wait_ready() { # service pid t0
  local name=$1 pid=$2 t0=$3
  local deadline=$((SECONDS + TIMEOUT)) next=$((SECONDS + 10)) out=""
  while true; do
    if out=$(probe "$name" 2>&1); then
      say "$name: ready in $(since "$t0") — $out"
      return 0
    fi
    if ! alive "$pid"; then
      rm -f "$(pidfile "$name")"
      show_log_tail "$(logfile "$name")" 40
      die "$name exited during startup (last check: $out); see $(logfile "$name")"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_log_tail "$(logfile "$name")" 40
      stop_pid "$name" "$pid"
      rm -f "$(pidfile "$name")"
      die "$name did not answer on $host:$(port_of "$name") within ${TIMEOUT}s (last check: $out); stopped it; see $(logfile "$name")"
    fi
    if [ "$SECONDS" -ge "$next" ]; then
      say "  ... waiting for $name on $host:$(port_of "$name") ($(since "$t0")): $out"
      next=$((SECONDS + 10))
    fi
    sleep 0.3
  done
}

# Common start logic: skip when running (checking it answers), refuse a port taken by
# something else, otherwise spawn and wait.
start_service() { # service cmd...
  local name=$1; shift
  local port pid t0 recorded
  port=$(port_of "$name")
  t0=$(now)
  if pid=$(running_pid "$name"); then
    recorded=$(cat "$dir/run/$name.port" 2>/dev/null || echo "?")
    if [ "$recorded" != "$port" ]; then
      die "$name is already running (pid $pid) on port $recorded, not $port: run 'scripts/services.sh down $name' first"
    fi
    if out=$(probe "$name" 2>&1); then
      say "$name: already running (pid $pid, $host:$port)"
      return 0
    fi
    say "$name: running (pid $pid) but not answering yet; waiting"
    wait_ready "$name" "$pid" "$t0"
    return 0
  fi
  if port_open "$port"; then
    die "$name: $host:$port is already in use by a process this script did not start (no live pid in $(pidfile "$name")); stop it or set another port"
  fi
  say "$name: starting on $host:$port (log: $(logfile "$name"))"
  spawn "$name" "$@"
  echo "$port" >"$dir/run/$name.port"
  pid=$(cat "$(pidfile "$name")")
  wait_ready "$name" "$pid" "$t0"
}

# --- kafka -----------------------------------------------------------------------------------

java_bin() { if [ -n "${JAVA_HOME:-}" ]; then echo "$JAVA_HOME/bin/java"; else echo java; fi; }

kafka_install() {
  local lib=$dir/kafka/lib pom=$here/kafka/pom.xml stamp want
  stamp=$lib/.complete
  want=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  command -v mvn >/dev/null || die "kafka: mvn (Maven) not found"
  command -v "$(java_bin)" >/dev/null || die "kafka: java not found (set JAVA_HOME to a Java 17+)"
  rm -rf "$lib"
  mkdir -p "$lib"
  run_logged "kafka: copying the broker's jars from Maven Central into $lib (first time ~1 min)" \
    "$dir/logs/kafka-install.log" \
    mvn -B -q -f "$pom" dependency:copy-dependencies -DoutputDirectory="$lib" -DincludeScope=runtime
  ls "$lib"/kafka_2.13-*.jar >/dev/null 2>&1 || die "kafka: no kafka_2.13 jar in $lib after Maven"
  local jars=("$lib"/*.jar) main=("$lib"/kafka_2.13-*.jar)
  say "kafka: ${#jars[@]} jars, $(basename "${main[0]}")"
  echo "$want" >"$stamp"
}

# The java command line for a Kafka main class, in the array KCMD.
kafka_cmd() { # log-level main-class args...
  local level=$1; shift
  KCMD=("$(java_bin)" -Xmx"$KAFKA_HEAP" -Djava.awt.headless=true
    -Dorg.slf4j.simpleLogger.defaultLogLevel="$level"
    -Dorg.slf4j.simpleLogger.showDateTime=true
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS"
    -Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.config.AbstractConfig=warn
    -cp "$dir/kafka/lib/*" "$@")
}

kafka_config() {
  local conf=$dir/kafka/server.properties data=$dir/kafka/data
  mkdir -p "$data"
  cat >"$conf.tmp" <<EOF
# Generated by scripts/services.sh at every 'up kafka': edits here are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$host:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$host:$KAFKA_PORT,CONTROLLER://$host:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$host:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$data
num.partitions=8
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
EOF
  mv "$conf.tmp" "$conf"
  if [ ! -f "$data/meta.properties" ]; then
    local uuid
    kafka_cmd warn kafka.tools.StorageTool random-uuid
    uuid=$("${KCMD[@]}" 2>>"$(logfile kafka)" | tail -n 1)
    [[ $uuid =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka: StorageTool random-uuid printed '$uuid'; see $(logfile kafka)"
    say "kafka: formatting $data (cluster id $uuid)"
    kafka_cmd warn kafka.tools.StorageTool format -t "$uuid" -c "$conf"
    if ! "${KCMD[@]}" >>"$(logfile kafka)" 2>&1; then
      show_log_tail "$(logfile kafka)" 30
      die "kafka: StorageTool format failed; see $(logfile kafka)"
    fi
    echo "$uuid" >"$dir/kafka/cluster.id"
  fi
}

kafka_up() {
  kafka_install
  if running_pid kafka >/dev/null; then start_service kafka; return; fi
  if port_open "$KAFKA_CONTROLLER_PORT"; then
    die "kafka: controller port $host:$KAFKA_CONTROLLER_PORT is already in use; set CHATMQ_KAFKA_CONTROLLER_PORT"
  fi
  kafka_config
  kafka_cmd info kafka.Kafka "$dir/kafka/server.properties"
  start_service kafka "${KCMD[@]}"
}

# --- mongo (FerretDB) ------------------------------------------------------------------------

mongo_install() {
  [ "$FERRETDB_BACKEND" != postgresql ] || pg_install
  local src=$here/ferretdb bin=$dir/bin/chatmq-ferretdb
  if [ -x "$bin" ] && [ "$bin" -nt "$src/main.go" ] && [ "$bin" -nt "$src/go.mod" ] && [ "$bin" -nt "$src/go.sum" ]; then
    return 0
  fi
  command -v go >/dev/null || die "mongo: go not found (Go 1.26 builds scripts/services/ferretdb)"
  mkdir -p "$dir/bin"
  run_logged "mongo: building $bin with $(go version | cut -d' ' -f3) (first time: module downloads and compiling SQLite, a few minutes)" \
    "$dir/logs/mongo-install.log" \
    bash -c "cd '$src' && go build -buildvcs=false -o '$bin.tmp' . && mv '$bin.tmp' '$bin'"
  if running_pid mongo >/dev/null; then
    warn "mongo: rebuilt while the old binary runs: 'scripts/services.sh down mongo && scripts/services.sh up mongo' to use it"
  fi
}

mongo_up() {
  mongo_install
  local recorded
  if running_pid mongo >/dev/null; then
    recorded=$(cat "$dir/run/mongo.backend" 2>/dev/null || echo sqlite)
    if [ "$recorded" != "$FERRETDB_BACKEND" ]; then
      die "mongo is already running with the $recorded backend, not $FERRETDB_BACKEND: run 'scripts/services.sh down mongo' first"
    fi
  fi
  case $FERRETDB_BACKEND in
    sqlite)
      mkdir -p "$dir/mongo"
      start_service mongo "$dir/bin/chatmq-ferretdb" -listen-addr "$host:$MONGO_PORT" \
        -handler sqlite -sqlite-dir "$dir/mongo" ;;
    postgresql)
      pg_up
      start_service mongo "$dir/bin/chatmq-ferretdb" -listen-addr "$host:$MONGO_PORT" \
        -handler postgresql -postgresql-url "postgres://postgres@$host:$PG_PORT/$PG_DB" ;;
  esac
  echo "$FERRETDB_BACKEND" >"$dir/run/mongo.backend"
}

# --- pg (PostgreSQL: mongo's postgresql backend) ---------------------------------------------

# The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin).
pg_bindir() {
  local d
  d=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] || return 1
  dirname "$d"
}

pg_install() {
  pg_bindir >/dev/null || apt_install postgresql
  pg_bindir >/dev/null || die "pg: no /usr/lib/postgresql/*/bin/postgres after apt-get install postgresql"
}

# PostgreSQL refuses to run as root: as root, its programs run as the postgres user (made by
# Debian's package), which owns <dir>/pg/data and pg/sock; otherwise as the current user.
# setpriv execs, so a server started this way keeps the pid that spawn recorded.
pg_cmd() { # cmd... -> the array PGCMD
  if [ "$(id -u)" -eq 0 ]; then
    PGCMD=(setpriv --reuid=postgres --regid=postgres --init-groups -- "$@")
  else
    PGCMD=("$@")
  fi
}

pg_up() {
  pg_install
  local bin data=$dir/pg/data sock=$dir/pg/sock
  bin=$(pg_bindir)
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    die "pg: as root, PostgreSQL runs as the 'postgres' user, which does not exist (Debian's postgresql package makes it)"
  fi
  # A cluster without PG_VERSION is an initdb that did not finish: start again.
  [ -s "$data/PG_VERSION" ] || rm -rf "$data"
  mkdir -p "$data" "$sock"
  [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$data" "$sock"
  pg_cmd test -w "$data" -a -w "$sock"
  "${PGCMD[@]}" || die "pg: the postgres user cannot write $data and $sock (a parent folder closed to it?): set CHATMQ_SERVICES_DIR to a folder it can reach"
  if [ ! -s "$data/PG_VERSION" ]; then
    pg_cmd "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8
    run_logged "pg: initdb $data" "$(logfile pg)" "${PGCMD[@]}"
  fi
  if ! running_pid pg >/dev/null; then
    # Rewritten at every start: trust, but only over the socket and from 127.0.0.1.
    printf '%s\n' "# Generated by scripts/services.sh at every 'up mongo' (postgresql backend): edits here are lost." \
      'local all all trust' 'host  all all 127.0.0.1/32 trust' >"$data/pg_hba.conf"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$data/pg_hba.conf"
  fi
  pg_cmd "$bin/postgres" -D "$data" -c listen_addresses="$host" -c port="$PG_PORT" \
    -c unix_socket_directories="$sock" -c logging_collector=off
  start_service pg "${PGCMD[@]}"
  local exists
  exists=$("$bin/psql" -h "$host" -p "$PG_PORT" -U postgres -d postgres -XAtqc \
    "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") || die "pg: psql could not query $host:$PG_PORT; see $(logfile pg)"
  if [ "$exists" != 1 ]; then
    "$bin/createdb" -h "$host" -p "$PG_PORT" -U postgres "$PG_DB" || die "pg: createdb $PG_DB failed"
    say "pg: created database $PG_DB"
  fi
}

# --- nginx -----------------------------------------------------------------------------------

nginx_bin() {
  if command -v nginx >/dev/null; then command -v nginx
  elif [ -x /usr/sbin/nginx ]; then echo /usr/sbin/nginx
  else return 1
  fi
}

# The cluster's nginx balances MQTT over TCP with the stream module, a separate Debian package.
NGINX_STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so

nginx_install() {
  local want=()
  nginx_bin >/dev/null || want+=(nginx-light)
  [ -f "$NGINX_STREAM_MODULE" ] || want+=(libnginx-mod-stream)
  [ ${#want[@]} -eq 0 ] && return 0
  apt_install "${want[@]}"
  nginx_bin >/dev/null || die "nginx: not found after apt-get install nginx-light"
  [ -f "$NGINX_STREAM_MODULE" ] || die "nginx: $NGINX_STREAM_MODULE missing after apt-get install libnginx-mod-stream"
}

metrics_install() { command -v victoria-metrics >/dev/null || apt_install victoria-metrics; }

nginx_up() {
  nginx_install
  local prefix=$dir/nginx conf
  mkdir -p "$prefix/tmp"
  if [ -n "${CHATMQ_NGINX_CONF:-}" ]; then
    conf=$(cd "$(dirname "$CHATMQ_NGINX_CONF")" && pwd)/$(basename "$CHATMQ_NGINX_CONF")
    [ -f "$conf" ] || die "nginx: CHATMQ_NGINX_CONF=$CHATMQ_NGINX_CONF is not a file"
  else
    conf=$prefix/nginx.conf
    cat >"$conf.tmp" <<EOF
# Generated by scripts/services.sh at every 'up nginx' (set CHATMQ_NGINX_CONF to use another).
worker_processes 1;
error_log $dir/logs/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log $dir/logs/nginx-access.log;
    client_body_temp_path $prefix/tmp/client_body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    server {
        listen $host:$NGINX_PORT;
        location = /healthz { default_type text/plain; return 200 "ok\n"; }
        location / { return 404; }
    }
}
EOF
    mv "$conf.tmp" "$conf"
  fi
  local nginx args
  nginx=$(nginx_bin)
  args=(-p "$prefix/" -c "$conf" -e "$dir/logs/nginx-error.log" -g "pid $prefix/nginx.pid; daemon off;")
  if ! running_pid nginx >/dev/null; then
    local out
    if ! out=$("$nginx" -t -q "${args[@]}" 2>&1); then
      printf '%s\n' "$out" >&2
      die "nginx: $conf does not pass 'nginx -t'"
    fi
  fi
  start_service nginx "$nginx" "${args[@]}"
}

# --- metrics (victoria-metrics) --------------------------------------------------------------

metrics_up() {
  command -v victoria-metrics >/dev/null || apt_install victoria-metrics
  command -v victoria-metrics >/dev/null || die "metrics: victoria-metrics not found after apt-get install"
  mkdir -p "$dir/vm"
  start_service metrics victoria-metrics -storageDataPath="$dir/vm" \
    -httpListenAddr="$host:$VM_PORT" -retentionPeriod=100y
}

# --- commands --------------------------------------------------------------------------------

do_down() { # service
  local name=$1 pid
  if pid=$(running_pid "$name"); then
    local t0; t0=$(now)
    say "$name: stopping pid $pid (SIG$(stop_signal "$name"))"
    stop_pid "$name" "$pid"
    printf '==== %s: %s stopped by scripts/services.sh down\n' "$(date -u +%FT%TZ)" "$name" >>"$(logfile "$name")"
    say "$name: stopped in $(since "$t0") (data kept in $dir)"
  else
    say "$name: not running"
  fi
  rm -f "$(pidfile "$name")" "$dir/run/$name.port"
  # mongo's PostgreSQL goes down after FerretDB, whichever backend is asked for now.
  if [ "$name" = mongo ]; then
    rm -f "$dir/run/mongo.backend"
    if running_pid pg >/dev/null || [ -s "$(pidfile pg)" ]; then do_down pg; fi
  fi
}

do_status() { # service; returns 1 when stopped
  local name=$1 pid port state
  port=$(cat "$dir/run/$name.port" 2>/dev/null || port_of "$name")
  if pid=$(running_pid "$name"); then
    if port_open "$port"; then state="running"; else state="running (port not answering)"; fi
    printf '%-8s %-30s %s:%-6s pid %s\n' "$name" "$state" "$host" "$port" "$pid"
  else
    printf '%-8s %-30s %s:%-6s -\n' "$name" "stopped" "$host" "$port"
    return 1
  fi
}

main() {
  [ $# -ge 1 ] || usage
  local cmd=$1; shift
  local names=() n
  for n in "$@"; do
    case $n in
      kafka | mongo | nginx | metrics) names+=("$n") ;;
      ferretdb) names+=(mongo) ;;
      vm | victoria-metrics) names+=(metrics) ;;
      *) die "unknown service '$n' (kafka, mongo, nginx, metrics)" ;;
    esac
  done
  [ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")

  case $FERRETDB_BACKEND in
    sqlite | postgresql) ;;
    *) die "CHATMQ_FERRETDB_BACKEND=$FERRETDB_BACKEND: sqlite or postgresql" ;;
  esac
  case $cmd in
    up | down | status | install) ;;
    -h | --help | help) usage ;;
    *) usage ;;
  esac

  mkdir -p "$dir/logs" "$dir/run"
  if [ "$cmd" = status ]; then
    local rc=0 backend
    for n in "${names[@]}"; do
      do_status "$n" || rc=3
      if [ "$n" = mongo ]; then
        backend=$(cat "$dir/run/mongo.backend" 2>/dev/null || echo "$FERRETDB_BACKEND")
        if [ "$backend" = postgresql ] || running_pid pg >/dev/null; then do_status pg || rc=3; fi
      fi
    done
    return "$rc"
  fi

  # One up/down at a time per services folder.
  exec 9>"$dir/run/.lock"
  if ! flock -n 9; then
    say "another scripts/services.sh is running on $dir; waiting for it"
    flock 9
  fi

  local t0; t0=$(now)
  for n in "${names[@]}"; do
    case $cmd in
      up) "${n}_up" ;;
      install) "${n}_install" ;;
      down) do_down "$n" ;;
    esac
  done
  say "$cmd ${names[*]}: done in $(since "$t0") (folder: $dir)"
}

main "$@"
