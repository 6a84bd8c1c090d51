#!/usr/bin/env bash
# Presence figures (issue 5), measured in one run on this machine against a shardgate that is
# already running (`make bench-presence` starts one). Traffic goes to 127.0.0.1 only and every
# part stops by itself.
#
#   loadtest/bench-presence.sh                       # DURATION=10s, server at http://127.0.0.1:8080
#   SUBSCRIBERS=2000 BASE=http://127.0.0.1:9090 loadtest/bench-presence.sh
#
# Targets (issue 5, ratios from this one run):
#   heartbeats (POST /heartbeat, random user of USERS)        >= 0.60 of GET /health req/s
#   status batches of BATCH ids (POST /status)                 >= 0.30 of GET /health req/s
#   SUBSCRIBERS concurrent SSE subscribers held, all served, total server RSS < 1024 MiB,
#   and a status change reaching every watcher with p99 < 100 ms (server/examples/sse_fanout.rs:
#   every subscriber watches the same user, CHANGES changes over gRPC SetUserStatus).
#
# Env: DURATION (10s), BASE, USERS (10000), BATCH (50), CONNS (128), THREADS (2), WARMUP (1s),
# SUBSCRIBERS (10000; 0 skips the SSE part), CHANGES (20), SERVER_PID (the supervisor's pid, for
# RSS; `make bench-presence` passes it), KEY_PREFIX (the server's REDIS_KEY_PREFIX: when set,
# this run's presence keys are deleted at the end), MIN_HB (0.60), MIN_BATCH (0.30),
# FANOUT_P99_MS (100), MAX_RSS_MIB (1024), RESULTS, STRICT=1 exits 1 when any line is MISS.
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

DURATION="${DURATION:-10s}"
BASE="${BASE:-http://127.0.0.1:8080}"; BASE="${BASE%/}"
USERS="${USERS:-10000}"
BATCH="${BATCH:-50}"
CONNS="${CONNS:-128}"
THREADS="${THREADS:-2}"
WARMUP="${WARMUP:-1s}"
SUBSCRIBERS="${SUBSCRIBERS:-10000}"
CHANGES="${CHANGES:-20}"
MIN_HB="${MIN_HB:-0.60}"
MIN_BATCH="${MIN_BATCH:-0.30}"
FANOUT_P99_MS="${FANOUT_P99_MS:-100}"
MAX_RSS_MIB="${MAX_RSS_MIB:-1024}"
P99_MS="${P99_MS:-100}"
FANOUT="$ROOT/target/release/examples/sse_fanout"

require_local_base
duration_secs 600 10m
warmup_secs 60
int_in "$USERS" 1 1000000 || die "USERS=$USERS: use 1..1000000"
int_in "$BATCH" 1 1000 || die "BATCH=$BATCH: use 1..1000"
int_in "$CONNS" 1 1000 || die "CONNS=$CONNS: use 1..1000"
int_in "$SUBSCRIBERS" 0 30000 || die "SUBSCRIBERS=$SUBSCRIBERS: use 0..30000"
int_in "$CHANGES" 1 1000 || die "CHANGES=$CHANGES: use 1..1000"
need_tools "" curl python3
((SUBSCRIBERS == 0)) || [[ -x "$FANOUT" ]] ||
  die "$FANOUT is missing: cargo build --release -p shardgate --examples"

RESULTS="${RESULTS:-$ROOT/loadtest/results}"
open_results bench-presence
RUN="$(run_tag)"
PREFIX="bp-$RUN"

