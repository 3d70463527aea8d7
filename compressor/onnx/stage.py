"""The ``export`` stage: fp32 ONNX, parity-checked, optionally fused by ORT's optimizer."""

from __future__ import annotations

import logging
from pathlib import Path

from compressor.core.registry import STAGES
from compressor.onnx.batches import parity_batches
from compressor.onnx.first_token import trim_file
from compressor.onnx.onnx import export_model, fusion_unavailable, optimize, parity, write_provenance
from compressor.pipeline.context import RunContext
from compressor.recipe.schema import ExportStage
from compressor.train.model_state import plain_model

log = logging.getLogger("compressor")


@STAGES.register(ExportStage)
def run_export(ctx: RunContext, cfg: ExportStage) -> dict:
    # without extra state (compressor/train/model_state.py): a model in QAT exports its fp32 self here, and
    # `quantize: {type: qat}` the INT8 one
    with plain_model(ctx.model):
        return _export(ctx, cfg)


def export_fp32(model, batches: list[dict], out: Path, cfg: ExportStage, artifact: str, extra: dict) -> tuple[dict, dict | None]:
    """``model`` to ``out`` (and ``<stem>.opt.onnx`` with ORT fusions when ``cfg.optimize``), each parity-checked
    on ``batches`` and given a provenance record. Returns (plain record, fused record or None).

    A fused graph that fails its parity check is dropped with a warning (the plain export stands); a plain
    export that fails it is an error."""
    from compressor.core.errors import ExportError

    out.parent.mkdir(parents=True, exist_ok=True)
    info = export_model(model, batches[0], out, opset=cfg.opset, exporter=cfg.exporter)
    record = {"artifact": artifact, **extra, **info, "parity": parity(model, out, batches, cfg.tolerance)}
    write_provenance(out, record)
    log.info(
        "exported %s with %s (opset %s) in %.1fs; max |diff| vs PyTorch %.2e",
        out.name,
        info["exporter"],
        info["opset"],
        info["seconds"],
        record["parity"]["max_abs_diff"],
    )
    if not cfg.optimize:
        return record, None
    opt_path = out.with_name(out.stem + ".opt.onnx")
    fusions = optimize(out, model.config, opt_path)
    if fusions is None:
        record["fusion"] = {"applied": False, "reason": fusion_unavailable(model.config) or "ONNX Runtime's optimizer failed"}
        write_provenance(out, record)
        return record, None
    trim = trim_file(opt_path) if cfg.cls_only_last_layer else {"applied": False, "reason": "export.cls_only_last_layer is off"}
    try:
        try:
            check = parity(model, opt_path, batches, cfg.tolerance, what="optimized ONNX")
        except ExportError as e:
            if not trim["applied"]:
                raise
            log.warning("the first-token trim of %s disagrees with PyTorch (%s); fusing again without it", opt_path.name, e)
            optimize(out, model.config, opt_path)
            trim = {"applied": False, "reason": f"parity check failed: {e}"}
            check = parity(model, opt_path, batches, cfg.tolerance, what="optimized ONNX")
    except ExportError as e:
        log.warning("ORT's fused graph of %s disagrees with PyTorch (%s); keeping the plain export", out.name, e)
        opt_path.unlink(missing_ok=True)
        record["fused_rejected"] = str(e)
        return record, None
    opt = {
        "artifact": f"{artifact}-opt",
        "source": out.name,
        "fusions": fusions,
        "cls_only_last_layer": trim,
        "parity": check,
        "path": opt_path,
    }
    write_provenance(opt_path, {k: v for k, v in opt.items() if k != "path"})
    log.info("ORT optimizer fusions: %s", ", ".join(f"{k}×{v}" for k, v in fusions.items()) or "none")
    if trim["applied"]:
        log.info(
            "last layer computed for the first token only (%s → MultiHeadAttention on x[:, 0:1]; %d token-wise nodes)",
            trim["attention"],
            trim["nodes"],
        )
    return record, opt


def _export(ctx: RunContext, cfg: ExportStage) -> dict:
    from compressor.onnx.cached_stage import export_cached, wants_past

    if wants_past(ctx, cfg):
        return export_cached(ctx, cfg, parity_batches(ctx))
    out = ctx.run_dir / "onnx" / "model.onnx"
    record, opt = export_fp32(ctx.model, parity_batches(ctx), out, cfg, "onnx", {"recipe": ctx.recipe.name, "seed": ctx.seed})
    ctx.artifacts["onnx"] = out
    ctx.provenance["onnx"] = record
    result = {"artifact": "onnx/model.onnx", **{k: v for k, v in record.items() if k != "artifact"}}
    if opt is not None:
        ctx.artifacts["onnx-opt"] = opt.pop("path")
        ctx.provenance["onnx-opt"] = opt
        result["fusions"] = opt["fusions"]
        result["cls_only_last_layer"] = opt["cls_only_last_layer"]["applied"]
    return result
