#!/usr/bin/env bash
# One benchmark run on this machine: the machine's ceilings first, then every endpoint
# family, each figure beside the ceiling of the same machine measured in the same run
#. Everything targets 127.0.0.1 only and every part stops by itself.
#
#   loadtest/bench.sh                      # against a shardgate already on :8080
#   DURATION=30s BASE=http://127.0.0.1:9090 loadtest/bench.sh
#   FAMILIES="users cache" loadtest/bench.sh   # the ceilings and just those families
#
# It does NOT start shardgate (`make bench` does, then calls this). Without a server on
# BASE it still measures the machine's ceilings and marks the shardgate figures skipped.
#
# Ceilings (wrk: -t THREADS, --latency, WARMUP first; pgbench: -c CONNS -j THREADS -n -M extended):
#   hello-world     server/examples/hello.rs (started here on a free port), wrk -c CONNS
#   GET /health     shardgate's own static route, wrk -c CONNS  (also a figure: vs hello-world)
#   GET /health c128  the same at CONNS_HI: the ceiling of the c128 families
#   redis SET/GET   redis-benchmark --csv -n REDIS_REQUESTS -c REDIS_CONNS on one key under
#                   the run's prefix (deleted at once), against REDIS_HOST:REDIS_PORT
#   pgbench select  loadtest/pgbench/select.sql through PgBouncer shard 0 (:6430), PG_ROWS rows
#   pgbench insert  loadtest/pgbench/insert.sql, one-row INSERT ... RETURNING, same PgBouncer
#   pgbench insert x5  the same on all five PgBouncers at once, CONNS/5 clients each, summed
# Families (their issue's target; "info" = no issue target, the ratio is still shown):
#   users     GET /api/v1/users/:id (wrk/get.lua over API_ROWS users created first)
#               >= MIN_RATIO (0.60) of pgbench select, p99 < P99_MS (10) ms, 0 errors
#             POST /api/v1/users/ (wrk/post.lua, a new id per request)
#               >= MIN_RATIO of pgbench insert, p99 < P99_MS, 0 errors (x5 ratio shown too)
#             PATCH /api/v1/users/:id (a Lua script written here, random ids of the GET set)
#               info, ceiling pgbench insert
#             GET /api/v1/users/?limit=20 (5-shard merge)                 info, ceiling pgbench select
#   health    GET /health c CONNS   >= MIN_RATIO of hello-world, p99 < P99_MS, 0 errors
#   cache     GET /v1/users?user_id= (wrk/cache.lua, CONNS_HI) over CACHE_USERS users created
#             and read twice first (the 2nd read must be ok:redis, as bench-cache.sh)
#               >= CACHE_RATIO (0.60) of /health c128, p99 < CACHE_P99_MS (5) ms, 0 errors
#   presence  POST /heartbeat (wrk/heartbeat.lua, PRESENCE_USERS users, CONNS_HI)
#               >= MIN_HB (0.60) of /health c128, 0 errors
#             POST /status, batches of BATCH (50) (wrk/status-batch.lua, CONNS_HI)
#               >= MIN_BATCH (0.30) of /health c128, 0 errors
#   sale      POST /checkout?user_id=&id= under contention (wrk/checkout.lua contend, ITEMS
#             items, SALE_USERS users)     >= CHECKOUT_RATIO (0.40) of /health c CONNS, 0 5xx/other
#             holds: checkout.lua holds for HOLD_SECS, a fresh item and user per request
#               info (their codes are what the purchase figure buys)
#             POST /purchase?code= (checkout.lua purchase, each code once): first purchases/s
#               >= PURCHASE_RATIO (0.60) of pgbench insert, every answer 200
#             (bench-sale.sh's steps and targets, in the same order)
#   memory    RSS of each shardgate process serving BASE after the HTTP families  < RSS_MIB (64)
#   sse       server/examples/sse_fanout: SUBSCRIBERS (2000) subscribers of one user, CHANGES
#             (20) changes 250 ms apart: all held, all delivered, p99 < FANOUT_P99_MS (100) ms
#
# The server must have a sale of its own with room for the holds and its own Redis prefix:
# `make bench` starts it with BENCH_ENV SALE_NAME=bench<time> SALE_ITEMS=1000000
# SALE_USER_LIMIT=10 REDIS_KEY_PREFIX=bb<time>: and passes KEY_PREFIX=<that prefix>.
#
# Env: DURATION (10s; s or m suffix), BASE (http://127.0.0.1:8080), FAMILIES ("users health
# cache presence sale memory sse"), CONNS (64), CONNS_HI (128), THREADS (2), WARMUP (1s),
# PGHOST (127.0.0.1), PGPORT (6430), PGDATABASE (shardgate), PGUSER (postgres), PG_PRIMARY_PORT
# (5440), PG_ROWS (2000), API_ROWS (2000), CACHE_USERS (1000), PRESENCE_USERS (10000), BATCH
# (50), ITEMS (20), SALE_USERS (10000), HOLD_SECS (DURATION), SUBSCRIBERS (2000; 0 skips),
# CHANGES (20), REDIS_HOST (127.0.0.1), REDIS_PORT (6379), REDIS_REQUESTS (200000),
# REDIS_CONNS (50), targets MIN_RATIO P99_MS CACHE_RATIO CACHE_P99_MS MIN_HB MIN_BATCH
# CHECKOUT_RATIO PURCHASE_RATIO FANOUT_P99_MS RSS_MIB, SERVER_PID (for the SSE part's RSS),
# KEY_PREFIX (the server's REDIS_KEY_PREFIX, a fresh one: every key under it is deleted at
# the end; "sg:", the default prefix, is refused), RESULTS (loadtest/results), PYTHON (the
# Python for report.py: .venv/bin/python when there, else python3), KEEP=1 keeps what the run
# created (rows, keys; the ids and codes files go into the run folder), STRICT=1 exits 1
# when any figure missed its target.
# Output: loadtest/results/bench-<timestamp>/ with report.md (table, machine facts, charts),
# bench.json (every figure), throughput.png, latency.png, ratio.png, table.txt, raw.log (every
# tool's raw output), meta.json and figures.jsonl (report.py's input: `loadtest/report.py
# <folder>` redoes the report). The table also goes to stdout. `loadtest/compare.py A B`
# compares two runs.
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

