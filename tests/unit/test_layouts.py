"""Table layouts without a model: separator sniffing, headerless columns, Hugging Face datasets, the Hub offline."""

from __future__ import annotations

import subprocess
import sys

import pytest

from compressor import data as D
from compressor.core.errors import DataError
from compressor.recipe.schema import DataConfig
from tests.conftest import ROOT


def _cfg(path, **kw):
    return DataConfig(train=str(path), split={"dev": 0.0, "validation": 0.0, "select_on": "dev"}, **kw)


def test_semicolon_is_sniffed_where_it_is_the_one_separator_that_fits(tmp_path, caplog):
    p = tmp_path / "emotion.txt"
    p.write_text("text;label\ni feel great, really;joy\ni am sad;sadness\nwell, well, well;joy\n")
    with caplog.at_level("INFO", logger="compressor"):
        ds = D.load_classification(_cfg(p), None, 0)
    assert ds.splits["train"].texts == ["i feel great, really", "i am sad", "well, well, well"]
    assert ds.label_names == ["joy", "sadness"] and "separated by semicolon (sniffed" in caplog.text
    q = tmp_path / "pipes.csv"  # a .csv whose commas do not split evenly: the pipe does
    q.write_text("text|label\na, b|x\nc|y\n")
    assert D.read_table(q, "auto", "utf-8")["label"].tolist() == ["x", "y"]


def test_an_explicit_sep_wins_and_any_single_character_works(tmp_path):
    p = tmp_path / "hash.csv"
    p.write_text("text#label\na;b,c#x\nd|e\tf#y\n")
    df = D.read_table(p, "auto", "utf-8", sep="#")
    assert df["text"].tolist() == ["a;b,c", "d|e\tf"] and df["label"].tolist() == ["x", "y"]


def test_ambiguous_or_unsplittable_text_files_ask_for_sep(tmp_path):
    p = tmp_path / "plain.txt"
    p.write_text("just a sentence\nanother one\n")
    with pytest.raises(D.LayoutError) as e:
        D.load_classification(_cfg(p), None, 0)
    assert e.value.field == "data.sep" and "set data.sep" in str(e.value)
    both = tmp_path / "both.txt"  # ';' and '|' both split every row in two: no guess
    both.write_text("a;b|c\nd;e|f\n")
    with pytest.raises(D.LayoutError):
        D.read_table(both, "auto", "utf-8")
    assert D.read_table(both, "auto", "utf-8", sep="|").columns.tolist() == ["a;b", "c"]


def test_headerless_rows_by_position_or_by_name_count_every_row(tmp_path):
    p = tmp_path / "ag.tsv"
    p.write_text("Wall St. bears claw back into the black\tBusiness\nRams win in overtime again tonight\tSports\n")
    by_pos = D.load_classification(_cfg(p, header=False, text=0, label=1), None, 0)
    by_name = D.load_classification(_cfg(p, header=False, columns=["title", "topic"], text="title", label="topic"), None, 0)
    for ds in (by_pos, by_name):
        assert ds.splits["train"].texts[0] == "Wall St. bears claw back into the black"
        assert ds.label_names == ["Business", "Sports"] and ds.counts["train"]["read"] == 2
    bad = tmp_path / "bad.tsv"
    bad.write_text("only text\tBusiness\n\tSports\n")
    with pytest.raises(DataError, match=r"row 2"):  # rows of a headerless file are numbered from 1
        D.load_classification(_cfg(bad, header=False, text=0, label=1), None, 0)


def test_layout_checks_name_the_field(tmp_path):
    p = tmp_path / "ag.tsv"
    p.write_text("a b c\tWorld\n")
    cases = [
        ({"header": False, "text": 0, "label": 2}, "data.label", "column 2 is out of range"),
        ({"header": False, "text": [0, 3]}, "data.text", "column 3 is out of range"),
        ({"header": False, "columns": ["t"]}, "data.columns", "names 1 column but"),
        ({"header": False, "columns": ["t", "l"]}, "data.text", "'text' is not one of data.columns"),
    ]
    for kw, field, text in cases:
        with pytest.raises(D.LayoutError) as e:
            D.check_layout(_cfg(p, **kw), None, "sequence-classification")
        assert e.value.field == field and text in e.value.detail, (kw, str(e.value))
    D.check_layout(_cfg(p, header=False, text=0, label=1), None, "sequence-classification")


