"""Sparsity patterns: which weights a score ranking may remove.

``unstructured``: any weights — the lowest scores of the whole layer, or of each output row (Wanda compares
within rows). ``N:M`` (2:4, 4:8): in every group of M consecutive weights along the input dimension of a
row, exactly N are kept — the layout sparse tensor cores accelerate on GPUs; on CPU it is "smaller when
compressed, not faster". Exactly ``round(sparsity · n)`` weights are removed per comparison group (ties
broken by position), so a layer's sparsity is the target to within one weight per group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from compressor.core.errors import CompressorError

NM_RE = re.compile(r"^(\d+):(\d+)$")


class PatternError(CompressorError):
    """A pattern that cannot be applied to a layer (its width is no multiple of M); ``field`` is the recipe path."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class Pattern:
    n: int = 0  # weights kept per group (0: unstructured)
    m: int = 0  # group size along the input dimension

    @classmethod
    def parse(cls, spec: str) -> Pattern:
        if spec == "unstructured":
            return cls()
        match = NM_RE.match(spec or "")
        if not match:
            raise ValueError(f"pattern {spec!r}: write 'unstructured' or N:M such as '2:4'")
        n, m = int(match[1]), int(match[2])
        if not 0 < n < m <= 64:
            raise ValueError(f"pattern {spec!r}: N:M needs 0 < N < M <= 64 (N weights kept in every M)")
        return cls(n, m)

    @property
    def structured(self) -> bool:
        return self.m > 0

    @property
    def sparsity(self) -> float:
        """The sparsity an N:M pattern implies (2:4 -> 0.5)."""
        return 1.0 - self.n / self.m if self.m else 0.0

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.m else "unstructured"

    def check(self, name: str, in_features: int, field: str) -> None:
        if self.m and in_features % self.m:
            raise PatternError(
                field,
                f"{self} needs every pruned layer's input width to be a multiple of {self.m}, "
                f"but {name} has {in_features} inputs",
            )

    def keep(self, score: torch.Tensor, sparsity: float, rows: bool = False) -> torch.Tensor:
        """Boolean keep-mask of the (out × in) ``score``: N:M groups, or the top scores per layer / per row."""
        if self.m:
            out, inp = score.shape
            groups = score.reshape(out, inp // self.m, self.m)
            idx = torch.topk(groups, self.n, dim=-1).indices
            mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, idx, True)
            return mask.reshape(out, inp)
        if rows:
            k = int(round(sparsity * score.shape[1]))
            mask = torch.ones_like(score, dtype=torch.bool)
            if k:
                mask.scatter_(1, torch.topk(score, k, dim=1, largest=False).indices, False)
            return mask
        return keep_top(score.reshape(-1), sparsity).reshape(score.shape)


def keep_top(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep all but the ``round(sparsity · n)`` lowest of a flat score vector."""
    n = scores.numel()
    k = int(round(sparsity * n))  # pruned
    keep = torch.ones(n, dtype=torch.bool, device=scores.device)
    if k > 0:
        keep[torch.topk(scores, k, largest=False, sorted=False).indices] = False
    return keep


def nm_violations(w: torch.Tensor, n: int, m: int) -> int:
    """Groups of M along the input dimension of an (out × in) matrix holding more than N non-zeros."""
    groups = (w != 0).reshape(w.shape[0], -1, m).sum(-1)
    return int((groups > n).sum())
