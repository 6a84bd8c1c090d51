#!/usr/bin/env bash
# make fuzz: hostile input, bounded in time and examples, one table of figures at the end.
#
#   scripts/fuzz.sh cargo   cargo fuzz of fuzz/fuzz_targets/request_input.rs (every request
#                           parser: shardgate::fuzz::input) for FUZZ_SECONDS (60). Nightly
#                           when rustup has it, else stable with RUSTC_BOOTSTRAP=1; AddressSanitizer,
#                           or no sanitizer when that build fails. Installs cargo-fuzz if missing.
#   scripts/fuzz.sh api     schemathesis (PyPI, into VENV) against BASE/openapi.json, a fresh
#                           server (the Makefile's with_bench_server): every phase, at most
#                           FUZZ_EXAMPLES (50) cases per operation and FUZZ_API_SECONDS (300)
#                           in all; checks: no 5xx, responses match the schema (body, status,
#                           content type), schema-valid requests accepted, schema-invalid
#                           ones refused.
#   scripts/fuzz.sh table   prints the figures of both; exits 1 when either found anything.
#
# Everything goes to FUZZ_OUT (loadtest/results/fuzz-<time>/): figures.env, cargo-fuzz.log,
# schemathesis.txt and .json, report.md. A failing part is recorded, not fatal, so the
# table always prints; the exit status comes from `table`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${FUZZ_OUT:?set FUZZ_OUT}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
FIG=$OUT/figures.env
fig() { echo "$1=\"$2\"" >>"$FIG"; }
say() { echo "fuzz.sh: $*" >&2; }
int() { [[ "$1" =~ ^[0-9]+$ ]] || { say "$2=$1: a whole number, please"; exit 2; }; }

cargo_fuzz() {
  local secs=${FUZZ_SECONDS:-60} tc=() env=() mode san=(-s address) t0 rc=0
  int "$secs" FUZZ_SECONDS
  ((secs >= 1 && secs <= 86400)) || { say "FUZZ_SECONDS=$secs: 1..86400"; exit 2; }
  if rustup run nightly rustc --version >/dev/null 2>&1; then
    tc=(+nightly) mode=nightly
  else
    # cargo fuzz passes -Z flags; stable accepts them with RUSTC_BOOTSTRAP=1.
    command -v rustup >/dev/null && tc=(+stable)
    env=(RUSTC_BOOTSTRAP=1) mode="stable, RUSTC_BOOTSTRAP=1"
  fi
  cargo fuzz --version >/dev/null 2>&1 || { say "installing cargo-fuzz"; cargo install -q cargo-fuzz --locked; }
  cd "$ROOT/fuzz"
  say "building request_input ($mode, AddressSanitizer)"
  if ! env "${env[@]}" cargo "${tc[@]}" fuzz build "${san[@]}" request_input >"$OUT/cargo-fuzz-build.log" 2>&1; then
    say "the AddressSanitizer build failed (see cargo-fuzz-build.log); building without a sanitizer"
    san=(-s none)
    env "${env[@]}" cargo "${tc[@]}" fuzz build "${san[@]}" request_input >>"$OUT/cargo-fuzz-build.log" 2>&1 ||
      { say "cargo fuzz build failed: $OUT/cargo-fuzz-build.log"; fig CF_STATUS build-failed; return 0; }
  fi
  local before
  # A fresh clone has no artifacts yet (and find's failure would end the script).
  mkdir -p artifacts/request_input
  before=$(find artifacts/request_input -type f | wc -l)
  say "fuzzing request_input for ${secs} s"
  t0=$(date +%s)
  env "${env[@]}" cargo "${tc[@]}" fuzz run "${san[@]}" request_input -- \
    -max_total_time="$secs" -print_final_stats=1 >"$OUT/cargo-fuzz.log" 2>&1 || rc=$?
  local after runs cov corpus crashes
  after=$(find artifacts/request_input -type f | wc -l)
  crashes=$((after - before))
  # A crash leaves an artifact; a failed exit without one is a crash only if libFuzzer said so
  # (else it is an error, such as the target failing to build).
  if ((rc != 0 && crashes == 0)) && grep -qE '==ERROR: |deadly signal|panicked at' "$OUT/cargo-fuzz.log"; then
    crashes=1
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$OUT/cargo-fuzz.log" | grep -oE '[0-9]+$' | tail -1 || true)
  [[ -n "$runs" ]] || runs=$(grep -oE '^#[0-9]+' "$OUT/cargo-fuzz.log" | tail -1 | tr -d '#' || true)
  cov=$(grep -oE 'cov: [0-9]+' "$OUT/cargo-fuzz.log" | tail -1 | grep -oE '[0-9]+' || true)
  corpus=$(grep -oE 'corp: [0-9]+' "$OUT/cargo-fuzz.log" | tail -1 | grep -oE '[0-9]+' || true)
  fig CF_MODE "$mode, ${san[1]}"
  fig CF_SECONDS $(($(date +%s) - t0))
  fig CF_RUNS "${runs:-0}"
  fig CF_COV "${cov:-?}"
  fig CF_CORPUS "${corpus:-?}"
  fig CF_CRASHES "$crashes"
  fig CF_STATUS "$( ((rc == 0)) && echo ok || echo "exit $rc")"
  # The target prints a line each time the deepest JSON body it has fed at least doubles.
  local deepest
  deepest=$(grep -oE 'deepest JSON body so far: [0-9]+' "$OUT/cargo-fuzz.log" | grep -oE '[0-9]+$' | sort -n | tail -1 || true)
  fig CF_DEPTH "${deepest:-0}"
  ((rc == 0 || crashes > 0)) || say "cargo fuzz run failed without a crash: $OUT/cargo-fuzz.log"
}

