"""--resume checks what the run read, not only its recipe (issue 23: after swapping the labels of a killed run's
training file, --resume skipped the fine-tune as "already complete"; `run OTHER.yaml --resume DIR` ignored OTHER.yaml)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import compressor.train.finetune as F
from compressor import testing as T
from compressor.core.errors import RecipeError, RunDirError
from compressor.pipeline.orchestrate import run
from compressor.train.loop import Interrupted
from tests.conftest import write_recipe


def _recipe(folder: Path, model: Path, lr: str = "1.0e-3") -> Path:
    return write_recipe(
        folder,
        f"""name: inp
model: {{path: {model}}}
data: {{train: train.csv, split: {{dev: 0.25}}, max_length: 24}}
stages:
  - finetune: {{max_steps: 8, lr: {lr}, batch_size: 8, eval_every: 4, checkpoint_every: 2}}
  - export: {{}}
evaluate: {{artifacts: [torch]}}
bench: {{enabled: false}}
""",
    )


def _swap_labels(path: Path) -> None:
    lines = path.read_text().splitlines()
    swapped = [lines[0]] + [
        ln.rsplit(",", 1)[0] + "," + {"positive": "negative", "negative": "positive"}[ln.rsplit(",", 1)[1]] for ln in lines[1:]
    ]
    path.write_text("\n".join(swapped) + "\n")


@pytest.fixture
def done_run(tiny_dir, tmp_path) -> tuple[Path, Path]:
    """A run whose stages all completed, then marked failed (as if killed in evaluation): resumable."""
    T.write_sentiment_csv(tmp_path / "train.csv", n=120)
    recipe = _recipe(tmp_path, tiny_dir / "bert")
    run_dir = run(recipe, output_dir=str(tmp_path / "runs"), quiet=True)
    (run_dir / "status").write_text("failed: pretend\n")
    return recipe, run_dir


def _weights(run_dir: Path) -> dict:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_changed_training_labels_refused_then_rerun(done_run, tmp_path, monkeypatch):
    recipe, run_dir = done_run
    before = _weights(run_dir)
    _swap_labels(tmp_path / "train.csv")
    with pytest.raises(RunDirError, match=r"data.train \(.*train.csv\) changed since the run started; --rerun-changed"):
        run(resume=run_dir, quiet=True)
    assert torch.equal(_weights(run_dir)["classifier.weight"], before["classifier.weight"])  # nothing redone yet

    from typer.testing import CliRunner

    from compressor.cli.commands import app

    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["run", "--resume", str(run_dir)], env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert r.exit_code == 2 and "data.train" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

    run(resume=run_dir, quiet=True, rerun_changed=True)
    log = (run_dir / "log.txt").read_text()
    assert "stage 0 (finetune) changed since it ran: running it again" in log
    assert "stage 0 (finetune): already complete" not in log.split("resume")[-1]
    fresh = run(recipe, output_dir=str(tmp_path / "fresh"), quiet=True)  # the swapped data from the start
    got, want = _weights(run_dir), _weights(fresh)
    assert all(torch.equal(got[k], want[k]) for k in want)
    info = json.loads((run_dir / "run.json").read_text())
    assert (
        info["inputs"]["data.train"]["digest"] == json.loads((fresh / "run.json").read_text())["inputs"]["data.train"]["digest"]
    )
    (run_dir / "status").write_text("failed: pretend\n")
    run(resume=run_dir, quiet=True)  # now recorded: nothing changed, everything skipped
    assert "stage 0 (finetune): already complete, skipped" in (run_dir / "log.txt").read_text().split("resume")[-1]


def test_changed_tokenizer_in_the_model_folder_refused(tiny_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_dir / "bert", model)
    T.write_sentiment_csv(tmp_path / "train.csv", n=120)
    run_dir = run(_recipe(tmp_path, model), output_dir=str(tmp_path / "runs"), quiet=True)
    (run_dir / "status").write_text("failed: pretend\n")
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg["model_max_length"] = 77
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunDirError, match="model.path .* changed since the run started"):
        run(resume=run_dir, quiet=True)


def test_recipe_given_with_resume_is_compared(done_run, tmp_path, tiny_dir):
    recipe, run_dir = done_run
    run(recipe, resume=run_dir, quiet=True)  # the same recipe: fine
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tmp_path / "train.csv", other / "train.csv")
    (run_dir / "status").write_text("failed: pretend\n")
    with pytest.raises(RecipeError, match=r"other/recipe.yaml: differs from .*recipe.yaml in stages.0.finetune.lr;"):
        run(_recipe(other, tiny_dir / "bert", lr="2.0e-3"), resume=run_dir, quiet=True)


def test_interrupted_stage_with_changed_data_trains_afresh(tiny_dir, tmp_path, monkeypatch):
    """A half-trained stage whose data changed is not continued from its checkpoint under --rerun-changed."""
    T.write_sentiment_csv(tmp_path / "train.csv", n=120)
    recipe = _recipe(tmp_path, tiny_dir / "bert")
    real, calls = F.task_loss, []

    def loss_then_signal(model, batch):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(model, batch)

    monkeypatch.setattr(F, "task_loss", loss_then_signal)
    with pytest.raises(Interrupted):
        run(recipe, output_dir=str(tmp_path / "runs"), quiet=True)
    monkeypatch.setattr(F, "task_loss", real)
    run_dir = tmp_path / "runs" / "inp"
    _swap_labels(tmp_path / "train.csv")
    run(resume=run_dir, quiet=True, rerun_changed=True)
    assert "training it afresh" in (run_dir / "log.txt").read_text()
    fresh = run(recipe, output_dir=str(tmp_path / "fresh"), quiet=True)
    got, want = _weights(run_dir), _weights(fresh)
    assert all(torch.equal(got[k], want[k]) for k in want)
