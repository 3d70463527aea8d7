"""Timers per device (measure/bench/timers.py): what they return, without timing anything real."""

from __future__ import annotations

import numpy as np
import pytest

import compressor.measure.bench.timers as T


def test_cpu_timer_reads_perf_counter_in_milliseconds(monkeypatch):
    ticks = iter([10.0, 10.25])
    monkeypatch.setattr(T.time, "perf_counter", lambda: next(ticks))
    with T.CpuTimer() as t:
        pass
    assert t.ms == pytest.approx(250.0)


def test_the_timer_follows_the_device():
    assert T.timer_for("cpu") is T.CpuTimer and T.timer_for("tensorrt") is T.CpuTimer  # ORT syncs its own outputs
    assert T.timer_for("cuda") is T.CudaTimer


def test_cuda_timer_records_synchronises_and_reads_the_events(monkeypatch):
    """On a GPU the time is the events' elapsed time after a synchronize (faked here: no GPU needed)."""
    torch = pytest.importorskip("torch")
    calls, made = [], []

    class Event:
        def __init__(self, enable_timing):
            assert enable_timing
            self.name = "end" if made else "start"
            made.append(self)

        def record(self):
            calls.append(f"record {self.name}")

        def elapsed_time(self, end):
            calls.append("elapsed")
            return 3.5

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: calls.append("synchronize"))
    with T.CudaTimer() as t:
        calls.append("work")
    assert t.ms == 3.5
    assert calls == ["record start", "work", "record end", "synchronize", "elapsed"]


def test_summarize_percentiles_mean_and_throughput():
    times = [float(x) for x in range(1, 101)]  # 1 .. 100 ms
    s = T.summarize(times, batch=8)
    assert s["p50_ms"] == pytest.approx(50.5) and s["p90_ms"] == pytest.approx(90.1) and s["p99_ms"] == pytest.approx(99.01)
    assert s["mean_ms"] == pytest.approx(50.5) and s["iterations"] == 100
    assert s["throughput_per_s"] == pytest.approx(8 / 0.0505)
    assert all(isinstance(v, (int, float)) and not isinstance(v, np.generic) for v in s.values())  # JSON-ready
