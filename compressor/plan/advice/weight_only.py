"""Advice for weight-only quantization of the exported graph (``int4``, ``int8_weight``)."""

from __future__ import annotations

from compressor.plan.base import ADVICE, Advice, PlanContext
from compressor.recipe.schema import Int4Quant, Int8WeightQuant


@ADVICE.register(Int4Quant)
@ADVICE.register(Int8WeightQuant)
def weight_only(cfg: Int4Quant | Int8WeightQuant, ctx: PlanContext) -> Advice:
    bits = 4 if isinstance(cfg, Int4Quant) else 8
    return Advice(
        "",
        "smaller; faster decoding",
        f"weight-only: MatMul weights in {bits} bits (≈{32 // bits}× smaller), "
        "activations fp32 / int8 per block; pays off where decoding is memory-bound (batch 1 generation) "
        "more than in prefill; measure with compressor bench --prompt / --new-tokens",
    )
