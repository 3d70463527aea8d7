"""What a run does once it has measured: keep the plan's predictions beside the measurements, and leave a
complete run folder with only what its report and records still need."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from compressor.core.errors import CompressorError
from compressor.core.records import StageRecord, read_dict, write_metrics, write_record

log = logging.getLogger("compressor")


def prune_checkpoints(run_dir: Path) -> int:
    """A complete run keeps, under checkpoints/, only what the report and its records still refer to: each stage's
    done.json and the baseline model. Stage snapshots (the last one is model/ again) and training state go; the
    stage records that named the last snapshot name model/ instead, so --resume of a run whose every stage is
    complete still finds its model. Returns the bytes freed."""
    stages = sorted((run_dir / "checkpoints").glob("stage-*"), key=lambda p: int(p.name.split("-")[1]))
    records = {p: read_dict(p / "done.json", StageRecord) for p in stages if (p / "done.json").is_file()}
    last = next((r["model"] for r in reversed(list(records.values())) if r.get("model")), None)
    if last is not None and (run_dir / "model").is_dir():
        for p, rec in records.items():
            if rec.get("model") == last:
                write_record(p / "done.json", StageRecord, {**rec, "model": "model"})
    freed = 0
    for stage in stages:
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
    return write_metrics(run_dir / "metrics.json", results)


def tidy_checkpoints(run_dir: Path) -> None:
    try:
        freed = prune_checkpoints(run_dir)
    except OSError as e:  # the run is complete: a snapshot that cannot be removed is only disk space
        log.warning("could not remove the stage snapshots under %s: %s", run_dir / "checkpoints", e)
        return
    if freed:
        log.info(
            "removed %.1f MiB of stage snapshots from checkpoints/ (model/ holds the final model; "
            "output.keep_checkpoints: true keeps them)",
            freed / 2**20,
        )
