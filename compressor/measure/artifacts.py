"""The run's artifacts as measure/ sees them: which files to evaluate and time, their sizes and parameter counts."""

from __future__ import annotations

from pathlib import Path

from compressor.pipeline.context import RunContext

BASELINE_DIR = "baseline"  # checkpoints/baseline (pipeline.BASELINE): the saved baseline model


def artifact_files(ctx: RunContext) -> dict[str, Path]:
    """Name -> file for the ONNX artifacts to evaluate (the fused graph stands for fp32 ORT)."""
    out: dict[str, Path] = {}
    fp32 = ctx.artifacts.get("onnx-opt") or ctx.artifacts.get("onnx")
    if fp32 is not None:
        out["onnx"] = fp32
    for name in ("int8", "int4"):
        if name in ctx.artifacts:
            out[name] = ctx.artifacts[name]
    return out


def nonzero_parameters(model) -> int:
    return int(sum(int(p.count_nonzero()) for p in model.parameters()))


def onnx_size(path: Path) -> int:
    size = path.stat().st_size
    data = path.with_name(path.name + ".data")
    return size + (data.stat().st_size if data.exists() else 0)
