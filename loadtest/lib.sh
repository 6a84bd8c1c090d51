# shellcheck shell=bash
# What loadtest/bench.sh, bench-cache.sh and bench-sale.sh share. Sourced, not run:
#   . "$(dirname "$0")/lib.sh"
# Messages start with the calling script's name (PROG). The table helpers keep their state
# in ROWS, NPASS, NMISS, NSKIP and V, as the scripts did before.

PROG="$(basename "$0")"

die() { echo "$PROG: $*" >&2; exit 2; }

# --- guards: local targets only, bounded durations -------------------------------------
require_local_base() { # BASE must be http://127.0.0.1[:port], localhost or [::1], no path
  [[ "$BASE" =~ ^http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?$ ]] ||
    die "refusing BASE=$BASE: use http://127.0.0.1[:port], localhost or [::1] (no path)"
}
require_local_pghost() {
  [[ "$PGHOST" == 127.0.0.1 || "$PGHOST" == localhost || "$PGHOST" == ::1 ]] ||
    die "refusing PGHOST=$PGHOST: only this machine"
}
to_secs() { # 10s | 10 | 2m -> seconds
  local v="$1"
  if [[ "$v" =~ ^([0-9]+)s?$ ]]; then echo "${BASH_REMATCH[1]}"
  elif [[ "$v" =~ ^([0-9]+)m$ ]]; then echo $((BASH_REMATCH[1] * 60))
  else return 1; fi
}
# duration_secs <max seconds> <max as text>: sets SECS from DURATION (1s..max).
duration_secs() {
  SECS="$(to_secs "$DURATION")" || die "DURATION=$DURATION: use e.g. 10s or 2m"
  ((SECS > 0 && SECS <= $1)) || die "DURATION=$DURATION: use 1s..$2"
}
# warmup_secs <max seconds, 0 = no limit>: sets WARM_SECS from WARMUP.
warmup_secs() {
  WARM_SECS="$(to_secs "$WARMUP")" || die "WARMUP=$WARMUP: use e.g. 1s or 0"
  (($1 == 0 || WARM_SECS <= $1)) || die "WARMUP=$WARMUP: ${1}s at most"
}
int_in() { [[ "$1" =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); } # int_in <value> <min> <max>

# --- tools -----------------------------------------------------------------------------
# need_tools <hint> <tool...>: wrk is installed (apt-get) when missing; any other missing
# tool stops the run ("<tool> is needed<hint>").
need_tools() {
  local hint="$1" tool; shift
  if ! command -v wrk >/dev/null; then
    echo "$PROG: installing wrk (apt-get)" >&2
    { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null || die "could not install wrk"
  fi
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool is needed$hint"
  done
}

# open_results <name>: under RESULTS (created), sets STAMP, OUT (<name>-STAMP.txt), LOG
# (<name>-STAMP.log, emptied) and TMP (a fresh /tmp/shardgate-<name>.XXXXXX).
open_results() {
  mkdir -p "$RESULTS"
  STAMP="$(date +%Y%m%d-%H%M%S)"
  OUT="$RESULTS/$1-$STAMP.txt"
  LOG="$RESULTS/$1-$STAMP.log"
  TMP="$(mktemp -d "/tmp/shardgate-$1.XXXXXX")"
  : >"$LOG"
}

# run_tag: 5 base36 chars of the time + 2 random ones.
run_tag() {
  python3 -c 'import random, string, time
a = string.digits + string.ascii_lowercase
t, s = int(time.time()), ""
while t: t, r = divmod(t, 36); s = a[r] + s
print(s[-5:] + "".join(random.choice(a) for _ in range(2)))'
}

psqlq() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

# is_healthy: BASE/health answers JSON with status "ok".
is_healthy() {
  local health
  health="$(curl -s -m 2 "$BASE/health" 2>/dev/null)"
  python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1]).get("status") == "ok" else 1)' "$health" 2>/dev/null
}

# warn_load <hint, may be "">: sets LOAD0; warns when the load average is above 0.5 before the run.
warn_load() {
  LOAD0="$(cut -d' ' -f1 /proc/loadavg)"
  if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0.5 else 1)' "$LOAD0"; then
    echo "$PROG: WARNING: load average $LOAD0 before the run: other work on this machine$1 skews every figure" >&2
  fi
}

