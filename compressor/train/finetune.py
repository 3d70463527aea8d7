"""The ``finetune`` stage: task training of the current model (e.g. making a teacher)."""

from __future__ import annotations

from compressor.core.registry import STAGES
from compressor.measure.evaluate import evaluate_torch
from compressor.pipeline.context import RunContext
from compressor.recipe.schema import FinetuneStage
from compressor.train.callbacks import summaries, training_callbacks
from compressor.train.loop import train


def task_loss(model, batch):
    out = model(**batch)
    return out.loss, {}


def dev_eval_fn(ctx: RunContext, batch_size: int, split: str | None = None):
    """Evaluate on ``split`` (default: dev, else test): for reporting."""
    split = split or ctx.eval_split()
    if split is None:
        return None
    loader = ctx.loader(split, batch_size)
    return lambda model: evaluate_torch(model, loader, ctx.task, ctx.device, progress=f"~dev evaluation on {split}")


def selection_eval_fn(ctx: RunContext, batch_size: int):
    """Evaluate on the split that chooses the best checkpoint (``RunContext.selection_split``)."""
    split = ctx.selection_split()
    return None if split is None else dev_eval_fn(ctx, batch_size, split)


def summarize(state, ctx: RunContext | None = None) -> dict:
    return {
        "steps": state.step,
        "best_step": state.best_step,
        "best_dev": state.best_metric,
        "history": state.history,
        "resumed_seconds": round(state.seconds_before, 2),
        "selection": ctx.selection_info() if ctx is not None else None,
    }


@STAGES.register(FinetuneStage)
def run_finetune(ctx: RunContext, cfg: FinetuneStage) -> dict:
    callbacks = training_callbacks(ctx, cfg, ctx.model, ctx.stage_path)
    state = train(
        ctx.model,
        ctx.loader("train", cfg.batch_size, shuffle=True),
        cfg,
        task_loss,
        name="finetune",
        device=ctx.device,
        eval_fn=selection_eval_fn(ctx, cfg.eval_batch_size),
        metric=ctx.primary_metric,
        callbacks=callbacks,
        seed=ctx.seed,
        checkpoint_dir=ctx.stage_dir,
        resume=ctx.resuming,
    )
    ctx.model = state.model
    return {**summarize(state, ctx), **summaries(callbacks)}
