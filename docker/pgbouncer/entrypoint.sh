#!/usr/bin/env bash
# Entrypoint of every pgbouncer-<i> container (docker-compose.yml, image docker/pgbouncer/).
#
# Renders the one PgBouncer template, pgbouncer/pgbouncer.ini.tmpl (mounted read-only from
# the repository), with the same sed substitutions as scripts/cluster.sh `pooler_conf`, then
# runs PgBouncer in the foreground. scripts/check-compose.py checks that this file and
# scripts/cluster.sh replace the same @NAME@ placeholders, and all of the template's.
#
# Environment (defaults suit docker-compose.yml):
#   PRIMARY_HOST        this shard's primary, e.g. shard-0 (required)
#   PRIMARY_PORT        5432
#   DB_NAME             shardgate
#   LISTEN_ADDR         0.0.0.0
#   LISTEN_PORT         6432
#   RUN_DIR             /run/pgbouncer (rendered pgbouncer.ini, pid file, Unix socket)
#   PID_FILE            $RUN_DIR/pgbouncer.pid
#   LOG_FILE            empty: no log file; PgBouncer logs to stderr, i.e. `docker logs`
#   AUTH_FILE           /etc/shardgate/pgbouncer/userlist.txt
#   PGBOUNCER_TEMPLATE  /etc/shardgate/pgbouncer/pgbouncer.ini.tmpl
# Arguments: extra PgBouncer options, placed before the configuration file.
set -euo pipefail

log() { printf 'pgbouncer-entrypoint: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

PRIMARY_HOST="${PRIMARY_HOST:?set PRIMARY_HOST to this shard primary, e.g. shard-0}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
DB_NAME="${DB_NAME:-shardgate}"
LISTEN_ADDR="${LISTEN_ADDR:-0.0.0.0}"
LISTEN_PORT="${LISTEN_PORT:-6432}"
RUN_DIR="${RUN_DIR:-/run/pgbouncer}"
PID_FILE="${PID_FILE:-$RUN_DIR/pgbouncer.pid}"
LOG_FILE="${LOG_FILE:-}"
AUTH_FILE="${AUTH_FILE:-/etc/shardgate/pgbouncer/userlist.txt}"
PGBOUNCER_TEMPLATE="${PGBOUNCER_TEMPLATE:-/etc/shardgate/pgbouncer/pgbouncer.ini.tmpl}"
PGBOUNCER="${PGBOUNCER:-pgbouncer}"
INI="$RUN_DIR/pgbouncer.ini"

[ -r "$PGBOUNCER_TEMPLATE" ] || die "cannot read the template $PGBOUNCER_TEMPLATE (mount ./pgbouncer there)"
[ -r "$AUTH_FILE" ] || die "cannot read the auth file $AUTH_FILE (mount ./pgbouncer there)"
# The values go into sed replacements delimited by '|', where '&' and '\' are special.
for v in DB_NAME PRIMARY_HOST PRIMARY_PORT LISTEN_ADDR LISTEN_PORT RUN_DIR PID_FILE LOG_FILE AUTH_FILE; do
  case "${!v}" in *'|'* | *'&'* | *\\*) die "$v=${!v}: '|', '&' and backslashes are not allowed" ;; esac
done

# PgBouncer < 1.21 is unsafe in transaction mode with sqlx (docs/DATABASE_SCALING.md).
version="$("$PGBOUNCER" --version 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+' | head -1 || true)"
major="${version%%.*}" minor="${version#*.}"
if [ -z "$version" ] || ! { [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 21 ]; }; }; then
  die "PgBouncer ${version:-of unknown version} is older than 1.21"
fi

mkdir -p "$RUN_DIR"
# Same substitutions as scripts/cluster.sh pooler_conf (same placeholders, same order).
sed -e "s|@DB_NAME@|$DB_NAME|g" \
    -e "s|@PRIMARY_HOST@|$PRIMARY_HOST|g" \
    -e "s|@PRIMARY_PORT@|$PRIMARY_PORT|g" \
    -e "s|@LISTEN_ADDR@|$LISTEN_ADDR|g" \
    -e "s|@LISTEN_PORT@|$LISTEN_PORT|g" \
    -e "s|@RUN_DIR@|$RUN_DIR|g" \
    -e "s|@PID_FILE@|$PID_FILE|g" \
    -e "s|@LOG_FILE@|$LOG_FILE|g" \
    -e "s|@AUTH_FILE@|$AUTH_FILE|g" \
    "$PGBOUNCER_TEMPLATE" > "$INI.new"
mv "$INI.new" "$INI"
# (Comment lines are skipped: the template's own header mentions "@NAME@".)
if left="$(grep -vE '^[[:space:]]*[;#]' "$INI" | grep -oE '@[A-Z_]+@' | sort -u | tr '\n' ' ')" && [ -n "$left" ]; then
  die "placeholders left unreplaced in $INI: $left"
fi

# A pid file left by this container's previous run (docker restart keeps the filesystem)
# names a pid that may be alive again in the new run, e.g. ours: PgBouncer would refuse
# to start ("pidfile exists, another instance running?").
rm -f "$PID_FILE"

log "$("$PGBOUNCER" --version | head -1): $LISTEN_ADDR:$LISTEN_PORT -> $PRIMARY_HOST:$PRIMARY_PORT/$DB_NAME"
exec "$PGBOUNCER" "$@" "$INI"
