"""Tables for an 80-column terminal: few columns, short headers with a legend, never a cell cut short.

The run's end table and ``compressor bench`` print a summary here; the full tables stay in report.md /
metrics.json / the --json file. A table wider than the terminal is printed vertically (one block of
"header: value" lines per row) instead of being truncated.
"""

from __future__ import annotations

import shutil

from compressor.core.stats import ratio_verdict
from compressor.report.common import bench_devices, bench_shapes, delta_cell, eval_split, p50, reference, speedup

GAP = "  "


def terminal_width(default: int = 80) -> int:
    return max(40, shutil.get_terminal_size((default, 24)).columns)


TEXT_COLUMNS = ("run", "artifact", "#", "runtime")  # left-aligned; every other column holds numbers or verdicts


def render(head: list[str], rows: list[list[str]], width: int = 80) -> str:
    """A plain table (text columns left-aligned, the rest right-aligned) if it fits in ``width``, else a vertical layout."""
    right = {i for i, h in enumerate(head) if h not in TEXT_COLUMNS}
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    if sum(widths) + len(GAP) * (len(head) - 1) <= width:

        def line(cells: list[str]) -> str:
            return GAP.join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        return "\n".join([line(head), GAP.join("-" * w for w in widths), *(line(r) for r in rows)])
    key = max(len(h) for h in head)
    blocks = []
    for r in rows:
        blocks.append("\n".join(f"{h.rjust(key)}: {c}" for h, c in zip(head, r) if c))
    return "\n\n".join(blocks)


def _ci(m: dict, metric: str) -> str:
    ci = m.get(f"{metric}_ci")
    if not ci or None in ci:
        return ""
    return f"{ci[0] * 100:.1f}–{ci[1] * 100:.1f}" if metric == "accuracy" else f"{ci[0]:.2f}–{ci[1]:.2f}"


def run_summary(results: dict) -> tuple[list[str], list[list[str]], list[str]]:
    """(head, rows, legend lines) of the run's end table: metric with interval, Δ, size, first latency, speed-up."""
    metric = results["primary_metric"]["name"]
    arts, split, ref = results["artifacts"], eval_split(results), reference(results)
    shapes, devices = bench_shapes(results), bench_devices(results)
    short = "acc %" if metric == "accuracy" else metric[:4]
    base_m = arts.get(ref, {}).get("metrics", {}).get(split, {}) if split else {}
    head = ["artifact", short, "95% CI", "Δ", "MiB"]
    timed = bool(shapes and devices)
    if timed:
        head += ["ms", "speed-up"]
    rows, withheld = [], []
    for name, a in arts.items():
        m = a.get("metrics", {}).get(split, {}) if split else {}
        v = m.get(metric)
        row = [
            name,
            "" if v is None else (f"{v * 100:.2f}" if metric == "accuracy" else f"{v:.3f}"),
            _ci(m, metric),
            "" if name == ref else delta_cell(m, base_m, metric, long=False),
            f"{a['size_bytes'] / 2**20:.1f}",
        ]
        if timed:
            ms = p50(a, *shapes[0], devices[0])
            cell = ""
            if name == ref:
                cell = "ref"
            elif ms is not None:
                verdict = speedup(results, name, shapes[0], devices[0])
                cell = verdict.cell().split(",")[0]
                if not verdict.claimed and verdict.rounds:
                    withheld.append(f"{name} speed-up: {verdict.cell()} ({verdict.explain()})")
            row += ["" if ms is None else f"{ms:.2f}", cell]
        rows.append(row)
    what = "accuracy, %" if metric == "accuracy" else metric
    legend = [
        f"{short}: {what} on {split or 'no split'} with its 95 % interval; Δ: against {ref}"
        + (" (ns: no significant change, paired test)" if any(" ns" in r[3] for r in rows) else "")
    ]
    if timed:
        (b, s), dev = shapes[0], devices[0]
        legend.append(
            f"MiB: size on disk (2^20 bytes); ms: median latency, batch {b} × seq {s} on {dev}; speed-up: {ref} ms / ms"
        )
    return head, rows, legend + withheld


def bench_summary(rows: list[dict], artifacts: list[str]) -> tuple[list[str], list[list[str]], list[str]]:
    """(head, rows, legend) of ``compressor bench``: artifacts numbered, ratios against the first one."""
    index = {a: i + 1 for i, a in enumerate(dict.fromkeys(artifacts))}
    first = {(r["batch"], r["seq"], r["device"]): r for r in rows if index[r["artifact"]] == 1}
    head = ["#", "runtime", "thr", "b×seq", "p50 ms", "rounds ms", "items/s", "vs #1"]
    out, withheld = [], []
    for r in rows:
        rounds = r.get("round_p50_ms") or [r["p50_ms"]]
        ref = first.get((r["batch"], r["seq"], r["device"]))
        cell = ""
        if index[r["artifact"]] == 1:
            cell = "ref"
        elif ref is not None:
            v = ratio_verdict(ref.get("round_p50_ms") or [ref["p50_ms"]], rounds)
            cell = v.cell().split(",")[0]
            if not v.claimed and v.rounds:
                withheld.append(f"#{index[r['artifact']]} at b{r['batch']}×{r['seq']}: {v.cell()} ({v.explain()})")
        runtime = "ort" if r["runtime"] == "onnxruntime" else r["runtime"]
        out.append(
            [
                f"#{index[r['artifact']]}",
                runtime + ("" if r["device"] == "cpu" else f"/{r['device']}"),
                str(r["threads"]),
                f"{r['batch']}×{r['seq']}",
                f"{r['p50_ms']:.2f}",
                f"{min(rounds):.2f}–{max(rounds):.2f}",
                f"{r['throughput_per_s']:.1f}",
                cell,
            ]
        )
    legend = [f"#{i} {a}" for a, i in index.items()]
    legend.append(
        "rounds ms: lowest–highest median of the interleaved rounds; vs #1: #1's time / this time, "
        "claimed only when the rounds agree (see README, 'When a speed-up is claimed')"
    )
    return head, out, legend + withheld


def compare_summary(head: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]], list[str]]:
    """The columns of ``compressor compare``'s merged table worth a terminal: run, artifact, metric, Δ, size, speed-up."""
    keep = [
        i
        for i, h in enumerate(head)
        if h in ("run", "machine", "artifact", "Δ", "size MiB")
        or "[95 % CI]" in h
        and not h.startswith("F1")
        or h.startswith("speed-up")
    ]
    legend = ["Δ and speed-up: against each run's own reference; the full table is in compare.md"]
    return [head[i] for i in keep], [[r[i] for i in keep] for r in rows], legend


def print_summary(title: str, head: list[str], rows: list[list[str]], legend: list[str], width: int | None = None) -> str:
    """Print (and return) the title, the table and the legend lines, fitted to ``width`` (default: the terminal)."""
    import textwrap

    width = width or terminal_width()
    notes = [textwrap.fill(line, width, subsequent_indent="  ", break_long_words=False) for line in legend]
    text = "\n".join([title, render(head, rows, width), *notes])
    print(text)
    return text
