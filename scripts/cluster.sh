#!/usr/bin/env bash
# shardgate's native local cluster: no Docker.
#
#   scripts/cluster.sh up       idempotent: install what is missing, init, start, wait, print the table
#   scripts/cluster.sh down     stop every piece this cluster started (Redis only if we started it)
#   scripts/cluster.sh status   each piece up/down, replica lag; exit 1 if anything is down
#   scripts/cluster.sh clean    down, then remove all cluster data (.cluster/)
#
# Topology, for shard i = 0..SHARDS-1:
#   primary 127.0.0.1:544i, replica 127.0.0.1:545i (pg_basebackup -R, streaming), PgBouncer 127.0.0.1:643i
#   Redis 127.0.0.1:6379 (reused when something already answers PING there)
#
# Liveness is always checked with pg_isready / the port / PING, never `kill -0`: PID 1 on
# these machines does not reap children, so a stopped server can linger as a zombie.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$(realpath -m "${CLUSTER_DIR:-$ROOT/.cluster}")"
# SHARDS: how many shards to run. Default 5, or more when a shard was added before
# (`make up SHARDS=6` adds shard-5 to a running cluster; later commands keep it).
existing_shards() {
  local n=5 d i
  for d in "$DATA"/shard-*; do
    [ -d "$d/primary" ] || continue
    i="${d##*/shard-}"
    [[ "$i" =~ ^[0-9]+$ ]] && [ $((i + 1)) -gt $n ] && n=$((i + 1))
  done
  echo "$n"
}
SHARDS="${SHARDS:-$(existing_shards)}"
RUN="$DATA/run"
DB_NAME="${SHARDGATE_DB_NAME:-shardgate}"
REDIS_PORT="${REDIS_PORT:-6379}"
HOST=127.0.0.1

PRIMARY_PORT_BASE="${PRIMARY_PORT_BASE:-5440}"
REPLICA_PORT_BASE="${REPLICA_PORT_BASE:-5450}"
POOLER_PORT_BASE="${POOLER_PORT_BASE:-6430}"
primary_port() { echo $((PRIMARY_PORT_BASE + $1)); }
replica_port() { echo $((REPLICA_PORT_BASE + $1)); }
pooler_port()  { echo $((POOLER_PORT_BASE + $1)); }

log() { printf '%s\n' "$*" >&2; }
die() { printf 'cluster: %s\n' "$*" >&2; exit 1; }

# PostgreSQL and PgBouncer refuse to run as root: run them as `postgres` when we are root.
if [ "$(id -u)" = 0 ]; then
  PGUSER_OS=postgres
  as_pg() { runuser -u postgres -- "$@"; }
else
  PGUSER_OS="$(id -un)"
  as_pg() { "$@"; }
fi

pg_bin_dir() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
  [ -n "$d" ] && echo "$d"
}

# ---------------------------------------------------------------- install

