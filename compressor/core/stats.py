"""The statistics behind every number the reports claim (pure: numpy and the standard library only).

- ``wilson``: a 95 % interval for a proportion (accuracy) from its count of successes.
- ``mcnemar``: an exact paired test for two classifiers scored on the same rows.
- ``bootstrap_ci`` / ``paired_bootstrap``: percentile intervals for statistics without a closed form
  (macro-F1, perplexity over windows) and for their paired differences.
- ``ratio_verdict``: whether a latency ratio measured in interleaved rounds may be claimed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
ALPHA = 0.05
BOOTSTRAP_SAMPLES = 1000
# a latency ratio is withheld when its per-round values differ by more than this (max / min - 1)
UNSTABLE_SPREAD = 0.25


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` out of ``n`` (95 % by default); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # exact ends where the closed form rounds: all successes reach 1, none reach 0
    return (0.0 if successes == 0 else lo), (1.0 if successes == n else hi)


@dataclass
class McNemar:
    b: int  # rows the reference got right and the other got wrong
    c: int  # rows the reference got wrong and the other got right
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA

    def as_dict(self) -> dict:
        return {**asdict(self), "test": "McNemar exact (two-sided)", "significant": self.significant}


def mcnemar(ref_correct: Sequence[bool], other_correct: Sequence[bool]) -> McNemar:
    """Exact two-sided McNemar test on paired per-row correctness (the same rows, in the same order).

    Only the discordant rows count: under "no difference" each of the b + c rows is equally likely to
    favour either model, so p = min(1, 2 · P[Binomial(b + c, 1/2) <= min(b, c)])."""
    a, o = np.asarray(ref_correct, dtype=bool), np.asarray(other_correct, dtype=bool)
    if a.shape != o.shape:
        raise ValueError(f"paired test needs the same rows: {a.shape} vs {o.shape}")
    b, c = int((a & ~o).sum()), int((~a & o).sum())
    n = b + c
    if n == 0:
        return McNemar(b, c, 1.0)
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return McNemar(b, c, min(1.0, 2 * tail / 2**n))


def bootstrap_ci(
    stat: Callable[[np.ndarray], float], n: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile interval of ``stat(indices)`` over ``samples`` resamples of range(n) with replacement."""
    if n <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.array([stat(rng.integers(0, n, size=n)) for _ in range(samples)], dtype=float)
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def macro_f1(y: np.ndarray, p: np.ndarray, classes: np.ndarray | None = None) -> float:
    """Macro-F1 over ``classes`` (default: those in y or p), as scikit-learn computes it (0 for an empty class)."""
    classes = np.union1d(y, p) if classes is None else classes
    f1s = []
    for k in classes:
        tp = np.sum((p == k) & (y == k))
        fp = np.sum((p == k) & (y != k))
        fn = np.sum((p != k) & (y == k))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def f1_interval(y: np.ndarray, p: np.ndarray, seed: int = 0) -> tuple[float, float]:
    y, p = np.asarray(y), np.asarray(p)
    classes = np.union1d(y, p)
    return bootstrap_ci(lambda i: macro_f1(y[i], p[i], classes), len(y), seed=seed)


