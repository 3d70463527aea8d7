"""The run's model loaded with bitsandbytes (8-bit, NF4) on CUDA, evaluated and timed beside the other artifacts."""

from __future__ import annotations

from compressor.measure.bnb import VARIANTS, footprint, load, unavailable
from compressor.pipeline.context import RunContext


def bitsandbytes_variants(ctx: RunContext, evals: dict, bench: dict) -> dict[str, dict]:
    """Load the saved model with bitsandbytes (8-bit, NF4) on CUDA, evaluate and time it; add to ``evals`` / ``bench``.

    Returns artifact records (params, GPU memory footprint); on CPU a note says why they were skipped."""
    import gc

    from compressor.measure.bench.runner import bench_torch, cuda_available
    from compressor.measure.evaluate import evaluate_torch

    b = ctx.recipe.bench
    if not b.bitsandbytes:
        return {}
    why = unavailable(cuda_available() and "cuda" in b.devices)
    if why:
        bench.setdefault("notes", []).append(why)
        return {}
    if getattr(ctx.model.config, "compressor_structure", None):
        bench.setdefault("notes", []).append(
            "bitsandbytes 8-bit / NF4: skipped (heads removed by structured pruning: "
            "transformers' from_pretrained cannot rebuild this model)"
        )
        return {}
    records = {}
    splits = [s for s in ctx.recipe.evaluate.splits if s in ctx.encoded]
    for mode in b.bitsandbytes:
        name = VARIANTS[mode]
        try:
            model = load(ctx.run_dir / "model", ctx.task, mode)
        except Exception as e:  # an architecture bitsandbytes cannot take must not lose the rest of the report
            bench.setdefault("notes", []).append(f"{name}: not loaded ({str(e).splitlines()[0][:200]})")
            continue
        evals[name] = {
            s: evaluate_torch(
                model,
                ctx.loader(s, ctx.recipe.evaluate.batch_size),
                ctx.task,
                "cuda",
                True,
                f"eval {name} on {s}",
                intervals=True,
            )
            for s in splits
        }
        for m in evals[name].values():
            m.pop("_rows", None)
        if b.enabled:
            bench.setdefault("rows", {})[name] = bench_torch(
                model, b.batch_sizes, b.seq_lengths, b.warmup, b.iterations, "cuda", rounds=b.rounds
            )
        records[name] = {
            "path": "model",
            "runtime": f"torch + bitsandbytes {mode}",
            "params": model.num_parameters(),
            "size_bytes": footprint(model),
            "gzip_bytes": footprint(model),
            "note": "size = GPU memory footprint (quantized on load; no file)",
        }
        del model
        gc.collect()
        import torch

        torch.cuda.empty_cache()
    return records
