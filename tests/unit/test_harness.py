"""One timing harness for every runtime: interleaved rounds, per-device clocks (issue 17)."""

from __future__ import annotations

import pytest

from compressor.measure.bench.harness import Timed, split_iterations, time_interleaved
from compressor.measure.bench.runner import synthetic_batch
from compressor.measure.bench.worker import thread_policy, worker_env


def _target(name: str, calls: list, fail: bool = False) -> Timed:
    def for_shape(batch):
        if fail:
            raise RuntimeError("no such provider\nsecond line")
        return lambda: calls.append((name, batch["input_ids"].shape))

    return Timed(name, for_shape, 100, info={"runtime": "fake"})


def test_rounds_interleave_the_artifacts_and_rotate_the_order():
    calls: list = []
    rows = time_interleaved(
        [_target("a", calls), _target("b", calls), _target("c", calls)],
        [2],
        [8],
        warmup=1,
        iterations=6,
        rounds=3,
        batch_fn=synthetic_batch,
    )
    timed = [n for n, _ in calls[3:]]  # after one warm-up call each
    assert timed == ["a", "a", "b", "b", "c", "c", "b", "b", "c", "c", "a", "a", "c", "c", "a", "a", "b", "b"]
    for name in "abc":
        (row,) = rows[name]
        assert (row["batch"], row["seq"], row["rounds"], row["per_round"], row["iterations"]) == (2, 8, 3, 2, 6)
        assert len(row["round_p50_ms"]) == 3 and row["runtime"] == "fake"


def test_fewer_iterations_than_rounds_and_a_failing_target():
    calls: list = []
    rows = time_interleaved([_target("ok", calls), _target("bad", calls, fail=True)], [1], [4], 0, 3, 5, synthetic_batch)
    assert rows["ok"][0]["rounds"] == 3 and rows["ok"][0]["iterations"] == 3  # never more rounds than runs
    assert rows["bad"][0]["error"] == "RuntimeError: no such provider"
    assert split_iterations(30, 5) == 6 and split_iterations(31, 5) == 7 and split_iterations(1, 5) == 1


def test_the_timing_process_waits_passively_with_the_same_threads_for_every_runtime():
    env = worker_env(3)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["OMP_NUM_THREADS"] == "3"
    p = thread_policy(3)
    assert (
        "3 intra-op threads" in p["torch"]
        and "3 intra-op threads" in p["onnxruntime"]
        and "spinning disabled" in p["onnxruntime"]
    )


def test_cuda_targets_use_synchronised_events():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible")
    lin = torch.nn.Linear(64, 64).cuda()
    x = torch.randn(8, 64, device="cuda")
    t = Timed("gpu", lambda batch: lambda: lin(x), 100, clock="cuda")
    (row,) = time_interleaved([t], [8], [64], 1, 4, 2, synthetic_batch)["gpu"]
    assert row["rounds"] == 2 and row["p50_ms"] > 0
