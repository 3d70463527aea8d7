"""SparseGPT (Frantar & Alistarh 2023, "Massive Language Models Can Be Accurately Pruned in One-Shot").

Prunes a layer so that its outputs on the calibration inputs change as little as possible: columns are
visited left to right in blocks; the mask of a block is chosen by w² / [H⁻¹]²_jj (the OBS saliency, with
H = 2 X Xᵀ / tokens the Hessian of the layer-wise squared error); every removed weight's error is spread
over the not-yet-visited weights of its row through the Cholesky factor of H⁻¹. ``dampening`` adds
λ · mean(diag H) to the diagonal; inputs that were never active (zero diagonal) are pruned outright.
With H ∝ I nothing is spread and the mask is the magnitude mask of each block.
"""

from __future__ import annotations

import torch

from compressor.prune.criteria.base import HESSIAN, Criterion, LayerStats
from compressor.prune.patterns import PatternError


class SparseGPT(Criterion):
    needs = frozenset({HESSIAN})

    def score(self, w: torch.Tensor, stats: LayerStats | None) -> torch.Tensor:
        hinv = _inverse_cholesky(stats.hessian(), self.cfg.dampening, "this layer", "criterion.dampening")
        return (w.detach().double() ** 2 / torch.diag(hinv).reshape(1, -1) ** 2).float()

    def prune(self, w: torch.Tensor, stats: LayerStats | None, pattern, sparsity: float, where: str) -> torch.Tensor:
        W = w.detach().float().clone()  # float32 sweeps, as the reference implementation; H inverted in float64
        dead, hinv = self._factor(stats, where)
        W[:, dead.to(W.device)] = 0.0
        hinv = hinv.to(W.device)
        cols, block = W.shape[1], self.cfg.block_size
        for i1 in range(0, cols, block):
            i2 = min(i1 + block, cols)
            W1, Hinv1 = W[:, i1:i2].clone(), hinv[i1:i2, i1:i2]
            Err1 = torch.zeros_like(W1)
            mask1 = None if pattern.structured else pattern.keep(W1**2 / torch.diag(Hinv1).reshape(1, -1) ** 2, sparsity)
            if mask1 is None:
                mask1 = torch.zeros_like(W1, dtype=torch.bool)
            for i in range(i2 - i1):
                if pattern.structured and i % pattern.m == 0:
                    sal = W1[:, i : i + pattern.m] ** 2 / torch.diag(Hinv1)[i : i + pattern.m].reshape(1, -1) ** 2
                    mask1[:, i : i + pattern.m] = pattern.keep(sal, sparsity)
                w_col, d = W1[:, i], Hinv1[i, i]
                q = torch.where(mask1[:, i], w_col, torch.zeros_like(w_col))
                err = (w_col - q) / d
                W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
                W1[:, i] = q
                Err1[:, i] = err
            W[:, i1:i2] = W1
            W[:, i2:] -= Err1 @ hinv[i1:i2, i2:]
        return W.to(w.dtype)

    def _factor(self, stats: LayerStats, where: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(dead inputs, upper Cholesky factor of H⁻¹ in float32), computed once per statistics object: layers fed the
        same input (q / k / v, gate / up) share it."""
        cached = getattr(stats, "_sparsegpt", None)
        if cached is not None and cached[0] == self.cfg.dampening:
            return cached[1], cached[2]
        H = stats.hessian().clone()
        dead = torch.diag(H) == 0
        H[dead, dead] = 1.0
        hinv = _inverse_cholesky(H, self.cfg.dampening, where, "criterion.dampening").float()
        stats._sparsegpt = (self.cfg.dampening, dead, hinv)
        return dead, hinv


def _inverse_cholesky(H: torch.Tensor, dampening: float, where: str, field: str) -> torch.Tensor:
    """The upper Cholesky factor of (H + λ · mean(diag H) · I)⁻¹; a singular H is refused, naming the dampening."""
    H = H.clone()
    H.diagonal().add_(dampening * torch.mean(torch.diag(H)))
    L, info = torch.linalg.cholesky_ex(H)
    if int(info) == 0:
        inv = torch.cholesky_inverse(L)
        U, info = torch.linalg.cholesky_ex(inv, upper=True)
    if int(info) != 0 or not torch.isfinite(U).all():
        raise PatternError(
            field,
            f"the input Hessian of {where} is singular (not positive definite) with dampening "
            f"{dampening:g}: raise {field} (e.g. 0.01) or calibrate on more tokens",
        )
    return U
