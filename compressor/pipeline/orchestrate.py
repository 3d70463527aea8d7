"""``compressor run``: a short, linear orchestration over an explicit RunContext."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import yaml

from compressor.core.errors import CompressorError, RunDirError
from compressor.core.records import StageRecord, read_dict, write_record
from compressor.core.registry import STAGES
from compressor.core.rundir import (
    atomic_write_json,
    atomic_write_text,
    prepare_run_dir,
    read_status,
    refuse_existing,
    removed_on_error,
    replace_dir,
    tmp_sibling,
    write_status,
)
from compressor.core.runlock import LockSlot
from compressor.core.writeerrors import QuietFileHandler, run_failure, writing
from compressor.inputs import STARTED, check_resume, fingerprint, same_start
from compressor.models import save_tokenizer
from compressor.pipeline.context import RunContext
from compressor.pipeline.run_end import tidy_checkpoints, with_plan
from compressor.recipe import load_recipe
from compressor.recipe.paths import check_paths
from compressor.recipe.schema import QATQuant
from compressor.train.loop import Interrupted

log = logging.getLogger("compressor")


def _register_stages() -> None:
    # importing a stage module registers its handlers with STAGES
    import compressor.distill.stage  # noqa: F401
    import compressor.onnx.stage  # noqa: F401
    import compressor.prune.stage  # noqa: F401
    import compressor.prune.vocab  # noqa: F401
    import compressor.quantize.calibrated  # noqa: F401
    import compressor.quantize.ptq  # noqa: F401
    import compressor.quantize.qat  # noqa: F401
    import compressor.quantize.static  # noqa: F401
    import compressor.quantize.weight_only  # noqa: F401
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


class _LogToFile:
    """log.txt in the run dir (with timings) plus concise console lines."""

    def __init__(self, path: Path | None, quiet: bool = False):
        self.path, self.quiet = path, quiet

    def __enter__(self):
        from rich.logging import RichHandler

        from compressor.core.console import stdout_console

        fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
        self.file = QuietFileHandler(self.path, encoding="utf-8", delay=True) if self.path else logging.NullHandler()
        self.file.setFormatter(fmt)
        self.console = RichHandler(console=stdout_console(), show_path=False, show_time=False, markup=False,
                                   rich_tracebacks=False)
        self.console.setLevel(logging.WARNING if self.quiet else logging.INFO)
        # a line marked file_only (the failure the command line prints itself) is not said twice on the console
        self.console.addFilter(lambda record: not getattr(record, "file_only", False))
        log.addHandler(self.file)
        log.addHandler(self.console)
        self.saved = (log.level, log.propagate)
        log.setLevel(logging.INFO)
        log.propagate = False
        return self

    def __exit__(self, *exc):
        for h in (self.file, self.console):
            log.removeHandler(h)
            h.close()
        log.setLevel(self.saved[0])
        log.propagate = self.saved[1]


def pick_device(setting: str) -> str:
    from compressor.measure.bench.runner import cuda_available

    if setting == "cuda" and not cuda_available():
        raise CompressorError("device: cuda was asked for but no CUDA GPU is visible")
    if setting == "auto":
        return "cuda" if cuda_available() else "cpu"
    return setting


def needs_selection_split(recipe) -> bool:
    """Whether a stage chooses by a metric (training keeps its best checkpoint; an INT8 accuracy budget picks trials)
    and the recipe selects on a held-out validation split (the default) rather than on dev."""
    from compressor.recipe.schema import StaticQuant, TrainConfig

    if recipe.data.split.select_on != "validation":
        return False
    return any(isinstance(c, TrainConfig) or (isinstance(c, StaticQuant) and (c.max_drop is not None
                                                                               or c.max_drop_relative is not None))
               for _, c in recipe.stage_list())


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch (every device) RNGs from ``seed``: called before any model is built (a new task head,
    a student, a projection), so that a recipe run twice gives the same weights."""
    from transformers import set_seed

    set_seed(seed % 2**32)


