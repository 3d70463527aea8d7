"""What ``compressor plan``'s advice is made of: the row, the facts it reads, and the registry of advice by config type.

A new stage, scheme or criterion gets its advice from one module in compressor/plan/advice/ with one
``@ADVICE.register(ConfigClass)`` line (and one import line in that package's ``__init__``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor.core.registry import Registry
from compressor.plan.shape import Shape
from compressor.report.compression import SMALLER_NOT_FASTER  # noqa: F401  (the advice modules share the wording)

INT8_FAST_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")  # int8 dot-product instructions ORT's MLAS uses


@dataclass
class Advice:
    stage: str  # what the row is about: a stage ("1 distill"), "device", "bench cuda"
    verdict: str  # short: "faster + smaller", "smaller, not faster", "skipped", ...
    why: str


@dataclass
class PlanContext:
    """What advice reads: the model from config.json only, and the machine."""

    shape: Shape | None  # None: config.json is not local
    config: dict | None
    causal: bool
    recipe_dir: Path | None = None
    cores: int | None = None
    flags: list[str] = field(default_factory=list)
    gpu: str | None = None
    arch: str = ""
    train_device: str = "cpu"

    @classmethod
    def build(cls, recipe, recipe_dir: Path | None, machine: dict[str, Any]) -> PlanContext:
        from compressor.recipe.model_config import read_model_config

        causal = recipe.model.task == "causal-lm"
        cfg = read_model_config(recipe.model.path, recipe_dir)
        gpu = machine.get("gpu")
        return cls(
            Shape.from_config(cfg, causal) if cfg else None,
            cfg,
            causal,
            recipe_dir,
            machine.get("cores"),
            list(machine.get("cpu_flags", [])),
            gpu,
            machine.get("arch", ""),
            "cuda" if (recipe.device == "cuda" or (recipe.device == "auto" and gpu)) else "cpu",
        )


# advice(stage config, PlanContext) -> Advice (its ``stage`` left empty: make_plan names the row)
ADVICE: Registry = Registry("plan advice")

UNSTRUCTURED = (
    "unstructured sparsity: the zeros stay in dense matrices; ONNX Runtime CPU and PyTorch have no sparse "
    "kernels, so no speed-up; the gzip size shrinks"
)


def training_extras(cfg) -> str:
    """What a training stage's ``prune:`` and ``qat:`` add to its advice."""
    extras = []
    if getattr(cfg, "prune", None) is not None:
        extras.append(f"gradual pruning to {cfg.prune.sparsity:.0%}: " + UNSTRUCTURED)
    if getattr(cfg, "qat", None) is not None:
        extras.append("QAT: fake INT8 while training, so `quantize: {type: qat}` keeps the trained accuracy")
    return ("; " + "; ".join(extras)) if extras else ""


def int8_speed(ctx: PlanContext) -> str:
    fast = [f for f in INT8_FAST_FLAGS if f in set(ctx.flags)]
    if fast:
        return f"this CPU has {', '.join(fast)}: ORT runs int8 MatMuls with int8 dot-product instructions, so INT8 pays off"
    if "avx2" in set(ctx.flags):
        return "no VNNI/AMX here: ORT's u8s8 kernels use AVX2, a smaller speed-up"
    return "this CPU reports no AVX2/VNNI: int8 kernels gain little"
