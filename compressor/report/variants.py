"""The variants table (one row per artifact: metric with interval, Δ, size, latencies, speed-up) and the notes on
how it was measured. ``compressor compare`` builds its merged table from the same rows."""

from __future__ import annotations

from compressor.core.stats import INTERVAL_NOTE, SPEEDUP_RULE
from compressor.report.common import (
    artifact_label,
    bench_devices,
    bench_shapes,
    delta_cell,
    eval_split,
    metric_cell,
    p50,
    reference,
    speedup,
)
from compressor.report.document import Notes, Para, Section, Table
from compressor.report.health import majority_line


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
    head = [
        "artifact",
        (f"{metric} ({split})" if split else metric) + " [95 % CI]",
        "Δ",
        "F1 [95 % CI]" if metric == "accuracy" else "tokens",
        "params",
        "size MiB",
        "gzip MiB",
    ]
    for dev in devices:
        head += [f"p50 ms {dev} b{b}×{s}" for b, s in shapes]
    if devices and shapes:
        head.append(f"speed-up b{shapes[0][0]}×{shapes[0][1]}")
    rows = []
    for name, a in arts.items():
        m = a.get("metrics", {}).get(split, {}) if split else {}
        other = (metric_cell(m, "f1_macro") if metric == "accuracy" else str(m.get("tokens", ""))) if m else ""
        row = [
            artifact_label(name, a),
            metric_cell(m, metric),
            "" if name == ref else delta_cell(m, base_m, metric),
            other,
            f"{a['params'] / 1e6:.2f} M",
            f"{a['size_bytes'] / 2**20:.1f}",
            f"{a['gzip_bytes'] / 2**20:.1f}",
        ]
        for dev in devices:
            row += [("" if (v := p50(a, b, s, dev)) is None else f"{v:.2f}") for b, s in shapes]
        if devices and shapes:
            row.append(
                "reference"
                if name == ref
                else ("" if p50(a, *shapes[0], devices[0]) is None else speedup(results, name, shapes[0], devices[0]).cell())
            )
        rows.append(row)
    return head, rows


METHOD_NOTE = (
    "Latency is the median of timed runs after warm-up on synthetic inputs of the stated batch × sequence; "
    "all artifacts were timed in one process, in interleaved rounds{policy}. Δ and speed-up are relative to "
    "{reference} on the same machine in the same run. {metric} is measured on the named split for every "
    "artifact by the same code."
)


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
        return (
            f"Checkpoints (and INT8 budget trials) were chosen on a validation split of {sel['rows']} rows "
            f"({sel['how']}) cut from the training data; the dev / test figures above played no part in the choice."
        )
    return (
        f"The {sel['split']} figure is the selection metric: checkpoints were chosen on the {sel['split']} split "
        f"(data.split.select_on: dev), so it overstates accuracy on unseen data; quote a test split for that."
    )


def method_note(results: dict) -> str:
    ref = (
        "the uncompressed baseline in PyTorch fp32 (" + str(results["artifacts"]["baseline"].get("source")) + ")"
        if reference(results) == "baseline"
        else "the PyTorch fp32 model"
    )
    return " ".join(
        [
            METHOD_NOTE.format(reference=ref, metric=results["primary_metric"]["name"].capitalize(), policy=policy_text(results)),
            SPEEDUP_RULE,
            INTERVAL_NOTE,
            selection_note(results),
        ]
    ).strip()


def variants_section(results: dict) -> Section:
    head, rows = table_rows(results)
    blocks: list = [Table(head, rows), Para(method_note(results))]
    if majority := majority_line(results):
        blocks.append(Para(majority))
    if results.get("bench_notes"):
        blocks.append(Notes(list(results["bench_notes"])))
    return Section("Variants", blocks=blocks)
