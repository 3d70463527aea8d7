"""Time every artifact of a run on each device: one process per device, one thread policy, interleaved rounds."""

from __future__ import annotations

import logging
import time

from compressor.measure.artifacts import BASELINE_DIR, artifact_files
from compressor.pipeline.context import RunContext

log = logging.getLogger("compressor")


def ort_providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


def _timing_targets(ctx: RunContext, dev: str) -> tuple[list[dict], list[str]]:
    """The saved artifacts to time on ``dev`` (PyTorch folders and ONNX files), and notes on those left out."""
    base = {"task": ctx.task, "device": dev, "num_labels": len(ctx.label_names) if ctx.label_names else None}
    targets, notes = [], []
    with_baseline = ctx.baseline is not None and "baseline" in ctx.recipe.evaluate.artifacts
    baseline_dir = ctx.run_dir / "checkpoints" / BASELINE_DIR
    if dev != "tensorrt":  # TensorRT runs the ONNX graphs only
        if with_baseline and (baseline_dir / "config.json").is_file():
            targets.append(
                {**base, "name": "baseline", "kind": "torch", "path": str(baseline_dir), "vocab": ctx.baseline.config.vocab_size}
            )
        targets.append(
            {**base, "name": "pytorch", "kind": "torch", "path": str(ctx.run_dir / "model"), "vocab": ctx.model.config.vocab_size}
        )
    for name, path in artifact_files(ctx).items():
        if dev != "cpu" and name in ("int8", "int4"):
            notes.append(f"{dev}: the {name.upper()} graph targets ONNX Runtime's CPU kernels; measured on CPU only")
            continue
        targets.append({**base, "name": name, "kind": "onnx", "path": str(path), "vocab": ctx.model.config.vocab_size})
    if with_baseline and "baseline-onnx" in ctx.artifacts:
        targets.append(
            {
                **base,
                "name": "baseline-onnx",
                "kind": "onnx",
                "path": str(ctx.artifacts["baseline-onnx"]),
                "vocab": ctx.baseline.config.vocab_size,
            }
        )
    return targets, notes


def run_benchmarks(ctx: RunContext) -> dict:
    """Time every artifact of the run on each device, all in one process per device with one thread policy,
    in interleaved rounds (``bench.worker``)."""
    from compressor.core.errors import CompressorError
    from compressor.measure.bench.runner import busy_note, cuda_available
    from compressor.measure.bench.worker import thread_policy, time_artifacts

    b = ctx.recipe.bench
    out: dict = {"rows": {}, "notes": [], "policy": thread_policy(b.threads)}
    if not b.enabled:
        out["notes"].append("benchmark disabled by the recipe")
        return out
    if busy := busy_note():
        out["notes"].append(busy)
    devices = []
    for d in b.devices:
        if d in ("cuda", "tensorrt") and not cuda_available():
            out["notes"].append(f"{'CUDA' if d == 'cuda' else 'TensorRT'}: skipped (no GPU visible on this machine)")
            continue
        if d == "tensorrt" and "TensorrtExecutionProvider" not in ort_providers():
            out["notes"].append("TensorRT: skipped (onnxruntime has no TensorrtExecutionProvider here)")
            continue
        devices.append(d)
    timed = BenchProgress(len(devices), len(b.batch_sizes) * len(b.seq_lengths) * (b.warmup + b.iterations))
    for dev in devices:
        targets, notes = _timing_targets(ctx, dev)
        out["notes"] += notes
        try:
            got = timed(
                f"{len(targets)} artifacts in {min(b.rounds, b.iterations)} interleaved rounds",
                dev,
                time_artifacts,
                targets,
                b.batch_sizes,
                b.seq_lengths,
                b.warmup,
                b.iterations,
                b.rounds,
                b.threads,
            )
        except CompressorError as e:
            out["notes"].append(f"{dev}: not measured ({e})")
            continue
        for name, rows in got.items():
            for r in rows:
                if "error" in r:  # a missing CUDA EP must not lose the CPU numbers
                    out["notes"].append(f"{name} on {dev}: not measured ({r['error']})")
                    break
            out["rows"].setdefault(name, []).extend(r for r in rows if "error" not in r)
    return out


class BenchProgress:
    """A line before and after each device's benchmark (all artifacts, interleaved): which one of how many, runs per
    artifact, time left."""

    def __init__(self, total: int, runs: int):
        self.total, self.runs, self.done, self.seconds = total, runs, 0, 0.0

    def skip(self) -> None:
        self.total -= 1

    def __call__(self, name: str, where: str, fn, *args, **kwargs):
        log.info(
            "benchmark %d/%d: %s on %s, %d timed and warm-up runs each ...", self.done + 1, self.total, name, where, self.runs
        )
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            took = time.perf_counter() - t0
            self.done += 1
            self.seconds += took
            left = self.seconds / self.done * (self.total - self.done)
            log.info(
                "benchmark %d/%d: %s on %s done in %.1fs%s",
                self.done,
                self.total,
                name,
                where,
                took,
                f", ~{left:.0f}s left" if self.done < self.total else "",
            )
