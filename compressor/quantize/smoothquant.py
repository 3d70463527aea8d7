"""W8A8 with SmoothQuant (Xiao et al. 2023): activation outliers migrated into the weights, then INT8 weights and
INT8 activations.

1. Observe: calibration blocks run through the model once; per scalable pair (quantize/scaling.py) the per-channel
   max |x| of the consumers' input is kept.
2. Migrate: ``s_j = max|x_j|^α / max|W_{:,j}|^(1−α)`` (over all consumers' column j), folded in exactly (producer
   output / s, weight columns × s). The re-scaled model's fp32 logits are checked against the original's before
   anything is quantized: the migration must not change the function.
3. Export with the KV cache and quantize every constant-weight MatMul to INT8: ``dynamic`` (activation ranges per
   call: DynamicQuantizeMatMul / MatMulInteger) or ``static`` (activation ranges calibrated on the same blocks:
   QDQ, which ONNX Runtime fuses into integer MatMuls). Weights per output channel.

``alpha`` 0 leaves the activations as they are (plain W8A8); 0.5 is the paper's default for most models; larger
values move more of the range into the weights.
"""

from __future__ import annotations

import copy
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np

from compressor.core.rundir import quiet_libraries, tmp_sibling
from compressor.quantize.scaling import apply_scales, check_unchanged, find_pairs, logits_of, observe, weight_out_in

log = logging.getLogger("compressor")


def smooth(model, blocks: np.ndarray, alpha: float) -> dict:
    """SmoothQuant's migration on ``model`` in place (pass a copy), checked exact. Returns what was done."""
    import torch

    pairs = find_pairs(model)
    check_blocks = blocks[: min(2, len(blocks))]
    before = logits_of(model, check_blocks)
    observe(model, pairs, blocks, keep_rows=1)
    ratios = []
    for p in pairs:
        w_max = torch.cat([weight_out_in(c).abs() for c in p.consumers], 0).amax(0).float().clamp_min(1e-5)
        x_max = p.absmax.clamp_min(1e-5)
        s = (x_max.pow(alpha) / w_max.pow(1 - alpha)).clamp_min(1e-5)
        before_ratio = float(x_max.max() / x_max.median())
        apply_scales(p, s)
        ratios.append((before_ratio, float(p.absmax.max() / p.absmax.median())))
    drift = check_unchanged(before, model, check_blocks)
    return {
        "alpha": alpha,
        "pairs_smoothed": len(pairs),
        "rescale_relative_logit_change": drift,
        "activation_outlier_ratio_before": float(np.mean([r[0] for r in ratios])) if ratios else None,
        "activation_outlier_ratio_after": float(np.mean([r[1] for r in ratios])) if ratios else None,
        "calibration_blocks": int(len(blocks)),
    }


def _matmuls(path: Path) -> list[str]:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    return [n.name for n in g.node if n.op_type == "MatMul" and n.input[1] in inits]


class _Reader:
    """ONNX Runtime calibration reader: the cached graph's prefill feeds of the calibration blocks."""

    def __init__(self, feeds: list[dict]):
        self.feeds = iter(feeds)

    def get_next(self):
        return next(self.feeds, None)


def int8_file(src: Path, dst: Path, mode: str, feeds: list[dict], exclude: list[str]) -> list[str]:
    """INT8 weights and activations for the constant-weight MatMuls of ``src`` (``mode``: dynamic / static)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    nodes = [n for n in _matmuls(src) if n not in exclude]
    with warnings.catch_warnings(), quiet_libraries():
        warnings.simplefilter("ignore")
        if mode == "dynamic":
            quantize_dynamic(
                str(src),
                str(dst),
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=nodes,
                per_channel=True,
                weight_type=QuantType.QInt8,
            )
        else:
            reader = type("Reader", (_Reader, CalibrationDataReader), {})(feeds)
            quantize_static(
                str(src),
                str(dst),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=nodes,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    return nodes


def quantize_smoothquant(
    model,
    blocks: np.ndarray,
    dst: Path,
    alpha: float = 0.5,
    mode: str = "dynamic",
    include_lm_head: bool = False,
    opset: int = 17,
) -> dict:
    """SmoothQuant on a copy of ``model``, its cached export, then INT8 (W8A8) into ``dst`` (atomic)."""
    import onnx

    from compressor.arch.signature import decoder_signature
    from compressor.onnx.decoder import export_decoder
    from compressor.quantize.weight_only import gemm_to_matmul, lm_head_nodes

    work = copy.deepcopy(model).float().cpu().eval()
    info = smooth(work, blocks, alpha)
    sig = decoder_signature(work.config, with_past=True)
    tmp = tmp_sibling(dst)
    try:
        export_decoder(work, tmp / "smooth.fp32.onnx", opset=opset)
        del work
        graph = onnx.load(str(tmp / "smooth.fp32.onnx"))
        gemm_to_matmul(graph)
        excluded = [] if include_lm_head else lm_head_nodes(graph)
        onnx.save(graph, str(tmp / "plain.onnx"))
        feeds = [sig.feed({"input_ids": b[None]}) for b in np.asarray(blocks, dtype=np.int64)]
        nodes = int8_file(tmp / "plain.onnx", tmp / dst.name, mode, feeds, excluded)
        (tmp / dst.name).replace(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "SmoothQuant W8A8 (%s, α %.2f): %d pairs smoothed, %d MatMuls in INT8", mode, alpha, info["pairs_smoothed"], len(nodes)
    )
    return {
        **info,
        "mode": mode,
        "int8_matmuls": len(nodes),
        "excluded_nodes": excluded,
        "scheme": f"W8A8 SmoothQuant ({mode} activations)",
    }
