"""Faults a real machine has: two runs on one folder, a full disk at each stage, `kill -9` at each stage boundary.

Tiny BERT, 20 training steps: each case is a short run that fails, then a `--resume` that completes it.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

import compressor.core.rundir as R
from compressor.cli.commands import app
from compressor.pipeline.orchestrate import run
from tests.conftest import write_recipe

STEPS = 20


def _recipe(tiny_dir, folder: Path, steps: int = STEPS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_recipe(
        folder,
        f"""name: r
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2}}, max_length: 32}}
stages:
  - finetune: {{max_steps: {steps}, lr: 1.0e-3, batch_size: 8, eval_every: 10, checkpoint_every: 10}}
  - export: {{}}
  - quantize: {{type: dynamic}}
bench: {{enabled: false}}
""",
    )


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400", "NO_COLOR": "1"})


def _start(args, cwd: Path):
    """`compressor ARGS` in a child process, forked from this one so that it starts without importing torch again
    (a real process: its own PID, killed for real)."""
    proc = multiprocessing.get_context("fork").Process(target=_child, args=([str(a) for a in args], cwd), daemon=True)
    proc.start()
    proc.out = cwd / "child.out"
    return proc


def _child(args: list[str], cwd: Path) -> None:
    os.chdir(cwd)
    out = os.open(cwd / "child.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sys.argv = ["compressor", *args]
    from compressor.cli.commands import main

    main()


def _kill(proc) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)


def _wait_for(proc, path: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file():
            return
        if proc.exitcode is not None:
            pytest.fail(
                f"the run ended ({proc.exitcode}) before {path.name} appeared:\n"
                + (proc.out.read_text() if proc.out.is_file() else "")
            )
        time.sleep(0.01)
    pytest.fail(f"{path} did not appear")


def _metrics(run_dir: Path) -> dict:
    got = json.loads((run_dir / "metrics.json").read_text())
    return {name: a["metrics"]["dev"] for name, a in got["artifacts"].items()}


# ---------------------------------------------------------------- two processes on one folder
def test_a_second_run_on_a_folder_in_use_is_refused_and_a_killed_one_reads_interrupted(tiny_dir, tmp_path):
    recipe = _recipe(tiny_dir, tmp_path, steps=1_000_000)  # trains until killed
    run_dir = tmp_path / "runs" / "r"
    first = _start(["run", recipe, "-q"], cwd=tmp_path)
    try:
        _wait_for(first, run_dir / "checkpoints" / "stage-0-finetune" / "train" / "trainer_state.json")
        for args in (["run", recipe, "-o", tmp_path / "runs", "--force"], ["run", "--resume", run_dir]):
            r = _cli(*args)
            assert r.exit_code == 2, r.output
            assert f"error: {run_dir}: in use by another compressor run (PID {first.pid}, started " in r.output
            assert r.output.count("\n") == 1  # one line
        r = _cli("run", recipe, "-o", tmp_path / "runs")
        assert r.exit_code == 2 and f"already exists (running, PID {first.pid}" in r.output, r.output
        assert first.exitcode is None and (run_dir / "checkpoints" / "stage-0-finetune" / "train").is_dir()  # untouched
        r = _cli("status", run_dir)
        assert r.exit_code == 0 and r.output.startswith(f"{run_dir}: running, PID {first.pid}, started "), r.output
    finally:
        _kill(first)
    assert (run_dir / "status").read_text().strip() == "running"  # nobody wrote a verdict ...
    resume = f"interrupted — resume with `compressor run --resume {run_dir}`"
    assert _cli("status", run_dir).output.strip() == f"{run_dir}: {resume}"  # ... yet it is not running
    r = _cli("run", recipe, "-o", tmp_path / "runs")
    assert r.exit_code == 2 and f"already exists ({resume}); use --force" in r.output, r.output
    (run_dir / "metrics.json").write_text("{}")  # as if an earlier evaluation had written one
    r = _cli("compare", run_dir, "-o", tmp_path / "cmp")
    assert r.exit_code == 2 and f"run is not complete (status: {resume})" in r.output, r.output


# ---------------------------------------------------------------- a full disk at each stage
def _enospc_at(monkeypatch, name: str, nth: int = 1) -> None:
    """Make the ``nth`` atomic write of a file called ``name`` fail half-way, as a full disk does."""
    real, seen = R._write_file, []

    def write(fd, data, path):
        if Path(path).name == name:
            seen.append(path)
            if len(seen) == nth:
                os.write(fd, data[: len(data) // 2])
                os.close(fd)
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, path)

    monkeypatch.setattr(R, "_write_file", write)


CASES = {  # stage: (file whose write fails, which write of it, what the error line names; RUN: the run folder)
    "finetune": ("trainer_state.json", 2, "the finetune checkpoint at step 20 (RUN/checkpoints/stage-0-finetune/train)"),
    "export": ("model.opt.onnx.json", 1, "RUN/onnx/model.opt.onnx.json"),
    "quantize": ("model.int8.onnx.json", 1, "RUN/onnx/model.int8.onnx.json"),
    "report": ("report.md", 1, "RUN/report.md"),
}


@pytest.mark.parametrize("stage", list(CASES))
def test_a_full_disk_at_each_stage_is_one_line_and_resume_completes(stage, tiny_dir, tmp_path, monkeypatch):
    name, nth, what = CASES[stage]
    recipe = _recipe(tiny_dir, tmp_path)
    run_dir = tmp_path / "runs" / "r"
    _enospc_at(monkeypatch, name, nth)
    r = _cli("run", recipe, "-o", tmp_path / "runs", "-q")
    assert r.exit_code == 2, r.output
    err = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(err) == 1 and "Traceback" not in r.output and "internal error" not in r.output, r.output
    assert err[0].startswith(f"error: could not write {what.replace('RUN', str(run_dir))}: no space left on device; ")
    assert " free on that disk; the last checkpoint is intact: free some space, then " in err[0]
    assert err[0].endswith(f"`compressor run --resume {run_dir}` continues from it")
    assert R.read_status(run_dir).startswith("failed: could not write")  # never "complete"
    assert not list(run_dir.rglob("*.tmp"))  # no partial file left behind
    ckpt = run_dir / "checkpoints" / "stage-0-finetune"
    if stage == "finetune":  # the checkpoint of step 10 is the one that stays, whole
        assert json.loads((ckpt / "train" / "trainer_state.json").read_text())["step"] == 10
        assert load_file(str(ckpt / "train" / "model.safetensors"))
        assert not (ckpt / "done.json").exists()
    else:
        assert (ckpt / "done.json").is_file() and load_file(str(ckpt / "model" / "model.safetensors"))
    assert not (run_dir / "checkpoints" / "stage-2-quantize" / "done.json").exists() or stage == "report"
    if stage == "report":
        assert _cli("compare", run_dir, "-o", tmp_path / "cmp").exit_code == 2  # metrics.json is there, not complete

    monkeypatch.undo()  # room again
    r = _cli("run", "--resume", run_dir, "-q")
    assert r.exit_code == 0, r.output
    assert R.read_status(run_dir) == "complete"
    log = (run_dir / "log.txt").read_text()
    if stage == "finetune":
        assert f"finetune: resumed from {ckpt / 'train'} at step 10/{STEPS}" in log
    else:
        assert "stage 0 (finetune): already complete, skipped" in log
    assert {"pytorch", "onnx", "int8"} <= set(_metrics(run_dir))


# ---------------------------------------------------------------- kill -9 at each stage boundary
def test_kill_at_each_stage_boundary_then_resume_matches_an_uninterrupted_run(tiny_dir, tmp_path):
    """Killed as each stage is recorded done (so during the next one), resumed each time: the same metrics and
    weights as a run that was never interrupted. Tolerance: 1e-6 on metrics, 1e-5 on weights (float noise; one
    thread, seeded, so in practice identical)."""
    recipe = _recipe(tiny_dir, tmp_path / "k")
    run_dir = tmp_path / "k" / "runs" / "r"
    args = ["run", recipe, "-q"]
    for i, kind in enumerate(("finetune", "export", "quantize")):
        proc = _start(args, cwd=tmp_path / "k")
        _wait_for(proc, run_dir / "checkpoints" / f"stage-{i}-{kind}" / "done.json")
        _kill(proc)
        assert R.read_status(run_dir) == "interrupted", f"killed after {kind}: {R.read_status(run_dir)}"
        args = ["run", "--resume", run_dir, "-q"]
    run(resume=run_dir, quiet=True)
    ref = run(_recipe(tiny_dir, tmp_path / "ref"), output_dir=str(tmp_path / "ref" / "runs"), quiet=True)
    assert R.read_status(run_dir) == "complete" and not (run_dir / ".lock").exists()
    log = (run_dir / "log.txt").read_text()
    assert "stage 2 (quantize): already complete, skipped" in log
    assert "took over the lock of a run that is gone (PID " in log
    got, want = _metrics(run_dir), _metrics(ref)
    assert got.keys() == want.keys()
    for name in want:
        for metric in ("accuracy", "f1_macro"):
            assert got[name][metric] == pytest.approx(want[name][metric], abs=1e-6), (name, metric)
    wa, wb = load_file(str(ref / "model" / "model.safetensors")), load_file(str(run_dir / "model" / "model.safetensors"))
    assert wa.keys() == wb.keys() and max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5


# ---------------------------------------------------------------- a real full disk (where a tmpfs can be mounted)
@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs: a disk that really fills. Needs root (CAP_SYS_ADMIN); skipped elsewhere."""
    import shutil
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_real_full_disk_keeps_the_last_checkpoint_and_resume_completes(tiny_dir, tmp_path, small_disk):
    import shutil

    recipe = _recipe(tiny_dir, tmp_path)
    run_dir = small_disk / "r"
    filler = small_disk / "filler"
    # leave room for the run's small files and one training checkpoint (about 0.5 MB), not for a second beside it
    filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 760_000))
    r = _cli("run", recipe, "-o", small_disk, "-q")
    assert r.exit_code == 2, r.output
    err = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(err) == 1 and "Traceback" not in r.output and "internal error" not in r.output, r.output
    assert err[0].startswith(f"error: could not write the finetune checkpoint at step 20 ({run_dir}/checkpoints/"), err[0]
    assert "no space left on device" in err[0] or "the write failed (is the disk full?)" in err[0]
    assert err[0].endswith(f"`compressor run --resume {run_dir}` continues from it")
    state = run_dir / "checkpoints" / "stage-0-finetune" / "train"
    assert json.loads((state / "trainer_state.json").read_text())["step"] == 10 and load_file(str(state / "model.safetensors"))
    assert not list(run_dir.rglob("*.tmp"))
    filler.unlink()  # room again
    r = _cli("run", "--resume", run_dir, "-q")
    assert r.exit_code == 0, r.output
    assert R.read_status(run_dir) == "complete"
    assert f"finetune: resumed from {state} at step 10/{STEPS}" in (run_dir / "log.txt").read_text()
