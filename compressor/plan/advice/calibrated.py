"""Advice for the calibrated decoder schemes (``quantize: {type: awq}`` and ``{type: smoothquant}``)."""

from __future__ import annotations

from compressor.plan.base import ADVICE, Advice, PlanContext, int8_speed
from compressor.recipe.schema import AwqQuant, SmoothQuantQuant


@ADVICE.register(AwqQuant)
def awq(cfg: AwqQuant, ctx: PlanContext) -> Advice:
    return Advice(
        "",
        "smaller; faster decoding",
        f"weight-only INT4 (≈8× smaller MatMul weights) with activation-aware "
        f"scales and clipping fitted on {cfg.calibration_samples} calibration blocks: usually closer to fp32 "
        "than round-to-nearest at the same size and speed; re-exports the transformed model (one more export)",
    )


@ADVICE.register(SmoothQuantQuant)
def smoothquant(cfg: SmoothQuantQuant, ctx: PlanContext) -> Advice:
    return Advice(
        "",
        "smaller; faster prefill",
        f"W8A8: activation outliers moved into the weights (α {cfg.alpha}, "
        "exact in fp32), then int8 weights and int8 activations; " + int8_speed(ctx),
    )
