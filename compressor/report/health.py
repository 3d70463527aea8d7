"""The report's "Model health" section (report.md and report.html alike) and the confusion-matrix figure.

Classifiers: the majority-class baseline, per-class recall of every artifact, the confusion matrix, and the
warnings of ``compressor.core.health``. Causal LMs: perplexity beside the unigram baseline, and the greedy-output
check. Also the data counts: rows read, dropped as duplicates, split off, left out by the sample limits, used.
"""

from __future__ import annotations

from compressor.core.duplicates import count_lines
from compressor.core.duplicates import summary as duplicate_lines
from compressor.core.health import grouped_warnings
from compressor.report.compression import Section
from compressor.report.markdown import eval_split

CONFUSION_TITLE = "confusion matrix"


def _names(results: dict, n: int) -> list[str]:
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
    m = next((a["metrics"][split] for a in results["artifacts"].values()
              if "majority_baseline" in a.get("metrics", {}).get(split, {})), None)
    if m is None:
        return None
    name = _names(results, m["majority_class"] + 1)[m["majority_class"]]
    return (f"Majority-class baseline on {split}: {m['majority_baseline']:.2%} (always answering '{name}'); "
            "an accuracy near it means the classifier has learnt little.")


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
    names = _names(results, len(m["support"]))
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
    sec.tables.append((f"Confusion matrix of {main} on {split} (rows: true class, columns: predicted class)",
                       ["true \\ predicted"] + names, [[names[i]] + [str(v) for v in row] for i, row in enumerate(cm)]))


def _lm(results: dict, split: str, sec: Section) -> None:
    rows, greedy = [], []
    for a, rec in results["artifacts"].items():
        m = rec.get("metrics", {}).get(split, {})
        if "perplexity" in m:
            uni = m.get("unigram_perplexity")
            rows.append([a, f"{m['perplexity']:.3f}", "" if uni is None else f"{uni:.3f}",
                         "" if not uni else f"{m['perplexity'] / uni:.2f}"])
        g = m.get("greedy")
        if g:
            greedy.append(f"{a}: greedy output {'**degenerate** (repetitive)' if g['degenerate'] else 'not repetitive'}: "
                          f"{g['distinct_bigrams']:.0%} distinct bigrams over {g['prompts']} prompts × {g['new_tokens']} "
                          f"tokens" + (f", e.g. {g['sample']!r}" if g.get("sample") else "") + ".")
    if rows:
        sec.lines.append("Unigram baseline: the perplexity of add-one smoothed token frequencies of the training split "
                         "on the same tokens; a model should be far below it.")
        sec.tables.append((f"Perplexity on {split} beside the unigram baseline",
                           ["artifact", "perplexity", "unigram baseline", "ratio"], rows))
    sec.lines += greedy


def health_section(results: dict) -> Section:
    sec = Section("Model health")
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

    from compressor.report.plots import _new_figure, _png

    n = len(arts[shown[0]]["metrics"][split]["confusion"])
    names = _names(results, n)
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
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(n), names if n <= 20 else [], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), names if n <= 20 else [], fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{a} ({split})", fontsize=10)
    return _png(fig)
