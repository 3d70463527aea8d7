"""``compressor run``: a short, linear orchestration over an explicit RunContext.

The pipeline knows stages only through the stage registry (``STAGES``: config type -> handler) and their
contracts (compressor/recipe/contracts.py): whether a stage changes the model (it runs in every process and leaves a
snapshot), trains it, or compresses it in place (the report's baseline is kept first).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from compressor.core.errors import CompressorError, RunDirError
from compressor.core.registry import STAGES
from compressor.core.rundir import (
    atomic_write_json,
    atomic_write_text,
    prepare_run_dir,
    read_status,
    refuse_existing,
    write_status,
)
from compressor.core.runlock import LockSlot
from compressor.core.writeerrors import run_failure
from compressor.inputs import STARTED, check_resume, fingerprint, same_start
from compressor.pipeline.build import build_context, save_model, seed_everything
from compressor.pipeline.checkpoints import (
    keep_baseline,
    record_stage,
    restore_completed,
    save_baseline,
    stage_dir,
    stage_hashes,
)
from compressor.pipeline.context import RunContext
from compressor.pipeline.logfile import LogToFile, Processes
from compressor.pipeline.run_end import tidy_checkpoints, with_plan
from compressor.recipe import load_recipe
from compressor.recipe.contracts import contract_of
from compressor.recipe.paths import check_paths
from compressor.train.loop import Interrupted

log = logging.getLogger("compressor")
RUN_INFO = "run.json"


def _register_stages() -> None:
    # importing a stage module registers its handlers with STAGES (quantization schemes with SCHEMES too) and its
    # training callbacks / model state with TRAINING_CALLBACKS / MODEL_STATES
    import compressor.distill.stage  # noqa: F401
    import compressor.onnx.stage  # noqa: F401
    import compressor.prune.stage  # noqa: F401
    import compressor.prune.vocab  # noqa: F401
    import compressor.quantize.calibrated  # noqa: F401
    import compressor.quantize.int8_weight  # noqa: F401
    import compressor.quantize.ptq  # noqa: F401
    import compressor.quantize.qat  # noqa: F401
    import compressor.quantize.static  # noqa: F401
    import compressor.quantize.weight_only  # noqa: F401
    import compressor.train.adapters  # noqa: F401  (training callbacks: lora, partial)
    import compressor.train.finetune  # noqa: F401


def run_dir_for(recipe, recipe_dir: Path, output_dir: str | None = None) -> Path:
    """--output (relative to the current dir), else output.dir (relative to the recipe), else ./runs."""
    if output_dir:
        base = Path(output_dir)
    elif recipe.output.dir:
        base = recipe_dir / Path(recipe.output.dir).expanduser()
    else:
        base = Path("runs")
    return (base / (recipe.output.name or recipe.name)).absolute()


@dataclass
class _Start:
    """What a run starts from: the recipe, its folders and the digests of its inputs."""

    recipe: object
    raw: dict
    recipe_dir: Path
    run_dir: Path
    inputs: dict | None


def _resume_start(lock: LockSlot, procs: Processes, resume, recipe_path, overrides, rerun_changed) -> _Start:
    run_dir = Path(resume).absolute()
    info_file = run_dir / RUN_INFO
    if not info_file.is_file():
        raise RunDirError(f"{run_dir}: not a run directory (no {RUN_INFO})")
    if procs.is_main:
        lock.take(run_dir)
    if read_status(run_dir) == "complete":
        raise RunDirError(f"{run_dir}: this run is already complete; nothing to resume")
    info = json.loads(info_file.read_text())
    recipe_dir = Path(info["recipe_dir"])
    recipe, raw = load_recipe(run_dir / "recipe.yaml", overrides, recipe_dir)
    recipe._source = (info.get("recipe", str(run_dir / "recipe.yaml")), recipe._source[1])
    inputs = check_resume(run_dir, info, recipe, recipe_dir, recipe_path, overrides, rerun_changed)
    if inputs is not None and procs.is_main:
        atomic_write_json(info_file, {**info, "inputs": inputs})
    return _Start(recipe, raw, recipe_dir, run_dir, inputs)


def _new_start(lock: LockSlot, procs: Processes, recipe_path, overrides, force, output_dir) -> _Start:
    if recipe_path is None:
        raise CompressorError("give a recipe, or --resume RUN_DIR")
    recipe, raw = load_recipe(recipe_path, overrides)  # the stage contracts: refused here, before the run folder
    recipe_dir = Path(recipe_path).absolute().parent
    check_paths(recipe, recipe_dir, models_must_exist=True)  # before the run folder exists
    run_dir = run_dir_for(recipe, recipe_dir, output_dir)
    inputs = fingerprint(recipe, recipe_dir)
    if procs.is_main:
        refuse_existing(run_dir, force)  # an existing run is refused without touching it (nor its lock)
        lock.take(run_dir)
        prepare_run_dir(run_dir, force)
        atomic_write_json(
            run_dir / RUN_INFO,
            {"recipe": str(recipe_path), "recipe_dir": str(recipe_dir), "overrides": list(overrides or []), "inputs": inputs},
        )
    return _Start(recipe, raw, recipe_dir, run_dir, inputs)


def run(
    recipe_path: str | Path | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
    output_dir: str | None = None,
    quiet: bool = False,
    resume: str | Path | None = None,
    rerun_changed: bool = False,
) -> Path:
    """Run a recipe end to end and return the run directory; or, with ``resume=RUN_DIR``, continue one
    (``recipe_path`` then must be the run's recipe; ``rerun_changed``: inputs that changed are read again).

    The run folder is locked for the whole run (one process per folder; see ``compressor.core.runlock``)."""
    lock = LockSlot()
    try:
        return _run(lock, recipe_path, overrides, force, output_dir, quiet, resume, rerun_changed)
    finally:
        lock.release()


def _run(lock: LockSlot, recipe_path, overrides, force, output_dir, quiet, resume, rerun_changed=False) -> Path:
    procs = Processes()
    if resume is not None:
        start = _resume_start(lock, procs, resume, recipe_path, overrides, rerun_changed)
    else:
        start = _new_start(lock, procs, recipe_path, overrides, force, output_dir)
    run_dir = start.run_dir
    procs.wait()
    if procs.is_main:
        write_status(run_dir, "running")
        atomic_write_text(run_dir / "recipe.yaml", yaml.safe_dump(start.raw, sort_keys=False))
    _register_stages()
    started = time.time()
    doing = ["loading"]  # what the run is doing, for the failure line
    with LogToFile(run_dir / "log.txt" if procs.is_main else None, quiet or not procs.is_main):
        try:
            log.info("%s %s -> %s", "resume" if resume else "run", recipe_path or resume, run_dir)
            if lock.note:
                log.warning(lock.note)
            ctx = build_context(start.recipe, start.recipe_dir, run_dir)
            _run_stages(ctx, procs, stage_hashes(start.recipe, start.inputs), resume is not None, doing)
            if procs.is_main:  # evaluation, benchmark and report belong to the main process
                doing[0] = "the evaluation and report"
                _measure(ctx, started)
        except KeyboardInterrupt:
            if procs.is_main:
                write_status(run_dir, "failed: interrupted", best_effort=True)
            raise
        except BaseException as e:
            _failed(e, run_dir, doing[0], procs)
    return run_dir


def _run_stages(ctx: RunContext, procs: Processes, hashes: list[str], resuming: bool, doing: list[str]) -> None:
    """Every stage not completed yet, in order: run (stages that change the model in every process), record."""
    first = restore_completed(ctx, hashes) if resuming else 0
    model_rel = None
    for i, (kind, cfg) in enumerate(ctx.recipe.stage_list()):
        if i < first:
            continue
        doing[0] = f"stage {i} ({kind})"
        t0 = time.perf_counter()
        log.info("stage %d: %s", i, kind)
        contract = contract_of(cfg)
        ctx.stage_path = f"stages.{i}.{kind}"
        ctx.stage_dir = stage_dir(ctx.run_dir, i, kind) / "train"
        ctx.resuming = resuming and i == first and same_start(ctx.stage_dir.parent, hashes[i])
        if procs.is_main:
            atomic_write_json(ctx.stage_dir.parent / STARTED, {"hash": hashes[i]})
        result = {}
        # each stage starts from its own seed, so it builds the same heads / students / projections whether
        # the stages before it ran in this process or were restored by --resume
        seed_everything(ctx.recipe.seed + i + 1)
        keep_baseline(ctx, kind, cfg)
        if contract.changes_model or procs.is_main:
            result = STAGES.get(cfg)(ctx, cfg) or {}
        # a resumed stage counts the time its interrupted process(es) spent too
        seconds = time.perf_counter() - t0 + result.get("resumed_seconds", 0.0)
        own = result.pop("seconds", None)  # an export stage's exporter call alone: not the stage's time
        result = {"stage": kind, "seconds": round(seconds, 2), **result, **({"exporter_seconds": own} if own is not None else {})}
        ctx.stage_results.append(result)
        ctx.task_trained = ctx.task_trained or contract.trains
        t_save = time.perf_counter()
        if procs.is_main:
            save_baseline(ctx, i)
            model_rel = record_stage(ctx, i, kind, cfg, hashes[i], result, model_rel)
        procs.wait()
        # the figure the report shows, then the checkpoint write that follows it (not part of the stage)
        log.info(
            "stage %d: %s done in %.1fs (checkpoint saved in %.1fs)", i, kind, result["seconds"], time.perf_counter() - t_save
        )


def _measure(ctx: RunContext, started: float) -> None:
    """Save the model, then evaluate, benchmark and report every artifact; the run is complete."""
    from compressor.measure.measure_run import measure_run
    from compressor.report.markdown import write_report

    recipe, run_dir = ctx.recipe, ctx.run_dir
    log.info("saving the model to %s", run_dir / "model")
    save_model(ctx)
    results = measure_run(ctx, started)
    results = with_plan(results, recipe, ctx.recipe_dir, run_dir)
    write_report(run_dir, results)
    write_status(run_dir, "complete")
    log.info("run complete in %.1fs: %s", time.time() - started, run_dir)
    if not recipe.output.keep_checkpoints:
        tidy_checkpoints(run_dir)


def _failed(e: BaseException, run_dir: Path, doing: str, procs: Processes) -> None:
    """Mark the run failed, log why, and raise the one-line error (an interruption says how to resume)."""
    failure = run_failure(e, run_dir, doing)
    reason = str(failure or e).splitlines()[0] if str(failure or e) else type(e).__name__
    if procs.is_main:
        write_status(run_dir, f"failed: {reason}", best_effort=True)
    log.error("run failed: %s", reason, extra={"file_only": True})
    if isinstance(e, Interrupted):
        raise Interrupted(f"{reason}. Resume with: compressor run --resume {run_dir}") from None
    if failure is not None and failure is not e:
        raise failure from e
    raise e
