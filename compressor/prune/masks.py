"""Unstructured pruning: which weights, how important each is, and the masks that zero the rest.

Observe first, then change: :class:`ImportanceObserver` collects the scores of a registered criterion
(:mod:`compressor.prune.criteria`: magnitude needs none, Taylor and movement accumulate over backward
passes); :func:`masks_for` turns scores into masks for a target sparsity; :func:`apply_masks` zeros the
weights in place. No forward hooks or
parametrizations are used, so the model stays a plain Hugging Face model throughout and the
saved checkpoint is a normal one whose zeros are the pruned weights.
"""

from __future__ import annotations

import logging
import re

import torch

from compressor.core.errors import CompressorError
from compressor.prune.criteria.base import GRADIENTS, Criterion
from compressor.prune.patterns import PatternError, keep_top  # noqa: F401  (PatternError: raised by select_modules)

log = logging.getLogger("compressor")


def linear_modules(model) -> dict[str, torch.nn.Module]:
    """Name -> module of every Linear layer (and GPT-2's Conv1D, a Linear with its weight transposed)."""
    from transformers.pytorch_utils import Conv1D

    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear | Conv1D)}


def select_modules(
    model, include: list[str], exclude: list[str], user_exclude: list[str] | None = None, where: str = "prune"
) -> dict[str, torch.nn.Module]:
    """Linear modules whose name matches an ``include`` regex and no ``exclude`` regex.

    Raises ``ValueError(field, message)``-style errors (as ``PatternError``) naming the pattern that
    matches nothing: every include pattern, and every exclude pattern the user wrote (``user_exclude``;
    the defaults may not apply to every architecture), must match at least one Linear module.
    """
    modules = linear_modules(model)
    names = list(modules)
    for i, p in enumerate(include):
        if not any(re.search(p, n) for n in names):
            raise PatternError(
                f"{where}.include.{i}", f"pattern {p!r} matches no Linear module (names look like {_examples(names)})"
            )
    for i, p in enumerate(exclude):
        if p in (user_exclude or []) and not any(re.search(p, n) for n in modules):
            raise PatternError(
                f"{where}.exclude.{i}", f"pattern {p!r} matches no Linear module (names look like {_examples(names)})"
            )
    chosen = {
        n: m for n, m in modules.items() if any(re.search(p, n) for p in include) and not any(re.search(p, n) for p in exclude)
    }
    if not chosen:
        raise PatternError(where, f"include {include} and exclude {exclude} leave no Linear module to prune")
    return chosen


def _examples(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names[:3]) + (" ..." if len(names) > 3 else "") if names else "(the model has none)"


class ImportanceObserver:
    """Accumulates per-weight importance between two pruning updates, for the criterion given
    (:mod:`compressor.prune.criteria`): criteria that need gradients add ``gradient_score(w, ∂L/∂w)`` after
    every observed backward pass; the others score the weights at update time."""

    def __init__(self, weights: dict[str, torch.nn.Parameter], criterion: Criterion):
        self.weights, self.criterion = weights, criterion
        self.acc: dict[str, torch.Tensor] = {}
        self.observed = 0

    @property
    def kind(self) -> str:
        return self.criterion.name

    @property
    def needs_gradients(self) -> bool:
        return GRADIENTS in self.criterion.needs

    def observe(self) -> None:
        """Read the gradients now on the weights (call after backward, before the optimizer step)."""
        if not self.needs_gradients:
            return
        for name, w in self.weights.items():
            if w.grad is None:
                raise CompressorError(
                    f"{self.kind} importance needs gradients, but none reached {name} "
                    "(frozen weights, or a loss that does not depend on them?)"
                )
            with torch.no_grad():
                s = self.criterion.gradient_score(w, w.grad)
                if name in self.acc:
                    self.acc[name] += s
                else:
                    self.acc[name] = s.clone()
        self.observed += 1

    def scores(self) -> dict[str, torch.Tensor]:
        if not self.needs_gradients:
            return {n: self.criterion.score(w, None) for n, w in self.weights.items()}
        if not self.observed:
            raise CompressorError(f"{self.kind} importance needs gradients: no backward pass was observed before pruning")
        return dict(self.acc)

    def reset(self) -> None:
        """Start a new observation window after an update when the criterion says so (Taylor; movement keeps summing)."""
        if self.criterion.restarts:
            self.acc, self.observed = {}, 0

    def state_dict(self) -> dict:
        return {"acc": {k: v.cpu() for k, v in self.acc.items()}, "observed": self.observed}

    def load_state_dict(self, state: dict) -> None:
        device = next(iter(self.weights.values())).device
        self.acc = {k: v.to(device) for k, v in state.get("acc", {}).items()}
        self.observed = int(state.get("observed", 0))


def masks_for(scores: dict[str, torch.Tensor], sparsity: float, scope: str) -> dict[str, torch.Tensor]:
    """Boolean keep-masks zeroing the lowest-scoring ``sparsity`` fraction of weights.

    ``global``: one ranking over all weights (layers end up with different sparsities); ``layer``:
    each layer loses the same fraction. Exactly round(sparsity · n) weights are pruned (ties broken by
    position), so the target is met to within one weight.
    """
    if scope == "layer":
        return {n: keep_top(s.reshape(-1), sparsity).reshape(s.shape) for n, s in scores.items()}
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    keep = keep_top(flat, sparsity)
    out, i = {}, 0
    for n, s in scores.items():
        out[n] = keep[i : i + s.numel()].reshape(s.shape)
        i += s.numel()
    return out


@torch.no_grad()
def apply_masks(weights: dict[str, torch.nn.Parameter], masks: dict[str, torch.Tensor]) -> None:
    for name, mask in masks.items():
        w = weights[name]
        w.mul_(mask.to(w.device, w.dtype))


def sparsity_table(weights: dict[str, torch.Tensor]) -> dict:
    """Per-layer and total fraction of exact zeros: {"layers": [{name, params, zeros, sparsity}], "total": ...}."""
    rows, zeros, total = [], 0, 0
    for name, w in weights.items():
        z = int((w == 0).sum())
        rows.append({"name": name, "params": w.numel(), "zeros": z, "sparsity": z / max(w.numel(), 1)})
        zeros += z
        total += w.numel()
    return {"layers": rows, "params": total, "zeros": zeros, "sparsity": zeros / max(total, 1)}


def weights_of(modules: dict[str, torch.nn.Module]) -> dict[str, torch.nn.Parameter]:
    return {f"{n}.weight": m.weight for n, m in modules.items()}
