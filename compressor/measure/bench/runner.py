"""Benchmark helpers: synthetic inputs, in-process timing of one live model, machine fingerprint.

ONNX Runtime sessions have intra-op spinning disabled: several live sessions with spinning threads
steal the cores from each other (MiniLM INT8 measured 30 ms instead of 11 ms that way). Runs and
``compressor bench`` time saved artifacts through ``worker.time_artifacts`` (one thread policy for
every runtime, interleaved rounds); the in-process functions here serve scripts and bitsandbytes.
"""

from __future__ import annotations

import gzip
import logging
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("compressor")


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def synthetic_batch(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The encoder signature's synthetic inputs (compressor/arch/signature.py): ids from the ordinary vocabulary."""
    from compressor.arch.signature import encoder_signature

    return encoder_signature({"vocab_size": vocab}).synthetic_inputs(batch, seq, seed=seed, low=min(1000, vocab // 2))


def bench_torch(model, batch_sizes, seq_lengths, warmup=5, iterations=30, device="cpu", threads=None, rounds=1) -> list[dict]:
    """Time a live PyTorch model in this process (benchmark scripts, bitsandbytes on CUDA).

    On CPU this process's OpenMP waiting policy applies: runs that compare PyTorch with ONNX Runtime time
    saved artifacts with ``worker.time_artifacts`` instead, which sets the same policy for both."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # restored below: the setting is process-wide
    try:
        return _bench_torch(model, batch_sizes, seq_lengths, warmup, iterations, device, rounds)
    finally:
        torch.set_num_threads(previous)


def _bench_torch(model, batch_sizes, seq_lengths, warmup, iterations, device, rounds) -> list[dict]:
    import inspect

    import torch

    from compressor.measure.bench.harness import Timed, time_interleaved
    from compressor.measure.bnb import is_bnb

    movable = not is_bnb(model)  # bitsandbytes models live on their GPU and refuse .to()
    if movable:
        model = model.to(device)
    model.eval()
    params = inspect.signature(model.forward).parameters

    def for_shape(batch):
        inputs = {k: torch.as_tensor(v, device=device) for k, v in batch.items() if k in params}

        def run():
            with torch.inference_mode():
                model(**inputs)

        return run

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    info = {"runtime": "torch", "device": device, "threads": torch.get_num_threads()}
    target = Timed("torch", for_shape, model.config.vocab_size, "cuda" if device == "cuda" else "cpu", info)
    rows = time_interleaved([target], batch_sizes, seq_lengths, warmup, iterations, rounds, synthetic_batch)["torch"]
    if device == "cuda":
        for r in rows:
            r["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if movable:
        model.to("cpu")
    return rows


def bench_onnx(
    path: Path, vocab: int, batch_sizes, seq_lengths, warmup=5, iterations=30, device="cpu", threads=None, rounds=1
) -> list[dict]:
    """Time one ONNX file in this process (spinning disabled, as everywhere)."""
    from compressor.measure.bench.harness import Timed, time_interleaved
    from compressor.measure.feeds import onnx_feed
    from compressor.onnx.session import make_session

    session = make_session(path, threads=threads, device=device)

    def for_shape(batch):
        feed = onnx_feed(session, batch)
        return lambda: session.run(None, feed)

    info = {"runtime": "onnxruntime", "device": device, "threads": threads or os.cpu_count()}
    target = Timed("onnx", for_shape, vocab, "cpu", info)  # host clock: run() blocks on every provider
    return time_interleaved([target], batch_sizes, seq_lengths, warmup, iterations, rounds, synthetic_batch)["onnx"]


def busy_note() -> str | None:
    """A warning when other work occupies the cores (it inflates latency, multi-threaded PyTorch the most)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cores = os.cpu_count() or 1
    if load > 0.5 * cores:
        return (
            f"the machine was busy while timing (load average {load:.1f} on {cores} cores): latencies read high; "
            "measure on an idle machine, or compare only numbers taken together"
        )
    return None


def gzip_size(path: Path) -> int:
    """Bytes after gzip: what sparsity buys on disk / over the wire."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    total = 0
    for f in files:
        data = f.read_bytes()
        total += len(gzip.compress(data, compresslevel=6))
    return total


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def fingerprint() -> dict[str, Any]:
    """Where the numbers were measured."""
    import onnxruntime
    import torch
    import transformers

    from compressor import __version__

    cpu, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "cpu_flags": sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16"}),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "compressor": __version__,
        "gpu": None,
    }
    if cuda_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
