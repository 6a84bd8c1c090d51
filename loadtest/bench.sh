#!/usr/bin/env bash
# One benchmark run on this machine: each shardgate figure against the ceiling of the same
# machine in the same run (DESIGN.md section 7). Everything targets 127.0.0.1 only and every
# part stops by itself after DURATION.
#
#   loadtest/bench.sh                      # against a shardgate already on :8080
#   DURATION=30s BASE=http://127.0.0.1:9090 loadtest/bench.sh
#
# It does NOT start shardgate (`make bench` does, then calls this). Without a server on
# BASE it still measures the ceilings and marks the shardgate lines SKIP.
#
# Parts (wrk: 2 threads, 64 connections, --latency; pgbench: -c 64 -j 2 -n -M extended):
#   1. pgbench select.sql through PgBouncer shard 0 (:6430) on PG_ROWS seeded users rows
#   2. pgbench insert.sql through the same PgBouncer, one-row INSERT ... RETURNING
#   3. hello-world hyper example (server/examples/hello.rs), started here on a free port
#   4. shardgate GET /health                     (ceiling: 3)
#   5. shardgate GET /api/v1/users/:id, random ids out of API_ROWS users created first (ceiling: 1)
#   6. shardgate POST /api/v1/users/, a new unique id per request           (ceiling: 2)
#   then each shardgate process's RSS.
# Targets: ratio >= MIN_RATIO (0.60) of the ceiling, p99 < P99_MS (10) ms, RSS < RSS_MIB (64).
#
# Env: DURATION (10s; s or m suffix), BASE (http://127.0.0.1:8080), PGHOST (127.0.0.1),
# PGPORT (6430), PGDATABASE (shardgate), PGUSER (postgres), PG_ROWS (2000), API_ROWS (2000),
# WARMUP (1s per HTTP target before measuring; 0 = none), CONNS (64), THREADS (2),
# KEEP=1 keeps the rows the run created, STRICT=1 exits 1 when any line is MISS.
# Output: the table on stdout and in loadtest/results/bench-<timestamp>.txt, the raw tool
# output in loadtest/results/bench-<timestamp>.log.
set -uo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

DURATION="${DURATION:-10s}"
BASE="${BASE:-http://127.0.0.1:8080}"; BASE="${BASE%/}"
PGHOST="${PGHOST:-127.0.0.1}"
PGPORT="${PGPORT:-6430}"
PGDATABASE="${PGDATABASE:-shardgate}"
PGUSER="${PGUSER:-postgres}"
PG_ROWS="${PG_ROWS:-2000}"
API_ROWS="${API_ROWS:-2000}"
WARMUP="${WARMUP:-1s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
MIN_RATIO="${MIN_RATIO:-0.60}"
P99_MS="${P99_MS:-10}"
RSS_MIB="${RSS_MIB:-64}"
export PGHOST PGPORT PGDATABASE PGUSER

# --- guards: local targets only, bounded durations -------------------------------------
require_local_base
require_local_pghost
duration_secs 3600 60m
warmup_secs 0
# pgbench ids are RUN * 10^8 + (client + 1) * 10^6 + seq, seeds RUN * 10^8 + n: keep the blocks apart.
((PG_ROWS >= 1 && PG_ROWS < 1000000)) || die "PG_ROWS=$PG_ROWS: use 1..999999"
((CONNS >= 1 && CONNS <= 98)) || die "CONNS=$CONNS: use 1..98"

# --- tools -----------------------------------------------------------------------------
need_tools " (pgbench and psql: postgresql-client)" pgbench psql curl python3

RESULTS="$ROOT/loadtest/results"
open_results bench
RUN="$(date +%s)"              # run number: all digits, unique per second
API_PREFIX="wb${RUN}$$"        # shardgate rows of this run: wbNNN-..., no '_' (LIKE wildcard)
HELLO_PID=""
SEEDED=0
API_USED=0

