"""``compressor bench``: model directories and ONNX files named on the command line, checked first, then timed
together in one separate process (interleaved rounds, the same thread policy for every runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_artifacts(artifacts: list[Path], seq_lengths: list[int]) -> list[tuple[Path, Path | None, Any]]:
    """(artifact, its model folder, its config or None) for each, every one checked before any is timed."""
    from compressor.core.errors import CompressorError
    from compressor.models import load_config, model_folder
    from compressor.onnx.files import companion, onnx_file

    plan = []
    for a in artifacts:
        if a.suffix.lower() == ".onnx":
            onnx_file(a)
            home = companion(a, None)
            config = load_config(home) if home is not None and (home / "config.json").is_file() else None
        else:
            home = model_folder(a, onnx_too=True)
            config = load_config(home)
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if limit and max(seq_lengths) > limit:
            raise CompressorError(f"{a}: --seq-lengths {max(seq_lengths)} is longer than the model's {limit} positions")
        plan.append((a, home, config))
    return plan


def bench_targets(plan: list[tuple[Path, Path | None, Any]], device: str, notes: list[str]) -> list[dict]:
    """What the timing process loads: one target per distinct artifact."""
    from compressor.models import task_of
    from compressor.onnx.files import onnx_vocab

    targets: list[dict] = []
    for a, home, config in plan:
        if any(t["name"] == str(a) for t in targets):
            continue  # named twice: timed once
        if a.suffix.lower() == ".onnx":
            vocab = onnx_vocab(a, home)
            if vocab is None:
                notes.append(f"{a}: vocabulary size unknown; synthetic token ids below 100")
            targets.append({"name": str(a), "kind": "onnx", "path": str(a), "device": device, "vocab": vocab or 100})
        else:
            task = task_of(config, home, "auto")
            targets.append(
                {"name": str(a), "kind": "torch", "path": str(home), "device": device, "task": task, "vocab": config.vocab_size}
            )
    return targets


def time_plan(
    plan,
    batch_sizes: list[int],
    seq_lengths: list[int],
    warmup: int,
    iterations: int,
    rounds: int,
    threads: int | None,
    device: str,
) -> tuple[list[dict], list[str]]:
    """Time every artifact of ``plan`` on synthetic batches; returns the rows and the notes about the timing."""
    from compressor.core.errors import ModelError
    from compressor.core.progress import console_log
    from compressor.measure.bench.runner import busy_note
    from compressor.measure.bench.worker import time_artifacts

    notes = [n for n in (busy_note(),) if n]
    targets = bench_targets(plan, device, notes)
    with console_log():  # the timing process's progress (rounds done) on stderr
        got = time_artifacts(targets, batch_sizes, seq_lengths, warmup, iterations, rounds, threads)
    rows = []
    for t in targets:
        for r in got.get(t["name"], []):
            if "error" in r:
                raise ModelError(f"{t['name']}: cannot be timed: {r['error']}")
            rows.append({"artifact": t["name"], **r})
    return rows, notes
