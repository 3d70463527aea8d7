"""Kill a real `compressor run` mid-training, resume it, and get the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from compressor.pipeline.orchestrate import run
from tests.conftest import write_recipe

TOTAL = 300


def _recipe(tiny_dir, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_recipe(
        folder,
        f"""name: r
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2}}, max_length: 32}}
stages:
  - finetune: {{max_steps: {TOTAL}, lr: 1.0e-3, batch_size: 8, eval_every: 50, checkpoint_every: 10}}
  - export: {{}}
bench: {{enabled: false}}
""",
    )


def _start(args, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "compressor", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_checkpoint(proc, state_file: Path, min_step: int, timeout: float = 120) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed:\n" + proc.stdout.read())
        try:
            step = json.loads(state_file.read_text())["step"]
            if step >= min_step:
                return step
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.01)
    pytest.fail("no checkpoint appeared")


def _weights(run_dir: Path) -> dict:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_dir, tmp_path):
    ref_dir = run(_recipe(tiny_dir, tmp_path / "a"), output_dir=str(tmp_path / "a" / "runs"), quiet=True)

    b = tmp_path / "b"
    recipe = _recipe(tiny_dir, b)
    proc = _start(["run", str(recipe), "-q"], cwd=b)
    run_dir = b / "runs" / "r"
    state_file = run_dir / "checkpoints" / "stage-0-finetune" / "train" / "trainer_state.json"
    killed_at = _wait_for_checkpoint(proc, state_file, min_step=20)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (run_dir / "status").read_text().strip() == "running"  # killed: nobody wrote a verdict
    assert 20 <= killed_at < TOTAL

    res = subprocess.run(
        [sys.executable, "-m", "compressor", "run", "--resume", str(run_dir), "-q"],
        cwd=b,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert (run_dir / "status").read_text().strip() == "complete"
    log = (run_dir / "log.txt").read_text()
    assert "finetune: resumed from" in log and f"/{TOTAL}" in log

    got, ref = json.loads((run_dir / "metrics.json").read_text()), json.loads((ref_dir / "metrics.json").read_text())
    steps = [h["step"] for h in got["stages"][0]["history"] if "eval" in h]
    assert steps == [50, 100, 150, 200, 250, 300]  # the step count continued, not restarted
    assert got["stages"][0]["history"][-1]["step"] == TOTAL
    assert got["stages"][0]["resumed_seconds"] > 0  # the stage's time counts the killed process's training too
    assert got["stages"][0]["seconds"] >= got["stages"][0]["resumed_seconds"]
    a, b_ = ref["artifacts"]["pytorch"]["metrics"]["dev"], got["artifacts"]["pytorch"]["metrics"]["dev"]
    assert b_["accuracy"] == pytest.approx(a["accuracy"], abs=1e-6)
    wa, wb = _weights(ref_dir), _weights(run_dir)
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst < 1e-5, worst  # tolerance: identical up to float noise
    assert not (run_dir / "checkpoints" / "stage-0-finetune" / "train").exists()  # done: optimizer state removed


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tiny_dir, tmp_path):
    recipe = _recipe(tiny_dir, tmp_path)
    proc = _start(["run", str(recipe)], cwd=tmp_path)
    run_dir = tmp_path / "runs" / "r"
    _wait_for_checkpoint(proc, run_dir / "checkpoints/stage-0-finetune/train/trainer_state.json", min_step=10)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Resume with: compressor run --resume" in out and "Traceback" not in out
    assert (run_dir / "status").read_text().startswith("failed:")
    # resuming a completed stage list later skips nothing it should not: stage 0 continues
    res = subprocess.run(
        [sys.executable, "-m", "compressor", "run", "--resume", str(run_dir), "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    again = subprocess.run(
        [sys.executable, "-m", "compressor", "run", "--resume", str(run_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "already complete" in again.stderr


def test_resume_skips_completed_stages(tiny_dir, tmp_path):
    recipe = _recipe(tiny_dir, tmp_path)
    run_dir = run(recipe, output_dir=str(tmp_path / "runs"), quiet=True)
    (run_dir / "status").write_text("failed: pretend\n")
    before = (run_dir / "onnx" / "model.onnx").stat().st_mtime_ns
    run(resume=run_dir, quiet=True)
    log = (run_dir / "log.txt").read_text()
    assert "stage 0 (finetune): already complete, skipped" in log and "stage 1 (export): already complete, skipped" in log
    assert (run_dir / "onnx" / "model.onnx").stat().st_mtime_ns == before
