"""The one-shot unstructured / N:M ``prune`` stage: observe what the criterion needs, then prune.

- criteria that need nothing (magnitude): unstructured masks compare over all layers (``scope: global``: every
  selected matrix scored at once) or per layer (one matrix scored and masked at a time), N:M masks per group;
- criteria that need gradients (Taylor): one forward / backward pass over training batches first;
- criteria that need input statistics (Wanda, SparseGPT): sequential calibration of the decoder layers
  (:mod:`compressor.prune.sequential`) on ``samples`` calibration blocks.
"""

from __future__ import annotations

import logging
import time

import torch

from compressor.core.errors import CompressorError
from compressor.core.memory import peak_rss_mib
from compressor.prune.criteria import GRADIENTS, HESSIAN, INPUT_NORMS, criterion_for
from compressor.prune.masks import ImportanceObserver, apply_masks, masks_for, sparsity_table
from compressor.prune.patterns import Pattern, PatternError
from compressor.prune.sequential import out_in, prune_sequential

log = logging.getLogger("compressor")


def check_pattern(pattern: Pattern, modules: dict[str, torch.nn.Module], field: str) -> None:
    for name, m in modules.items():
        pattern.check(name, out_in(m).shape[1], field)


def prune_modules(
    model, modules: dict[str, torch.nn.Module], cfg, batches=None, field: str = "prune", observe_gradients=None
) -> dict:
    """Prune ``modules`` (name -> Linear) of ``model`` in place as ``cfg`` (an UnstructuredPrune) says.

    ``batches``: calibration batches (criteria needing input statistics); ``observe_gradients(on_backward)``:
    runs the gradient pass (criteria needing gradients) and returns the number of batches observed.
    Raises :class:`PatternError` (field, message) for a pattern a layer cannot take.
    """
    criterion, pattern = criterion_for(cfg.criterion), Pattern.parse(cfg.pattern)
    check_pattern(pattern, modules, f"{field}.pattern")
    t0, info = time.perf_counter(), {}
    if criterion.needs & {INPUT_NORMS, HESSIAN}:
        if batches is None:
            raise CompressorError(f"{field}: criterion {criterion.name} needs calibration batches")
        info = prune_sequential(model, batches, criterion, pattern, cfg.sparsity, modules, f"{field}.criterion")
    elif not criterion.needs and (pattern.structured or cfg.scope == "layer"):  # magnitude: no copy of every |W|
        _prune_layer_by_layer(modules, lambda name, w: criterion.score(w, None), pattern, cfg.sparsity)
    else:
        weights = {n: m.weight for n, m in modules.items()}
        observer = ImportanceObserver(weights, criterion)
        if GRADIENTS in criterion.needs:
            info["batches_observed"] = observe_gradients(observer.observe)
        scores = observer.scores()
        if pattern.structured or cfg.scope == "layer":
            _prune_layer_by_layer(modules, lambda name, w: _out_in_scores(modules[name], scores[name]), pattern, cfg.sparsity)
        else:
            apply_masks(weights, masks_for(scores, cfg.sparsity, "global"))
    table = sparsity_table({n: m.weight.detach() for n, m in modules.items()})
    return {
        "type": "unstructured",
        "mode": "one-shot",
        "criterion": criterion.name,
        "pattern": str(pattern),
        "scope": "row" if criterion.rows else cfg.scope,
        "target": cfg.sparsity,
        "seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_mib": peak_rss_mib(),
        **info,
        **table,
    }


@torch.no_grad()
def _prune_layer_by_layer(modules: dict[str, torch.nn.Module], score, pattern: Pattern, sparsity: float) -> None:
    """Per-layer masks: each matrix scored (``score(name, out × in weight)``), masked and released in turn, so a
    criterion that scores from the weight alone (magnitude) needs one layer's scores, not a copy of every weight."""
    for name, m in modules.items():
        w = out_in(m)  # (out, in) view: N:M groups run along the input dimension
        w.mul_(pattern.keep(score(name, w), sparsity).to(w.dtype))


def _out_in_scores(module, s: torch.Tensor) -> torch.Tensor:
    """Accumulated scores laid out like ``module.weight``, as (out × in) (GPT-2's Conv1D stores in × out)."""
    from transformers.pytorch_utils import Conv1D

    return s.t() if isinstance(module, Conv1D) else s


def calibration_batches(ctx, crit_cfg, field: str) -> list[dict]:
    from compressor.data import make_loader
    from compressor.quantize.calibration import calibration_split

    enc, where = calibration_split(ctx, crit_cfg.samples, f"{field}.samples")
    log.info("calibration: %d blocks of %d tokens from %s", len(enc), ctx.recipe.data.max_length, where)
    return list(make_loader(enc, ctx.tokenizer, crit_cfg.batch_size, False, ctx.seed, ctx.task))


def run_oneshot(ctx, cfg, modules: dict[str, torch.nn.Module]) -> dict:
    """The stage body: batches / gradient pass from the run, errors pointing at the recipe line."""
    from compressor.prune.observe import observe_gradients

    field = ctx.stage_path
    criterion = criterion_for(cfg.criterion)
    batches = None
    if criterion.needs & {INPUT_NORMS, HESSIAN}:
        if ctx.task != "causal-lm":
            raise ctx.recipe.error(
                f"{field}.criterion.type",
                f"criterion {criterion.name} calibrates decoder layers one by one: it needs model.task causal-lm, not {ctx.task}",
            )
        batches = calibration_batches(ctx, cfg.criterion, f"{field}.criterion")
    device = ctx.device
    ctx.model.to(device)
    try:
        info = prune_modules(
            ctx.model,
            modules,
            cfg,
            batches,
            field,
            lambda on_backward: observe_gradients(ctx, ctx.model, cfg.criterion.batches, on_backward),
        )
    except PatternError as e:
        raise ctx.recipe.error(e.field, e.message) from None
    finally:
        ctx.model.to("cpu")
    log.info(
        "one-shot pruning (%s, %s%s): %.2f %% of %d weights in %d matrices are zero (%.1f s)",
        info["criterion"],
        info["pattern"],
        f", {info['scope']} scope" if info["pattern"] == "unstructured" else "",
        100 * info["sparsity"],
        info["params"],
        len(modules),
        info["seconds"],
    )
    return info
