"""One way in for every data field: a table file or a Hugging Face dataset (folder, .arrow file, hf:NAME), read with
the recipe's layout (data.sep / header / columns) into a frame whose columns are then picked by name or position.

``check_layout`` is the cheap part of it that ``validate`` runs: it reads the first records (or a dataset's saved
features) only, and names the recipe field a bad layout setting is in.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor.core.errors import CompressorError, DataError
from compressor.data import hf
from compressor.data.files import DELIMITED_DEFAULT, Source, _fmt, read_table, source_of
from compressor.data.layout import LayoutError, pick_columns, sniff_sep

SPLIT_FIELDS = ("train", "dev", "test", "calibration")


@dataclass
class Table:
    """Rows of one data field: the frame, what errors call it, and the ClassLabel names of a dataset's columns."""

    df: Any
    source: Source
    class_names: dict[str, list[str]] = field(default_factory=dict)


def _resolve(spec: str, base_dir: Path | None, field_name: str) -> Path:
    from compressor.models import resolve

    try:
        return Path(resolve(spec, base_dir, field_name))
    except CompressorError as e:
        raise DataError(str(e)) from None


def _layout_unused(cfg, where: str) -> None:
    """sep / header / columns describe delimited text; a dataset's columns have names of their own."""
    for name, unset in (("sep", None), ("header", True), ("columns", None)):
        if getattr(cfg, name, unset) != unset:
            raise LayoutError(
                f"data.{name}",
                f"{where} is a Hugging Face dataset, whose columns have names; {name} is for csv / tsv / txt tables",
            )


def is_dataset_spec(spec: str, base_dir: Path | None, field_name: str) -> bool:
    return hf.is_hub(spec) or hf.is_dataset(_resolve(spec, base_dir, field_name))


def open_table(spec: str, cfg, base_dir: Path | None, field_name: str, fmt: str | None = None) -> Table:
    """The rows ``spec`` (a recipe path, pkg://, a dataset folder or hf:NAME) holds, for the recipe field ``field_name``.
    ``fmt`` overrides ``cfg.format`` (a transfer set has its own)."""
    if hf.is_hub(spec):
        frame = hf.load_hub(spec, field_name)
        return Table(frame.df, Source(frame.name, 0), frame.class_names)
    path = _resolve(spec, base_dir, field_name)
    if hf.is_dataset(path):
        _layout_unused(cfg, str(path))
        frame = hf.load_local(path, field_name)
        return Table(frame.df, Source(frame.name, 0), frame.class_names)
    df = read_table(
        path,
        fmt or cfg.format,
        cfg.encoding,
        getattr(cfg, "quoting", "auto"),
        getattr(cfg, "sep", None),
        getattr(cfg, "header", True),
        getattr(cfg, "columns", None),
    )
    return Table(df, source_of(path, df))


def text_specs(cfg) -> list:
    return list(cfg.text) if isinstance(cfg.text, list) else [cfg.text]


def text_keys(table: Table, cfg, field_name: str = "data.text") -> list:
    """The frame's keys of the text column(s) ``cfg.text`` names (by name or position)."""
    return pick_columns(table.df, table.source, text_specs(cfg), field_name)


# ------------------------------------------------------------------ validate: the first records only
def _first_record(path: Path, encoding: str, sep: str) -> list[str]:
    csv.field_size_limit(2**31 - 1)
    with path.open(newline="", encoding=encoding, errors="replace") as f:
        for row in csv.reader(f, delimiter=sep):
            if row:
                return row
    return []


def _saved_features(folder: Path, field_name: str) -> list[str] | None:
    """Column names of a save_to_disk folder, from its dataset_info.json (a DatasetDict: the field's split)."""
    if hf.saved_kind(folder) == "dict":
        splits = json.loads((folder / "dataset_dict.json").read_text()).get("splits", [])
        wanted = hf.SPLITS.get(field_name.rsplit(".", 1)[-1], ())
        name = next((s for s in wanted if s in splits), splits[0] if len(splits) == 1 else None)
        if name is None:
            raise LayoutError(
                field_name,
                f"{folder} holds the splits {', '.join(splits)}, none named "
                f"{' / '.join(repr(w) for w in wanted)}; name the split's own folder",
            )
        folder = folder / name
    try:
        return list(json.loads((folder / "dataset_info.json").read_text()).get("features") or {})
    except (OSError, ValueError):
        return None


