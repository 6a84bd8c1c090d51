#!/usr/bin/env bash
# A/B of two shardgate builds in ONE run, interleaved, against the running local cluster:
# creates (POST /api/v1/users/) and strong reads (GET /api/v1/users/:id?consistency=strong,
# primary, no cache) with wrk, ROUNDS times each (order A B, then B A, ...), then the mean of
# each side and the ratio.
#
#   make bench-ab AB_OLD=1af6948            # builds that revision into .tools/ab/, HEAD as B
#   OLD_BIN=/path/a NEW_BIN=/path/b loadtest/ab.sh
#
# Both servers run at once (2 workers each, ports AB_PORT and AB_PORT+1) so they share the
# machine's noise; each wrk run is DURATION (default 8s, at most 60s) at 64 connections, on
# 127.0.0.1 only. Rows it creates are removed at the end (ids start with the run prefix).
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
: "${OLD_BIN:?OLD_BIN=path of build A}" "${NEW_BIN:?NEW_BIN=path of build B}"
DURATION="${DURATION:-8s}"
duration_secs 60 60s
ROUNDS="${ROUNDS:-3}"
int_in "$ROUNDS" 1 10 || die "ROUNDS=$ROUNDS: use 1..10"
PORT="${AB_PORT:-18101}"
need_tools "" wrk curl python3 psql

start() { ACCESS_LOG=false RUST_LOG=warn "$1" serve --listen "127.0.0.1:$2" --workers 2 >"/tmp/ab-$2.log" 2>&1 & echo $!; }
A=$(start "$OLD_BIN" "$PORT")
B=$(start "$NEW_BIN" $((PORT + 1)))
trap 'kill -TERM $A $B 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for p in "$PORT" $((PORT + 1)); do
  for _ in $(seq 100); do curl -sf -m1 "http://127.0.0.1:$p/health" >/dev/null && break; sleep 0.2; done
  curl -sf -m1 "http://127.0.0.1:$p/health" >/dev/null || die "server on :$p did not start (see /tmp/ab-$p.log)"
done

RUN="ab$(date +%s)"
IDS="$(mktemp)"
python3 - "$RUN" "http://127.0.0.1:$((PORT + 1))" "$IDS" <<'PY'
import json, sys, urllib.request
run, base, out = sys.argv[1:]
with open(out, "w") as f:
    for i in range(2000):
        uid = f"{run}-seed-{i}"
        req = urllib.request.Request(f"{base}/api/v1/users/", data=json.dumps({"id": uid, "first_name": "ab"}).encode(),
                                     headers={"content-type": "application/json"})
        urllib.request.urlopen(req).read()
        f.write(f"{uid}?consistency=strong\n")
PY

one() { # side port kind -> "rps p99ms"
  local url="http://127.0.0.1:$2/api/v1/users/"
  if [ "$3" = create ]; then
    wrk -t2 -c64 -d"${SECS}s" --latency -s loadtest/wrk/post.lua "$url" -- "$RUN-$1$RANDOM"
  else
    wrk -t2 -c64 -d"${SECS}s" --latency -s loadtest/wrk/get.lua "$url" -- "$IDS"
  fi | awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2; if (p ~ /us$/) p=p/1000; else if (p ~ /ms$/) p=p+0; else if (p ~ /s$/) p=p*1000} END {print r, p}'
}
declare -A SUM
printf '%-8s %-7s %6s %12s %10s\n' kind build round req/s "p99 ms"
for r in $(seq "$ROUNDS"); do
  for kind in create read; do
    order="A B"; [ $((r % 2)) = 0 ] && order="B A" # ABBA: neither side always goes first
    for side in $order; do
      port=$PORT; [ $side = B ] && port=$((PORT + 1))
      read -r rps p99 < <(one $side $port $kind)
      printf '%-8s %-7s %6s %12s %10s\n' "$kind" "$side" "$r" "$rps" "$p99"
      SUM[$kind$side]=$(python3 -c "print(${SUM[$kind$side]:-0} + $rps)")
    done
  done
done
echo
for kind in create read; do
  python3 -c "a=${SUM[${kind}A]}/$ROUNDS; b=${SUM[${kind}B]}/$ROUNDS; print(f'{\"$kind\":<8} A {a:10.0f} req/s   B {b:10.0f} req/s   B/A {b/a:5.2f}   (target >= 0.95: no regression)')"
done
for db in 0 1 2 3 4; do
  psql -q -h 127.0.0.1 -p $((5440 + db)) -U postgres shardgate -c "delete from users where id like '$RUN-%'" >/dev/null 2>&1 || true
done
rm -f "$IDS"
