"""The callbacks a training stage attaches to the loop, from its config (``prune:``, ``qat:``, ``lora:``, ``partial:``).

Each kind of callback is registered by the type of its config in :data:`TRAINING_CALLBACKS`: gradual pruning in
compressor/prune/stage.py, QAT in compressor/quantize/qat_callback.py, LoRA and partial fine-tuning in
compressor/train/adapters.py. The loop, the training stages and the pipeline know none of them. A new one is a
config field on ``TrainConfig`` plus ``@TRAINING_CALLBACKS.register(MyConfig)`` on its factory.
"""

from __future__ import annotations

from pydantic import BaseModel

from compressor.core.registry import Registry
from compressor.recipe.schema import TrainConfig

# config type -> ``factory(ctx, train_cfg, cfg, model, where) -> callback``; ``where`` is the config's recipe path
TRAINING_CALLBACKS: Registry = Registry("training callback")


def training_callbacks(ctx, cfg: TrainConfig, model, where: str) -> list:
    """One callback per set sub-config of ``cfg`` (a field of TrainConfig holding a config), in the order the fields
    are declared: gradual pruning first (it selects Linear layers by type), then QAT (it wraps them, keeping their
    parameters, so the pruning masks and QAT act on the same weights), then the fine-tuning methods (LoRA, partial).

    A set sub-config without a registered factory is an error (its module was not imported), never skipped."""
    out = []
    for name in TrainConfig.model_fields:
        sub = getattr(cfg, name, None)
        if isinstance(sub, BaseModel):
            out.append(TRAINING_CALLBACKS.get(sub)(ctx, cfg, sub, model, f"{where}.{name}"))
    return out


def summaries(callbacks: list) -> dict:
    """What the callbacks report for metrics.json, keyed by their ``name`` ("prune", "qat")."""
    return {getattr(cb, "name", type(cb).__name__.lower()): cb.summary() for cb in callbacks if hasattr(cb, "summary")}
