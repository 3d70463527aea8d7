"""Model health: is a classifier really classifying, is a language model better than token frequencies?

Pure functions over numbers (no torch): ``evaluate`` computes the statistics, the pipeline, ``compressor eval``
and the report turn them into warnings with the same words.

A classifier is flagged when it predicts fewer classes than the split holds (classes it never predicts hold
a real share of the rows), or when its accuracy is within ``NEAR_MAJORITY`` of always answering the most common
class. A compressed artifact that "keeps" the accuracy of a flagged reference copies a collapse: the report
says so wherever it compares them (INT8 budget, "% of the teacher").
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

NEAR_MAJORITY = 0.02  # accuracy within 2 points of the majority-class baseline
MISSED_SHARE = 0.01  # classes never predicted count when they hold at least 1 % of the rows ...
MISSED_MIN = 3  # ... and at least 3 rows
DISTINCT_MIN = 0.3  # greedy output with fewer distinct bigrams than this (share of all bigrams) is degenerate


def class_stats(y: np.ndarray, p: np.ndarray, num_classes: int, detail: bool = True) -> dict:
    """Majority-class baseline, classes present / predicted; with ``detail`` per-class recall, support and the
    confusion matrix (rows: true class, columns: predicted class)."""
    y, p = np.asarray(y, dtype=np.int64), np.asarray(p, dtype=np.int64)
    n = max(num_classes, int(y.max(initial=-1)) + 1, int(p.max(initial=-1)) + 1)
    support = np.bincount(y, minlength=n)
    predicted = np.bincount(p, minlength=n)
    out = {
        "majority_baseline": float(support.max() / max(len(y), 1)),
        "majority_class": int(support.argmax()),
        "classes_present": int((support > 0).sum()),
        "predicted_classes": int((predicted > 0).sum()),
    }
    missed = (support > 0) & (predicted == 0)
    out["missed_share"] = float(support[missed].sum() / max(len(y), 1))
    if detail:
        cm = np.zeros((n, n), dtype=np.int64)
        np.add.at(cm, (y, p), 1)
        out["support"] = support.tolist()
        out["per_class_recall"] = [None if s == 0 else float(cm[i, i] / s) for i, s in enumerate(support)]
        out["confusion"] = cm.tolist()
    return out


def _name(i: int, names: list[str] | None) -> str:
    return names[i] if names and 0 <= i < len(names) else str(i)


def collapsed(m: dict) -> bool:
    """True when a classifier's metrics say it does not really classify (see the module docstring)."""
    return bool(classifier_warnings(m))


def classifier_warnings(m: dict, names: list[str] | None = None) -> list[str]:
    """Warnings for one artifact's metrics on one split, each a predicate ("predicts only ..."); empty when healthy
    or when the statistics are absent."""
    if "majority_baseline" not in m or "accuracy" not in m:
        return []
    out = []
    n = m.get("n", 0)
    present, predicted = m["classes_present"], m["predicted_classes"]
    if predicted < present and m.get("missed_share", 1.0) * max(n, 1) >= max(MISSED_MIN, MISSED_SHARE * n):
        never = ""
        if m.get("support") and m.get("confusion"):
            cols = np.asarray(m["confusion"]).sum(0)
            idx = [i for i, s in enumerate(m["support"]) if s and not cols[i]]
            never = " (never predicted: " + ", ".join(f"{_name(i, names)} {m['support'][i]} rows" for i in idx) + ")"
        out.append(f"predicts only {predicted} of the {present} classes present{never}: a collapsed classifier")
    gap = m["accuracy"] - m["majority_baseline"]
    if gap <= NEAR_MAJORITY and present > 1:
        out.append(
            f"scores {m['accuracy']:.2%}, {'only ' if gap >= 0 else ''}{gap * 100:+.2f} pt from the "
            f"majority-class baseline {m['majority_baseline']:.2%} (always '{_name(m['majority_class'], names)}')"
        )
    return out


def reference_warning(ref: dict, what: str, names: list[str] | None = None) -> str | None:
    """The caveat for a comparison against ``ref``: a result that matches a collapsed reference copies the collapse."""
    why = classifier_warnings(ref, names)
    if not why:
        return None
    return f"**Warning**: {what} {why[0]}; matching it says nothing about a useful model, only that the collapse was copied"


# ------------------------------------------------------------------ causal LMs
def unigram_perplexity(train_ids: Iterable[np.ndarray], eval_ids: Iterable[np.ndarray], vocab: int) -> float:
    """Perplexity of add-one smoothed token frequencies (fitted on ``train_ids``) on the tokens a causal LM
    is scored on (every token of each block but its first)."""
    counts = np.zeros(vocab, dtype=np.float64)
    for ids in train_ids:
        np.add.at(counts, np.asarray(ids, dtype=np.int64) % vocab, 1)
    logp = np.log((counts + 1) / (counts.sum() + vocab))
    nll, tokens = 0.0, 0
    for ids in eval_ids:
        ids = np.asarray(ids, dtype=np.int64)[1:] % vocab
        nll -= float(logp[ids].sum())
        tokens += len(ids)
    return float(math.exp(min(nll / max(tokens, 1), 700)))


def repetition(tokens: list[int]) -> float:
    """Distinct bigrams / bigrams of a generated continuation (1.0: no bigram repeats)."""
    grams = list(zip(tokens, tokens[1:]))
    return len(set(grams)) / len(grams) if grams else 1.0


def lm_warnings(m: dict) -> list[str]:
    out = []
    if m.get("unigram_perplexity") and m.get("perplexity") and m["perplexity"] >= m["unigram_perplexity"]:
        out.append(
            f"perplexity {m['perplexity']:.2f} is no better than token frequencies alone "
            f"(unigram baseline {m['unigram_perplexity']:.2f})"
        )
    g = m.get("greedy")
    if g and g.get("degenerate"):
        out.append(
            f"greedy output is degenerate (repetitive): {g['distinct_bigrams']:.0%} distinct bigrams "
            f"over {g['prompts']} prompts, e.g. {g['sample']!r}"
        )
    return out


def warnings_for(m: dict, task: str, names: list[str] | None = None) -> list[str]:
    return classifier_warnings(m, names) if task == "sequence-classification" else lm_warnings(m)


def grouped_warnings(
    evals: dict[str, dict], task: str, names: list[str] | None = None, splits: list[str] | None = None
) -> list[str]:
    """Warnings of every artifact (``{artifact: {split: metrics}}``), artifacts with the same finding on the same
    split on one line: "pytorch, onnx, int8 on dev: predicts only 2 of the 6 classes present ..."."""
    found: dict[tuple[str, str], list[str]] = {}
    for artifact, per_split in evals.items():
        for split, m in per_split.items():
            if splits is None or split in splits:
                for w in warnings_for(m, task, names):
                    found.setdefault((split, w), []).append(artifact)
    return [f"{', '.join(arts)} on {split}: {w}" for (split, w), arts in found.items()]
