#!/usr/bin/env python3
"""The report of one `loadtest/bench.sh` run: the table, report.md, bench.json and charts.

    loadtest/report.py loadtest/results/bench-20261122-101500     # what bench.sh runs at the end
    loadtest/report.py --quiet --no-charts <run folder>

Reads the run folder's meta.json (machine facts, settings) and figures.jsonl (one measured
figure a line, written by bench.sh), works out each figure's ratio to its ceiling and
whether it met its target, prints the table on stdout and writes into the folder:

    bench.json      every figure, machine-readable (see FIELDS below), and the meta
    report.md       machine facts, the table, notes, the charts embedded
    throughput.png  each endpoint's rate beside its ceiling's (log scale)
    latency.png     p50 and p99 of every figure (log scale), the p99 target marked
    ratio.png       each endpoint's ratio to its ceiling, the target marked

The charts need matplotlib (`.venv/bin/pip install -q matplotlib`, which `make venv` does);
without it everything else is still written and a message says how to get the charts.
Exit status: 0, or 1 when a figure missed its target (bench.sh turns that into its own exit
status only with STRICT=1), 2 when the folder cannot be read.
"""

import argparse
import json
import math
import os
import sys

# bench.json "figures" fields, per figure:
#   id, name, family, kind (ceiling | endpoint | memory), conns, rate (req/s, tps or MiB;
#   null for SSE), unit, p50_ms, p90_ms, p99_ms, errors, ceiling (the ceiling figure's id),
#   ceiling_name, ceiling_value, ratio (rate / ceiling_value), target ({min_ratio,
#   max_p99_ms, max_errors, max_value}), target_text, met (true | false | null), result
#   (met | missed | info | ceiling | skipped), why (the conditions missed), also (more
#   ratios: [{ceiling, ceiling_name, ceiling_value, ratio}]), extra, tool, note, skipped.
SCHEMA = 1
FAMILY_ORDER = ["ceiling", "health", "users", "cache", "presence", "sale", "memory", "sse"]

GREEN, RED, GREY, BLUE, LIGHT = "#2e7d32", "#c62828", "#757575", "#1565c0", "#cfd8dc"


def load(folder):
    meta_path = os.path.join(folder, "meta.json")
    figs_path = os.path.join(folder, "figures.jsonl")
    try:
        meta = json.load(open(meta_path))
    except (OSError, ValueError) as e:
        print(f"report.py: cannot read {meta_path}: {e}", file=sys.stderr)
        sys.exit(2)
    figures = []
    if os.path.exists(figs_path):
        for n, line in enumerate(open(figs_path), 1):
            line = line.strip()
            if line:
                try:
                    figures.append(json.loads(line))
                except ValueError as e:
                    print(f"report.py: {figs_path}:{n}: skipped, not JSON ({e})", file=sys.stderr)
    else:  # a folder with only bench.json: evaluate its figures again
        try:
            figures = json.load(open(os.path.join(folder, "bench.json")))["figures"]
        except (OSError, ValueError, KeyError) as e:
            print(f"report.py: no figures.jsonl or bench.json in {folder}: {e}", file=sys.stderr)
            sys.exit(2)
    return meta, figures


def num(v):
    return v if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)) else None


def target_text(t, unit=None):
    if not t:
        return ""
    parts = []
    if t.get("min_ratio") is not None:
        parts.append(f">= {t['min_ratio']:.2f}x")
    if t.get("max_p99_ms") is not None:
        parts.append(f"p99 < {t['max_p99_ms']:g} ms")
    if t.get("max_errors") is not None:
        parts.append("0 err" if t["max_errors"] == 0 else f"<= {t['max_errors']} err")
    if t.get("max_value") is not None:
        parts.append(f"< {t['max_value']:g}" + (f" {unit}" if unit in ("MiB",) else ""))
    return ", ".join(parts)


