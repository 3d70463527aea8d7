"""What a newcomer meets first (issue 20): a closed stdout, the run folder a completed run leaves, report labels."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "NO_COLOR": "1",
    "COLUMNS": "200",
    "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
}


def test_a_closed_stdout_does_not_end_the_run(cls_recipe, tmp_path):
    """`compressor run … | head -2`: the reader goes away after two lines; the run completes and exits 0."""
    err = tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        p = subprocess.Popen(
            [sys.executable, "-m", "compressor", "run", str(cls_recipe), "--set", "stages.0.finetune.epochs=1"],
            cwd=tmp_path,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        first = [p.stdout.readline() for _ in range(2)]
        p.stdout.close()  # what `head -2` does once it has its lines
        code = p.wait(timeout=600)
    run_dir = tmp_path / "runs" / "tiny-cls"
    assert all(first), first
    assert code == 0, err.read_text()
    assert (run_dir / "status").read_text().strip() == "complete"
    assert "Traceback" not in err.read_text() and "error" not in err.read_text().lower(), err.read_text()
    log = (run_dir / "log.txt").read_text()
    assert "stdout was closed by its reader" in log and "run complete" in log
    assert json.loads((run_dir / "metrics.json").read_text())["artifacts"]["int8"]


RECIPE = """name: door
model: {{path: {model}}}
data: {{train: {data}, split: {{dev: 0.2, test: 0.2}}, max_length: 32}}
stages:
  - finetune: {{max_steps: 12, lr: 1.0e-3, batch_size: 16}}
  - prune: {{type: unstructured, sparsity: 0.5}}
  - export: {{}}
  - quantize: {{type: dynamic}}
evaluate: {{splits: [dev, test]}}
bench: {{batch_sizes: [1], seq_lengths: [32], iterations: 3, warmup: 1, devices: [cpu]}}
output: {{dir: runs}}
"""


@pytest.fixture(scope="module")
def door(tiny_dir, tmp_path_factory):
    from compressor.pipeline.orchestrate import run

    d = tmp_path_factory.mktemp("door")
    recipe = d / "recipes" / "door.yaml"
    recipe.parent.mkdir()
    recipe.write_text(RECIPE.format(model=tiny_dir / "bert", data=tiny_dir / "sent.csv"))
    run_dir = run(recipe, overrides=["seed=3"], quiet=True)
    return run_dir, recipe


def test_a_complete_run_keeps_only_what_its_records_need(door):
    run_dir, _ = door
    stages = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert stages == ["baseline", "stage-0-finetune", "stage-1-prune", "stage-2-export", "stage-3-quantize"]
    for p in (run_dir / "checkpoints").glob("stage-*"):
        assert [f.name for f in p.iterdir()] == ["done.json"], p  # the snapshots (model/ again) are gone
    models = [json.loads((run_dir / "checkpoints" / s / "done.json").read_text())["model"] for s in stages[1:]]
    assert models[1:] == ["model"] * 3  # the last snapshot is model/ again: --resume of a complete run finds it there
    m = json.loads((run_dir / "metrics.json").read_text())
    for a in m["artifacts"].values():  # every file the records name is still there
        assert (run_dir / a["path"]).exists(), a["path"]
    assert (run_dir / "checkpoints" / "baseline" / "config.json").is_file() and (run_dir / "model" / "config.json").is_file()
    assert "removed" in (run_dir / "log.txt").read_text() and "keep_checkpoints" in (run_dir / "log.txt").read_text()


def test_keep_checkpoints_keeps_every_snapshot(tiny_dir, tmp_path):
    from compressor.pipeline.orchestrate import run

    recipe = tmp_path / "keep.yaml"
    recipe.write_text(RECIPE.format(model=tiny_dir / "bert", data=tiny_dir / "sent.csv"))
    run_dir = run(
        recipe,
        overrides=["stages=[{finetune: {max_steps: 2, batch_size: 16}}]", "bench.enabled=false", "output.keep_checkpoints=true"],
        quiet=True,
    )
    assert (run_dir / "checkpoints" / "stage-0-finetune" / "model" / "config.json").is_file()


def test_report_names_files_units_and_the_test_split(door):
    run_dir, _ = door
    report = (run_dir / "report.md").read_text()
    html = (run_dir / "report.html").read_text()
    m = json.loads((run_dir / "metrics.json").read_text())
    for text in (report, html):
        assert "onnx (model.opt.onnx)" in text and "int8 (model.int8.onnx)" in text
        assert "size MiB" in text and "size MB" not in text and "gzip MB" not in text
    assert "| onnx (model.opt.onnx) |" in report and "| pytorch |" in report
    test = report[report.index("## Test split") :]
    int8_test = m["artifacts"]["int8"]["metrics"]["test"]["accuracy"]
    assert f"| int8 (model.int8.onnx) | {int8_test * 100:.2f} % |" in test
    assert "Test split" in html


def test_stage_times_in_the_report_are_the_logged_ones(door):
    run_dir, _ = door
    import re

    report, log = (run_dir / "report.md").read_text(), (run_dir / "log.txt").read_text()
    logged = re.findall(r"stage \d+: (\w+) done in ([\d.]+)s", log)
    shown = re.findall(r"- \*\*(\w+)\*\* \(([\d.]+) s\)", report)
    assert len(logged) == 4 and logged == shown, (logged, shown)


def test_plan_prediction_beside_the_measurement(door):
    run_dir, _ = door
    m = json.loads((run_dir / "metrics.json").read_text())
    assert [p["stage"] for p in m["plan"]][:4] == ["0 finetune", "1 prune (unstructured)", "2 export", "3 quantize (dynamic)"]
    report = (run_dir / "report.md").read_text()
    section = report[report.index("## Plan vs measurement") : report.index("## Stages")]
    rows = {ln.split(" | ")[0].strip("| "): ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln}
    assert "2 export" in rows and "the speed of pytorch at b1×32 cpu" in rows["2 export"]
    assert rows["2 export"].rstrip(" |").endswith(("yes", "no", "partly"))
    assert "1 prune (unstructured)" in rows and "gzip size" in rows["1 prune (unstructured)"]


def test_reproduction_line_run_inside_the_run_folder_nests_nothing(door):
    import shlex

    run_dir, recipe = door
    report = (run_dir / "report.md").read_text()
    block = report[report.index("## Reproduction") :].split("```")[1].strip().splitlines()
    args = shlex.split(block[0])
    assert args[:3] == ["compressor", "run", str(recipe)] and "seed=3" in args
    cheap = ["--set", "stages=[]", "--set", "bench.enabled=false", "--set", "evaluate.splits=[dev]"]
    r = subprocess.run(
        [sys.executable, "-m", "compressor", *args[1:], *cheap], cwd=run_dir, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr
    again = run_dir.parent / "door-again"
    assert (again / "status").read_text().strip() == "complete"
    assert not (run_dir / "runs").exists() and not (run_dir / "door-again").exists()
