"""``quantize: {type: qat}``: the ONNX INT8 graph of a model trained with ``qat:`` (quantization-aware training).

The pieces live by concern: the fake-quant layer and its model-level helpers in fakequant.py, the training callback
and the snapshot state in qat_callback.py, the QDQ export in qdq_export.py. This module is the scheme: export the
fake-quant model, check it against that model (uint8 embedding tables that miss the tolerance are exported again in
fp32), and hand it to the shared ``finalize``; afterwards the run's model is a plain one again.
"""

from __future__ import annotations

import logging

from compressor.core.errors import CompressorError, ExportError
from compressor.onnx.batches import parity_batches
from compressor.onnx.onnx import parity
from compressor.pipeline.context import RunContext
from compressor.quantize.fakequant import (
    FakeQuantLinear,
    activation_qparams,
    activation_ranges,
    fake_quant_disabled,
    is_qat,
    load_qat_state,
    prepare_qat,
    qat_state,
    range_summary,
    set_flags,
    strip_qat,
    weight_qparams,
    wrappers,
)
from compressor.quantize.qat_callback import QATCallback
from compressor.quantize.qdq_export import INTEGER_KERNELS, export_qdq, ort_kernels, qdq_structure
from compressor.quantize.scheme import QuantizedGraph, register_scheme
from compressor.recipe.schema import QATQuant

__all__ = [
    "FakeQuantLinear",
    "QATCallback",
    "activation_qparams",
    "activation_ranges",
    "export_qdq",
    "fake_quant_disabled",
    "is_qat",
    "load_qat_state",
    "ort_kernels",
    "prepare_qat",
    "qat_state",
    "qdq_structure",
    "range_summary",
    "run_qat_export",
    "set_flags",
    "strip_qat",
    "weight_qparams",
]

log = logging.getLogger("compressor")


def _export_checked(ctx: RunContext, cfg: QATQuant, dst) -> tuple[dict, dict, str | None]:
    """Export and check against the fake-quant model; uint8 embedding tables over the tolerance fall back to fp32.
    Returns (export details, parity, the fallback note or None)."""
    batches = parity_batches(ctx)
    info = export_qdq(ctx.model, batches[0], dst, cfg.opset, cfg.quantize_embeddings)
    try:
        return info, parity(ctx.model, dst, batches, cfg.tolerance, what="QAT INT8"), None
    except ExportError as e:
        if not info["embeddings_quantized"]:
            raise
        note = f"uint8 embedding tables exceeded the parity tolerance ({e}); tables kept fp32"
    log.warning("qat export: %s", note)
    info = export_qdq(ctx.model, batches[0], dst, cfg.opset, quantize_embeddings=False)
    return info, parity(ctx.model, dst, batches, cfg.tolerance, what="QAT INT8"), note


def _kernels(path) -> dict:
    """The kernels ONNX Runtime runs for the final graph, and the integer ones among them."""
    kernels = ort_kernels(path)
    integer = {k: v for k, v in kernels.items() if k in INTEGER_KERNELS}
    log.info("QAT INT8: ORT integer kernels %s", integer or "none")
    if not integer:
        log.warning("QAT INT8: ONNX Runtime runs no integer MatMul kernel for %s (it dequantizes the weights)", path.name)
    return {"ort_kernels": kernels, "ort_integer_kernels": integer}


@register_scheme(QATQuant)
def run_qat_export(ctx: RunContext, cfg: QATQuant) -> QuantizedGraph:
    if not is_qat(ctx.model):
        raise CompressorError(
            "quantize: {type: qat} needs a model trained with fake quantization: add `qat: {}` "
            "to a finetune or distill stage before it"
        )
    dst = ctx.run_dir / "onnx" / "model.int8.onnx"
    dst.parent.mkdir(parents=True, exist_ok=True)
    info, check, embedding_note = _export_checked(ctx, cfg, dst)
    layer = next(m for _, m in wrappers(ctx.model))
    record = {
        "scheme": "qat",
        "format": "QDQ",
        "observer": layer.observer,
        "ema_decay": layer.ema_decay if layer.observer == "ema" else None,
        "weights": "int8, symmetric, per output channel (scale max|w|/127, zero point 0)",
        "activations": "uint8, asymmetric, per tensor (observed ranges, frozen in training)",
        "embeddings": "uint8, asymmetric, per tensor, weight-only" if info["embeddings_quantized"] else "fp32",
        **info,
        "embedding_fallback": embedding_note,
        "activation_ranges": activation_ranges(ctx.model),
    }
    result = {
        "scheme": "qat",
        **{
            k: info[k]
            for k in ("quantized_linears", "quantized_matmuls", "activation_qdq_pairs", "weight_bytes_fp32", "weight_bytes_int8")
        },
        "embeddings_quantized": len(info["embeddings_quantized"]),
        "ranges": range_summary(ctx.model),
    }
    q = QuantizedGraph(
        dst,
        "int8",
        "QAT INT8",
        record,
        result,
        layernorm=cfg.layernorm,
        reference=ctx.model,
        tolerance=cfg.tolerance,
        parity=check,
        inspect=_kernels,
        summary=f"{info['quantized_linears']} layers, weights {info['weight_bytes_fp32'] / 1e6:.2f} -> "
        f"{info['weight_bytes_int8'] / 1e6:.2f} MB",
    )

    def after(ctx: RunContext, stage_result: dict) -> None:  # the integer kernels into the result; plain layers back
        stage_result["ort_integer_kernels"] = ctx.provenance["int8"]["ort_integer_kernels"]
        ctx.model = strip_qat(ctx.model)

    q.after = after
    return q
