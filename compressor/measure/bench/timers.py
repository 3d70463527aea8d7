"""Timers per device: perf_counter on CPU, synchronised CUDA events on GPU."""

from __future__ import annotations

import time

import numpy as np


class CpuTimer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.ms = (time.perf_counter() - self.t0) * 1000.0


class CudaTimer:
    def __enter__(self):
        import torch

        self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        self.start.record()
        return self

    def __exit__(self, *exc):
        import torch

        self.end.record()
        torch.cuda.synchronize()
        self.ms = self.start.elapsed_time(self.end)


def timer_for(device: str):
    return CudaTimer if device == "cuda" else CpuTimer


def summarize(times_ms: list[float], batch: int) -> dict:
    a = np.asarray(times_ms)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "throughput_per_s": float(batch / (a.mean() / 1000.0)),
        "iterations": int(len(a)),
    }