# shellcheck disable=SC2317,SC2329 # called by the EXIT trap
cleanup() {
  [[ -n "$HELLO_PID" ]] && kill "$HELLO_PID" 2>/dev/null && wait "$HELLO_PID" 2>/dev/null
  if [[ "${KEEP:-0}" != 1 ]]; then
    # pgbench rows: ids RUN*10^8 + n (select seeds, insert.sql), all on shard 0.
    if ((SEEDED)); then
      psqlq -c "DELETE FROM users WHERE id LIKE '${RUN}%' AND id ~ '^[0-9]{17,19}\$'" >>"$LOG" 2>&1 ||
        echo "bench.sh: WARNING: could not delete the pgbench rows (ids ${RUN}...)" >&2
    fi
    # shardgate rows: the GET set through the API (so the server drops any cached copy),
    # the bulk of POST-created rows straight from every shard primary (their PgBouncer).
    if ((API_USED)); then
      [[ -s "$TMP/ids.txt" ]] && api_delete "$TMP/ids.txt" >>"$LOG" 2>&1
      for i in 0 1 2 3 4; do
        psqlq -p "643$i" -c "DELETE FROM users WHERE id LIKE '${API_PREFIX}-%'" >>"$LOG" 2>&1 ||
          echo "bench.sh: WARNING: could not delete rows ${API_PREFIX}-* on shard $i" >&2
      done
    fi
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -----------------------------------------------------------------------------
# run_wrk <label> <url> [lua-script [script args...]]: appends the raw output to LOG, prints
# "req_per_s p99_ms errors" (errors = non-2xx/3xx responses + socket errors).
run_wrk() {
  local label="$1" url="$2"; shift 2
  local cmd=(wrk -t"$THREADS" -c"$CONNS")
  if (($# > 0)); then cmd+=(-s "$1"); shift; fi
  local tail=("$url")
  if (($# > 0)); then tail+=(-- "$@"); fi
  if ((WARM_SECS > 0)); then
    # An extra script argument "w" tells post.lua to use other ids than the measured run.
    local warm=("${tail[@]}")
    if (($# > 0)); then warm+=(w); fi
    "${cmd[@]}" -d"${WARM_SECS}s" "${warm[@]}" >/dev/null 2>&1
  fi
  wrk_logged "$label" "$SECS" "${cmd[@]}" -- "${tail[@]}"
  local rps p99 non sock
  read -r rps p99 non sock < <(wrk_stats "$TMP/wrk-$label.out") || return 1
  echo "$rps $p99 $((non + sock))"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# api_create <n> <ids-file>: POST n users with ids API_PREFIX-g-<i>; writes the created ids.
api_create() {
  python3 - "$BASE" "$API_PREFIX-g" "$1" "$2" <<'PY'
import http.client, json, sys, urllib.parse
base, prefix, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlsplit(base)
c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
ids, bad = [], 0
for i in range(1, n + 1):
    uid = f"{prefix}-{i}"
    body = json.dumps({"id": uid, "first_name": "Bench", "last_name": f"Get{i}", "email": f"{uid}@example.com"})
    c.request("POST", "/api/v1/users/", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status == 201:
        ids.append(uid)
    else:
        bad += 1
        if bad <= 3:
            print(f"create {uid}: HTTP {r.status} {data[:200]!r}", file=sys.stderr)
        if bad >= 20:
            break
open(out, "w").write("".join(i + "\n" for i in ids))
print(len(ids))
PY
}

# shellcheck disable=SC2317,SC2329 # called from cleanup
api_delete() {
  python3 - "$BASE" "$1" <<'PY'
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
gone = 0
for uid in open(sys.argv[2]).read().split():
    c.request("DELETE", f"/api/v1/users/{uid}")
    r = c.getresponse(); r.read()
    gone += r.status in (204, 404)
print(f"api_delete: {gone} deleted")
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

# --- the table -------------------------------------------------------------------------
table_init 40 10

warn_load " (a cargo build?)"
echo "bench.sh: DURATION=${SECS}s, wrk -t$THREADS -c$CONNS, pgbench -c $CONNS -j $THREADS via $PGHOST:$PGPORT, BASE=$BASE" >&2

# --- 1, 2: pgbench through PgBouncer shard 0 ----------------------------------------------
SEL_TPS=""; INS_TPS=""
if psqlq -c "SELECT 1 FROM users LIMIT 1" >/dev/null 2>>"$LOG"; then
  echo "bench.sh: seeding $PG_ROWS rows for select.sql (ids ${RUN}00000001..)" >&2
  SEEDED=1
  psqlq -c "INSERT INTO users (id, first_name, last_name, email)
            SELECT ($RUN::bigint * 100000000 + g)::text, 'Bench', 'Select' || g, 'bench' || g || '@example.com'
            FROM generate_series(1, $PG_ROWS) g" >>"$LOG" 2>&1 || die "seeding failed (see $LOG)"
  echo "bench.sh: pgbench select.sql (${SECS}s)" >&2
  if read -r SEL_TPS SEL_P99 < <(run_pgbench loadtest/pgbench/select.sql -D base="$RUN" -D rows="$PG_ROWS"); then
    info_row "pgbench select.sql tps (:$PGPORT)" "$(fmt "$SEL_TPS")"
    info_row "pgbench select.sql p99" "$SEL_P99 ms"
  else SEL_TPS=""; skip_row "pgbench select.sql tps (:$PGPORT)" "ceiling" "pgbench failed, see log"; fi
  echo "bench.sh: pgbench insert.sql (${SECS}s)" >&2
  if read -r INS_TPS INS_P99 < <(run_pgbench loadtest/pgbench/insert.sql -D base="$RUN" -D seq=0); then
    info_row "pgbench insert.sql tps (:$PGPORT)" "$(fmt "$INS_TPS")"
    info_row "pgbench insert.sql p99" "$INS_P99 ms"
  else INS_TPS=""; skip_row "pgbench insert.sql tps (:$PGPORT)" "ceiling" "pgbench failed, see log"; fi
  # The sharded write ceiling: the same insert.sql on all five PgBouncers at once, the
  # clients split evenly (CONNS/5 each), tps summed. Every commit is a WAL flush on its own
  # primary, and all five primaries share this machine's one disk, so this is what the
  # sharded write path can reach here; the one-PgBouncer figure above is the issue's ceiling.
  echo "bench.sh: pgbench insert.sql on 5 PgBouncers at once (${SECS}s)" >&2
  INS5_TPS=0
  for i in 0 1 2 3 4; do
    pgbench -n -M extended -h "$PGHOST" -p $((6430 + i)) -c $((CONNS / 5)) -j 1 -T "$SECS" \
      -D base=$((RUN * 10 + i + 1)) -D seq=0 -f loadtest/pgbench/insert.sql "$PGDATABASE" >"$TMP/pgb5-$i.out" 2>&1 &
  done
  wait
  for i in 0 1 2 3 4; do
    t="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$TMP/pgb5-$i.out" | tail -1)"
    INS5_TPS="$(python3 -c 'import sys; print(float(sys.argv[1]) + float(sys.argv[2] or 0))' "$INS5_TPS" "$t")"
    # Those rows sit on shard i whatever the ring says: remove them now.
    psql -X -q -h "$PGHOST" -p $((5440 + i)) -U postgres -d "$PGDATABASE" \
      -c "DELETE FROM users WHERE id LIKE '$((RUN * 10 + i + 1))________'" >>"$LOG" 2>&1 || true
  done
  info_row "pgbench insert.sql tps, 5 PgBouncers" "$(fmt "$INS5_TPS")"
else
  skip_row "pgbench select/insert (:$PGPORT)" "ceiling" "no users table via $PGHOST:$PGPORT; scripts/cluster.sh up"
fi

# --- 3: hello-world ceiling ---------------------------------------------------------------
HELLO_RPS=""
HELLO_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/hello"
# Build it when missing or older than its source (it does not use the shardgate library, so
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
  echo "bench.sh: wrk hello-world on :$HELLO_PORT (${SECS}s)" >&2
  if read -r HELLO_RPS HELLO_P99 _ < <(run_wrk hello "http://127.0.0.1:$HELLO_PORT/"); then
    info_row "hello-world req/s (hyper example)" "$(fmt "$HELLO_RPS")"
    info_row "hello-world p99" "$HELLO_P99 ms"
  else HELLO_RPS=""; skip_row "hello-world req/s" "ceiling" "wrk failed, see log"; fi
  kill "$HELLO_PID" 2>/dev/null; wait "$HELLO_PID" 2>/dev/null; HELLO_PID=""
else
  skip_row "hello-world req/s" "ceiling" "no hello binary: cargo build --release -p shardgate --example hello"
fi

# --- 4, 5, 6: shardgate ---------------------------------------------------------------------
if is_healthy; then
  echo "bench.sh: wrk $BASE/health (${SECS}s)" >&2
  if read -r H_RPS H_P99 H_ERR < <(run_wrk health "$BASE/health"); then
    if [[ -n "$HELLO_RPS" ]]; then ratio_row "shardgate GET /health req/s" "$H_RPS" "$HELLO_RPS" "$MIN_RATIO" "(ceiling: hello-world)"
    else skip_row "shardgate GET /health req/s" ">= $MIN_RATIO" "no hello ceiling"; fi
    p99_row "shardgate GET /health p99" "$H_P99"
    zero_row "shardgate GET /health errors" "$H_ERR"
  else skip_row "shardgate GET /health req/s" ">= $MIN_RATIO" "wrk failed, see log"; fi

  echo "bench.sh: creating $API_ROWS users through the API" >&2
  API_USED=1
  n_ids="$(api_create "$API_ROWS" "$TMP/ids.txt" 2>>"$LOG")"
  if [[ "${n_ids:-0}" -gt 0 ]]; then
    echo "bench.sh: wrk GET /api/v1/users/:id over $n_ids ids (${SECS}s)" >&2
    if read -r G_RPS G_P99 G_ERR < <(run_wrk get "$BASE/api/v1/users/" loadtest/wrk/get.lua "$TMP/ids.txt"); then
      if [[ -n "$SEL_TPS" ]]; then ratio_row "shardgate GET /api/v1/users/:id req/s" "$G_RPS" "$SEL_TPS" "$MIN_RATIO" "(ceiling: pgbench select)"
      else skip_row "shardgate GET /api/v1/users/:id req/s" ">= $MIN_RATIO" "no pgbench ceiling"; fi
      p99_row "shardgate GET /api/v1/users/:id p99" "$G_P99"
      zero_row "shardgate GET /api/v1/users/:id errors" "$G_ERR"
    else skip_row "shardgate GET /api/v1/users/:id req/s" ">= $MIN_RATIO" "wrk failed, see log"; fi
  else
    skip_row "shardgate GET /api/v1/users/:id req/s" ">= $MIN_RATIO" "creating users failed, see log"
  fi

  echo "bench.sh: wrk POST /api/v1/users/ (${SECS}s)" >&2
  if read -r P_RPS P_P99 P_ERR < <(run_wrk post "$BASE/api/v1/users/" loadtest/wrk/post.lua "$API_PREFIX"); then
    if [[ -n "${INS5_TPS:-}" && "$INS5_TPS" != 0 ]]; then
      ratio_row "shardgate POST req/s vs 5-shard ceiling" "$P_RPS" "$INS5_TPS" "$MIN_RATIO" "(ceiling: pgbench insert x5 PgBouncers)"
    fi
    if [[ -n "$INS_TPS" ]]; then ratio_row "shardgate POST /api/v1/users/ req/s" "$P_RPS" "$INS_TPS" "$MIN_RATIO" "(ceiling: pgbench insert)"
    else skip_row "shardgate POST /api/v1/users/ req/s" ">= $MIN_RATIO" "no pgbench ceiling"; fi
    p99_row "shardgate POST /api/v1/users/ p99" "$P_P99"
    zero_row "shardgate POST /api/v1/users/ errors" "$P_ERR"
  else skip_row "shardgate POST /api/v1/users/ req/s" ">= $MIN_RATIO" "wrk failed, see log"; fi

  # RSS of the shardgate serving BASE (its supervisor and every worker), after the load.
  found=0
  while read -r pid _ rss role; do
    [[ -n "$pid" ]] || continue
    found=1
    mib="$(python3 -c 'import sys; print("%.1f" % (int(sys.argv[1]) / 1024))' "$rss")"
    ok="$(python3 -c 'import sys; print(int(int(sys.argv[1]) < int(sys.argv[2]) * 1024))' "$rss" "$RSS_MIB")"
    verdict "$ok"
    row "shardgate RSS pid $pid ($role)" "$mib MiB" "" "" "< $RSS_MIB MiB" "$V"
  done < <(shardgate_procs)
  ((found)) || skip_row "shardgate RSS" "< $RSS_MIB MiB" "no process named shardgate"
else
  for f in "GET /health" "GET /api/v1/users/:id" "POST /api/v1/users/"; do
    skip_row "shardgate $f" ">= $MIN_RATIO" "no shardgate at $BASE: make bench starts it"
  done
  skip_row "shardgate RSS" "< $RSS_MIB MiB" "no shardgate at $BASE"
fi

# --- report ------------------------------------------------------------------------------
{
  echo "shardgate bench $STAMP  host $(hostname)  $(nproc) CPUs  loadavg before $LOAD0  duration ${SECS}s  wrk -t$THREADS -c$CONNS --latency  pgbench -c $CONNS -j $THREADS -M extended via $PGHOST:$PGPORT"
  echo "BASE=$BASE  ceilings: pgbench loadtest/pgbench/{select,insert}.sql on the users table through the same PgBouncer; hello = server/examples/hello.rs"
  echo
  print_table
  print_counts
} | tee "$OUT"
finish
