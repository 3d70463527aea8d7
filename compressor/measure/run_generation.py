"""Generation rows of a causal-LM run (``bench.generation``): prefill latency at the stated prompt length, decode
tokens/s and peak resident memory at each batch size, for the PyTorch model (its own KV cache) and every ONNX
graph of the run that has a key / value cache (``export.with_past``).

Each artifact is measured in a process of its own (``python -m compressor.measure.run_generation SPEC``) with the
benchmark's thread policy, so that its peak RSS (the process's high-water mark: runtime, weights, cache and
activations) is its own, not a neighbour's. The artifacts are therefore measured one after another, not in
interleaved rounds: under a changing load their ratios are less certain than the latency table's; the report says so.
The timing itself is compressor/measure/bench/decode.py (the procedure of ``compressor bench --prompt``).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("compressor")


def _targets(ctx) -> tuple[list[dict], list[str]]:
    """(artifact name, kind, path) to time, and notes on the ONNX artifacts left out (no cache)."""
    import onnx

    from compressor.measure.artifacts import artifact_files

    targets = [{"name": "pytorch", "kind": "torch", "path": str(ctx.run_dir / "model")}]
    notes = []
    for name, path in artifact_files(ctx).items():
        inputs = onnx.load(str(path), load_external_data=False).graph.input
        if not any(i.name.startswith("past_key_values.") for i in inputs):
            notes.append(f"generation: {name} has no key / value cache (export with with_past: true to time its decoding)")
            continue
        targets.append({"name": name, "kind": "onnx", "path": str(path)})
    return targets, notes


def _measure_one(target: dict, gen: dict, threads: int, vocab: int, timeout: float | None) -> list[dict]:
    from compressor.core.errors import CompressorError
    from compressor.measure.bench.worker import run_worker

    with tempfile.TemporaryDirectory(prefix="compressor-gen-") as tmp:
        spec = Path(tmp) / "spec.json"
        out = Path(tmp) / "rows.json"
        spec.write_text(json.dumps({"target": target, "generation": gen, "threads": threads, "vocab": vocab, "out": str(out)}))
        returncode, tail = run_worker(spec, threads, timeout, module="compressor.measure.run_generation")
        if returncode != 0 or not out.is_file():
            raise CompressorError(
                f"generation timing of {target['name']} failed (exit {returncode}): {tail[-1] if tail else 'no output'}"
            )
        return json.loads(out.read_text())


def run_generation(ctx) -> dict:
    """{"rows": {artifact: [row per batch size]}, "notes": [...], "settings": {...}} — empty when the recipe does
    not ask for generation timing."""
    from compressor.core.errors import CompressorError
    from compressor.measure.bench.worker import default_threads

    b = ctx.recipe.bench
    if b.generation is None or not b.enabled or ctx.task != "causal-lm":
        return {}
    gen = b.generation.model_dump()
    threads = b.threads or default_threads()
    targets, notes = _targets(ctx)
    rows: dict[str, list[dict]] = {}
    for i, target in enumerate(targets, 1):
        log.info(
            "generation %d/%d: %s, prompt %d + %d new tokens, batch %s, %d timed runs each ...",
            i,
            len(targets),
            target["name"],
            gen["prompt"],
            gen["new_tokens"],
            "/".join(map(str, gen["batch_sizes"])),
            gen["repeats"],
        )
        try:
            rows[target["name"]] = _measure_one(target, gen, threads, ctx.model.config.vocab_size, timeout=3600)
        except (CompressorError, subprocess.TimeoutExpired) as e:
            notes.append(f"generation: {target['name']} not measured ({e})")
    return {
        "rows": rows,
        "notes": notes,
        "settings": {**gen, "threads": threads, "order": "one artifact after another, each in its own process"},
    }


def _child(spec: dict) -> list[dict]:
    from compressor.core.memory import peak_rss_mib
    from compressor.measure.bench.decode import decode_onnx, decode_torch

    t, g, threads = spec["target"], spec["generation"], spec["threads"]
    start = peak_rss_mib()  # the interpreter and compressor, before any runtime or model is loaded
    args = dict(prompt=g["prompt"], new_tokens=g["new_tokens"], warmup=g["warmup"], repeats=g["repeats"], threads=threads)
    if t["kind"] == "torch":
        from compressor.models import load_model

        model = load_model(t["path"], "causal-lm")
        measure = lambda b: decode_torch(model, batch=b, **args)  # noqa: E731
    else:
        measure = lambda b: decode_onnx(Path(t["path"]), batch=b, vocab=spec["vocab"], **args)  # noqa: E731
    rows = []
    for b in sorted(g["batch_sizes"]):  # smallest first: the high-water mark after each row is that row's peak
        rows.append({**measure(b), "threads": threads, "peak_rss_mb": peak_rss_mib(), "start_rss_mb": start})
    return rows


if __name__ == "__main__":
    spec = json.loads(Path(sys.argv[1]).read_text())
    rows = _child(spec)
    Path(spec["out"]).write_text(json.dumps(rows))