# shellcheck disable=SC2317,SC2329 # called by the EXIT trap
cleanup() {
  if [[ -n "${KEY_PREFIX:-}" ]] && command -v redis-cli >/dev/null; then
    redis-cli --scan --pattern "${KEY_PREFIX}presence:*" | xargs -r -n 500 redis-cli del >/dev/null 2>&1
  fi
  rm -rf "$TMP"
  [[ -s "$LOG" ]] || rm -f "$LOG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run_wrk() { # run_wrk <label> <url> [lua script [args...]]: "req_per_s p99_ms non2xx socket_errors"
  local label="$1" url="$2"; shift 2
  local cmd=(wrk -t"$THREADS" -c"$CONNS")
  if (($# > 0)); then cmd+=(-s "$1"); shift; fi
  local tail=("$url")
  if (($# > 0)); then tail+=(-- "$@"); fi
  if ((WARM_SECS > 0)); then "${cmd[@]}" -d"${WARM_SECS}s" "${tail[@]}" >/dev/null 2>&1; fi
  wrk_logged "$label" "$SECS" "${cmd[@]}" -- "${tail[@]}"
  wrk_stats "$TMP/wrk-$label.out"
}

table_init 46 22
is_healthy || die "no healthy shardgate at $BASE/health (start it: make dev)"
code="$(curl -s -o /dev/null -w '%{http_code}' -m 2 -H 'content-type: application/json' \
  -d '{"userIds":[]}' "$BASE/status")"
[[ "$code" == 200 ]] || die "POST /status answered HTTP $code: not a shardgate with presence"
warn_load ""
echo "bench-presence.sh: run $RUN, DURATION=${SECS}s, wrk -t$THREADS -c$CONNS, BASE=$BASE" >&2

# --- the ceiling -------------------------------------------------------------------------
H_RPS=""
echo "bench-presence.sh: wrk GET /health" >&2
if read -r H_RPS H_P99 H_NON H_SOCK < <(run_wrk health "$BASE/health"); then
  info_row "GET /health req/s (c$CONNS)" "$(fmt "$H_RPS")"
  info_row "GET /health p99" "$H_P99 ms" "info"
else H_RPS=""; skip_row "GET /health" "ceiling" "wrk failed, see log"; fi

# --- heartbeats ----------------------------------------------------------------------------
echo "bench-presence.sh: wrk POST /heartbeat over $USERS users" >&2
if read -r B_RPS B_P99 B_NON B_SOCK < <(run_wrk heartbeat "$BASE/heartbeat" loadtest/wrk/heartbeat.lua "$PREFIX" "$USERS"); then
  if [[ -n "$H_RPS" ]]; then ratio_row "heartbeats req/s (c$CONNS)" "$B_RPS" "$H_RPS" "$MIN_HB" "(of /health)"
  else skip_row "heartbeats req/s" ">= $MIN_HB" "no ceiling"; fi
  info_row "heartbeats p99" "$B_P99 ms" "info"
  info_row "heartbeats per minute" "$(fmt "$(python3 -c "print($B_RPS*60)")")" "the live user status server claimed 300,000"
  zero_row "heartbeat errors (non-2xx + socket)" "$((B_NON + B_SOCK))" "$B_NON + $B_SOCK"
else skip_row "heartbeats req/s" ">= $MIN_HB" "wrk failed, see log"; fi

# --- status batches ---------------------------------------------------------------------------
echo "bench-presence.sh: wrk POST /status, batches of $BATCH" >&2
if read -r S_RPS S_P99 S_NON S_SOCK < <(run_wrk status "$BASE/status" loadtest/wrk/status-batch.lua "$PREFIX" "$USERS" "$BATCH"); then
  if [[ -n "$H_RPS" ]]; then ratio_row "status batches of $BATCH req/s (c$CONNS)" "$S_RPS" "$H_RPS" "$MIN_BATCH" "(of /health)"
  else skip_row "status batches req/s" ">= $MIN_BATCH" "no ceiling"; fi
  info_row "status batches p99" "$S_P99 ms" "info"
  info_row "ids looked up per second" "$(fmt "$(python3 -c "print($S_RPS*$BATCH)")")" "info"
  zero_row "status batch errors (non-2xx + socket)" "$((S_NON + S_SOCK))" "$S_NON + $S_SOCK"
else skip_row "status batches req/s" ">= $MIN_BATCH" "wrk failed, see log"; fi

# --- the answers are right ---------------------------------------------------------------------
ids="$(python3 -c "import json; print(json.dumps({'userIds': ['$PREFIX-%d' % i for i in range(1, 51)]}))")"
seen="$(curl -s -m 5 -H 'content-type: application/json' -d "$ids" "$BASE/status" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(1 for v in d.values() if not v.startswith("0001-")), len(d))' 2>>"$LOG")"
read -r n_seen n_all <<<"${seen:-0 0}"
verdict "$(((n_all == 50) && (n_seen * 10 >= n_all * 9)))"
row "after the load: ids 1..50 have a last activity" "$n_seen/$n_all" "" "" ">= 90%" "$V"

# --- SSE fan-out ----------------------------------------------------------------------------------
if ((SUBSCRIBERS > 0)); then
  echo "bench-presence.sh: $SUBSCRIBERS SSE subscribers, $CHANGES changes" >&2
  args=(--base "$BASE" --subscribers "$SUBSCRIBERS" --users 1 --changes "$CHANGES" --interval-ms 250)
  [[ -n "${SERVER_PID:-}" ]] && args+=(--server-pid "$SERVER_PID")
  "$FANOUT" "${args[@]}" >"$TMP/fanout.out" 2>>"$LOG"
  { echo "=== sse_fanout ${args[*]}"; cat "$TMP/fanout.out"; } >>"$LOG"
  kv() { awk -v k="$1" '$1 == k {print $2}' "$TMP/fanout.out"; }
  held="$(kv subscribers_held)"; exp="$(kv events_expected)"; got="$(kv events_received)"
  p50="$(kv latency_p50_ms)"; p99="$(kv latency_p99_ms)"; mx="$(kv latency_max_ms)"; rss="$(kv server_rss_held_mib)"
  verdict "$(( ${held:-0} == SUBSCRIBERS ))"
  row "SSE subscribers held at once" "${held:-0}" "" "" "$SUBSCRIBERS" "$V"
  verdict "$(( ${got:-0} == ${exp:--1} ))"
  row "events delivered ($CHANGES changes x watchers)" "${got:-0}/${exp:-?}" "" "" "all" "$V"
  if [[ -n "$p99" ]]; then
    verdict "$(python3 -c "print(int($p99 < $FANOUT_P99_MS))")"
    row "change -> every watcher, p99" "$p99 ms" "" "" "< $FANOUT_P99_MS ms" "$V"
    info_row "change -> every watcher, p50 / max" "$p50 / $mx ms" "info"
  fi
  if [[ -n "$rss" ]]; then
    verdict "$(python3 -c "print(int($rss < $MAX_RSS_MIB))")"
    row "server RSS holding them (all processes)" "$rss MiB" "" "" "< $MAX_RSS_MIB MiB" "$V"
    info_row "server RSS before" "$(kv server_rss_before_mib) MiB" "info"
  else skip_row "server RSS holding them" "< $MAX_RSS_MIB MiB" "no SERVER_PID"; fi
fi

{
  echo "shardgate bench-presence $STAMP  host $(hostname)  $(nproc) CPUs  loadavg before $LOAD0  duration ${SECS}s  wrk -t$THREADS -c$CONNS --latency  warm-up ${WARM_SECS}s"
  echo "BASE=$BASE  run $RUN  users $PREFIX-1..$USERS  batch $BATCH  ceiling: shardgate's own GET /health in the same run  load generators on the same cores"
  echo
  print_table
  print_counts
} | tee "$OUT"
finish
