"""Advice for INT8 of the exported graph (``quantize: {type: dynamic}`` and ``{type: static}``): the CPU's int8 kernels."""

from __future__ import annotations

from compressor.plan.base import ADVICE, INT8_FAST_FLAGS, Advice, PlanContext, int8_speed
from compressor.recipe.schema import DynamicQuant, StaticQuant


@ADVICE.register(DynamicQuant)
@ADVICE.register(StaticQuant)
def int8(cfg: DynamicQuant | StaticQuant, ctx: PlanContext) -> Advice:
    flags = set(ctx.flags)
    fast = [f for f in INT8_FAST_FLAGS if f in flags]
    size = "≈4× smaller MatMul / embedding weights"
    gpu = "; CPU only: ORT has no CUDA kernels for this graph" if ctx.gpu else ""
    if fast:
        return Advice("", "faster + smaller", f"{size}; {int8_speed(ctx)}{gpu}")
    if "avx2" in flags:
        rr = "" if cfg.reduce_range else "; set reduce_range: true if accuracy drops"
        return Advice(
            "",
            "smaller, modestly faster",
            f"{size}; no VNNI/AMX here: ORT's u8s8 kernels use AVX2 "
            f"(vpmaddubsw), smaller speed-up and a risk of saturation{rr}{gpu}",
        )
    if ctx.arch in ("aarch64", "arm64"):
        return Advice(
            "",
            "smaller; speed: measure",
            f"{size}; ARM CPU: int8 speed depends on dot-product support (check with compressor bench){gpu}",
        )
    return Advice("", "smaller, likely not faster", f"{size}; this CPU reports no AVX2/VNNI: int8 kernels gain little{gpu}")
