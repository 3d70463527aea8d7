"""Reading data files: formats, labels, one-line DataErrors, deterministic splits, dedupe, LM blocks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from compressor.core.errors import DataError
from compressor.data import lm_blocks, load_causal_lm, load_classification
from compressor.recipe.schema import DataConfig


def _csv(path: Path, rows: list[tuple], header: tuple = ("text", "label")) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _load(tmp_path, num_labels=None, seed=0, **cfg):
    return load_classification(DataConfig(**cfg), tmp_path, seed, num_labels)


def _err(tmp_path, num_labels=None, **cfg) -> str:
    with pytest.raises(DataError) as info:
        _load(tmp_path, num_labels, **cfg)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


ROWS = [(f"sentence number {i} {'good' if i % 2 else 'bad'}", "pos" if i % 2 else "neg") for i in range(40)]


# ------------------------------------------------------------------ formats
def test_csv_tsv_jsonl_read_the_same(tmp_path):
    _csv(tmp_path / "d.csv", ROWS)
    (tmp_path / "d.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in ROWS))
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in ROWS))
    got = []
    for name in ("d.csv", "d.tsv", "d.jsonl"):
        ds = _load(tmp_path, train=name, split={"dev": 0.25})
        got.append((ds.splits["train"].texts, ds.splits["dev"].texts, ds.splits["dev"].labels.tolist(), ds.label_names))
        assert ds.label_names == ["neg", "pos"] and len(ds.splits["train"]) == 30 and len(ds.splits["dev"]) == 10
    assert got[0] == got[1] == got[2]


def test_explicit_format_and_unknown_suffix(tmp_path):
    _csv(tmp_path / "data.dat", ROWS)
    assert "set data.format" in _err(tmp_path, train="data.dat")
    assert len(_load(tmp_path, train="data.dat", format="csv", split={"dev": 0.0}).splits["train"]) == 40


def test_quoted_csv_fields_with_commas_and_newlines(tmp_path):
    _csv(tmp_path / "q.csv", [('a, b, "c"\nd', "x"), ("plain", "y"), ("more, text", "x"), ("again", "y")])
    ds = _load(tmp_path, train="q.csv", split={"dev": 0.0})
    assert 'a, b, "c"\nd' in ds.splits["train"].texts


def test_other_encoding_when_told(tmp_path):
    (tmp_path / "l.csv").write_bytes("text,label\ncaf\xe9 good,1\nna\xefve bad,0\n".encode("latin-1"))
    ds = _load(tmp_path, train="l.csv", encoding="latin-1", split={"dev": 0.0})
    assert "café good" in ds.splits["train"].texts


# ------------------------------------------------------------------ labels
def test_label_names_map_to_ids_in_the_given_order(tmp_path):
    _csv(tmp_path / "d.csv", ROWS)
    ds = _load(tmp_path, train="d.csv", labels=["pos", "neg"], split={"dev": 0.0})
    texts, labels = ds.splits["train"].texts, ds.splits["train"].labels
    assert ds.label_names == ["pos", "neg"]
    for t, y in zip(texts, labels):
        assert y == (0 if t.endswith("good") else 1)
    # without data.labels: sorted names
    assert _load(tmp_path, train="d.csv", split={"dev": 0.0}).label_names == ["neg", "pos"]


def test_integer_labels_are_ids(tmp_path):
    _csv(tmp_path / "d.csv", [(f"t {i}", i % 3) for i in range(30)])
    ds = _load(tmp_path, train="d.csv", split={"dev": 0.0})
    assert ds.label_names == ["0", "1", "2"] and sorted(set(ds.splits["train"].labels.tolist())) == [0, 1, 2]
    ds = _load(tmp_path, num_labels=5, train="d.csv", split={"dev": 0.0})
    assert ds.num_labels == 5


@pytest.mark.parametrize("value", ["2", "7", "-1"])
def test_integer_label_outside_num_labels_names_file_row_and_value(tmp_path, value):
    rows = [("a good", 0), ("b bad", 1), ("c odd", value), ("d good", 0)]
    _csv(tmp_path / "d.csv", rows)
    msg = _err(tmp_path, num_labels=2, train="d.csv", split={"dev": 0.0})
    assert str(tmp_path / "d.csv") in msg and "row 4" in msg and f"label {value}" in msg and "0..1" in msg


def test_label_not_in_data_labels(tmp_path):
    _csv(tmp_path / "d.csv", [("a", "neg"), ("b", "pos"), ("c", "meh")])
    msg = _err(tmp_path, train="d.csv", labels=["neg", "pos"], split={"dev": 0.0})
    assert "d.csv: row 4: label 'meh' is not one of data.labels" in msg


def test_more_label_names_than_num_labels(tmp_path):
    _csv(tmp_path / "d.csv", [("a", "x"), ("b", "y"), ("c", "z")])
    assert "3 distinct labels but model.num_labels is 2" in _err(tmp_path, num_labels=2, train="d.csv", split={"dev": 0.0})


def test_absurd_integer_label_is_an_error_not_a_huge_head(tmp_path):
    _csv(tmp_path / "d.csv", [("a", 0), ("b", 1), ("c", "99999999999999999999")])
    msg = _err(tmp_path, train="d.csv", split={"dev": 0.0})
    assert "row 4" in msg and "model.num_labels" in msg


@pytest.mark.parametrize("body, row", [("text,label\na,1\nb,\nc,0\n", 3), ("text,label\na,1\nb, \nc,0\n", 3)])
def test_empty_label_is_an_error(tmp_path, body, row):
    (tmp_path / "d.csv").write_text(body)
    assert f"row {row}: empty label" in _err(tmp_path, train="d.csv", split={"dev": 0.0})


def test_null_label_and_null_text_in_jsonl(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x", "label": 1}\n{"text": "y", "label": null}\n')
    assert "a.jsonl: row 2: empty label" in _err(tmp_path, train="a.jsonl", split={"dev": 0.0})
    (tmp_path / "b.jsonl").write_text('{"text": "x", "label": 1}\n{"text": null, "label": 0}\n')
    assert "b.jsonl: 1 row(s) with an empty text in 'text' (first: row 2)" in _err(tmp_path, train="b.jsonl", split={"dev": 0.0})


# ------------------------------------------------------------------ malformed files
def test_missing_column_lists_the_columns(tmp_path):
    _csv(tmp_path / "d.csv", ROWS, header=("sentence", "label"))
    msg = _err(tmp_path, train="d.csv")
    assert "missing column 'text'" in msg and "columns are: sentence, label" in msg
    msg = _err(tmp_path, train="d.csv", text="sentence", label="sentiment")
    assert "missing column 'sentiment'" in msg


@pytest.mark.parametrize(
    "name, body, words",
    [
        ("e.csv", "", "file is empty"),
        ("e.tsv", "", "file is empty"),
        ("e.jsonl", "", "file is empty"),
        ("h.csv", "text,label\n", "no data rows"),
        ("b.csv", "\n\n\n", "file is empty"),
    ],
)
def test_empty_files(tmp_path, name, body, words):
    (tmp_path / name).write_text(body)
    msg = _err(tmp_path, train=name)
    assert str(tmp_path / name) in msg and words in msg


def test_non_utf8_suggests_data_encoding(tmp_path):
    (tmp_path / "d.csv").write_bytes(b"text,label\nfine,1\ncaf\xe9,0\n")
    msg = _err(tmp_path, train="d.csv")
    assert str(tmp_path / "d.csv") in msg and "not valid utf-8" in msg and "data.encoding" in msg
    assert "unknown encoding 'nope-42'" in _err(tmp_path, train="d.csv", encoding="nope-42")


@pytest.mark.parametrize(
    "name, body",
    [
        ("long.csv", "text,label\na,1\nb,1,extra\nc,0\n"),
        ("short.csv", "text,label\na,1\nb\nc,0\n"),
        ("long.tsv", "text\tlabel\na\t1\nb\t1\textra\nc\t0\n"),
        ("short.tsv", "text\tlabel\na\t1\nb\nc\t0\n"),
        ("quote.csv", 'text,label\n"never closed,1\nc,0\n'),
    ],
)
def test_ragged_csv(tmp_path, name, body):
    (tmp_path / name).write_text(body)
    msg = _err(tmp_path, train=name)
    assert f"{tmp_path / name}: malformed" in msg
    assert "line 3" in msg or "row 1" in msg or "EOF" in msg


def test_bad_jsonl(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": \n')
    assert "malformed jsonl" in _err(tmp_path, train="d.jsonl")


def test_missing_file_names_the_field(tmp_path):
    msg = _err(tmp_path, train="nope.csv")
    assert "data.train" in msg and "nope.csv" in msg
    _csv(tmp_path / "d.csv", ROWS)
    assert "data.dev" in _err(tmp_path, train="d.csv", dev="missing-dev.csv")


def test_no_label_column_configured(tmp_path):
    _csv(tmp_path / "d.csv", ROWS)
    assert "data.label" in _err(tmp_path, train="d.csv", label=None)


# ------------------------------------------------------------------ splits
def _balanced(tmp_path, n=300, classes=("a", "b", "c"), weights=(0.6, 0.3, 0.1)):
    rows, k = [], 0
    for c, w in zip(classes, weights):
        for _ in range(int(n * w)):
            rows.append((f"text {k} of {c}", c))
            k += 1
    return _csv(tmp_path / "s.csv", rows)


def test_split_is_deterministic_and_stratified(tmp_path):
    _balanced(tmp_path)
    cfg = dict(train="s.csv", split={"dev": 0.2, "test": 0.1})
    a, b = _load(tmp_path, seed=3, **cfg), _load(tmp_path, seed=3, **cfg)
    for name in ("train", "dev", "test"):
        assert a.splits[name].texts == b.splits[name].texts
    c = _load(tmp_path, seed=4, **cfg)
    assert c.splits["dev"].texts != a.splits["dev"].texts
    assert (len(a.splits["train"]), len(a.splits["dev"]), len(a.splits["test"])) == (210, 60, 30)
    for name, n in (("dev", 60), ("test", 30), ("train", 210)):
        counts = Counter(a.splits[name].labels.tolist())
        for cls, share in ((0, 0.6), (1, 0.3), (2, 0.1)):
            assert abs(counts[cls] - share * n) <= 1, (name, counts)


def test_dedupe_keeps_every_text_in_one_split(tmp_path):
    rows = [(f"text {i % 50}", "x" if i % 2 else "y") for i in range(200)]  # each text 4 times
    rows += [(f"  TEXT {i}  ", "x") for i in range(5)]  # case / space variants are duplicates too
    _csv(tmp_path / "d.csv", rows)
    _csv(tmp_path / "dev.csv", [("text 1", "x"), ("text 2", "y")])
    ds = _load(tmp_path, train="d.csv", dev="dev.csv", split={"dev": 0.2, "test": 0.2})
    seen = {}
    for name, s in ds.splits.items():
        for t in s.texts:
            key = t.strip().lower()
            assert key not in seen, f"{t!r} in {seen.get(key)} and {name}"
            seen[key] = name
    assert seen["text 1"] == "dev" and len(seen) == 50
    # without dedupe the copies stay
    ds = _load(tmp_path, train="d.csv", split={"dev": 0.0, "dedupe": False})
    assert len(ds.splits["train"]) == 205


def test_max_train_and_eval_samples(tmp_path):
    _balanced(tmp_path)
    ds = _load(tmp_path, seed=1, train="s.csv", split={"dev": 0.2}, max_train_samples=50, max_eval_samples=7)
    assert len(ds.splits["train"]) == 50 and len(ds.splits["dev"]) == 7
    again = _load(tmp_path, seed=1, train="s.csv", split={"dev": 0.2}, max_train_samples=50, max_eval_samples=7)
    assert ds.splits["train"].texts == again.splits["train"].texts
    assert len(_load(tmp_path, train="s.csv", split={"dev": 0.2}, max_train_samples=10_000).splits["train"]) == 240


def test_stratify_falls_back_when_impossible(tmp_path):
    # a dev split of 2 rows cannot hold 3 classes; a class with one row cannot be on both sides
    _csv(tmp_path / "d.csv", [(f"t{i}", "abc"[i % 3]) for i in range(9)] + [("lonely", "z")])
    ds = _load(tmp_path, train="d.csv", split={"dev": 0.2})
    assert len(ds.splits["dev"]) == 2 and len(ds.splits["train"]) == 8


def test_too_few_rows_to_split(tmp_path):
    _csv(tmp_path / "d.csv", [("only one", "x")])
    assert "cannot split" in _err(tmp_path, train="d.csv", split={"dev": 0.5})


def test_sentence_pairs(tmp_path):
    rows = [(f"first {i}", f"second {i % 7}", "same" if i % 2 else "diff") for i in range(20)]
    rows.append(("first 0", "second 0", "diff"))  # a duplicate pair
    _csv(tmp_path / "p.csv", rows, header=("s1", "s2", "label"))
    ds = _load(tmp_path, train="p.csv", text=["s1", "s2"], split={"dev": 0.25})
    texts = ds.splits["train"].texts + ds.splits["dev"].texts
    assert all(isinstance(t, tuple) and len(t) == 2 for t in texts) and len(texts) == 20
    assert ("first 3", "second 3") in texts
    assert "missing column 's3'" in _err(tmp_path, train="p.csv", text=["s1", "s3"])


# ------------------------------------------------------------------ causal LM
@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from compressor.testing import write_tokenizer

    return AutoTokenizer.from_pretrained(str(write_tokenizer(tmp_path_factory.mktemp("tok"))))


def test_lm_blocks(tokenizer):
    text = " ".join(["the movie was good ."] * 20)  # 5 tokens per sentence: 100 tokens
    blocks = lm_blocks(text, tokenizer, 16)
    assert blocks.shape == (6, 16) and blocks.dtype == np.int64
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert blocks.reshape(-1).tolist() == ids[:96]
    with pytest.raises(DataError, match="fewer than one block"):
        lm_blocks("the movie", tokenizer, 16)


def test_causal_lm_split_is_a_contiguous_tail(tmp_path, tokenizer):
    (tmp_path / "lm.txt").write_text("\n".join(f"the movie w{i % 60} was good ." for i in range(200)))
    cfg = DataConfig(train="lm.txt", max_length=16, split={"dev": 0.1})
    blocks = load_causal_lm(cfg, tmp_path, tokenizer, seed=0)
    tr, dev = blocks["train"], blocks["dev"]
    assert tr.shape[1] == dev.shape[1] == 16 and len(dev) == round((len(tr) + len(dev)) * 0.1)
    all_ids = tokenizer((tmp_path / "lm.txt").read_text(), add_special_tokens=False)["input_ids"]
    n = (len(tr) + len(dev)) * 16
    assert np.concatenate([tr, dev]).reshape(-1).tolist() == all_ids[:n]
    few = load_causal_lm(
        DataConfig(train="lm.txt", max_length=16, split={"dev": 0.1}, max_train_samples=5), tmp_path, tokenizer, 0
    )
    assert len(few["train"]) == 5


def test_causal_lm_bad_text_files(tmp_path, tokenizer):
    (tmp_path / "empty.txt").write_text("  \n\n")
    with pytest.raises(DataError, match="empty.txt: file is empty"):
        load_causal_lm(DataConfig(train="empty.txt"), tmp_path, tokenizer, 0)
    (tmp_path / "bin.txt").write_bytes(b"ok \xff\xfe text")
    with pytest.raises(DataError, match="data.encoding"):
        load_causal_lm(DataConfig(train="bin.txt"), tmp_path, tokenizer, 0)
    (tmp_path / "short.txt").write_text("the movie was good .\n" * 4)  # 20 tokens: 1 block of 16
    with pytest.raises(DataError, match="too few to split"):
        load_causal_lm(DataConfig(train="short.txt", max_length=16, split={"dev": 0.5}), tmp_path, tokenizer, 0)


def test_causal_lm_from_a_table_column(tmp_path, tokenizer):
    _csv(tmp_path / "t.csv", [(f"the movie w{i} was good .", "") for i in range(60)], header=("body", "unused"))
    blocks = load_causal_lm(DataConfig(train="t.csv", text="body", max_length=8, split={"dev": 0.0}), tmp_path, tokenizer, 0)
    assert blocks["train"].shape[1] == 8 and len(blocks["train"]) > 10
