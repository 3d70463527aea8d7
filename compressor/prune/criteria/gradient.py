"""The criteria of encoder pruning: magnitude (needs nothing), Taylor and movement (need gradients)."""

from __future__ import annotations

import torch

from compressor.prune.criteria.base import GRADIENTS, Criterion, LayerStats


class Magnitude(Criterion):
    """|w| (Han et al. 2015): the baseline every other criterion is measured against."""

    def score(self, w: torch.Tensor, stats: LayerStats | None) -> torch.Tensor:
        return w.detach().abs().float()


class Taylor(Criterion):
    """Σ |w · ∂L/∂w| over the observed backward passes (first-order Taylor, Molchanov et al. 2019)."""

    needs = frozenset({GRADIENTS})
    restarts = True  # scores describe the recent weights: a new window after each update

    def gradient_score(self, w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (w * grad).abs().float()


class Movement(Criterion):
    """Σ −w · ∂L/∂w (Sanh et al. 2020): weights moving away from zero score high; sums over all of training."""

    needs = frozenset({GRADIENTS})

    def gradient_score(self, w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        return (-(w * grad)).float()
