"""``compressor eval`` on a data file: the same reading, de-duplication and health checks as ``compressor run``.

The file is read as one split by ``data.load_classification`` (quoting, label mapping, duplicate rules and the
conflict policy of a run's evaluation file), so ``run`` and ``eval`` score the same rows.
"""

from __future__ import annotations

import logging

import numpy as np

from compressor import data as D
from compressor.duplicates import count_lines
from compressor.duplicates import summary as duplicate_lines
from compressor.health import grouped_warnings

log = logging.getLogger("compressor")


def load_classification_file(cfg, num_labels: int | None, tokenizer, max_length: int):
    """(encoded rows, dataset) of one classification file; the row counts are logged as a run logs them."""
    ds = D.load_classification(cfg, None, seed=0, num_labels=num_labels)
    for line in count_lines(ds.counts, {"train": str(cfg.train)}, {"train": "--limit"}):
        log.info("%s", line)
    return D.encode_split(ds.splits["train"], tokenizer, max_length), ds


def lm_extras(metrics: dict, blocks: np.ndarray, vocab: int | None, model=None, tokenizer=None) -> None:
    """Causal LM: the unigram baseline (fitted on the evaluated text itself: no training split here) and, for a
    PyTorch model, the greedy-output check."""
    from compressor.health import unigram_perplexity
    from compressor.measure.evaluate import greedy_check

    if vocab:
        metrics["unigram_perplexity"] = unigram_perplexity(blocks, blocks, vocab)
        metrics["unigram_fitted_on"] = "the evaluated text"
    if model is not None:
        metrics["greedy"] = greedy_check(model, list(blocks), tokenizer=tokenizer)


def health_lines(metrics: dict, task: str, names: list[str] | None) -> tuple[list[str], list[str]]:
    """(facts, warnings) to print under the metrics line."""
    facts = []
    if task == "sequence-classification" and "per_class_recall" in metrics:
        n = len(metrics["support"])
        label = [names[i] if names and i < len(names) else str(i) for i in range(n)]
        facts.append(f"majority-class baseline {metrics['majority_baseline']:.2%} (always "
                     f"'{label[metrics['majority_class']]}'); accuracy {metrics['accuracy']:.2%}")
        facts.append("per-class recall: " + ", ".join(
            f"{label[i]} {r:.2%} (n={metrics['support'][i]})" for i, r in enumerate(metrics["per_class_recall"]) if r is not None))
        facts.append("confusion matrix (rows: true, columns: predicted): "
                     + "; ".join(f"{label[i]}: {row}" for i, row in enumerate(metrics["confusion"])))
    elif "unigram_perplexity" in metrics:
        facts.append(f"perplexity {metrics['perplexity']:.3f} beside a unigram baseline of {metrics['unigram_perplexity']:.3f} "
                     "(token frequencies of the evaluated text)")
        if "greedy" in metrics:
            g = metrics["greedy"]
            facts.append(f"greedy output: {g['distinct_bigrams']:.0%} distinct bigrams over {g['prompts']} prompts"
                         + (" (degenerate)" if g["degenerate"] else ""))
    warnings = grouped_warnings({"the model": {"this file": metrics}}, task, names)
    return facts, [w.replace("the model on this file: ", "") for w in warnings]


def data_summary(ds) -> dict:
    """What --json records about the rows: counts and the duplicate report."""
    out = {"counts": ds.counts.get("train", {}), "duplicates": ds.duplicates}
    lines = duplicate_lines(ds.duplicates) if ds.duplicates else []
    if lines:
        out["duplicate_summary"] = lines
    conflicts = [r for r in ds.duplicate_rows if r["conflict"]]
    if conflicts:
        out["conflicting_rows"] = [{"row": r["row"], "text": r["text"], "action": r["action"],
                                    "label": ds.label_names[r["label"]] if ds.label_names else r["label"]}
                                   for r in conflicts]
    return out
