"""The uncompressed baseline: exported to ONNX like the run's own graph, and its data tokenized by its own tokenizer."""

from __future__ import annotations

from compressor.pipeline.context import RunContext


def export_baseline(ctx: RunContext) -> list[str]:
    """The baseline's ONNX export, made as the recipe's export stage made the run's (same opset, exporter,
    fusions, tolerance), so ORT can compare like with like. A failure is a note in the report, not a failed run."""
    from compressor.core.errors import CompressorError
    from compressor.onnx.stage import export_fp32
    from compressor.recipe.schema import ExportStage

    if ctx.baseline is None or "onnx" not in ctx.artifacts or "baseline" not in ctx.recipe.evaluate.artifacts:
        return []
    cfg = next((c for k, c in ctx.recipe.stage_list() if isinstance(c, ExportStage)), ExportStage())
    if cfg.exporter == "genai":  # a torch.onnx baseline beside the builder's fused graph would credit fusions to compression
        return ["baseline: the run's graph comes from onnxruntime-genai's builder; compared in PyTorch only"]
    batches = [b for _, b in zip(range(2), baseline_loader(ctx, ctx.eval_split() or "train", 8))]
    try:
        record, opt = export_fp32(
            ctx.baseline, batches, ctx.run_dir / "onnx" / "baseline.onnx", cfg, "baseline-onnx", {"source": ctx.baseline_source}
        )
    except CompressorError as e:
        return [f"baseline: no ONNX export to compare with ({e})"]
    trimmed = [(o or {}).get("cls_only_last_layer", {}).get("applied", False) for o in (opt, ctx.provenance.get("onnx-opt"))]
    if opt is not None and "onnx-opt" in ctx.artifacts and trimmed[0] != trimmed[1]:
        return [
            "baseline: the [CLS]-only last layer applies to one of the two fused graphs but not the other; "
            "compared in PyTorch only"
        ]
    if opt is not None and "onnx-opt" in ctx.artifacts:  # the run's fp32 ONNX artifact is its fused graph
        ctx.artifacts["baseline-onnx"], ctx.provenance["baseline-onnx"] = opt.pop("path"), opt
    elif opt is None and "onnx-opt" not in ctx.artifacts:
        ctx.artifacts["baseline-onnx"], ctx.provenance["baseline-onnx"] = ctx.run_dir / "onnx" / "baseline.onnx", record
    else:  # one graph fused, the other not: an ONNX latency comparison would credit the fusions to compression
        return ["baseline: ONNX Runtime fused one of the two graphs but not the other; compared in PyTorch only"]
    return []


def baseline_loader(ctx: RunContext, split: str, batch_size: int):
    """Batches of ``split`` tokenized by the baseline's own tokenizer (vocabulary trimming changes the run's)."""
    from compressor.data import make_loader

    if ctx.baseline_tokenizer is None or ctx.baseline_tokenizer is ctx.tokenizer or ctx.dataset is None:
        return ctx.loader(split, batch_size)
    enc = ctx.encode(split, ctx.baseline_tokenizer)
    return make_loader(enc, ctx.baseline_tokenizer, batch_size, False, ctx.seed, ctx.task)
