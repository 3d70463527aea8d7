"""Advice for one-shot unstructured pruning: zeros in dense matrices."""

from __future__ import annotations

from compressor.plan.base import ADVICE, SMALLER_NOT_FASTER, UNSTRUCTURED, Advice, PlanContext
from compressor.recipe.schema import UnstructuredPrune


@ADVICE.register(UnstructuredPrune)
def unstructured(cfg: UnstructuredPrune, ctx: PlanContext) -> Advice:
    return Advice("", SMALLER_NOT_FASTER, UNSTRUCTURED)
