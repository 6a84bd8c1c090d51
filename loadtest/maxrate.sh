#!/usr/bin/env bash
# The live user status server's "maximum live users per second", measured: the highest constant arrival rate at
# which a LOCAL shardgate holds the presence mix (loadtest/k6/presence.js: 80% heartbeats,
# 20% status batches of 50 ids, every response checked) within the bar, found by a bounded
# search of k6 runs (MODE=rate, through loadtest/k6.sh). The server must already run.
#
#   loadtest/maxrate.sh                                   # server at http://127.0.0.1:8080
#   BASE_URL=http://127.0.0.1:18585 STEP_DURATION=5s loadtest/maxrate.sh
#
# The bar, judged by this script from each run's k6 JSON summary (not from k6's exit code):
#   errors  < MAX_ERR_PCT (1) %: failed requests (http_req_failed) % + failed checks %
#   average latency of the mix's requests < MAX_AVG_MS (100) ms (heartbeat_duration and
#     status_batch_duration, weighted by count: setup's requests are left out)
#   dropped iterations (k6 had no free VU in time) <= MAX_DROP_PCT (1) % of RATE * duration
# k6's own thresholds (p99 < 100 ms per operation, ...) only show in the "k6" column: exit 99
# there while the bar holds is a PASS with a p99 over 100 ms.
#
# The search: START (500)/s, doubled while it passes (at most MAX_RATE, 50000/s); if START
# fails, halved until one passes (down to 10/s). Then a binary search between the highest
# pass and the lowest fail until they are within RESOLUTION: "5%" (default) means
# max(5% of the pass, 100/s); a plain number (e.g. 250) is a gap in /s. Each step is one k6
# run of STEP_DURATION (15s); at most MAX_STEPS (12) search steps. The machine is shared and
# noisy, so the best rate is run once more to confirm it; if that fails, one step down (one
# RESOLUTION below) is tried and, if it passes, reported instead. So at most MAX_STEPS + 2
# runs, each STEP_DURATION plus ~10 s (k6 start, setup, graceful stop, report).
#
# "Live users per second": the live user status server claimed "300,000+ customers per minute"; a customer is
# live when its client's heartbeat (POST /heartbeat) lands. So live users per second =
# heartbeats per second the server absorbs within the bar WHILE also serving the mix's
# status batches (the heartbeat share, ~80%, of the confirmed run's achieved iterations/s;
# one request per iteration), and per minute = x 60, the seed's unit. The total req/s and
# ids looked up per second are printed too. (With clients beating every T s, about T times
# that many users can be online at once.) k6 runs on the same cores as the server (about
# 3/4 of a core at 2000/s), so this is "on this machine, load generator included": each step
# also records the server's CPU (the processes listening on BASE_URL's port, % of one core)
# and the whole machine's, and the end says which ran out at the first failing rate.
#
# Env: BASE_URL (http://127.0.0.1:8080; only 127.0.0.1, localhost or [::1]), START (500),
# MAX_RATE (50000), STEP_DURATION (15s; 1s..10m), MAX_STEPS (12), RESOLUTION (5%),
# MAX_ERR_PCT (1), MAX_AVG_MS (100), MAX_DROP_PCT (1), RESULTS (loadtest/results), VU_MS (250:
# k6 gets RATE * VU_MS / 1000 VUs up front, 20..1500, and twice that at most; with presence.js's
# own default (P99_MS, 100 ms) one 150 ms hiccup of a shared machine already drops iterations at
# 500/s, so a step would fail on a VU pool too small for the bar rather than on the server),
# CLEAN_KEYS=1 deletes the search's presence keys from the local Redis at the end (redis-cli).
# Writes RESULTS/maxrate-<timestamp>.txt (the table and the result) and, per step, k6's log,
# JSON summary and HTML report as RESULTS/maxrate-<timestamp>/step-NN-<rate>.{log,json,html}.
# Exit: 0 a confirmed rate, 1 no rate passed or none confirmed, 2 usage / no server.
set -uo pipefail

PROG="$(basename "$0")"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "$PROG: $*" >&2; exit 2; }

