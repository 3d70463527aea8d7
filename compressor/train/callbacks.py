"""The callbacks a training stage attaches to the loop, from its config (``prune:``, ``qat:``)."""

from __future__ import annotations

from compressor.recipe.schema import TrainConfig


def training_callbacks(ctx, cfg: TrainConfig, model, where: str) -> list:
    """Gradual pruning first (it selects Linear layers by type), then QAT (it wraps them, keeping their parameters,
    so the pruning masks and QAT act on the same weights)."""
    from compressor.core.errors import CompressorError

    out = []
    if cfg.prune is not None:
        from compressor.prune.stage import GradualPruning

        out.append(GradualPruning(model, cfg.prune, ctx.recipe, f"{where}.prune"))
    if cfg.qat is not None:
        from compressor.quantize.qat import QATCallback

        batches = []
        for batch in ctx.loader("train", cfg.batch_size, shuffle=True):
            if len(batches) >= cfg.qat.calibration_batches:
                break
            batches.append(batch)
        try:
            out.append(QATCallback(model, cfg.qat, batches, ctx.device))
        except CompressorError as e:
            raise ctx.recipe.error(f"{where}.qat.include", str(e)) from None
    from compressor.train.adapters import adapter_callbacks  # lora: / partial: (fine-tuning methods)

    return out + adapter_callbacks(ctx, cfg, model, where)


def summaries(callbacks: list) -> dict:
    """What the callbacks report for metrics.json, keyed by their ``name`` ("prune", "qat")."""
    return {getattr(cb, "name", type(cb).__name__.lower()): cb.summary() for cb in callbacks if hasattr(cb, "summary")}