def build_context(recipe, recipe_dir: Path, run_dir: Path) -> RunContext:
    """Load tokenizer, data and model, and tokenize the splits."""
    import transformers

    from compressor import data as D
    from compressor.models import load_model, load_tokenizer, resolve

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    ctx = RunContext(recipe=recipe, recipe_dir=recipe_dir, run_dir=run_dir, device=pick_device(recipe.device))
    m = recipe.model
    src = resolve(m.path, recipe_dir, "model.path", must_exist=False)
    seed_everything(recipe.seed)
    t0 = time.perf_counter()
    ctx.tokenizer = load_tokenizer(src, m.trust_remote_code, m.revision)
    validation = recipe.data.split.validation if needs_selection_split(recipe) else 0.0
    if ctx.task == "sequence-classification":
        ctx.dataset = D.load_classification(recipe.data, recipe_dir, recipe.seed, m.num_labels, validation)
        ctx.label_names = ctx.dataset.label_names
        report_data(ctx.dataset, run_dir)
        ctx.model = load_model(src, ctx.task, len(ctx.label_names), ctx.label_names, m.trust_remote_code, m.revision)
        ctx.retokenize(ctx.tokenizer)
    else:
        blocks = D.load_causal_lm(recipe.data, recipe_dir, ctx.tokenizer, recipe.seed, validation)
        ctx.model = load_model(src, ctx.task, trust_remote_code=m.trust_remote_code, revision=m.revision)
        ctx.encoded = {k: D.encode_blocks(b) for k, b in blocks.items()}
    ctx.task_trained = not getattr(ctx.model, "compressor_new_head", False)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in ctx.encoded.items())
    log.info("loaded %s (%s) and data (%s) in %.1fs; device %s", m.path, type(ctx.model).__name__, sizes,
             time.perf_counter() - t0, ctx.device)
    return ctx


def report_data(dataset, run_dir: Path) -> None:
    """Row counts in the log; every row of a repeated text in duplicates.csv in the run folder."""
    from compressor.core.duplicates import count_lines, write_listing

    for line in count_lines(dataset.counts):
        log.info("%s", line)
    listing = run_dir / "duplicates.csv"
    if dataset.duplicate_rows:
        write_listing(listing, dataset.duplicate_rows, dataset.label_names)
        log.info("duplicates: %d repeated text(s), %d with conflicting labels: every row listed in %s",
                 dataset.duplicates["repeated_texts"], dataset.duplicates["conflicting_texts"], listing)
    else:
        listing.unlink(missing_ok=True)


def save_model(ctx: RunContext) -> Path:
    final = ctx.run_dir / "model"
    tmp = tmp_sibling(final)
    with writing(f"the compressed model ({final})", final), removed_on_error(tmp):
        ctx.model.save_pretrained(tmp, safe_serialization=True)
        save_tokenizer(ctx.tokenizer, tmp)
        replace_dir(tmp, final)
    return final


MODEL_STAGES = ("finetune", "distill", "prune")  # stages that change the PyTorch model; they run in every process