def evaluate(figures):
    by_id = {f.get("id"): f for f in figures}

    def ceiling_of(cid):
        c = by_id.get(cid)
        if not c or c.get("skipped") or num(c.get("rate")) in (None, 0):
            return c, None
        return c, c["rate"]

    out = []
    for f in figures:
        f = dict(f)
        f.setdefault("family", "?")
        f.setdefault("kind", "endpoint")
        for k in ("rate", "p50_ms", "p90_ms", "p99_ms", "errors", "conns"):
            f[k] = num(f.get(k))
        f["ratio"] = f["ceiling_name"] = f["ceiling_value"] = None
        f["target"] = f.get("target") or None
        f["target_text"] = target_text(f["target"], f.get("unit"))
        f["why"] = []
        f["met"] = None
        if f.get("skipped"):
            f["result"] = "skipped"
            out.append(f)
            continue
        if f.get("ceiling"):
            c, cv = ceiling_of(f["ceiling"])
            f["ceiling_name"] = c.get("name") if c else f["ceiling"]
            f["ceiling_value"] = cv
            if cv and f["rate"] is not None:
                f["ratio"] = round(f["rate"] / cv, 4)
        also = []
        for cid in filter(None, (f.get("also") or "").split(",")):
            c, cv = ceiling_of(cid)
            if cv and f["rate"] is not None:
                also.append({"ceiling": cid, "ceiling_name": c.get("name"), "ceiling_value": cv,
                             "ratio": round(f["rate"] / cv, 4)})
        f["also"] = also
        t = f["target"]
        if f["kind"] == "ceiling":
            f["result"] = "ceiling"
        elif not t:
            f["result"] = "info"
        else:
            unknown = []
            if t.get("min_ratio") is not None:
                if f["ratio"] is None:
                    unknown.append("no ceiling")
                elif f["ratio"] < t["min_ratio"]:
                    f["why"].append(f"ratio {f['ratio']:.2f} < {t['min_ratio']:.2f}")
            if t.get("max_p99_ms") is not None:
                if f["p99_ms"] is None:
                    f["why"].append("no p99")
                elif not f["p99_ms"] < t["max_p99_ms"]:
                    f["why"].append(f"p99 {f['p99_ms']:g} >= {t['max_p99_ms']:g} ms")
            if t.get("max_errors") is not None:
                if f["errors"] is None:
                    f["why"].append("errors unknown")
                elif f["errors"] > t["max_errors"]:
                    f["why"].append(f"{f['errors']} errors")
            if t.get("max_value") is not None:
                if f["rate"] is None or not f["rate"] < t["max_value"]:
                    f["why"].append(f"{f['rate']} >= {t['max_value']:g}")
            if f["why"]:
                f["met"], f["result"] = False, "missed"
            elif unknown:
                f["result"] = "skipped"
                f["skipped"] = ", ".join(unknown)
            else:
                f["met"], f["result"] = True, "met"
        out.append(f)
    return out


# --- formatting ------------------------------------------------------------------------------
def fmt_rate(v, unit=None):
    if v is None:
        return "-"
    s = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}"
    return f"{s} MiB" if unit == "MiB" else s


def fmt_num(v):
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
    return str(v)


def fmt_ms(v):
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def result_text(f):
    r = f["result"]
    if r == "met":
        return "met"
    if r == "missed":
        return "MISSED (" + "; ".join(f["why"]) + ")"
    if r == "skipped":
        return f"skipped ({f.get('skipped', '')})"
    return r


COLS = [("figure", 36, "<"), ("conns", 5, ">"), ("rate/s", 10, ">"), ("p50 ms", 7, ">"),
        ("p99 ms", 7, ">"), ("errors", 6, ">"), ("ceiling", 27, "<"), ("ceiling/s", 10, ">"),
        ("ratio", 5, ">"), ("target", 30, "<"), ("result", 0, "<")]


def row_cells(f):
    return [f.get("name", f.get("id", "?")), "" if f["conns"] is None else str(int(f["conns"])),
            fmt_rate(f["rate"], f.get("unit")), fmt_ms(f["p50_ms"]), fmt_ms(f["p99_ms"]),
            "-" if f["errors"] is None else str(int(f["errors"])),
            f["ceiling_name"] or "", "" if f["ceiling_value"] is None else fmt_rate(f["ceiling_value"]),
            "" if f["ratio"] is None else f"{f['ratio']:.2f}", f["target_text"], result_text(f)]


def text_table(figs):
    def line(cells):
        out = []
        for (_, w, a), c in zip(COLS, cells):
            c = str(c)
            if w and len(c) > w:
                c = c[: w - 1] + "~"
            out.append(f"{c:{a}{w}}" if w else c)
        return "  ".join(out).rstrip()
    lines = [line([c[0] for c in COLS])]
    fam = None
    for f in figs:
        if f["family"] != fam and fam is not None:
            lines.append("")
        fam = f["family"]
        lines.append(line(row_cells(f)))
    return "\n".join(lines)


