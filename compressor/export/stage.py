"""The ``export`` stage: fp32 ONNX, parity-checked, optionally fused by ORT's optimizer."""

from __future__ import annotations

import logging

from compressor.context import RunContext
from compressor.export.onnx import export_model, optimize, parity, write_provenance
from compressor.recipe.schema import ExportStage
from compressor.registry import STAGES

log = logging.getLogger("compressor")


def parity_batches(ctx: RunContext, n: int = 2, batch_size: int = 8) -> list[dict]:
    """Real batches (dev split, else train) for parity checks."""
    split = ctx.eval_split() or "train"
    out = []
    for i, batch in enumerate(ctx.loader(split, batch_size)):
        if i >= n:
            break
        out.append(batch)
    return out


@STAGES.register(ExportStage)
def run_export(ctx: RunContext, cfg: ExportStage) -> dict:
    from compressor.quantize.qat import fake_quant_disabled

    with fake_quant_disabled(ctx.model):  # a model in QAT exports its fp32 self here; `quantize: {type: qat}` the INT8 one
        return _export(ctx, cfg)


def _export(ctx: RunContext, cfg: ExportStage) -> dict:
    out = ctx.run_dir / "onnx" / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    batches = parity_batches(ctx)
    info = export_model(ctx.model, batches[0], out, opset=cfg.opset, exporter=cfg.exporter)
    check = parity(ctx.model, out, batches, cfg.tolerance)
    record = {"artifact": "onnx", "recipe": ctx.recipe.name, "seed": ctx.seed, **info, "parity": check}
    write_provenance(out, record)
    ctx.artifacts["onnx"] = out
    ctx.provenance["onnx"] = record
    log.info("exported %s with %s (opset %s) in %.1fs; max |diff| vs PyTorch %.2e",
             out.name, info["exporter"], info["opset"], info["seconds"], check["max_abs_diff"])
    result = {"artifact": "onnx/model.onnx", **info, "parity": check}
    if cfg.optimize:
        opt_path = out.with_name("model.opt.onnx")
        fusions = optimize(out, ctx.model.config, opt_path)
        if fusions is not None:
            check_opt = parity(ctx.model, opt_path, batches, cfg.tolerance, what="optimized ONNX")
            rec = {"artifact": "onnx-opt", "source": out.name, "fusions": fusions, "parity": check_opt}
            write_provenance(opt_path, rec)
            ctx.artifacts["onnx-opt"] = opt_path
            ctx.provenance["onnx-opt"] = rec
            result["fusions"] = fusions
            log.info("ORT optimizer fusions: %s", ", ".join(f"{k}×{v}" for k, v in fusions.items()) or "none")
    return result