class _Processes:
    """Under `accelerate launch` training runs in every process; files are written by the main one only."""

    def __init__(self):
        import os

        self.state = None
        if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            from accelerate import PartialState

            self.state = PartialState(cpu=os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"))

    @property
    def is_main(self) -> bool:
        return self.state is None or self.state.is_main_process

    def wait(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()
RUN_INFO = "run.json"


def stage_hashes(recipe, inputs: dict | None = None) -> list[str]:
    """A hash per stage over its config and everything before it (model, data, seed, earlier stages) and, with
    ``inputs`` (see compressor.inputs), the content of the files they read: the model folder and data files for every
    stage, a teacher / student / transfer / extra-text file for the stage that names it.

    Settings left at their defaults are not hashed, so a newer compressor that adds optional settings can
    still resume a run an older one started."""
    from compressor.inputs import digests_for

    def dump(cfg) -> str:
        return json.dumps(cfg.model_dump(exclude_defaults=True), sort_keys=True, default=str)

    head = [dump(recipe.model), dump(recipe.data), recipe.seed] + ([digests_for(inputs, None)] if inputs is not None else [])
    h = hashlib.sha256(json.dumps(head).encode()).hexdigest()
    out = []
    for i, (kind, cfg) in enumerate(recipe.stage_list()):
        own = json.dumps(digests_for(inputs, f"stages.{i}.{kind}")) if inputs is not None else ""
        h = hashlib.sha256((h + kind + dump(cfg) + own).encode()).hexdigest()
        out.append(h)
    return out


def _compresses(kind: str, cfg) -> bool:
    return kind == "prune" or getattr(cfg, "prune", None) is not None or getattr(cfg, "qat", None) is not None


def keep_baseline(ctx: RunContext, kind: str, cfg) -> None:
    """Before the first stage that compresses the model in place, keep a copy of it as the report's baseline.

    A distill stage sets its teacher as the baseline itself (the student is a new model)."""
    import copy

    if ctx.baseline is not None or kind == "distill" or not _compresses(kind, cfg):
        return
    if "baseline" not in ctx.recipe.evaluate.artifacts:
        return
    if not ctx.task_trained:
        log.info("no baseline for the report: the model's task head is untrained before %s (fine-tune it first to compare)",
                 ctx.stage_path)
        return
    ctx.baseline, ctx.baseline_tokenizer = copy.deepcopy(ctx.model).cpu().eval(), ctx.tokenizer
    ctx.baseline_source = f"the model before {ctx.stage_path}"


QAT_STATE = "qat_state.safetensors"
BASELINE = "baseline"  # checkpoints/baseline: the baseline model, saved once, restored on --resume


def _save_baseline(ctx: RunContext, stage: int) -> None:
    final = ctx.run_dir / "checkpoints" / BASELINE
    if ctx.baseline is None or final.exists():
        return
    tmp = tmp_sibling(final)
    with writing(f"the baseline model ({final})", final), removed_on_error(tmp):
        ctx.baseline.save_pretrained(tmp, safe_serialization=True)
        save_tokenizer(ctx.baseline_tokenizer, tmp)
        atomic_write_json(tmp / "source.json", {"source": ctx.baseline_source, "stage": stage})
        replace_dir(tmp, final)


def _restore_baseline(ctx: RunContext, first: int) -> None:
    """Reload the baseline a completed stage (before ``first``) kept; drop one a stage that runs again kept."""
    from compressor.models import load_tokenizer

    folder = ctx.run_dir / "checkpoints" / BASELINE
    if not (folder / "source.json").is_file():
        return
    if json.loads((folder / "source.json").read_text()).get("stage", first) >= first:
        shutil.rmtree(folder)
        return
    m = ctx.recipe.model
    ctx.baseline = ctx.load_model(folder).eval()
    ctx.baseline_tokenizer = load_tokenizer(folder, m.trust_remote_code, m.revision)
    ctx.baseline_source = json.loads((folder / "source.json").read_text())["source"]


def _stage_dir(run_dir: Path, i: int, kind: str) -> Path:
    return run_dir / "checkpoints" / f"stage-{i}-{kind}"


def _restore_completed(ctx: RunContext, hashes: list[str]) -> int:
    """On --resume: reload what completed stages left (model snapshot, artifacts, results).

    Returns the index of the first stage to run. A stage whose hash changed, and all after it, run again.
    """
    from compressor.models import TOKENIZER_FILES, load_tokenizer
    from compressor.quantize.qat import load_qat_state, prepare_qat

    first, snapshot, qat = 0, None, None
    for i, (kind, cfg) in enumerate(ctx.recipe.stage_list()):
        done = _stage_dir(ctx.run_dir, i, kind) / "done.json"
        if not done.is_file():
            break
        rec = read_dict(done, StageRecord)
        if rec.get("hash") != hashes[i]:
            log.info("stage %d (%s) changed since it ran: running it again", i, kind)
            break
        if getattr(cfg, "qat", None) is not None:
            qat = cfg.qat  # trained with fake quantization ...
        elif isinstance(cfg, QATQuant):
            qat = None  # ... and already exported as INT8 (the model went back to plain fp32)
        ctx.stage_results.append(rec["result"])
        ctx.task_trained = ctx.task_trained or kind in ("finetune", "distill")
        ctx.artifacts.update({k: ctx.run_dir / v for k, v in rec.get("artifacts", {}).items()})
        ctx.provenance.update(rec.get("provenance", {}))
        snapshot = rec.get("model") or snapshot
        first = i + 1
        log.info("stage %d (%s): already complete, skipped", i, kind)
    for path in (ctx.run_dir / "checkpoints").glob("stage-*"):
        idx = int(path.name.split("-")[1])
        if idx > first or (idx == first and (path / "done.json").exists()):
            shutil.rmtree(path)  # stale: from a recipe that has changed since
    _restore_baseline(ctx, first)
    if snapshot and not (ctx.run_dir / snapshot).is_dir():  # removed when the run completed (run_end.prune_checkpoints)
        raise RunDirError(f"{ctx.run_dir}: {snapshot}, the model stage {first - 1} left, was removed when the run "
                          "completed (output.keep_checkpoints: false); run it again with --force")
    if snapshot:
        m = ctx.recipe.model
        ctx.model = ctx.load_model(ctx.run_dir / snapshot)
        if qat is not None and (ctx.run_dir / snapshot / QAT_STATE).is_file():
            from safetensors.torch import load_file

            prepare_qat(ctx.model, qat)
            load_qat_state(ctx.model, load_file(str(ctx.run_dir / snapshot / QAT_STATE)))
        if any((ctx.run_dir / snapshot / f).is_file() for f in TOKENIZER_FILES):
            tok = load_tokenizer(ctx.run_dir / snapshot, m.trust_remote_code, m.revision)
            if tok.get_vocab() != ctx.tokenizer.get_vocab():  # a stage changed it (vocabulary trimming)
                ctx.retokenize(tok)
    return first


def _record_stage(ctx: RunContext, i: int, kind: str, digest: str, result: dict, previous_model: str | None) -> str | None:
    from compressor.quantize.qat import is_qat, qat_state

    stage_dir = _stage_dir(ctx.run_dir, i, kind)
    model_rel = previous_model
    if kind in MODEL_STAGES:
        snap = stage_dir / "model"
        tmp = tmp_sibling(snap)
        with writing(f"the model after stage {i} ({kind})", snap), removed_on_error(tmp):
            ctx.model.save_pretrained(tmp, safe_serialization=True)
            save_tokenizer(ctx.tokenizer, tmp)  # a stage may change it too (vocabulary trimming)
            if is_qat(ctx.model):  # fake-quant observer ranges are not weights: kept beside them
                from safetensors.torch import save_file

                save_file(qat_state(ctx.model), str(tmp / QAT_STATE))
            replace_dir(tmp, snap)
        model_rel = str(snap.relative_to(ctx.run_dir))
    rec = {"hash": digest, "result": result, "model": model_rel,
           "artifacts": {k: str(v.relative_to(ctx.run_dir)) for k, v in ctx.artifacts.items()},
           "provenance": ctx.provenance}
    write_record(stage_dir / "done.json", StageRecord, rec)
    train_state = stage_dir / "train"
    if train_state.exists():  # only once the stage is recorded done: its optimizer state is no longer needed
        shutil.rmtree(train_state)
    return model_rel


def run(recipe_path: str | Path | None = None, overrides: list[str] | None = None, force: bool = False,
        output_dir: str | None = None, quiet: bool = False, resume: str | Path | None = None,
        rerun_changed: bool = False) -> Path:
    """Run a recipe end to end and return the run directory; or, with ``resume=RUN_DIR``, continue one
    (``recipe_path`` then must be the run's recipe; ``rerun_changed``: inputs that changed are read again).

    The run folder is locked for the whole run (one process per folder; see ``compressor.core.runlock``)."""
    lock = LockSlot()
    try:
        return _run(lock, recipe_path, overrides, force, output_dir, quiet, resume, rerun_changed)
    finally:
        lock.release()


def _run(lock: LockSlot, recipe_path, overrides, force, output_dir, quiet, resume, rerun_changed=False) -> Path:
    from compressor.measure.measure_run import measure_run
    from compressor.report.markdown import write_report

    procs = _Processes()
    if resume is not None:
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
    else:
        if recipe_path is None:
            raise CompressorError("give a recipe, or --resume RUN_DIR")
        recipe, raw = load_recipe(recipe_path, overrides)
        recipe_dir = Path(recipe_path).absolute().parent
        check_paths(recipe, recipe_dir, models_must_exist=True)  # before the run folder exists
        run_dir = run_dir_for(recipe, recipe_dir, output_dir)
        inputs = fingerprint(recipe, recipe_dir)
        if procs.is_main:
            refuse_existing(run_dir, force)  # an existing run is refused without touching it (nor its lock)
            lock.take(run_dir)
            prepare_run_dir(run_dir, force)
            atomic_write_json(run_dir / RUN_INFO, {"recipe": str(recipe_path), "recipe_dir": str(recipe_dir),
                                                    "overrides": list(overrides or []), "inputs": inputs})
    procs.wait()
    if procs.is_main:
        write_status(run_dir, "running")
        atomic_write_text(run_dir / "recipe.yaml", yaml.safe_dump(raw, sort_keys=False))
    _register_stages()
    started = time.time()
    hashes = stage_hashes(recipe, inputs)
    doing = "loading"
    with _LogToFile(run_dir / "log.txt" if procs.is_main else None, quiet or not procs.is_main):
        try:
            log.info("%s %s -> %s", "resume" if resume else "run", recipe_path or resume, run_dir)
            if lock.note:
                log.warning(lock.note)
            ctx = build_context(recipe, recipe_dir, run_dir)
            first = _restore_completed(ctx, hashes) if resume is not None else 0
            model_rel = None
            for i, (kind, cfg) in enumerate(recipe.stage_list()):
                if i < first:
                    continue
                doing = f"stage {i} ({kind})"
                t0 = time.perf_counter()
                log.info("stage %d: %s", i, kind)
                ctx.stage_path = f"stages.{i}.{kind}"
                ctx.stage_dir = _stage_dir(run_dir, i, kind) / "train"
                ctx.resuming = resume is not None and i == first and same_start(ctx.stage_dir.parent, hashes[i])
                if procs.is_main:
                    atomic_write_json(ctx.stage_dir.parent / STARTED, {"hash": hashes[i]})
                result = {}
                # each stage starts from its own seed, so it builds the same heads / students / projections whether
                # the stages before it ran in this process or were restored by --resume
                seed_everything(recipe.seed + i + 1)
                keep_baseline(ctx, kind, cfg)
                if kind in MODEL_STAGES or procs.is_main:
                    result = STAGES.get(cfg)(ctx, cfg) or {}
                # a resumed stage counts the time its interrupted process(es) spent too
                seconds = time.perf_counter() - t0 + result.get("resumed_seconds", 0.0)
                own = result.pop("seconds", None)  # an export stage's exporter call alone: not the stage's time
                result = {"stage": kind, "seconds": round(seconds, 2), **result,
                          **({"exporter_seconds": own} if own is not None else {})}
                ctx.stage_results.append(result)
                ctx.task_trained = ctx.task_trained or kind in ("finetune", "distill")
                t_save = time.perf_counter()
                if procs.is_main:
                    _save_baseline(ctx, i)
                    model_rel = _record_stage(ctx, i, kind, hashes[i], result, model_rel)
                procs.wait()
                # the figure the report shows, then the checkpoint write that follows it (not part of the stage)
                log.info("stage %d: %s done in %.1fs (checkpoint saved in %.1fs)", i, kind, result["seconds"],
                         time.perf_counter() - t_save)
            if not procs.is_main:
                return run_dir  # evaluation, benchmark and report belong to the main process
            doing = "the evaluation and report"
            log.info("saving the model to %s", run_dir / "model")
            save_model(ctx)
            results = measure_run(ctx, started)
            results = with_plan(results, recipe, recipe_dir, run_dir)
            write_report(run_dir, results)
            write_status(run_dir, "complete")
            log.info("run complete in %.1fs: %s", time.time() - started, run_dir)
            if not recipe.output.keep_checkpoints:
                tidy_checkpoints(run_dir)
        except KeyboardInterrupt:
            if procs.is_main:
                write_status(run_dir, "failed: interrupted", best_effort=True)
            raise
        except BaseException as e:
            failure = run_failure(e, run_dir, doing)
            reason = str(failure or e).splitlines()[0] if str(failure or e) else type(e).__name__
            if procs.is_main:
                write_status(run_dir, f"failed: {reason}", best_effort=True)
            log.error("run failed: %s", reason, extra={"file_only": True})
            if isinstance(e, Interrupted):
                raise Interrupted(f"{reason}. Resume with: compressor run --resume {run_dir}") from None
            if failure is not None and failure is not e:
                raise failure from e
            raise
    return run_dir

