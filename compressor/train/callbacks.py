"""The callbacks a training stage attaches to the loop, from its config (``prune:``, ``qat:``)."""

from __future__ import annotations

from compressor.recipe.schema import TrainConfig


def training_callbacks(ctx, cfg: TrainConfig, model, where: str) -> list:
    """QAT first (it wraps the Linear layers, keeping their parameters), then gradual pruning."""
    out = []
    if cfg.qat is not None:
        from compressor.quantize.qat import QATCallback

        batches = []
        for batch in ctx.loader("train", cfg.batch_size, shuffle=True):
            if len(batches) >= cfg.qat.calibration_batches:
                break
            batches.append(batch)
        out.append(QATCallback(model, cfg.qat, batches, ctx.device))
    if cfg.prune is not None:
        from compressor.prune.stage import GradualPruning

        out.append(GradualPruning(model, cfg.prune, ctx.recipe, f"{where}.prune"))
    return out


def summaries(callbacks: list) -> dict:
    """What the callbacks report for metrics.json, keyed by their ``name`` ("prune", "qat")."""
    return {getattr(cb, "name", type(cb).__name__.lower()): cb.summary() for cb in callbacks if hasattr(cb, "summary")}
