"""report.md and the rich table printed at the end of a run."""

from __future__ import annotations

from pathlib import Path

from compressor.core.rundir import atomic_write_text


def _metric(rec: dict, split: str, name: str) -> float | None:
    return rec.get("metrics", {}).get(split, {}).get(name)


def _row(rec: dict, batch: int, seq: int, device: str = "cpu") -> dict | None:
    for r in rec.get("bench", []):
        if r["batch"] == batch and r["seq"] == seq and r["device"] == device:
            return r
    return None


def _p50(rec: dict, batch: int, seq: int, device: str = "cpu") -> float | None:
    r = _row(rec, batch, seq, device)
    return None if r is None else r["p50_ms"]


def _rounds(rec: dict, batch: int, seq: int, device: str = "cpu") -> list[float]:
    """Per-round median latencies (one value, the p50, for rows measured before rounds were recorded)."""
    r = _row(rec, batch, seq, device)
    return [] if r is None else list(r.get("round_p50_ms") or [r["p50_ms"]])


def speedup(results: dict, name: str, shape: tuple[int, int], device: str, ref: str | None = None):
    """The verdict on reference time / ``name``'s time at ``shape`` on ``device`` (``stats.ratio_verdict``)."""
    from compressor.core.stats import ratio_verdict

    arts = results["artifacts"]
    ref = ref or reference(results)
    return ratio_verdict(_rounds(arts.get(ref, {}), *shape, device), _rounds(arts.get(name, {}), *shape, device))


def metric_cell(m: dict, metric: str, with_ci: bool = True) -> str:
    """"87.50 % [85.1, 89.6]" (accuracy, %) or "12.345 [12.1, 12.6]" (perplexity); the interval when recorded."""
    v = m.get(metric)
    if v is None:
        return ""
    pct = metric in ("accuracy", "f1_macro")
    text = f"{v * 100:.2f} %" if pct else f"{v:.3f}"
    ci = m.get(f"{metric}_ci")
    if with_ci and ci and None not in ci:
        text += f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]" if pct else f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text


def delta_cell(m: dict, base_m: dict, metric: str, long: bool = True) -> str:
    """Δ against the reference, marked "n.s." (no significant change) when the paired test says so."""
    v, b = m.get(metric), base_m.get(metric)
    if v is None or b is None:
        return ""
    text = f"{(v - b) * (100 if metric == 'accuracy' else 1):+.2f}"
    paired = m.get("paired") or {}
    if "significant" not in paired:
        return text
    if long:
        p = f", p {paired['p_value']:.2g}" if "p_value" in paired else ""
        return text + (f" (n.s.{p})" if not paired["significant"] else (f" (p {paired['p_value']:.2g})" if p else " (sig.)"))
    return text + ("" if paired["significant"] else " ns")


def eval_split(results: dict) -> str | None:
    """The split the report compares artifacts on: dev, else test."""
    arts = results["artifacts"]
    return next((s for s in ("dev", "test") if any(s in a.get("metrics", {}) for a in arts.values())), None)


def bench_shapes(results: dict) -> list[tuple[int, int]]:
    bs = results.get("bench_settings", {})
    return [(b, s) for b in bs.get("batch_sizes", []) for s in bs.get("seq_lengths", [])]


def bench_devices(results: dict) -> list[str]:
    return sorted({r["device"] for a in results["artifacts"].values() for r in a.get("bench", [])})


def reference(results: dict) -> str:
    """The artifact Δ and speed-up refer to: the uncompressed baseline when the run kept one, else PyTorch fp32."""
    return "baseline" if "baseline" in results["artifacts"] else "pytorch"