DURATION="${DURATION:-10s}"
BASE="${BASE:-http://127.0.0.1:8080}"; BASE="${BASE%/}"
FAMILIES="${FAMILIES:-users health cache presence sale memory sse}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-6430}"
PGDATABASE="${PGDATABASE:-shardgate}"
PGUSER="${PGUSER:-postgres}"
PG_PRIMARY_PORT="${PG_PRIMARY_PORT:-5440}"
PG_ROWS="${PG_ROWS:-2000}"
API_ROWS="${API_ROWS:-2000}"
CACHE_USERS="${CACHE_USERS:-1000}"
PRESENCE_USERS="${PRESENCE_USERS:-10000}"
BATCH="${BATCH:-50}"
ITEMS="${ITEMS:-20}"
SALE_USERS="${SALE_USERS:-10000}"
SUBSCRIBERS="${SUBSCRIBERS:-2000}"
CHANGES="${CHANGES:-20}"
WARMUP="${WARMUP:-1s}"
CONNS="${CONNS:-64}"
CONNS_HI="${CONNS_HI:-128}"
THREADS="${THREADS:-2}"
REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_REQUESTS="${REDIS_REQUESTS:-200000}"
REDIS_CONNS="${REDIS_CONNS:-50}"
MIN_RATIO="${MIN_RATIO:-0.60}"
P99_MS="${P99_MS:-10}"
CACHE_RATIO="${CACHE_RATIO:-0.60}"
CACHE_P99_MS="${CACHE_P99_MS:-5}"
MIN_HB="${MIN_HB:-0.60}"
MIN_BATCH="${MIN_BATCH:-0.30}"
CHECKOUT_RATIO="${CHECKOUT_RATIO:-0.40}"
PURCHASE_RATIO="${PURCHASE_RATIO:-0.60}"
FANOUT_P99_MS="${FANOUT_P99_MS:-100}"
RSS_MIB="${RSS_MIB:-64}"
KEY_PREFIX="${KEY_PREFIX:-}"
export PGHOST PGPORT PGDATABASE PGUSER

# --- guards: local targets only, bounded durations -------------------------------------
require_local_base
require_local_pghost
[[ "$REDIS_HOST" == 127.0.0.1 || "$REDIS_HOST" == localhost || "$REDIS_HOST" == ::1 ]] ||
  die "refusing REDIS_HOST=$REDIS_HOST: only this machine"