install_packages() {
  local need=()
  [ -n "$(pg_bin_dir)" ] || need+=(postgresql)
  command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
  command -v ss >/dev/null 2>&1 || need+=(iproute2)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing: ${need[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  fi
  PG_BIN="$(pg_bin_dir)"
  [ -n "$PG_BIN" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql after install"
  PGBOUNCER="$("$ROOT/scripts/install-pgbouncer.sh")"
}

# ---------------------------------------------------------------- probes

port_pid() { # pid listening on 127.0.0.1:$1, empty if none
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -oE 'pid=[0-9]+' | head -1 | cut -d= -f2 || true
}
port_busy() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }
pg_up() { pg_isready -q -h "$HOST" -p "$1" -t 2 >/dev/null 2>&1; }
sql() { # port db sql -> first value
  psql -X -h "$HOST" -p "$1" -U postgres -d "$2" -tAq -v ON_ERROR_STOP=1 -c "$3" 2>/dev/null
}
redis_up() { [ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null || true)" = PONG ]; }
pooler_up() { pg_up "$(pooler_port "$1")"; }

# A pid file whose process is gone or a zombie is stale: remove it so a start can proceed.
clear_stale_pidfile() {
  local f="$1" pid state
  [ -f "$f" ] || return 0
  pid="$(head -1 "$f" 2>/dev/null || true)"
  if [ -n "$pid" ] && [ -r "/proc/$pid/status" ]; then
    state="$(awk '/^State:/{print $2}' "/proc/$pid/status")"
    [ "$state" != Z ] && return 0
  fi
  rm -f "$f"
}

# Refuse to start on a port someone else holds, naming the port and the holder.
ensure_port_free() {
  local port="$1" what="$2" pid cmd
  if port_busy "$port"; then
    pid="$(port_pid "$port")"
    cmd="$( [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-80 || echo unknown)"
    die "port $port (for $what) is already taken by another process (pid ${pid:-?}: $cmd); stop it or free the port"
  fi
}

# ---------------------------------------------------------------- postgres

write_instance_conf() { # dir port
  cat >> "$1/postgresql.conf" <<EOF

# ---- shardgate (scripts/cluster.sh) ----
include '$ROOT/database/postgres/postgresql.conf'
port = $2
unix_socket_directories = '$RUN'
hba_file = '$ROOT/database/postgres/pg_hba.conf'
EOF
}

init_primary() {
  local i="$1" dir="$DATA/shard-$1/primary" port
  port="$(primary_port "$i")"
  [ -f "$dir/PG_VERSION" ] && return 0
  mkdir -p "$dir"; chown -R "$PGUSER_OS" "$DATA/shard-$i"; chmod 700 "$dir"
  as_pg "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 -N >/dev/null
  write_instance_conf "$dir" "$port"
}

start_pg() { # dir port what
  local dir="$1" port="$2" what="$3"
  pg_up "$port" && { owns_pg "$port" "$dir" || die "port $port (for $what) answers as PostgreSQL but is not our $dir"; return 0; }
  clear_stale_pidfile "$dir/postmaster.pid"
  ensure_port_free "$port" "$what"
  as_pg "$PG_BIN/pg_ctl" -D "$dir" -l "$DATA/logs/$what.log" -w -t 60 -o "-p $port" start >/dev/null \
    || die "$what failed to start; see $DATA/logs/$what.log"
}

owns_pg() { # port dir: is the server on this port ours?
  [ "$(sql "$1" postgres 'show data_directory')" = "$2" ]
}

ensure_database() { # primary port
  local port="$1"
  if [ "$(sql "$port" postgres "select 1 from pg_database where datname = '$DB_NAME'")" != 1 ]; then
    sql "$port" postgres "create database \"$DB_NAME\"" >/dev/null
  fi
}

init_replica() {
  local i="$1" dir="$DATA/shard-$1/replica" pport rport
  pport="$(primary_port "$i")"; rport="$(replica_port "$i")"
  [ -f "$dir/PG_VERSION" ] && return 0
  rm -rf "$dir"; mkdir -p "$dir"; chown "$PGUSER_OS" "$dir"; chmod 700 "$dir"
  local slot="shard_${i}_replica"
  if [ "$(sql "$pport" postgres "select 1 from pg_replication_slots where slot_name = '$slot'")" = 1 ]; then
    sql "$pport" postgres "select pg_drop_replication_slot('$slot')" >/dev/null
  fi
  as_pg "$PG_BIN/pg_basebackup" -h "$HOST" -p "$pport" -U postgres -D "$dir" -R -X stream -c fast -C -S "$slot" \
    || die "pg_basebackup of shard $i failed"
  # The base backup copied the primary's port; the standby gets its own in postgresql.auto.conf.
  echo "port = $rport" | as_pg tee -a "$dir/postgresql.auto.conf" >/dev/null
}

# ---------------------------------------------------------------- pgbouncer

pooler_conf() {
  local i="$1" dir="$DATA/shard-$1/pgbouncer"
  mkdir -p "$dir"
  sed -e "s|@DB_NAME@|$DB_NAME|g" \
      -e "s|@PRIMARY_HOST@|$HOST|g" \
      -e "s|@PRIMARY_PORT@|$(primary_port "$i")|g" \
      -e "s|@LISTEN_ADDR@|$HOST|g" \
      -e "s|@LISTEN_PORT@|$(pooler_port "$i")|g" \
      -e "s|@RUN_DIR@|$RUN|g" \
      -e "s|@PID_FILE@|$dir/pgbouncer.pid|g" \
      -e "s|@LOG_FILE@|$DATA/logs/pgbouncer-$i.log|g" \
      -e "s|@AUTH_FILE@|$ROOT/pgbouncer/userlist.txt|g" \
      "$ROOT/pgbouncer/pgbouncer.ini.tmpl" > "$dir/pgbouncer.ini.new"
  if ! cmp -s "$dir/pgbouncer.ini.new" "$dir/pgbouncer.ini" 2>/dev/null; then
    mv "$dir/pgbouncer.ini.new" "$dir/pgbouncer.ini"
    POOLER_CONF_CHANGED=1
  else
    rm -f "$dir/pgbouncer.ini.new"
  fi
  chown -R "$PGUSER_OS" "$dir"
}

start_pooler() {
  local i="$1" dir="$DATA/shard-$1/pgbouncer" port
  port="$(pooler_port "$i")"
  POOLER_CONF_CHANGED=0
  pooler_conf "$i"
  if pooler_up "$i"; then
    local pid; pid="$(port_pid "$port")"
    if [ -n "$pid" ] && [ "$pid" != "$(cat "$dir/pgbouncer.pid" 2>/dev/null || true)" ] \
      && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- " $dir/pgbouncer.ini "; then
      # Ours, run from this very configuration, but its pid file was lost (a run killed
      # halfway): adopt it rather than refuse the port.
      echo "$pid" >"$dir/pgbouncer.pid"
      log "pgbouncer-$i: adopted the running PgBouncer of this cluster (pid $pid)"
    fi
    [ -n "$pid" ] && [ "$pid" = "$(cat "$dir/pgbouncer.pid" 2>/dev/null || true)" ] \
      || die "port $port (for pgbouncer-$i) answers but is not our PgBouncer"
    # The template changed since it started: reload (SIGHUP), connections survive.
    if [ "$POOLER_CONF_CHANGED" = 1 ]; then kill -HUP "$pid"; log "pgbouncer-$i: configuration reloaded"; fi
    return 0
  fi
  clear_stale_pidfile "$dir/pgbouncer.pid"
  ensure_port_free "$port" "pgbouncer-$i"
  as_pg "$PGBOUNCER" -d "$dir/pgbouncer.ini" || die "pgbouncer-$i failed to start; see $DATA/logs/pgbouncer-$i.log"
}

# ---------------------------------------------------------------- redis

start_redis() {
  redis_up && return 0
  ensure_port_free "$REDIS_PORT" redis
  mkdir -p "$DATA/redis"
  redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$DATA/redis" --pidfile "$DATA/redis/redis.pid" --logfile "$DATA/logs/redis.log" >/dev/null
}

# ---------------------------------------------------------------- waits

wait_for() { # seconds description command...
  local deadline=$((SECONDS + $1)) what="$2"; shift 2
  until "$@"; do
    [ $SECONDS -lt $deadline ] || die "timed out waiting for $what"
    sleep 0.2
  done
}
primary_writable() { [ -n "$(sql "$(primary_port "$1")" "$DB_NAME" 'select txid_current()')" ]; }
replica_streaming() { [ "$(sql "$(replica_port "$1")" postgres 'select status from pg_stat_wal_receiver')" = streaming ]; }

# ---------------------------------------------------------------- commands

# Another shardgate cluster on the same ports — another checkout's (CI clones the repository
# next to a developer's running cluster) or the Docker Compose one — is the same topology:
# reuse it rather than refuse. It is recognised by its data directory layout
# (.../shard-<i>/primary) or, for containers, by being a writable primary that has the
# shardgate database; and it must be whole: replica streaming and PgBouncer answering.
# Anything else on the port is refused, naming it.
foreign_shard() { # i -> 0 if the primary port is served by another shardgate cluster's shard i
  local i="$1" p dir
  p="$(primary_port "$i")"
  pg_up "$p" || return 1
  dir="$(sql "$p" postgres 'show data_directory' || true)"
  [ "$dir" != "$DATA/shard-$i/primary" ] || return 1
  [[ "$dir" == */shard-"$i"/primary ]] && return 0
  [ "$(sql "$p" postgres "select count(*) from pg_database where datname = '$DB_NAME' and not pg_is_in_recovery()")" = 1 ]
}

reuse_shard() {
  local i="$1" dir
  dir="$(sql "$(primary_port "$i")" postgres 'show data_directory')"
  log "shard-$i: reusing the shardgate cluster already running (data directory $dir)"
  ensure_database "$(primary_port "$i")"
  wait_for 30 "shard-$i primary to accept writes" primary_writable "$i"
  wait_for 30 "shard-$i replica (of the running cluster) to stream" replica_streaming "$i"
  wait_for 10 "pgbouncer-$i (of the running cluster)" pooler_up "$i"
}

shard_up() { # one shard, all the way; run in parallel per shard
  local i="$1" p r
  p="$(primary_port "$i")"; r="$(replica_port "$i")"
  if [ ! -f "$DATA/shard-$i/primary/PG_VERSION" ] && foreign_shard "$i"; then
    reuse_shard "$i"
    return
  fi
  init_primary "$i"
  start_pg "$DATA/shard-$i/primary" "$p" "shard-$i-primary"
  ensure_database "$p"
  init_replica "$i"
  start_pg "$DATA/shard-$i/replica" "$r" "shard-$i-replica"
  start_pooler "$i"
  wait_for 30 "shard-$i primary to accept writes" primary_writable "$i"
  wait_for 30 "shard-$i replica to stream" replica_streaming "$i"
  wait_for 10 "pgbouncer-$i" pooler_up "$i"
}

cmd_up() {
  local t0=$SECONDS
  install_packages
  mkdir -p "$RUN" "$DATA/logs"
  chown "$PGUSER_OS" "$DATA" "$RUN" "$DATA/logs"
  start_redis
  local pids=() i failed=0
  for ((i = 0; i < SHARDS; i++)); do shard_up "$i" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  [ $failed = 0 ] || die "cluster did not come up (see messages above and $DATA/logs/)"
  wait_for 10 "redis PING" redis_up
  cmd_status
  log "cluster up in $((SECONDS - t0)) s"
}

lag_of() { # i -> "bytes seconds"
  local i="$1" plsn
  plsn="$(sql "$(primary_port "$i")" postgres 'select pg_current_wal_lsn()' || true)"
  [ -n "$plsn" ] || { echo "? ?"; return; }
  sql "$(replica_port "$i")" postgres "select pg_wal_lsn_diff('$plsn', pg_last_wal_replay_lsn())::bigint || ' ' ||
      case when pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then '0.000'
           else round(extract(epoch from now() - pg_last_xact_replay_timestamp())::numeric, 3)::text end" || echo "? ?"
}

cmd_status() {
  local i down=0 pst rst bst lag
  printf '%-8s %-22s %-22s %-22s %s\n' SHARD "PRIMARY" "REPLICA" "PGBOUNCER" "REPLICA LAG"
  for ((i = 0; i < SHARDS; i++)); do
    if pg_up "$(primary_port "$i")"; then pst=up; else pst=down; down=1; fi
    if pg_up "$(replica_port "$i")" && replica_streaming "$i"; then rst=up
    elif pg_up "$(replica_port "$i")"; then rst=not-streaming; down=1
    else rst=down; down=1; fi
    if pooler_up "$i"; then bst=up; else bst=down; down=1; fi
    if [ $pst = up ] && [ $rst = up ]; then
      read -r lb ls <<<"$(lag_of "$i")"; lag="${lb} B, ${ls} s"
    else lag="-"; fi
    printf '%-8s %-22s %-22s %-22s %s\n' "shard-$i" "$pst $HOST:$(primary_port "$i")" \
      "$rst $HOST:$(replica_port "$i")" "$bst $HOST:$(pooler_port "$i")" "$lag"
  done
  local rs; if redis_up; then rs=up; else rs=down; down=1; fi
  local owner=external; [ -f "$DATA/redis/redis.pid" ] && owner=cluster
  printf '%-8s %-22s (%s)\n' redis "$rs $HOST:$REDIS_PORT" "$owner"
  printf 'data: %s   logs: %s/logs\n' "$DATA" "$DATA"
  return $down
}

stop_pg() { # dir port
  local dir="$1"
  [ -f "$dir/postmaster.pid" ] || return 0
  clear_stale_pidfile "$dir/postmaster.pid"
  [ -f "$dir/postmaster.pid" ] || return 0
  as_pg "$(pg_bin_dir)/pg_ctl" -D "$dir" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  # pg_ctl waits on the pid file; with a non-reaping PID 1 make sure the port is closed too.
  local deadline=$((SECONDS + 15))
  while pg_up "$2" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
}

cmd_down() {
  local i pids=()
  for ((i = 0; i < 10; i++)); do
    [ -d "$DATA/shard-$i" ] || continue
    (
      f="$DATA/shard-$i/pgbouncer/pgbouncer.pid"
      if [ -f "$f" ]; then
        pid="$(cat "$f")"
        # Only signal it if that pid is still a PgBouncer (pids get reused).
        if grep -q pgbouncer "/proc/$pid/cmdline" 2>/dev/null; then
          kill -TERM "$pid" 2>/dev/null || true
          deadline=$((SECONDS + 10))
          while pooler_up "$i" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        fi
        rm -f "$f"
      fi
      stop_pg "$DATA/shard-$i/replica" "$(replica_port "$i")"
      stop_pg "$DATA/shard-$i/primary" "$(primary_port "$i")"
    ) & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  if [ -f "$DATA/redis/redis.pid" ]; then
    redis-cli -h "$HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    rm -f "$DATA/redis/redis.pid"
  fi
  log "cluster down"
}

cmd_clean() {
  cmd_down
  rm -rf "$DATA"
  log "cluster data removed ($DATA)"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  clean) cmd_clean ;;
  *) echo "usage: $0 up|down|status|clean   (SHARDS=${SHARDS})" >&2; exit 2 ;;
esac
