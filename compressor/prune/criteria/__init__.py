"""The pruning-criterion registry: config type -> :class:`~compressor.prune.criteria.base.Criterion` class.

A new criterion is one module (a Criterion subclass declaring the statistics it ``needs``) and one
registration line below. ``criterion_for(cfg)`` builds the criterion a recipe's config asks for.
"""

from __future__ import annotations

from compressor.core.registry import Registry
from compressor.prune.criteria.base import GRADIENTS, HESSIAN, INPUT_NORMS, Criterion, LayerStats
from compressor.prune.criteria.gradient import Magnitude, Movement, Taylor
from compressor.prune.criteria.sparsegpt import SparseGPT
from compressor.prune.criteria.wanda import Wanda
from compressor.recipe.schema import (
    MagnitudeCriterion,
    MovementCriterion,
    SparseGPTCriterion,
    TaylorCriterion,
    WandaCriterion,
)

CRITERIA: Registry = Registry("pruning criterion")
CRITERIA.register(MagnitudeCriterion)(Magnitude)
CRITERIA.register(TaylorCriterion)(Taylor)
CRITERIA.register(MovementCriterion)(Movement)
CRITERIA.register(WandaCriterion)(Wanda)
CRITERIA.register(SparseGPTCriterion)(SparseGPT)


def criterion_for(cfg) -> Criterion:
    return CRITERIA.get(cfg)(cfg)


__all__ = ["CRITERIA", "GRADIENTS", "HESSIAN", "INPUT_NORMS", "Criterion", "LayerStats", "criterion_for"]
