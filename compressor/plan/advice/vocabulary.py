"""Advice for vocabulary trimming: a smaller embedding table, the same speed."""

from __future__ import annotations

from compressor.plan.base import ADVICE, Advice, PlanContext
from compressor.recipe.schema import VocabularyPrune


@ADVICE.register(VocabularyPrune)
def vocabulary(cfg: VocabularyPrune, ctx: PlanContext) -> Advice:
    shape = ctx.shape
    share = f" (the embedding table is {shape.vocab * shape.hidden / shape.params():.0%} of the parameters)" if shape else ""
    return Advice(
        "",
        "smaller, not faster",
        f"drops embedding rows of tokens the training data never uses{share}; "
        "an embedding lookup costs the same whatever the table size",
    )