# --- wrk and pgbench -------------------------------------------------------------------------
# wrk_logged <label> <secs> <wrk args...> -- <url and its -- args>: one measured wrk run
# (--latency) into TMP/wrk-<label>.out, appended with the command line to LOG.
wrk_logged() {
  local label="$1" secs="$2"; shift 2
  local pre=()
  while (($# > 0)) && [[ "$1" != -- ]]; do pre+=("$1"); shift; done
  shift
  local out="$TMP/wrk-$label.out"
  "${pre[@]}" -d"${secs}s" --latency "$@" >"$out" 2>&1
  { echo "=== wrk $label: ${pre[*]} -d${secs}s --latency $*"; cat "$out"; } >>"$LOG"
}

# wrk_stats <wrk output file> [kv]: "req_per_s p99_ms non2xx socket_errors" (p99 nan when
# there is no 99% line); exit 1 without a Requests/sec line. With kv: KEY=VALUE lines: rps,
# p99, sock, and every "name value" pair of the checkout.lua: lines (n2xx, n4xx, n5xx,
# nother, holds, first_ok, ..., refusals as one CODE=n,CODE=n string).
wrk_stats() {
  python3 - "$1" "${2:-}" <<'PY'
import re, sys
try: t = open(sys.argv[1]).read()
except OSError: sys.exit(1)  # TMP already gone: interrupted
m = re.search(r'Requests/sec:\s+([0-9.]+)', t)
if not m:
    sys.exit(1)
p = re.search(r'^\s*99(?:\.000)?%\s+([0-9.]+)(us|ms|s|m)\s*$', t, re.M)
p99 = 'nan'
if p:
    v, u = float(p.group(1)), p.group(2)
    p99 = '%.3f' % (v * {'us': 0.001, 'ms': 1, 's': 1000, 'm': 60000}[u])
n = re.search(r'Non-2xx or 3xx responses:\s+(\d+)', t)
s = re.search(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)', t)
sock = sum(int(x) for x in s.groups()) if s else 0
if sys.argv[2] != "kv":
    print(m.group(1), p99, int(n.group(1)) if n else 0, sock)
    sys.exit(0)
kv = {"rps": m.group(1), "p99": p99, "sock": str(sock)}
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

# run_pgbench <script> [-D ...]: -c CONNS -j THREADS -T SECS; appends the raw output to LOG,
# prints "tps p99_ms" (or nothing, exit 1).
run_pgbench() {
  local script="$1"; shift
  local name; name="$(basename "$script" .sql)"
  local out="$TMP/pgbench-$name.out"
  mkdir -p "$TMP/pglog-$name"
  pgbench -n -M extended -c "$CONNS" -j "$THREADS" -T "$SECS" \
    -l --log-prefix="$TMP/pglog-$name/tx" "$@" -f "$script" "$PGDATABASE" >"$out" 2>&1
  { echo "=== pgbench $script $*"; cat "$out"; } >>"$LOG"
  local tps; tps="$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | tail -1)"
  [[ -n "$tps" ]] || return 1
  # Per-transaction log: field 3 is the latency in microseconds.
  local p99
  p99="$(cat "$TMP/pglog-$name"/tx.* | awk '{print $3}' | sort -n |
    awk '{a[NR]=$1} END {if (NR==0) exit 1; i=int(NR*0.99+0.999999); if (i<1) i=1; printf "%.3f", a[i]/1000}')"
  echo "$tps ${p99:-nan}"
}

# --- the table -------------------------------------------------------------------------
# table_init <figure width> <target width>: the columns figure value ceiling ratio target result.
table_init() {
  ROW_FMT="%-$1s %14s %14s %7s %-$2s %s"
  ROWS=()
  NPASS=0; NMISS=0; NSKIP=0
}
# shellcheck disable=SC2059 # ROW_FMT is the table's format
row() { ROWS+=("$(printf "$ROW_FMT" "$@")"); }
fmt() { python3 -c 'import sys; v=float(sys.argv[1]); print(f"{v:,.0f}" if v >= 100 else f"{v:.2f}")' "$1"; }
# verdict <ok 0|1> [note]: counts it and sets V (no subshell, so the counters stick).
verdict() {
  if [[ "$1" == 1 ]]; then NPASS=$((NPASS + 1)); V=PASS; else NMISS=$((NMISS + 1)); V=MISS; fi
  [[ -z "${2:-}" ]] || V="$V $2"
}
skip_row() { NSKIP=$((NSKIP + 1)); row "$1" "n/a" "" "" "$2" "SKIP ($3)"; }
info_row() { row "$1" "$2" "" "" "${3:-ceiling}" ""; }
ratio_row() { # ratio_row <figure> <value> <ceiling> <min ratio> <note>
  local r ok
  r="$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$2" "$3")"
  ok="$(python3 -c 'import sys; print(int(float(sys.argv[1]) / float(sys.argv[2]) >= float(sys.argv[3])))' "$2" "$3" "$4")"
  verdict "$ok" "$5"
  row "$1" "$(fmt "$2")" "$(fmt "$3")" "$r" ">= $4" "$V"
}
p99_row() { # p99_row <figure> <ms>: below P99_MS
  local ok
  if [[ "$2" == nan ]]; then verdict 0 "(no 99% line)"; row "$1" "?" "" "" "< $P99_MS ms" "$V"; return; fi
  ok="$(python3 -c 'import sys; print(int(float(sys.argv[1]) < float(sys.argv[2])))' "$2" "$P99_MS")"
  verdict "$ok"
  row "$1" "$2 ms" "" "" "< $P99_MS ms" "$V"
}
zero_row() { # zero_row <figure> <count> [shown value]
  verdict "$(($2 == 0))"
  row "$1" "${3:-$2}" "" "" "0" "$V"
}
# print_table: the header, every row, a blank line.
print_table() {
  # shellcheck disable=SC2059 # ROW_FMT is the table's format
  printf "$ROW_FMT\n" figure value ceiling ratio target result
  printf '%s\n' "${ROWS[@]}"
  echo
}
print_counts() { echo "PASS $NPASS  MISS $NMISS  SKIP $NSKIP"; }
# finish: names the files; exit 1 with STRICT=1 when any line is MISS, else 0.
finish() {
  echo "$PROG: table $OUT, raw output $LOG" >&2
  if [[ "${STRICT:-0}" == 1 ]] && ((NMISS > 0)); then exit 1; fi
  exit 0
}
