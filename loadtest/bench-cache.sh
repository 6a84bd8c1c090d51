#!/usr/bin/env bash
# The read-through cache's figures, measured in one run on this machine against a shardgate
# that is already running (this script never starts one). Traffic goes to 127.0.0.1 only
# and every part stops by itself.
#
#   loadtest/bench-cache.sh                          # DURATION=10s, server at http://127.0.0.1:8080
#   DURATION=30s BASE=http://127.0.0.1:9090 loadtest/bench-cache.sh
#
# The issue's figure: "Cache hits >= 60% of /health requests per second at 128 connections
# with p99 < 5 ms". Steps:
#   1. create USERS (1,000) users kb-<run>-<n> through POST /api/v1/users/ (ids <= 20 chars:
#      the cache endpoint's limit) and warm each one: GET /v1/users?user_id=<id> twice, the
#      second read must say "ok:redis" (cache_hit true, same user_id and deeplink)
#   2. wrk -t2 -c128 --latency GET /health                        (the ceiling)
#   3. wrk -t2 -c128 --latency GET /v1/users?user_id=<random warmed id> (wrk/cache.lua)
#   4. a few reads with curl afterwards: still "ok:redis"
#   5. missing-id flood: wrk -t2 -c128 for MISS_DURATION (5s) on one id nobody has,
#      kb-<run>-missing; the server's DB lookups for it = the change of cache_db_lookups_total
#      on /metrics (summed over its label sets) across the flood. Target: <= 1 lookup per
#      id per negative-cache TTL (30 s), so 1 (or 0 when already cached). SKIP when /metrics
#      has no such counter.
# Targets: cache-hit req/s >= MIN_RATIO (0.60) of /health's, p99 < P99_MS (5) ms, 0 errors.
#
# Env: DURATION (10s; s or m suffix), BASE (http://127.0.0.1:8080), USERS (1000), CONNS (128),
# THREADS (2), WARMUP (1s of wrk before each measured run; 0 = none), MISS_DURATION (5s),
# NEG_TTL (30, seconds), MAX_LOOKUPS (1), VERIFY (5 reads in step 4), MIN_RATIO (0.60),
# P99_MS (5), RESULTS (loadtest/results), KEEP=1 keeps the users, STRICT=1 exits 1 when any
# line is MISS.
# Output: the table on stdout and in RESULTS/bench-cache-<timestamp>.txt; the raw wrk output
# and any read that was not a cache hit in RESULTS/bench-cache-<timestamp>.log. Exit 2 when
# it cannot run (no server, no endpoint yet, bad settings).
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

DURATION="${DURATION:-10s}"
BASE="${BASE:-http://127.0.0.1:8080}"; BASE="${BASE%/}"
USERS="${USERS:-1000}"
CONNS="${CONNS:-128}"
THREADS="${THREADS:-2}"
WARMUP="${WARMUP:-1s}"
MISS_DURATION="${MISS_DURATION:-5s}"
NEG_TTL="${NEG_TTL:-30}"
MAX_LOOKUPS="${MAX_LOOKUPS:-1}"
VERIFY="${VERIFY:-5}"
MIN_RATIO="${MIN_RATIO:-0.60}"
P99_MS="${P99_MS:-5}"

# --- guards: local target only, bounded durations --------------------------------------
require_local_base
duration_secs 3600 60m
warmup_secs 60
MISS_SECS="$(to_secs "$MISS_DURATION")" || die "MISS_DURATION=$MISS_DURATION: use e.g. 5s"
[[ "$NEG_TTL" =~ ^[0-9]+$ ]] || die "NEG_TTL=$NEG_TTL: seconds"
# The flood must fit in one negative-cache TTL for "<= MAX_LOOKUPS" to be the target.
((MISS_SECS > 0 && MISS_SECS < NEG_TTL)) || die "MISS_DURATION=$MISS_DURATION: use 1s..$((NEG_TTL - 1))s (under NEG_TTL=$NEG_TTL)"
int_in "$USERS" 1 99999 || die "USERS=$USERS: use 1..99999"
int_in "$CONNS" 1 1000 || die "CONNS=$CONNS: use 1..1000"
int_in "$THREADS" 1 "$CONNS" || die "THREADS=$THREADS: use 1..CONNS ($CONNS)"
[[ "$VERIFY" =~ ^[0-9]+$ ]] || die "VERIFY=$VERIFY: a count"
[[ "$MAX_LOOKUPS" =~ ^[0-9]+$ ]] || die "MAX_LOOKUPS=$MAX_LOOKUPS: a count"

# --- tools -----------------------------------------------------------------------------
need_tools "" curl python3

