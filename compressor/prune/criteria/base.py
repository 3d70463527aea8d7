"""What every pruning criterion is: the statistics it needs, a score per weight, and how a layer is pruned with it.

Observe, then apply (as NNCF does): a criterion declares in ``needs`` what must be observed before it can
score — gradients (accumulated over backward passes), the norms of each Linear's input channels, or the
Hessian of the layer-wise reconstruction loss (``X Xᵀ`` of the inputs). One observation pass collects what
the chosen criterion needs (:mod:`compressor.prune.observe` for gradients, :mod:`compressor.prune.sequential`
for input statistics, layer by layer); :meth:`Criterion.prune` is the separate transformation.

Weights are handled as ``(out_features, in_features)`` matrices (GPT-2's Conv1D is transposed on the way in
and out), so "rows" are output neurons and N:M groups run along the input dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GRADIENTS = "gradients"
INPUT_NORMS = "input_norms"
HESSIAN = "hessian"


@dataclass
class LayerStats:
    """Statistics of one Linear layer's input, accumulated over calibration tokens.

    ``sq_sum``: Σ x_j² per input channel j (its square root is ‖X_j‖₂, Wanda's activation norm);
    ``xtx``: Σ x xᵀ (in × in), the Hessian of ‖WX − ŴX‖² up to the factor 2 / tokens.
    """

    tokens: int = 0
    sq_sum: torch.Tensor | None = None
    xtx: torch.Tensor | None = None

    def add(self, x: torch.Tensor, needs: frozenset) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()
        self.tokens += x.shape[0]
        if INPUT_NORMS in needs:
            s = (x * x).sum(0).double()
            self.sq_sum = s if self.sq_sum is None else self.sq_sum + s
        if HESSIAN in needs:
            h = (x.t() @ x).double()  # float32 products, float64 sums
            self.xtx = h if self.xtx is None else self.xtx + h

    def input_norms(self) -> torch.Tensor:
        return self.sq_sum.sqrt().float()

    def hessian(self) -> torch.Tensor:
        """2 X Xᵀ / tokens (float64), SparseGPT's H."""
        return 2.0 * self.xtx / max(self.tokens, 1)


class Criterion:
    """A pruning criterion built from its recipe config (``CRITERIA.get(cfg)(cfg)``)."""

    needs: frozenset = frozenset()
    rows: bool = False  # unstructured masks compare weights within each output row (Wanda), not the whole layer
    restarts: bool = False  # gradient scores start afresh after every mask update (Taylor)

    def __init__(self, cfg):
        self.cfg = cfg

    @property
    def name(self) -> str:
        return self.cfg.type

    def gradient_score(self, w: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """One backward pass's contribution to the score (criteria that need gradients)."""
        raise NotImplementedError

    def score(self, w: torch.Tensor, stats: LayerStats | None) -> torch.Tensor:
        """Importance of every weight of ``w`` (out × in); higher is kept."""
        raise NotImplementedError

    def prune(self, w: torch.Tensor, stats: LayerStats | None, pattern, sparsity: float, where: str) -> torch.Tensor:
        """The pruned (out × in) matrix; the default zeroes the lowest scores, leaving the other weights as they are."""
        mask = pattern.keep(self.score(w, stats), sparsity, rows=self.rows)
        return w * mask.to(w.dtype)
