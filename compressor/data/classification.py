"""Classification data: labelled train / dev / test tables, and unlabelled transfer texts for distillation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from compressor.core.duplicates import dedupe
from compressor.core.duplicates import summary as dup_summary
from compressor.core.errors import DataError
from compressor.data.files import _first_row, _fmt, _is_missing, check_texts, read_text
from compressor.data.labels import _Labels
from compressor.data.layout import pick_column
from compressor.data.sources import Table, _resolve, is_dataset_spec, open_table, text_keys
from compressor.data.splits import Dataset, Split, _cut_validation, _split_off, _subsample

if TYPE_CHECKING:
    from compressor.recipe.schema import DataConfig

log = logging.getLogger("compressor")


def _read_labelled(cfg: DataConfig, base_dir: Path | None) -> dict[str, tuple[Table, list, object]]:
    """split -> (table, text column keys, label column key) for every labelled file the recipe names."""
    out = {}
    for name in ("train", "dev", "test"):
        spec = getattr(cfg, name)
        if spec:
            table = open_table(spec, cfg, base_dir, f"data.{name}")
            keys = text_keys(table, cfg)
            label = pick_column(table.df, table.source, cfg.label, "data.label")
            check_texts(table.df, table.source, keys)
            out[name] = (table, keys, label)
    return out


def _label_order(cfg: DataConfig, tables: dict) -> list[str] | None:
    """data.labels, else the ClassLabel names of a Hugging Face dataset's label column (the same in every file)."""
    if cfg.labels is not None:
        return cfg.labels
    found = [(t.source, t.class_names[label]) for t, _, label in tables.values() if label in t.class_names]
    for source, names in found[1:]:
        if names != found[0][1]:
            raise DataError(f"{source}: its label names {names} differ from {found[0][0]}'s {found[0][1]}; set data.labels")
    return found[0][1] if found else None


def _cut(splits: dict, counts: dict, cfg: DataConfig, seed: int, validation: float) -> None:
    """dev / test cut from train where no file gives them, the selection split, then the sample limits."""
    total = len(splits["train"])  # split fractions are of the whole file, not of what is left after the test cut
    for name, frac in (("test", cfg.split.test), ("dev", cfg.split.dev)):
        if name not in splits and frac > 0:
            splits["train"], splits[name] = _split_off(splits["train"], max(1, round(total * frac)), seed, cfg.split.stratify)
            counts["train"]["split_off"] = counts["train"].get("split_off", 0) + len(splits[name])
            counts[name] = {"from_train": len(splits[name])}
    if validation > 0:  # the selection split (see _cut_validation)
        splits["train"], splits["validation"] = _cut_validation(
            splits["train"], validation, cfg.max_train_samples, seed, cfg.split.stratify, cfg.split.validation_max
        )
        counts["train"]["split_off"] = counts["train"].get("split_off", 0) + len(splits["validation"])
        counts["validation"] = {"from_train": len(splits["validation"])}
    limits = {
        "train": cfg.max_train_samples,
        "validation": cfg.max_eval_samples,
        "dev": cfg.max_eval_samples,
        "test": cfg.max_eval_samples,
    }
    for name in ("train", "validation", "dev", "test"):
        if name in splits:
            before = len(splits[name])
            splits[name] = _subsample(splits[name], limits[name], seed)
            counts[name]["sampled_out"] = before - len(splits[name])
            counts[name]["used"] = len(splits[name])
    for name, s in splits.items():
        if len(s) == 0:
            raise DataError(f"data.{name}: split is empty after de-duplication and sampling")


