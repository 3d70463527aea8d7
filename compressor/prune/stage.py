"""Pruning in a run: gradually inside training (a loop callback), or one-shot as a ``prune`` stage.

Gradual (``prune:`` inside ``finetune`` / ``distill``): every ``schedule.every`` steps from
``schedule.start`` to ``schedule.end`` the masks are recomputed for the schedule's sparsity; after
every optimizer step the masks are re-applied. Evaluations only compete for "best checkpoint"
once the final sparsity is reached, so the kept model is a pruned one.

One-shot (``- prune: {...}`` stage): unstructured or N:M masks from any registered criterion
(oneshot.py; Wanda and SparseGPT calibrate layer by layer, sequential.py), structured head / neuron
removal (structured.py), or vocabulary trimming (vocab.py).
"""

from __future__ import annotations

import logging

import torch

from compressor.core.errors import CompressorError
from compressor.core.registry import STAGES
from compressor.pipeline.context import RunContext
from compressor.prune import schedules
from compressor.prune.criteria import criterion_for
from compressor.prune.masks import (
    ImportanceObserver,
    PatternError,
    apply_masks,
    linear_modules,
    masks_for,
    select_modules,
    sparsity_table,
    weights_of,
)
from compressor.prune.observe import observe_gradients  # noqa: F401  (re-exported)
from compressor.recipe.schema import DEFAULT_EXCLUDE, StructuredPrune, UnstructuredPrune
from compressor.train.callbacks import TRAINING_CALLBACKS

log = logging.getLogger("compressor")


def _targets(ctx_recipe, model, cfg: UnstructuredPrune, where: str) -> dict[str, torch.nn.Parameter]:
    user_exclude = [p for p in cfg.exclude if p not in DEFAULT_EXCLUDE] if "exclude" in cfg.model_fields_set else []
    try:
        return weights_of(select_modules(model, cfg.include, cfg.exclude, user_exclude, where))
    except PatternError as e:
        raise ctx_recipe.error(e.field, e.message) from None


class GradualPruning:
    """Training-loop callback (see compressor.train.state.Callback) for unstructured gradual pruning."""

    name = "prune"

    def __init__(self, model, cfg: UnstructuredPrune, recipe, where: str):
        self.cfg, self.recipe, self.where = cfg, recipe, where
        self.weights = _targets(recipe, model, cfg, where)
        self.observer = ImportanceObserver(self.weights, criterion_for(cfg.criterion))
        self.masks: dict[str, torch.Tensor] = {}
        self.current = 0.0  # the sparsity the masks were last computed for
        self.end = None
        self.curve: list[tuple[int, float]] = []  # (step, measured sparsity) at every update
        self.warned: set[str] = set()  # matrices already reported as (almost) emptied

    # -- loop hooks
    def on_train_begin(self, state) -> None:
        self.end = schedules.resolve_end(self.cfg.schedule, state.total_steps)
        if self.end > state.total_steps or self.cfg.schedule.start > state.total_steps:
            field = "end" if self.cfg.schedule.end is not None else "start"
            raise self.recipe.error(
                f"{self.where}.schedule.{field}",
                f"step {getattr(self.cfg.schedule, field)} is beyond the stage's {state.total_steps} training steps",
            )
        if state.step == 0:
            self._maybe_update(0)
        log.info(
            "gradual pruning: %s to %.0f %% sparsity (%s, %s scope) over steps %d..%d of %d, %d weight matrices",
            self.cfg.schedule.type,
            100 * self.cfg.sparsity,
            self.cfg.criterion.type,
            self.cfg.scope,
            self.cfg.schedule.start,
            self.end,
            state.total_steps,
            len(self.weights),
        )

    def on_gradients(self, state) -> None:
        if self.observer.needs_gradients and (state.step < self.end or not self.ready(state)):
            self.observer.observe()

    def on_step(self, state) -> None:
        if not self._maybe_update(state.step) and self.masks:
            apply_masks(self.weights, self.masks)

    def logs(self) -> dict:
        return {"sparsity": self.measured()}

    def ready(self, state) -> bool:
        return self.current >= self.cfg.sparsity - 1e-12

    def on_train_end(self, state) -> None:
        if not self.ready(state):
            raise self.recipe.error(
                f"{self.where}.schedule",
                f"training ended at step {state.step} before the schedule "
                f"reached {self.cfg.sparsity:.0%} sparsity (now {self.current:.0%}); "
                "end the schedule earlier or train longer",
            )
        apply_masks(self.weights, self.masks)  # the kept (best) weights carry the masks already; make sure

    def state_dict(self) -> dict:
        return {
            "masks": {k: v.cpu() for k, v in self.masks.items()},
            "current": self.current,
            "observer": self.observer.state_dict(),
            "curve": [list(c) for c in self.curve],
        }

    def load_state_dict(self, state: dict) -> None:
        device = next(iter(self.weights.values())).device
        self.masks = {k: v.to(device) for k, v in state["masks"].items()}
        self.current = float(state["current"])
        self.observer.load_state_dict(state["observer"])
        self.curve = [tuple(c) for c in state.get("curve", [])]

    # -- pruning
    def _maybe_update(self, step: int) -> bool:
        sched = self.cfg.schedule
        if sched.type == "one_shot":  # due from `start` on until done (gradient scores need a step first)
            due = step >= sched.start and self.current < self.cfg.sparsity
        else:
            due = schedules.is_update_step(sched, step, self.end)
        if not due:
            return False
        target = schedules.sparsity_at(sched, self.cfg.sparsity, step, self.end)
        if target <= 0.0 and not self.masks:
            return False
        if self.observer.needs_gradients and not self.observer.observed:
            if step == 0:
                return False  # gradient scores exist only after the first step
            raise CompressorError(f"{self.cfg.criterion.type} pruning at step {step}: no gradients observed yet")
        self.masks = _masks(self.observer.scores(), target, self.cfg.scope, self.warned)
        self.observer.reset()
        apply_masks(self.weights, self.masks)
        self.current = target
        self.curve.append((step, self.measured()))
        return True

    def measured(self) -> float:
        zeros = sum(int((~m).sum()) for m in self.masks.values())
        return zeros / max(sum(w.numel() for w in self.weights.values()), 1)

    def summary(self) -> dict:
        table = sparsity_table({n: w.detach() for n, w in self.weights.items()})
        return {
            "type": "unstructured",
            "mode": "gradual",
            "criterion": self.cfg.criterion.type,
            "scope": self.cfg.scope,
            "schedule": {**self.cfg.schedule.model_dump(), "end": self.end},
            "target": self.cfg.sparsity,
            "curve": [{"step": s, "sparsity": v} for s, v in self.curve],
            **table,
        }


