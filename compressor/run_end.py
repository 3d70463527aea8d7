"""What a run does once it has measured: keep the plan's predictions beside the measurements, and leave a
complete run folder with only what its report and records still need."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from compressor.errors import CompressorError
from compressor.rundir import atomic_write_json

log = logging.getLogger("compressor")


def prune_checkpoints(run_dir: Path) -> int:
    """A complete run keeps, under checkpoints/, only what the report and its records still refer to: each stage's
    done.json and the baseline model. Stage snapshots (the last one is model/ again) and training state go.
    Returns the bytes freed."""
    freed = 0
    for stage in sorted((run_dir / "checkpoints").glob("stage-*")):
        for child in stage.iterdir():
            if child.name == "done.json":
                continue
            freed += sum(f.stat().st_size for f in child.rglob("*") if f.is_file()) if child.is_dir() else child.stat().st_size
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    return freed


def with_plan(results: dict, recipe, recipe_dir: Path, run_dir: Path) -> dict:
    """metrics.json also keeps what `compressor plan` predicted for this recipe on this machine, so the report can
    set the prediction beside the measurement."""
    from compressor.plan import machine_info, make_plan

    try:
        rows = make_plan(recipe, recipe_dir, machine_info())
    except (CompressorError, OSError, ValueError) as e:  # the plan is commentary: it never fails a measured run
        log.warning("no plan to compare with the measurements: %s", e)
        return results
    results = {**results, "plan": [{"stage": a.stage, "verdict": a.verdict, "why": a.why} for a in rows]}
    atomic_write_json(run_dir / "metrics.json", results)
    return results


def tidy_checkpoints(run_dir: Path) -> None:
    try:
        freed = prune_checkpoints(run_dir)
    except OSError as e:  # the run is complete: a snapshot that cannot be removed is only disk space
        log.warning("could not remove the stage snapshots under %s: %s", run_dir / "checkpoints", e)
        return
    if freed:
        log.info("removed %.1f MiB of stage snapshots from checkpoints/ (model/ holds the final model; "
                 "output.keep_checkpoints: true keeps them)", freed / 2**20)
