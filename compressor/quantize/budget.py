"""The accuracy budget of static INT8: score against fp32, rank nodes by sensitivity, keep the worst in fp32.

Sensitivity is measured "quantize one node alone": the relative squared error that node's quantization
adds to the logits on a few dev batches (one re-quantization and one short inference per candidate:
about a second each for a MiniLM-sized encoder, from the calibration cache). Trial t of the fallback
keeps the 2^(t-1) most sensitive nodes in fp32 (1, 2, 4, ... so a budget is met in few trials).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from compressor.recipe.schema import StaticQuant

log = logging.getLogger("compressor")
SENSITIVITY_SAMPLES = 128  # dev samples the sensitivity of each node is measured on


def drop_of(fp32: float, value: float, higher_is_better: bool, points: bool) -> tuple[float, float]:
    """(absolute drop in reporting units: points for accuracy, metric units otherwise; relative drop)."""
    raw = (fp32 - value) if higher_is_better else (value - fp32)
    rel = raw / abs(fp32) if fp32 else (0.0 if raw <= 0 else float("inf"))
    return (raw * 100 if points else raw), rel


def within(cfg: StaticQuant, drop: float, rel: float) -> bool:
    return (cfg.max_drop is None or drop <= cfg.max_drop + 1e-9) and (
        cfg.max_drop_relative is None or rel <= cfg.max_drop_relative + 1e-12
    )


def fit_budget(cfg: StaticQuant, fp32: float, higher: bool, points: bool, quantize, score, ranking) -> dict:
    """The budget loop. ``quantize(keep_fp32: list) -> Path`` writes a trial, ``score(path) -> float``,
    ``ranking() -> [(node, error), ...]`` most sensitive first (called only when the first trial misses).

    Returns {"path", "kept_fp32", "passed", "trials", "sensitivity"}.
    """
    trials = []

    def trial(keep: list[str]) -> dict:
        path = quantize(keep)
        value = score(path)
        drop, rel = drop_of(fp32, value, higher, points)
        rec = {
            "kept_fp32": list(keep),
            "value": value,
            "drop": drop,
            "drop_relative": rel,
            "passed": within(cfg, drop, rel),
            "path": path,
        }
        trials.append(rec)
        log.info(
            "budget trial %d: %d node(s) in fp32 -> %.4f (drop %.4g%s)",
            len(trials) - 1,
            len(keep),
            value,
            drop,
            ", within budget" if rec["passed"] else "",
        )
        return rec

    best = trial([])
    sens: list = []
    if not best["passed"] and cfg.fallback_trials:
        sens = ranking()
        for t in range(cfg.fallback_trials):
            k = min(2**t, len(sens) - 1)  # never all of them: that would be the fp32 model
            if k <= len(trials[-1]["kept_fp32"]):
                break
            rec = trial([n for n, _ in sens[:k]])
            if rec["passed"]:
                best = rec
                break
            if (rec["value"] > best["value"]) if higher else (rec["value"] < best["value"]):
                best = rec
    return {
        "path": best["path"],
        "kept_fp32": best["kept_fp32"],
        "passed": best["passed"],
        "trials": [{k: v for k, v in r.items() if k != "path"} for r in trials],
        "sensitivity": [{"node": n, "error": e} for n, e in sens[:20]],
    }


def _logits_error(path: Path, batches: list[dict], ref: list[np.ndarray], threads: int | None) -> float:
    from compressor.measure.evaluate import onnx_logits
    from compressor.onnx.session import make_session

    session = make_session(path, threads=threads)
    num = den = 0.0
    for batch, r in zip(batches, ref):
        got = onnx_logits(session, batch)
        num += float(np.square(got - r).sum())
        den += float(np.square(r).sum())
    del session
    return num / max(den, 1e-12)


def sensitivity(plan, cfg: StaticQuant, cache: Path, work: Path, batches: list[dict], threads: int | None):
    """Each candidate quantized alone: relative squared error it adds to the logits. Most sensitive first."""
    from compressor.measure.evaluate import onnx_logits
    from compressor.onnx.session import make_session
    from compressor.quantize.static_graph import quantize_plan

    session = make_session(plan.fp32, threads=threads)
    ref = [onnx_logits(session, b) for b in batches]
    del session
    out = []
    for node in plan.static + plan.dynamic:
        path = quantize_plan(plan, cfg, cache, work / "alone.onnx", only=node)
        out.append((node, _logits_error(path, batches, ref, threads)))
    log.info(
        "sensitivity of %d nodes measured (most sensitive: %s)",
        len(out),
        ", ".join(n for n, _ in sorted(out, key=lambda x: -x[1])[:3]),
    )
    return sorted(out, key=lambda x: -x[1])
