"""Quoted csv / tsv tables read to the exact texts; parse errors name the cause; duplicates and conflicts reported."""

from __future__ import annotations

import csv

import pytest

from compressor.core.duplicates import count_lines, write_listing
from compressor.core.errors import DataError
from compressor.data import load_classification, read_table
from compressor.recipe.schema import DataConfig

# texts with an embedded separator, a doubled quote, a newline, and a quote that is plain text
TRICKY = ["a, b\tc", 'he said "hi"', "line one\nline two", "no quotes here", '"fully quoted"']


def _write(path, sep: str, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=sep, lineterminator="\n")
        w.writerow(["text", "label"])
        w.writerows(rows)


@pytest.mark.parametrize("suffix,sep", [(".csv", ","), (".tsv", "\t")])
def test_quoted_rows_read_to_the_exact_texts(tmp_path, suffix, sep):
    path = tmp_path / f"q{suffix}"
    _write(path, sep, [(t, str(i % 2)) for i, t in enumerate(TRICKY)])
    raw = path.read_text()
    assert '""hi""' in raw and '"line one\nline two"' in raw  # the writer quoted them CSV-style
    df = read_table(path, "auto", "utf-8")
    assert df["text"].tolist() == TRICKY and df["label"].tolist() == ["0", "1", "0", "1", "0"]
    ds = load_classification(DataConfig(train=str(path), split={"dev": 0.0}), None, 0)
    assert sorted(ds.splits["train"].texts) == sorted(TRICKY)


def test_tsv_quotes_inside_plain_text_stay_literal(tmp_path):
    """A .tsv whose quotes are not CSV-style (a quote in mid-field, a field starting with one but not closed
    before the tab) is read as plain tab-separated text, quotes kept."""
    path = tmp_path / "plain.tsv"
    path.write_text('text\tlabel\nshe said "no" twice\t0\n"quoted" then more\t1\n12" pipe\t0\n', encoding="utf-8")
    assert read_table(path, "auto", "utf-8")["text"].tolist() == ['she said "no" twice', '"quoted" then more', '12" pipe']