api() {
  local base=${BASE:?set BASE (the Makefile starts a fresh server)} venv=${VENV:-.venv}
  local examples=${FUZZ_EXAMPLES:-50} secs=${FUZZ_API_SECONDS:-300} rc=0 t0
  int "$examples" FUZZ_EXAMPLES
  int "$secs" FUZZ_API_SECONDS
  [[ "$base" =~ ^http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]{1,5})?$ ]] ||
    { say "refusing BASE=$base: this machine only"; exit 2; }
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/schemathesis" --version >/dev/null 2>&1 ||
    { say "installing schemathesis into $venv"; "$venv/bin/pip" install -q 'schemathesis>=4.32,<5'; }
  venv=$(cd "$venv" && pwd)
  say "schemathesis against $base/openapi.json: $examples cases per operation, ${secs} s at most"
  t0=$(date +%s)
  # Its own folder: schemathesis and hypothesis keep state in the working directory.
  # One worker: hypothesis parses lambdas' source with ast, which Python 3.11 cannot do
  # from several threads at once ("AST constructor recursion depth mismatch").
  (cd "$OUT" && "$venv/bin/schemathesis" run "$base/openapi.json" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,positive_data_acceptance,negative_data_rejection \
    --max-examples "$examples" --max-time "$secs" --workers 1 --request-timeout 15 \
    --report json --report-json-path "$OUT/schemathesis.json" --no-color) >"$OUT/schemathesis.txt" 2>&1 || rc=$?
  fig ST_SECONDS $(($(date +%s) - t0))
  fig ST_STATUS "$( ((rc == 0)) && echo ok || echo "exit $rc")"
  if [[ -f "$OUT/schemathesis.json" ]]; then
    "$venv/bin/python" - "$OUT/schemathesis.json" >>"$FIG" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
fails = d.get("failures", [])
five = sum(f.get("count", 1) for f in fails if f.get("code") == "ST101")
other = sum(f.get("count", 1) for f in fails if f.get("code") != "ST101")
kinds = ", ".join(sorted({f.get("title", "?") for f in fails if f.get("code") != "ST101"})) or "-"
print(f'ST_CASES="{d["test_cases"]["generated"]}"')
print(f'ST_OPERATIONS="{d["operations"]["tested"]}/{d["operations"]["total"]}"')
print(f'ST_5XX="{five}"')
print(f'ST_MISMATCHES="{other}"')
print(f'ST_KINDS="{kinds}"')
print(f'ST_ERRORS="{len(d.get("errors", []))}"')
print(f'ST_SEED="{d.get("seed", "")}"')
PY
  fi
  tail -5 "$OUT/schemathesis.txt" >&2
}

table() {
  [[ -f "$FIG" ]] || { say "no figures in $OUT"; exit 2; }
  # shellcheck disable=SC1090
  . "$FIG"
  local cf_err=0 st_err=${ST_ERRORS:-not run}
  # A crash makes libFuzzer exit non-zero: that is the crash, not another error.
  [[ "${CF_STATUS:-not run}" == ok || "${CF_CRASHES:-0}" != 0 ]] || cf_err=${CF_STATUS:-not run}
  {
    echo "make fuzz: $(date -u +%Y-%m-%dT%H:%M:%SZ), files in ${OUT#"$ROOT"/}"
    echo
    echo "| part | inputs run / cases | crashes | 5xx | schema mismatches | errors | seconds | what |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    echo "| cargo fuzz \`request_input\` | ${CF_RUNS:--} | ${CF_CRASHES:--} | - | - | $cf_err | ${CF_SECONDS:--} |" \
      "every request parser; ${CF_MODE:-not run}; coverage ${CF_COV:--}, corpus ${CF_CORPUS:--};" \
      "deepest JSON body ${CF_DEPTH:--} levels |"
    echo "| schemathesis \`/openapi.json\` | ${ST_CASES:--} | - | ${ST_5XX:--} | ${ST_MISMATCHES:--} | $st_err |" \
      "${ST_SECONDS:--} | ${ST_OPERATIONS:--} operations, every phase; seed ${ST_SEED:--} |"
    if [[ "${ST_KINDS:--}" != - ]]; then
      echo
      echo "schema mismatches: ${ST_KINDS} (schemathesis.txt has each case and a curl to replay it)"
    fi
  } | tee "$OUT/report.md"
  local bad=0
  [[ "${CF_STATUS:-}" == ok && "${CF_CRASHES:-1}" == 0 ]] || bad=1
  [[ "${ST_5XX:-1}" == 0 && "${ST_MISMATCHES:-1}" == 0 && "$st_err" == 0 ]] || bad=1
  ((bad == 0)) || say "something was found, or a part did not run: see $OUT"
  return $bad
}

case "${1:-}" in
  cargo) cargo_fuzz ;;
  api) api ;;
  table) table ;;
  *) say "usage: scripts/fuzz.sh cargo|api|table (make fuzz runs all three)"; exit 2 ;;
esac
