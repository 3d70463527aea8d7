"""``compressor compare RUN_DIR...``: several runs in one table and on one set of plots.

Each run's rows come from ``table_rows`` (so Δ and speed-up stay relative to that run's own
PyTorch model), with a ``run`` column in front. Runs measured on different machines are
flagged (their latencies are not comparable); runs whose ``status`` is not ``complete`` are
refused unless ``allow_incomplete``, and then flagged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from compressor.core.errors import CompressorError, RunDirError
from compressor.core.records import read_metrics
from compressor.core.rundir import atomic_write_json, atomic_write_text, describe_status, ensure_replaceable, read_status
from compressor.report.common import PLOT_TITLES, bench_devices, bench_shapes, md_table, p50
from compressor.report.variants import table_rows

HARDWARE_KEYS = ("cpu", "cores", "gpu")
VERSION_KEYS = ("torch", "transformers", "onnxruntime")


@dataclass
class Run:
    path: Path
    label: str
    status: str
    results: dict

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def hardware(self) -> tuple:
        fp = self.results.get("fingerprint", {})
        return tuple(fp.get(k) for k in HARDWARE_KEYS)


@dataclass
class Comparison:
    runs: list[Run]
    head: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    shape: tuple | None = None


def load_run(path: Path | str, allow_incomplete: bool = False) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run directory")
    status = read_status(path)
    metrics = path / "metrics.json"
    if not metrics.is_file():
        raise RunDirError(f"{path}: no metrics.json (status: {describe_status(path)}); nothing to compare")
    if status != "complete" and not allow_incomplete:
        raise RunDirError(
            f"{path}: run is not complete (status: {describe_status(path)}); pass --allow-incomplete to include it anyway"
        )
    return Run(path, path.name, status, read_metrics(metrics))


def load_runs(paths: list[Path | str], allow_incomplete: bool = False) -> list[Run]:
    if not paths:
        raise CompressorError("give at least one run directory")
    seen, runs = set(), []
    for p in paths:
        key = Path(p).resolve()
        if key not in seen:
            seen.add(key)
            runs.append(load_run(p, allow_incomplete))
    _unique_labels(runs)
    metrics = {(r.results["primary_metric"]["name"], r.results["primary_metric"].get("higher_is_better")) for r in runs}
    if len(metrics) > 1:
        which = ", ".join(f"{r.label}: {r.results['primary_metric']['name']}" for r in runs)
        raise CompressorError(f"runs measure different metrics ({which}); compare runs of the same task")
    return runs


def _unique_labels(runs: list[Run]) -> None:
    names = [r.path.name for r in runs]
    for r in runs:
        if names.count(r.path.name) > 1:
            r.label = f"{r.path.resolve().parent.name}/{r.path.name}"
    labels = [r.label for r in runs]
    for i, r in enumerate(runs):
        if labels.count(r.label) > 1:
            r.label = f"{r.label}#{i + 1}"


def _describe(hw: tuple) -> str:
    cpu, cores, gpu = hw
    return f"{cpu or '?'}, {cores or '?'} cores, " + (f"GPU {gpu}" if gpu else "no GPU")


def notes_for(runs: list[Run]) -> tuple[list[str], dict[str, str]]:
    """Warnings (different hardware / versions, incomplete runs) and run label -> machine letter (when they differ)."""
    notes: list[str] = []
    machines: dict[tuple, list[str]] = {}
    for r in runs:
        machines.setdefault(r.hardware, []).append(r.label)
    letters: dict[str, str] = {}
    if len(machines) > 1:
        parts = []
        for i, (hw, labels) in enumerate(machines.items()):
            letter = chr(ord("A") + i) if i < 26 else str(i + 1)
            parts.append(f"{letter} = {_describe(hw)} ({', '.join(labels)})")
            letters.update({lbl: letter for lbl in labels})
        notes.append("different hardware: latencies and speed-ups are not comparable across machines: " + "; ".join(parts))
    for key in VERSION_KEYS:
        versions = {r.results.get("fingerprint", {}).get(key) for r in runs}
        if len(versions) > 1:
            notes.append(
                f"different {key} versions: " + ", ".join(f"{r.label} {r.results.get('fingerprint', {}).get(key)}" for r in runs)
            )
    for r in runs:
        if not r.complete:
            notes.append(f"{r.label} is not complete (status: {r.status}); its numbers may be partial")
    return notes, letters


def merged_table(runs: list[Run], machines: dict[str, str] | None = None) -> tuple[list[str], list[list[str]]]:
    """One table: a ``run`` column, then the union of the runs' columns (blank where a run has none)."""
    machines = machines or {}
    head: list[str] = []
    records: list[tuple[Run, dict[str, str]]] = []
    for r in runs:
        h, rows = table_rows(r.results)
        head += [c for c in h if c not in head]
        records += [(r, dict(zip(h, row))) for row in rows]
    front = ["run"] + (["machine"] if machines else [])
    out = []
    for r, rec in records:
        name = r.label if r.complete else f"{r.label} (incomplete)"
        out.append([name] + ([machines.get(r.label, "")] if machines else []) + [rec.get(c, "") for c in head])
    return front + head, out


def common_shape(runs: list[Run]) -> tuple[int, int, str] | None:
    """The first (batch, seq, device) of the first run that every run has measured."""
    first = runs[0].results
    candidates = [(b, s, d) for d in bench_devices(first) for b, s in bench_shapes(first)]
    for shape in candidates:
        if all(any(p50(a, *shape) is not None for a in r.results["artifacts"].values()) for r in runs):
            return shape
    return candidates[0] if candidates else None