duration_secs 600 10m
warmup_secs 60
HOLD_SECS="${HOLD_SECS:-$SECS}"
HOLD_SECS="$(to_secs "$HOLD_SECS")" || die "HOLD_SECS: use e.g. 10s"
((HOLD_SECS > 0 && HOLD_SECS <= 600)) || die "HOLD_SECS=$HOLD_SECS: use 1s..10m"
# pgbench ids are RUN * 10^8 + (client + 1) * 10^6 + seq, seeds RUN * 10^8 + n: keep the blocks apart.
int_in "$PG_ROWS" 1 999999 || die "PG_ROWS=$PG_ROWS: use 1..999999"
int_in "$CONNS" 5 98 || die "CONNS=$CONNS: use 5..98 (pgbench ids; 5 PgBouncers)"
int_in "$CONNS_HI" 1 1000 || die "CONNS_HI=$CONNS_HI: use 1..1000"
int_in "$THREADS" 1 "$CONNS" || die "THREADS=$THREADS: use 1..CONNS ($CONNS)"
int_in "$API_ROWS" 1 99999 || die "API_ROWS=$API_ROWS: use 1..99999"
int_in "$CACHE_USERS" 1 99999 || die "CACHE_USERS=$CACHE_USERS: use 1..99999 (ids <= 20 chars)"
int_in "$PRESENCE_USERS" 1 1000000 || die "PRESENCE_USERS=$PRESENCE_USERS: use 1..1000000"
int_in "$BATCH" 1 1000 || die "BATCH=$BATCH: use 1..1000"
int_in "$ITEMS" 1 100000 || die "ITEMS=$ITEMS: use 1..100000"
int_in "$SALE_USERS" 1 1000000 || die "SALE_USERS=$SALE_USERS: use 1..1000000"
int_in "$SUBSCRIBERS" 0 30000 || die "SUBSCRIBERS=$SUBSCRIBERS: use 0..30000"
int_in "$CHANGES" 1 1000 || die "CHANGES=$CHANGES: use 1..1000"
int_in "$REDIS_REQUESTS" 1 10000000 || die "REDIS_REQUESTS=$REDIS_REQUESTS: use 1..10000000"
int_in "$REDIS_CONNS" 1 1000 || die "REDIS_CONNS=$REDIS_CONNS: use 1..1000"
for r in "$MIN_RATIO" "$P99_MS" "$CACHE_RATIO" "$CACHE_P99_MS" "$MIN_HB" "$MIN_BATCH" \
  "$CHECKOUT_RATIO" "$PURCHASE_RATIO" "$FANOUT_P99_MS" "$RSS_MIB"; do
  [[ "$r" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "a target must be a number: $r"
done
for f in $FAMILIES; do
  [[ " users health cache presence sale memory sse " == *" $f "* ]] ||
    die "FAMILIES: unknown family $f (users health cache presence sale memory sse)"
done
if [[ -n "$KEY_PREFIX" ]]; then
  # Every key under it is deleted at the end: only a run's own fresh prefix will do.
  [[ "$KEY_PREFIX" =~ ^[A-Za-z0-9_.-]{2,40}:$ && "$KEY_PREFIX" != sg: ]] ||
    die "KEY_PREFIX=$KEY_PREFIX: the bench server's own fresh REDIS_KEY_PREFIX ([A-Za-z0-9_.-]+:, not sg:)"
fi
want() { [[ " $FAMILIES " == *" $1 "* ]]; }

# --- tools -----------------------------------------------------------------------------
need_tools " (pgbench and psql: postgresql-client; redis-benchmark, redis-cli: redis-tools)" \
  pgbench psql curl python3
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

RESULTS="${RESULTS:-$ROOT/loadtest/results}"
STAMP="$(date +%Y%m%d-%H%M%S)"
DIR="$RESULTS/bench-$STAMP"
[[ -e "$DIR" ]] && DIR="$DIR-$$"
mkdir -p "$DIR" || die "cannot create $DIR"
LOG="$DIR/raw.log"
FIGS="$DIR/figures.jsonl"
: >"$LOG"; : >"$FIGS"
TMP="$(mktemp -d /tmp/shardgate-bench.XXXXXX)"
RUN="$(date +%s)"              # pgbench run number: all digits, unique per second
API_PREFIX="wb${RUN}$$"        # users API rows of this run: wbNNN-..., no '_' (LIKE wildcard)
TAG="$(run_tag)"               # 7 base36 chars: short ids (cache <= 20 chars, sale items)
CACHE_PREFIX="bc-$TAG"         # cache users bc-<tag>-<n>
HB_PREFIX="bh-$TAG"            # presence users bh-<tag>-<n>
RB_KEY="${KEY_PREFIX:-sgbench:}rb-$TAG"   # redis-benchmark's one key, deleted at once
CODES="$TMP/codes"
HELLO_PID=""
SEEDED=0
API_USED=0
SALE_USED=0

# shellcheck disable=SC2317,SC2329 # called by the EXIT trap
cleanup() {
  [[ -n "$HELLO_PID" ]] && kill "$HELLO_PID" 2>/dev/null && wait "$HELLO_PID" 2>/dev/null
  command -v redis-cli >/dev/null && redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" del "$RB_KEY" >/dev/null 2>&1
  if [[ "${KEEP:-0}" != 1 ]]; then
    echo "bench.sh: cleaning up (KEEP=1 keeps the run's rows and keys)" >&2
    # pgbench rows: ids RUN*10^8 + n (select seeds, insert.sql), all on shard 0.
    if ((SEEDED)); then
      psqlq -c "DELETE FROM users WHERE id LIKE '${RUN}%' AND id ~ '^[0-9]{17,19}\$'" >>"$LOG" 2>&1 ||
        echo "bench.sh: WARNING: could not delete the pgbench rows (ids ${RUN}...)" >&2
    fi
    # users API rows: the GET set and the cache users through the API (so the server drops
    # any cached copy), the bulk of POST-created rows straight from every shard (its PgBouncer).
    if ((API_USED)); then
      [[ -s "$TMP/ids.txt" ]] && api_delete "$TMP/ids.txt" >>"$LOG" 2>&1
      [[ -s "$TMP/cache-ids.txt" ]] && api_delete "$TMP/cache-ids.txt" >>"$LOG" 2>&1
      for i in 0 1 2 3 4; do
        psqlq -p "643$i" -c "DELETE FROM users WHERE id LIKE '${API_PREFIX}-%'" >>"$LOG" 2>&1 ||
          echo "bench.sh: WARNING: could not delete rows ${API_PREFIX}-* on shard $i" >&2
      done
    fi
    # This run's sale records (items sc<TAG>-*, sh<TAG>-*; never reused), on every shard's
    # primary, since both tables route by item id (as bench-sale.sh).
    if ((SALE_USED)); then
      for i in 0 1 2 3 4; do
        psqlq -p "$((PG_PRIMARY_PORT + i))" -c "DELETE FROM sales WHERE item_id LIKE 'sc${TAG}-%' OR item_id LIKE 'sh${TAG}-%';
          DELETE FROM checkout_attempts WHERE item_id LIKE 'sc${TAG}-%' OR item_id LIKE 'sh${TAG}-%'" >>"$LOG" 2>&1 ||
          echo "bench.sh: WARNING: could not delete this run's sale rows on :$((PG_PRIMARY_PORT + i))" >&2
      done
    fi
    # Every Redis key of the bench server's own prefix (cache entries, write markers,
    # presence, the sale's state).
    if [[ -n "$KEY_PREFIX" ]] && command -v redis-cli >/dev/null; then
      redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --scan --pattern "${KEY_PREFIX}*" |
        xargs -r -n 500 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" del >/dev/null 2>&1
    fi
  else
    for f in ids.txt cache-ids.txt codes; do [[ -s "$TMP/$f" ]] && cp "$TMP/$f" "$DIR/$f"; done
    echo "bench.sh: KEEP=1: rows and keys kept (pgbench ids ${RUN}..., users ${API_PREFIX}-*, $CACHE_PREFIX-*, items sc${TAG}-*/sh${TAG}-*, keys ${KEY_PREFIX:-(no KEY_PREFIX)}*); ids and codes in $DIR" >&2
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -----------------------------------------------------------------------------
# rec key=value...: one figure, a JSON line in FIGS (numbers stay numbers; "" and nan are
# null; target.<k>=v and extra.<k>=v go into nested objects). report.py reads them.
rec() {
  python3 - "$FIGS" "$@" <<'PY'
import json, math, sys
out, d = sys.argv[1], {}
def val(v):
    if v == "" or v.lower() in ("nan", "none", "null"): return None
    try:
        f = float(v)
        if math.isnan(f) or math.isinf(f): return None
        return int(v) if v.lstrip("-").isdigit() else f
    except ValueError:
        return v
for a in sys.argv[2:]:
    k, _, v = a.partition("=")
    if k in ("name", "tool", "note", "skipped", "id", "family", "kind", "unit", "ceiling", "also"):
        d[k] = v
    elif "." in k:
        top, sub = k.split(".", 1)
        d.setdefault(top, {})[sub] = val(v)
    else:
        d[k] = val(v)
with open(out, "a") as f:
    f.write(json.dumps(d) + "\n")
PY
}

# skip <id> <family> <kind> <name> <reason>: a figure that was not measured.
skip() { rec id="$1" family="$2" kind="$3" name="$4" skipped="$5"; }

# wrk_kv <wrk output file>: KEY=VALUE lines: rps, p50, p90, p99 (ms, nan when missing),
# requests, non2xx, sock (socket errors) and every "name value" pair of checkout.lua's lines
# (n2xx, n4xx, n5xx, nother, holds, first, first_ok, ..., refusals as CODE=n,CODE=n).
# Exit 1 without a Requests/sec line.
wrk_kv() {
  python3 - "$1" <<'PY'
import re, sys
try: t = open(sys.argv[1]).read()
except OSError: sys.exit(1)
m = re.search(r'Requests/sec:\s+([0-9.]+)', t)
if not m: sys.exit(1)
kv = {"rps": m.group(1)}
units = {'us': 0.001, 'ms': 1, 's': 1000, 'm': 60000}
for p in ("50", "90", "99"):
    x = re.search(r'^\s*' + p + r'(?:\.000)?%\s+([0-9.]+)(us|ms|s|m)\s*$', t, re.M)
    kv["p" + p] = '%.3f' % (float(x.group(1)) * units[x.group(2)]) if x else "nan"
r = re.search(r'^\s*(\d+) requests in', t, re.M)
kv["requests"] = r.group(1) if r else "0"
n = re.search(r'Non-2xx or 3xx responses:\s+(\d+)', t)
kv["non2xx"] = n.group(1) if n else "0"
s = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', t)
kv["sock"] = str(sum(int(x) for x in s.groups())) if s else "0"
for line in t.splitlines():
    if line.startswith("checkout.lua: refusals "):
        kv["refusals"] = ",".join(line.split()[2:])
    elif line.startswith("checkout.lua: "):
        w = line.split()[1:]
        for k, v in zip(w[0::2], w[1::2]):
            kv[{"2xx": "n2xx", "4xx": "n4xx", "5xx": "n5xx", "other": "nother"}.get(k, k)] = v
for k, v in kv.items():
    print(f"{k}={v}")
PY
}

# run_wrk <label> <conns> <secs> <warm 0|1> <url> [lua-script [script args...]]: a WARM_SECS
# run first when <warm> is 1 (post.lua gets an extra "w" argument for it: other ids), then
# the measured one; raw output into LOG; fills W (wrk_kv) and WCMD (the command line).
declare -A W
WCMD=""
run_wrk() {
  local label="$1" conns="$2" secs="$3" warm="$4" url="$5"; shift 5
  local cmd=(wrk -t"$THREADS" -c"$conns")
  local script=""
  if (($# > 0)); then script="$1"; cmd+=(-s "$1"); shift; fi
  local tail=("$url")
  if (($# > 0)); then tail+=(-- "$@"); fi
  if ((warm && WARM_SECS > 0)); then
    local wtail=("${tail[@]}")
    [[ "$script" == */post.lua ]] && wtail+=(w)
    "${cmd[@]}" -d"${WARM_SECS}s" "${wtail[@]}" >/dev/null 2>&1
  fi
  wrk_logged "$label" "$secs" "${cmd[@]}" -- "${tail[@]}"
  WCMD="${cmd[*]} -d${secs}s --latency ${tail[*]}"
  WCMD="${WCMD//"$TMP"/\$TMP}"   # the run's temporary folder, gone afterwards
  W=()
  local k v
  while IFS='=' read -r k v; do W[$k]="$v"; done < <(wrk_kv "$TMP/wrk-$label.out")
  [[ -n "${W[rps]:-}" ]]
}

# wrk_fig <id> <family> <name> <conns> <ceiling id> [rec args...]: records the W of the last
# run_wrk as a figure; errors = non-2xx/3xx + socket errors.
wrk_fig() {
  local id="$1" fam="$2" name="$3" conns="$4" ceil="$5"; shift 5
  rec id="$id" family="$fam" kind="${KIND:-endpoint}" name="$name" conns="$conns" rate="${W[rps]}" unit="req/s" \
    p50_ms="${W[p50]}" p90_ms="${W[p90]}" p99_ms="${W[p99]}" errors="$((W[non2xx] + W[sock]))" \
    ceiling="$ceil" tool="$WCMD" "$@"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# api_create <prefix> <n> <ids-file> [warm]: POST n users <prefix>-<i> (each id appended to
# the file as soon as it is created, so the trap deletes them even after an interrupt).
# With warm: each one is then read twice through GET /v1/users?user_id= (bench-cache.sh's
# warm-up). Prints "created hits" (hits: 2nd reads that said ok:redis with cache_hit true and
# the same user_id and deeplink; 0 without warm).
api_create() {
  python3 - "$BASE" "$1" "$2" "$3" "${4:-}" <<'PY'
import http.client, json, sys, urllib.parse
base, prefix, n, out, warm = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5] == "warm"
u = urllib.parse.urlsplit(base)
c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
def req(method, path, body=None):
    global c
    for attempt in (1, 2):  # once more on a fresh connection if keep-alive dropped
        try:
            c.request(method, path, body, {"Content-Type": "application/json"} if body else {})
            r = c.getresponse()
            return r.status, r.read()
        except (OSError, http.client.HTTPException):
            c.close()
            c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
            if attempt == 2: raise
ids, bad = [], 0
with open(out, "a") as f:
    for i in range(1, n + 1):
        uid = f"{prefix}-{i}"
        st, data = req("POST", "/api/v1/users/", json.dumps({
            "id": uid, "first_name": "Bench", "last_name": f"User{i}", "email": f"{uid}@example.com",
            "deeplink": f"myapp://x/{i}", "promo_message": f"bench {i}"}))
        if st == 201:
            ids.append((i, uid)); f.write(uid + "\n"); f.flush()
        else:
            bad += 1
            if bad <= 3: print(f"create {uid}: HTTP {st} {data[:200]!r}", file=sys.stderr)
            if bad >= 20: break
hits = 0
if warm:
    shown = 0
    for i, uid in ids:
        for k in (1, 2):
            st, data = req("GET", f"/v1/users?user_id={uid}")
        try: b = json.loads(data)
        except ValueError: b = {}
        b = b if isinstance(b, dict) else {}
        if (st == 200 and b.get("message") == "ok:redis" and b.get("cache_hit") is True
                and b.get("user_id") == uid and b.get("deeplink") == f"myapp://x/{i}"):
            hits += 1
        elif shown < 3:
            shown += 1; print(f"second read {uid}: not a cache hit: HTTP {st} {data[:200]!r}", file=sys.stderr)
print(len(ids), hits)
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
    try:
        c.request("DELETE", f"/api/v1/users/{uid}")
        r = c.getresponse(); r.read()
        gone += r.status in (204, 404)
    except (OSError, Exception):
        c.close(); c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
print(f"api_delete {sys.argv[2]}: {gone}/{len(ids)} deleted")
PY
}

# shardgate_procs: "pid ppid rss_kib role" for the processes named shardgate that serve BASE:
# the ones listening on its port (SO_REUSEPORT: every worker), their shardgate parent (the
# supervisor) and its other shardgate children. Other shardgate processes (tests, other
# ports) are left out, unless none is found that way: then every shardgate process.
shardgate_procs() {
  local port="${BASE##*:}"
  [[ "$port" =~ ^[0-9]+$ ]] || port=80
  python3 - "$port" <<'PY'
import os, re, subprocess, sys
port = sys.argv[1]
def comm(pid):
    try: return open(f"/proc/{pid}/comm").read().strip()
    except OSError: return ""
def stat(pid):
    try:
        f = open(f"/proc/{pid}/status").read()
        return int(re.search(r"^PPid:\s+(\d+)", f, re.M).group(1)), int(re.search(r"^VmRSS:\s+(\d+)", f, re.M).group(1))
    except (OSError, AttributeError): return None
ss = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
listen = {int(p) for p in re.findall(r"pid=(\d+)", ss) if comm(p) == "shardgate"}
sup = {stat(p)[0] for p in listen if stat(p) and comm(stat(p)[0]) == "shardgate"}
procs = set(listen) | sup
for d in os.listdir("/proc"):
    if d.isdigit() and comm(d) == "shardgate":
        st = stat(d)
        if st and st[0] in sup: procs.add(int(d))
if not procs:  # not found through its socket: every shardgate process, roles by parent
    allp = [int(d) for d in os.listdir("/proc") if d.isdigit() and comm(d) == "shardgate"]
    procs = set(allp)
    sup = {p for p in allp if stat(p) and comm(stat(p)[0]) != "shardgate"}
for p in sorted(procs):
    st = stat(p)
    if st: print(p, st[0], st[1], "supervisor" if p in sup else "worker")
PY
}

# pg_p50 <script name>: the median latency (ms) of run_pgbench's per-transaction log.
pg_p50() {
  cat "$TMP/pglog-$1"/tx.* 2>/dev/null | awk '{print $3}' | sort -n |
    awk '{a[NR]=$1} END {if (NR==0) {print "nan"; exit} i=int(NR*0.5+0.999999); if (i<1) i=1; printf "%.3f\n", a[i]/1000}'
}

# --- machine facts ------------------------------------------------------------------------
warn_load " (a cargo build? other load tests?)"
HEALTHY=0
is_healthy && HEALTHY=1
python3 - "$DIR/meta.json" <<PY
import json, os, platform, subprocess, sys
def sh(*a):
    try: return subprocess.run(a, capture_output=True, text=True, cwd="$ROOT").stdout.strip()
    except OSError: return ""
cpu = ""
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"): cpu = line.split(":", 1)[1].strip(); break
except OSError: pass
mem = ""
try:
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"): mem = "%.1f GiB" % (int(line.split()[1]) / 1048576); break
except OSError: pass
dirty = sh("git", "status", "--porcelain", "--untracked-files=no")
meta = {
  "stamp": "$STAMP", "date": sh("date", "-Iseconds"), "host": platform.node(),
  "cpus": os.cpu_count(), "cpu_model": cpu, "memory": mem, "kernel": platform.release(),
  "loadavg_before": ["$LOAD0"] + open("/proc/loadavg").read().split()[1:3],
  "git_commit": sh("git", "rev-parse", "HEAD"), "git_describe": sh("git", "describe", "--always", "--dirty"),
  "git_dirty_files": len(dirty.splitlines()) if dirty else 0,
  "base": "$BASE", "server_healthy": bool($HEALTHY), "duration_s": $SECS, "warmup_s": $WARM_SECS,
  "threads": $THREADS, "conns": $CONNS, "conns_hi": $CONNS_HI, "families": "$FAMILIES".split(),
  "pg": "$PGHOST:$PGPORT", "redis": "$REDIS_HOST:$REDIS_PORT", "run": "$RUN", "tag": "$TAG",
  "key_prefix": "$KEY_PREFIX",
  "settings": {"PG_ROWS": $PG_ROWS, "API_ROWS": $API_ROWS, "CACHE_USERS": $CACHE_USERS,
    "PRESENCE_USERS": $PRESENCE_USERS, "BATCH": $BATCH, "ITEMS": $ITEMS, "SALE_USERS": $SALE_USERS,
    "HOLD_SECS": $HOLD_SECS, "SUBSCRIBERS": $SUBSCRIBERS, "CHANGES": $CHANGES,
    "REDIS_REQUESTS": $REDIS_REQUESTS, "REDIS_CONNS": $REDIS_CONNS},
  "tools": {"wrk": " ".join(sh("sh", "-c", "wrk -v 2>&1 | head -1").split()[:2]), "pgbench": sh("pgbench", "--version"),
    "redis-benchmark": sh("sh", "-c", "redis-benchmark --version 2>/dev/null")},
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
PY
echo "bench.sh: $DIR  DURATION=${SECS}s  wrk -t$THREADS -c$CONNS/-c$CONNS_HI  pgbench -c $CONNS via $PGHOST:$PGPORT  BASE=$BASE  families: $FAMILIES" >&2

# ===========================================================================================
# Ceilings
# ===========================================================================================
HR="no shardgate at $BASE (make bench starts one)"

# --- hello-world --------------------------------------------------------------------------
HELLO_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/hello"
# Built when missing or older than its source (it does not use the shardgate library, so
# a binary newer than hello.rs is current even while the server code changes).
if [[ ! -x "$HELLO_BIN" || server/examples/hello.rs -nt "$HELLO_BIN" || -n "${REBUILD_HELLO:-}" ]]; then
  echo "bench.sh: building the hello example" >&2
  if ! cargo build -q --release -p shardgate --example hello >>"$LOG" 2>&1; then
    echo "bench.sh: building the hello example failed (see $LOG)" >&2
    [[ -x "$HELLO_BIN" ]] && echo "bench.sh: using the existing $HELLO_BIN" >&2
  fi
fi
if [[ -x "$HELLO_BIN" ]]; then
  HELLO_PORT="$(free_port)"
  "$HELLO_BIN" "$HELLO_PORT" >>"$LOG" 2>&1 &
  HELLO_PID=$!
  for _ in $(seq 50); do curl -sf -m 1 "http://127.0.0.1:$HELLO_PORT/" >/dev/null && break; sleep 0.1; done
  echo "bench.sh: [ceiling] hello-world on :$HELLO_PORT (${SECS}s)" >&2
  if run_wrk hello "$CONNS" "$SECS" 1 "http://127.0.0.1:$HELLO_PORT/"; then
    KIND=ceiling wrk_fig ceiling.hello ceiling "hello-world (hyper example)" "$CONNS" ""
  else skip ceiling.hello ceiling ceiling "hello-world (hyper example)" "wrk failed, see raw.log"; fi
  kill "$HELLO_PID" 2>/dev/null; wait "$HELLO_PID" 2>/dev/null; HELLO_PID=""
else
  skip ceiling.hello ceiling ceiling "hello-world (hyper example)" "no hello binary: cargo build --release -p shardgate --example hello"
fi

# --- GET /health at both concurrencies ------------------------------------------------------
if ((HEALTHY)); then
  echo "bench.sh: [ceiling] GET /health c$CONNS (${SECS}s)" >&2
  if run_wrk health "$CONNS" "$SECS" 1 "$BASE/health"; then
    # The c CONNS figure is both the health family's (vs hello-world) and the sale's ceiling.
    if want health; then
      wrk_fig health.get health "GET /health" "$CONNS" ceiling.hello \
        target.min_ratio="$MIN_RATIO" target.max_p99_ms="$P99_MS" target.max_errors=0
    else KIND=ceiling wrk_fig health.get health "GET /health" "$CONNS" ""; fi
  else skip health.get health endpoint "GET /health" "wrk failed, see raw.log"; fi
  echo "bench.sh: [ceiling] GET /health c$CONNS_HI (${SECS}s)" >&2
  if run_wrk health-hi "$CONNS_HI" "$SECS" 1 "$BASE/health"; then
    KIND=ceiling wrk_fig ceiling.health_hi ceiling "GET /health c$CONNS_HI" "$CONNS_HI" ""
  else skip ceiling.health_hi ceiling ceiling "GET /health c$CONNS_HI" "wrk failed, see raw.log"; fi
else
  skip health.get health endpoint "GET /health" "$HR"
  skip ceiling.health_hi ceiling ceiling "GET /health c$CONNS_HI" "$HR"
fi

# --- redis-benchmark ------------------------------------------------------------------------
if command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null &&
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  for op in SET GET; do
    echo "bench.sh: [ceiling] redis-benchmark $op, $REDIS_REQUESTS requests, -c $REDIS_CONNS" >&2
    args=(-h "$REDIS_HOST" -p "$REDIS_PORT" --csv -n "$REDIS_REQUESTS" -c "$REDIS_CONNS")
    if [[ $op == SET ]]; then args+=(SET "$RB_KEY" xxx); else args+=(GET "$RB_KEY"); fi
    redis-benchmark "${args[@]}" >"$TMP/redis-$op.out" 2>&1
    { echo "=== redis-benchmark ${args[*]}"; cat "$TMP/redis-$op.out"; } >>"$LOG"
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    read -r rps p50 p99 < <(python3 -c 'import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) >= 7 and r[0] != "test"]
print(rows[-1][1], rows[-1][4], rows[-1][6]) if rows else None' "$TMP/redis-$op.out")
    lop="$(tr 'A-Z' 'a-z' <<<"$op")"
    if [[ -n "${rps:-}" ]]; then
      rec id="ceiling.redis_$lop" family=ceiling kind=ceiling name="redis-benchmark $op" conns="$REDIS_CONNS" \
        rate="$rps" unit="req/s" p50_ms="$p50" p99_ms="$p99" errors=0 tool="redis-benchmark ${args[*]}"
    else skip "ceiling.redis_$lop" ceiling ceiling "redis-benchmark $op" "redis-benchmark failed, see raw.log"; fi
  done
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" del "$RB_KEY" >/dev/null 2>&1
else
  skip ceiling.redis_set ceiling ceiling "redis-benchmark SET" "no redis-benchmark/redis-cli or no Redis at $REDIS_HOST:$REDIS_PORT"
  skip ceiling.redis_get ceiling ceiling "redis-benchmark GET" "no redis-benchmark/redis-cli or no Redis at $REDIS_HOST:$REDIS_PORT"
fi

# --- pgbench through PgBouncer shard 0 ------------------------------------------------------
PGB="pgbench -n -M extended -c $CONNS -j $THREADS -T $SECS"
if psqlq -c "SELECT 1 FROM users LIMIT 1" >/dev/null 2>>"$LOG"; then
  echo "bench.sh: seeding $PG_ROWS rows for select.sql (ids ${RUN}00000001..)" >&2
  SEEDED=1
  psqlq -c "INSERT INTO users (id, first_name, last_name, email)
            SELECT ($RUN::bigint * 100000000 + g)::text, 'Bench', 'Select' || g, 'bench' || g || '@example.com'
            FROM generate_series(1, $PG_ROWS) g" >>"$LOG" 2>&1 || die "seeding failed (see $LOG)"
  echo "bench.sh: [ceiling] pgbench select.sql (${SECS}s)" >&2
  if read -r tps p99 < <(run_pgbench loadtest/pgbench/select.sql -D base="$RUN" -D rows="$PG_ROWS"); then
    rec id=ceiling.pgbench_select family=ceiling kind=ceiling name="pgbench select (:$PGPORT)" conns="$CONNS" \
      rate="$tps" unit="tps" p50_ms="$(pg_p50 select)" p99_ms="$p99" errors=0 tool="$PGB -f loadtest/pgbench/select.sql"
  else skip ceiling.pgbench_select ceiling ceiling "pgbench select (:$PGPORT)" "pgbench failed, see raw.log"; fi
  echo "bench.sh: [ceiling] pgbench insert.sql (${SECS}s)" >&2
  if read -r tps p99 < <(run_pgbench loadtest/pgbench/insert.sql -D base="$RUN" -D seq=0); then
    rec id=ceiling.pgbench_insert family=ceiling kind=ceiling name="pgbench insert (:$PGPORT)" conns="$CONNS" \
      rate="$tps" unit="tps" p50_ms="$(pg_p50 insert)" p99_ms="$p99" errors=0 tool="$PGB -f loadtest/pgbench/insert.sql"
  else skip ceiling.pgbench_insert ceiling ceiling "pgbench insert (:$PGPORT)" "pgbench failed, see raw.log"; fi
  # The sharded write ceiling: the same insert.sql on all five PgBouncers at once, the
  # clients split evenly (CONNS/5 each), tps summed. Every commit is a WAL flush on its own
  # primary, and all five primaries share this machine's one disk, so this is what the
  # sharded write path can reach here; the one-PgBouncer figure above is the issue's ceiling.
  echo "bench.sh: [ceiling] pgbench insert.sql on 5 PgBouncers at once (${SECS}s)" >&2
  for i in 0 1 2 3 4; do
    pgbench -n -M extended -h "$PGHOST" -p $((6430 + i)) -c $((CONNS / 5)) -j 1 -T "$SECS" \
      -D base=$((RUN * 10 + i + 1)) -D seq=0 -f loadtest/pgbench/insert.sql "$PGDATABASE" >"$TMP/pgb5-$i.out" 2>&1 &
  done
  wait
  INS5_TPS=0
  for i in 0 1 2 3 4; do
    { echo "=== pgbench insert.sql x5, PgBouncer :$((6430 + i))"; cat "$TMP/pgb5-$i.out"; } >>"$LOG"
    t="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$TMP/pgb5-$i.out" | tail -1)"
    INS5_TPS="$(python3 -c 'import sys; print(float(sys.argv[1]) + float(sys.argv[2] or 0))' "$INS5_TPS" "$t")"
    # Those rows sit on shard i whatever the ring says: remove them now.
    psql -X -q -h "$PGHOST" -p $((PG_PRIMARY_PORT + i)) -U postgres -d "$PGDATABASE" \
      -c "DELETE FROM users WHERE id LIKE '$((RUN * 10 + i + 1))________'" >>"$LOG" 2>&1 || true
  done
  rec id=ceiling.pgbench_insert_x5 family=ceiling kind=ceiling name="pgbench insert, 5 PgBouncers" conns="$CONNS" \
    rate="$INS5_TPS" unit="tps" errors=0 tool="pgbench -n -M extended -c $((CONNS / 5)) -j 1 -T $SECS x 5 PgBouncers (:6430..:6434)"
else
  for c in select insert insert_x5; do
    skip "ceiling.pgbench_$c" ceiling ceiling "pgbench $c" "no users table via $PGHOST:$PGPORT; scripts/cluster.sh up"
  done
fi

# ===========================================================================================
# Endpoint families
# ===========================================================================================
if ! ((HEALTHY)); then
  echo "bench.sh: no healthy shardgate at $BASE: only the ceilings" >&2
  for f in $FAMILIES; do
    [[ $f == health ]] || skip "$f" "$f" endpoint "$f (every figure)" "$HR"
  done
  FAMILIES=""
fi

# --- users ------------------------------------------------------------------------------------
if want users; then
  echo "bench.sh: creating $API_ROWS users through the API" >&2
  API_USED=1
  read -r n_ids _ < <(api_create "$API_PREFIX-g" "$API_ROWS" "$TMP/ids.txt" 2>>"$LOG")
  if [[ "${n_ids:-0}" -gt 0 ]]; then
    echo "bench.sh: [users] GET /api/v1/users/:id over $n_ids ids (${SECS}s)" >&2
    if run_wrk get "$CONNS" "$SECS" 1 "$BASE/api/v1/users/" loadtest/wrk/get.lua "$TMP/ids.txt"; then
      wrk_fig users.get users "GET /api/v1/users/:id" "$CONNS" ceiling.pgbench_select \
        target.min_ratio="$MIN_RATIO" target.max_p99_ms="$P99_MS" target.max_errors=0
    else skip users.get users endpoint "GET /api/v1/users/:id" "wrk failed, see raw.log"; fi
  else
    skip users.get users endpoint "GET /api/v1/users/:id" "creating users failed, see raw.log"
  fi

  echo "bench.sh: [users] POST /api/v1/users/ (${SECS}s)" >&2
  if run_wrk post "$CONNS" "$SECS" 1 "$BASE/api/v1/users/" loadtest/wrk/post.lua "$API_PREFIX"; then
    wrk_fig users.create users "POST /api/v1/users/" "$CONNS" ceiling.pgbench_insert also=ceiling.pgbench_insert_x5 \
      target.min_ratio="$MIN_RATIO" target.max_p99_ms="$P99_MS" target.max_errors=0
  else skip users.create users endpoint "POST /api/v1/users/" "wrk failed, see raw.log"; fi

  if [[ "${n_ids:-0}" -gt 0 ]]; then
    # PATCH one field of a random user of the GET set (ids already formatted, like get.lua).
    cat >"$TMP/patch.lua" <<'LUA'
-- wrk: PATCH <url-path><id> {"promo_message": "..."} for ids picked at random from a file.
local reqs, n = {}, 0
local headers = { ["Content-Type"] = "application/json" }
function init(args)
  local prefix = wrk.path
  if prefix:sub(-1) ~= "/" then prefix = prefix .. "/" end
  local path = args[1]
  assert(path, "patch.lua: pass the ids file after --")
  for line in io.lines(path) do
    if #line > 0 then reqs[#reqs + 1] = prefix .. line end
  end
  assert(#reqs > 0, "patch.lua: no ids")
  math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6))
end
function request()
  n = n + 1
  return wrk.format("PATCH", reqs[math.random(#reqs)], headers, '{"promo_message":"bench patch ' .. n .. '"}')
end
LUA
    echo "bench.sh: [users] PATCH /api/v1/users/:id over $n_ids ids (${SECS}s)" >&2
    if run_wrk patch "$CONNS" "$SECS" 1 "$BASE/api/v1/users/" "$TMP/patch.lua" "$TMP/ids.txt"; then
      wrk_fig users.update users "PATCH /api/v1/users/:id" "$CONNS" ceiling.pgbench_insert \
        note="no issue target; ceiling: one-row write through the same PgBouncer"
    else skip users.update users endpoint "PATCH /api/v1/users/:id" "wrk failed, see raw.log"; fi
  else
    skip users.update users endpoint "PATCH /api/v1/users/:id" "no users to update"
  fi

  echo "bench.sh: [users] GET /api/v1/users/?limit=20 (${SECS}s)" >&2
  if run_wrk list "$CONNS" "$SECS" 1 "$BASE/api/v1/users/?limit=20"; then
    wrk_fig users.list users "GET /api/v1/users/?limit=20" "$CONNS" ceiling.pgbench_select \
      note="no issue target; a 5-shard merge of 20 rows against a one-row point read"
  else skip users.list users endpoint "GET /api/v1/users/?limit=20" "wrk failed, see raw.log"; fi
fi

# --- cache --------------------------------------------------------------------------------------
if want cache; then
  echo "bench.sh: creating $CACHE_USERS users $CACHE_PREFIX-* and reading each twice" >&2
  API_USED=1
  read -r n_cache n_hits < <(api_create "$CACHE_PREFIX" "$CACHE_USERS" "$TMP/cache-ids.txt" warm 2>>"$LOG")
  n_cache="${n_cache:-0}"; n_hits="${n_hits:-0}"
  ((n_hits == n_cache)) ||
    echo "bench.sh: WARNING: $((n_cache - n_hits)) of $n_cache second reads were not cache hits (see $LOG)" >&2
  if ((n_cache > 0)); then
    echo "bench.sh: [cache] GET /v1/users?user_id= over $n_cache warmed ids, c$CONNS_HI (${SECS}s)" >&2
    if run_wrk cache "$CONNS_HI" "$SECS" 1 "$BASE/v1/users" loadtest/wrk/cache.lua "$TMP/cache-ids.txt"; then
      wrk_fig cache.hit cache "GET /v1/users?user_id= (hit)" "$CONNS_HI" ceiling.health_hi \
        target.min_ratio="$CACHE_RATIO" target.max_p99_ms="$CACHE_P99_MS" target.max_errors=0 \
        extra.warmed_hits="$n_hits" extra.users="$n_cache"
    else skip cache.hit cache endpoint "GET /v1/users?user_id= (hit)" "wrk failed, see raw.log"; fi
  else skip cache.hit cache endpoint "GET /v1/users?user_id= (hit)" "creating users failed, see raw.log"; fi
fi

# --- presence -----------------------------------------------------------------------------------
if want presence; then
  code="$(curl -s -o /dev/null -w '%{http_code}' -m 2 -H 'content-type: application/json' \
    -d '{"userIds":[]}' "$BASE/status")"
  if [[ "$code" == 200 ]]; then
    echo "bench.sh: [presence] POST /heartbeat over $PRESENCE_USERS users, c$CONNS_HI (${SECS}s)" >&2
    if run_wrk heartbeat "$CONNS_HI" "$SECS" 1 "$BASE/heartbeat" loadtest/wrk/heartbeat.lua "$HB_PREFIX" "$PRESENCE_USERS"; then
      wrk_fig presence.heartbeat presence "POST /heartbeat" "$CONNS_HI" ceiling.health_hi \
        target.min_ratio="$MIN_HB" target.max_errors=0 \
        extra.per_minute="$(python3 -c "print(round(${W[rps]} * 60))")"
    else skip presence.heartbeat presence endpoint "POST /heartbeat" "wrk failed, see raw.log"; fi
    echo "bench.sh: [presence] POST /status, batches of $BATCH, c$CONNS_HI (${SECS}s)" >&2
    if run_wrk status "$CONNS_HI" "$SECS" 1 "$BASE/status" loadtest/wrk/status-batch.lua "$HB_PREFIX" "$PRESENCE_USERS" "$BATCH"; then
      wrk_fig presence.status_batch presence "POST /status (batch of $BATCH)" "$CONNS_HI" ceiling.health_hi \
        target.min_ratio="$MIN_BATCH" target.max_errors=0 \
        extra.ids_per_s="$(python3 -c "print(round(${W[rps]} * $BATCH))")"
    else skip presence.status_batch presence endpoint "POST /status (batch of $BATCH)" "wrk failed, see raw.log"; fi
  else
    skip presence.heartbeat presence endpoint "POST /heartbeat" "POST /status answered HTTP $code: no presence"
    skip presence.status_batch presence endpoint "POST /status (batch of $BATCH)" "POST /status answered HTTP $code: no presence"
  fi
fi

# --- sale ----------------------------------------------------------------------------------------
if want sale; then
  LUA="$ROOT/loadtest/wrk/checkout.lua"
  pcode="$(curl -s -o /dev/null -w '%{http_code}' -m 2 -X POST "$BASE/checkout")"
  sale_status="$(curl -s -m 2 "$BASE/status" | python3 -c 'import json, sys
try: print(json.load(sys.stdin).get("sale_status", ""))
except Exception: print("")' 2>/dev/null)"
  curl -s -m 2 "$BASE/status" | sed 's/^/=== sale \/status before: /' >>"$LOG"; echo >>"$LOG"
  if [[ "$pcode" != 400 || -z "$sale_status" ]]; then
    for f in checkout hold purchase; do
      skip "sale.$f" sale endpoint "sale $f" "no sale endpoints (POST /checkout HTTP $pcode, sale_status '$sale_status')"
    done
  else
    [[ "$sale_status" == active ]] ||
      echo "bench.sh: WARNING: sale_status is $sale_status: checkouts will be refused" >&2
    SALE_USED=1
    echo "bench.sh: [sale] POST /checkout under contention, $ITEMS items x $SALE_USERS users (${SECS}s)" >&2
    if run_wrk contend "$CONNS" "$SECS" 1 "$BASE/checkout" "$LUA" contend "sc$TAG-" "$ITEMS" "su$TAG-" "$SALE_USERS"; then
      # Refusals (409/429) are the expected answers here: errors = 5xx + other + socket.
      rec id=sale.checkout family=sale kind=endpoint name="POST /checkout (contended)" conns="$CONNS" \
        rate="${W[rps]}" unit="req/s" p50_ms="${W[p50]}" p90_ms="${W[p90]}" p99_ms="${W[p99]}" \
        errors="$((${W[n5xx]:-1} + ${W[nother]:-1} + ${W[sock]:-0}))" ceiling=health.get tool="$WCMD" \
        target.min_ratio="$CHECKOUT_RATIO" target.max_errors=0 \
        extra.n2xx="${W[n2xx]:-}" extra.n4xx="${W[n4xx]:-}" extra.n5xx="${W[n5xx]:-}" \
        note="refusals: ${W[refusals]:-none}"
    else skip sale.checkout sale endpoint "POST /checkout (contended)" "wrk failed, see raw.log"; fi

    echo "bench.sh: [sale] holds: POST /checkout, a fresh item and user per request (${HOLD_SECS}s)" >&2
    N_CODES=0
    if run_wrk holds "$CONNS" "$HOLD_SECS" 0 "$BASE/checkout" "$LUA" holds "sh$TAG-" "$CODES"; then
      cat "$CODES".* >"$CODES" 2>/dev/null
      N_CODES="$(grep -c . "$CODES")"
      ((${W[n4xx]:-0} > 0)) &&
        echo "bench.sh: WARNING: ${W[n4xx]} holds refused (sold out? SALE_ITEMS too small, or the sale is not fresh)" >&2
      rec id=sale.hold family=sale kind=endpoint name="POST /checkout (hold, fresh item)" conns="$CONNS" \
        rate="${W[rps]}" unit="req/s" p50_ms="${W[p50]}" p90_ms="${W[p90]}" p99_ms="${W[p99]}" \
        errors="$((${W[n5xx]:-1} + ${W[nother]:-1} + ${W[sock]:-0}))" ceiling=health.get tool="$WCMD" \
        extra.holds="$N_CODES" extra.refused="${W[n4xx]:-0}" note="no issue target; the codes the purchase figure buys"
    else skip sale.hold sale endpoint "POST /checkout (hold, fresh item)" "wrk failed, see raw.log"; fi

    if ((N_CODES >= THREADS)); then
      echo "bench.sh: [sale] POST /purchase over $N_CODES codes (${SECS}s)" >&2
      if run_wrk purchase "$CONNS" "$SECS" 0 "$BASE/purchase" "$LUA" purchase "$CODES" "$THREADS"; then
        # The rate is first purchases per second until the codes ran out (checkout.lua).
        note="the rate: first purchases over window_s"
        [[ "${W[exhausted]:-0}" == 1 ]] && note="$note (until the codes ran out)"
        if [[ "${W[first_ok_per_s]:-nan}" == nan ]]; then
          skip sale.purchase sale endpoint "POST /purchase (first)" "no window: codes ran out, no wall clock in wrk's Lua"
        else
          rec id=sale.purchase family=sale kind=endpoint name="POST /purchase (first)" conns="$CONNS" \
            rate="${W[first_ok_per_s]}" unit="req/s" p50_ms="${W[p50]}" p90_ms="${W[p90]}" p99_ms="${W[p99]}" \
            errors="$((${W[first_failed]:-1} + ${W[repeat_failed]:-0} + ${W[sock]:-0}))" ceiling=ceiling.pgbench_insert \
            tool="$WCMD" target.min_ratio="$PURCHASE_RATIO" target.max_errors=0 \
            extra.first="${W[first]:-}" extra.repeat="${W[repeat]:-}" extra.window_s="${W[window_s]:-}" \
            extra.wrk_rps="${W[rps]}" note="$note; latency includes repeats"
        fi
      else skip sale.purchase sale endpoint "POST /purchase (first)" "wrk failed, see raw.log"; fi
    else
      skip sale.purchase sale endpoint "POST /purchase (first)" "$N_CODES holds: nothing to buy"
    fi
    curl -s -m 2 "$BASE/status" | sed 's/^/=== sale \/status after: /' >>"$LOG"; echo >>"$LOG"
  fi
fi

# --- memory: RSS of the shardgate serving BASE, after the HTTP load ----------------------------
if want memory; then
  found=0; nw=0
  while read -r pid _ rss role; do
    [[ -n "$pid" ]] || continue
    found=1
    if [[ $role == worker ]]; then nw=$((nw + 1)); label="worker $nw"; else label="$role"; fi
    rec id="memory.${label// /_}" family=memory kind=memory name="RSS $label" \
      rate="$(python3 -c 'import sys; print("%.1f" % (int(sys.argv[1]) / 1024))' "$rss")" unit=MiB \
      target.max_value="$RSS_MIB" tool="VmRSS of pid $pid (/proc/$pid/status), after the HTTP families"
  done < <(shardgate_procs)
  ((found)) || skip memory.rss memory memory "RSS" "no process named shardgate"
fi

# --- SSE fan-out ---------------------------------------------------------------------------------
if want sse && ((SUBSCRIBERS > 0)); then
  FANOUT="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/sse_fanout"
  if [[ ! -x "$FANOUT" ]]; then
    echo "bench.sh: building the sse_fanout example" >&2
    cargo build -q --release -p shardgate --example sse_fanout >>"$LOG" 2>&1 ||
      echo "bench.sh: building sse_fanout failed (see $LOG)" >&2
  fi
  if [[ -x "$FANOUT" ]]; then
    echo "bench.sh: [sse] $SUBSCRIBERS SSE subscribers of one user, $CHANGES changes" >&2
    args=(--base "$BASE" --subscribers "$SUBSCRIBERS" --users 1 --changes "$CHANGES" --interval-ms 250)
    [[ -n "${SERVER_PID:-}" ]] && args+=(--server-pid "$SERVER_PID")
    "$FANOUT" "${args[@]}" >"$TMP/fanout.out" 2>>"$LOG"
    { echo "=== sse_fanout ${args[*]}"; cat "$TMP/fanout.out"; } >>"$LOG"
    kv() { awk -v k="$1" '$1 == k {print $2}' "$TMP/fanout.out"; }
    held="$(kv subscribers_held)"; exp="$(kv events_expected)"; got="$(kv events_received)"
    if [[ -n "$held" && -n "$exp" ]]; then
      rec id=sse.fanout family=sse kind=endpoint name="SSE fan-out ($SUBSCRIBERS subscribers)" conns="$SUBSCRIBERS" \
        rate="" unit="events" p50_ms="$(kv latency_p50_ms)" p99_ms="$(kv latency_p99_ms)" \
        errors="$(( (SUBSCRIBERS - held) + (exp - ${got:-0}) ))" tool="sse_fanout ${args[*]}" \
        target.max_p99_ms="$FANOUT_P99_MS" target.max_errors=0 \
        extra.subscribers_held="$held" extra.events_expected="$exp" extra.events_received="${got:-0}" \
        extra.latency_max_ms="$(kv latency_max_ms)" extra.connect_secs="$(kv connect_secs)" \
        extra.server_rss_held_mib="$(kv server_rss_held_mib)" \
        note="held $held/$SUBSCRIBERS, delivered ${got:-0}/$exp; errors = subscribers not held + events lost"
    else skip sse.fanout sse endpoint "SSE fan-out ($SUBSCRIBERS subscribers)" "sse_fanout printed no figures, see raw.log"; fi
  else skip sse.fanout sse endpoint "SSE fan-out" "no sse_fanout: cargo build --release -p shardgate --examples"; fi
fi

# --- report --------------------------------------------------------------------------------------
python3 - "$DIR/meta.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
json.dump(m, open(sys.argv[1], "w"), indent=1)
PY
"$PYTHON" "$ROOT/loadtest/report.py" "$DIR" | tee "$DIR/table.txt"
rc=${PIPESTATUS[0]}
echo "bench.sh: report $DIR/report.md, figures $DIR/bench.json, raw output $LOG" >&2
((rc == 0 || rc == 1)) || { echo "bench.sh: report.py failed (exit $rc)" >&2; exit 2; }
if [[ "${STRICT:-0}" == 1 ]] && ((rc == 1)); then exit 1; fi
exit 0
