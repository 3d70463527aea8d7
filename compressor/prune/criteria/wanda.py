"""Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language Models").

Score |W_ij| · ‖X_j‖₂: a weight matters as much as it is large times how large its input channel is over
the calibration tokens. Weights are compared within each output row (the paper's per-output comparison
group); no weight is updated.
"""

from __future__ import annotations

import torch

from compressor.prune.criteria.base import INPUT_NORMS, Criterion, LayerStats


class Wanda(Criterion):
    needs = frozenset({INPUT_NORMS})
    rows = True

    def score(self, w: torch.Tensor, stats: LayerStats | None) -> torch.Tensor:
        return w.detach().abs().float() * stats.input_norms().to(w.device).reshape(1, -1)