# ---------------------------------------------------------------- one-shot stages
def _masks(scores: dict[str, torch.Tensor], sparsity: float, scope: str, warned: set[str]) -> dict[str, torch.Tensor]:
    """``masks_for``, warning (once per matrix, via ``warned``) about matrices it (almost) empties."""
    masks = masks_for(scores, sparsity, scope)
    _warn_emptied(masks, warned)
    return masks


def _warn_emptied(masks: dict[str, torch.Tensor], warned: set[str]) -> None:
    """A global ranking can zero a whole matrix whose weights are all small (it then passes on only its bias)."""
    for name, m in masks.items():
        kept = m.float().mean().item() if m.numel() else 1.0
        if name not in warned and kept < 0.01:
            warned.add(name)
            log.warning(
                "pruning removes %.1f %% of %s: it now passes on (almost) only its bias; exclude it "
                "(prune `exclude:`) or use `scope: layer` if accuracy collapses",
                100 * (1 - kept),
                name,
            )


@TRAINING_CALLBACKS.register(UnstructuredPrune)
def gradual_pruning(ctx: RunContext, train_cfg, cfg: UnstructuredPrune, model, where: str) -> GradualPruning:
    """``prune:`` inside a training stage: the masks follow the schedule while it trains."""
    return GradualPruning(model, cfg, ctx.recipe, where)


@STAGES.register(UnstructuredPrune)
def run_unstructured(ctx: RunContext, cfg: UnstructuredPrune) -> dict:
    from compressor.prune.oneshot import run_oneshot

    weights = _targets(ctx.recipe, ctx.model, cfg, ctx.stage_path)
    modules = {n.removesuffix(".weight"): m for n, m in linear_modules(ctx.model).items() if f"{n}.weight" in weights}
    info = run_oneshot(ctx, cfg, modules)
    _warn_emptied({n: w != 0 for n, w in weights.items()}, set())
    return {"prune": info}


@STAGES.register(StructuredPrune)
def run_structured(ctx: RunContext, cfg: StructuredPrune) -> dict:
    from compressor.prune.structured import prune_structured

    return {"prune": prune_structured(ctx, cfg)}
