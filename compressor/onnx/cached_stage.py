"""The export stage for causal LMs with ``with_past: true``: the cached graph
(compressor/onnx/decoder.py) as ``onnx/model.onnx``, parity-checked over a left-padded prefill and 5 decode steps
on real rows, with ``genai_config.json``, config.json and the tokenizer files beside it so that onnxruntime-genai
opens the folder. ONNX Runtime's transformer optimizer is not applied to it (its decoder fusions expect other
graph layouts). With ``exporter: genai`` onnxruntime-genai's model builder writes the graph instead
(compressor/onnx/genai_builder.py: GroupQueryAttention, fused normalisations, no position_ids), checked on the
prompts cut to one length, with the left-padded batch's difference recorded."""

from __future__ import annotations

import logging

from compressor.onnx.decoder import cached_parity, export_decoder, prompts_from_batches
from compressor.onnx.genai import write_runtime_files
from compressor.onnx.onnx import write_provenance
from compressor.pipeline.context import RunContext
from compressor.recipe.schema import ExportStage

log = logging.getLogger("compressor")


def wants_past(ctx: RunContext, cfg: ExportStage) -> bool:
    return bool(cfg.with_past)


def _export_genai(ctx: RunContext, out) -> tuple[dict, list[str]]:
    """onnxruntime-genai's builder writes the graph, genai_config.json and the tokenizer files; config.json is ours."""
    from compressor.onnx.genai_builder import export_genai

    info = export_genai(ctx.model, ctx.tokenizer, out)
    ctx.model.config.to_json_file(str(out.parent / "config.json"), use_diff=False)
    return info, sorted(p.name for p in out.parent.iterdir() if p.is_file() and not p.name.endswith((".onnx", ".onnx.data")))


def export_cached(ctx: RunContext, cfg: ExportStage, batches: list[dict]) -> dict:
    out = ctx.run_dir / "onnx" / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    if cfg.exporter == "genai":
        info, files = _export_genai(ctx, out)
    else:
        info = export_decoder(ctx.model, out, opset=cfg.opset, exporter=cfg.exporter)
    pad = getattr(ctx.tokenizer, "pad_token_id", None)
    check = cached_parity(
        ctx.model, out, prompts_from_batches(batches), steps=5, tolerance=cfg.tolerance, pad_id=0 if pad is None else pad
    )
    if cfg.exporter != "genai":
        if ctx.tokenizer is not None:
            ctx.tokenizer.save_pretrained(out.parent)
        files = write_runtime_files(out.parent, ctx.model.config, out.name)
    record = {
        "artifact": "onnx",
        "recipe": ctx.recipe.name,
        "seed": ctx.seed,
        **info,
        "parity": check,
        "runtime_files": files,
        "optimized": False,
    }
    write_provenance(out, record)
    ctx.artifacts["onnx"] = out
    ctx.provenance["onnx"] = record
    if "left_padded_batch" in check:
        log.info(
            "exported %s with onnxruntime-genai's builder (%s) in %.1fs; max |diff| vs PyTorch %.2e over a "
            "prefill and %d decode steps without padding; left-padded rows differ by %.2g (the graph has no "
            "position_ids)",
            out.name,
            ", ".join(f"{k}×{v}" for k, v in info["op_counts"].items() if k in ("GroupQueryAttention", "MatMul")),
            info["seconds"],
            check["max_abs_diff"],
            check["decode_steps"],
            check["left_padded_batch"]["max_abs_diff"],
        )
    else:
        log.info(
            "exported %s with a KV cache (%s, opset %s) in %.1fs; max |diff| vs PyTorch %.2e over a left-padded "
            "prefill and %d decode steps",
            out.name,
            info["exporter"],
            info["opset"],
            info["seconds"],
            check["max_abs_diff"],
            check["decode_steps"],
        )
    return {"artifact": "onnx/model.onnx", **{k: v for k, v in record.items() if k != "artifact"}}
