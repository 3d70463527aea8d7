"""Scores on the held-out test split, when the variants table shows dev."""

from __future__ import annotations

from compressor.report.common import artifact_label, eval_split
from compressor.report.document import Para, Section, Table


def split_table(results: dict, split: str = "test") -> tuple[list[str], list[list[str]]] | None:
    """Scores on ``split`` when it was evaluated but the variants table shows another split (dev)."""
    arts = results["artifacts"]
    if eval_split(results) == split or not any(split in a.get("metrics", {}) for a in arts.values()):
        return None
    metric = results["primary_metric"]["name"]
    acc = metric == "accuracy"
    head = ["artifact", f"{metric} ({split})", "F1 macro" if acc else "tokens", "examples" if acc else "blocks"]
    rows = []
    for name, a in arts.items():
        m = a.get("metrics", {}).get(split)
        if not m or m.get(metric) is None:
            continue
        other = m.get("f1_macro" if acc else "tokens")
        rows.append(
            [
                artifact_label(name, a),
                f"{m[metric] * 100:.2f} %" if acc else f"{m[metric]:.3f}",
                "" if other is None else (f"{other * 100:.2f}" if acc else str(other)),
                str(m.get("n", "")),
            ]
        )
    return (head, rows) if rows else None


def test_split_section(results: dict) -> Section | None:
    test = split_table(results, "test")
    if test is None:
        return None
    return Section(
        "Test split",
        blocks=[
            Table(*test),
            Para("The test split was held out from training and checkpoint selection; the variants table uses dev."),
        ],
    )
