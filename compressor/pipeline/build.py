"""The start of a run: device, seeds, and the RunContext with tokenizer, data and model loaded."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from compressor.core.errors import CompressorError
from compressor.core.rundir import removed_on_error, replace_dir, tmp_sibling
from compressor.core.writeerrors import writing
from compressor.models import save_tokenizer
from compressor.pipeline.context import RunContext

log = logging.getLogger("compressor")


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
    from compressor.recipe.contracts import contract_of

    if recipe.data.split.select_on != "validation":
        return False
    return any(contract_of(c).selects for _, c in recipe.stage_list())


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
    from compressor.train.qlora import quiet_bitsandbytes

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    quiet_bitsandbytes()
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
    log.info(
        "loaded %s (%s) and data (%s) in %.1fs; device %s",
        m.path,
        type(ctx.model).__name__,
        sizes,
        time.perf_counter() - t0,
        ctx.device,
    )
    return ctx


def report_data(dataset, run_dir: Path) -> None:
    """Row counts in the log; every row of a repeated text in duplicates.csv in the run folder."""
    from compressor.core.duplicates import count_lines, write_listing

    for line in count_lines(dataset.counts):
        log.info("%s", line)
    listing = run_dir / "duplicates.csv"
    if dataset.duplicate_rows:
        write_listing(listing, dataset.duplicate_rows, dataset.label_names)
        log.info(
            "duplicates: %d repeated text(s), %d with conflicting labels: every row listed in %s",
            dataset.duplicates["repeated_texts"],
            dataset.duplicates["conflicting_texts"],
            listing,
        )
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
