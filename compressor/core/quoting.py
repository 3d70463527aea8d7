"""Quoting in csv / tsv tables: detect it, and name the likely cause when a table does not parse.

CSV-style quoting (``"a, b"``, doubled quotes ``""`` inside a quoted field, a newline inside quotes) is standard in .csv files and
common in .tsv files too. ``quoting: auto`` honours it in a .tsv file when the whole file parses cleanly that
way (Python's csv module in strict mode, every record with the header's field count); otherwise quotes are read
literally, as plain tab-separated text.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

log = logging.getLogger("compressor")

SEPARATORS = {"csv": ",", "tsv": "\t"}


def _open(path: Path, encoding: str):
    return path.open(newline="", encoding=encoding, errors="replace")


def scan(path: Path, sep: str, quoting: int, encoding: str) -> tuple[int, int, str] | None:
    """The first record that does not parse, or whose field count differs from the header's:
    (line, fields, reason); None when every record is fine."""
    csv.field_size_limit(2**31 - 1)
    with _open(path, encoding) as f:
        reader = csv.reader(f, delimiter=sep, quoting=quoting, strict=quoting != csv.QUOTE_NONE)
        ncols = None
        try:
            for row in reader:
                if not row:
                    continue
                if ncols is None:
                    ncols = len(row)
                elif len(row) != ncols:
                    return reader.line_num, len(row), f"has {len(row)} fields, the header has {ncols}"
        except csv.Error as e:
            return reader.line_num, 0, str(e)
    return None


def _quoted_fields(path: Path, sep: str, encoding: str) -> bool:
    """Does any field start with a quote (the sign of CSV-style quoting)?"""
    with _open(path, encoding) as f:
        for line in f:
            if line.startswith('"') or f'{sep}"' in line:
                return True
    return False


def table_quoting(path: Path, fmt: str, encoding: str, setting: str = "auto", sep: str | None = None) -> int:
    """The csv-module quoting constant to read ``path`` with (``setting``: auto | csv | none). ``sep``: the
    separator when it is not the format's own (a .csv separated by ';' is read as cautiously as a .tsv)."""
    sep = sep or SEPARATORS[fmt]
    if setting == "csv" or (setting == "auto" and fmt == "csv" and sep == ","):
        return csv.QUOTE_MINIMAL
    if setting == "none":
        return csv.QUOTE_NONE
    if not _quoted_fields(path, sep, encoding):
        return csv.QUOTE_NONE
    if scan(path, sep, csv.QUOTE_MINIMAL, encoding) is None:
        log.info("%s: fields quoted CSV-style: read with quoting (data.quoting: none reads quotes literally)", path)
        return csv.QUOTE_MINIMAL
    return csv.QUOTE_NONE


def _line(path: Path, encoding: str, number: int) -> str:
    with _open(path, encoding) as f:
        for i, line in enumerate(f, 1):
            if i == number:
                return line
    return ""


def likely_cause(path: Path, fmt: str, encoding: str, quoting: int, sep: str | None = None) -> str | None:
    """One phrase naming the first bad line and its likely cause (quoting, separator or header), or None."""
    sep = sep or SEPARATORS.get(fmt)
    if sep is None:
        return None
    try:
        bad = scan(path, sep, quoting, encoding)
    except (OSError, LookupError):
        return None
    if bad is None:
        return None
    number, fields, reason = bad
    text = _line(path, encoding, number)
    with _open(path, encoding) as f:
        header = f.readline()
    other = "\t" if sep == "," else ","
    name = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}
    name = {c: name.get(c, repr(c)) for c in (sep, other)}
    if sep not in header and other in header:
        cause = f"separator: the header has no {name[sep]} but has {name[other]}s; " + (
            f"set data.format: {'tsv' if other == chr(9) else 'csv'}" if sep in ",\t" else f"set data.sep: {other!r}"
        )
    elif '"' in text or fields == 0:
        alt = "none" if quoting != csv.QUOTE_NONE else "csv"
        cause = (
            f"quoting: a '\"' in or before this line opens or closes a quoted field; set data.quoting: {alt} "
            f"(or --quoting {alt}) if quotes {'are plain text' if alt == 'none' else 'enclose fields'} in this file"
        )
    elif header.count(sep) < text.count(sep):
        cause = (
            f"separator: this line has more {name[sep]}s than the header; quote the field that contains one, or check the header"
        )
    else:
        cause = f"header: this line has fewer {name[sep]}-separated fields than the header"
    where = f"line {number} {reason}" if reason.startswith("has ") else f"line {number}: {reason}"
    return f"{where}; likely cause: {cause}"


def separator_hint(columns) -> str:
    """For a missing-column error: a header read as one column that holds another separator."""
    for c in map(str, columns):
        for sep, fmt in (("\t", "tsv"), (",", "csv"), (";", None), ("|", None)):
            if sep in c:
                what = {"\t": "a tab", ",": "a comma", ";": "a semicolon", "|": "a pipe"}[sep]
                fix = f"set data.format: {fmt}" if fmt else f"set data.sep: {sep!r}"
                return f"; likely cause: separator: the header column {c!r} contains {what}, {fix}"
    return ""
