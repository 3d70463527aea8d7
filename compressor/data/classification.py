"""Classification data: labelled train / dev / test tables, and unlabelled transfer texts for distillation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from compressor.core.errors import CompressorError, DataError
from compressor.data.files import _columns, _first_row, _fmt, _is_missing, check_texts, read_table, read_text
from compressor.data.labels import _Labels
from compressor.data.splits import Dataset, Split, _cut_validation, _split_off, _subsample
from compressor.duplicates import dedupe
from compressor.duplicates import summary as dup_summary
from compressor.models import resolve

if TYPE_CHECKING:
    from compressor.recipe.schema import DataConfig

log = logging.getLogger("compressor")


def load_classification(cfg: DataConfig, base_dir: Path | None, seed: int, num_labels: int | None = None,
                        validation: float = 0.0) -> Dataset:
    """train / dev / test (cut from train when not given) and, with ``validation`` > 0, a selection split held out
    from the training rows (see ``_cut_validation``)."""
    text_cols = cfg.text if isinstance(cfg.text, list) else [cfg.text]
    if cfg.label is None:
        raise DataError("data.label: a classification task needs a label column")
    files: dict[str, Path] = {}
    for name in ("train", "dev", "test"):
        spec = getattr(cfg, name)
        if spec:
            try:
                files[name] = Path(resolve(spec, base_dir, f"data.{name}"))
            except CompressorError as e:
                raise DataError(str(e)) from None
    frames = {}
    for name, path in files.items():
        df = read_table(path, cfg.format, cfg.encoding, cfg.quoting)
        _columns(df, path, text_cols + [cfg.label])
        check_texts(df, path, text_cols)
        frames[name] = df
    labels = _Labels(cfg.labels, num_labels)
    labels.fit([(files[n], df[cfg.label]) for n, df in frames.items()])
    if num_labels is not None and labels.names is not None and len(labels.names) > num_labels:
        raise DataError(f"{files['train']}: {len(labels.names)} distinct labels but model.num_labels is {num_labels}")

    splits: dict[str, Split] = {}
    for name, df in frames.items():
        cols = [df[c].tolist() for c in text_cols]
        texts = cols[0] if len(cols) == 1 else list(zip(*cols))
        splits[name] = Split(texts, labels.encode(files[name], df[cfg.label]))
    splits, report, listing = dedupe(splits, cfg.split.conflicts, cfg.split.dedupe,
                                     {n: _first_row(p) for n, p in files.items()})
    for line in dup_summary(report):
        log.info("%s", line)
    counts = {n: dict(c) for n, c in report["splits"].items()}
    total = len(splits["train"])  # split fractions are of the whole file, not of what is left after the test cut
    for name, frac in (("test", cfg.split.test), ("dev", cfg.split.dev)):
        if name not in splits and frac > 0:
            splits["train"], splits[name] = _split_off(splits["train"], max(1, round(total * frac)), seed, cfg.split.stratify)
            counts["train"]["split_off"] = counts["train"].get("split_off", 0) + len(splits[name])
            counts[name] = {"from_train": len(splits[name])}
    if validation > 0:  # the selection split (see _cut_validation)
        splits["train"], splits["validation"] = _cut_validation(splits["train"], validation, cfg.max_train_samples, seed,
                                                                cfg.split.stratify, cfg.split.validation_max)
        counts["train"]["split_off"] = counts["train"].get("split_off", 0) + len(splits["validation"])
        counts["validation"] = {"from_train": len(splits["validation"])}
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_eval_samples, "dev": cfg.max_eval_samples,
              "test": cfg.max_eval_samples}
    for name in ("train", "validation", "dev", "test"):
        if name in splits:
            before = len(splits[name])
            splits[name] = _subsample(splits[name], limits[name], seed)
            counts[name]["sampled_out"] = before - len(splits[name])
            counts[name]["used"] = len(splits[name])
    for name, s in splits.items():
        if len(s) == 0:
            raise DataError(f"data.{name}: split is empty after de-duplication and sampling")
    return Dataset(splits, labels.names, {k: str(v) for k, v in files.items()}, counts, report, listing)


def load_transfer(cfg, base_dir: Path | None, exclude: set, seed: int, field: str) -> Split:
    """Unlabelled texts for distillation (``TransferData``): no duplicates, nothing from ``exclude`` (labelled and eval texts)."""
    try:
        path = Path(resolve(cfg.path, base_dir, f"{field}.path"))
    except CompressorError as e:
        raise DataError(str(e)) from None
    cols = cfg.text if isinstance(cfg.text, list) else [cfg.text]
    if _fmt(path, cfg.format) == "text":
        texts: list = [line.strip() for line in read_text(path, cfg.encoding).split("\n") if line.strip()]
    else:
        df = read_table(path, cfg.format, cfg.encoding)
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(f"{path}: missing column '{missing[0]}' ({field}.text); columns are: {', '.join(map(str, df.columns))}")
        check_texts(df, path, cols, allow_empty=True)
        columns = [["" if _is_missing(v) else v for v in df[c]] for c in cols]
        texts = columns[0] if len(cols) == 1 else list(zip(*columns))

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
