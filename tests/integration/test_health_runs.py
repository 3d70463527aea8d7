"""A collapsed classifier is flagged by `run` (log, report, INT8 budget) and `eval`; `run` and `eval` read, de-duplicate
and score the same file identically; duplicates are listed in the run folder."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import write_recipe


def _model(tiny_dir: Path, out: Path, collapse: bool) -> Path:
    """The tiny BERT with named labels: collapsed (the head always says 'negative') or with large random weights
    (predictions vary from row to row)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    shutil.copytree(tiny_dir / "bert", out)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                torch.nn.init.normal_(param, std=1.0)
        if collapse:
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor([4.0, -4.0]))
    model.config.id2label, model.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    model.save_pretrained(out)
    return out


def _eval_file(tiny_dir: Path, path: Path) -> Path:
    """60 rows of the training file (so they overlap train), 6 repeated within the file, 2 of them with the other label."""
    with (tiny_dir / "sent.csv").open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    picked = rows[::5][:60]  # both labels
    flip = {"negative": "positive", "positive": "negative"}
    extra = [picked[i] for i in range(4)] + [[picked[i][0], flip[picked[i][1]]] for i in range(4, 6)]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(picked + extra)
    return path


def _run(recipe: Path) -> Path:
    """In process, on one thread (tiny models run fastest so on a busy machine)."""
    import torch

    from compressor.pipeline.orchestrate import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(recipe, quiet=True)
    finally:
        torch.set_num_threads(threads)


def _eval(*args):
    """`compressor eval ARGS --json FILE` in process: (result with .stdout / .stderr, the JSON written)."""
    from typer.testing import CliRunner

    from compressor.cli.commands import app

    out = Path(args[0]).parent / f"eval-{abs(hash(args))}.json"
    r = CliRunner().invoke(app, ["eval", *map(str, args), "--json", str(out)], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    return r, json.loads(out.read_text())


RECIPE = """
name: {name}
model: {{path: {model}}}
data: {{train: {train}, test: {test}, split: {{dev: 0.0}}, max_length: 32}}
stages: {stages}
evaluate: {{splits: [test], artifacts: {artifacts}}}
bench: {{enabled: false}}
output: {{dir: {out}}}
"""


@pytest.fixture(scope="module")
def collapsed_run(tiny_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("collapsed")
    model = _model(tiny_dir, d / "bert", collapse=True)
    test = _eval_file(tiny_dir, d / "test.csv")
    stages = "[{export: {}}, {quantize: {type: static, optimized: false, calibration_samples: 64, max_drop: 1.0}}]"
    recipe = write_recipe(
        d,
        RECIPE.format(
            name="collapsed",
            model=model,
            train=tiny_dir / "sent.csv",
            test=test,
            stages=stages,
            artifacts="[torch, onnx, int8]",
            out=d / "runs",
        ),
        "collapsed.yaml",
    )
    return _run(recipe), model, test


def test_collapsed_classifier_is_flagged_by_run(collapsed_run):
    run, _, _ = collapsed_run
    log = (run / "log.txt").read_text()
    assert "WARNING pytorch, onnx, int8 on test: predicts only 1 of the 2 classes present" in log
    assert "INT8 accuracy budget: the fp32 reference predicts only 1 of the 2 classes" in log
    m = json.loads((run / "metrics.json").read_text())
    t = m["artifacts"]["pytorch"]["metrics"]["test"]
    assert t["predicted_classes"] == 1 and t["per_class_recall"][1] == 0.0 and t["accuracy"] == t["majority_baseline"]
    md = (run / "report.md").read_text()
    assert "**Warning**: pytorch, onnx, int8 on test: predicts only 1 of the 2 classes present" in md
    int8 = md[md.index("### INT8") :]
    assert "Accuracy budget met" in int8 and "**Warning**: the fp32 reference predicts only 1 of the 2 classes" in int8
    assert "Per-class recall on test" in md and "Majority-class baseline on test" in md
    assert (run / "report_confusion.png").is_file()


def test_collapsed_classifier_is_flagged_by_eval(collapsed_run):
    run, model, test = collapsed_run
    for artifact in (model, run / "onnx" / "model.int8.onnx"):
        r, got = _eval(artifact, "--data", test)
        assert "warning: predicts only 1 of the 2 classes present" in r.stderr, r.stderr
        assert "per-class recall: negative 100.00%" in r.stdout and "positive 0.00%" in r.stdout
        assert got["metrics"]["predicted_classes"] == 1 and any("collapsed" in w for w in got["warnings"])


def test_duplicates_listed_in_the_run_folder(collapsed_run):
    run, _, _ = collapsed_run
    with (run / "duplicates.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    m = json.loads((run / "metrics.json").read_text())
    dup = m["duplicates"]
    assert dup["conflicting_texts"] == 2 and dup["splits"]["test"]["duplicates"] == 6
    assert dup["splits"]["train"]["overlap"] == 60  # the 60 texts of test.csv are dropped from train
    assert m["data_counts"]["test"] == {
        "read": 66,
        "duplicates": 6,
        "overlap": 0,
        "conflicts": 0,
        "kept": 60,
        "sampled_out": 0,
        "used": 60,
    }
    assert sum(r["action"] == "overlap" for r in rows) == 60 and sum(r["conflicting_labels"] == "yes" for r in rows) == 6
    log = (run / "log.txt").read_text()
    assert "data.test: 66 rows read, 6 dropped as duplicates, 60 used" in log


def test_run_and_eval_score_the_same_file_identically(tiny_dir, tmp_path):
    model = _model(tiny_dir, tmp_path / "bert", collapse=False)
    test = _eval_file(tiny_dir, tmp_path / "test.csv")
    recipe = write_recipe(
        tmp_path,
        RECIPE.format(
            name="same",
            model=model,
            train=tiny_dir / "sent.csv",
            test=test,
            stages="[]",
            artifacts="[torch]",
            out=tmp_path / "runs",
        ),
        "same.yaml",
    )
    run = _run(recipe)
    in_run = json.loads((run / "metrics.json").read_text())["artifacts"]["pytorch"]["metrics"]["test"]
    r, got = _eval(run / "model", "--data", test)
    assert "66 rows read, 6 dropped as duplicates, 60 used" in r.stderr
    assert got["metrics"]["n"] == in_run["n"] == 60
    assert got["metrics"]["accuracy"] == in_run["accuracy"] and got["metrics"]["confusion"] == in_run["confusion"]
    assert 0 < in_run["per_class_recall"][0] < 1  # predictions vary: equal scores are not a coincidence of a constant
    assert got["data_rows"]["duplicates"]["conflicting_texts"] == 2
    _, raw = _eval(run / "model", "--data", test, "--no-dedupe")
    assert raw["metrics"]["n"] == 66
