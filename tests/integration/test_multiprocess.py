"""The same training loop under `accelerate launch --num_processes 2 --cpu` matches one process."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from safetensors.torch import load_file

from compressor.pipeline.orchestrate import run
from tests.conftest import write_recipe


def _launch(tiny_dir, tmp_path, stage: str):
    """The recipe run in one process and under `accelerate launch` with two; returns both run dirs."""
    if shutil.which("accelerate") is None:
        pytest.skip("the accelerate launcher is not on PATH")
    model = tmp_path / "bert"
    shutil.copytree(tiny_dir / "bert", model)
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # dropout RNG differs per process
    (model / "config.json").write_text(json.dumps(cfg))
    # 400 rows, dev 0.2 → 320, a tenth held out as the validation split → 288 train rows = 18 global batches of 16,
    # split 9 + 9 across the processes
    recipe = write_recipe(
        tmp_path,
        f"""name: mp
model: {{path: {model}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2}}, max_length: 32}}
stages:
  - {stage}
bench: {{enabled: false}}
""",
    )
    one = run(recipe, output_dir=str(tmp_path / "one"), quiet=True)
    res = subprocess.run(
        [
            "accelerate",
            "launch",
            "--cpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "compressor",
            "run",
            str(recipe),
            "-o",
            str(tmp_path / "two"),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    two = tmp_path / "two" / "mp"
    assert (two / "status").read_text().strip() == "complete"
    return one, two


def test_two_cpu_processes_match_one(tiny_dir, tmp_path):
    one, two = _launch(tiny_dir, tmp_path, "finetune: {epochs: 2, lr: 1.0e-3, batch_size: 16, eval_every: 10}")
    wa, wb = load_file(str(one / "model/model.safetensors")), load_file(str(two / "model/model.safetensors"))
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst < 1e-4, worst  # tolerance: float reduction order differs between one and two processes
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert mb["artifacts"]["pytorch"]["metrics"]["dev"]["accuracy"] == pytest.approx(
        ma["artifacts"]["pytorch"]["metrics"]["dev"]["accuracy"], abs=1e-6
    )
    assert [h["step"] for h in mb["stages"][0]["history"] if "eval" in h] == [10, 20, 30, 36]


def test_gradual_pruning_under_two_processes_makes_the_same_masks(tiny_dir, tmp_path):
    one, two = _launch(
        tiny_dir,
        tmp_path,
        "finetune: {epochs: 2, lr: 1.0e-3, batch_size: 16, eval_every: 10, "
        "prune: {type: unstructured, sparsity: 0.75, schedule: {start: 2, end: 30, every: 4}}}",
    )
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    pa, pb = ma["stages"][0]["prune"], mb["stages"][0]["prune"]
    assert pa["sparsity"] == pytest.approx(0.75, abs=0.005) and pb["sparsity"] == pytest.approx(0.75, abs=0.005)
    assert [c["step"] for c in pa["curve"]] == [c["step"] for c in pb["curve"]]
    wa, wb = load_file(str(one / "model/model.safetensors")), load_file(str(two / "model/model.safetensors"))
    pruned = [r["name"] for r in pa["layers"]]
    differ = sum(int(((wa[k] == 0) != (wb[k] == 0)).sum()) for k in pruned)
    assert differ <= 0.001 * pa["params"], differ  # the same masks, up to weights tied at the threshold
