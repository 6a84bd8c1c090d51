#!/usr/bin/env bash
# Entrypoint of every shard-<i>-replica container (docker-compose.yml), on the official
# postgres image. The container equivalent of scripts/cluster.sh `init_replica`:
#
#   first start (no $PGDATA/PG_VERSION): wait for the primary, drop a leftover replication
#     slot, then clone the primary with
#       pg_basebackup -R -X stream -c fast -C -S <slot>
#     (-R writes standby.signal and primary_conninfo, -C -S creates the physical slot, so
#     the primary keeps the WAL the replica has not received yet), then run it;
#   later starts: run it as is (the clone, standby.signal and primary_conninfo are in the
#     volume), whether or not the primary is up: a hot standby serves reads on its own.
#
# The clone goes to "$PGDATA.partial" and is renamed to $PGDATA only once pg_basebackup
# succeeded, so a clone interrupted half-way is never taken for a finished one.
#
# Environment:
#   PRIMARY_HOST          this shard's primary, e.g. shard-0 (required)
#   PRIMARY_PORT          5432
#   REPLICA_SLOT          physical replication slot name, e.g. shard_0_replica (required)
#   PGDATA                set by docker-compose.yml to a directory inside the volume
#   PRIMARY_WAIT_SECONDS  how long the first start waits for the primary (120)
# Arguments: the server command line (`postgres -c config_file=...`), exec'd as is.
set -Eeuo pipefail

log() { printf 'replica-entrypoint: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

: "${PRIMARY_HOST:?set PRIMARY_HOST to this replica primary, e.g. shard-0}"
: "${REPLICA_SLOT:?set REPLICA_SLOT to the replication slot name, e.g. shard_0_replica}"
: "${PGDATA:?PGDATA is not set}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
PRIMARY_WAIT_SECONDS="${PRIMARY_WAIT_SECONDS:-120}"
[[ "$REPLICA_SLOT" =~ ^[a-z0-9_]{1,63}$ ]] || die "REPLICA_SLOT=$REPLICA_SLOT: only a-z, 0-9 and _ are allowed"
[ $# -gt 0 ] || set -- postgres

# The image starts us as root: own the volume, then go on as the postgres user (PostgreSQL
# refuses to run as root), as the image's own docker-entrypoint.sh does.
if [ "$(id -u)" = 0 ]; then
  parent="$(dirname "$PGDATA")"
  mkdir -p "$parent"
  chown postgres:postgres "$parent"
  chmod 700 "$parent"
  if [ -d "$PGDATA" ]; then find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +; fi
  exec gosu postgres bash "${BASH_SOURCE[0]}" "$@"
fi

primary_sql() { # sql -> first value
  psql -X -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -d postgres -tAq -v ON_ERROR_STOP=1 -c "$1"
}
primary_up() { pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -d postgres -t 2; }

clone() {
  local tmp="$PGDATA.partial" deadline=$((SECONDS + PRIMARY_WAIT_SECONDS))
  # The primary accepts TCP connections only once its own first-start initialisation
  # (initdb, CREATE DATABASE) is over: the image runs that on a socket-only server.
  until primary_up; do
    [ $SECONDS -lt $deadline ] \
      || die "primary $PRIMARY_HOST:$PRIMARY_PORT did not accept connections within ${PRIMARY_WAIT_SECONDS}s"
    sleep 1
  done
  # A slot left by an earlier clone (this replica's volume was removed, or a clone failed
  # half-way) would pin WAL on the primary forever, and -C would fail on it.
  if [ "$(primary_sql "select 1 from pg_replication_slots where slot_name = '$REPLICA_SLOT'")" = 1 ]; then
    log "dropping the leftover replication slot $REPLICA_SLOT on $PRIMARY_HOST"
    primary_sql "select pg_drop_replication_slot('$REPLICA_SLOT')" >/dev/null
  fi
  rm -rf "$tmp"
  log "cloning $PRIMARY_HOST:$PRIMARY_PORT into $PGDATA (pg_basebackup, slot $REPLICA_SLOT)"
  pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -D "$tmp" -R -X stream -c fast -C -S "$REPLICA_SLOT" \
    || die "pg_basebackup from $PRIMARY_HOST:$PRIMARY_PORT failed"
  rm -rf "$PGDATA"
  mv "$tmp" "$PGDATA"
  log "clone done"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  clone
elif primary_up; then
  # The primary's volume was removed and re-created while this one was kept: the clone
  # belongs to a database that no longer exists and could never stream again. It is
  # only a copy, so take a new one.
  theirs="$(primary_sql 'select system_identifier from pg_control_system()' || true)"
  mine="$(pg_controldata "$PGDATA" 2>/dev/null | sed -n 's/^Database system identifier: *//p' || true)"
  if [ -n "$theirs" ] && [ -n "$mine" ] && [ "$theirs" != "$mine" ]; then
    log "$PGDATA was cloned from another primary (system identifier $mine, $PRIMARY_HOST has $theirs): cloning again"
    clone
  fi
fi

exec "$@"
