#!/usr/bin/env bash
# Local service stack for tranche: PostgreSQL, Redis and a single-node Kafka (KRaft).
#
#   bash scripts/stack.sh up            start whatever is missing (idempotent; fast when all run)
#   bash scripts/stack.sh status        one line per service; exit 0 if all up, 3 otherwise
#   bash scripts/stack.sh down          stop the Kafka broker this script started
#   bash scripts/stack.sh down --all    ... and also the machine's Redis and PostgreSQL
#   bash scripts/stack.sh replica-up    start a streaming hot standby of the local PostgreSQL
#                                       (pg_basebackup into .cache/replica, port 5433); off
#                                       unless asked for, never started by `up`
#   bash scripts/stack.sh replica-down  stop it and delete its data directory
#
# The build/test machines have no Docker engine (docker-compose.yml is for people who do).
# PostgreSQL and Redis normally already run there; they are installed from Debian's packages
# only when absent. Kafka is not packaged: its jars come from Maven Central through the
# machine's Maven (stack/kafka/pom.xml) and run on the machine's Java as one KRaft node.
#
# Environment:
#   DATABASE_URL, REDIS_URL, KAFKA_BROKERS  when they point somewhere other than the local
#                              default address, that service is only checked, never managed
#   TRANCHE_STACK_DIR          state directory (default <repo>/.cache); relative = to the repo
#   TRANCHE_KAFKA_START_TIMEOUT  seconds to wait for a fresh broker to accept writes (90)
#   KAFKA_HEAP_OPTS, KAFKA_OPTS  extra JVM options for the broker (heap default -Xmx512m -Xms256m)
#   TRANCHE_REPLICA_PORT       port of the hot standby of replica-up (5433)
set -euo pipefail

