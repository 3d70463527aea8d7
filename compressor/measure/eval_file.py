"""``compressor eval`` on a data file: the same reading, de-duplication and health checks as ``compressor run``.

The file is read as one split by ``data.load_classification`` (quoting, separator, header, columns by name or
position, Hugging Face datasets, label mapping, duplicate rules and the conflict policy of a run's evaluation file),
so ``run`` and ``eval`` score the same rows. Errors name eval's options, not the recipe keys the data layer uses.
"""

from __future__ import annotations

import logging

import numpy as np

from compressor import data as D
from compressor.core.duplicates import count_lines
from compressor.core.duplicates import summary as duplicate_lines
from compressor.core.errors import CompressorError
from compressor.core.health import grouped_warnings

log = logging.getLogger("compressor")


# recipe key (as the data layer names it) -> eval option
OPTIONS = {
    "data.train": "--data",
    "data.encoding": "--encoding",
    "data.format": "--format",
    "data.text": "--text",
    "data.labels": "--labels",
    "data.label": "--label",
    "data.max_length": "--max-length",
    "data.max_train_samples": "--limit",
    "data.quoting": "--quoting",
    "data.sep": "--sep",
    "data.header": "--no-header",
    "data.columns": "--columns",
    "data.conflicts": "--conflicts",
    "data.split.conflicts": "--conflicts",
}


def as_options(message: str) -> str:
    """A data-layer message with recipe keys (data.sep, ...) replaced by the eval options that set them."""
    import re

    keys = sorted(OPTIONS, key=len, reverse=True)
    return re.sub(r"\b(" + "|".join(re.escape(k) for k in keys) + r")\b", lambda m: OPTIONS[m.group(0)], message)


def column_option(value: str):
    """--text / --label: a name, a 0-based position ("0"), or two comma-separated for sentence pairs."""
    parts = [p.strip() for p in value.split(",")] if "," in value else [value.strip()]
    parts = [int(p) if p.isdigit() else p for p in parts]
    return parts if len(parts) > 1 else parts[0]


def data_config(data: str, *, text: str, label: str | None, names: list[str] | None = None, **options):
    """The DataConfig eval reads ``data`` with (one split: no dev / test cut); a bad option is named as the option.
    ``options``: format, encoding, quoting, sep, header, columns (comma-separated), dedupe, conflicts, max_length,
    limit."""
    import pydantic

    from compressor.recipe.schema import DataConfig, SplitConfig

    columns = options.get("columns")
    try:
        return DataConfig(
            train=data,
            format=options.get("format", "auto"),
            encoding=options.get("encoding", "utf-8"),
            quoting=options.get("quoting", "auto"),
            sep=options.get("sep"),
            header=options.get("header", True),
            columns=[c.strip() for c in columns.split(",")] if columns else None,
            text=column_option(text),
            label=column_option(label) if label is not None else None,
            labels=names,
            max_length=options.get("max_length", 128),
            max_train_samples=options.get("limit"),
            split=SplitConfig(
                dev=0.0,
                test=0.0,
                stratify=False,
                dedupe=options.get("dedupe", True),
                conflicts=options.get("conflicts", "keep-first"),
            ),
        )
    except pydantic.ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        where = OPTIONS.get(f"data.{loc}", OPTIONS.get(f"data.{loc.split('.')[0]}", f"data.{loc}" if loc else "data"))
        raise CompressorError(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None


def label_names(config, cfg, labels: str | None) -> tuple[list[str] | None, str | None]:
    """(label names in id order, a warning): --labels, else the model's id2label, else a dataset's ClassLabel order;
    None when the data holds class ids (or the model's labels are unnamed: then text labels are sorted)."""
    from compressor.data.files import _is_missing
    from compressor.data.layout import pick_column

    if labels:
        return [x.strip() for x in labels.split(",")], None
    table = D.open_table(cfg.train, cfg, None, "data.train")
    key = pick_column(table.df, table.source, cfg.label, "data.label")
    class_names = table.class_names.get(key)
    values = [D.label_key(v) for v in table.df[key] if not _is_missing(v)]
    if class_names is None and values and all(v.lstrip("-").isdigit() for v in values):
        return None, None
    id2label = getattr(config, "id2label", None) or {}
    names = [str(id2label[i]) for i in sorted(id2label)]
    if names and not all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return names, None
    if class_names:
        return class_names, None  # the dataset's own id order
    return None, (
        "the model's labels are unnamed (LABEL_0, ...): text labels are mapped in sorted order; pass --labels to give the order"
    )


def load_classification_file(cfg, num_labels: int | None, tokenizer, max_length: int):
    """(encoded rows, dataset) of one classification file; the row counts are logged as a run logs them."""
    ds = D.load_classification(cfg, None, seed=0, num_labels=num_labels)
    for line in count_lines(ds.counts, {"train": str(cfg.train)}, {"train": "--limit"}):
        log.info("%s", line)
    return D.encode_split(ds.splits["train"], tokenizer, max_length), ds


def lm_extras(metrics: dict, blocks: np.ndarray, vocab: int | None, model=None, tokenizer=None) -> None:
    """Causal LM: the unigram baseline (fitted on the evaluated text itself: no training split here) and, for a
    PyTorch model, the greedy-output check."""
    from compressor.core.health import unigram_perplexity
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
        facts.append(
            f"majority-class baseline {metrics['majority_baseline']:.2%} (always "
            f"'{label[metrics['majority_class']]}'); accuracy {metrics['accuracy']:.2%}"
        )
        facts.append(
            "per-class recall: "
            + ", ".join(
                f"{label[i]} {r:.2%} (n={metrics['support'][i]})"
                for i, r in enumerate(metrics["per_class_recall"])
                if r is not None
            )
        )
        facts.append(
            "confusion matrix (rows: true, columns: predicted): "
            + "; ".join(f"{label[i]}: {row}" for i, row in enumerate(metrics["confusion"]))
        )
    elif "unigram_perplexity" in metrics:
        facts.append(
            f"perplexity {metrics['perplexity']:.3f} beside a unigram baseline of {metrics['unigram_perplexity']:.3f} "
            "(token frequencies of the evaluated text)"
        )
        if "greedy" in metrics:
            g = metrics["greedy"]
            facts.append(
                f"greedy output: {g['distinct_bigrams']:.0%} distinct bigrams over {g['prompts']} prompts"
                + (" (degenerate)" if g["degenerate"] else "")
            )
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
        out["conflicting_rows"] = [
            {
                "row": r["row"],
                "text": r["text"],
                "action": r["action"],
                "label": ds.label_names[r["label"]] if ds.label_names else r["label"],
            }
            for r in conflicts
        ]
    return out