def table_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """The variants table: one row per artifact, numbers formatted, intervals, Δ with its paired test and
    speed-ups (claimed or withheld, see ``stats.ratio_verdict``) relative to the reference (see ``reference``)."""
    metric = results["primary_metric"]["name"]
    arts = results["artifacts"]
    split = eval_split(results)
    shapes = bench_shapes(results)
    devices = bench_devices(results)
    ref = reference(results)
    base_m = arts.get(ref, {}).get("metrics", {}).get(split, {}) if split else {}
    head = ["artifact", (f"{metric} ({split})" if split else metric) + " [95 % CI]", "Δ",
            "F1 [95 % CI]" if metric == "accuracy" else "tokens", "params", "size MiB", "gzip MiB"]
    for dev in devices:
        head += [f"p50 ms {dev} b{b}×{s}" for b, s in shapes]
    if devices and shapes:
        head.append(f"speed-up b{shapes[0][0]}×{shapes[0][1]}")
    rows = []
    for name, a in arts.items():
        m = a.get("metrics", {}).get(split, {}) if split else {}
        other = (metric_cell(m, "f1_macro") if metric == "accuracy" else str(m.get("tokens", ""))) if m else ""
        row = [artifact_label(name, a), metric_cell(m, metric), "" if name == ref else delta_cell(m, base_m, metric), other,
               f"{a['params'] / 1e6:.2f} M", f"{a['size_bytes'] / 2**20:.1f}", f"{a['gzip_bytes'] / 2**20:.1f}"]
        for dev in devices:
            row += [("" if (v := _p50(a, b, s, dev)) is None else f"{v:.2f}") for b, s in shapes]
        if devices and shapes:
            row.append("reference" if name == ref else
                       ("" if _p50(a, *shapes[0], devices[0]) is None else speedup(results, name, shapes[0], devices[0]).cell()))
        rows.append(row)
    return head, rows


def artifact_label(name: str, rec: dict) -> str:
    from compressor.report.labels import artifact_label as label

    return label(name, rec)


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def stage_summaries(results: dict) -> list[tuple[str, float, list[str]]]:
    """(stage, seconds, [facts]) per stage: best dev metric, parity, fusions, exporter."""
    out = []
    for s in results.get("stages", []):
        extra = []
        if s.get("best_dev") is not None:
            sel = (s.get("selection") or {}).get("split", "dev")
            extra.append(f"best {sel} {results['primary_metric']['name']} {s['best_dev']:.4f} at step {s.get('best_step')} "
                         "(checkpoint selection)")
        if "parity" in s and s["parity"]:
            extra.append(f"parity max |diff| {s['parity']['max_abs_diff']:.2e}")
        if s.get("fusions"):
            extra.append("fusions " + ", ".join(f"{k}×{v}" for k, v in s["fusions"].items()))
        if s.get("cls_only_last_layer"):
            extra.append("last layer computed for [CLS] only (exact)")
        if s.get("exporter"):
            extra.append(f"exporter {s['exporter']} opset {s['opset']}")
        out.append((s["stage"], float(s.get("seconds", 0.0)), extra))
    return out


METHOD_NOTE = ("Latency is the median of timed runs after warm-up on synthetic inputs of the stated batch × sequence; "
               "all artifacts were timed in one process, in interleaved rounds{policy}. Δ and speed-up are relative to "
               "{reference} on the same machine in the same run. {metric} is measured on the named split for every "
               "artifact by the same code.")


def policy_text(results: dict) -> str:
    p = results.get("timing_policy") or {}
    if not p:
        return ""
    return f", with the same thread policy for every runtime (PyTorch: {p['torch']}; ONNX Runtime: {p['onnxruntime']})"


def selection_note(results: dict) -> str:
    """How checkpoints were chosen, and whether a reported figure is also the selection metric."""
    sel = next((s["selection"] for s in results.get("stages", []) if s.get("selection")), None)
    if not sel:
        return ""
    if sel["split"] == "validation":
        return (f"Checkpoints (and INT8 budget trials) were chosen on a validation split of {sel['rows']} rows "
                f"({sel['how']}) cut from the training data; the dev / test figures above played no part in the choice.")
    return (f"The {sel['split']} figure is the selection metric: checkpoints were chosen on the {sel['split']} split "
            f"(data.split.select_on: dev), so it overstates accuracy on unseen data; quote a test split for that.")


def method_note(results: dict) -> str:
    from compressor.core.stats import INTERVAL_NOTE, SPEEDUP_RULE

    ref = ("the uncompressed baseline in PyTorch fp32 (" + str(results["artifacts"]["baseline"].get("source")) + ")"
           if reference(results) == "baseline" else "the PyTorch fp32 model")
    return " ".join([METHOD_NOTE.format(reference=ref, metric=results["primary_metric"]["name"].capitalize(),
                                        policy=policy_text(results)), SPEEDUP_RULE, INTERVAL_NOTE,
                     selection_note(results)]).strip()

PLOT_TITLES = {"size": "{metric} vs size", "latency": "{metric} vs latency", "training": "training curves",
               "confusion": "confusion matrix"}