def load_classification(
    cfg: DataConfig, base_dir: Path | None, seed: int, num_labels: int | None = None, validation: float = 0.0
) -> Dataset:
    """train / dev / test (cut from train when not given) and, with ``validation`` > 0, a selection split held out
    from the training rows (see ``_cut_validation``). Each file is a table (csv / tsv / txt / jsonl / parquet, laid
    out as data.sep / header / columns say) or a Hugging Face dataset (see ``sources.open_table``)."""
    if cfg.label is None:
        raise DataError("data.label: a classification task needs a label column")
    tables = _read_labelled(cfg, base_dir)
    labels = _Labels(_label_order(cfg, tables), num_labels)
    labels.fit([(t.source, t.df[label]) for t, _, label in tables.values()])
    if num_labels is not None and labels.names is not None and len(labels.names) > num_labels:
        raise DataError(f"{tables['train'][0].source}: {len(labels.names)} distinct labels but model.num_labels is {num_labels}")

    splits: dict[str, Split] = {}
    for name, (table, keys, label) in tables.items():
        cols = [table.df[c].tolist() for c in keys]
        texts = cols[0] if len(cols) == 1 else list(zip(*cols))
        splits[name] = Split(texts, labels.encode(table.source, table.df[label]))
    splits, report, listing = dedupe(
        splits, cfg.split.conflicts, cfg.split.dedupe, {n: _first_row(t.source) for n, (t, _, _) in tables.items()}
    )
    for line in dup_summary(report):
        log.info("%s", line)
    counts = {n: dict(c) for n, c in report["splits"].items()}
    _cut(splits, counts, cfg, seed, validation)
    return Dataset(splits, labels.names, {k: str(t.source) for k, (t, _, _) in tables.items()}, counts, report, listing)


def table_texts(spec: str, cfg, base_dir: Path | None, field: str) -> list:
    """The texts (or text pairs) of an unlabelled table or dataset, blank rows left out (and counted in the log)."""
    table = open_table(spec, cfg, base_dir, field)
    keys = text_keys(table, cfg)
    check_texts(table.df, table.source, keys, allow_empty=True)
    rows = list(zip(*[table.df[c].tolist() for c in keys]))
    kept = [r if len(r) > 1 else r[0] for r in rows if not any(_is_missing(v) for v in r)]
    if len(kept) < len(rows):
        log.info("%s: %d of %d rows read, %d with an empty text left out", field, len(kept), len(rows), len(rows) - len(kept))
    return kept


def load_transfer(cfg, base_dir: Path | None, exclude: set, seed: int, field: str) -> Split:
    """Unlabelled texts for distillation (``TransferData``): no duplicates, nothing from ``exclude`` (labelled and eval texts)."""
    where = f"{field}.path"
    path = None if is_dataset_spec(cfg.path, base_dir, where) else _resolve(cfg.path, base_dir, where)
    if path is not None and _fmt(path, cfg.format) == "text":
        texts: list = [line.strip() for line in read_text(path, cfg.encoding).split("\n") if line.strip()]
    else:
        table = open_table(cfg.path, cfg, base_dir, f"{field}.path")
        path = table.source
        keys = text_keys(table, cfg, f"{field}.text")
        check_texts(table.df, table.source, keys, allow_empty=True)
        columns = [["" if _is_missing(v) else v for v in table.df[c]] for c in keys]
        texts = columns[0] if len(keys) == 1 else list(zip(*columns))

    seen = set(exclude)
    kept = []
    for t in texts:
        k = _text_key(t)
        if k and k not in seen:
            seen.add(k)
            kept.append(t)
    if not kept:
        raise DataError(f"{path}: no transfer text left after removing duplicates, labelled training texts and dev / test texts")
    log.info("%s: %d transfer texts (%d duplicates, labelled or eval texts dropped)", field, len(kept), len(texts) - len(kept))
    return _subsample(Split(kept), cfg.max_samples, seed)


def _text_key(t):
    """A text (or text pair) as compared for duplicates: stripped and lower-cased."""
    return t.strip().lower() if isinstance(t, str) else tuple(x.strip().lower() for x in t)


def known_texts(dataset: Dataset) -> set:
    """Keys of every text in the dataset's splits: what a transfer set must not contain (dev / test texts would
    leak into evaluation; training texts are already learnt from, with their labels)."""
    return {_text_key(t) for split in dataset.splits.values() for t in split.texts}
