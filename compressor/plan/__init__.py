"""``compressor plan RECIPE``: what each stage can buy on this machine, before running anything.

Reads the recipe, the model's config.json (a small JSON file: no weights, no transformers) and
the machine's fingerprint (CPU flags from /proc/cpuinfo, GPU), and states per stage whether it
makes the model smaller, faster, both, or neither here, and why. The statements are
rules about the runtimes this project uses (ONNX Runtime on CPU, PyTorch), not measurements:
``compressor run`` measures. The recipe has passed the stage contracts (it was loaded by ``load_recipe``), so
every stage here can run; the advice for each stage config type is registered in compressor/plan/advice/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compressor.plan.base import ADVICE, Advice, PlanContext
from compressor.plan.machine import bench_rows, describe_machine, machine_info
from compressor.plan.shape import Shape

__all__ = ["ADVICE", "Advice", "PlanContext", "Shape", "describe_machine", "machine_info", "make_plan", "stage_advice"]


def stage_advice(cfg, ctx: PlanContext) -> Advice:
    """The registered advice for one stage config (one row, unnamed)."""
    import compressor.plan.advice  # noqa: F401  (registers the advice)

    if type(cfg) not in ADVICE:
        return Advice("", "?", f"no advice for {type(cfg).__name__} stages yet")
    return ADVICE.get(cfg)(cfg, ctx)


def make_plan(recipe, recipe_dir: Path | None, machine: dict[str, Any]) -> list[Advice]:
    """Advice rows: the training device, one per stage, one per benchmark device."""
    ctx = PlanContext.build(recipe, recipe_dir, machine)
    rows = []
    if recipe.device == "cuda" and not ctx.gpu:
        rows.append(Advice("device", "error", "device: cuda, but no CUDA GPU is visible: the run would stop"))
    for i, (kind, cfg) in enumerate(recipe.stage_list()):
        a = stage_advice(cfg, ctx)
        name = f"{i} {kind}" + (f" ({cfg.type})" if isinstance(getattr(cfg, "type", None), str) else "")
        rows.append(Advice(name, a.verdict, a.why))
    if not recipe.stage_list():
        rows.append(Advice("stages", "none", "no stages: the model is only evaluated and benchmarked"))
    return rows + bench_rows(recipe.bench, machine)
