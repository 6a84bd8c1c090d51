#!/usr/bin/env bash
# Provides PgBouncer >= 1.21 in a project-local prefix (.tools/pgbouncer).
#
# Why: Debian bookworm ships PgBouncer 1.18, whose transaction mode is NOT safe with
# sqlx's extended protocol (a Bind can reach another client's prepared statement).
# 1.21+ with max_prepared_statements fixes it. The trixie binary package needs a newer
# libc, so we build Debian trixie's *source* package here, with a private apt
# configuration so the machine's own sources.list is never touched.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${PGBOUNCER_PREFIX:-$ROOT/.tools/pgbouncer}"
MIN_MINOR=21

have_good() {
  local bin="$1" v
  [ -x "$bin" ] || return 1
  v="$("$bin" --version 2>/dev/null | head -1 | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -1)"
  [ -n "$v" ] || return 1
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%.*}
  [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge $MIN_MINOR ]; }
}

if have_good "$PREFIX/bin/pgbouncer"; then
  echo "$PREFIX/bin/pgbouncer"; exit 0
fi

# The system one may already be new enough (e.g. on trixie).
if have_good /usr/sbin/pgbouncer; then
  echo /usr/sbin/pgbouncer; exit 0
fi

echo "building PgBouncer >= 1.$MIN_MINOR from Debian trixie's source package into $PREFIX" >&2
need=()
for p in build-essential libevent-dev libssl-dev libc-ares-dev pkg-config dpkg-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi

WORK="$ROOT/.tools/build"
rm -rf "$WORK"; mkdir -p "$WORK/apt/lists/partial" "$WORK/src"
echo "deb-src http://deb.debian.org/debian trixie main" > "$WORK/apt/sources.list"
APT_OPTS=(-o "Dir::Etc::SourceList=$WORK/apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$WORK/apt/lists" -o "APT::Sandbox::User=root")
apt-get "${APT_OPTS[@]}" update -qq >&2
(cd "$WORK/src" && apt-get "${APT_OPTS[@]}" source --download-only -qq pgbouncer >&2 && dpkg-source -x --no-check ./*.dsc pgb >&2)
cd "$WORK/src/pgb"
./configure --prefix="$PREFIX" --without-systemd >&2
make -j"$(nproc)" >&2
make install >&2
rm -rf "$WORK"
have_good "$PREFIX/bin/pgbouncer" || { echo "built PgBouncer is not >= 1.$MIN_MINOR" >&2; exit 1; }
echo "$PREFIX/bin/pgbouncer"
