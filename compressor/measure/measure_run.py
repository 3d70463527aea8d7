"""Everything measured after the stages, in order: the baseline's ONNX export, evaluation, benchmark, generation timing
(causal LMs), the bitsandbytes variants, then metrics.json. The pipeline calls ``measure_run`` once."""

from __future__ import annotations

import logging

from compressor.measure.baseline import export_baseline
from compressor.measure.bnb_variants import bitsandbytes_variants
from compressor.measure.results import collect_results
from compressor.measure.run_bench import run_benchmarks
from compressor.measure.run_eval import evaluate_artifacts
from compressor.measure.run_generation import run_generation
from compressor.pipeline.context import RunContext

log = logging.getLogger("compressor")


def measure_run(ctx: RunContext, started: float) -> dict:
    """Measure every artifact of the run and write metrics.json; returns what was written."""
    if ctx.baseline is not None and "onnx" in ctx.artifacts and "baseline" in ctx.recipe.evaluate.artifacts:
        log.info("exporting the baseline to ONNX (to compare ONNX Runtime like with like) ...")
    notes = export_baseline(ctx)
    evals = evaluate_artifacts(ctx)
    bench = run_benchmarks(ctx)
    generation = run_generation(ctx)
    bench["notes"] = notes + bench.get("notes", []) + generation.get("notes", [])
    bench["generation"] = generation
    extra = bitsandbytes_variants(ctx, evals, bench)
    return collect_results(ctx, evals, bench, started, extra)
