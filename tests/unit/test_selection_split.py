"""Checkpoints are chosen on a validation split held out from train; dev / test are only evaluated (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

from compressor import testing as T
from compressor.core.errors import RecipeError
from compressor.data import load_classification
from compressor.recipe import load_recipe
from compressor.recipe.schema import DataConfig
from compressor.report.variants import selection_note


def _key(t):
    return t if isinstance(t, str) else tuple(t)


def test_validation_is_stratified_and_disjoint_from_every_other_split(tmp_path):
    T.write_sentiment_csv(tmp_path / "sent.csv", n=400)
    ds = load_classification(DataConfig(train="sent.csv", split={"dev": 0.2}), tmp_path, 0, validation=0.1)
    sizes = {k: len(v) for k, v in ds.splits.items()}
    assert sizes == {"train": 288, "dev": 80, "validation": 32}  # 10 % of the 320 training rows
    assert np.bincount(ds.splits["validation"].labels).tolist() == [16, 16]  # stratified
    seen = [set(map(_key, s.texts)) for s in ds.splits.values()]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])
    plain = load_classification(DataConfig(train="sent.csv", split={"dev": 0.2}), tmp_path, 0)
    assert "validation" not in plain.splits and len(plain.splits["train"]) == 320


def test_unused_rows_give_the_validation_split_and_the_training_rows_stay_the_same(tmp_path):
    T.write_sentiment_csv(tmp_path / "sent.csv", n=400)
    cfg = DataConfig(train="sent.csv", split={"dev": 0.2}, max_train_samples=100)
    with_val = load_classification(cfg, tmp_path, 3, validation=0.1)
    without = load_classification(cfg, tmp_path, 3)
    assert with_val.splits["train"].texts == without.splits["train"].texts  # the same 100 training rows
    assert len(with_val.splits["validation"]) == 10
    assert not set(map(_key, with_val.splits["validation"].texts)) & set(map(_key, with_val.splits["train"].texts))


def test_select_on_dev_is_explicit_and_validation_zero_needs_it(tmp_path):
    T.write_sentiment_csv(tmp_path / "sent.csv", n=40)
    base = "model: {path: m}\ndata: {train: sent.csv, split: {%s}}\n"
    (tmp_path / "a.yaml").write_text(base % "select_on: dev, validation: 0")
    r, _ = load_recipe(tmp_path / "a.yaml")
    assert r.data.split.select_on == "dev"
    (tmp_path / "b.yaml").write_text(base % "validation: 0")
    with pytest.raises(RecipeError, match="select_on: dev"):
        load_recipe(tmp_path / "b.yaml")


def test_report_says_which_split_chose_the_checkpoint():
    val = {
        "stages": [
            {
                "stage": "finetune",
                "selection": {"split": "validation", "rows": 800, "how": "10 % of the training rows held out, stratified"},
            }
        ]
    }
    assert "validation split of 800 rows" in selection_note(val) and "played no part" in selection_note(val)
    dev = {"stages": [{"stage": "finetune", "selection": {"split": "dev", "rows": 872, "how": "x"}}]}
    assert "The dev figure is the selection metric" in selection_note(dev)
    assert selection_note({"stages": []}) == ""


def test_validation_is_capped(tmp_path):
    T.write_sentiment_csv(tmp_path / "sent.csv", n=400)
    cfg = DataConfig(train="sent.csv", split={"dev": 0.2, "validation": 0.5, "validation_max": 20})
    ds = load_classification(cfg, tmp_path, 0, validation=0.5)
    assert len(ds.splits["validation"]) == 20 and len(ds.splits["train"]) == 300
