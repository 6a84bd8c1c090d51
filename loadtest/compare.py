#!/usr/bin/env python3
"""The difference between two `loadtest/bench.sh` runs, figure by figure.

    loadtest/compare.py A B          # A, B: bench.json files or their run folders
    loadtest/compare.py              # the two newest runs in loadtest/results (older = A)
    loadtest/compare.py A            # A against the newest run
    loadtest/compare.py --all A B    # also p50, the ratio and the error count

One line per figure and measure (rate and p99 by default): the value in A, in B, the change
in percent (B against A), whether that is better or worse (a higher rate or ratio is better,
a lower latency, error count or RSS is better), and the figure's result in each run (met,
MISSED, info, ceiling, skipped). Sorted by the largest change first; figures in only one
run come last. A figure whose result flipped between met and missed is marked "<- flipped".

Both runs' load averages are printed first: on a shared 2-core machine a change of a few
percent, or more when the load differed, is noise. Compare the ratios (`--all`) before the
absolute rates: a ceiling measured in the same run moves with the figure.
Exit status: 0, or 2 when a run cannot be read.
"""

import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOWER_IS_BETTER = {"p50_ms", "p90_ms", "p99_ms", "errors"}
LABEL = {"rate": "rate", "p50_ms": "p50 ms", "p99_ms": "p99 ms", "ratio": "ratio", "errors": "errors"}


def resolve(path):
    if os.path.isdir(path):
        path = os.path.join(path, "bench.json")
    try:
        return path, json.load(open(path))
    except (OSError, ValueError) as e:
        print(f"compare.py: cannot read {path}: {e}", file=sys.stderr)
        sys.exit(2)


def newest(n):
    runs = sorted(glob.glob(os.path.join(ROOT, "loadtest", "results", "bench-*", "bench.json")),
                  key=lambda p: os.path.basename(os.path.dirname(p)))
    if len(runs) < n:
        print(f"compare.py: need {n} runs with a bench.json in loadtest/results, found {len(runs)}", file=sys.stderr)
        sys.exit(2)
    return runs[-n:]


def fmt(v, key):
    if v is None:
        return "-"
    if key == "ratio":
        return f"{v:.2f}"
    if key == "errors":
        return f"{v:,.0f}"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def result(f):
    if f is None:
        return "-"
    r = f.get("result", "?")
    return "MISSED" if r == "missed" else r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", help="A and B: bench.json files or run folders")
    ap.add_argument("--all", action="store_true", help="also p50, the ratio and the error count")
    ap.add_argument("--metric", action="append", choices=["rate", "p50_ms", "p99_ms", "ratio", "errors"],
                    help="only these measures (repeatable)")
    a = ap.parse_args()
    if len(a.runs) > 2:
        ap.error("at most two runs")
    runs = a.runs or newest(2)
    if len(runs) == 1:
        runs = [runs[0], newest(1)[0]]
    (pa, A), (pb, B) = resolve(runs[0]), resolve(runs[1])
    keys = a.metric or (["rate", "p50_ms", "p99_ms", "ratio", "errors"] if a.all else ["rate", "p99_ms"])

    for tag, p, d in (("A", pa, A), ("B", pb, B)):
        m = d.get("meta", {})
        c = d.get("counts", {})
        print(f"{tag}: {os.path.relpath(p)}  {m.get('date', '?')}  commit {m.get('git_describe') or m.get('git_commit', '?')[:12]}"
              f"  {m.get('cpus', '?')} CPUs  load before {' '.join(m.get('loadavg_before') or ['?'])}"
              f"  duration {m.get('duration_s', '?')}s  met {c.get('met', '?')} missed {c.get('missed', '?')}")
    da, db = (m.get("meta", {}).get("duration_s") for m in (A, B))
    if da != db:
        print(f"note: the runs measured for different durations ({da}s, {db}s)")
    print()

    fa = {f["id"]: f for f in A.get("figures", [])}
    fb = {f["id"]: f for f in B.get("figures", [])}
    order = list(fa) + [i for i in fb if i not in fa]
    rows, lonely = [], []
    for i in order:
        x, y = fa.get(i), fb.get(i)
        if x is None or y is None:
            lonely.append((i, x, y))
            continue
        flip = {x.get("result"), y.get("result")} == {"met", "missed"}
        for k in keys:
            va, vb = x.get(k), y.get(k)
            if va is None and vb is None:
                continue
            unit = x.get("unit") or y.get("unit") or ""
            name = x.get("name") or i
            label = LABEL[k] if k != "rate" else (unit if unit in ("MiB", "tps") else "rate/s")
            if va is not None and vb is not None and va != 0:
                ch = (vb - va) / abs(va) * 100
                lower = k in LOWER_IS_BETTER or (k == "rate" and unit == "MiB")
                verdict = "" if abs(ch) < 0.05 else ("better" if (ch < 0) == lower else "worse")
            else:
                ch, verdict = None, ""
            rows.append((name, label, va, vb, ch, verdict, result(x), result(y), flip, k))

    rows.sort(key=lambda r: (r[4] is None, -abs(r[4]) if r[4] is not None else 0))
    w = max([len("figure")] + [len(r[0]) for r in rows] + [len(str(i)) for i, _, _ in lonely])
    print(f"{'figure':<{w}}  {'measure':<7}  {'A':>10}  {'B':>10}  {'change':>8}  {'':<6}  {'A result':<8}  {'B result':<8}")
    for name, label, va, vb, ch, verdict, ra, rb, flip, k in rows:
        chs = "-" if ch is None else f"{ch:+.1f}%"
        print(f"{name:<{w}}  {label:<7}  {fmt(va, k):>10}  {fmt(vb, k):>10}  {chs:>8}  {verdict:<6}  {ra:<8}  {rb:<8}"
              + ("  <- flipped" if flip and k == keys[0] else ""))
    for i, x, y in lonely:
        f = x or y
        print(f"{(f.get('name') or i):<{w}}  only in {'A' if x else 'B'} ({result(f)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