def _saved(folder, rows, labels=("neg", "pos")):
    import datasets

    feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(labels))})
    ds = datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [y for _, y in rows]}, features=feats)
    return ds


def test_datasets_folders_splits_and_classlabel_order(tmp_path):
    import datasets

    train = _saved(tmp_path, [("good film", 1), ("bad film", 0), ("fine film", 1)], labels=("pos", "neg"))
    dev = _saved(tmp_path, [("great film", 1), ("awful film", 0)], labels=("pos", "neg"))
    datasets.DatasetDict({"train": train, "validation": dev}).save_to_disk(str(tmp_path / "dd"))
    ds = D.load_classification(_cfg(tmp_path / "dd", dev=str(tmp_path / "dd")), None, 0)
    assert ds.label_names == ["pos", "neg"]  # the ClassLabel's id order, not sorted
    assert ds.splits["train"].labels.tolist() == [1, 0, 1] and ds.splits["dev"].labels.tolist() == [1, 0]
    assert ds.sources["dev"].endswith("dd (split validation)") and ds.counts["train"]["read"] == 3
    with pytest.raises(D.LayoutError) as e:  # no test split: the message lists the splits there are
        D.load_classification(_cfg(tmp_path / "dd", test=str(tmp_path / "dd")), None, 0)
    assert e.value.field == "data.test" and "train, validation" in str(e.value)
    with pytest.raises(D.LayoutError) as e:  # a dataset's columns have names: no sep / header
        D.check_layout(_cfg(tmp_path / "dd", header=False, text=0, label=1), None, "sequence-classification")
    assert e.value.field == "data.header"


def test_a_folder_of_data_files_goes_through_load_dataset(tmp_path):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "train.csv").write_text("text,label\nx y,a\nz w,b\n")
    (tmp_path / "files" / "test.csv").write_text("text,label\nq r,a\n")
    ds = D.load_classification(_cfg(tmp_path / "files", test=str(tmp_path / "files")), None, 0)
    assert ds.splits["test"].texts == ["q r"] and ds.counts["train"]["used"] == 2


def test_causal_lm_text_from_a_dataset(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["first line", "", "second line"]}).save_to_disk(str(tmp_path / "lm"))
    assert D.load_lm_text(DataConfig(train=str(tmp_path / "lm")), None) == {"train": "first line\n\nsecond line"}


def test_hub_unreachable_is_one_line_without_retries(tmp_path, monkeypatch):
    """Offline variables unset: the Hub is probed once (the test's socket guard refuses), no minute of retries."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with pytest.raises(D.LayoutError) as e:
        D.check_layout(DataConfig(train="hf:ag_news"), None, "sequence-classification")
    assert e.value.field == "data.train" and "Hugging Face Hub is not reachable" in e.value.detail
    with pytest.raises(DataError) as e:
        D.load_classification(DataConfig(train="hf:ag_news:default"), None, 0)
    assert "\n" not in str(e.value) and "save_to_disk" in str(e.value)
    with pytest.raises(D.LayoutError, match="name a dataset"):
        D.check_layout(DataConfig(train="hf:"), None, "sequence-classification")


def test_help_does_not_import_datasets():
    code = (
        "import sys\nfrom compressor.cli.commands import app\nfor args in (['--help'], ['eval', '--help']):\n"
        "    try:\n        app(args)\n    except SystemExit:\n        pass\nprint('datasets' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("False")


def test_a_dataset_folder_is_fingerprinted_with_its_splits(tmp_path):
    """--resume compares input digests: a DatasetDict keeps its rows in split subfolders, which must count."""
    import datasets

    from compressor.inputs import path_digest

    datasets.DatasetDict(
        {"train": _saved(tmp_path, [("good", 1), ("bad", 0)]), "test": _saved(tmp_path, [("fine", 1)])}
    ).save_to_disk(str(tmp_path / "dd"))
    before = path_digest(tmp_path / "dd", recursive=True)
    datasets.DatasetDict(
        {"train": _saved(tmp_path, [("good", 1), ("bad", 1)]), "test": _saved(tmp_path, [("fine", 1)])}
    ).save_to_disk(str(tmp_path / "dd"))
    assert path_digest(tmp_path / "dd", recursive=True) != before
    assert path_digest(tmp_path / "dd") == path_digest(tmp_path / "dd")  # a model folder: its own files only, as before