def test_quoting_option_forces_either_way(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text('text\tlabel\n"a ""b"" c"\t0\n', encoding="utf-8")
    assert read_table(path, "auto", "utf-8")["text"].tolist() == ['a "b" c']
    assert read_table(path, "auto", "utf-8", "none")["text"].tolist() == ['"a ""b"" c"']
    assert read_table(path, "auto", "utf-8", "csv")["text"].tolist() == ['a "b" c']


def test_multiline_tsv_read_literally_fails_with_the_cause(tmp_path):
    path = tmp_path / "multi.tsv"
    path.write_text('text\tlabel\nok\t0\n"first line\nsecond line"\t1\n', encoding="utf-8")
    assert read_table(path, "auto", "utf-8")["text"].tolist() == ["ok", "first line\nsecond line"]
    with pytest.raises(DataError) as e:
        read_table(path, "auto", "utf-8", "none")
    msg = str(e.value)
    assert "line 3" in msg and "likely cause: quoting" in msg and "data.quoting: csv" in msg and "\n" not in msg


def test_errors_name_separator_and_quoting(tmp_path):
    (tmp_path / "sep.csv").write_text("text,label\nfine,0\nan, unquoted comma,1\n")
    with pytest.raises(DataError) as e:
        read_table(tmp_path / "sep.csv", "auto", "utf-8")
    assert "line 3 has 3 fields, the header has 2" in str(e.value) and "likely cause: separator" in str(e.value)
    (tmp_path / "open.csv").write_text('text,label\n"never closed,0\nb,1\n')
    with pytest.raises(DataError) as e:
        read_table(tmp_path / "open.csv", "auto", "utf-8")
    assert "likely cause: quoting" in str(e.value) and "data.quoting: none" in str(e.value)
    (tmp_path / "tabs.csv").write_text("text\tlabel\nx\t0\n")  # tab the one separator that fits: sniffed, read
    assert read_table(tmp_path / "tabs.csv", "auto", "utf-8")["text"].tolist() == ["x"]
    (tmp_path / "tabs.csv").write_text("text\tlabel\nx\t0\nan odd\trow\t1\n")  # no separator fits every row
    with pytest.raises(DataError) as e:
        load_classification(DataConfig(train=str(tmp_path / "tabs.csv"), split={"dev": 0.0}), None, 0)
    assert "missing column 'text'" in str(e.value) and "data.format: tsv" in str(e.value)


# ------------------------------------------------------------------ duplicates
def _dup_files(tmp_path):
    train = [
        ("alpha", "pos"),
        ("Alpha ", "pos"),
        ("beta", "pos"),
        ("beta", "neg"),
        ("beta", "neg"),
        ("gamma", "pos"),
        ("delta", "neg"),
        ("shared", "pos"),
        ("clash", "pos"),
    ] + [(f"t{i}", "pos") for i in range(6)]
    test = [("shared", "pos"), ("clash", "neg"), ("epsilon", "neg"), ("epsilon", "neg"), ("zeta", "pos")]
    _write(tmp_path / "train.csv", ",", train)
    _write(tmp_path / "test.csv", ",", test)


def _cfg(tmp_path, **split):
    return DataConfig(
        train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv"), split={"dev": 0.0, "stratify": False, **split}
    )


def test_duplicate_and_conflict_counts_on_a_crafted_file(tmp_path):
    _dup_files(tmp_path)
    ds = load_classification(_cfg(tmp_path), None, 0)
    rep = ds.duplicates
    # repeated texts: alpha (x2), beta (x3), shared (train+test), clash (train+test), epsilon (x2 in test)
    assert rep["repeated_texts"] == 5 and rep["conflicting_texts"] == 2  # beta (pos/neg), clash (pos vs neg)
    assert rep["splits"]["train"] == {"read": 15, "duplicates": 3, "overlap": 2, "conflicts": 0, "kept": 10}
    assert rep["splits"]["test"] == {"read": 5, "duplicates": 1, "overlap": 0, "conflicts": 0, "kept": 4}
    texts = dict(zip(ds.splits["train"].texts, ds.splits["train"].labels.tolist()))
    assert texts["beta"] == ds.label_names.index("pos")  # keep-first
    assert "shared" not in texts and "clash" not in texts  # evaluation files win
    test = dict(zip(ds.splits["test"].texts, ds.splits["test"].labels.tolist()))
    assert test["clash"] == ds.label_names.index("neg")
    assert ds.counts["train"]["used"] == 10 and ds.counts["test"]["used"] == 4
    lines = count_lines(ds.counts)
    assert lines[0] == "data.train: 15 rows read, 5 dropped as duplicates, 10 used"
    write_listing(tmp_path / "duplicates.csv", ds.duplicate_rows, ds.label_names)
    with (tmp_path / "duplicates.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 + 3 + 2 + 2 + 2
    beta = [r for r in rows if r["text"] == "beta"]
    assert [r["action"] for r in beta] == ["kept", "duplicate", "duplicate"] and all(
        r["conflicting_labels"] == "yes" for r in beta
    )
    assert [r["row"] for r in beta] == ["4", "5", "6"]  # file rows (the header is row 1)
    assert {r["action"] for r in rows if r["text"] == "shared"} == {"kept", "overlap"}


def test_conflict_policies(tmp_path):
    _dup_files(tmp_path)
    pos = lambda ds: ds.label_names.index("pos")  # noqa: E731
    ds = load_classification(_cfg(tmp_path, conflicts="majority"), None, 0)
    texts = dict(zip(ds.splits["train"].texts, ds.splits["train"].labels.tolist()))
    assert texts["beta"] != pos(ds)  # 2 x neg against 1 x pos
    ds = load_classification(_cfg(tmp_path, conflicts="drop"), None, 0)
    assert "beta" not in ds.splits["train"].texts and "clash" not in ds.splits["test"].texts
    assert ds.duplicates["splits"]["train"]["conflicts"] == 4 and ds.duplicates["splits"]["test"]["conflicts"] == 1
    ds = load_classification(_cfg(tmp_path, dedupe=False), None, 0)
    assert len(ds.splits["train"]) == 15 and ds.duplicates["conflicting_texts"] == 2  # counted, nothing dropped


def test_rows_left_out_by_max_train_samples_are_counted(tmp_path):
    _write(tmp_path / "d.csv", ",", [(f"text {i}", str(i % 2)) for i in range(50)])
    ds = load_classification(DataConfig(train=str(tmp_path / "d.csv"), split={"dev": 0.2}, max_train_samples=15), None, 0)
    c = ds.counts
    assert c["train"]["read"] == 50 and c["train"]["split_off"] == 10 and c["train"]["sampled_out"] == 25
    assert c["train"]["used"] == 15 == len(ds.splits["train"]) and c["dev"] == {"from_train": 10, "sampled_out": 0, "used": 10}
    assert "25 left out by data.max_train_samples" in count_lines(c)[0]
