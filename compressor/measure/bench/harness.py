"""One timing harness for every runtime: interleaved rounds, per-device timers, one row per shape.

Every artifact compared is prepared first (loaded, inputs built, warmed up); then, shape by shape, each
round times every artifact in turn (the order rotates from round to round), ``per_round`` runs each.
A burst of load from another program then lands on all artifacts of the round it hits instead of on
one artifact, and the median of each round (``round_p50_ms``) lets the report see whether the rounds
agree (``compressor.core.stats.ratio_verdict``).

Timers: the host clock (``perf_counter``) for CPU work and for ONNX Runtime on any provider (``run()``
returns host outputs, so it blocks); synchronised ``torch.cuda.Event`` pairs for PyTorch on CUDA.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from compressor.measure.bench.timers import summarize, timer_for

ShapeFn = Callable[[dict], Callable[[], object]]  # synthetic batch -> a function that runs it once


@dataclass
class Timed:
    """One artifact as the harness sees it: how to run a batch, on which clock, with what vocabulary."""

    name: str
    for_shape: ShapeFn
    vocab: int
    clock: str = "cpu"  # "cuda": synchronised CUDA events (PyTorch on a GPU); else the host clock
    info: dict = field(default_factory=dict)  # extra fields copied into every row (runtime, device, threads…)


def split_iterations(iterations: int, rounds: int) -> int:
    """Timed runs per round so that ``rounds`` rounds give at least ``iterations`` runs in all."""
    return max(1, math.ceil(iterations / max(1, rounds)))


def time_interleaved(
    targets: list[Timed],
    batch_sizes: list[int],
    seq_lengths: list[int],
    warmup: int,
    iterations: int,
    rounds: int,
    batch_fn: Callable[[int, int, int], dict],
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[dict]]:
    """Rows per target name: one per (batch, seq), with all-sample percentiles and the per-round medians.

    A target whose preparation or run fails gets ``{"error": ...}`` rows instead, and the others go on."""
    rounds = max(1, min(rounds, iterations))  # at least one timed run per round
    per_round = split_iterations(iterations, rounds)
    rows: dict[str, list[dict]] = {t.name: [] for t in targets}
    for b in batch_sizes:
        for s in seq_lengths:
            live: dict[str, Callable] = {}
            for t in targets:
                try:
                    run = t.for_shape(batch_fn(b, s, t.vocab))
                    for _ in range(warmup):
                        run()
                    live[t.name] = run
                except Exception as e:  # one artifact failing must not lose the others' numbers
                    rows[t.name].append({"batch": b, "seq": s, "error": _one_line(e), **t.info})
            samples = _rounds(
                [t for t in targets if t.name in live],
                live,
                rounds,
                per_round,
                (lambda r, b=b, s=s: progress(f"batch {b} x seq {s}: round {r}/{rounds} timed")) if progress else None,
            )
            for t in targets:
                if t.name not in live:
                    continue
                per = samples[t.name]
                flat = [x for r in per for x in r]
                rows[t.name].append(
                    {
                        "batch": b,
                        "seq": s,
                        **t.info,
                        **summarize(flat, b),
                        "rounds": len(per),
                        "per_round": per_round,
                        "round_p50_ms": [round(float(np.median(r)), 4) for r in per],
                    }
                )
    return rows


def _rounds(
    targets: list[Timed], live: dict[str, Callable], rounds: int, per_round: int, done: Callable[[int], None] | None = None
) -> dict[str, list[list[float]]]:
    samples: dict[str, list[list[float]]] = {t.name: [] for t in targets}
    for r in range(max(1, rounds)):
        k = r % len(targets) if targets else 0
        for t in targets[k:] + targets[:k]:  # rotate who goes first: no artifact always runs right after another
            Timer = timer_for(t.clock)
            times = []
            for _ in range(per_round):
                with Timer() as tm:
                    live[t.name]()
                times.append(tm.ms)
            samples[t.name].append(times)
        if done:
            done(r + 1)
    return samples


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
