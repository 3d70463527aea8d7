"""Table layouts: what separates the columns (``data.sep``, sniffed when unset), whether the first row is a header
(``data.header``), and columns named by the header, by ``data.columns`` or by position (``data.text: 0``).

Sniffing is conservative: the format's own separator (``,`` for .csv, tab for .tsv) is kept whenever the first
records split into the same number (> 1) of fields with it; another separator is taken only when it is the one
candidate that does, and the choice is logged. A .txt file has no separator of its own, so it is read as a table
only when one candidate is unambiguous (or ``data.sep`` names it).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from compressor.core.errors import DataError

log = logging.getLogger("compressor")

CANDIDATES = (",", "\t", ";", "|")
SAMPLE_RECORDS = 50  # records read to sniff a separator
NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe", " ": "space"}


class LayoutError(DataError):
    """A layout setting that does not fit the data: ``field`` is the recipe key (data.sep, data.label, ...) to fix."""

    def __init__(self, field: str, detail: str | None = None):
        if detail is None:  # one message, already "field: detail" (re-raised with other wording)
            field, _, detail = field.partition(": ")
        self.field, self.detail = field, detail
        super().__init__(f"{field}: {detail}")


def sep_name(sep: str) -> str:
    return NAMES.get(sep, repr(sep))


def _field_counts(path: Path, encoding: str, sep: str, quoting: int) -> list[int]:
    counts: list[int] = []
    csv.field_size_limit(2**31 - 1)
    with path.open(newline="", encoding=encoding, errors="replace") as f:
        reader = csv.reader(f, delimiter=sep, quoting=quoting)
        try:
            for row in reader:
                if row:
                    counts.append(len(row))
                if len(counts) >= SAMPLE_RECORDS:
                    break
        except csv.Error:
            return []
    return counts


def splits_evenly(path: Path, encoding: str, sep: str) -> bool:
    """Do the first records all have the same number (> 1) of ``sep``-separated fields (quotes honoured or not)?"""
    for quoting in (csv.QUOTE_MINIMAL, csv.QUOTE_NONE):
        counts = _field_counts(path, encoding, sep, quoting)
        if counts and min(counts) == max(counts) > 1:
            return True
    return False


def sniff_sep(path: Path, encoding: str, default: str | None) -> str | None:
    """The separator to read ``path`` with: ``default`` when it splits the records evenly, else the one candidate
    that does; ``default`` (None for a .txt file) when none or several do."""
    if default is not None and splits_evenly(path, encoding, default):
        return default
    found = [c for c in CANDIDATES if c != default and splits_evenly(path, encoding, c)]
    if len(found) == 1:
        log.info(
            "%s: columns separated by %s (sniffed from the first %d records; data.sep sets it)",
            path,
            sep_name(found[0]),
            SAMPLE_RECORDS,
        )
        return found[0]
    return default


def header_hint(columns) -> str:
    """For a missing-column error: a header row that reads like data (long, with spaces) is probably the first
    record of a headerless file."""
    names = [str(c) for c in columns]
    if any(len(n) > 40 or n.count(" ") >= 3 for n in names):
        return (
            "; likely cause: the file has no header row (its first row reads like data): set data.header: false "
            "and give columns by position (data.text: 0) or name them (data.columns)"
        )
    return ""


def pick_column(df, source: Any, spec: str | int, field: str) -> Any:
    """The frame's column that ``spec`` (a name, or a 0-based position) means; ``field`` names the setting."""
    from compressor.core.quoting import separator_hint

    cols = list(df.columns)
    if isinstance(spec, int) and not isinstance(spec, bool):
        if not 0 <= spec < len(cols):
            raise LayoutError(
                field,
                f"column {spec} is out of range: {source} has {len(cols)} column"
                f"{'s' if len(cols) != 1 else ''} (positions 0..{len(cols) - 1})",
            )
        return cols[spec]
    if spec in cols:
        return spec
    shown = ", ".join(map(str, cols))
    raise DataError(
        f"{source}: missing column '{spec}' ({field}); columns are: {shown}"
        + ((separator_hint(cols) if len(cols) == 1 else "") or header_hint(cols))
    )


def pick_columns(df, source: Any, specs: list, field: str) -> list:
    return [pick_column(df, source, s, field) for s in specs]
