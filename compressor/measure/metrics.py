"""Evaluate and benchmark every artifact of a run, and assemble metrics.json."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from compressor.core.rundir import atomic_write_json
from compressor.pipeline.context import RunContext

log = logging.getLogger("compressor")


def artifact_files(ctx: RunContext) -> dict[str, Path]:
    """Name -> file for the ONNX artifacts to evaluate (the fused graph stands for fp32 ORT)."""
    out: dict[str, Path] = {}
    fp32 = ctx.artifacts.get("onnx-opt") or ctx.artifacts.get("onnx")
    if fp32 is not None:
        out["onnx"] = fp32
    for name in ("int8", "int4"):
        if name in ctx.artifacts:
            out[name] = ctx.artifacts[name]
    return out


def export_baseline(ctx: RunContext) -> list[str]:
    """The baseline's ONNX export, made as the recipe's export stage made the run's (same opset, exporter,
    fusions, tolerance), so ORT can compare like with like. A failure is a note in the report, not a failed run."""
    from compressor.core.errors import CompressorError
    from compressor.onnx.stage import export_fp32
    from compressor.recipe.schema import ExportStage

    if ctx.baseline is None or "onnx" not in ctx.artifacts or "baseline" not in ctx.recipe.evaluate.artifacts:
        return []
    cfg = next((c for k, c in ctx.recipe.stage_list() if isinstance(c, ExportStage)), ExportStage())
    batches = [b for _, b in zip(range(2), baseline_loader(ctx, ctx.eval_split() or "train", 8))]
    try:
        record, opt = export_fp32(ctx.baseline, batches, ctx.run_dir / "onnx" / "baseline.onnx", cfg, "baseline-onnx",
                                  {"source": ctx.baseline_source})
    except CompressorError as e:
        return [f"baseline: no ONNX export to compare with ({e})"]
    trimmed = [(o or {}).get("cls_only_last_layer", {}).get("applied", False) for o in (opt, ctx.provenance.get("onnx-opt"))]
    if opt is not None and "onnx-opt" in ctx.artifacts and trimmed[0] != trimmed[1]:
        return ["baseline: the [CLS]-only last layer applies to one of the two fused graphs but not the other; "
                "compared in PyTorch only"]
    if opt is not None and "onnx-opt" in ctx.artifacts:  # the run's fp32 ONNX artifact is its fused graph
        ctx.artifacts["baseline-onnx"], ctx.provenance["baseline-onnx"] = opt.pop("path"), opt
    elif opt is None and "onnx-opt" not in ctx.artifacts:
        ctx.artifacts["baseline-onnx"], ctx.provenance["baseline-onnx"] = ctx.run_dir / "onnx" / "baseline.onnx", record
    else:  # one graph fused, the other not: an ONNX latency comparison would credit the fusions to compression
        return ["baseline: ONNX Runtime fused one of the two graphs but not the other; compared in PyTorch only"]
    return []


def baseline_loader(ctx: RunContext, split: str, batch_size: int):
    """Batches of ``split`` tokenized by the baseline's own tokenizer (vocabulary trimming changes the run's)."""
    from compressor.data import make_loader

    if ctx.baseline_tokenizer is None or ctx.baseline_tokenizer is ctx.tokenizer or ctx.dataset is None:
        return ctx.loader(split, batch_size)
    enc = ctx.encode(split, ctx.baseline_tokenizer)
    return make_loader(enc, ctx.baseline_tokenizer, batch_size, False, ctx.seed, ctx.task)


def nonzero_parameters(model) -> int:
    return int(sum(int(p.count_nonzero()) for p in model.parameters()))


def onnx_size(path: Path) -> int:
    size = path.stat().st_size
    data = path.with_name(path.name + ".data")
    return size + (data.stat().st_size if data.exists() else 0)


def evaluate_artifacts(ctx: RunContext) -> dict[str, dict]:
    from compressor.measure.evaluate import evaluate_onnx, evaluate_torch

    cfg = ctx.recipe.evaluate
    splits = [s for s in cfg.splits if s in ctx.encoded]
    bs, threads = cfg.batch_size, ctx.recipe.bench.threads
    n_labels = len(ctx.label_names) if ctx.label_names else None
    out: dict[str, dict] = {}

    def step(name: str, s: str) -> str:
        return f"eval {name} on {s}"

    if "torch" in cfg.artifacts:
        out["pytorch"] = {s: evaluate_torch(ctx.model.to(ctx.device), ctx.loader(s, bs), ctx.task, ctx.device, True,
                                            step("pytorch", s), intervals=True) for s in splits}
        ctx.model.to("cpu")
    for name, path in artifact_files(ctx).items():
        if name in cfg.artifacts:
            out[name] = {s: evaluate_onnx(path, ctx.loader(s, bs), ctx.task, threads, True, step(name, s), True, n_labels)
                         for s in splits}
    if ctx.baseline is not None and "baseline" in cfg.artifacts:
        out["baseline"] = {s: evaluate_torch(ctx.baseline.to(ctx.device), baseline_loader(ctx, s, bs), ctx.task,
                                             ctx.device, True, step("baseline", s), intervals=True) for s in splits}
        ctx.baseline.to("cpu")
        if "baseline-onnx" in ctx.artifacts:
            out["baseline-onnx"] = {s: evaluate_onnx(ctx.artifacts["baseline-onnx"], baseline_loader(ctx, s, bs), ctx.task,
                                                     threads, True, step("baseline-onnx", s), True, n_labels)
                                    for s in splits}
    if ctx.task == "causal-lm":
        lm_health(ctx, out, splits)
    paired_tests(out)
    for name, per_split in out.items():
        for s, m in per_split.items():
            log.info("eval %-8s %-4s %s", name, s, "  ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float) and k != "missed_share"))
    from compressor.core.health import grouped_warnings

    for line in grouped_warnings(out, ctx.task, ctx.label_names):
        log.warning("%s", line)
    return out


def lm_health(ctx: RunContext, evals: dict[str, dict], splits: list[str]) -> None:
    """Causal LM: the unigram baseline beside each perplexity, and a greedy-output check of the PyTorch models."""
    from compressor.core.health import unigram_perplexity
    from compressor.measure.evaluate import greedy_check

    vocab = ctx.model.config.vocab_size
    train = [f["input_ids"] for f in ctx.encoded["train"].features] if "train" in ctx.encoded else []
    for s in splits:
        blocks = [f["input_ids"] for f in ctx.encoded[s].features]
        uni = unigram_perplexity(train or blocks, blocks, vocab)
        for per_split in evals.values():
            if s in per_split:
                per_split[s]["unigram_perplexity"] = uni
    s = splits[0] if splits else None
    for name, model in (("pytorch", ctx.model), ("baseline", ctx.baseline)):
        if s is None or model is None or name not in evals:
            continue
        log.info("greedy-output check of %s on %s (4 prompts × 32 tokens)", name, s)
        blocks = [f["input_ids"] for f in ctx.encoded[s].features]
        evals[name][s]["greedy"] = greedy_check(model.to(ctx.device), blocks, ctx.device, tokenizer=ctx.tokenizer)
        model.to("cpu")


def paired_tests(evals: dict[str, dict]) -> None:
    """Test each artifact's difference from the reference (the baseline, else PyTorch fp32) on the same rows:
    McNemar for accuracy, a paired bootstrap over windows for perplexity. Stored as ``paired`` beside the metrics;
    the per-row outcomes (``_rows``) are dropped afterwards (they do not go into metrics.json)."""
    from compressor.core.stats import mcnemar, paired_perplexity

    ref = "baseline" if "baseline" in evals else "pytorch"
    for name, per_split in evals.items():
        for split, m in per_split.items():
            mine, theirs = m.get("_rows"), evals.get(ref, {}).get(split, {}).get("_rows")
            if name == ref or mine is None or theirs is None:
                continue
            try:
                if "correct" in mine:
                    m["paired"] = {"vs": ref, **mcnemar(theirs["correct"], mine["correct"]).as_dict()}
                else:
                    m["paired"] = {"vs": ref, **paired_perplexity((theirs["nll"], theirs["tokens"]),
                                                                  (mine["nll"], mine["tokens"]))}
            except ValueError as e:  # different row counts: no paired test
                m["paired"] = {"vs": ref, "error": str(e)}
    for per_split in evals.values():
        for m in per_split.values():
            m.pop("_rows", None)


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
            targets.append({**base, "name": "baseline", "kind": "torch", "path": str(baseline_dir),
                            "vocab": ctx.baseline.config.vocab_size})
        targets.append({**base, "name": "pytorch", "kind": "torch", "path": str(ctx.run_dir / "model"),
                        "vocab": ctx.model.config.vocab_size})
    for name, path in artifact_files(ctx).items():
        if dev != "cpu" and name in ("int8", "int4"):
            notes.append(f"{dev}: the {name.upper()} graph targets ONNX Runtime's CPU kernels; measured on CPU only")
            continue
        targets.append({**base, "name": name, "kind": "onnx", "path": str(path), "vocab": ctx.model.config.vocab_size})
    if with_baseline and "baseline-onnx" in ctx.artifacts:
        targets.append({**base, "name": "baseline-onnx", "kind": "onnx", "path": str(ctx.artifacts["baseline-onnx"]),
                        "vocab": ctx.baseline.config.vocab_size})
    return targets, notes


BASELINE_DIR = "baseline"  # checkpoints/baseline (pipeline.BASELINE): the saved baseline model


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
            got = timed(f"{len(targets)} artifacts in {min(b.rounds, b.iterations)} interleaved rounds", dev, time_artifacts, targets, b.batch_sizes, b.seq_lengths, b.warmup,
                        b.iterations, b.rounds, b.threads)
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
        log.info("benchmark %d/%d: %s on %s, %d timed and warm-up runs each ...", self.done + 1, self.total, name, where, self.runs)
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            took = time.perf_counter() - t0
            self.done += 1
            self.seconds += took
            left = self.seconds / self.done * (self.total - self.done)
            log.info("benchmark %d/%d: %s on %s done in %.1fs%s", self.done, self.total, name, where, took,
                     f", ~{left:.0f}s left" if self.done < self.total else "")


def bitsandbytes_variants(ctx: RunContext, evals: dict, bench: dict) -> dict[str, dict]:
    """Load the saved model with bitsandbytes (8-bit, NF4) on CUDA, evaluate and time it; add to ``evals`` / ``bench``.

    Returns artifact records (params, GPU memory footprint); on CPU a note says why they were skipped."""
    import gc

    from compressor.measure.bench.runner import bench_torch, cuda_available
    from compressor.measure.evaluate import evaluate_torch
    from compressor.measure import bnb

    b = ctx.recipe.bench
    if not b.bitsandbytes:
        return {}
    why = bnb.unavailable(cuda_available() and "cuda" in b.devices)
    if why:
        bench.setdefault("notes", []).append(why)
        return {}
    if getattr(ctx.model.config, "compressor_structure", None):
        bench.setdefault("notes", []).append("bitsandbytes 8-bit / NF4: skipped (heads removed by structured pruning: "
                                             "transformers' from_pretrained cannot rebuild this model)")
        return {}
    records = {}
    splits = [s for s in ctx.recipe.evaluate.splits if s in ctx.encoded]
    for mode in b.bitsandbytes:
        name = bnb.VARIANTS[mode]
        try:
            model = bnb.load(ctx.run_dir / "model", ctx.task, mode)
        except Exception as e:  # an architecture bitsandbytes cannot take must not lose the rest of the report
            bench.setdefault("notes", []).append(f"{name}: not loaded ({str(e).splitlines()[0][:200]})")
            continue
        evals[name] = {s: evaluate_torch(model, ctx.loader(s, ctx.recipe.evaluate.batch_size), ctx.task, "cuda", True,
                                      f"eval {name} on {s}", intervals=True) for s in splits}
        for m in evals[name].values():
            m.pop("_rows", None)
        if b.enabled:
            bench.setdefault("rows", {})[name] = bench_torch(model, b.batch_sizes, b.seq_lengths, b.warmup, b.iterations, "cuda",
                                                             rounds=b.rounds)
        records[name] = {"path": "model", "runtime": f"torch + bitsandbytes {mode}", "params": model.num_parameters(),
                         "size_bytes": bnb.footprint(model), "gzip_bytes": bnb.footprint(model),
                         "note": "size = GPU memory footprint (quantized on load; no file)"}
        del model
        gc.collect()
        import torch

        torch.cuda.empty_cache()
    return records


def collect_results(ctx: RunContext, evals: dict, bench: dict, started: float, extra: dict | None = None) -> dict:
    from compressor.measure.bench.runner import fingerprint, gzip_size
    from compressor.models import count_parameters

    def torch_record(folder: Path, model) -> dict:
        weights = sorted(folder.glob("*.safetensors"))
        return {"path": str(folder.relative_to(ctx.run_dir)), "runtime": "torch", "params": count_parameters(model),
                "nonzero_params": nonzero_parameters(model), "size_bytes": sum(w.stat().st_size for w in weights),
                "gzip_bytes": sum(gzip_size(w) for w in weights)}

    def onnx_record(path: Path, params: int, provenance: dict) -> dict:
        return {"path": str(path.relative_to(ctx.run_dir)), "runtime": "onnxruntime", "params": params,
                "size_bytes": onnx_size(path), "gzip_bytes": gzip_size(path), "provenance": provenance}

    params = count_parameters(ctx.model)
    artifacts: dict[str, dict] = {}
    if "baseline" in evals:  # the uncompressed reference first, as the report's Δ and speed-up refer to it
        artifacts["baseline"] = {**torch_record(ctx.run_dir / "checkpoints" / "baseline", ctx.baseline),
                                 "source": ctx.baseline_source}
        if "baseline-onnx" in evals:
            artifacts["baseline-onnx"] = onnx_record(ctx.artifacts["baseline-onnx"], artifacts["baseline"]["params"],
                                                     ctx.provenance.get("baseline-onnx", {}))
    artifacts["pytorch"] = torch_record(ctx.run_dir / "model", ctx.model)
    for name, path in artifact_files(ctx).items():
        artifacts[name] = onnx_record(path, params, ctx.provenance.get("onnx-opt" if path.name == "model.opt.onnx" else name, {}))
    artifacts.update(extra or {})
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
        "data_counts": ctx.dataset.counts if ctx.dataset is not None else {},
        "duplicates": ctx.dataset.duplicates if ctx.dataset is not None else {},
        "stages": ctx.stage_results,
        "artifacts": artifacts,
        "bench_notes": bench.get("notes", []),
        "bench_settings": ctx.recipe.bench.model_dump(),
        "timing_policy": bench.get("policy"),
        "fingerprint": fingerprint(),
        "seconds": round(time.time() - started, 1),
    }
    atomic_write_json(ctx.run_dir / "metrics.json", results)
    return results