BASE_URL="${BASE_URL:-http://127.0.0.1:8080}"; BASE_URL="${BASE_URL%/}"
START="${START:-500}"
MAX_RATE="${MAX_RATE:-50000}"
STEP_DURATION="${STEP_DURATION:-15s}"
MAX_STEPS="${MAX_STEPS:-12}"
RESOLUTION="${RESOLUTION:-5%}"
MAX_ERR_PCT="${MAX_ERR_PCT:-1}"
MAX_AVG_MS="${MAX_AVG_MS:-100}"
MAX_DROP_PCT="${MAX_DROP_PCT:-1}"
VU_MS="${VU_MS:-250}"
RESULTS="${RESULTS:-$ROOT/loadtest/results}"
MIN_RATE=10     # halving below this gives up
MIN_GAP=100     # the floor of a relative RESOLUTION, /s

# --- arguments ---------------------------------------------------------------------------
[[ "$BASE_URL" =~ ^https?://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?(/.*)?$ ]] ||
  die "refusing BASE_URL=$BASE_URL: the host must be 127.0.0.1, localhost or [::1]"
int_in() { [[ "$1" =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); }
num_ok() { [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
to_secs() { # 15s | 15 | 2m | 1m30s -> seconds
  local v="$1"
  if [[ "$v" =~ ^([0-9]+)s?$ ]]; then echo $((10#${BASH_REMATCH[1]}))
  elif [[ "$v" =~ ^([0-9]+)m(([0-9]+)s)?$ ]]; then echo $((10#${BASH_REMATCH[1]} * 60 + 10#${BASH_REMATCH[3]:-0}))
  else return 1; fi
}
SECS="$(to_secs "$STEP_DURATION")" || die "STEP_DURATION=$STEP_DURATION: use e.g. 15s, 1m or 1m30s"
((SECS >= 1 && SECS <= 600)) || die "STEP_DURATION=$STEP_DURATION: use 1s..10m"
int_in "$MAX_RATE" "$MIN_RATE" 1000000 || die "MAX_RATE=$MAX_RATE: a whole number, $MIN_RATE..1000000"
int_in "$START" "$MIN_RATE" "$MAX_RATE" || die "START=$START: a whole number, $MIN_RATE..MAX_RATE ($MAX_RATE)"
int_in "$MAX_STEPS" 1 50 || die "MAX_STEPS=$MAX_STEPS: use 1..50"
if [[ "$RESOLUTION" =~ ^([0-9]+(\.[0-9]+)?)%$ ]]; then
  RES_PCT="${BASH_REMATCH[1]}"; RES_ABS=""
  awk -v p="$RES_PCT" 'BEGIN { exit !(p > 0 && p < 100) }' || die "RESOLUTION=$RESOLUTION: a percentage in (0, 100)"
elif [[ "$RESOLUTION" =~ ^[0-9]+$ ]] && ((RESOLUTION >= 1)); then
  RES_PCT=""; RES_ABS="$RESOLUTION"
else
  die "RESOLUTION=$RESOLUTION: use e.g. 5% (of the rate, at least ${MIN_GAP}/s) or 250 (/s)"
fi
int_in "$VU_MS" 10 5000 || die "VU_MS=$VU_MS: use 10..5000 (ms)"
for v in MAX_ERR_PCT MAX_AVG_MS MAX_DROP_PCT; do num_ok "${!v}" || die "$v=${!v}: a number"; done
for t in curl jq awk timeout; do command -v "$t" >/dev/null || die "$t is needed"; done
[[ -x "$ROOT/loadtest/k6.sh" ]] || die "$ROOT/loadtest/k6.sh is missing"

# --- a server must answer ---------------------------------------------------------------
code="$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST -H 'Content-Type: application/json' \
  --data '{"userIds":[]}' "$BASE_URL/status" 2>/dev/null)"
[[ "$code" == 200 ]] || die "no server answers POST $BASE_URL/status {\"userIds\":[]} with 200 (got ${code:-nothing}): start shardgate first (make dev)"

# --- helpers -----------------------------------------------------------------------------
commas() { sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|[^0-9]\)/\1,\2\3/;ta' <<<"$1"; }
# The pass/fail gap at which the search stops, below a passing rate.
res_gap() {
  if [[ -n "$RES_ABS" ]]; then echo "$RES_ABS"
  else awk -v r="$1" -v p="$RES_PCT" -v f="$MIN_GAP" 'BEGIN { g = int(r * p / 100); print (g > f ? g : f) }'; fi
}
# A rate between lo and hi (exclusive), rounded to 10/s when the gap allows.
midpoint() {
  local lo="$1" hi="$2" m
  m=$(((lo + hi) / 2))
  if ((hi - lo >= 40)); then m=$(((m + 5) / 10 * 10)); fi
  ((m <= lo)) && m=$((lo + 1))
  ((m >= hi)) && m=$((hi - 1))
  echo "$m"
}
load1() { cut -d' ' -f1 /proc/loadavg; }

# CPU accounting, to tell the server's limit from the machine's: the server is whatever
# listens on BASE_URL's port (ss -p; all its worker processes), k6 shares the same cores.
PORT="$(sed -E 's#^https?://(\[::1\]|[^:/]+)(:([0-9]+))?.*#\3#' <<<"$BASE_URL")"
[[ -z "$PORT" ]] && { [[ "$BASE_URL" == https* ]] && PORT=443 || PORT=80; }
TCK="$(getconf CLK_TCK 2>/dev/null || echo 100)"
server_pids() { ss -Htlnp "sport = :$PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }
ticks_of() { # utime + stime of the pids (fields 14, 15 of /proc/<pid>/stat; comm may hold spaces)
  local p t=0 v
  for p in "$@"; do
    v="$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }')" && [[ -n "$v" ]] && t=$((t + v))
  done
  echo "$t"
}
host_ticks() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat; } # busy total
now_ms() { date +%s%3N; }

STAMP="$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RESULTS" || die "cannot create $RESULTS"
OUT="$RESULTS/maxrate-$STAMP.txt"
DIR="$RESULTS/maxrate-$STAMP"
mkdir -p "$DIR" || die "cannot create $DIR"
# One run tag for the whole search (RUN_TAG is [a-z0-9]{1,8}): every step uses the same
# USERS ids, so the search leaves one set of presence keys, removed with one pattern.
TAG="mr$(LC_ALL=C tr -dc 'a-z0-9' </dev/urandom 2>/dev/null | head -c 4)"
[[ "$TAG" =~ ^mr[a-z0-9]{4}$ ]] || TAG="mr$((RANDOM % 10000))"

say() { echo "$*" | tee -a "$OUT"; }
HDR="$(printf '%-3s %-9s %8s %9s %8s %8s %7s %7s %5s %4s %4s %4s  %s' \
  '#' phase 'rate/s' 'req/s' 'avg ms' 'p99 ms' 'err %' 'drop %' load1 srv% cpu% k6 'result (why)')"

MAX_RUNS=$((MAX_STEPS + 2))
say "shardgate maxrate $STAMP  host $(hostname)  $(nproc) CPUs  loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
say "BASE_URL=$BASE_URL  mix loadtest/k6/presence.js MODE=rate (80% heartbeats, 20% status batches of 50)  run tag $TAG"
say "bar: errors (failed req % + failed checks %) < ${MAX_ERR_PCT}%, avg < ${MAX_AVG_MS} ms, dropped <= ${MAX_DROP_PCT}%; k6 VUs: RATE x ${VU_MS} ms up front (20..1500), x2 at most"
say "search: START=$START doubling to MAX_RATE=$MAX_RATE, bisect to RESOLUTION=$RESOLUTION$([[ -n $RES_PCT ]] && echo " (>= ${MIN_GAP}/s)"), STEP_DURATION=${SECS}s, MAX_STEPS=$MAX_STEPS (+ confirm; at most ~$(((MAX_RUNS * (SECS + 10) + 59) / 60)) min)"
say "p99 = the worse of heartbeat and status batch p99; load1 = loadavg before the step; srv% = the server's CPU (processes on port $PORT)"
say "in % of one core, cpu% = the whole machine busy in % of its $(nproc) cores, both over the step; k6 = k6's exit code (99: one of"
say "its own thresholds, e.g. p99 < 100 ms, crossed; informational)"
say "steps: k6 logs, JSON summaries, HTML reports under $DIR/"
say ""
say "$HDR"

# --- one step ----------------------------------------------------------------------------
# run_step <rate> <phase>: one k6 run; sets PASS (1/0), WHY and the measurements M_*.
NRUN=0
run_step() {
  local rate="$1" phase="$2" log json rc l1 vals pids s0 s1 h0 h1 t0 t1 pre max
  # The VU pool: enough up front for every request of the last VU_MS ms to be in flight
  # (presence.js's own default is P99_MS = 100 ms), twice that at most; see VU_MS above.
  pre=$(((rate * VU_MS + 999) / 1000)); ((pre < 20)) && pre=20; ((pre > 1500)) && pre=1500
  max=$((2 * pre)); ((max < 50)) && max=50
  NRUN=$((NRUN + 1))
  log="$DIR/step-$(printf '%02d' "$NRUN")-$rate.log"
  l1="$(load1)"
  rc=0
  mapfile -t pids < <(server_pids)
  s0="$(ticks_of "${pids[@]}")"; h0="$(host_ticks)"; t0="$(now_ms)"
  # k6.sh runs k6 as its child; timeout signals the whole process group on expiry.
  MODE=rate RATE="$rate" DURATION="${SECS}s" RUN_TAG="$TAG" DROP_PCT="$MAX_DROP_PCT" PRE_VUS="$pre" MAX_VUS="$max" \
    BASE_URL="$BASE_URL" RESULTS="$DIR" \
    timeout -k 10 $((SECS + 120)) "$ROOT/loadtest/k6.sh" presence --quiet --no-color >"$log" 2>&1 || rc=$?
  s1="$(ticks_of "${pids[@]}")"; h1="$(host_ticks)"; t1="$(now_ms)"
  # Server CPU in % of one core over the run (setup and shutdown included); host CPU busy
  # in % of all its cores.
  if ((${#pids[@]} > 0)); then
    M_SRV="$(awk -v a="$s0" -v b="$s1" -v hz="$TCK" -v ms=$((t1 - t0)) 'BEGIN { printf "%.0f", (ms > 0 ? 100 * (b - a) / hz / (ms / 1000) : 0) }')"
  else M_SRV="-"; fi
  M_HOST="$(awk -v a="$h0" -v b="$h1" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%.0f", (d > 0 ? 100 * (y[1] - x[1]) / d : 0) }')"
  json="$(sed -n 's/^k6\.sh: summary //p' "$log" | tail -n 1)"
  # Name the step's summary and report after the step (k6.sh names them by the second).
  if [[ -n "$json" && -f "$json" ]]; then
    mv -f "$json" "${log%.log}.json" && json="${log%.log}.json"
  fi
  local html; html="$(sed -n 's/^k6\.sh: report  //p' "$log" | tail -n 1)"
  [[ -n "$html" && -f "$html" ]] && mv -f "$html" "${log%.log}.html"
  PASS=0; WHY=""
  M_REQS=0 M_HB=0 M_SB=0 M_IDS=0 M_AVG=0 M_P99=0 M_REQF=0 M_CHKF=0 M_DROP=0
  if [[ -n "$json" && -s "$json" ]]; then
    # heartbeats status_batches status_ids avg_ms p99_ms req_failed_% checks_failed_% dropped_%
    vals="$(jq -r --argjson rate "$rate" --argjson secs "$SECS" '
      .metrics as $m
      | ($m.heartbeats.count // 0) as $hb | ($m.status_batches.count // 0) as $sb | ($hb + $sb) as $n
      | ($m.http_req_failed.passes // 0) as $rf | ($rf + ($m.http_req_failed.fails // 0)) as $rn
      | ($m.checks.fails // 0) as $cf | ($cf + ($m.checks.passes // 0)) as $cn
      | [ $hb, $sb, ($m.status_ids.count // 0),
          (if $n > 0 then (($m.heartbeat_duration.avg // 0) * $hb + ($m.status_batch_duration.avg // 0) * $sb) / $n else 0 end),
          ([($m.heartbeat_duration["p(99)"] // 0), ($m.status_batch_duration["p(99)"] // 0)] | max),
          (if $rn > 0 then 100 * $rf / $rn else 0 end),
          (if $cn > 0 then 100 * $cf / $cn else 0 end),
          (100 * ($m.dropped_iterations.count // 0) / ($rate * $secs)) ]
      | @tsv' "$json" 2>/dev/null)"
    if [[ -n "$vals" ]]; then
      read -r M_HB M_SB M_IDS M_AVG M_P99 M_REQF M_CHKF M_DROP <<<"$vals"
      M_REQS=$((M_HB + M_SB))
    fi
  fi
  if ((M_REQS == 0)); then
    WHY="no requests (k6 exit $rc; see $log)"
    if ((rc != 0 && rc != 99)); then
      # Nothing ran: a harness problem (setup aborted, k6 missing, ...), not the server's limit.
      say "$(printf '%-3s %-9s %8s %9s %8s %8s %7s %7s %5s %4s %4s %4s  %s' "$NRUN" "$phase" "$rate" - - - - - "$l1" "$M_SRV" "$M_HOST" "$rc" "ABORT $WHY")"
      echo "$PROG: k6 did not run the mix; the end of its log:" >&2
      tail -n 15 "$log" >&2
      exit 1
    fi
  else
    WHY="$(awk -v e1="$M_REQF" -v e2="$M_CHKF" -v a="$M_AVG" -v d="$M_DROP" -v rc="$rc" \
      -v me="$MAX_ERR_PCT" -v ma="$MAX_AVG_MS" -v md="$MAX_DROP_PCT" 'BEGIN {
        w = ""
        if (e1 + e2 >= me) w = w sprintf("; errors %.2f%% >= %s%% (req %.2f + checks %.2f)", e1 + e2, me, e1, e2)
        if (a >= ma) w = w sprintf("; avg %.1f ms >= %s", a, ma)
        if (d > md) w = w sprintf("; dropped %.2f%% > %s%%", d, md)
        if (rc != 0 && rc != 99) w = w sprintf("; k6 exit %d", rc)
        print substr(w, 3)
      }')"
    [[ -z "$WHY" ]] && { PASS=1; WHY="within the bar"; }
  fi
  M_RPS="$(awk -v n="$M_REQS" -v s="$SECS" 'BEGIN { printf "%.0f", n / s }')"
  say "$(awk -v i="$NRUN" -v ph="$phase" -v r="$rate" -v q="$M_RPS" -v a="$M_AVG" -v p="$M_P99" \
    -v e="$(awk -v a="$M_REQF" -v b="$M_CHKF" 'BEGIN { print a + b }')" -v d="$M_DROP" -v l="$l1" -v sv="$M_SRV" -v hc="$M_HOST" -v rc="$rc" \
    -v res="$( ((PASS)) && echo PASS || echo FAIL)" -v why="$WHY" \
    'BEGIN { printf "%-3s %-9s %8d %9d %8.2f %8.2f %7.2f %7.2f %5s %4s %4s %4s  %s (%s)\n", i, ph, r, q, a, p, e, d, l, sv, hc, rc, res, why }')"
}

# --- the search --------------------------------------------------------------------------
LO=0          # highest rate that passed
HI_SRV="-" HI_CPU="-" HI_WHY=""
HI=0          # lowest rate that failed (0: none yet)
END_NOTE=""
rate="$START"
phase="up"
T0=$SECONDS
for ((step = 1; step <= MAX_STEPS; step++)); do
  if ((LO > 0 && HI > 0)); then phase="bisect"; elif ((LO == 0 && step > 1)); then phase="down"; fi
  run_step "$rate" "$phase"
  if ((PASS)); then ((rate > LO)) && LO=$rate
  elif ((HI == 0 || rate < HI)); then HI=$rate; HI_SRV="$M_SRV"; HI_CPU="$M_HOST"; HI_WHY="$WHY"; fi
  # A pass above a fail (noise) moves the fail up: keep LO < HI.
  ((HI > 0 && LO >= HI)) && HI=0
  if ((HI == 0)); then                      # every rate so far passed: double
    if ((LO >= MAX_RATE)); then END_NOTE="capped: MAX_RATE=$MAX_RATE passed"; break; fi
    rate=$((LO * 2)); ((rate > MAX_RATE)) && rate=$MAX_RATE
  elif ((LO == 0)); then                    # nothing passed yet: halve
    rate=$((HI / 2))
    if ((rate < MIN_RATE)); then END_NOTE="even ${HI}/s failed"; break; fi
  else                                      # bisect
    gap="$(res_gap "$LO")"
    if ((HI - LO <= gap)); then END_NOTE="converged: ${LO}/s passed, ${HI}/s failed (gap $((HI - LO)) <= ${gap}/s)"; break; fi
    rate="$(midpoint "$LO" "$HI")"
  fi
done
[[ -z "$END_NOTE" ]] && END_NOTE="step cap: MAX_STEPS=$MAX_STEPS reached (pass ${LO}/s, fail $( ((HI > 0)) && echo "${HI}/s" || echo none); not at RESOLUTION)"

say ""
say "search: $END_NOTE"
if ((LO == 0)); then
  say "result: no rate passed the bar (lowest tried ${HI}/s); nothing to confirm. Logs: $DIR/"
  exit 1
fi

# --- confirm -------------------------------------------------------------------------------
FINAL=0
HOW="confirmed by a second run at the same rate"
run_step "$LO" confirm
if ((PASS)); then
  FINAL=$LO
else
  down=$((LO - $(res_gap "$LO")))
  ((down < MIN_RATE)) && down=$MIN_RATE
  run_step "$down" step-down
  ((PASS)) && FINAL=$down
  HOW="the confirm run at ${LO}/s failed; one step down passed"
fi
ELAPSED=$((SECONDS - T0))

say ""
if ((FINAL == 0)); then
  say "result: NOT CONFIRMED: ${LO}/s passed in the search but failed to confirm, and ${down}/s failed too;"
  say "        the machine is too noisy right now (loadavg $(cut -d' ' -f1-3 /proc/loadavg); in the last run the server used"
  say "        ${M_SRV}% of one core while the machine was ${M_HOST}% busy). Try again, or a longer STEP_DURATION."
  say "runs $NRUN in ${ELAPSED}s; table $OUT"
  exit 1
fi

# The confirming run's measurements (the last run_step, which passed).
read -r HB_S REQ_S IDS_S <<<"$(awk -v hb="$M_HB" -v n="$M_REQS" -v ids="$M_IDS" -v s="$SECS" \
  'BEGIN { printf "%.0f %.0f %.0f", hb / s, n / s, ids / s }')"
PER_MIN=$((HB_S * 60))
AT_LEAST=""; [[ "$END_NOTE" == capped* ]] && AT_LEAST="at least "
CMP="$(awk -v m="$PER_MIN" 'BEGIN { r = m / 300000; if (r >= 1) printf "%.1fx the claim", r; else printf "%.0f%% of the claim", 100 * r }')"
say "best sustained rate: ${AT_LEAST}$(commas "$FINAL") iterations/s (= requests/s offered); $HOW:"
say "  achieved $(commas "$REQ_S") req/s total, avg $(printf '%.2f' "$M_AVG") ms, p99 $(printf '%.2f' "$M_P99") ms, errors $(awk -v a="$M_REQF" -v b="$M_CHKF" 'BEGIN { printf "%.2f", a + b }')%, dropped $(printf '%.2f' "$M_DROP")%"
say "  of which $(commas "$HB_S") heartbeats/s (live users/s) and $(commas $((REQ_S - HB_S))) status batches/s ($(commas "$IDS_S") ids looked up/s)"
say "  live user = one client heartbeat (POST /heartbeat) absorbed within the bar while the 20% status-batch share is served;"
say "  per minute = x60 (the live user status server's unit). With clients beating every 30 s that is ~$(commas $((HB_S * 30))) users online at once."
say ""
say "shardgate handles ${AT_LEAST:-up to }$(commas "$HB_S") live users per second ($(commas "$PER_MIN") per minute, $CMP) on this machine" \
  "(the live user status server claimed 300,000+ per minute); total $(commas "$REQ_S") req/s."
if ((HI > 0)); then
  say "what ran out at ${HI}/s ($HI_WHY): the server used ${HI_SRV}% of one core, the machine was ${HI_CPU}% busy (k6 and any other load included)."
  if [[ "$HI_SRV" =~ ^[0-9]+$ && "$HI_CPU" =~ ^[0-9]+$ ]] && ((HI_CPU >= 85 && HI_SRV < 50 * $(nproc))); then
    say "  The cores ran out before the server did: k6's per-request checks (and other load) took most of them, so this is a"
    say "  floor for shardgate on this machine, not its ceiling (loadtest/bench-presence.sh measures the server with wrk)."
  fi
fi
say "runs $NRUN in ${ELAPSED}s; table $OUT"

if [[ "${CLEAN_KEYS:-0}" == 1 ]] && command -v redis-cli >/dev/null; then
  n="$(redis-cli --scan --pattern "*presence:*lp-$TAG-*" | xargs -r -n 500 redis-cli del | awk '{ s += $1 } END { print s + 0 }')"
  say "keys: deleted $n presence keys of run tag $TAG"
else
  say "keys: this search's presence keys stay in Redis; to remove them:" \
    "redis-cli --scan --pattern '*presence:*lp-$TAG-*' | xargs -r -n 500 redis-cli del"
fi
exit 0
