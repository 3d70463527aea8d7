"""The report's "Model health" section (report.md and report.html alike; the confusion-matrix figure is drawn in plots.py).

Classifiers: the majority-class baseline, per-class recall of every artifact, the confusion matrix, and the
warnings of ``compressor.core.health``. Causal LMs: perplexity beside the unigram baseline, and the greedy-output
check. Also the data counts: rows read, dropped as duplicates, split off, left out by the sample limits, used.
"""

from __future__ import annotations

from compressor.core.duplicates import count_lines
from compressor.core.duplicates import summary as duplicate_lines
from compressor.core.health import grouped_warnings
from compressor.report.common import eval_split
from compressor.report.document import Figures, Section


def class_names(results: dict, n: int) -> list[str]:
    labels = results.get("labels") or []
    return [labels[i] if i < len(labels) else str(i) for i in range(n)]


def main_artifact(results: dict, split: str) -> str | None:
    """The run's own model: PyTorch, else its ONNX export, else the first artifact with detailed metrics."""
    arts = results["artifacts"]
    order = ["pytorch", "onnx", "int8"] + list(arts)
    return next((a for a in order if a in arts and "confusion" in arts[a].get("metrics", {}).get(split, {})), None)


def majority_line(results: dict) -> str | None:
    """'Majority-class baseline on dev: 45.00 % (always "neutral")': printed beside the variants table."""
    split = eval_split(results)
    if not split or results["task"] != "sequence-classification":
        return None
    m = next(
        (
            a["metrics"][split]
            for a in results["artifacts"].values()
            if "majority_baseline" in a.get("metrics", {}).get(split, {})
        ),
        None,
    )
    if m is None:
        return None
    name = class_names(results, m["majority_class"] + 1)[m["majority_class"]]
    return (
        f"Majority-class baseline on {split}: {m['majority_baseline']:.2%} (always answering '{name}'); "
        "an accuracy near it means the classifier has learnt little."
    )


def warnings(results: dict) -> list[str]:
    """The health warnings of every artifact on the split the report compares on."""
    split = eval_split(results)
    evals = {a: rec.get("metrics", {}) for a, rec in results["artifacts"].items()}
    return grouped_warnings(evals, results["task"], results.get("labels"), [split] if split else None)


def _classifier(results: dict, split: str, sec: Section) -> None:
    arts = results["artifacts"]
    main = main_artifact(results, split)
    if main is None:
        return
    m = arts[main]["metrics"][split]
    names = class_names(results, len(m["support"]))
    with_recall = [a for a, rec in arts.items() if rec.get("metrics", {}).get(split, {}).get("per_class_recall")]
    rows = []
    for i, name in enumerate(names):
        row = [name, str(m["support"][i])]
        for a in with_recall:
            r = arts[a]["metrics"][split]["per_class_recall"]
            row.append("" if i >= len(r) or r[i] is None else f"{r[i]:.2%}")
        rows.append(row)
    sec.tables.append((f"Per-class recall on {split}", ["class", "support"] + with_recall, rows))
    cm = m["confusion"]
    sec.tables.append(
        (
            f"Confusion matrix of {main} on {split} (rows: true class, columns: predicted class)",
            ["true \\ predicted"] + names,
            [[names[i]] + [str(v) for v in row] for i, row in enumerate(cm)],
        )
    )


def _lm(results: dict, split: str, sec: Section) -> None:
    rows, greedy = [], []
    for a, rec in results["artifacts"].items():
        m = rec.get("metrics", {}).get(split, {})
        if "perplexity" in m:
            uni = m.get("unigram_perplexity")
            rows.append(
                [
                    a,
                    f"{m['perplexity']:.3f}",
                    "" if uni is None else f"{uni:.3f}",
                    "" if not uni else f"{m['perplexity'] / uni:.2f}",
                ]
            )
        g = m.get("greedy")
        if g:
            greedy.append(
                f"{a}: greedy output {'**degenerate** (repetitive)' if g['degenerate'] else 'not repetitive'}: "
                f"{g['distinct_bigrams']:.0%} distinct bigrams over {g['prompts']} prompts × {g['new_tokens']} "
                f"tokens" + (f", e.g. {g['sample']!r}" if g.get("sample") else "") + "."
            )
    if rows:
        sec.lines.append(
            "Unigram baseline: the perplexity of add-one smoothed token frequencies of the training split "
            "on the same tokens; a model should be far below it."
        )
        sec.tables.append(
            (f"Perplexity on {split} beside the unigram baseline", ["artifact", "perplexity", "unigram baseline", "ratio"], rows)
        )
    sec.lines += greedy


def health_section(results: dict) -> Section:
    sec = Section("Model health", blocks=[Figures(["confusion"])])
    split = eval_split(results)
    for w in warnings(results):
        sec.lines.append(f"**Warning**: {w}.")
    if split and results["task"] == "sequence-classification":
        _classifier(results, split, sec)
    elif split:
        _lm(results, split, sec)
    sec.lines += count_lines(results.get("data_counts") or {})
    if results.get("duplicates"):
        sec.lines += duplicate_lines(results["duplicates"])
        if results["duplicates"].get("repeated_texts"):
            sec.lines.append("Every row of a repeated text is listed in duplicates.csv in the run folder.")
    return sec
