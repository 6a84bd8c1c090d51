#!/usr/bin/env bash
# Prints the path of Debian bookworm's PgBouncer 1.18 binary, unpacked (not installed) into
# .tools/pgbouncer-1.18. Tests use it to prove the server refuses to start against a
# transaction-mode PgBouncer older than 1.21.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.tools/pgbouncer-1.18"
BIN="$DIR/usr/sbin/pgbouncer"
if [ ! -x "$BIN" ]; then
  mkdir -p "$DIR/deb"
  chmod 777 "$DIR/deb" 2>/dev/null || true # apt's sandbox user downloads into it
  (cd "$DIR/deb" && apt-get download -qq pgbouncer >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download -qq pgbouncer >/dev/null; })
  dpkg-deb -x "$DIR"/deb/pgbouncer_*.deb "$DIR"
  rm -rf "$DIR/deb"
fi
"$BIN" --version | head -1 >&2
echo "$BIN"
