"""Activation-aware INT4 weight-only quantization (AWQ, Lin et al. 2023), written as fp32 weight transforms that the
round-to-nearest ``MatMulNBits`` quantizer (quantize/weight_only.py) then stores.

1. Observe: calibration blocks run through the model once; per scalable pair (quantize/scaling.py) the mean |x| of
   the consumers' input channels and a sample of input rows are kept.
2. Scale search: for α on a grid in [0, 1], ``s = mean|x|^α`` (normalised), the consumers' weights are quantized as
   ``Q(W·diag(s)) / s`` with the same block size and symmetry as the MatMulNBits step, and the output error on the
   sampled rows is measured; the best α's scales are folded in exactly (producer / s, weight columns × s), and the
   fp32 logits are checked to be unchanged.
3. Clip search: per output channel and block, the largest |w| kept is searched among ``(1 − i/grid)`` of the block's
   max (down to ``1 − max_shrink``) for the least output error on the sampled rows; weights are clamped to it.
4. The model is exported with its KV cache and quantized by round to nearest: with the scaled, clipped weights this
   is AWQ's INT4.

The quantizer simulated in steps 2 and 3 follows MLAS's blockwise 4-bit rounding (symmetric: the signed value of
largest magnitude maps to −8; asymmetric: ``(max − min) / 15`` with a zero point, the range widened to hold 0).
"""

from __future__ import annotations

import copy
import logging
import math
import shutil
from pathlib import Path

import numpy as np

from compressor.core.rundir import tmp_sibling
from compressor.quantize.scaling import (
    Pair,
    apply_scales,
    check_unchanged,
    find_pairs,
    in_features,
    logits_of,
    observe,
    weight_out_in,
)

log = logging.getLogger("compressor")