RESULTS="${RESULTS:-$ROOT/loadtest/results}"
open_results bench-cache
# Run id: 5 base36 chars of the time + 2 random ones. Ids kb-<run>-<n> are 15 chars at
# USERS=1000 (16 at most), kb-<run>-missing 18: all within the endpoint's 20.
RUN="$(run_tag)"
PREFIX="kb-$RUN"
MISSING_ID="$PREFIX-missing"
IDS="$TMP/ids.txt"
: >"$IDS"

# shellcheck disable=SC2317,SC2329 # called by the EXIT trap
cleanup() {
  if [[ "${KEEP:-0}" != 1 && -s "$IDS" ]]; then
    echo "bench-cache.sh: deleting the $(wc -l <"$IDS") users $PREFIX-* through the API" >&2
    api_delete "$IDS" >>"$LOG" 2>&1 ||
      echo "bench-cache.sh: WARNING: could not delete every user $PREFIX-* (see $LOG)" >&2
  elif [[ -s "$IDS" ]]; then
    cp "$IDS" "$RESULTS/bench-cache-$STAMP.ids"
    echo "bench-cache.sh: KEEP=1: users kept, ids in $RESULTS/bench-cache-$STAMP.ids" >&2
  fi
  rm -rf "$TMP"
  [[ -s "$LOG" ]] || rm -f "$LOG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -----------------------------------------------------------------------------
# create_and_warm <n> <ids-file>: POSTs n users PREFIX-1..n (each id appended to the file as
# soon as it is created, so the trap deletes them even after an interrupt), then reads each
# one twice through the cache endpoint. Prints "created warmed hits": created = 201s,
# warmed = first reads that were 200, hits = second reads that said ok:redis with
# cache_hit true, the same user_id and deeplink.
create_and_warm() {
  python3 - "$BASE" "$PREFIX" "$1" "$2" <<'PY'
import http.client, json, sys, urllib.parse
base, prefix, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlsplit(base)
c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
def req(method, path, body=None):
    for attempt in (1, 2):  # once more on a fresh connection if keep-alive dropped
        try:
            c.request(method, path, body, {"Content-Type": "application/json"} if body else {})
            r = c.getresponse()
            return r.status, r.read()
        except (OSError, http.client.HTTPException):
            c.close()
            if attempt == 2: raise
ids, bad = [], 0
with open(out, "a") as f:
    for i in range(1, n + 1):
        uid = f"{prefix}-{i}"
        st, data = req("POST", "/api/v1/users/", json.dumps({
            "id": uid, "first_name": "Bench", "last_name": f"Cache{i}",
            "deeplink": f"myapp://x/{i}", "promo_message": f"bench-cache {i}"}))
        if st == 201:
            ids.append((i, uid)); f.write(uid + "\n"); f.flush()
        else:  # 409: someone else's row; neither read nor deleted
            bad += 1
            if bad <= 3: print(f"create {uid}: HTTP {st} {data[:200]!r}", file=sys.stderr)
            if bad >= 20: break
def get(uid):
    st, data = req("GET", f"/v1/users?user_id={uid}")
    try: b = json.loads(data)
    except ValueError: b = None
    return st, (b if isinstance(b, dict) else {}), data
warmed = hits = shown = 0
for i, uid in ids:
    st, b, data = get(uid)
    if st == 200 and b.get("message") in ("ok:postgres", "ok:redis"):
        warmed += 1
    elif shown < 3:
        shown += 1; print(f"first read {uid}: HTTP {st} {data[:200]!r}", file=sys.stderr)
    st, b, data = get(uid)
    if (st == 200 and b.get("message") == "ok:redis" and b.get("cache_hit") is True
            and b.get("user_id") == uid and b.get("deeplink") == f"myapp://x/{i}"):
        hits += 1
    elif shown < 6:
        shown += 1; print(f"second read {uid}: not a cache hit: HTTP {st} {data[:200]!r}", file=sys.stderr)
print(len(ids), warmed, hits)
PY
}

# shellcheck disable=SC2317,SC2329 # called from cleanup
api_delete() {
  python3 - "$BASE" "$1" <<'PY'
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
ids = open(sys.argv[2]).read().split()
gone = 0
for uid in ids:
    c.request("DELETE", f"/api/v1/users/{uid}")
    r = c.getresponse(); r.read()
    gone += r.status in (204, 404)
print(f"api_delete: {gone}/{len(ids)} deleted")
sys.exit(0 if gone == len(ids) else 1)
PY
}

# read_msg <id>: prints "<http status> <message> <cache_hit>" of one read (curl).
read_msg() {
  local body code
  body="$(curl -s -m 2 -w '\n%{http_code}' "$BASE/v1/users?user_id=$1" 2>/dev/null)"
  code="${body##*$'\n'}"; body="${body%$'\n'*}"
  python3 -c 'import json, sys
try: b = json.loads(sys.argv[2])
except ValueError: b = {}
b = b if isinstance(b, dict) else {}
print(sys.argv[1], str(b.get("message", "-")).replace(" ", "_"), str(b.get("cache_hit", "-")).lower())' "${code:-000}" "$body"
}

# metric_sum <name>: the sum of every sample of that metric on BASE/metrics (all label sets);
# prints nothing when /metrics does not answer or has no such metric.
metric_sum() {
  curl -s -m 5 "$BASE/metrics" 2>/dev/null | python3 -c '
import re, sys
name = sys.argv[1]
pat = re.compile(r"^" + re.escape(name) + r"(\{.*\})?\s+([-+0-9.eE]+|NaN|[+-]Inf)(\s+\d+)?\s*$")
total, seen = 0.0, False
for line in sys.stdin:
    m = pat.match(line.strip())
    if m:
        seen = True
        total += float(m.group(2))
if seen:
    print("%d" % total if total == int(total) else total)' "$1"
}

# run_wrk <label> <secs> <url> [lua-script [script args...]]: appends the raw output to LOG,
# prints "req_per_s p99_ms non2xx socket_errors". A WARM_SECS run first, not measured.
run_wrk() {
  local label="$1" secs="$2" url="$3"; shift 3
  local cmd=(wrk -t"$THREADS" -c"$CONNS")
  if (($# > 0)); then cmd+=(-s "$1"); shift; fi
  local tail=("$url")
  if (($# > 0)); then tail+=(-- "$@"); fi
  if ((WARM_SECS > 0)); then "${cmd[@]}" -d"${WARM_SECS}s" "${tail[@]}" >/dev/null 2>&1; fi
  run_wrk_once "$label" "$secs" "${cmd[@]}" -- "${tail[@]}"
}
# run_wrk_once <label> <secs> <wrk args...> -- <url and its -- args>: the measured part.
run_wrk_once() { wrk_logged "$@"; wrk_stats "$TMP/wrk-$1.out"; }

# --- the table -------------------------------------------------------------------------
table_init 44 22

# --- is there a shardgate with the endpoint? ---------------------------------------------
is_healthy ||
  die "no healthy shardgate at $BASE/health (start it: make dev)"
# An id nobody has (not the flood's): the endpoint answers 404 {"code":404,"message":"not found"};
# the router's own 404 for an unknown path is {"error", "code": "ROUTE_NOT_FOUND"}.
read -r pcode pmsg _ < <(read_msg "$PREFIX-probe")
[[ "$pcode" == 404 && "$pmsg" == not_found ]] ||
  die "GET /v1/users?user_id=... is not the cache endpoint yet (HTTP $pcode, message $pmsg for an unknown id; want 404 \"not found\")"

warn_load ""
echo "bench-cache.sh: run $RUN, DURATION=${SECS}s, wrk -t$THREADS -c$CONNS, BASE=$BASE" >&2

# --- 1: users, warmed ------------------------------------------------------------------------
echo "bench-cache.sh: creating $USERS users $PREFIX-* and reading each twice" >&2
read -r N_CREATED N_WARMED N_HITS < <(create_and_warm "$USERS" "$IDS" 2>>"$LOG")
N_CREATED="${N_CREATED:-0}"; N_WARMED="${N_WARMED:-0}"; N_HITS="${N_HITS:-0}"
((N_CREATED > 0)) || die "creating users failed (see $LOG)"
verdict "$((N_CREATED == USERS))"
row "users created ($PREFIX-1..$USERS)" "$N_CREATED" "" "" "$USERS" "$V"
verdict "$((N_HITS == N_CREATED))"
row "warm-up: 2nd read says ok:redis" "$N_HITS/$N_CREATED" "" "" "all" "$V"
((N_HITS == N_CREATED)) ||
  echo "bench-cache.sh: WARNING: $((N_CREATED - N_HITS)) second reads were not cache hits (see $LOG)" >&2

# --- 2: the ceiling, GET /health -------------------------------------------------------------
H_RPS=""
echo "bench-cache.sh: wrk GET /health (${SECS}s)" >&2
if read -r H_RPS H_P99 H_NON H_SOCK < <(run_wrk health "$SECS" "$BASE/health"); then
  info_row "GET /health req/s (c$CONNS)" "$(fmt "$H_RPS")"
  info_row "GET /health p99" "$H_P99 ms"
  ((H_NON + H_SOCK == 0)) || echo "bench-cache.sh: WARNING: /health had $H_NON non-2xx and $H_SOCK socket errors" >&2
else H_RPS=""; skip_row "GET /health req/s" "ceiling" "wrk failed, see log"; fi

# --- 3: cache hits -------------------------------------------------------------------------
echo "bench-cache.sh: wrk GET /v1/users?user_id= over $N_CREATED warmed ids (${SECS}s)" >&2
if read -r C_RPS C_P99 C_NON C_SOCK < <(run_wrk hits "$SECS" "$BASE/v1/users" loadtest/wrk/cache.lua "$IDS"); then
  if [[ -n "$H_RPS" ]]; then
    ratio_row "cache hits GET /v1/users req/s (c$CONNS)" "$C_RPS" "$H_RPS" "$MIN_RATIO" "(of /health)"
  else skip_row "cache hits GET /v1/users req/s" ">= $MIN_RATIO" "no /health ceiling"; fi
  p99_row "cache hits GET /v1/users p99" "$C_P99"
  zero_row "cache hits errors (non-2xx + socket)" "$((C_NON + C_SOCK))" "$C_NON + $C_SOCK"
else skip_row "cache hits GET /v1/users req/s" ">= $MIN_RATIO" "wrk failed, see log"; fi

# --- 4: still cache hits after the load -------------------------------------------------------
if ((VERIFY > 0)); then
  good=0; n=0
  while read -r id; do
    n=$((n + 1))
    read -r code msg hit < <(read_msg "$id")
    echo "=== verify $id: HTTP $code $msg cache_hit=$hit" >>"$LOG"
    [[ "$code" == 200 && "$msg" == ok:redis && "$hit" == true ]] && good=$((good + 1))
  done < <(shuf -n "$VERIFY" "$IDS")
  verdict "$((good == n))"
  row "after the load: curl reads say ok:redis" "$good/$n" "" "" "all" "$V"
fi

# --- 5: missing-id flood --------------------------------------------------------------------
echo "bench-cache.sh: missing-id flood on $MISSING_ID (${MISS_SECS}s)" >&2
L0="$(metric_sum cache_db_lookups_total)"
if read -r M_RPS M_P99 M_NON M_SOCK < <(run_wrk_once missing "$MISS_SECS" wrk -t"$THREADS" -c"$CONNS" -- \
    "$BASE/v1/users?user_id=$MISSING_ID"); then
  L1="$(metric_sum cache_db_lookups_total)"
  info_row "missing-id flood req/s (c$CONNS, ${MISS_SECS}s)" "$(fmt "$M_RPS")" "info"
  info_row "missing-id flood p99" "$M_P99 ms" "info"
  read -r code msg _ < <(read_msg "$MISSING_ID")
  verdict "$([[ "$code" == 404 && "$msg" == not_found && "$M_NON" -gt 0 && "$M_SOCK" == 0 ]] && echo 1 || echo 0)"
  row "missing-id flood: 404 \"not found\"" "HTTP $code" "" "" "404, 0 socket errors" "$V"
  if [[ -n "$L0" && -n "$L1" ]]; then
    d="$(python3 -c 'import sys; print("%g" % (float(sys.argv[2]) - float(sys.argv[1])))' "$L0" "$L1")"
    ok="$(python3 -c 'import sys; print(int(float(sys.argv[1]) <= float(sys.argv[2])))' "$d" "$MAX_LOOKUPS")"
    verdict "$ok" "(counter $L0 -> $L1)"
    row "missing-id flood: DB lookups for 1 id" "$d" "" "" "<= $MAX_LOOKUPS per ${NEG_TTL}s TTL" "$V"
  else
    skip_row "missing-id flood: DB lookups for 1 id" "<= $MAX_LOOKUPS per ${NEG_TTL}s TTL" "no cache_db_lookups_total on /metrics"
  fi
else skip_row "missing-id flood" "<= $MAX_LOOKUPS per ${NEG_TTL}s TTL" "wrk failed, see log"; fi

# --- report ------------------------------------------------------------------------------
{
  echo "shardgate bench-cache $STAMP  host $(hostname)  $(nproc) CPUs  loadavg before $LOAD0  duration ${SECS}s  wrk -t$THREADS -c$CONNS --latency  warm-up ${WARM_SECS}s"
  echo "BASE=$BASE  run $RUN  users $PREFIX-1..$USERS  ceiling: shardgate's own GET /health in the same run  missing id $MISSING_ID"
  echo
  print_table
  print_counts
} | tee "$OUT"
finish
