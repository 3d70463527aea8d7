"""Sparsity schedules: named pure functions of the optimizer step.

Each maps ``(step, start, end, initial, final)`` to the sparsity the model should have after that
step. Before ``start`` nothing is pruned; from ``end`` on the final sparsity holds. ``cubic`` is
Zhu & Gupta (2017): s_t = s_f + (s_i − s_f)(1 − (t − t0)/(t_end − t0))³, fast at first, gentle at the end.
"""

from __future__ import annotations

from collections.abc import Callable

from compressor.recipe.schema import ScheduleConfig

Schedule = Callable[[int, int, int, float, float], float]


def one_shot(step: int, start: int, end: int, initial: float, final: float) -> float:
    return final if step >= start else 0.0


def linear(step: int, start: int, end: int, initial: float, final: float) -> float:
    if step < start:
        return 0.0
    if step >= end:
        return final
    return initial + (final - initial) * (step - start) / (end - start)


def cubic(step: int, start: int, end: int, initial: float, final: float) -> float:
    if step < start:
        return 0.0
    if step >= end:
        return final
    return final + (initial - final) * (1.0 - (step - start) / (end - start)) ** 3


SCHEDULES: dict[str, Schedule] = {"one_shot": one_shot, "linear": linear, "cubic": cubic}


def resolve_end(cfg: ScheduleConfig, total_steps: int) -> int:
    """The step the final sparsity is reached: ``cfg.end``, else 70 % of training (and after ``start``)."""
    if cfg.end is not None:
        return cfg.end
    return max(cfg.start + 1, round(0.7 * total_steps))


def is_update_step(cfg: ScheduleConfig, step: int, end: int) -> bool:
    """Masks are recomputed every ``every`` steps from ``start`` to ``end``, and at ``end`` itself."""
    if cfg.type == "one_shot":
        return step == cfg.start
    return cfg.start <= step <= end and ((step - cfg.start) % cfg.every == 0 or step == end)


def sparsity_at(cfg: ScheduleConfig, final: float, step: int, end: int) -> float:
    return SCHEDULES[cfg.type](step, cfg.start, end, cfg.initial, final)
