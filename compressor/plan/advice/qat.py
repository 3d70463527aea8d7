"""Advice for ``quantize: {type: qat}``: the QDQ export of a model trained with fake quantization."""

from __future__ import annotations

from compressor.plan.base import ADVICE, Advice, PlanContext, int8_speed
from compressor.recipe.schema import QATQuant


@ADVICE.register(QATQuant)
def qat(cfg: QATQuant, ctx: PlanContext) -> Advice:
    return Advice(
        "",
        "faster + smaller",
        "exports the QAT-trained model as a QDQ graph: int8 weights (≈4× smaller "
        "MatMul weights), integer MatMuls in ONNX Runtime; " + int8_speed(ctx),
    )
