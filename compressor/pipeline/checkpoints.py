"""What a run keeps between stages so that ``--resume`` can continue it: a hash per stage, each completed stage's
record and model snapshot, and the report's baseline model."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
from pathlib import Path

from compressor.core.errors import RunDirError
from compressor.core.records import StageRecord, read_dict, write_record
from compressor.core.rundir import atomic_write_json, removed_on_error, replace_dir, tmp_sibling
from compressor.core.writeerrors import writing
from compressor.models import save_tokenizer
from compressor.pipeline.context import RunContext
from compressor.recipe.contracts import contract_of
from compressor.train.model_state import restore_model_state, save_model_state

log = logging.getLogger("compressor")


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


def keep_baseline(ctx: RunContext, kind: str, cfg) -> None:
    """Before the first stage that compresses the model in place, keep a copy of it as the report's baseline.

    A distill stage sets its teacher as the baseline itself (the student is a new model): its contract says it does
    not compress in place."""
    if ctx.baseline is not None or not contract_of(cfg).compresses:
        return
    if "baseline" not in ctx.recipe.evaluate.artifacts:
        return
    if not ctx.task_trained:
        log.info(
            "no baseline for the report: the model's task head is untrained before %s (fine-tune it first to compare)",
            ctx.stage_path,
        )
        return
    ctx.baseline, ctx.baseline_tokenizer = copy.deepcopy(ctx.model).cpu().eval(), ctx.tokenizer
    ctx.baseline_source = f"the model before {ctx.stage_path}"


BASELINE = "baseline"  # checkpoints/baseline: the baseline model, saved once, restored on --resume


def save_baseline(ctx: RunContext, stage: int) -> None:
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


def stage_dir(run_dir: Path, i: int, kind: str) -> Path:
    return run_dir / "checkpoints" / f"stage-{i}-{kind}"


def _track_facts(live: dict, cfg, contract) -> None:
    """The configs behind the facts still in effect after ``cfg``: a fact a stage produces comes from the config at
    the field path its contract names (a sub-config of a training stage), and a later stage's ``removes`` ends it."""
    for fact in contract.removes:
        live.pop(fact, None)
    for fact, path in contract.produces.items():
        sub = cfg
        for name in path:
            sub = getattr(sub, name, None) if isinstance(name, str) else None
        if sub is not None:
            live[fact] = sub


def restore_completed(ctx: RunContext, hashes: list[str]) -> int:
    """On --resume: reload what completed stages left (model snapshot, artifacts, results).

    Returns the index of the first stage to run. A stage whose hash changed, and all after it, run again.
    """
    from compressor.models import TOKENIZER_FILES, load_tokenizer

    first, snapshot, live = 0, None, {}
    for i, (kind, cfg) in enumerate(ctx.recipe.stage_list()):
        done = stage_dir(ctx.run_dir, i, kind) / "done.json"
        if not done.is_file():
            break
        rec = read_dict(done, StageRecord)
        if rec.get("hash") != hashes[i]:
            log.info("stage %d (%s) changed since it ran: running it again", i, kind)
            break
        contract = contract_of(cfg)
        _track_facts(live, cfg, contract)
        ctx.stage_results.append(rec["result"])
        ctx.task_trained = ctx.task_trained or contract.trains
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
        raise RunDirError(
            f"{ctx.run_dir}: {snapshot}, the model stage {first - 1} left, was removed when the run "
            "completed (output.keep_checkpoints: false); run it again with --force"
        )
    if snapshot:
        m = ctx.recipe.model
        ctx.model = ctx.load_model(ctx.run_dir / snapshot)
        # extra state a stage left beside the weights (compressor/train/model_state.py), from the configs still in effect
        restore_model_state(ctx.model, ctx.run_dir / snapshot, list(live.values()))
        if any((ctx.run_dir / snapshot / f).is_file() for f in TOKENIZER_FILES):
            tok = load_tokenizer(ctx.run_dir / snapshot, m.trust_remote_code, m.revision)
            if tok.get_vocab() != ctx.tokenizer.get_vocab():  # a stage changed it (vocabulary trimming)
                ctx.retokenize(tok)
    return first


def record_stage(ctx: RunContext, i: int, kind: str, cfg, digest: str, result: dict, previous_model: str | None) -> str | None:
    """Write the stage's done.json (and, for a stage that changes the model, its snapshot); return the snapshot."""
    folder = stage_dir(ctx.run_dir, i, kind)
    model_rel = previous_model
    if contract_of(cfg).changes_model:
        snap = folder / "model"
        tmp = tmp_sibling(snap)
        with writing(f"the model after stage {i} ({kind})", snap), removed_on_error(tmp):
            ctx.model.save_pretrained(tmp, safe_serialization=True)
            save_tokenizer(ctx.tokenizer, tmp)  # a stage may change it too (vocabulary trimming)
            save_model_state(ctx.model, tmp)  # what the weights do not hold (compressor/train/model_state.py)
            replace_dir(tmp, snap)
        model_rel = str(snap.relative_to(ctx.run_dir))
    rec = {
        "hash": digest,
        "result": result,
        "model": model_rel,
        "artifacts": {k: str(v.relative_to(ctx.run_dir)) for k, v in ctx.artifacts.items()},
        "provenance": ctx.provenance,
    }
    write_record(folder / "done.json", StageRecord, rec)
    train_state = folder / "train"
    if train_state.exists():  # only once the stage is recorded done: its optimizer state is no longer needed
        shutil.rmtree(train_state)
    return model_rel
