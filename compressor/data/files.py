"""Reading data files: tables (csv / tsv / jsonl / parquet) into pandas frames, plain text, and the checks every
table gets (ragged rows, missing columns, texts that are not strings). Every problem is a one-line DataError."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compressor.core.errors import DataError
from compressor.core.quoting import likely_cause, table_quoting
from compressor.data.layout import LayoutError, sniff_sep


def _fmt(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffixes = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".jsonl": "jsonl",
        ".json": "jsonl",
        ".parquet": "parquet",
        ".txt": "text",
        ".raw": "text",
        ".tokens": "text",
    }
    try:
        return suffixes[path.suffix.lower()]
    except KeyError:
        raise DataError(f"{path}: cannot tell the format from '{path.suffix}'; set data.format") from None


@dataclass(frozen=True)
class Source:
    """What errors name for a table's rows: the file (or dataset) and the number its first record has."""

    name: str
    first_row: int = 1

    def __str__(self) -> str:
        return self.name


DELIMITED_DEFAULT = {"csv": ",", "tsv": "\t", "text": None}


def read_table(
    path: Path,
    fmt: str,
    encoding: str,
    quoting: str = "auto",
    sep: str | None = None,
    header: bool = True,
    columns: list[str] | None = None,
):
    """Read a table with pandas, turning every parser complaint into a one-line DataError.

    ``quoting`` (auto | csv | none) is how fields in quotes are read: see ``compressor.core.quoting``. ``sep``: the
    separator of a delimited file (csv / tsv / txt), sniffed when None (see ``compressor.data.layout``); ``header``
    false: the first row is data, columns are numbered from 0, or named by ``columns``. The frame's
    ``attrs["first_row"]`` is the number of its first record as errors count rows (2 after a header line)."""
    import pandas as pd

    kind = _fmt(path, fmt)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    if kind not in ("jsonl", "parquet") and kind not in DELIMITED_DEFAULT:
        raise DataError(f"{path}: format '{kind}' is not a table")
    if kind == "text" and fmt == "text" and sep is None:
        raise DataError(f"{path}: format 'text' is not a table; set data.sep to read it as a table of separated columns")
    delimited = kind in DELIMITED_DEFAULT
    if not delimited and (not header or columns):
        raise LayoutError(
            "data.header" if not header else "data.columns",
            f"{path} is {kind}, whose columns have names; header: false and columns are for csv / tsv / txt tables",
        )
    quote = csv.QUOTE_MINIMAL
    try:
        if delimited:
            sep, kind = _separator(path, kind, encoding, sep)
            quote = table_quoting(path, kind, encoding, quoting, sep)
            df = pd.read_csv(
                path, sep=sep, encoding=encoding, dtype=str, keep_default_na=False, quoting=quote, header=0 if header else None
            )
        elif kind == "jsonl":
            df = _read_jsonl(path, encoding)
        else:
            df = pd.read_parquet(path)
    except UnicodeDecodeError:
        raise DataError(
            f"{path}: not valid {encoding} text ({_bad_byte(path, encoding)}); set data.encoding (e.g. latin-1)"
        ) from None
    except LookupError:
        raise DataError(f"{path}: unknown encoding '{encoding}' (data.encoding)") from None
    except ImportError as e:
        raise DataError(f"{path}: reading {kind} needs an extra package: {e}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (pd.errors.ParserError, ValueError) as e:
        msg = str(e).strip().splitlines()[0]
        cause = likely_cause(path, kind, encoding, quote, sep) if delimited else None
        raise DataError(f"{path}: malformed {kind}: {cause or msg}") from None
    if len(df) == 0:
        raise DataError(f"{path}: no data rows")
    if delimited:
        _check_ragged(path, kind, encoding, len(df.columns), quote, sep)
        if columns:
            if len(columns) != len(df.columns):
                raise LayoutError(
                    "data.columns",
                    f"names {len(columns)} column{'s' if len(columns) != 1 else ''} but {path} has {len(df.columns)}",
                )
            df.columns = list(columns)
    df.attrs["first_row"] = 2 if delimited and header else 1
    return df


def _separator(path: Path, kind: str, encoding: str, sep: str | None) -> tuple[str, str]:
    """(separator, csv or tsv) of a delimited file: ``sep`` when given, else sniffed."""
    sep = sep or sniff_sep(path, encoding, DELIMITED_DEFAULT[kind])
    if sep is None:
        raise LayoutError(
            "data.sep",
            f"cannot tell what separates the columns of {path} (tried comma, tab, "
            "semicolon, pipe); set data.sep, or data.format: text for plain text",
        )
    return sep, {",": "csv", "\t": "tsv"}.get(sep, "csv" if kind == "text" else kind)


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
                raise DataError(
                    f"{path}: malformed jsonl: line {n}: {getattr(e, 'msg', e)} (column {getattr(e, 'colno', '?')})"
                ) from None
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
        return f"line {line}, byte offset {e.start}: {raw[e.start : e.start + 1]!r}"
    return "a byte that does not decode"


def _check_ragged(
    path: Path, fmt: str, encoding: str, ncols: int, quoting: int = csv.QUOTE_MINIMAL, sep: str | None = None
) -> None:
    """pandas rejects rows with too many fields but pads short ones with empty values: reject those too."""
    sep = sep or ("\t" if fmt == "tsv" else ",")
    try:
        with path.open(newline="", encoding=encoding, errors="replace") as f:
            reader = csv.reader(f, delimiter=sep, quoting=quoting)
            for row in reader:
                if row and len(row) != ncols:
                    raise DataError(
                        f"{path}: malformed {fmt}: "
                        + (
                            likely_cause(path, fmt, encoding, quoting, sep)
                            or f"line {reader.line_num} has {len(row)} fields, the header has {ncols}"
                        )
                    )
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


def _first_row(path: Path | Source) -> int:
    """The row number of the first record: a Source's own, else line 2 of a csv / tsv (after the header), else 1."""
    if isinstance(path, Source):
        return path.first_row
    return 2 if path.suffix.lower() in (".csv", ".tsv") else 1


def source_of(path: Path, df) -> Source:
    """The Source errors name for the rows of ``df`` read from ``path`` by :func:`read_table`."""
    return Source(str(path), df.attrs.get("first_row", _first_row(path)))


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip())


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
                kind = {bool: "boolean", int: "number", float: "number", list: "list", dict: "mapping"}.get(
                    type(v), type(v).__name__
                )
                raise DataError(
                    f"{path}: row {row + _first_row(path)}: text column '{c}' holds a {kind} ({repr(v)[:40]}), not a string"
                )
    if empty and not allow_empty:
        empty = sorted(set(empty))
        raise DataError(
            f"{path}: {len(empty)} row(s) with an empty text in {', '.join(repr(c) for c in cols)} (first: row "
            f"{empty[0] + _first_row(path)}); fill them in or remove them"
        )
