"""Evaluate and benchmark every artifact of a run, and assemble metrics.json."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from compressor.context import RunContext
from compressor.rundir import atomic_write_json

log = logging.getLogger("compressor")


def artifact_files(ctx: RunContext) -> dict[str, Path]:
    """Name -> file for the ONNX artifacts to evaluate (the fused graph stands for fp32 ORT)."""
    out: dict[str, Path] = {}
    fp32 = ctx.artifacts.get("onnx-opt") or ctx.artifacts.get("onnx")
    if fp32 is not None:
        out["onnx"] = fp32
    if "int8" in ctx.artifacts:
        out["int8"] = ctx.artifacts["int8"]
    return out


def onnx_size(path: Path) -> int:
    size = path.stat().st_size
    data = path.with_name(path.name + ".data")
    return size + (data.stat().st_size if data.exists() else 0)


def evaluate_artifacts(ctx: RunContext) -> dict[str, dict]:
    from compressor.evaluate import evaluate_onnx, evaluate_torch

    cfg = ctx.recipe.evaluate
    splits = [s for s in cfg.splits if s in ctx.encoded]
    out: dict[str, dict] = {}
    if "torch" in cfg.artifacts:
        out["pytorch"] = {s: evaluate_torch(ctx.model.to(ctx.device), ctx.loader(s, cfg.batch_size), ctx.task, ctx.device)
                          for s in splits}
        ctx.model.to("cpu")
    for name, path in artifact_files(ctx).items():
        if name in cfg.artifacts:
            out[name] = {s: evaluate_onnx(path, ctx.loader(s, cfg.batch_size), ctx.task, ctx.recipe.bench.threads) for s in splits}
    for name, per_split in out.items():
        for s, m in per_split.items():
            log.info("eval %-8s %-4s %s", name, s, "  ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float)))
    return out


def run_benchmarks(ctx: RunContext) -> dict:
    from compressor.bench.runner import bench_onnx, bench_torch, cuda_available

    b = ctx.recipe.bench
    out: dict = {"rows": {}, "notes": []}
    if not b.enabled:
        out["notes"].append("benchmark disabled by the recipe")
        return out
    devices = []
    for d in b.devices:
        if d == "cuda" and not cuda_available():
            out["notes"].append("CUDA: skipped (no GPU visible on this machine)")
            continue
        devices.append(d)
    vocab = ctx.model.config.vocab_size
    for dev in devices:
        args = dict(batch_sizes=b.batch_sizes, seq_lengths=b.seq_lengths, warmup=b.warmup, iterations=b.iterations,
                    device=dev, threads=b.threads)
        log.info("benchmark on %s: batch %s × seq %s, %d iterations", dev, b.batch_sizes, b.seq_lengths, b.iterations)
        out["rows"].setdefault("pytorch", []).extend(bench_torch(ctx.model, **args))
        for name, path in artifact_files(ctx).items():
            if dev == "cuda" and name == "int8":
                out["notes"].append("CUDA: the dynamic INT8 graph has no CUDA kernels; measured on CPU only")
                continue
            try:
                out["rows"].setdefault(name, []).extend(bench_onnx(path, vocab, **args))
            except Exception as e:  # a missing CUDA EP must not lose the CPU numbers
                out["notes"].append(f"{name} on {dev}: not measured ({str(e).splitlines()[0][:200]})")
    return out


def collect_results(ctx: RunContext, evals: dict, bench: dict, started: float) -> dict:
    from compressor.bench.runner import fingerprint, gzip_size
    from compressor.models import count_parameters

    params = count_parameters(ctx.model)
    model_dir = ctx.run_dir / "model"
    weights = sorted(model_dir.glob("*.safetensors"))
    artifacts = {"pytorch": {"path": "model", "runtime": "torch", "params": params,
                             "size_bytes": sum(w.stat().st_size for w in weights),
                             "gzip_bytes": sum(gzip_size(w) for w in weights)}}
    for name, path in artifact_files(ctx).items():
        artifacts[name] = {"path": str(path.relative_to(ctx.run_dir)), "runtime": "onnxruntime", "params": params,
                           "size_bytes": onnx_size(path), "gzip_bytes": gzip_size(path),
                           "provenance": ctx.provenance.get("onnx-opt" if path.name == "model.opt.onnx" else name, {})}
    for name, rec in artifacts.items():
        rec["metrics"] = evals.get(name, {})
        rec["bench"] = bench.get("rows", {}).get(name, [])
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
        "stages": ctx.stage_results,
        "artifacts": artifacts,
        "bench_notes": bench.get("notes", []),
        "bench_settings": ctx.recipe.bench.model_dump(),
        "fingerprint": fingerprint(),
        "seconds": round(time.time() - started, 1),
    }
    atomic_write_json(ctx.run_dir / "metrics.json", results)
    return results
