"""Model health statistics and warnings, the report's health section, and progress lines."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from compressor.core.health import (
    class_stats,
    classifier_warnings,
    grouped_warnings,
    lm_warnings,
    reference_warning,
    repetition,
    unigram_perplexity,
)
from compressor.core.progress import Progress


def _metrics(y, p, k):
    y, p = np.asarray(y), np.asarray(p)
    return {"accuracy": float((y == p).mean()), "n": len(y), **class_stats(y, p, k)}


def test_class_stats_recall_confusion_and_majority():
    m = _metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 1, 0], 3)
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["per_class_recall"] == pytest.approx([2 / 3, 1.0, 0.0]) and m["support"] == [3, 2, 1]
    assert m["majority_baseline"] == 0.5 and m["majority_class"] == 0
    assert m["classes_present"] == 3 and m["predicted_classes"] == 2
    absent = class_stats(np.array([0, 0]), np.array([0, 1]), 4)
    assert absent["per_class_recall"][2] is None and len(absent["confusion"]) == 4


def test_collapsed_six_class_classifier_is_flagged_and_a_healthy_one_is_not():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 600)
    y[:300] = rng.integers(0, 2, 300)  # classes 0 and 1 are the common ones
    collapsed = np.where(y < 2, y, rng.integers(0, 2, 600))  # only ever says 0 or 1
    w = classifier_warnings(_metrics(y, collapsed, 6), ["sad", "joy", "love", "anger", "fear", "surprise"])
    assert any("predicts only 2 of the 6 classes present" in x and "never predicted: love" in x for x in w), w
    healthy = np.where(rng.random(600) < 0.9, y, (y + 1) % 6)
    assert classifier_warnings(_metrics(y, healthy, 6)) == []
    near = classifier_warnings(_metrics([0] * 70 + [1] * 30, [0] * 99 + [1], 2))  # 71 %: 1 pt above always-0
    assert any("majority-class baseline 70.00%" in x for x in near), near


def test_a_rare_class_never_predicted_is_not_a_collapse():
    y = np.array([0] * 500 + [1] * 497 + [2] * 2)
    p = np.array([0] * 500 + [1] * 497 + [0] * 2)
    assert classifier_warnings(_metrics(y, p, 3)) == []


def test_reference_warning_and_grouping():
    bad = _metrics([0, 1] * 5, [0] * 10, 2)
    assert reference_warning(bad, "the teacher").startswith("**Warning**: the teacher predicts only 1 of the 2")
    assert reference_warning(_metrics([0, 1], [0, 1], 2), "the teacher") is None
    lines = grouped_warnings({"pytorch": {"dev": bad}, "int8": {"dev": bad, "test": bad}}, "sequence-classification")
    assert lines[0].startswith("pytorch, int8 on dev: predicts only 1") and any(x.startswith("int8 on test") for x in lines)


def test_unigram_baseline_and_degenerate_output():
    train = [np.array([1, 1, 1, 2])] * 10
    uni = unigram_perplexity(train, [np.array([5, 1, 1, 1])], vocab=8)
    assert uni == pytest.approx(np.exp(-np.log(31 / 48)))  # add-one: (30 + 1) / (40 + 8)
    assert repetition([1, 2, 3, 4, 5]) == 1.0 and repetition([7] * 20) == pytest.approx(1 / 19)
    w = lm_warnings(
        {
            "perplexity": 30.0,
            "unigram_perplexity": 20.0,
            "greedy": {"degenerate": True, "distinct_bigrams": 0.1, "prompts": 4, "sample": "of of of"},
        }
    )
    assert len(w) == 2 and "no better than token frequencies" in w[0] and "degenerate" in w[1]
    assert lm_warnings({"perplexity": 5.0, "unigram_perplexity": 20.0}) == []


def test_progress_lines_say_done_and_time_left(caplog):
    now = [0.0]
    with caplog.at_level(logging.INFO, logger="compressor"):
        bar = Progress("eval int8 on dev", 100, clock=lambda: now[0])
        for _ in range(4):
            now[0] += 3.0
            bar.update(20)
        now[0] += 3.0
        bar.update(20)
        bar.finish()
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs[0] == "eval int8 on dev: 100 rows ..."
    assert "eval int8 on dev: 40/100 rows (40 %), 6s elapsed, ~9s left" in msgs
    assert msgs[-1] == "eval int8 on dev: 100 rows in 15.0s"


def _results(pytorch: dict, teacher: dict | None = None) -> dict:
    stages = []
    if teacher is not None:
        stages.append(
            {
                "stage": "distill",
                "seconds": 1.0,
                "best_dev": pytorch["accuracy"],
                "best_step": 5,
                "steps": 10,
                "teacher": {"params": 10, "layers": 2, "metrics": {"dev": teacher}},
                "student": {"params": 5, "layers": 1, "built_from": {"layers": 1}},
                "losses": [],
            }
        )
    stages.append(
        {
            "stage": "quantize",
            "scheme": "static",
            "method": "minmax",
            "graph": "fused",
            "seconds": 1.0,
            "budget": {"passed": True, "split": "dev", "trials": [{"kept_fp32": [], "value": 0.5, "drop": 0.0, "passed": True}]},
        }
    )
    art = {"params": 1, "size_bytes": 1, "gzip_bytes": 1, "bench": []}
    return {
        "name": "t",
        "task": "sequence-classification",
        "model": "m",
        "seed": 0,
        "device": "cpu",
        "primary_metric": {"name": "accuracy", "higher_is_better": True},
        "labels": ["neg", "pos"],
        "data": {"train": 10, "dev": 4},
        "stages": stages,
        "data_counts": {"train": {"read": 12, "duplicates": 2, "overlap": 0, "conflicts": 0, "sampled_out": 0, "used": 10}},
        "duplicates": {
            "policy": "keep-first",
            "applied": True,
            "repeated_texts": 2,
            "conflicting_texts": 1,
            "splits": {"train": {"read": 12, "duplicates": 2, "overlap": 0, "conflicts": 0, "kept": 10}},
        },
        "artifacts": {"pytorch": {**art, "metrics": {"dev": pytorch}}, "int8": {**art, "metrics": {"dev": pytorch}}},
    }


def test_report_shows_recall_majority_and_carries_the_collapse_into_int8_and_distillation():
    from compressor.report.markdown import render_markdown

    bad = _metrics([0, 1] * 5, [0] * 10, 2)
    md = render_markdown(_results(bad, teacher=bad))
    assert "Majority-class baseline on dev: 50.00% (always answering 'neg')" in md
    assert "## Model health" in md and "Per-class recall on dev" in md and "| pos | 5 | 0.00% | 0.00% |" in md
    assert "Confusion matrix of pytorch on dev" in md
    assert "pytorch, int8 on dev: predicts only 1 of the 2 classes present" in md
    int8 = md[md.index("### INT8") :]
    assert "Accuracy budget met" in int8 and "**Warning**: the fp32 reference predicts only 1 of the 2" in int8
    distill = md[md.index("### Distillation") : md.index("### INT8")]
    assert "of the teacher" in distill and "**Warning**: the teacher predicts only 1" in distill
    assert "data.train: 12 rows read, 2 dropped as duplicates, 10 used" in md and "duplicates.csv" in md
    good = _metrics([0, 1, 0, 1], [0, 1, 0, 1], 2)
    md = render_markdown(_results(good, teacher=good))
    assert "**Warning**" not in md and "Per-class recall on dev" in md


def test_quiet_progress_speaks_only_when_slow(caplog):
    now = [0.0]
    with caplog.at_level(logging.INFO, logger="compressor"):
        fast = Progress("dev evaluation", 10, clock=lambda: now[0], quiet=True)
        fast.update(10)
        fast.finish()
        assert caplog.records == []
        slow = Progress("dev evaluation", 10, clock=lambda: now[0], quiet=True)
        now[0] += 6.0
        slow.update(5)
        now[0] += 6.0
        slow.update(5)
        slow.finish()
    assert [r.getMessage() for r in caplog.records] == [
        "dev evaluation: 5/10 rows (50 %), 6s elapsed, ~6s left",
        "dev evaluation: 10 rows in 12.0s",
    ]
