#!/usr/bin/env bash
# The flash sale's figures (the Flash Sale API), measured in one run on this machine against a
# shardgate that is already running (this script never starts one). Traffic goes to
# 127.0.0.1 only and every part stops by itself.
#
#   loadtest/bench-sale.sh                          # DURATION=10s, server at http://127.0.0.1:8080
#   DURATION=30s BASE=http://127.0.0.1:9090 loadtest/bench-sale.sh
#
# The server must allow this many checkouts: start it with a fresh sale and room for the
# holds of step 4, e.g. SALE_NAME=bench-<something new> SALE_ITEMS=1000000 SALE_USER_LIMIT=10
# (`make bench-sale` does). An item can be sold only once ever, so every id here carries
# this run's tag (RUN, 7 base36 chars) and nothing is reused across runs.
#
# Steps (wrk: -t THREADS (2) -c CONNS (64) --latency, WARMUP (1s) first where it says so):
#   1. GET /health                                                   (the ceiling of 2)
#   2. checkouts under contention: wrk/checkout.lua "contend", POST /checkout with a random
#      user of USERS (10,000) su<RUN>-<m> and a random item of ITEMS (20) sc<RUN>-<n> per
#      request: after the first ITEMS holds every answer is a refusal (409/429), one Redis
#      round trip each. The Lua script counts 5xx itself (wrk's "Non-2xx" also counts the
#      refusals). Target: req/s >= CHECKOUT_RATIO (0.40) of /health's, 0 5xx, 0 socket errors.
#   3. pgbench loadtest/pgbench/insert.sql through PgBouncer shard 0 (PGPORT 6430), -c CONNS
#      -j THREADS -T DURATION, -D base=<run> -D seq=0, like bench.sh    (the ceiling of 5)
#   4. holds: wrk/checkout.lua "holds" for HOLD_SECS (DURATION): each request a fresh item
#      and a fresh user sh<RUN>-<thread>-<n>, every code of a 200 into a file (no warm-up)
#   5. purchases: wrk/checkout.lua "purchase", POST /purchase?code=<code> over those codes,
#      each code once per thread in order (no warm-up: a warm-up would spend codes). When a
#      thread's codes run out it goes round them again; those repeats (idempotent 200s) are
#      counted apart, and the figure is the first purchases per second over the time until
#      the codes ran out (or the whole run). Target: >= PURCHASE_RATIO (0.60) of pgbench's
#      insert tps; every first purchase 200; every repeat 200; 0 5xx, 0 socket errors.
#   then GET /status, before and after, for the record.
#
# Env: DURATION (10s; s or m suffix), BASE (http://127.0.0.1:8080), CONNS (64), THREADS (2),
# WARMUP (1s; 0 = none), ITEMS (20), USERS (10000), HOLD_SECS (DURATION's seconds),
# CHECKOUT_RATIO (0.40), PURCHASE_RATIO (0.60), PGHOST (127.0.0.1), PGPORT (6430),
# PGDATABASE (shardgate), PGUSER (postgres), PG_PRIMARY_PORT (5440: shard 0's primary, where
# the pgbench rows are deleted; shard i's is PG_PRIMARY_PORT + i), RESULTS (loadtest/results),
# KEEP=1 keeps the pgbench rows and this run's sale rows and copies the codes to
# RESULTS/bench-sale-<timestamp>.codes, STRICT=1 exits 1 when any line is MISS.
# Output: the table on stdout and in RESULTS/bench-sale-<timestamp>.txt; the raw wrk and
# pgbench output in RESULTS/bench-sale-<timestamp>.log. Exit 2 when it cannot run (no
# server, no sale endpoints yet, bad settings).
# Clean-up (unless KEEP=1, also after Ctrl-C): the pgbench rows on shard 0's primary, and
# this run's rows of sales and checkout_attempts (items sc<RUN>-*, sh<RUN>-*; ids no run
# ever reuses) on every shard's primary, so runs do not pile up rows that a rebuild of the
# sale's Redis state would read. Left behind: the sale's Redis keys for those items and its
# counters (/status); holds not bought expire (RESERVATION_TIMEOUT_SECONDS) and give their
# capacity back. A fresh SALE_NAME per run keeps every run's counters apart.
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

