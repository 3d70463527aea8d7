"""Read data files into train/dev/test splits and turn them into batches.

Classification: a table (csv / tsv / jsonl / parquet) with text column(s) and a label column.
Causal LM: a plain text file (or a table's text column), tokenized and cut into blocks.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compressor.core.errors import CompressorError, DataError
from compressor.core.quoting import SEPARATORS, likely_cause, separator_hint, table_quoting
from compressor.duplicates import dedupe
from compressor.duplicates import summary as dup_summary
from compressor.models import resolve
from compressor.recipe.schema import DataConfig

log = logging.getLogger("compressor")


@dataclass
class Split:
    texts: list[Any]  # str, or (str, str) for sentence pairs
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, idx: np.ndarray | list[int]) -> Split:
        return Split([self.texts[i] for i in idx], None if self.labels is None else self.labels[np.asarray(idx, dtype=int)])


@dataclass
class Dataset:
    splits: dict[str, Split]
    label_names: list[str] | None = None
    sources: dict[str, str] = field(default_factory=dict)
    counts: dict[str, dict] = field(default_factory=dict)  # split -> rows read / dropped / split off / sampled out / used
    duplicates: dict = field(default_factory=dict)  # duplicates.dedupe's report
    duplicate_rows: list[dict] = field(default_factory=list)  # every row of a repeated text (duplicates.csv)

    @property
    def num_labels(self) -> int | None:
        return None if self.label_names is None else len(self.label_names)


def _fmt(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffixes = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".txt": "text",
                ".raw": "text", ".tokens": "text"}
    try:
        return suffixes[path.suffix.lower()]
    except KeyError:
        raise DataError(f"{path}: cannot tell the format from '{path.suffix}'; set data.format") from None


def read_table(path: Path, fmt: str, encoding: str, quoting: str = "auto"):
    """Read a table with pandas, turning every parser complaint into a one-line DataError.

    ``quoting`` (auto | csv | none) is how csv / tsv fields in quotes are read: see ``compressor.core.quoting``."""
    import pandas as pd

    fmt = _fmt(path, fmt)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    quote = csv.QUOTE_MINIMAL
    try:
        if fmt in ("csv", "tsv"):
            quote = table_quoting(path, fmt, encoding, quoting)
            df = pd.read_csv(path, sep=SEPARATORS[fmt], encoding=encoding, dtype=str, keep_default_na=False, quoting=quote)
        elif fmt == "jsonl":
            df = _read_jsonl(path, encoding)
        elif fmt == "parquet":
            df = pd.read_parquet(path)
        else:
            raise DataError(f"{path}: format '{fmt}' is not a table")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid {encoding} text ({_bad_byte(path, encoding)}); set data.encoding "
                        "(e.g. latin-1)") from None
    except LookupError:
        raise DataError(f"{path}: unknown encoding '{encoding}' (data.encoding)") from None
    except ImportError as e:
        raise DataError(f"{path}: reading {fmt} needs an extra package: {e}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, ValueError) as e:
        msg = str(e).strip().splitlines()[0]
        cause = likely_cause(path, fmt, encoding, quote) if fmt in ("csv", "tsv") else None
        raise DataError(f"{path}: malformed {fmt}: {cause or msg}") from None
    if len(df) == 0:
        raise DataError(f"{path}: no data rows")
    if fmt in ("csv", "tsv"):
        _check_ragged(path, fmt, encoding, len(df.columns), quote)
    return df


def _read_jsonl(path: Path, encoding: str):
    """One JSON object per line (blank lines skipped); a bad line is named by its line number. The frame's index is
    the 0-based line number, so row numbers in later errors are line numbers."""
    import json

    import pandas as pd

    rows, lines = [], []
    with path.open(encoding=encoding, newline="") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise DataError(f"{path}: malformed jsonl: line {n}: {getattr(e, 'msg', e)} (column "
                                f"{getattr(e, 'colno', '?')})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}: malformed jsonl: line {n} is a JSON {type(obj).__name__}, not an object")
            rows.append(obj)
            lines.append(n - 1)
    return pd.DataFrame(rows, index=lines)


def _bad_byte(path: Path, encoding: str) -> str:
    """Where a file stops being ``encoding`` text: "line L, byte offset B" (decoders read in chunks, so the offset a
    parser reports is relative to its chunk; this decodes the whole file once to find the real one)."""
    raw = path.read_bytes()
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return f"line {line}, byte offset {e.start}: {raw[e.start:e.start + 1]!r}"
    return "a byte that does not decode"


def _check_ragged(path: Path, fmt: str, encoding: str, ncols: int, quoting: int = csv.QUOTE_MINIMAL) -> None:
    """pandas rejects rows with too many fields but pads short ones with empty values: reject those too."""
    try:
        with path.open(newline="", encoding=encoding, errors="replace") as f:
            reader = csv.reader(f, delimiter="\t" if fmt == "tsv" else ",", quoting=quoting)
            for row in reader:
                if row and len(row) != ncols:
                    raise DataError(f"{path}: malformed {fmt}: " + (likely_cause(path, fmt, encoding, quoting) or
                                    f"line {reader.line_num} has {len(row)} fields, the header has {ncols}"))
    except csv.Error:
        pass  # pandas read it; the csv module is only the second opinion (it has a field size limit)


def read_text(path: Path, encoding: str) -> str:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        text = path.read_bytes().decode(encoding)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid {encoding} text ({_bad_byte(path, encoding)}); set data.encoding") from None
    except LookupError:
        raise DataError(f"{path}: unknown encoding '{encoding}' (data.encoding)") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    return text


def _columns(df, path: Path, cols: list[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column '{missing[0]}' (data.text / data.label); columns are: {', '.join(map(str, df.columns))}"
                        + separator_hint(df.columns))


MAX_LABELS = 100_000  # as model.num_labels allows


def _first_row(path: Path) -> int:
    """The row number of the first record: line 2 of a csv / tsv (after the header), else 1."""
    return 2 if path.suffix.lower() in (".csv", ".tsv") else 1


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip())


_INTEGRAL = re.compile(r"[+-]?\d+(\.0*)?")


def label_key(v: Any) -> str:
    """A label value as compared: stripped text, with integral numbers in one spelling (1, "1", "1.0", 1.0 -> "1"),
    so a file that writes a class both ways (JSON numbers, a spreadsheet export) still has one class per value."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer() and abs(v) < 2**53:
        return str(int(v))
    text = str(v).strip()
    return str(int(text.split(".")[0])) if _INTEGRAL.fullmatch(text) and len(text) < 300 else text