def compare(paths: list[Path | str], out_dir: Path | str, allow_incomplete: bool = False) -> Comparison:
    """Load the runs, write compare.md / compare.html / compare.json and the plots into ``out_dir``."""
    from compressor.report.plots import FIGURES

    ensure_replaceable(Path(out_dir), ("compare.json",), "an earlier compare output", "choose another -o folder")
    runs = load_runs(paths, allow_incomplete)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"{out_dir}: exists and is not a directory")
    try:  # everything is rendered before anything is written: a malformed metrics.json leaves out_dir as it was
        cmp, figures = _render(runs)
        names = {k: f"compare_{k}.png" for k in FIGURES if k in figures}
        md, html = render_markdown(cmp, names), render_html(cmp, figures)
    except MALFORMED as e:
        raise _malformed(runs, e) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    from compressor.report.plots import write_figures

    files = write_figures(out_dir, "compare", figures)
    atomic_write_text(out_dir / "compare.md", md)
    atomic_write_text(out_dir / "compare.html", html)
    atomic_write_json(
        out_dir / "compare.json",
        {
            "runs": [
                {
                    "label": r.label,
                    "path": str(r.path.resolve()),
                    "status": r.status,
                    "name": r.results.get("name"),
                    "fingerprint": r.results.get("fingerprint", {}),
                }
                for r in runs
            ],
            "primary_metric": runs[0].results["primary_metric"],
            "latency_shape": cmp.shape,
            "notes": cmp.notes,
            "head": cmp.head,
            "rows": cmp.rows,
        },
    )
    cmp.files = {
        "md": out_dir / "compare.md",
        "html": out_dir / "compare.html",
        "json": out_dir / "compare.json",
        **{k: out_dir / v for k, v in files.items()},
    }
    return cmp


# what report code raises when a metrics.json holds the wrong type somewhere (it trusts the files it reads)
MALFORMED = (TypeError, KeyError, AttributeError, ValueError, IndexError, ZeroDivisionError)


def _render(runs: list[Run]) -> tuple[Comparison, dict[str, bytes]]:
    from compressor.report.plots import figures_for

    notes, machines = notes_for(runs)
    head, rows = merged_table(runs, machines)
    shape = common_shape(runs)
    figures = figures_for([(r.label, r.results) for r in runs], shape)
    cmp = Comparison(runs, head, rows, notes, shape=shape)
    json.dumps({"notes": notes, "head": head, "rows": rows, "shape": shape})  # what compare.json will hold
    return cmp, figures


def _malformed(runs: list[Run], error: Exception) -> RunDirError:
    """A one-line error naming the metrics.json that cannot be rendered (each run is tried alone to find it)."""
    why = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    for r in runs:
        try:
            cmp, figures = _render([r])
            render_markdown(cmp, {}), render_html(cmp, figures)
        except MALFORMED as e:
            why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            return RunDirError(f"{r.path / 'metrics.json'}: malformed metrics file, a value has the wrong type ({why})")
    return RunDirError(f"the runs' metrics.json files cannot be put side by side ({why})")


RELATIVE = "Δ and speed-up are relative to each run's own PyTorch model, measured in that run."


def _runs_table(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    head = ["run", "status", "model", "task", "seed", "stages", "machine", "path"]
    rows = [
        [
            r.label,
            r.status,
            str(r.results.get("model", "")),
            str(r.results.get("task", "")),
            str(r.results.get("seed", "")),
            " → ".join(s["stage"] for s in r.results.get("stages", [])) or "none",
            _describe(r.hardware),
            str(r.path),
        ]
        for r in cmp.runs
    ]
    return head, rows


def render_markdown(cmp: Comparison, plots: dict[str, str]) -> str:
    metric = cmp.runs[0].results["primary_metric"]["name"]
    out = [f"# compressor compare: {', '.join(r.label for r in cmp.runs)}", ""]
    out += [f"> **warning:** {n}" for n in cmp.notes] + ([""] if cmp.notes else [])
    out += ["## Variants", "", md_table(cmp.head, cmp.rows), "", RELATIVE]
    if plots:
        out += ["", "## Plots", ""] + [f"![{PLOT_TITLES.get(k, k).format(metric=metric)}]({f})" for k, f in plots.items()]
        out += ["", "Circled points are on the Pareto front over all runs."]
    out += ["", "## Runs", "", md_table(*_runs_table(cmp))]
    return "\n".join(out) + "\n"


def render_html(cmp: Comparison, figures: dict[str, bytes]) -> str:
    from compressor.report.html import figures_html, page, table_html

    metric = cmp.runs[0].results["primary_metric"]["name"]
    title = f"compressor compare: {', '.join(r.label for r in cmp.runs)}"
    body = [f"<h1>{escape(title)}</h1>"]
    body += [f'<div class="warn"><b>warning:</b> {escape(n)}</div>' for n in cmp.notes]
    body += ["<h2>Variants</h2>", table_html(cmp.head, cmp.rows), f'<p class="note">{escape(RELATIVE)}</p>']
    if figures:
        body += ["<h2>Plots</h2>", figures_html(figures, metric, "Circled points are on the Pareto front over all runs.")]
    body += ["<h2>Runs</h2>", table_html(*_runs_table(cmp))]
    return page(title, body)
