#!/usr/bin/env bash
# The Messenger Clone API's headline on our box: 10,000 concurrent keep-alive connections at a constant
# 2,100 req/s (open model, coordinated-omission free: server/examples/openloop.rs) on
# GET /api/v1/users/:id over 1,000 pre-created users. Target: p99 < 10 ms, 0 errors.
# Traffic goes to 127.0.0.1 only; bounded by DURATION + WARMUP seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE="${BASE:-http://127.0.0.1:8080}"
case "$BASE" in http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*) ;; *) echo "BASE must be local" >&2; exit 2 ;; esac
CONNECTIONS="${CONNECTIONS:-10000}" RATE="${RATE:-2100}" DURATION="${DURATION:-30}" WARMUP="${WARMUP:-5}"
curl -sf -m 2 "$BASE/health" >/dev/null || { echo "no server at $BASE (make dev, or make bench-10k)" >&2; exit 1; }
cargo build -q --release -p shardgate --example openloop
# 1,000 users with fixed ids; 201 (created) and 409 (already there) are both fine.
for i in $(seq -w 0 999); do
  printf '{"id":"bench10k-%s","first_name":"Bench","last_name":"User%s"}\n' "$i" "$i"
done | while read -r body; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/api/v1/users/" -H 'content-type: application/json' -d "$body")
  case "$code" in 201|409) ;; *) echo "seeding failed with HTTP $code" >&2; exit 1 ;; esac
done
mkdir -p loadtest/results
out="loadtest/results/headline-$(date +%Y%m%d-%H%M%S).txt"
target/release/examples/openloop --url "$BASE/api/v1/users/bench10k-{n}" --ids 1000 --pad 3 \
  --connections "$CONNECTIONS" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" | tee "$out"
p99=$(awk '/latency p99 \(ms\)/ {print $4}' "$out")
errors=$(awk '/^errors/ {print $2}' "$out")
non2xx=$(awk '/^non-2xx/ {print $2}' "$out")
verdict=PASS
awk -v p="$p99" 'BEGIN {exit !(p < 10)}' || verdict=MISS
[ "$errors" = 0 ] && [ "$non2xx" = 0 ] || verdict=MISS
echo "headline: $CONNECTIONS connections, $RATE req/s: p99 ${p99} ms (target < 10), errors $errors, non-2xx $non2xx -> $verdict" | tee -a "$out"