def _rows(values) -> list[tuple[int, Any]]:
    """(0-based row position in the file, value): a pandas Series keeps the rows' own index (rows dropped before
    still count), a list counts from 0."""
    return list(values.items()) if hasattr(values, "items") else list(enumerate(values))


class _Labels:
    """Maps raw label values to ids, consistently across files (see :func:`label_key` for spellings)."""

    def __init__(self, names: list[str] | None, num_labels: int | None):
        self.names = names
        self.num_labels = num_labels
        if names is not None:
            seen: dict[str, str] = {}
            for n in names:
                if label_key(n) in seen:
                    raise DataError(f"data.labels: {seen[label_key(n)]!r} and {n!r} name the same class; list it once")
                seen[label_key(n)] = n

    def fit(self, values_per_file: list[tuple[Path, Any]]) -> None:
        for path, vals in values_per_file:
            for row, v in _rows(vals):
                if _is_missing(v):
                    raise DataError(f"{path}: row {row + _first_row(path)}: empty label (data.label)")
        respelt = sum(label_key(v) != str(v).strip() for _, vals in values_per_file for v in vals)
        if respelt:
            log.info("data: %d labels written as non-integral numbers (e.g. 1.0) read as the integer class (1)", respelt)
        if self.names is not None:
            return
        all_vals = [label_key(v) for _, vals in values_per_file for v in vals]
        if all(v.lstrip("-+").isdigit() for v in all_vals):
            hi = max(int(v) for v in all_vals)
            if self.num_labels is None and hi >= MAX_LABELS:
                path, row = next((p, r) for p, vals in values_per_file for r, v in _rows(vals) if int(label_key(v)) == hi)
                raise DataError(f"{path}: row {row + _first_row(path)}: label {hi} is not a class id below {MAX_LABELS}; "
                                "set model.num_labels or data.labels")
            n = self.num_labels or hi + 1
            self.names = [str(i) for i in range(n)]
            self._ints = True
        else:
            self.names = sorted(set(all_vals))

    def encode(self, path: Path, values) -> np.ndarray:
        assert self.names is not None
        index = {label_key(n): i for i, n in enumerate(self.names)}
        out = np.empty(len(values), dtype=np.int64)
        for i, (row, v) in enumerate(_rows(values)):
            key = label_key(v)
            if key not in index:
                where = f"{path}: row {row + _first_row(path)}"
                if key.lstrip("-").isdigit() and getattr(self, "_ints", False):
                    raise DataError(f"{where}: label {key} is outside 0..{len(self.names) - 1} (model.num_labels / data.labels)")
                raise DataError(f"{where}: label {key!r} is not one of data.labels {self.names}")
            out[i] = index[key]
        return out


