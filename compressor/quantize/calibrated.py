"""The calibrated decoder schemes as quantize stages: ``{type: awq}`` (INT4, model.int4.onnx) and
``{type: smoothquant}`` (W8A8, model.int8.onnx). Both observe the PyTorch model on calibration blocks
(``data.calibration`` or a seeded sample of the training blocks), transform a copy of it, export that copy with its
KV cache (AWQ: with the run's exporter, onnxruntime-genai's builder under ``export.exporter: genai``) and quantize
the graph. Both are schemes (``register_scheme``): the shared ``finalize`` (compressor/quantize/scheme.py) checks the
graph against the run's own model (recorded, not enforced: quantization changes logits) over a left-padded prefill
and 5 decode steps, and writes its provenance."""

from __future__ import annotations

import logging

import numpy as np

from compressor.core.errors import CompressorError
from compressor.pipeline.context import RunContext
from compressor.quantize.scheme import QuantizedGraph, register_scheme
from compressor.recipe.schema import AwqQuant, SmoothQuantQuant

log = logging.getLogger("compressor")


def _blocks(ctx: RunContext, samples: int) -> np.ndarray:
    from compressor.quantize.calibration import calibration_split

    enc, _ = calibration_split(ctx, samples, f"{ctx.stage_path}.calibration_samples")
    rows = [f["input_ids"] for f in enc.features]
    width = min(len(r) for r in rows)
    return np.asarray([r[:width] for r in rows], dtype=np.int64)


def _needs(ctx: RunContext, kind: str) -> int:
    if ctx.task != "causal-lm":
        raise ctx.recipe.error(f"{ctx.stage_path}.type", f"{kind} quantizes causal language models (model.task: causal-lm)")
    if ctx.artifacts.get("onnx") is None:
        raise CompressorError(
            f"quantize: {{type: {kind}}} needs an ONNX model; put an 'export' stage (with_past: true) before it"
        )
    return int((ctx.provenance.get("onnx") or {}).get("opset") or 17)


def _graph(name: str, dst, info: dict, what: str) -> QuantizedGraph:
    record = {"source": "the run's PyTorch model, transformed and exported", **info}
    return QuantizedGraph(dst, name, what, record, dict(info))


@register_scheme(AwqQuant)
def run_awq(ctx: RunContext, cfg: AwqQuant) -> QuantizedGraph:
    from compressor.quantize.awq import quantize_awq
    from compressor.recipe.block_sizes import block_size_problem

    opset = _needs(ctx, "awq")
    problem = block_size_problem(ctx.model.config, cfg.block_size)
    if problem:
        raise ctx.recipe.error(f"{ctx.stage_path}.block_size", problem)
    blocks = _blocks(ctx, cfg.calibration_samples)
    dst = ctx.run_dir / "onnx" / "model.int4.onnx"
    try:
        exporter = "genai" if (ctx.provenance.get("onnx") or {}).get("exporter") == "genai" else "auto"
        info = quantize_awq(
            ctx.model,
            blocks,
            dst,
            cfg.block_size,
            cfg.symmetric,
            cfg.include_lm_head,
            cfg.accuracy_level,
            grid=cfg.grid,
            clip=cfg.clip,
            opset=opset,
            exporter=exporter,
            tokenizer=ctx.tokenizer,
            include_embeddings=cfg.include_embeddings,
        )
    except CompressorError as e:
        if "block_size" in str(e):
            raise ctx.recipe.error(f"{ctx.stage_path}.block_size", str(e)) from None
        raise
    info = {"scheme": "weight-only int4, AWQ (MatMulNBits)", **{k: v for k, v in info.items() if k != "alphas"}}
    return _graph("int4", dst, info, "AWQ INT4")


@register_scheme(SmoothQuantQuant)
def run_smoothquant(ctx: RunContext, cfg: SmoothQuantQuant) -> QuantizedGraph:
    from compressor.quantize.smoothquant import quantize_smoothquant

    opset = _needs(ctx, "smoothquant")
    blocks = _blocks(ctx, cfg.calibration_samples)
    dst = ctx.run_dir / "onnx" / "model.int8.onnx"
    info = quantize_smoothquant(ctx.model, blocks, dst, cfg.alpha, cfg.activations, cfg.include_lm_head, opset)
    return _graph("int8", dst, info, "SmoothQuant INT8")