def peek_columns(path: Path, cfg, task: str) -> list | None:
    """The column names (or positions) of a table file from its first record; None where that cannot be told
    cheaply (the run reads the whole file and reports)."""
    try:
        kind = _fmt(path, cfg.format)
    except DataError:
        return None
    sep = getattr(cfg, "sep", None)
    if kind == "text" and (task == "causal-lm" or cfg.format == "text") and sep is None:
        return None  # plain text
    if kind in DELIMITED_DEFAULT:
        sep = sep or sniff_sep(path, cfg.encoding, DELIMITED_DEFAULT[kind])
        if sep is None:
            raise LayoutError(
                "data.sep",
                f"cannot tell what separates the columns of {path} (tried comma, tab, "
                "semicolon, pipe); set data.sep, or data.format: text for plain text",
            )
        first = _first_record(path, cfg.encoding, sep)
        return first if getattr(cfg, "header", True) else list(range(len(first)))
    if kind == "parquet":
        try:
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        except Exception:
            return None
    return None


def _check_columns(columns: list, cfg, where: str, task: str) -> None:
    """Positions in range, and names where a headerless file's columns are named by data.columns."""
    n = len(columns)
    if getattr(cfg, "columns", None):
        if len(cfg.columns) != n:
            raise LayoutError(
                "data.columns", f"names {len(cfg.columns)} column{'s' if len(cfg.columns) != 1 else ''} but {where} has {n}"
            )
        columns = list(cfg.columns)
    checks = [("data.text", s) for s in text_specs(cfg)]
    if task != "causal-lm" and cfg.label is not None:
        checks.append(("data.label", cfg.label))
    headerless = not getattr(cfg, "header", True) and not getattr(cfg, "columns", None)
    for field_name, spec in checks:
        if isinstance(spec, int) and spec >= n:
            raise LayoutError(
                field_name, f"column {spec} is out of range: {where} has {n} column{'s' if n != 1 else ''} (positions 0..{n - 1})"
            )
        if isinstance(spec, str) and headerless:
            raise LayoutError(
                field_name,
                f"{spec!r} names no column: {where} is read without a header row (header: "
                f"false); give a position ({field_name.split('.')[1]}: 0) or name the columns "
                "(data.columns)",
            )
        if isinstance(spec, str) and getattr(cfg, "columns", None) and spec not in columns:
            raise LayoutError(field_name, f"{spec!r} is not one of data.columns ({', '.join(columns)})")


def _check_hub(spec: str, field_name: str) -> None:
    """A Hub dataset: the Hub must be reachable, or (offline mode) the dataset in the local cache."""
    hf.parse_hub(spec, field_name)
    why = hf.hub_unreachable()
    try:
        if why and not why.startswith("offline mode"):
            raise DataError(hf.hub_message(spec, field_name, why))
        if why:
            hf.load_hub(spec, field_name)  # offline: only a cached copy can serve, and loading it is local
    except DataError as e:
        raise LayoutError(field_name, str(e).removeprefix(f"{field_name}: ")) from None


def check_layout(cfg, base_dir: Path | None, task: str) -> None:
    """Raise a LayoutError (field, detail) for a layout setting that does not fit a data file, from its first records:
    the separator, a column position out of range, data.columns of the wrong length, a folder that is no dataset,
    an unreachable Hub. Missing files are check_paths' business; everything else the run reports."""
    for name in SPLIT_FIELDS:
        spec = getattr(cfg, name, None)
        if not spec:
            continue
        field_name = f"data.{name}"
        if hf.is_hub(spec):
            _check_hub(spec, field_name)
            continue
        try:
            path = _resolve(spec, base_dir, field_name)
        except DataError:
            continue  # check_paths names it
        if hf.is_dataset(path):
            _layout_unused(cfg, str(path))
            if path.is_dir():
                problem = hf.not_a_dataset(path)
                if problem:
                    raise LayoutError(field_name, problem)
                columns = _saved_features(path, field_name) if hf.saved_kind(path) else None
            else:
                columns = None
        else:
            columns = peek_columns(path, cfg, task)
        if columns is not None:
            _check_columns(columns, cfg, str(path), task)
