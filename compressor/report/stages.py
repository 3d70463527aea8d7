"""The "Stages" section: each stage's time and what it recorded (best dev metric, parity, fusions, exporter)."""

from __future__ import annotations

from compressor.report.document import Section


def stage_summaries(results: dict) -> list[tuple[str, float, list[str]]]:
    """(stage, seconds, [facts]) per stage: best dev metric, parity, fusions, exporter."""
    out = []
    for s in results.get("stages", []):
        extra = []
        if s.get("best_dev") is not None:
            sel = (s.get("selection") or {}).get("split", "dev")
            extra.append(
                f"best {sel} {results['primary_metric']['name']} {s['best_dev']:.4f} at step {s.get('best_step')} "
                "(checkpoint selection)"
            )
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


def stages_section(results: dict) -> Section:
    return Section(
        "Stages",
        lines=[
            f"**{stage}** ({seconds:.1f} s)" + (": " + "; ".join(extra) if extra else "")
            for stage, seconds, extra in stage_summaries(results)
        ],
    )
