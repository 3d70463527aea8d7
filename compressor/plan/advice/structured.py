"""Advice for structured pruning: heads and FFN neurons removed, dense matrices shrink."""

from __future__ import annotations

from compressor.plan.base import ADVICE, Advice, PlanContext
from compressor.plan.shape import GATED_MLP, shape_heads
from compressor.recipe.schema import StructuredPrune


@ADVICE.register(StructuredPrune)
def structured(cfg: StructuredPrune, ctx: PlanContext) -> Advice:
    shape = ctx.shape
    if shape is None:
        return Advice("", "faster + smaller", "heads / FFN neurons are removed, the matrices shrink (config not local)")
    heads = shape_heads(ctx.config)
    rm = cfg.heads if isinstance(cfg.heads, int) else round(cfg.heads * heads) if heads else 0
    ffn = shape.intermediate - (cfg.ffn if isinstance(cfg.ffn, int) else round(cfg.ffn * shape.intermediate))
    attn_share = (heads - rm) / heads if heads else 1.0
    per_layer = 4 * shape.hidden * shape.hidden * attn_share + (3 if shape.model_type in GATED_MLP else 2) * shape.hidden * ffn
    speed = shape.layer_params() / max(per_layer, 1)
    return Advice(
        "",
        "faster + smaller",
        f"{rm} of {heads} heads and FFN {shape.intermediate} → ≈{ffn} per layer: "
        f"≈{speed:.1f}× less layer compute (dense matrices shrink, every runtime gains); plan a recovery "
        "finetune / distill stage after it",
    )