DURATION="${DURATION:-10s}"
BASE="${BASE:-http://127.0.0.1:8080}"; BASE="${BASE%/}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
WARMUP="${WARMUP:-1s}"
ITEMS="${ITEMS:-20}"
USERS="${USERS:-10000}"
CHECKOUT_RATIO="${CHECKOUT_RATIO:-0.40}"
PURCHASE_RATIO="${PURCHASE_RATIO:-0.60}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-6430}"
PGDATABASE="${PGDATABASE:-shardgate}"
PGUSER="${PGUSER:-postgres}"
PG_PRIMARY_PORT="${PG_PRIMARY_PORT:-5440}"
export PGHOST PGPORT PGDATABASE PGUSER

# --- guards: local targets only, bounded durations -------------------------------------
require_local_base
require_local_pghost
duration_secs 600 10m
warmup_secs 60
HOLD_SECS="${HOLD_SECS:-$SECS}"
HOLD_SECS="$(to_secs "$HOLD_SECS")" || die "HOLD_SECS: use e.g. 10s"
((HOLD_SECS > 0 && HOLD_SECS <= 600)) || die "HOLD_SECS=$HOLD_SECS: use 1s..10m"
int_in "$ITEMS" 1 100000 || die "ITEMS=$ITEMS: use 1..100000"
int_in "$USERS" 1 1000000 || die "USERS=$USERS: use 1..1000000"
# pgbench ids are base * 10^8 + (client + 1) * 10^6 + seq: at most 98 clients.
int_in "$CONNS" 1 98 || die "CONNS=$CONNS: use 1..98"
int_in "$THREADS" 1 "$CONNS" || die "THREADS=$THREADS: use 1..CONNS ($CONNS)"
for r in "$CHECKOUT_RATIO" "$PURCHASE_RATIO"; do
  [[ "$r" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "a ratio must be a number: $r"
done

# --- tools -----------------------------------------------------------------------------
need_tools " (pgbench and psql: postgresql-client)" curl python3 pgbench psql
LUA="$ROOT/loadtest/wrk/checkout.lua"

RESULTS="${RESULTS:-$ROOT/loadtest/results}"
open_results bench-sale
# Run tag: 5 base36 chars of the time + 2 random ones. The longest id, sh<RUN>-<thread>-<n>,
# stays near 20 characters (the sale's limit is 64).
RUN="$(run_tag)"
PG_BASE="$(date +%s)"          # pgbench rows: all digits, PG_BASE * 10^8 + ...
PG_USED=0
SALE_USED=0
CODES="$TMP/codes"

# shellcheck disable=SC2317,SC2329 # called by the EXIT trap
cleanup() {
  if ((PG_USED)) && [[ "${KEEP:-0}" != 1 ]]; then
    # insert.sql's rows sit on shard 0 whatever the ring says: delete them on its primary.
    psqlq -p "$PG_PRIMARY_PORT" -c "DELETE FROM users WHERE id LIKE '${PG_BASE}%' AND id ~ '^[0-9]{17,19}\$'" >>"$LOG" 2>&1 ||
      echo "bench-sale.sh: WARNING: could not delete the pgbench rows (ids ${PG_BASE}...) on :$PG_PRIMARY_PORT" >&2
  fi
  if ((SALE_USED)) && [[ "${KEEP:-0}" != 1 ]]; then
    # This run's sale records (items sc<RUN>-*, sh<RUN>-*; never reused): on every shard's
    # primary, since both tables route by item id.
    local i
    for i in 0 1 2 3 4; do
      psqlq -p "$((PG_PRIMARY_PORT + i))" -c "DELETE FROM sales WHERE item_id LIKE 'sc${RUN}-%' OR item_id LIKE 'sh${RUN}-%';
        DELETE FROM checkout_attempts WHERE item_id LIKE 'sc${RUN}-%' OR item_id LIKE 'sh${RUN}-%'" >>"$LOG" 2>&1 ||
        echo "bench-sale.sh: WARNING: could not delete this run's sale rows on :$((PG_PRIMARY_PORT + i))" >&2
    done
  fi
  if [[ "${KEEP:-0}" == 1 && -s "$CODES" ]]; then
    cp "$CODES" "$RESULTS/bench-sale-$STAMP.codes"
    echo "bench-sale.sh: KEEP=1: codes in $RESULTS/bench-sale-$STAMP.codes, pgbench rows (ids ${PG_BASE}...) kept" >&2
  fi
  rm -rf "$TMP"
  [[ -s "$LOG" ]] || rm -f "$LOG"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -----------------------------------------------------------------------------
# run_wrk <label> <secs> <warm 0|1> <url> [checkout.lua args...]: the raw output goes to LOG;
# fills the associative array W from wrk_stats ... kv. A WARM_SECS run first when <warm> is 1.
declare -A W
run_wrk() {
  local label="$1" secs="$2" warm="$3" url="$4"; shift 4
  local cmd=(wrk -t"$THREADS" -c"$CONNS")
  local tail=("$url")
  if (($# > 0)); then cmd+=(-s "$LUA"); tail+=(-- "$@"); fi
  if ((warm && WARM_SECS > 0)); then "${cmd[@]}" -d"${WARM_SECS}s" "${tail[@]}" >/dev/null 2>&1; fi
  wrk_logged "$label" "$secs" "${cmd[@]}" -- "${tail[@]}"
  W=()
  local k v
  while IFS='=' read -r k v; do W[$k]="$v"; done < <(wrk_stats "$TMP/wrk-$label.out" kv)
  [[ -n "${W[rps]:-}" ]]
}

# http_json <method> <path>: prints "<status> <compact JSON body or ->" (curl, 2 s).
http_json() {
  local body code
  body="$(curl -s -m 2 -X "$1" -w '\n%{http_code}' "$BASE$2" 2>/dev/null)"
  code="${body##*$'\n'}"; body="${body%$'\n'*}"
  python3 -c 'import json, sys
try: b = json.dumps(json.loads(sys.argv[2]), separators=(",", ":"))
except ValueError: b = "-"
print(sys.argv[1], b)' "${code:-000}" "$body"
}

# status_field <json> <field>: one field of a /status body ("" when missing).
status_field() {
  python3 -c 'import json, sys
try: v = json.loads(sys.argv[1]).get(sys.argv[2], "")
except (ValueError, AttributeError): v = ""
print(v)' "$1" "$2"
}

# --- the table -------------------------------------------------------------------------
table_init 46 22

# --- is there a shardgate with the sale endpoints? ------------------------------------------
read -r hcode hbody < <(http_json GET /health)
[[ "$hcode" == 200 && "$(status_field "$hbody" status)" == ok ]] ||
  die "no healthy shardgate at $BASE/health (start it: make dev, or make bench-sale)"
# Without parameters POST /checkout must be a 400 JSON error, not the router's
# ROUTE_NOT_FOUND (404) or METHOD_NOT_ALLOWED (405).
read -r pcode pbody < <(http_json POST /checkout)
[[ "$pcode" == 400 && -n "$(status_field "$pbody" error)" ]] ||
  die "POST /checkout is not the sale endpoint yet (HTTP $pcode $pbody without parameters; want 400 {\"error\", \"code\"})"
read -r s0code S0 < <(http_json GET /status)
[[ "$s0code" == 200 && -n "$(status_field "$S0" sale_status)" ]] ||
  die "GET /status is not the sale's status yet (HTTP $s0code $S0)"
[[ "$(status_field "$S0" sale_status)" == active ]] ||
  echo "bench-sale.sh: WARNING: sale_status is $(status_field "$S0" sale_status): checkouts will be refused" >&2

warn_load ""
echo "bench-sale.sh: run $RUN, DURATION=${SECS}s, wrk -t$THREADS -c$CONNS, BASE=$BASE" >&2
echo "=== /status before: $S0" >>"$LOG"
SALE_USED=1

# --- 1: the ceiling, GET /health ---------------------------------------------------------------
H_RPS=""
echo "bench-sale.sh: wrk GET /health (${SECS}s)" >&2
if run_wrk health "$SECS" 1 "$BASE/health"; then
  H_RPS="${W[rps]}"
  info_row "GET /health req/s (c$CONNS)" "$(fmt "$H_RPS")"
  info_row "GET /health p99" "${W[p99]} ms"
else skip_row "GET /health req/s" "ceiling" "wrk failed, see log"; fi

# --- 2: checkouts under contention ------------------------------------------------------------
REFUSALS=""
echo "bench-sale.sh: wrk POST /checkout, $ITEMS items x $USERS users (${SECS}s)" >&2
if run_wrk contend "$SECS" 1 "$BASE/checkout" contend "sc$RUN-" "$ITEMS" "su$RUN-" "$USERS"; then
  label="checkouts req/s ($ITEMS items, $USERS users)"
  if [[ -n "$H_RPS" ]]; then ratio_row "$label" "${W[rps]}" "$H_RPS" "$CHECKOUT_RATIO" "(of /health)"
  else skip_row "$label" ">= $CHECKOUT_RATIO" "no /health ceiling"; fi
  info_row "checkouts p99" "${W[p99]} ms" "info"
  info_row "checkouts answered 200 / 4xx" "${W[n2xx]:-?} / ${W[n4xx]:-?}" "info"
  REFUSALS="${W[refusals]:-}"
  zero_row "checkouts 5xx (counted by checkout.lua)" "${W[n5xx]:-1}" "${W[n5xx]:-?}"
  zero_row "checkouts other statuses + socket errors" "$((${W[nother]:-1} + ${W[sock]:-0}))" "${W[nother]:-?} + ${W[sock]}"
else skip_row "checkouts req/s" ">= $CHECKOUT_RATIO" "wrk failed, see log"; fi

# --- 3: the ceiling, pgbench insert through PgBouncer shard 0 ----------------------------------
INS_TPS=""
if psqlq -c "SELECT 1 FROM users LIMIT 1" >/dev/null 2>>"$LOG"; then
  echo "bench-sale.sh: pgbench insert.sql via :$PGPORT (${SECS}s)" >&2
  PG_USED=1
  if read -r INS_TPS INS_P99 < <(run_pgbench loadtest/pgbench/insert.sql -D base="$PG_BASE" -D seq=0); then
    info_row "pgbench insert.sql tps (:$PGPORT)" "$(fmt "$INS_TPS")"
    info_row "pgbench insert.sql p99" "$INS_P99 ms"
  else INS_TPS=""; skip_row "pgbench insert.sql tps (:$PGPORT)" "ceiling" "pgbench failed, see log"; fi
else
  skip_row "pgbench insert.sql tps (:$PGPORT)" "ceiling" "no users table via $PGHOST:$PGPORT; scripts/cluster.sh up"
fi

# --- 4: holds to buy ----------------------------------------------------------------------------
echo "bench-sale.sh: wrk POST /checkout, a fresh item and user per request (${HOLD_SECS}s): holds" >&2
N_CODES=0
if run_wrk holds "$HOLD_SECS" 0 "$BASE/checkout" holds "sh$RUN-" "$CODES"; then
  cat "$CODES".* >"$CODES" 2>/dev/null
  N_CODES="$(grep -c . "$CODES")"
  info_row "holds created (sh$RUN-*, ${HOLD_SECS}s)" "$N_CODES" "info"
  zero_row "holds 5xx + socket errors" "$((${W[n5xx]:-1} + ${W[sock]:-0}))" "${W[n5xx]:-?} + ${W[sock]}"
  if ((${W[n4xx]:-0} > 0)); then
    echo "bench-sale.sh: WARNING: ${W[n4xx]} holds refused (sold out? SALE_ITEMS too small, or the sale is not fresh)" >&2
    info_row "holds refused (4xx)" "${W[n4xx]}" "info"
  fi
else skip_row "holds" "info" "wrk failed, see log"; fi

# --- 5: purchases -------------------------------------------------------------------------------
if ((N_CODES >= THREADS)); then
  echo "bench-sale.sh: wrk POST /purchase over $N_CODES codes (${SECS}s)" >&2
  if run_wrk purchase "$SECS" 0 "$BASE/purchase" purchase "$CODES" "$THREADS"; then
    label="first purchases/s (${W[first]:-?} codes bought)"
    if [[ "${W[first_ok_per_s]:-nan}" == nan ]]; then
      skip_row "$label" ">= $PURCHASE_RATIO" "no window: codes ran out, no wall clock in wrk's Lua"
    elif [[ -n "$INS_TPS" ]]; then
      ratio_row "$label" "${W[first_ok_per_s]}" "$INS_TPS" "$PURCHASE_RATIO" "(of pgbench insert)"
    else skip_row "$label" ">= $PURCHASE_RATIO" "no pgbench ceiling"; fi
    if [[ "${W[exhausted]:-0}" == 1 ]]; then
      info_row "codes ran out after" "${W[window_s]} s" "info"
    fi
    info_row "purchases p99 (repeats included)" "${W[p99]} ms" "info"
    zero_row "first purchases not 200" "${W[first_failed]:-1}" "${W[first_failed]:-?}"
    info_row "repeat purchases (idempotent 200s)" "${W[repeat]:-?}" "info"
    zero_row "repeat purchases not 200" "${W[repeat_failed]:-1}" "${W[repeat_failed]:-?}"
    zero_row "purchases 5xx + other + socket errors" "$((${W[n5xx]:-1} + ${W[nother]:-1} + ${W[sock]:-0}))" \
      "${W[n5xx]:-?} + ${W[nother]:-?} + ${W[sock]}"
  else skip_row "first purchases/s" ">= $PURCHASE_RATIO" "wrk failed, see log"; fi
else
  skip_row "first purchases/s" ">= $PURCHASE_RATIO" "$N_CODES holds: nothing to buy"
fi

# --- /status after ---------------------------------------------------------------------------
read -r s1code S1 < <(http_json GET /status)
echo "=== /status after: HTTP $s1code $S1" >>"$LOG"
STATUS_NOTE=""
if [[ "$s1code" == 200 ]]; then
  STATUS_NOTE="$(python3 -c 'import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
keys = ["successful_checkouts", "failed_checkouts", "successful_purchases", "failed_purchases", "scheduled_goods", "purchased_goods"]
rolled = b.get("seconds_remaining", 0) > a.get("seconds_remaining", 0)
d = {k: (b.get(k, 0) if rolled else b.get(k, 0) - a.get(k, 0)) for k in keys}
st = b.get("sale_status")
print(("(new hourly sale) " if rolled else "") + " ".join(f"{k}+{v}" for k, v in d.items()) + f" sale_status {st}")' "$S0" "$S1" 2>/dev/null)"
fi

# --- report ------------------------------------------------------------------------------
{
  echo "shardgate bench-sale $STAMP  host $(hostname)  $(nproc) CPUs  loadavg before $LOAD0  duration ${SECS}s  wrk -t$THREADS -c$CONNS --latency  warm-up ${WARM_SECS}s  pgbench -c $CONNS -j $THREADS -M extended via $PGHOST:$PGPORT"
  echo "BASE=$BASE  run $RUN  contention: items sc$RUN-0..$((ITEMS - 1)), users su$RUN-0..$((USERS - 1))  holds: sh$RUN-<thread>-<n> for ${HOLD_SECS}s"
  echo
  print_table
  [[ -z "$REFUSALS" ]] || echo "checkout refusals by code: ${REFUSALS//,/ }"
  [[ -z "$STATUS_NOTE" ]] || echo "/status during the run: $STATUS_NOTE"
  print_counts
} | tee "$OUT"
finish
