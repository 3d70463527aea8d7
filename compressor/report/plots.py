"""The report's figures as PNG bytes: metric vs size / latency with the Pareto front, training curves.

Drawn with matplotlib's Agg canvas through ``matplotlib.figure.Figure`` (no pyplot, no global
backend, no display needed). One set of functions serves a single run and a comparison of runs:
a *point* is one artifact of one run.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from compressor.core.rundir import atomic_write_bytes
from compressor.report.common import bench_devices, bench_shapes, eval_split, metric_value, p50
from compressor.report.document import Figures, Section
from compressor.report.health import class_names

log = logging.getLogger("compressor")
FIGURES = ("size", "latency", "training", "confusion", "generation")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass
class Point:
    run: str
    artifact: str
    size_mb: float
    latency_ms: float | None
    metric: float | None
    ci: tuple[float, float] | None = None  # 95 % interval of the metric, when recorded

    @property
    def label(self) -> str:
        return f"{self.run}/{self.artifact}" if self.run else self.artifact


def pareto_front(xs: list[float], ys: list[float], higher_is_better: bool = True) -> list[int]:
    """Indices of the points no other point dominates, ordered by x (smaller x is better).

    A point is dominated when another is at least as good on both axes and better on one.
    Ties (same x and y) are all kept.
    """

    def better_eq(a: float, b: float) -> bool:
        return a >= b if higher_is_better else a <= b

    def better(a: float, b: float) -> bool:
        return a > b if higher_is_better else a < b

    front = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        dominated = any(xs[j] <= x and better_eq(ys[j], y) and (xs[j] < x or better(ys[j], y)) for j in range(len(xs)) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (xs[i], -ys[i] if higher_is_better else ys[i]))


def latency_shape(results: dict) -> tuple[int, int, str] | None:
    """(batch, seq, device) the latency plot uses: the first shape on the first device, as the speed-up column."""
    shapes, devices = bench_shapes(results), bench_devices(results)
    return (*shapes[0], devices[0]) if shapes and devices else None


def points(results: dict, run: str = "", shape: tuple[int, int, str] | None = None) -> list[Point]:
    metric, split = results["primary_metric"]["name"], eval_split(results)
    shape = shape or latency_shape(results)
    out = []
    for name, a in results["artifacts"].items():
        m = metric_value(a, split, metric) if split else None
        ci = metric_value(a, split, f"{metric}_ci") if split else None
        lat = p50(a, *shape) if shape else None
        out.append(
            Point(
                run, name, a.get("size_bytes", 0) / 2**20, lat, m, tuple(ci) if ci and None not in ci and m is not None else None
            )
        )
    return out


def metric_label(results: dict) -> tuple[str, float]:
    """Axis label and the factor that turns the stored value into the shown one (accuracy in %)."""
    pm = results["primary_metric"]
    split = eval_split(results)
    where = f" ({split})" if split else ""
    if pm["name"] in ("accuracy", "f1_macro"):
        return f"{pm['name']}{where}, % (higher is better)", 100.0
    return f"{pm['name']}{where} ({'higher' if pm['higher_is_better'] else 'lower'} is better)", 1.0


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _new_figure(w: float, h: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained")
    return fig


def scatter_png(
    pts: list[Point], axis: str, ylabel: str, scale: float, higher_is_better: bool, title: str, xlabel: str | None = None
) -> bytes | None:
    """Metric against size (axis="size") or latency (axis="latency"), Pareto front drawn and circled."""
    xs_all = [p.size_mb if axis == "size" else p.latency_ms for p in pts]
    keep = [i for i, p in enumerate(pts) if xs_all[i] is not None and p.metric is not None]
    if not keep:
        return None
    pts = [pts[i] for i in keep]
    xs = [float(xs_all[i]) for i in keep]
    ys = [float(p.metric) * scale for p in pts]
    fig = _new_figure(6.4, 4.4)
    ax = fig.add_subplot()
    runs = list(dict.fromkeys(p.run for p in pts))
    arts = list(dict.fromkeys(p.artifact for p in pts))
    marker = {a: MARKERS[i % len(MARKERS)] for i, a in enumerate(arts)}
    several = len(runs) > 1
    # one run: colour by artifact and label every point; several: colour by run, marker by artifact
    color = {k: f"C{i % 10}" for i, k in enumerate(runs if several else arts)}
    for p, x, y in zip(pts, xs, ys):
        c = color[p.run if several else p.artifact]
        if p.ci is not None:  # the 95 % interval as an error bar
            ax.errorbar(
                [x],
                [y],
                yerr=[[max(0.0, y - p.ci[0] * scale)], [max(0.0, p.ci[1] * scale - y)]],
                fmt="none",
                ecolor=c,
                elinewidth=1.1,
                capsize=3,
                alpha=0.8,
                zorder=2,
            )
        ax.scatter([x], [y], s=46, color=c, marker=marker[p.artifact], zorder=3, alpha=0.9)
    front = pareto_front(xs, ys, higher_is_better)
    fx, fy = [xs[i] for i in front], [ys[i] for i in front]
    ax.scatter(fx, fy, s=170, facecolors="none", edgecolors="black", linewidths=1.3, zorder=4, label="Pareto front")
    if len(front) > 1:
        ax.step(fx, fy, where="post", color="black", linestyle="--", linewidth=1, zorder=2)
    log_x = min(xs) > 0 and max(xs) / min(xs) > 20  # e.g. 0.4 ms next to 175 ms: a linear axis squashes the small ones
    vx = [math.log10(x) for x in xs] if log_x else xs  # where the points sit visually, for placing labels
    shown = range(len(pts)) if not several else front  # several runs: label the front only, the legend says the rest
    groups = _label_groups([vx[i] for i in shown], [ys[i] for i in shown], [i for i in shown])
    for k, ((x, y), members) in enumerate(groups):
        crowd = sum(1 for (gx, gy), _ in groups[:k] if abs(gy - y) <= 0.06 * _span(ys) and abs(gx - x) <= 0.3 * _span(vx))
        ax.annotate(
            ", ".join(pts[i].label for i in members),
            (xs[members[0]], y),
            textcoords="offset points",
            xytext=(7, 6 - 13 * crowd),
            fontsize=8.5,
        )
    if several:
        for r in runs:
            ax.scatter([], [], color=color[r], marker="o", label=r)
        for a in arts:
            ax.scatter([], [], color="grey", marker=marker[a], label=a)
    ax.legend(loc="best", fontsize=8.5, frameon=False)
    ax.set_xlabel(xlabel or ("size on disk, MiB" if axis == "size" else "p50 latency, ms"))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    if log_x:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlim(min(xs) / 1.6, max(xs) * 2.2)
        ax.set_xlabel(ax.get_xlabel() + " (log scale)")
    else:
        ax.set_xlim(left=0, right=max(xs) * 1.25 if max(xs) > 0 else 1)
    ax.set_ylim(*metric_limits(pts, scale))
    if any(p.ci for p in pts):
        ax.text(
            0.99, 0.01, "bars: 95 % intervals", transform=ax.transAxes, ha="right", va="bottom", fontsize=7.5, color="dimgray"
        )
    return _png(fig)


def metric_limits(pts: list[Point], scale: float) -> tuple[float, float]:
    """The metric axis spans every point and every 95 % interval (plus a margin): never zoomed so far that a
    noise-sized difference looks like a gap."""
    ys = [float(p.metric) * scale for p in pts if p.metric is not None]
    lo = min(ys + [p.ci[0] * scale for p in pts if p.ci])
    hi = max(ys + [p.ci[1] * scale for p in pts if p.ci])
    pad = (hi - lo) * 0.15 or max(abs(hi) * 0.02, 0.5)
    return lo - pad, hi + pad


def _span(values: list[float]) -> float:
    return (max(values) - min(values)) or abs(max(values)) or 1.0


def _label_groups(xs: list[float], ys: list[float], labels: list) -> list[tuple[tuple[float, float], list]]:
    """Points that would overprint each other (within ~2 % of the axis spans) share one label."""
    if not xs:
        return []
    dx, dy = _span(xs), _span(ys)
    groups: list[tuple[tuple[float, float], list]] = []
    for x, y, lbl in zip(xs, ys, labels):
        for (gx, gy), names in groups:
            if abs(gx - x) <= 0.02 * dx and abs(gy - y) <= 0.03 * dy:
                names.append(lbl)
                break
        else:
            groups.append(((x, y), [lbl]))
    return groups


def stage_curves(results: dict, run: str = "") -> list[tuple[str, list[dict]]]:
    """(label, history) per stage that trained, labels unique within the run."""
    stages = [s for s in results.get("stages", []) if s.get("history")]
    kinds = [s["stage"] for s in stages]
    out = []
    for i, s in enumerate(stages):
        label = s["stage"] if kinds.count(s["stage"]) == 1 else f"{s['stage']} #{i + 1}"
        out.append((f"{run}: {label}" if run else label, s["history"]))
    return out


def training_png(curves: list[tuple[str, list[dict]]], metric: str, scale: float, ylabel: str) -> bytes | None:
    """Training loss, the dev metric and (gradual pruning) the sparsity against the optimizer step, one line per stage."""
    loss = [(lbl, [(h["step"], h["loss"]) for h in hist if "loss" in h]) for lbl, hist in curves]
    dev = [(lbl, [(h["step"], h["eval"][metric] * scale) for h in hist if metric in h.get("eval", {})]) for lbl, hist in curves]
    sparsity = [(lbl, [(h["step"], 100 * h["sparsity"]) for h in hist if "sparsity" in h]) for lbl, hist in curves]
    loss = [(lbl, v) for lbl, v in loss if v]
    dev = [(lbl, v) for lbl, v in dev if v]
    sparsity = [(lbl, v) for lbl, v in sparsity if v]
    panels = [
        p
        for p in (
            ("training loss", loss, "loss"),
            (f"dev {metric}", dev, ylabel),
            ("sparsity of the pruned layers", sparsity, "zeros, %"),
        )
        if p[1]
    ]
    if not panels:
        return None
    fig = _new_figure(5.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    labels = list(dict.fromkeys(lbl for lbl, _ in curves))
    for ax, (title, series, yl) in zip(axes, panels):
        for lbl, pts in series:
            steps, vals = zip(*pts)
            ax.plot(steps, vals, marker="o", markersize=3.5, linewidth=1.4, color=f"C{labels.index(lbl) % 10}", label=lbl)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("step")
        ax.set_ylabel(yl)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8.5, frameon=False)
    return _png(fig)


def figures_for(runs: list[tuple[str, dict]], shape: tuple[int, int, str] | None = None) -> dict[str, bytes]:
    """Figures for one run (``[("", results)]``) or several (``[(label, results), ...]``).

    A figure that has nothing to show (no benchmark, no training) is left out. The metric
    conventions (name, direction, scale) are the first run's; callers check that runs agree.
    """
    first = runs[0][1]
    pm = first["primary_metric"]
    ylabel, scale = metric_label(first)
    metric = pm["name"]
    shape = shape or latency_shape(first)
    pts = [p for label, res in runs for p in points(res, label, shape)]
    split = eval_split(first)
    out: dict[str, bytes | None] = {}
    out["size"] = scatter_png(pts, "size", ylabel, scale, pm["higher_is_better"], f"{metric} ({split}) vs size")
    lat_title = f"{metric} ({split}) vs latency" + (f", batch {shape[0]} × seq {shape[1]} on {shape[2]}" if shape else "")
    out["latency"] = scatter_png(pts, "latency", ylabel, scale, pm["higher_is_better"], lat_title)
    curves = [c for label, res in runs for c in stage_curves(res, label)]
    out["training"] = training_png(curves, metric, scale, ylabel)
    return {k: v for k, v in out.items() if v is not None}


def confusion_png(results: dict) -> bytes | None:
    """The confusion matrices (row-normalised) of the baseline, the PyTorch model and the INT8 graph, side by side."""
    split = eval_split(results)
    if not split or results["task"] != "sequence-classification":
        return None
    arts = results["artifacts"]
    shown = [a for a in ("baseline", "pytorch", "int8") if "confusion" in arts.get(a, {}).get("metrics", {}).get(split, {})]
    if not shown:
        return None
    import numpy as np

    n = len(arts[shown[0]]["metrics"][split]["confusion"])
    names = class_names(results, n)
    side = 1.2 + 0.45 * n
    fig = _new_figure(max(3.2, side) * len(shown), max(3.0, side))
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, a in zip(axes, shown):
        cm = np.asarray(arts[a]["metrics"][split]["confusion"], dtype=float)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    ax.text(
                        j,
                        i,
                        f"{int(cm[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
        ax.set_xticks(range(n), names if n <= 20 else [], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), names if n <= 20 else [], fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{a} ({split})", fontsize=10)
    return _png(fig)


def generation_png(results: dict) -> bytes | None:
    """Perplexity against decode time per token (batch 1, or the smallest batch timed) of a causal-LM run, one point
    per artifact with generation rows (``bench.generation``), the Pareto front circled."""
    split = eval_split(results)
    if not split or results["task"] != "causal-lm":
        return None
    pts = []
    for name, a in results["artifacts"].items():
        rows = sorted(a.get("generation") or [], key=lambda r: r["batch"])
        ppl = metric_value(a, split, "perplexity")
        if rows and ppl is not None and rows[0].get("decode_ms_per_token"):
            ci = metric_value(a, split, "perplexity_ci")
            pts.append(
                Point(
                    "",
                    name,
                    a.get("size_bytes", 0) / 2**20,
                    rows[0]["decode_ms_per_token"],
                    ppl,
                    tuple(ci) if ci and None not in ci else None,
                )
            )
    if not pts:
        return None
    batch = min(r["batch"] for a in results["artifacts"].values() for r in a.get("generation") or [])
    return scatter_png(
        pts,
        "latency",
        f"perplexity ({split}, lower is better)",
        1.0,
        False,
        f"perplexity ({split}) vs decode speed, batch {batch}",
        xlabel="decode ms per token",
    )


def run_figures(results: dict) -> dict[str, bytes]:
    """The figures of one run; a figure that fails to draw is left out with a warning (the report still gets written)."""
    figures: dict[str, bytes] = {}
    for name, draw in (
        ("", lambda: figures_for([("", results)])),
        ("confusion", lambda: confusion_png(results)),
        ("generation", lambda: generation_png(results)),
    ):
        try:
            got = draw()
        except Exception as e:  # a plotting problem must not fail a finished run
            log.warning("report plots left out: %s: %s", type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            continue
        if name and got:
            figures[name] = got
        elif not name:
            figures.update(got)
    return figures


def write_figures(out_dir: Path, prefix: str, figures: dict[str, bytes]) -> dict[str, str]:
    """Write ``<prefix>_<name>.png`` files; remove stale ones from an earlier report. Returns name -> file name."""
    out_dir = Path(out_dir)
    files = {}
    for name in FIGURES:
        path = out_dir / f"{prefix}_{name}.png"
        if name in figures:
            atomic_write_bytes(path, figures[name])
            files[name] = path.name
        else:
            path.unlink(missing_ok=True)
    return files


def pareto_note(results: dict) -> str:
    pm = results["primary_metric"]
    better = "more accurate" if pm["higher_is_better"] else f"lower in {pm['name']}"
    return f"Circled points are on the Pareto front: no other artifact is both smaller (or faster) and {better}."


def plots_section(results: dict) -> Section:
    """Metric vs size and latency (Pareto front circled), then the training curves; a renderer shows those it has."""
    return Section("Plots", blocks=[Figures(["size", "latency", "training"], pareto_note(results), ("size", "latency"))])
