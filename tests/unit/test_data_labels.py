"""Data read the same way whatever the file's spelling (issue 23): label spellings, empty and non-string texts,
error locations by line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from compressor.core.errors import DataError
from compressor.data import label_key, load_classification
from compressor.recipe.schema import DataConfig

ROWS = [(f"sentence number {i} {'good' if i % 3 else 'bad'}", i % 3) for i in range(60)]


def _load(tmp_path: Path, name: str, **cfg):
    return load_classification(DataConfig(train=name, split={"dev": 0.0}, **cfg), tmp_path, 0)


def _err(tmp_path: Path, name: str, **cfg) -> str:
    with pytest.raises(DataError) as info:
        _load(tmp_path, name, **cfg)
    assert "\n" not in str(info.value)
    return str(info.value)


def _csv(path: Path, rows) -> None:
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)


def _jsonl(path: Path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_label_key_unifies_integral_spellings():
    for v in (1, "1", "1.0", 1.0, " 1 ", "+1", "01", "1.00"):
        assert label_key(v) == "1", v
    assert label_key("1.5") == "1.5" and label_key(-2.0) == "-2" and label_key("pos") == "pos"
    assert label_key(float("nan")) == "nan" and label_key("1e3") == "1e3"  # not unified: not an integer spelling


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_one_and_one_point_zero_are_one_class(tmp_path, fmt):
    """1 and 1.0 in one file made two classes (6 for 3)."""
    spelt = [(t, [str(y), f"{y}.0"][i % 2] if fmt == "csv" else [y, float(y)][i % 2]) for i, (t, y) in enumerate(ROWS)]
    if fmt == "csv":
        _csv(tmp_path / "a.csv", spelt)
    else:
        _jsonl(tmp_path / "a.jsonl", [{"text": t, "label": y} for t, y in spelt])
    ds = _load(tmp_path, f"a.{fmt}")
    assert ds.label_names == ["0", "1", "2"]
    assert list(ds.splits["train"].labels) == [y for _, y in ROWS]


def test_named_labels_match_any_integral_spelling(tmp_path):
    _csv(tmp_path / "a.csv", [(t, f"{y}.0") for t, y in ROWS])
    ds = _load(tmp_path, "a.csv", labels=["0", "1", "2"])
    assert list(ds.splits["train"].labels) == [y for _, y in ROWS]
    assert "data.labels: '1' and '1.0' name the same class" in _err(tmp_path, "a.csv", labels=["0", "1", "1.0"])


def _with_empty_texts(rows):
    out = list(rows)
    out[4] = ("", out[4][1])
    out[9] = ("   ", out[9][1])
    out[17] = (None, out[17][1])
    return out


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_empty_texts_refused_alike_with_a_count(tmp_path, fmt):
    """An empty text in CSV was accepted while null in JSONL was refused."""
    rows = _with_empty_texts(ROWS)
    if fmt == "csv":
        _csv(tmp_path / "a.csv", rows)
        first = 6  # line 6: the header, then rows 0..3
    else:
        _jsonl(tmp_path / "a.jsonl", [{"text": t, "label": y} for t, y in rows])
        first = 5
    msg = _err(tmp_path, f"a.{fmt}")
    assert f"a.{fmt}: 3 row(s) with an empty text in 'text' (first: row {first}); fill them in or remove them" in msg


def test_row_numbers_are_line_numbers_in_jsonl_with_blank_lines(tmp_path):
    lines = [json.dumps({"text": t, "label": y}) for t, y in ROWS]
    lines[30] = json.dumps({"text": "x", "label": ""})
    lines.insert(10, "")
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    assert "a.jsonl: row 32: empty label" in _err(tmp_path, "a.jsonl")


@pytest.mark.parametrize(
    "value, kind",
    [(42, "number (42)"), (3.5, "number (3.5)"), (["a", "b"], "list (['a', 'b'])"), ({"x": 1}, "mapping"), (True, "boolean")],
)
def test_non_string_jsonl_text_refused(tmp_path, value, kind):
    records = [{"text": t, "label": y} for t, y in ROWS]
    records[7]["text"] = value
    _jsonl(tmp_path / "a.jsonl", records)
    msg = _err(tmp_path, "a.jsonl")
    assert f"a.jsonl: row 8: text column 'text' holds a {kind}" in msg and "not a string" in msg


def test_corrupt_jsonl_line_is_named_by_line_number(tmp_path):
    lines = [json.dumps({"text": t, "label": y}) for t, y in ROWS]
    lines[40] = '{"text": "broken", "label": }'
    lines.insert(20, "")  # blank lines are skipped but still counted
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    assert "a.jsonl: malformed jsonl: line 42: Expecting value" in _err(tmp_path, "a.jsonl")
    (tmp_path / "b.jsonl").write_text("\n".join(lines[:5] + ["[1, 2]"]) + "\n")
    assert "b.jsonl: malformed jsonl: line 6 is a JSON list, not an object" in _err(tmp_path, "b.jsonl")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "txt"])
def test_utf8_error_gives_line_and_byte_offset(tmp_path, fmt):
    """pandas decodes in chunks and reported "byte 3" for a bad byte at offset 1471."""
    if fmt == "txt":
        from compressor.data import read_text

        body = "".join(f"{t}\n" for t, _ in ROWS).encode()
    elif fmt == "csv":
        body = ("text,label\n" + "".join(f"{t},{y}\n" for t, y in ROWS)).encode()
    else:
        body = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in ROWS).encode()
    offset = len(body) + 3
    lines = body.count(b"\n") + 1
    data = body + b"caf\xe9 au lait" + (b",1\n" if fmt == "csv" else b"\n")
    if fmt == "jsonl":
        data = body + b'{"text": "caf\xe9", "label": 1}\n'
        offset = len(body) + len(b'{"text": "caf')
    (tmp_path / f"a.{fmt}").write_bytes(data)
    if fmt == "txt":
        with pytest.raises(DataError) as info:
            read_text(tmp_path / "a.txt", "utf-8")
        msg = str(info.value)
    else:
        msg = _err(tmp_path, f"a.{fmt}")
    assert f"not valid utf-8 text (line {lines}, byte offset {offset}: b'\\xe9')" in msg, msg
