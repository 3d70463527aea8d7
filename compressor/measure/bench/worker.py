"""Time saved artifacts (model folders, ONNX files) in a fresh process with one thread policy for all.

Why a separate process: PyTorch's OpenMP threads spin-wait by default and read that setting once, when
the library loads. On a machine where other programs use the cores, spinning threads fight them and
PyTorch's latency collapses (measured here: 584 ms against 40 ms) while our ONNX Runtime sessions,
which have spinning disabled, do not: the comparison would be unfair to PyTorch. The worker starts with
``OMP_WAIT_POLICY=PASSIVE`` and the same intra-op thread count for PyTorch and ONNX Runtime, loads every
artifact, and times them all in interleaved rounds (``harness.time_interleaved``).

    python -m compressor.measure.bench.worker SPEC.json   # written by ``time_artifacts``; results to spec["out"]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from compressor.core.errors import CompressorError


def default_threads() -> int:
    """The cores this process may use: the thread count every runtime gets unless the recipe says otherwise."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def thread_policy(threads: int | None) -> dict:
    """What the report states about how the runtimes were set up for timing."""
    n = threads or default_threads()
    return {
        "threads": n,
        "torch": f"{n} intra-op threads, OpenMP passive waiting (OMP_WAIT_POLICY=PASSIVE), in a separate timing process",
        "onnxruntime": f"{n} intra-op threads, 1 inter-op thread, thread spinning disabled",
        "order": "interleaved rounds: every artifact once per round, the order rotating",
    }


def worker_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "OMP_WAIT_POLICY": "PASSIVE",
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    root = str(Path(__file__).resolve().parents[3])  # this compressor, even when another copy is installed
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def time_artifacts(
    targets: list[dict],
    batch_sizes: list[int],
    seq_lengths: list[int],
    warmup: int,
    iterations: int,
    rounds: int,
    threads: int | None = None,
    timeout: float | None = None,
) -> dict[str, list[dict]]:
    """Rows per target name. ``targets``: dicts with name, kind ("torch" | "onnx"), path, task, device, vocab and,
    for classifiers, num_labels. A target that fails has rows with an ``error`` field."""
    n = threads or default_threads()
    with tempfile.TemporaryDirectory(prefix="compressor-bench-") as tmp:
        spec = {
            "targets": targets,
            "batch_sizes": batch_sizes,
            "seq_lengths": seq_lengths,
            "warmup": warmup,
            "iterations": iterations,
            "rounds": rounds,
            "threads": n,
            "out": str(Path(tmp) / "rows.json"),
        }
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(spec, default=str))
        returncode, tail = run_worker(spec_file, n, timeout)
        out = Path(spec["out"])
        if returncode != 0 or not out.is_file():
            raise CompressorError(f"timing process failed (exit {returncode}): {tail[-1] if tail else 'no output'}")
        return json.loads(out.read_text())


PROGRESS = "compressor-bench-progress: "


def run_worker(
    spec_file: Path, threads: int, timeout: float | None, module: str = "compressor.measure.bench.worker"
) -> tuple[int, list[str]]:
    """A timing process (``python -m module spec_file`` with the thread policy of ``worker_env``), its progress lines
    logged as they come (rounds done, time left); its other output kept for the error message."""
    import logging
    import time

    log = logging.getLogger("compressor")
    t0, tail = time.perf_counter(), []
    proc = subprocess.Popen(
        [sys.executable, "-m", module, str(spec_file)],
        env=worker_env(threads),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:
            if line.startswith(PROGRESS):
                log.info("timing: %s (%.0fs so far)", line[len(PROGRESS) :].strip(), time.perf_counter() - t0)
            elif line.strip():
                tail = (tail + [line.rstrip()])[-20:]
            if timeout is not None and time.perf_counter() - t0 > timeout:
                proc.kill()
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, tail


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _torch_target(t: dict, threads: int):
    import inspect

    import torch

    from compressor.measure.bench.harness import Timed
    from compressor.models import load_model

    model = load_model(t["path"], t["task"], t.get("num_labels"))
    model = model.to(t["device"]).eval()
    params = inspect.signature(model.forward).parameters

    def for_shape(batch):
        inputs = {k: torch.as_tensor(v, device=t["device"]) for k, v in batch.items() if k in params}

        def run():
            with torch.inference_mode():
                model(**inputs)

        return run

    info = {"runtime": "torch", "device": t["device"], "threads": threads}
    return Timed(t["name"], for_shape, t["vocab"], "cuda" if t["device"] == "cuda" else "cpu", info), model


def _onnx_target(t: dict, threads: int):
    from compressor.measure.bench.harness import Timed
    from compressor.measure.feeds import onnx_feed
    from compressor.onnx.session import make_session

    session = make_session(t["path"], threads=threads, device=t["device"])

    def for_shape(batch):
        feed = onnx_feed(session, batch)
        return lambda: session.run(None, feed)

    info = {"runtime": "onnxruntime", "device": t["device"], "threads": threads}
    return Timed(t["name"], for_shape, t["vocab"], "cpu", info), session


def main(spec_path: str) -> int:
    import onnxruntime  # noqa: F401  (loaded before the first artifact, so load_rss_mb counts the artifact only)
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification  # noqa: F401

    from compressor.measure.bench.harness import time_interleaved
    from compressor.measure.bench.runner import synthetic_batch

    transformers.utils.logging.set_verbosity_error()
    spec = json.loads(Path(spec_path).read_text())
    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    timed, keep, failed = [], [], {}
    for t in spec["targets"]:
        before = _rss_mb()
        try:
            target, obj = (_torch_target if t["kind"] == "torch" else _onnx_target)(t, threads)
        except Exception as e:  # a target that cannot load is reported, the others are timed
            failed[t["name"]] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
            continue
        target.info["load_rss_mb"] = round(_rss_mb() - before, 1)
        timed.append(target)
        keep.append(obj)
    rows = time_interleaved(
        timed,
        spec["batch_sizes"],
        spec["seq_lengths"],
        spec["warmup"],
        spec["iterations"],
        spec["rounds"],
        lambda b, s, v: synthetic_batch(b, s, v),
        progress=lambda msg: print(PROGRESS + msg, file=sys.stderr, flush=True),
    )
    for name, err in failed.items():
        rows[name] = [{"batch": b, "seq": s, "error": err} for b in spec["batch_sizes"] for s in spec["seq_lengths"]]
    Path(spec["out"]).write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