def md_table(figs):
    head = "| family | " + " | ".join(c[0] for c in COLS) + " |"
    sep = "|---|" + "|".join("---:" if c[2] == ">" else "---" for c in COLS) + "|"
    rows = []
    for f in figs:
        cells = row_cells(f)
        r = cells[-1]
        cells[-1] = f"**{r}**" if f["result"] == "missed" else r
        rows.append("| " + f["family"] + " | " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join([head, sep] + rows)


def counts(figs):
    c = {k: 0 for k in ("met", "missed", "info", "ceiling", "skipped")}
    for f in figs:
        c[f["result"]] = c.get(f["result"], 0) + 1
    return c


def notes(figs):
    out = []
    for f in figs:
        bits = []
        for a in f.get("also") or []:
            bits.append(f"ratio {a['ratio']:.2f} to {a['ceiling_name']} ({fmt_rate(a['ceiling_value'])}/s)")
        ex = f.get("extra") or {}
        if ex:
            bits.append(", ".join(f"{k} {fmt_num(v)}" for k, v in ex.items() if v is not None))
        if f.get("note"):
            bits.append(f["note"])
        if bits:
            out.append((f.get("name", f.get("id")), "; ".join(bits)))
    return out


def header(meta):
    la = meta.get("loadavg_before") or ["?"]
    return (f"shardgate bench {meta.get('stamp', '?')}  {meta.get('host', '')}  {meta.get('cpus', '?')} CPUs  "
            f"loadavg before {la[0]}  duration {meta.get('duration_s', '?')}s  wrk -t{meta.get('threads', '?')} "
            f"-c{meta.get('conns', '?')}/-c{meta.get('conns_hi', '?')} --latency  commit "
            f"{meta.get('git_describe') or meta.get('git_commit', '?')[:12]}  BASE={meta.get('base', '?')}")


# --- charts -----------------------------------------------------------------------------------
def color(f):
    return {"met": GREEN, "missed": RED, "ceiling": BLUE}.get(f["result"], GREY)


def charts(folder, figs):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        print(f"report.py: matplotlib is not installed for {sys.executable}: no charts (the table, "
              "report.md and bench.json are written). Install it: .venv/bin/pip install -q matplotlib "
              f"(make venv does), then redo the report: loadtest/report.py {folder}", file=sys.stderr)
        return []
    made = []
    legend = [Patch(color=GREEN, label="met"), Patch(color=RED, label="missed"),
              Patch(color=GREY, label="info (no target)"), Patch(color=LIGHT, label="its ceiling")]

    # 1. throughput against the ceiling
    ep = [f for f in figs if f["kind"] == "endpoint" and f["rate"] and f["ceiling_value"]]
    if ep:
        fig, ax = plt.subplots(figsize=(11, 0.62 * len(ep) + 1.6))
        y = list(range(len(ep)))[::-1]
        h = 0.38
        ax.barh([v + h / 2 for v in y], [f["ceiling_value"] for f in ep], h, color=LIGHT)
        ax.barh([v - h / 2 for v in y], [f["rate"] for f in ep], h, color=[color(f) for f in ep])
        for v, f in zip(y, ep):
            ax.text(f["ceiling_value"] * 1.04, v + h / 2, f"{f['ceiling_name']} {fmt_rate(f['ceiling_value'])}",
                    va="center", fontsize=7, color="#455a64")
            tgt = (f["target"] or {}).get("min_ratio")
            ax.text(f["rate"] * 1.04, v - h / 2, f"{fmt_rate(f['rate'])}/s  x{f['ratio']:.2f}"
                    + (f" (target {tgt:.2f})" if tgt is not None else ""), va="center", fontsize=7.5)
        ax.set_yticks(y, [f["name"] for f in ep], fontsize=8)
        ax.set_xscale("log")
        lo = min(min(f["rate"] for f in ep), min(f["ceiling_value"] for f in ep))
        hi = max(max(f["rate"] for f in ep), max(f["ceiling_value"] for f in ep))
        ax.set_xlim(lo / 2, hi * 12)
        ax.set_xlabel("requests (or transactions) per second, log scale")
        ax.set_title("Throughput of each endpoint beside its ceiling (same machine, same run)")
        ax.grid(axis="x", which="both", alpha=0.25)
        ax.legend(handles=legend, loc="lower right", fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "throughput.png"), dpi=110)
        plt.close(fig)
        made.append(("throughput.png", "Throughput per endpoint beside its ceiling"))

    # 2. latency percentiles
    lat = [f for f in figs if f["result"] != "skipped" and (f["p50_ms"] or f["p99_ms"])]
    if lat:
        fig, ax = plt.subplots(figsize=(11, 0.5 * len(lat) + 1.6))
        y = list(range(len(lat)))[::-1]
        h = 0.38
        tiny = 0.001
        ax.barh([v + h / 2 for v in y], [max(f["p50_ms"] or tiny, tiny) for f in lat], h,
                color=[color(f) for f in lat], alpha=0.45)
        ax.barh([v - h / 2 for v in y], [max(f["p99_ms"] or tiny, tiny) for f in lat], h, color=[color(f) for f in lat])
        for v, f in zip(y, lat):
            ax.text(max(f["p99_ms"] or tiny, tiny) * 1.08, v - h / 2, f"p99 {fmt_ms(f['p99_ms'])}", va="center", fontsize=7)
            ax.text(max(f["p50_ms"] or tiny, tiny) * 1.08, v + h / 2, f"p50 {fmt_ms(f['p50_ms'])}", va="center",
                    fontsize=7, color="#455a64")
            t = (f["target"] or {}).get("max_p99_ms")
            if t:
                ax.plot([t, t], [v - h, v + h], color="black", lw=2)
        ax.set_yticks(y, [f["name"] for f in lat], fontsize=8)
        ax.set_xscale("log")
        vals = [x for f in lat for x in (f["p50_ms"], f["p99_ms"]) if x]
        ax.set_xlim(min(vals) / 2, max(vals + [1]) * 8)
        ax.set_xlabel("milliseconds, log scale (pale: p50, solid: p99; black tick: the p99 target)")
        ax.set_title("Latency percentiles per figure")
        ax.grid(axis="x", which="both", alpha=0.25)
        ax.legend(handles=legend[:3] + [Patch(color=BLUE, label="ceiling")], loc="lower right", fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "latency.png"), dpi=110)
        plt.close(fig)
        made.append(("latency.png", "Latency p50 / p99 per figure"))

    # 3. ratio against the target
    rt = [f for f in figs if f["kind"] == "endpoint" and f["ratio"] is not None]
    if rt:
        fig, ax = plt.subplots(figsize=(11, 0.45 * len(rt) + 1.6))
        y = list(range(len(rt)))[::-1]
        ax.barh(y, [f["ratio"] for f in rt], 0.6, color=[color(f) for f in rt])
        for v, f in zip(y, rt):
            t = (f["target"] or {}).get("min_ratio")
            if t is not None:
                ax.plot([t, t], [v - 0.38, v + 0.38], color="black", lw=2)
            ax.text(max(f["ratio"], t or 0) + 0.02, v, f"{f['ratio']:.2f}" + (f" / {t:.2f}" if t is not None else " (info)")
                    + f"  of {f['ceiling_name']}", va="center", fontsize=7.5)
        ax.set_yticks(y, [f["name"] for f in rt], fontsize=8)
        ax.set_xlim(0, max([1.0] + [f["ratio"] for f in rt]) * 1.45)
        ax.set_xlabel("ratio to its ceiling (black tick: the target)")
        ax.set_title("Each endpoint as a share of its ceiling")
        ax.grid(axis="x", alpha=0.25)
        ax.legend(handles=legend[:3], loc="lower right", fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "ratio.png"), dpi=110)
        plt.close(fig)
        made.append(("ratio.png", "Ratio to the ceiling against the target"))
    return made


