"""Label values -> class ids, the same way in every file of a run (and in ``compressor eval``)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from compressor.core.errors import DataError
from compressor.data.files import _first_row, _is_missing

log = logging.getLogger("compressor")

MAX_LABELS = 100_000  # as model.num_labels allows

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
                raise DataError(
                    f"{path}: row {row + _first_row(path)}: label {hi} is not a class id below {MAX_LABELS}; "
                    "set model.num_labels or data.labels"
                )
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