def check_texts(df, path: Path, cols: list[str], allow_empty: bool = False) -> None:
    """Texts are strings, the same rule for csv, tsv, jsonl and parquet: a missing, empty or blank text is refused with
    the number of such rows and the first one (``allow_empty``: unlabelled text, where blank rows are skipped later);
    a text that is not a string (a JSON number or list, a numeric parquet column) is refused with its row."""
    empty: list[int] = []
    for c in cols:
        for row, v in df[c].items():
            if _is_missing(v):
                empty.append(row)
            elif not isinstance(v, str):
                v = v.item() if isinstance(v, np.generic) else v
                kind = {bool: "boolean", int: "number", float: "number", list: "list", dict: "mapping"}.get(type(v), type(v).__name__)
                raise DataError(f"{path}: row {row + _first_row(path)}: text column '{c}' holds a {kind} ({repr(v)[:40]}), "
                                "not a string")
    if empty and not allow_empty:
        empty = sorted(set(empty))
        raise DataError(f"{path}: {len(empty)} row(s) with an empty text in {', '.join(repr(c) for c in cols)} (first: row "
                        f"{empty[0] + _first_row(path)}); fill them in or remove them")


def _split_off(split: Split, frac: float | int, seed: int, stratify: bool) -> tuple[Split, Split]:
    """Cut ``frac`` of the rows (a fraction, or a count when an int) off ``split``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(split))
    strat = split.labels if (stratify and split.labels is not None and len(split)) else None
    if strat is not None:
        counts = np.bincount(strat)
        if counts[counts > 0].min() < 2:  # a class with one example cannot be on both sides
            strat = None
    try:
        try:
            keep, out = train_test_split(idx, test_size=frac, random_state=seed, stratify=strat)
        except ValueError:
            if strat is None:
                raise
            # e.g. fewer dev rows than classes: stratification is impossible, a random cut is not
            log.warning("cannot stratify a %s-row split of %d rows; splitting at random", frac, len(split))
            keep, out = train_test_split(idx, test_size=frac, random_state=seed)
    except ValueError as e:
        raise DataError(f"cannot split {len(split)} rows into train/dev/test: {e}") from None
    return split.take(sorted(keep)), split.take(sorted(out))


def _subsample(split: Split, n: int | None, seed: int) -> Split:
    if n is None or n >= len(split):
        return split
    rng = np.random.default_rng(seed)
    return split.take(sorted(rng.choice(len(split), size=n, replace=False)))


def _cut_validation(train: Split, frac: float, max_train: int | None, seed: int, stratify: bool,
                    cap: int = 2000) -> tuple[Split, Split]:
    """Hold out ``frac`` of the training rows used (stratified, at most ``cap``) as the selection split.

    When ``max_train`` leaves enough rows unused, the validation rows come from those and the training rows are
    exactly the ones ``_subsample`` picks without a validation split; otherwise they are cut from train."""
    used = min(len(train), max_train or len(train))
    k = min(cap, max(1, round(used * frac)))
    if max_train and len(train) - max_train >= k:
        rng = np.random.default_rng(seed)  # the same draw as _subsample
        chosen = np.sort(rng.choice(len(train), size=max_train, replace=False))
        rest = np.setdiff1d(np.arange(len(train)), chosen)
        _, val = _split_off(train.take(rest), k, seed, stratify)
        return train.take(chosen), val
    if k >= len(train):
        raise DataError(f"data.train: {len(train)} rows are too few to hold out a validation split "
                        "(data.split.validation); add rows or set data.split.select_on: dev")
    return _split_off(train, k, seed, stratify)


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


def concat(a: Encoded, b: Encoded, b_label: int = -100) -> Encoded:
    """``a`` then ``b``; rows of ``b`` without labels get ``b_label`` (ignored by the hard-label loss)."""
    la = a.labels if a.labels is not None else np.full(len(a), b_label, dtype=np.int64)
    lb = b.labels if b.labels is not None else np.full(len(b), b_label, dtype=np.int64)
    return Encoded(a.features + b.features, np.concatenate([la, lb]))


def load_lm_text(cfg: DataConfig, base_dir: Path | None) -> dict[str, str]:
    """Raw text per split for a causal LM."""
    out: dict[str, str] = {}
    for name in ("train", "dev", "test"):
        spec = getattr(cfg, name)
        if not spec:
            continue
        try:
            path = Path(resolve(spec, base_dir, f"data.{name}"))
        except CompressorError as e:
            raise DataError(str(e)) from None
        if _fmt(path, cfg.format) == "text":
            out[name] = read_text(path, cfg.encoding)
        else:
            col = cfg.text if isinstance(cfg.text, str) else cfg.text[0]
            df = read_table(path, cfg.format, cfg.encoding, cfg.quoting)
            _columns(df, path, [col])
            check_texts(df, path, [col], allow_empty=True)
            out[name] = "\n\n".join(v for v in df[col] if not _is_missing(v))
    return out


def lm_blocks(text: str, tokenizer, block: int) -> np.ndarray:
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    n = len(ids) // block
    if n == 0:
        raise DataError(f"text holds {len(ids)} tokens, fewer than one block of data.max_length={block}")
    return np.asarray(ids[: n * block], dtype=np.int64).reshape(n, block)


def load_causal_lm(cfg: DataConfig, base_dir: Path | None, tokenizer, seed: int, validation: float = 0.0) -> dict[str, np.ndarray]:
    """Blocks per split; with ``validation`` > 0 a contiguous tail of the training blocks is the selection split."""
    texts = load_lm_text(cfg, base_dir)
    blocks = {name: lm_blocks(t, tokenizer, cfg.max_length) for name, t in texts.items()}
    total = len(blocks["train"])  # split fractions are of the whole file
    for name, frac in (("test", cfg.split.test), ("dev", cfg.split.dev)):
        if name not in blocks and frac > 0:
            tr = blocks["train"]
            k = max(1, int(round(total * frac)))
            if k >= len(tr):
                raise DataError(f"data.train: {len(tr)} blocks are too few to split off {name}")
            blocks["train"], blocks[name] = tr[:-k], tr[-k:]  # contiguous tail: no overlap
    if validation > 0:
        tr = blocks["train"]
        k = min(cfg.split.validation_max, max(1, int(round(len(tr) * validation))))
        if k >= len(tr):
            raise DataError(f"data.train: {len(tr)} blocks are too few to hold out a validation split "
                            "(data.split.validation); add text or set data.split.select_on: dev")
        blocks["train"], blocks["validation"] = tr[:-k], tr[-k:]
    rng = np.random.default_rng(seed)
    if cfg.max_train_samples and cfg.max_train_samples < len(blocks["train"]):
        log.info("data.train: %d blocks of %d tokens, %d left out by data.max_train_samples, %d used", len(blocks["train"]),
                 cfg.max_length, len(blocks["train"]) - cfg.max_train_samples, cfg.max_train_samples)
        blocks["train"] = blocks["train"][np.sort(rng.choice(len(blocks["train"]), cfg.max_train_samples, replace=False))]
    for name in ("validation", "dev", "test"):
        if name in blocks and cfg.max_eval_samples:
            blocks[name] = blocks[name][: cfg.max_eval_samples]
    return blocks


# ------------------------------------------------------------------ batching
class Encoded:
    """A tokenized split: one dict of id lists per example."""

    def __init__(self, features: list[dict[str, list[int]]], labels: np.ndarray | None):
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.features[i])
        if self.labels is not None:
            item["labels"] = int(self.labels[i])
        return item


def encode_split(split: Split, tokenizer, max_length: int) -> Encoded:
    if split.texts and isinstance(split.texts[0], tuple):
        a, b = zip(*split.texts)
        enc = tokenizer(list(a), list(b), truncation=True, max_length=max_length)
    else:
        enc = tokenizer(list(split.texts), truncation=True, max_length=max_length)
    keys = list(enc.keys())
    feats = [{k: enc[k][i] for k in keys} for i in range(len(split))]
    return Encoded(feats, split.labels)


def encode_blocks(blocks: np.ndarray) -> Encoded:
    feats = [{"input_ids": b.tolist(), "attention_mask": [1] * len(b)} for b in blocks]
    return Encoded(feats, None)


def make_loader(encoded: Encoded, tokenizer, batch_size: int, shuffle: bool, seed: int = 0, task: str = "sequence-classification"):
    """A DataLoader with dynamic padding. Eval loaders sort by length to waste less padding."""
    import torch
    from torch.utils.data import DataLoader

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        batch = tokenizer.pad([{k: v for k, v in it.items() if k != "labels"} for it in items], return_tensors="pt")
        if task == "causal-lm":
            labels = batch["input_ids"].clone()
            labels[batch["attention_mask"] == 0] = -100
            batch["labels"] = labels
        elif "labels" in items[0]:
            batch["labels"] = torch.tensor([it["labels"] for it in items], dtype=torch.long)
        return dict(batch)

    if shuffle:
        gen = torch.Generator()
        gen.manual_seed(seed)
        return DataLoader(encoded, batch_size=batch_size, shuffle=True, collate_fn=collate, generator=gen)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.features[i]["input_ids"]))
    # a generator of its own: iterating an evaluation loader must not draw from the global RNG that training uses
    # (an evaluation between two steps would otherwise change the next step's dropout, and an interrupted one the resume)
    return DataLoader(torch.utils.data.Subset(encoded, order), batch_size=batch_size, shuffle=False, collate_fn=collate,
                      generator=torch.Generator().manual_seed(0))