# --- Paths (everything relative to the repository root, whatever the caller's cwd) -------------
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${TRANCHE_STACK_DIR:-.cache}"
[[ "$STACK_DIR" == /* ]] || STACK_DIR="$ROOT/$STACK_DIR"

KAFKA_TEMPLATES="$ROOT/stack/kafka"          # pom.xml, server.properties template, log4j
KAFKA_HOME="$STACK_DIR/kafka"                # generated state, git-ignored
KAFKA_LIBS="$KAFKA_HOME/libs"                # jars copied from Maven
KAFKA_DATA="$KAFKA_HOME/data"                # log.dirs (KRaft metadata + topic data)
KAFKA_PROPS="$KAFKA_HOME/server.properties"  # rendered from the template
KAFKA_LOG="$KAFKA_HOME/kafka.log"            # broker stdout/stderr
KAFKA_PID_FILE="$KAFKA_HOME/kafka.pid"
KAFKA_CLUSTER_ID_FILE="$KAFKA_HOME/cluster.id"
KAFKA_LOCK="$KAFKA_HOME/.lock"               # serialises concurrent `up`s on the slow path

PG_HOST=127.0.0.1 PG_PORT=5432
REDIS_HOST=127.0.0.1 REDIS_PORT=6379
KAFKA_HOST=127.0.0.1 KAFKA_PORT=9092

KAFKA_START_TIMEOUT="${TRANCHE_KAFKA_START_TIMEOUT:-90}"
PG_START_TIMEOUT=30
REDIS_START_TIMEOUT=10
KAFKA_STOP_TIMEOUT=30

# --- Small helpers ---------------------------------------------------------------------------------
msg() { echo "stack: $*"; }
die() { echo "stack: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

# tcp_open HOST PORT: true when a TCP connection succeeds within ~2 s (bash's /dev/tcp).
# shellcheck disable=SC2016 # $1/$2 expand in the child bash, on purpose
tcp_open() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" >/dev/null 2>&1
}

# is_local HOST: loopback names this script may manage.
is_local() {
  case "$1" in 127.0.0.1 | localhost | ::1 | "") return 0 ;; *) return 1 ;; esac
}

# url_host_port URL DEFAULT_PORT: prints "host port" of a postgres:// or redis:// style URL.
url_host_port() {
  local rest host port
  rest="${1#*://}"        # drop the scheme
  rest="${rest%%[/?#]*}"  # drop path, query, fragment
  rest="${rest##*@}"      # drop user:password@
  if [[ "$rest" == \[* ]]; then            # [ipv6]:port
    host="${rest%%]*}"; host="${host#[}"; port="${rest#*]}"; port="${port#:}"
  else
    host="${rest%%:*}"; port="${rest#"$host"}"; port="${port#:}"
  fi
  echo "${host:-127.0.0.1} ${port:-$2}"
}

tcp_closed() { ! tcp_open "$@"; }

# wait_until SECONDS CMD...: poll CMD every 0.5 s until it succeeds or the time is up.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# apt_install PKG...: install Debian packages (apt-get update once per run). Quiet; log on failure.
APT_UPDATED=""
apt_install() {
  have apt-get || die "cannot install $* (no apt-get here); install it by hand"
  local sudo=() log="$STACK_DIR/apt.log"
  if [[ "$(id -u)" != 0 ]]; then
    have sudo || die "installing $* needs root (or sudo)"
    sudo=(sudo -n)
  fi
  mkdir -p "$STACK_DIR"
  if [[ -z "$APT_UPDATED" ]]; then
    msg "apt-get update (log: $log)"
    "${sudo[@]}" apt-get update >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "apt-get update failed"; }
    APT_UPDATED=1
  fi
  msg "apt-get install -y $*"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" \
    >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "apt-get install $* failed"; }
}

# --- Which services are ours to manage (environment overrides) ----------------------------------
PG_MANAGED=1 REDIS_MANAGED=1 KAFKA_MANAGED=1
if [[ -n "${DATABASE_URL:-}" ]]; then
  read -r h p <<<"$(url_host_port "$DATABASE_URL" 5432)"
  if ! is_local "$h" || [[ "$p" != 5432 ]]; then PG_MANAGED=0 PG_HOST="$h" PG_PORT="$p"; fi
fi
if [[ -n "${REDIS_URL:-}" ]]; then
  read -r h p <<<"$(url_host_port "$REDIS_URL" 6379)"
  if ! is_local "$h" || [[ "$p" != 6379 ]]; then REDIS_MANAGED=0 REDIS_HOST="$h" REDIS_PORT="$p"; fi
fi
if [[ -n "${KAFKA_BROKERS:-}" ]]; then
  case "${KAFKA_BROKERS// /}" in
    127.0.0.1:9092 | localhost:9092) ;;
    *) KAFKA_MANAGED=0 ;;
  esac
fi

# ================================== PostgreSQL ==================================================
pg_ready() { # HOST PORT
  if have pg_isready; then pg_isready -q -h "$1" -p "$2" -t 2; else tcp_open "$1" "$2"; fi
}

# The Debian major version to run: the newest cluster config, else the newest server binaries.
# shellcheck disable=SC2012 # version directory names are plain numbers
pg_version() {
  local v=""
  [[ -d /etc/postgresql ]] && v="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$v" ]] || v="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)"
  echo "$v"
}

pg_installed() { have pg_ctlcluster && [[ -n "$(pg_version)" ]]; }

# Fresh clusters only: trust auth on loopback and the local socket (dev/test machine).
pg_configure_trust() {
  local hba="/etc/postgresql/$1/main/pg_hba.conf"
  [[ -f "$hba.orig" ]] || cp "$hba" "$hba.orig"
  cat >"$hba" <<'EOF'
# Written by tranche scripts/stack.sh for a dev/test machine: trust on loopback only.
local   all          all                 trust
host    all          all   127.0.0.1/32  trust
host    all          all   ::1/128       trust
local   replication  all                 trust
host    replication  all   127.0.0.1/32  trust
host    replication  all   ::1/128       trust
EOF
}

pg_up() {
  if ((!PG_MANAGED)); then
    pg_ready "$PG_HOST" "$PG_PORT" || die "postgres down at $PG_HOST:$PG_PORT (DATABASE_URL; not managed here)"
    msg "postgres reused at $PG_HOST:$PG_PORT (DATABASE_URL, not managed)"
    return
  fi
  if pg_ready "$PG_HOST" "$PG_PORT"; then msg "postgres reused at $PG_HOST:$PG_PORT"; return; fi

  local how=started fresh=0 ver
  if ! pg_installed; then
    apt_install postgresql
    how=installed fresh=1
  fi
  ver="$(pg_version)"
  [[ -n "$ver" ]] || die "postgres: no server version found after install"
  if [[ ! -d "/etc/postgresql/$ver/main" ]]; then
    msg "postgres: creating cluster $ver/main"
    pg_createcluster "$ver" main >/dev/null
    fresh=1
  fi
  ((fresh)) && pg_configure_trust "$ver"

  # `start` fails with "already running" if the package's postinst started it: reload instead.
  if pg_ctlcluster --skip-systemctl-redirect "$ver" main status >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >/dev/null
  else
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start \
      || die "postgres: pg_ctlcluster $ver main start failed (see /var/log/postgresql/)"
  fi
  wait_until "$PG_START_TIMEOUT" pg_ready "$PG_HOST" "$PG_PORT" \
    || die "postgres: not accepting connections on $PG_HOST:$PG_PORT after ${PG_START_TIMEOUT}s"

  if ((fresh)); then
    local psql=(psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -qtAX)
    [[ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'test'")" == 1 ]] \
      || "${psql[@]}" -c 'CREATE DATABASE test' >/dev/null
  fi
  msg "postgres $how at $PG_HOST:$PG_PORT (cluster $ver/main)"
}

pg_down() {
  if ((!PG_MANAGED)); then msg "postgres at $PG_HOST:$PG_PORT is external (DATABASE_URL); left alone"; return; fi
  if ! pg_ready "$PG_HOST" "$PG_PORT"; then msg "postgres already down"; return; fi
  pg_installed || die "postgres answers on $PG_HOST:$PG_PORT but no local cluster to stop"
  local ver; ver="$(pg_version)"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main stop
  msg "postgres stopped (cluster $ver/main)"
}

# ==================================== Redis =====================================================
# shellcheck disable=SC2016 # $1/$2 expand in the child bash, on purpose
redis_ping() { # HOST PORT
  if have redis-cli; then
    [[ "$(timeout 3 redis-cli -h "$1" -p "$2" ping 2>/dev/null)" == PONG ]]
  else
    # No client: speak RESP by hand over /dev/tcp.
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "PING\r\n" >&3 && read -r line <&3 && [[ "$line" == +PONG* ]]' \
      _ "$1" "$2" 2>/dev/null
  fi
}

# Managed: PING answers PONG. External (REDIS_URL, maybe with a password): TCP is enough.
redis_is_up() {
  if ((REDIS_MANAGED)); then redis_ping "$REDIS_HOST" "$REDIS_PORT"; else tcp_open "$REDIS_HOST" "$REDIS_PORT"; fi
}

redis_up() {
  if ((!REDIS_MANAGED)); then
    tcp_open "$REDIS_HOST" "$REDIS_PORT" || die "redis down at $REDIS_HOST:$REDIS_PORT (REDIS_URL; not managed here)"
    msg "redis reused at $REDIS_HOST:$REDIS_PORT (REDIS_URL, not managed)"
    return
  fi
  if redis_ping "$REDIS_HOST" "$REDIS_PORT"; then msg "redis reused at $REDIS_HOST:$REDIS_PORT"; return; fi

  local how=started
  if ! have redis-server; then
    apt_install redis-server
    how=installed
    # Some environments let the package start its own daemon: take it if it answers.
    if redis_ping "$REDIS_HOST" "$REDIS_PORT"; then msg "redis installed at $REDIS_HOST:$REDIS_PORT"; return; fi
  fi
  # The machine's own start command; fall back to the stack dir when /var is not writable.
  local dir=/var/lib/redis logdir=/var/log/redis
  mkdir -p "$dir" "$logdir" 2>/dev/null || true
  if [[ ! -w "$dir" || ! -w "$logdir" ]]; then dir="$STACK_DIR/redis" logdir="$STACK_DIR/redis"; mkdir -p "$dir"; fi
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$dir" --logfile "$logdir/ci.log" >/dev/null || die "redis: redis-server failed to start (see $logdir/ci.log)"
  wait_until "$REDIS_START_TIMEOUT" redis_ping "$REDIS_HOST" "$REDIS_PORT" \
    || die "redis: no PONG on $REDIS_HOST:$REDIS_PORT after ${REDIS_START_TIMEOUT}s (see $logdir/ci.log)"
  msg "redis $how at $REDIS_HOST:$REDIS_PORT"
}

redis_down() {
  if ((!REDIS_MANAGED)); then msg "redis at $REDIS_HOST:$REDIS_PORT is external (REDIS_URL); left alone"; return; fi
  if ! redis_ping "$REDIS_HOST" "$REDIS_PORT"; then msg "redis already down"; return; fi
  if have redis-cli; then
    redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  else
    # shellcheck disable=SC2016 # $1/$2 expand in the child bash, on purpose
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "SHUTDOWN NOSAVE\r\n" >&3' _ "$REDIS_HOST" "$REDIS_PORT" || true
  fi
  wait_until 10 tcp_closed "$REDIS_HOST" "$REDIS_PORT" || die "redis: still answering after SHUTDOWN"
  msg "redis stopped"
}

# ==================================== Kafka =====================================================
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/java}"; JAVA="${JAVA:-java}"
NODE="$ROOT/node_modules/.bin/node"; [[ -x "$NODE" ]] || NODE=node
LOG4J_OPT="-Dlog4j.configuration=file:$KAFKA_TEMPLATES/log4j.properties"

# kafka_pid: print the pid from kafka.pid if that process is alive and is *our* broker
# (command line names kafka.Kafka and our server.properties: guards against pid reuse).
kafka_pid() {
  local pid
  [[ -f "$KAFKA_PID_FILE" ]] || return 1
  pid="$(<"$KAFKA_PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
  [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *"kafka.Kafka $KAFKA_PROPS"* ]] || return 1
  echo "$pid"
}

alive() { kill -0 "$1" 2>/dev/null; }
dead() { ! alive "$1"; }

# The first broker of KAFKA_BROKERS that accepts TCP (for externally managed Kafka).
kafka_external_reachable() {
  local b hostport
  IFS=',' read -r -a brokers <<<"${KAFKA_BROKERS// /}"
  for b in "${brokers[@]}"; do
    hostport="${b#*://}"
    if tcp_open "${hostport%:*}" "${hostport##*:}"; then echo "$hostport"; return 0; fi
  done
  return 1
}

# Jars: copied once from Maven; the marker holds the pom's hash so editing the pom re-fetches.
kafka_pom_hash() { sha256sum "$KAFKA_TEMPLATES/pom.xml" | cut -c1-64; }

kafka_libs_complete() {
  [[ -f "$KAFKA_LIBS/.complete" && "$(<"$KAFKA_LIBS/.complete")" == "$(kafka_pom_hash)" ]] \
    && compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null
}

kafka_fetch_libs() {
  local pom="$KAFKA_TEMPLATES/pom.xml" want tmp="$KAFKA_HOME/libs.tmp" log="$KAFKA_HOME/mvn.log"
  want="$(kafka_pom_hash)"
  have mvn || apt_install maven
  msg "kafka: fetching broker jars from Maven Central (log: $log)"
  rm -rf "$tmp"
  mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1 \
    || { tail -n 30 "$log" >&2; die "kafka: mvn dependency:copy-dependencies failed"; }
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "kafka: mvn finished but no kafka_2.13 jar in $tmp"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  echo "$want" >"$KAFKA_LIBS/.complete"
}

# Render server.properties from the template (cheap; done before every start).
kafka_render_props() {
  local tpl
  tpl="$(<"$KAFKA_TEMPLATES/server.properties")"
  printf '%s\n' "${tpl//@LOG_DIRS@/$KAFKA_DATA}" >"$KAFKA_PROPS.tmp"
  mv "$KAFKA_PROPS.tmp" "$KAFKA_PROPS"
}

storage_tool() { "$JAVA" "$LOG4J_OPT" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool "$@"; }

# Format the KRaft storage once; the cluster id is kept in cluster.id.
kafka_format() {
  if [[ -f "$KAFKA_DATA/meta.properties" ]]; then
    [[ -f "$KAFKA_CLUSTER_ID_FILE" ]] \
      || sed -n 's/^cluster\.id=//p' "$KAFKA_DATA/meta.properties" >"$KAFKA_CLUSTER_ID_FILE"
    return
  fi
  local id log="$KAFKA_HOME/format.log"
  if [[ -s "$KAFKA_CLUSTER_ID_FILE" ]]; then
    id="$(<"$KAFKA_CLUSTER_ID_FILE")"
  else
    id="$(storage_tool random-uuid 2>/dev/null | tail -n 1)"
    [[ "$id" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "kafka: StorageTool random-uuid gave '$id'"
    echo "$id" >"$KAFKA_CLUSTER_ID_FILE"
  fi
  mkdir -p "$KAFKA_DATA"
  # Static quorum (controller.quorum.voters) => plain format, no --standalone.
  storage_tool format -t "$id" -c "$KAFKA_PROPS" --ignore-formatted >"$log" 2>&1 \
    || { cat "$log" >&2; die "kafka: storage format failed"; }
  msg "kafka: formatted $KAFKA_DATA (cluster id $id)"
}

kafka_log_tail() {
  echo "stack: ---- last lines of $KAFKA_LOG ----" >&2
  tail -n 40 "$KAFKA_LOG" >&2 2>/dev/null || true
  echo "stack: ----" >&2
}

# SIGTERM, wait up to KAFKA_STOP_TIMEOUT s, then SIGKILL. Prints nothing.
kafka_kill() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  wait_until "$KAFKA_STOP_TIMEOUT" dead "$pid" && return 0
  echo "stack: kafka pid $pid ignored SIGTERM for ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  wait_until 5 dead "$pid" || true
}

# Give up on a broker that did not come up: show why, stop it so the next `up` starts clean.
kafka_fail() {
  local pid=$1; shift
  echo "stack: kafka: $*" >&2
  kafka_log_tail
  if alive "$pid"; then kafka_kill "$pid"; fi
  rm -f "$KAFKA_PID_FILE"
  exit 1
}

# Wait until the broker accepts a real write (topic create + acks=all produce).
kafka_wait_ready() {
  local pid=$1 deadline=$((SECONDS + KAFKA_START_TIMEOUT)) left
  until tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; do
    alive "$pid" || kafka_fail "$pid" "broker (pid $pid) exited during startup"
    ((SECONDS < deadline)) || kafka_fail "$pid" "port $KAFKA_PORT not open after ${KAFKA_START_TIMEOUT}s"
    sleep 0.5
  done
  left=$((deadline - SECONDS)); ((left >= 10)) || left=10
  [[ -d "$ROOT/node_modules/kafkajs" ]] || die "kafka: node_modules/kafkajs missing (run npm ci first)"
  # (--disable-warning: kafkajs 2.2.4 arms negative timers, which Node >= 23 warns about.)
  KAFKA_BROKERS="$KAFKA_HOST:$KAFKA_PORT" KAFKA_READY_TIMEOUT_MS=$((left * 1000)) \
    "$NODE" --disable-warning=TimeoutNegativeWarning "$ROOT/scripts/kafka-ready.mjs" >&2 \
    || { alive "$pid" || kafka_fail "$pid" "broker (pid $pid) exited during startup"
         kafka_fail "$pid" "broker up but not accepting writes within ${KAFKA_START_TIMEOUT}s"; }
}

# Start the broker in the background; sets KAFKA_STARTED_PID.
KAFKA_STARTED_PID=""
kafka_launch() {
  local heap="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}" pid
  [[ -f "$KAFKA_LOG" ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
  # shellcheck disable=SC2206 # heap and KAFKA_OPTS are deliberately word-split
  local jvm=($heap -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    "$LOG4J_OPT" ${KAFKA_OPTS:-})
  # setsid: own session, so Ctrl-C / the end of `npm test` does not take it down; nohup for
  # SIGHUP; stdio detached so no caller waits on our pipes; fd 9 (the lock) not inherited.
  nohup setsid "$JAVA" "${jvm[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" \
    </dev/null >"$KAFKA_LOG" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$KAFKA_PID_FILE"
  # setsid execs in place when not a process-group leader (the normal case); if it forked
  # instead, find the real JVM by its (unique) command line.
  sleep 0.3
  if ! kafka_pid >/dev/null; then
    pid="$(pgrep -n -f "kafka.Kafka $KAFKA_PROPS" || true)"
    [[ -n "$pid" ]] || { kafka_log_tail; die "kafka: broker exited immediately"; }
    echo "$pid" >"$KAFKA_PID_FILE"
  fi
  KAFKA_STARTED_PID="$pid"
}

kafka_up() {
  local pid
  if ((!KAFKA_MANAGED)); then
    local where
    where="$(kafka_external_reachable)" || die "kafka down at $KAFKA_BROKERS (KAFKA_BROKERS; not managed here)"
    msg "kafka reused at $where (KAFKA_BROKERS, not managed)"
    return
  fi
  # Fast path: the port answers.
  if tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    if pid="$(kafka_pid)"; then msg "kafka reused at $KAFKA_HOST:$KAFKA_PORT (pid $pid)"
    else msg "kafka reused at $KAFKA_HOST:$KAFKA_PORT (not started by this script)"; fi
    # The tests run Kafka's own Java client and private brokers from these jars: a checkout
    # that reuses a broker started elsewhere still needs its own copy.
    if ! kafka_libs_complete; then
      mkdir -p "$KAFKA_HOME"
      exec 9>"$KAFKA_LOCK"
      flock -w 600 9 || die "kafka: another stack.sh holds $KAFKA_LOCK"
      kafka_libs_complete || kafka_fetch_libs
      exec 9>&-
    fi
    return
  fi

  # Slow path, one `up` at a time (npm test and npm run demo may race).
  mkdir -p "$KAFKA_HOME"
  exec 9>"$KAFKA_LOCK"
  flock -w 600 9 || die "kafka: another stack.sh holds $KAFKA_LOCK"
  # Re-check under the lock: a concurrent `up` may have started it meanwhile.
  if pid="$(kafka_pid)"; then
    if ! tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
      msg "kafka: broker pid $pid is still starting; waiting"
    fi
    kafka_wait_ready "$pid"
    msg "kafka reused at $KAFKA_HOST:$KAFKA_PORT (pid $pid)"
    exec 9>&-
    return
  fi
  if tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    msg "kafka reused at $KAFKA_HOST:$KAFKA_PORT (not started by this script)"; exec 9>&-; return
  fi
  rm -f "$KAFKA_PID_FILE"

  # The controller listener needs 9093 too; say so plainly instead of a JVM stack trace.
  if tcp_open "$KAFKA_HOST" 9093; then die "kafka: port 9093 (KRaft controller) is taken by another process"; fi

  local how=started t0=$SECONDS
  have "$JAVA" || { apt_install default-jre-headless; JAVA=java; }
  if ! kafka_libs_complete; then
    kafka_fetch_libs
    how=installed
  fi
  kafka_render_props
  kafka_format
  kafka_launch
  pid="$KAFKA_STARTED_PID"
  kafka_wait_ready "$pid"
  exec 9>&-
  msg "kafka $how at $KAFKA_HOST:$KAFKA_PORT (pid $pid, ready in $((SECONDS - t0))s, log $KAFKA_LOG)"
}

kafka_down() {
  local pid t0=$SECONDS
  if ((!KAFKA_MANAGED)); then msg "kafka at $KAFKA_BROKERS is external (KAFKA_BROKERS); left alone"; return; fi
  if pid="$(kafka_pid)"; then
    kafka_kill "$pid"
    rm -f "$KAFKA_PID_FILE"
    msg "kafka stopped (pid $pid, $((SECONDS - t0))s)"
  elif tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    rm -f "$KAFKA_PID_FILE"
    msg "kafka at $KAFKA_HOST:$KAFKA_PORT was not started by this script; left running"
  else
    rm -f "$KAFKA_PID_FILE"
    msg "kafka already down"
  fi
}

# =================================== Replica (hot standby) ======================================
# A streaming hot standby of the local PostgreSQL, so that the replica-lag health signal is
# tested against a real replica. It needs nothing of the primary but a replication connection
# (wal_level replica and max_wal_senders > 0 are PostgreSQL 15's defaults; the local pg_hba
# trusts replication from 127.0.0.1). It uses no replication slot, so a forgotten standby never
# makes the primary keep WAL. Its data lives in $STACK_DIR/replica, owned by the server's user.
REPLICA_PORT="${TRANCHE_REPLICA_PORT:-5433}"
REPLICA_DIR="$STACK_DIR/replica"
REPLICA_DATA="$REPLICA_DIR/data"
REPLICA_LOG="$REPLICA_DIR/replica.log"

# as_pg CMD...: run as the cluster's owner (postgres) when we are root.
as_pg() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin() {
  local dir
  dir="$(pg_config --bindir 2>/dev/null || true)"
  [[ -x "$dir/$1" ]] || dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [[ -x "$dir/$1" ]] || die "cannot find PostgreSQL's $1"
  echo "$dir/$1"
}

# The primary must accept replication connections from loopback: an entry is appended to its
# pg_hba.conf when none exists, and the server reloads it (a reload, never a restart).
replica_hba() {
  local q="psql -h $PG_HOST -p $PG_PORT -U postgres -Atc" hba
  if $q "SELECT 1 FROM pg_hba_file_rules WHERE 'replication' = ANY (database) AND type = 'host'
         AND (address IS NULL OR address = '127.0.0.1' OR address = 'all') AND error IS NULL LIMIT 1" | grep -q 1; then
    return 0
  fi
  hba="$($q 'SHOW hba_file')"
  [[ -w "$hba" ]] || die "the primary refuses replication from $PG_HOST and $hba is not writable here; add: host replication all 127.0.0.1/32 trust"
  msg "allowing replication from $PG_HOST in $hba (then reloading, no restart)"
  printf '%s\n' '# Added by tranche scripts/stack.sh replica-up: a local hot standby' \
    'host    replication  all   127.0.0.1/32  trust' >>"$hba"
  $q 'SELECT pg_reload_conf()' >/dev/null
}

replica_up() {
  pg_ready "$PG_HOST" "$PG_PORT" || die "the primary at $PG_HOST:$PG_PORT is down; run: bash scripts/stack.sh up"
  if pg_ready "$PG_HOST" "$REPLICA_PORT"; then msg "replica up at $PG_HOST:$REPLICA_PORT"; return 0; fi
  local settings
  settings="$(psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -Atc "SELECT current_setting('wal_level') || ' ' || current_setting('max_wal_senders')")"
  read -r wal_level senders <<<"$settings"
  [[ "$wal_level" != minimal && "$senders" -gt 0 ]] ||
    die "the primary cannot stream (wal_level=$wal_level, max_wal_senders=$senders); both need a restart of it to change"
  replica_hba
  mkdir -p "$REPLICA_DIR"
  [[ "$(id -u)" == 0 ]] && chown postgres: "$REPLICA_DIR"
  if [[ ! -f "$REPLICA_DATA/standby.signal" ]]; then
    rm -rf "$REPLICA_DATA"
    msg "copying the primary with pg_basebackup into $REPLICA_DATA"
    as_pg "$(pg_bin pg_basebackup)" -h "$PG_HOST" -p "$PG_PORT" -U postgres -D "$REPLICA_DATA" -X stream -R -c fast \
      -d "application_name=tranche-replica" >/dev/null
    # Debian keeps the configuration outside the data directory: the standby gets its own,
    # with the settings a hot standby must have at least as high as its primary.
    local limits
    limits="$(psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -Atc "SELECT string_agg(name || ' = ' || setting, E'\\n')
      FROM pg_settings WHERE name IN ('max_connections', 'max_worker_processes', 'max_wal_senders',
                                      'max_prepared_transactions', 'max_locks_per_transaction')")"
    [[ -f "$REPLICA_DATA/postgresql.conf" ]] || printf '%s\n' "$limits" "shared_buffers = 32MB" >"$REPLICA_DATA/postgresql.conf"
    [[ -f "$REPLICA_DATA/pg_hba.conf" ]] ||
      printf '%s\n' 'local all all trust' 'host all all 127.0.0.1/32 trust' >"$REPLICA_DATA/pg_hba.conf"
    chown postgres: "$REPLICA_DATA/postgresql.conf" "$REPLICA_DATA/pg_hba.conf" 2>/dev/null || true
    cat >>"$REPLICA_DATA/postgresql.auto.conf" <<CONF
hba_file = '$REPLICA_DATA/pg_hba.conf'
ident_file = ''
port = $REPLICA_PORT
listen_addresses = '$PG_HOST'
hot_standby = on
hot_standby_feedback = off
wal_receiver_status_interval = 1s
unix_socket_directories = '$REPLICA_DIR'
CONF
  fi
  as_pg "$(pg_bin pg_ctl)" -D "$REPLICA_DATA" -l "$REPLICA_LOG" -w -t 60 start >/dev/null ||
    die "the replica did not start; see $REPLICA_LOG"
  local deadline=$((SECONDS + PG_START_TIMEOUT))
  until psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -Atc \
    "SELECT 1 FROM pg_stat_replication WHERE application_name = 'tranche-replica' AND state = 'streaming'" | grep -q 1; do
    ((SECONDS < deadline)) || die "the replica did not start streaming within ${PG_START_TIMEOUT}s; see $REPLICA_LOG"
    sleep 0.5
  done
  msg "replica up at $PG_HOST:$REPLICA_PORT, streaming from $PG_HOST:$PG_PORT"
}

replica_down() {
  if [[ -f "$REPLICA_DATA/postmaster.pid" ]]; then
    as_pg "$(pg_bin pg_ctl)" -D "$REPLICA_DATA" -m fast -w -t 60 stop >/dev/null || die "the replica did not stop; see $REPLICA_LOG"
  fi
  rm -rf "$REPLICA_DIR"
  msg "replica down"
}

# =================================== Commands ===================================================
cmd_up() {
  if [[ "${TRANCHE_TESTCONTAINERS:-}" == "1" ]]; then
    msg "TRANCHE_TESTCONTAINERS=1: the tests start their services in containers; nothing to bring up"
    return 0
  fi
  pg_up
  redis_up
  kafka_up
}

cmd_status() {
  local down=0 pid where
  if pg_ready "$PG_HOST" "$PG_PORT"; then msg "postgres up at $PG_HOST:$PG_PORT"
  else msg "postgres down at $PG_HOST:$PG_PORT"; down=1; fi

  if redis_is_up; then
    msg "redis up at $REDIS_HOST:$REDIS_PORT"
  else msg "redis down at $REDIS_HOST:$REDIS_PORT"; down=1; fi

  if ((!KAFKA_MANAGED)); then
    if where="$(kafka_external_reachable)"; then msg "kafka up at $where (KAFKA_BROKERS)"
    else msg "kafka down at $KAFKA_BROKERS"; down=1; fi
  elif tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    if pid="$(kafka_pid)"; then msg "kafka up at $KAFKA_HOST:$KAFKA_PORT (pid $pid)"
    else msg "kafka up at $KAFKA_HOST:$KAFKA_PORT (not started by this script)"; fi
  elif pid="$(kafka_pid)"; then msg "kafka down at $KAFKA_HOST:$KAFKA_PORT (pid $pid alive, starting?)"; down=1
  else msg "kafka down at $KAFKA_HOST:$KAFKA_PORT"; down=1; fi

  ((down == 0)) || exit 3
}

cmd_down() {
  kafka_down
  if [[ "${1:-}" == --all ]]; then
    redis_down
    pg_down
  else
    msg "postgres and redis belong to the machine; left running (use 'down --all' to stop them too)"
  fi
}

usage() {
  echo "usage: bash scripts/stack.sh up | status | down [--all] | replica-up | replica-down" >&2
  exit 2
}

case "${1:-}" in
  up) [[ $# -eq 1 ]] || usage; cmd_up ;;
  status) [[ $# -eq 1 ]] || usage; cmd_status ;;
  down)
    [[ $# -eq 1 || ($# -eq 2 && "$2" == --all) ]] || usage
    cmd_down "${2:-}"
    ;;
  replica-up) [[ $# -eq 1 ]] || usage; replica_up ;;
  replica-down) [[ $# -eq 1 ]] || usage; replica_down ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