def fake_quant(w, block_size: int, symmetric: bool, bits: int = 4):
    """``w`` (out, in) quantized blockwise along ``in`` and dequantized, as MLAS rounds it."""
    import torch

    out, k = w.shape
    g = w.reshape(out, k // block_size, block_size)
    levels = 2**bits
    if symmetric:
        idx = g.abs().argmax(-1, keepdim=True)
        signed_max = torch.gather(g, -1, idx)
        scale = signed_max / -(levels // 2)
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        q = (g / scale).round().clamp(-(levels // 2), levels // 2 - 1)
        return (q * scale).reshape(out, k)
    lo = g.amin(-1, keepdim=True).clamp(max=0)
    hi = g.amax(-1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / (levels - 1)
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    zero = (-lo / scale).round().clamp(0, levels - 1)
    q = ((g / scale).round() + zero).clamp(0, levels - 1)
    return ((q - zero) * scale).reshape(out, k)


def _weights(pair: Pair):
    import torch

    return torch.cat([weight_out_in(c).float() for c in pair.consumers], dim=0)


def search_scales(pair: Pair, block_size: int, symmetric: bool, grid: int = 20) -> tuple[float, object, float, float]:
    """(best α, its scales, its output error, the error without scales) for one pair."""
    import torch

    x, w = pair.samples, _weights(pair)
    ref = x @ w.t()
    mean = pair.absmean.clamp_min(1e-8)
    best = (math.inf, 0.0, torch.ones_like(mean))
    base = None
    for i in range(grid + 1):
        alpha = i / grid
        s = mean.pow(alpha)
        s = (s / (s.max() * s.min()).sqrt()).clamp_min(1e-4)
        wq = fake_quant(w * s[None, :], block_size, symmetric) / s[None, :]
        err = float((x @ wq.t() - ref).pow(2).mean())
        if i == 0:
            base = err
        if err < best[0]:
            best = (err, alpha, s)
    return best[1], best[2], best[0], float(base)


def search_clip(module, x, block_size: int, symmetric: bool, grid: int = 20, max_shrink: float = 0.5) -> float:
    """Clamp ``module``'s weight per (output channel, block) to the max |w| that least disturbs the output on the
    rows ``x``; returns the mean kept fraction."""
    import torch

    w = weight_out_in(module)
    out, k = w.shape
    groups = k // block_size
    wg = w.float().reshape(out, groups, block_size)
    xg = x.reshape(-1, groups, block_size)  # (rows, groups, block)
    org_max = wg.abs().amax(-1, keepdim=True)  # (out, groups, 1)
    best_err = torch.full((out, groups), math.inf)
    best_max = org_max.clone()
    ref_out = torch.einsum("rgb,ogb->rog", xg, wg)
    for i in range(int(max_shrink * grid) + 1):
        cand = org_max * (1 - i / grid)
        clipped = wg.clamp(-cand, cand).reshape(out, k)
        q = fake_quant(clipped, block_size, symmetric).reshape(out, groups, block_size)
        err = (torch.einsum("rgb,ogb->rog", xg, q) - ref_out).pow(2).mean(0)  # (out, groups)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_max = torch.where(better[..., None], cand, best_max)
    with torch.no_grad():
        clamped = wg.clamp(-best_max, best_max).reshape(out, k).to(w.dtype)
        w.copy_(clamped)
    return float((best_max / org_max.clamp_min(1e-12)).mean())


def standalone_pairs(model, pairs: list[Pair]) -> list[Pair]:
    """Linear layers inside the decoder layers that no pair scales (o_proj under grouped-query attention, GPT-2's
    c_proj): observed for the clip search only."""
    import torch

    from compressor.quantize.scaling import layers_of

    covered = {id(c) for p in pairs for c in p.consumers}
    prefix = {id(m): n for n, m in model.named_modules()}
    out = []
    for layer in layers_of(model):
        for m in layer.modules():
            if id(m) in covered or not (isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D"):
                continue
            out.append(Pair(prefix[id(m)], None, [m], [prefix[id(m)]]))
    return out


def awq_transform(
    model,
    blocks: np.ndarray,
    block_size: int,
    symmetric: bool,
    grid: int = 20,
    clip: bool = True,
    keep_rows: int = 512,
    clip_rows: int = 256,
) -> dict:
    """Scale search (on ``keep_rows`` sampled input rows per layer group) and clip search (on ``clip_rows`` of them)
    on ``model`` in place (pass a copy). Returns what was done."""
    pairs = find_pairs(model)
    loose = standalone_pairs(model, pairs) if clip else []
    for p in pairs + loose:
        if in_features(p.consumers[0]) % block_size:
            from compressor.core.errors import CompressorError

            raise CompressorError(
                f"block_size {block_size} does not divide the input width {in_features(p.consumers[0])} of {p.consumer_names[0]}"
            )
    check_blocks = blocks[: min(2, len(blocks))]
    before = logits_of(model, check_blocks)
    observe(model, pairs + loose, blocks, keep_rows=keep_rows)
    alphas, gains = [], []
    for p in pairs:
        alpha, s, err, base = search_scales(p, block_size, symmetric, grid)
        apply_scales(p, s)
        alphas.append(alpha)
        gains.append(err / base if base > 0 else 1.0)
    drift = check_unchanged(before, model, check_blocks)
    kept = (
        [search_clip(c, p.samples[:clip_rows], block_size, symmetric, grid) for p in pairs + loose for c in p.consumers]
        if clip
        else []
    )
    return {
        "method": "awq",
        "pairs_scaled": len(pairs),
        "alpha_mean": float(np.mean(alphas)) if alphas else None,
        "alphas": alphas,
        "search_error_ratio_mean": float(np.mean(gains)) if gains else None,
        "rescale_relative_logit_change": drift,
        "clip": clip,
        "clip_kept_fraction_mean": float(np.mean(kept)) if kept else None,
        "layers_clipped": len(kept),
        "calibration_blocks": int(len(blocks)),
        "calibration_rows_kept": keep_rows,
        "clip_rows": clip_rows,
        "grid": grid,
    }


def quantize_awq(
    model,
    blocks: np.ndarray,
    dst: Path,
    block_size: int,
    symmetric: bool,
    include_lm_head: bool,
    accuracy_level: int | None,
    grid: int = 20,
    clip: bool = True,
    opset: int = 17,
    exporter: str = "auto",
    tokenizer=None,
    include_embeddings: bool = False,
) -> dict:
    """AWQ on a copy of ``model``, its cached export (ours, or with ``exporter="genai"`` onnxruntime-genai's builder:
    the fused graph, which needs ``tokenizer``), then MatMulNBits (RTN of the transformed weights) into ``dst``."""
    from compressor.onnx.decoder import export_decoder
    from compressor.quantize.weight_only import quantize_file

    work = copy.deepcopy(model).float().cpu().eval()
    info = awq_transform(work, blocks, block_size, symmetric, grid, clip)
    tmp = tmp_sibling(dst)
    try:
        if exporter == "genai":
            from compressor.onnx.genai_builder import export_genai

            fp32 = tmp / "model.onnx"
            graph = export_genai(work, tokenizer, fp32)
        else:
            fp32 = tmp / "awq.fp32.onnx"
            graph = export_decoder(work, fp32, opset=opset)
        del work
        q = quantize_file(fp32, dst, 4, block_size, symmetric, include_lm_head, accuracy_level, include_embeddings)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "AWQ: %d pairs scaled (mean α %.2f), %d layers clipped (mean kept %.3f)",
        info["pairs_scaled"],
        info["alpha_mean"] or 0.0,
        info["layers_clipped"],
        info["clip_kept_fraction_mean"] or 1.0,
    )
    return {**q, **info, "exporter": graph["exporter"], "opset": graph["opset"]}