# --- report.md --------------------------------------------------------------------------------
def markdown(meta, figs, c, made, note_list):
    la0 = " ".join(meta.get("loadavg_before") or [])
    la1 = " ".join(meta.get("loadavg_after") or [])
    tools = meta.get("tools") or {}
    dirty = meta.get("git_dirty_files", 0)
    facts = [
        ("date", meta.get("date", "")),
        ("host", meta.get("host", "")),
        ("CPUs", f"{meta.get('cpus', '?')} ({meta.get('cpu_model', '')})"),
        ("memory", meta.get("memory", "")),
        ("kernel", meta.get("kernel", "")),
        ("load average before (1, 5, 15 min)", la0),
        ("load average after", la1),
        ("git commit", f"`{meta.get('git_commit', '')}` ({meta.get('git_describe', '')}"
                       + (f", {dirty} files changed" if dirty else "") + ")"),
        ("server", f"{meta.get('base', '')}" + ("" if meta.get("server_healthy") else " (not answering: ceilings only)")),
        ("duration per figure", f"{meta.get('duration_s', '?')} s, warm-up {meta.get('warmup_s', '?')} s"),
        ("load generators", f"wrk -t{meta.get('threads')} -c{meta.get('conns')} (users, health, sale) / "
                            f"-c{meta.get('conns_hi')} (cache, presence) --latency; pgbench -c{meta.get('conns')} "
                            f"-j{meta.get('threads')} via {meta.get('pg', '')}; redis-benchmark on {meta.get('redis', '')}"),
        ("tools", "; ".join(f"{k}: {v}" for k, v in tools.items() if v)),
        ("families", " ".join(meta.get("families") or [])),
        ("settings", ", ".join(f"{k}={v}" for k, v in (meta.get("settings") or {}).items())),
    ]
    L = [f"# shardgate bench {meta.get('stamp', '')}", ""]
    L.append(f"**{c['met']} met, {c['missed']} missed**, {c['info']} info, {c['ceiling']} ceilings, "
             f"{c['skipped']} skipped.")
    missed = [f for f in figs if f["result"] == "missed"]
    if missed:
        L.append("")
        L.append("Missed: " + "; ".join(f"{f['name']} ({', '.join(f['why'])})" for f in missed) + ".")
    L += ["", "## Machine", "", "| | |", "|---|---|"]
    L += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in facts]
    try:
        if float((meta.get("loadavg_before") or ["0"])[0]) > 0.5:
            L += ["", f"> The load average was {la0.split()[0]} before the run: other work shared these "
                      f"{meta.get('cpus', '?')} cores, and every figure (ceilings included) is lower and noisier for it."]
    except ValueError:
        pass
    L += ["", "## Figures", "",
          "Rates are per second (pgbench: transactions; memory: MiB). The ratio is the figure's rate over "
          "its ceiling's, both measured in this run on this machine; the target is its issue's.", "",
          md_table(figs), ""]
    if note_list:
        L += ["### Notes", ""] + [f"- **{n}**: {t}" for n, t in note_list] + [""]
    L += ["## Charts", ""]
    if made:
        for fn, title in made:
            L += [f"### {title}", "", f"![{title}]({fn})", ""]
    else:
        L += ["No charts: matplotlib is not installed for the Python that made this report "
              "(`.venv/bin/pip install -q matplotlib`, then `loadtest/report.py <this folder>`).", ""]
    L += ["## How each figure was measured", ""]
    for f in figs:
        if f.get("tool"):
            L.append(f"- {f['name']}: `{f['tool']}`")
    L += ["", "Raw output of every tool: `raw.log`. Every figure, machine-readable: `bench.json`. "
              "Compare two runs: `loadtest/compare.py <run A> <run B>`.", ""]
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="a bench run folder (loadtest/results/bench-<timestamp>)")
    ap.add_argument("--quiet", action="store_true", help="do not print the table")
    ap.add_argument("--no-charts", action="store_true", help="do not draw the PNG charts")
    a = ap.parse_args()
    folder = a.folder.rstrip("/")
    if os.path.isfile(folder):
        folder = os.path.dirname(folder) or "."
    meta, raw = load(folder)
    figs = evaluate(raw)
    # Ceilings first, then the families in bench.sh's order (stable within a family).
    order = {k: i for i, k in enumerate(FAMILY_ORDER)}
    figs.sort(key=lambda f: order.get(f["family"], len(order)))
    c = counts(figs)
    note_list = notes(figs)

    made = [] if a.no_charts else charts(folder, figs)
    for fn in ("throughput.png", "latency.png", "ratio.png"):
        if fn not in [m[0] for m in made] and os.path.exists(os.path.join(folder, fn)) and not a.no_charts:
            os.remove(os.path.join(folder, fn))  # a stale chart of an earlier report of this folder

    keep = ("id", "name", "family", "kind", "conns", "rate", "unit", "p50_ms", "p90_ms", "p99_ms", "errors",
            "ceiling", "ceiling_name", "ceiling_value", "ratio", "target", "target_text", "met", "result", "why",
            "also", "extra", "tool", "note", "skipped")
    doc = {"schema": SCHEMA, "meta": meta, "counts": c,
           "figures": [{k: f.get(k) for k in keep} for f in figs],
           "charts": [m[0] for m in made]}
    with open(os.path.join(folder, "bench.json"), "w") as fh:
        json.dump(doc, fh, indent=1)
    with open(os.path.join(folder, "report.md"), "w") as fh:
        fh.write(markdown(meta, figs, c, made, note_list))

    if not a.quiet:
        print(header(meta))
        print()
        print(text_table(figs))
        print()
        if note_list:
            print("notes:")
            for n, t in note_list:
                print(f"  {n}: {t}")
            print()
        print(f"met {c['met']}  MISSED {c['missed']}  info {c['info']}  ceilings {c['ceiling']}  skipped {c['skipped']}")
    return 1 if c["missed"] else 0


if __name__ == "__main__":
    sys.exit(main())
