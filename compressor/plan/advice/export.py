"""Advice for ``export``: what ONNX Runtime's optimizer fuses for the model's family."""

from __future__ import annotations

from compressor.plan.base import ADVICE, Advice, PlanContext
from compressor.recipe.schema import ExportStage


@ADVICE.register(ExportStage)
def export(cfg: ExportStage, ctx: PlanContext) -> Advice:
    from compressor.arch.families import FAMILIES

    mt = ctx.shape.model_type if ctx.shape else None
    if mt is None:
        return Advice("", "runtime", "ONNX Runtime graph; fusions depend on the architecture (config not local)")
    fam = FAMILIES.get(mt)
    if fam is not None and fam.ort_optimizer and cfg.optimize:
        return Advice(
            "",
            "faster (CPU)",
            f"'{mt}': ONNX Runtime fuses attention / layer norm / GELU; "
            "usually faster than PyTorch eager at small batches; same size",
        )
    if fam is not None and fam.ort_optimizer:
        return Advice("", "runtime", f"optimize: false: the plain graph, without the fusions ORT has for '{mt}'")
    why = fam.no_fusion if fam else "no ONNX Runtime transformer optimizer for this architecture"
    return Advice("", "runtime", f"'{mt}': {why}: plain graph; the gain over PyTorch depends on the model (measure it)")
