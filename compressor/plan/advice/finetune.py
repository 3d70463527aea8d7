"""Advice for ``finetune``."""

from __future__ import annotations

from compressor.plan.base import ADVICE, SMALLER_NOT_FASTER, Advice, PlanContext, training_extras
from compressor.recipe.schema import FinetuneStage


@ADVICE.register(FinetuneStage)
def finetune(cfg: FinetuneStage, ctx: PlanContext) -> Advice:
    where = f"cuda ({ctx.gpu})" if ctx.train_device == "cuda" else f"cpu ({ctx.cores} cores, fp32)"
    verdict = "accuracy only" if cfg.prune is None else SMALLER_NOT_FASTER
    return Advice("", verdict, f"changes the weights, not the size or speed; trains on {where}" + training_extras(cfg))