def pareto_note(results: dict) -> str:
    pm = results["primary_metric"]
    better = "more accurate" if pm["higher_is_better"] else f"lower in {pm['name']}"
    return f"Circled points are on the Pareto front: no other artifact is both smaller (or faster) and {better}."


def render_markdown(results: dict, plots: dict[str, str] | None = None) -> str:
    """report.md; ``plots`` maps a figure name (size, latency, training) to its PNG file beside report.md."""
    head, rows = table_rows(results)
    fp = results.get("fingerprint", {})
    metric = results["primary_metric"]["name"]
    out = [f"# compressor run: {results['name']}", "",
           f"Model `{results['model']}`, task {results['task']}, seed {results['seed']}, trained on {results['device']}. "
           f"Data: " + ", ".join(f"{k} {v}" for k, v in results.get("data", {}).items()) + ".", "",
           "## Variants", "", _md_table(head, rows), "", method_note(results)]
    from compressor.report.health import health_section, majority_line

    if majority := majority_line(results):
        out += ["", majority]
    if results.get("bench_notes"):
        out += ["", "Notes:"] + [f"- {n}" for n in results["bench_notes"]]
    from compressor.report.labels import split_table

    if (test := split_table(results, "test")) is not None:
        out += ["", "## Test split", "", _md_table(*test), "",
                "The test split was held out from training and checkpoint selection; the variants table uses dev."]
    health = health_section(results)
    out += ["", f"## {health.title}", ""] + [f"- {line}" for line in health.lines]
    for caption, h, r in health.tables:
        out += ["", f"{caption}:", "", _md_table(h, r)]
    plots = dict(plots or {})
    if "confusion" in plots:
        out += ["", f"![{PLOT_TITLES['confusion']}]({plots.pop('confusion')})"]
    if plots:
        out += ["", "## Plots", ""]
        out += [f"![{PLOT_TITLES.get(k, k).format(metric=metric)}]({f})" for k, f in plots.items()]
        if any(k in plots for k in ("size", "latency")):
            out += ["", pareto_note(results)]
    from compressor.report.compression import sections

    comp = sections(results)
    if comp:
        out += ["", "## Compression"]
        for sec in comp:
            out += ["", f"### {sec.title}", ""] + [f"- {line}" for line in sec.lines]
            for caption, h, r in sec.tables:
                out += ["", f"{caption}:", "", _md_table(h, r)]
    from compressor.report import plan_check

    if checks := plan_check.check_rows(results):
        out += ["", "## Plan vs measurement", "", _md_table(plan_check.HEAD, checks), "", plan_check.NOTE]
    out += ["", "## Stages", ""]
    for stage, seconds, extra in stage_summaries(results):
        out.append(f"- **{stage}** ({seconds:.1f} s)" + (": " + "; ".join(extra) if extra else ""))
    reproduce = results.get("reproduce") or ["compressor run recipe.yaml   # the recipe.yaml in this directory"]
    out += ["", "## Reproduction", "", "```", *reproduce, "```", "",
            "| | |", "|---|---|"] + [f"| {k} | {', '.join(v) if isinstance(v, list) else v} |" for k, v in fp.items()]
    return "\n".join(out) + "\n"


def write_report(run_dir: Path, results: dict) -> None:
    """report.md with its plots as PNG files beside it, and the self-contained report.html."""
    from compressor.report.html import write_html
    from compressor.report.labels import reproduction
    from compressor.report.plots import run_figures, write_figures

    run_dir = Path(run_dir)
    results = {**results, "reproduce": reproduction(run_dir, results["name"])}
    figures = run_figures(results)
    files = write_figures(run_dir, "report", figures)
    atomic_write_text(run_dir / "report.md", render_markdown(results, files))
    write_html(run_dir, results, figures)


def print_rows(title: str, head: list[str], rows: list[list[str]], left: tuple[str, ...] = ("artifact", "run")) -> None:
    """A rich table on stdout: text columns left-aligned, numbers right-aligned."""
    from rich.table import Table

    from compressor.core.console import stdout_console

    t = Table(title=title)
    for h in head:
        t.add_column(h, justify="left" if h in left else "right")
    for r in rows:
        t.add_row(*r)
    stdout_console().print(t)


def print_table(results: dict, width: int | None = None) -> str:
    """The end-of-run summary for the terminal (80 columns fit; the full table is in report.md)."""
    from compressor.report.terminal import print_summary, run_summary

    return print_summary(f"{results['name']}: {results['task']}", *run_summary(results), width=width)