def perplexity_interval(nll: np.ndarray, tokens: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Perplexity interval by resampling windows (blocks): exp(sum nll / sum tokens) per resample."""
    nll, tokens = np.asarray(nll, dtype=float), np.asarray(tokens, dtype=float)
    return bootstrap_ci(lambda i: math.exp(min(nll[i].sum() / max(tokens[i].sum(), 1.0), 700.0)), len(nll), seed=seed)


def paired_perplexity(ref: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray], seed: int = 0) -> dict:
    """Δ perplexity (other − ref) over the same windows: a paired bootstrap interval; significant when it excludes 0."""
    (n1, t1), (n2, t2) = [(np.asarray(a, dtype=float), np.asarray(b, dtype=float)) for a, b in (ref, other)]
    if n1.shape != n2.shape:
        raise ValueError("paired test needs the same windows")

    def ppl(nll, tok, i):
        return math.exp(min(nll[i].sum() / max(tok[i].sum(), 1.0), 700.0))

    lo, hi = bootstrap_ci(lambda i: ppl(n2, t2, i) - ppl(n1, t1, i), len(n1), seed=seed)
    return {"test": "paired bootstrap over windows (95 %)", "delta_ci": [lo, hi], "significant": bool(lo > 0 or hi < 0)}


# ---------------------------------------------------------------- latency ratios from interleaved rounds
@dataclass
class RatioVerdict:
    ratio: float | None  # reference time / other time (> 1: the other is faster)
    rounds: list[float]  # the same ratio per round (round medians, paired by round)
    claimed: bool
    reason: str  # "" when claimed; else why not

    @property
    def spread(self) -> float | None:
        return max(self.rounds) / min(self.rounds) - 1 if self.rounds and min(self.rounds) > 0 else None

    def cell(self) -> str:
        """The table cell: the ratio when claimed, else the reason it is withheld."""
        if self.claimed:
            return f"{self.ratio:.2f}×"
        return {"overlaps 1×": "~1×, not claimed", "one round": "1 round, not claimed", "not measured": ""}.get(
            self.reason, "unstable, not claimed"
        )

    def explain(self) -> str:
        """Why a ratio is withheld, with the per-round ratios."""
        if self.claimed or not self.rounds:
            return self.reason
        span = f"per-round ratios {min(self.rounds):.2f}–{max(self.rounds):.2f}×"
        return {
            "unstable": f"{span} differ by more than {UNSTABLE_SPREAD * 100:.0f} %",
            "overlaps 1×": f"{span} lie on both sides of 1×",
            "one round": "a single round: no spread to judge",
        }.get(self.reason, self.reason)

    def as_dict(self) -> dict:
        return {
            "ratio": self.ratio,
            "rounds": self.rounds,
            "spread": self.spread,
            "claimed": self.claimed,
            "reason": self.reason,
            "threshold": UNSTABLE_SPREAD,
        }


def ratio_verdict(ref_rounds: Sequence[float], other_rounds: Sequence[float], threshold: float = UNSTABLE_SPREAD) -> RatioVerdict:
    """The speed-up ref/other from per-round median latencies (round i of both taken together).

    Claimed only when every round agrees: the per-round ratios lie within ``threshold`` of each other
    (max/min − 1 <= threshold) and all lie on the same side of 1×. Otherwise the reason says why not:
    "unstable" (rounds disagree: the machine's load changed while timing), "overlaps 1×" (no consistent
    direction), "one round" (no spread to judge)."""
    pairs = [(a, b) for a, b in zip(ref_rounds, other_rounds) if a and b and a > 0 and b > 0]
    if not pairs:
        return RatioVerdict(None, [], False, "not measured")
    rounds = [a / b for a, b in pairs]
    ratio = float(np.median([a for a, _ in pairs]) / np.median([b for _, b in pairs]))
    if len(rounds) < 2:
        return RatioVerdict(ratio, rounds, False, "one round")
    if max(rounds) / min(rounds) - 1 > threshold:
        return RatioVerdict(ratio, rounds, False, "unstable")
    if min(rounds) <= 1.0 <= max(rounds):
        return RatioVerdict(ratio, rounds, False, "overlaps 1×")
    return RatioVerdict(ratio, rounds, True, "")


SPEEDUP_RULE = (
    f"A speed-up is claimed only when the artifacts were timed in interleaved rounds and every round agrees: "
    f"the per-round ratios differ by at most {UNSTABLE_SPREAD * 100:.0f} % and all lie on the same side of 1×; "
    'otherwise the cell reads "unstable, not claimed" (rounds disagree: the load changed while timing) '
    'or "~1×, not claimed" (no consistent difference).'
)
INTERVAL_NOTE = (
    "Intervals are 95 %: Wilson score intervals for accuracy, bootstrap percentile intervals "
    f"({BOOTSTRAP_SAMPLES} resamples of rows / windows) for macro-F1 and perplexity. They describe the "
    "uncertainty from the finite evaluation set: another sample of the same size could land anywhere in "
    "them. Δ against the reference is tested on the same rows (McNemar exact test for accuracy, paired "
    'bootstrap for perplexity); "n.s." means no significant change at the 5 % level.'
)
