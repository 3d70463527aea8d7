"""Assemble metrics.json from the evaluations, the benchmark and the run's records, and write it (typed, versioned:
``core/records.py``)."""

from __future__ import annotations

import time
from pathlib import Path

from compressor.core.records import write_metrics
from compressor.measure.artifacts import BASELINE_DIR, artifact_files, nonzero_parameters, onnx_size
from compressor.pipeline.context import RunContext


def collect_results(ctx: RunContext, evals: dict, bench: dict, started: float, extra: dict | None = None) -> dict:
    from compressor.measure.bench.runner import fingerprint, gzip_size
    from compressor.models import count_parameters

    def torch_record(folder: Path, model) -> dict:
        weights = sorted(folder.glob("*.safetensors"))
        return {
            "path": str(folder.relative_to(ctx.run_dir)),
            "runtime": "torch",
            "params": count_parameters(model),
            "nonzero_params": nonzero_parameters(model),
            "size_bytes": sum(w.stat().st_size for w in weights),
            "gzip_bytes": sum(gzip_size(w) for w in weights),
        }

    def onnx_record(path: Path, params: int, provenance: dict) -> dict:
        return {
            "path": str(path.relative_to(ctx.run_dir)),
            "runtime": "onnxruntime",
            "params": params,
            "size_bytes": onnx_size(path),
            "gzip_bytes": gzip_size(path),
            "provenance": provenance,
        }

    params = count_parameters(ctx.model)
    artifacts: dict[str, dict] = {}
    if "baseline" in evals:  # the uncompressed reference first, as the report's Δ and speed-up refer to it
        artifacts["baseline"] = {
            **torch_record(ctx.run_dir / "checkpoints" / BASELINE_DIR, ctx.baseline),
            "source": ctx.baseline_source,
        }
        if "baseline-onnx" in evals:
            artifacts["baseline-onnx"] = onnx_record(
                ctx.artifacts["baseline-onnx"], artifacts["baseline"]["params"], ctx.provenance.get("baseline-onnx", {})
            )
    artifacts["pytorch"] = torch_record(ctx.run_dir / "model", ctx.model)
    for name, path in artifact_files(ctx).items():
        artifacts[name] = onnx_record(path, params, ctx.provenance.get("onnx-opt" if path.name == "model.opt.onnx" else name, {}))
    artifacts.update(extra or {})
    for name, rec in artifacts.items():
        rec["metrics"] = evals.get(name, {})
        rec["bench"] = bench.get("rows", {}).get(name, [])
        if gen_rows := bench.get("generation", {}).get("rows", {}).get(name):
            rec["generation"] = gen_rows
    metric, higher = ctx.primary_metric
    results = {
        "name": ctx.recipe.name,
        "task": ctx.task,
        "model": ctx.recipe.model.path,
        "seed": ctx.seed,
        "device": ctx.device,
        "primary_metric": {"name": metric, "higher_is_better": higher},
        "labels": ctx.label_names,
        "data": {k: len(v) for k, v in ctx.encoded.items()},
        "data_counts": ctx.dataset.counts if ctx.dataset is not None else {},
        "duplicates": ctx.dataset.duplicates if ctx.dataset is not None else {},
        "stages": ctx.stage_results,
        "artifacts": artifacts,
        "bench_notes": bench.get("notes", []),
        "bench_settings": ctx.recipe.bench.model_dump(),
        "generation_settings": bench.get("generation", {}).get("settings"),
        "timing_policy": bench.get("policy"),
        "fingerprint": fingerprint(),
        "seconds": round(time.time() - started, 1),
    }
    return write_metrics(ctx.run_dir / "metrics.json", results)
