"""Evaluate every artifact of a run on the recipe's splits (one metric code for PyTorch and ONNX Runtime), with
paired tests against the reference and the health checks."""

from __future__ import annotations

import logging

from compressor.measure.artifacts import artifact_files
from compressor.measure.baseline import baseline_loader
from compressor.pipeline.context import RunContext

log = logging.getLogger("compressor")


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
        out["pytorch"] = {
            s: evaluate_torch(
                ctx.model.to(ctx.device), ctx.loader(s, bs), ctx.task, ctx.device, True, step("pytorch", s), intervals=True
            )
            for s in splits
        }
        ctx.model.to("cpu")
    for name, path in artifact_files(ctx).items():
        if name in cfg.artifacts:
            out[name] = {
                s: evaluate_onnx(path, ctx.loader(s, bs), ctx.task, threads, True, step(name, s), True, n_labels) for s in splits
            }
    if ctx.baseline is not None and "baseline" in cfg.artifacts:
        out["baseline"] = {
            s: evaluate_torch(
                ctx.baseline.to(ctx.device),
                baseline_loader(ctx, s, bs),
                ctx.task,
                ctx.device,
                True,
                step("baseline", s),
                intervals=True,
            )
            for s in splits
        }
        ctx.baseline.to("cpu")
        if "baseline-onnx" in ctx.artifacts:
            out["baseline-onnx"] = {
                s: evaluate_onnx(
                    ctx.artifacts["baseline-onnx"],
                    baseline_loader(ctx, s, bs),
                    ctx.task,
                    threads,
                    True,
                    step("baseline-onnx", s),
                    True,
                    n_labels,
                )
                for s in splits
            }
    if ctx.task == "causal-lm":
        lm_health(ctx, out, splits)
    paired_tests(out)
    for name, per_split in out.items():
        for s, m in per_split.items():
            log.info(
                "eval %-8s %-4s %s",
                name,
                s,
                "  ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float) and k != "missed_share"),
            )
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
                    m["paired"] = {
                        "vs": ref,
                        **paired_perplexity((theirs["nll"], theirs["tokens"]), (mine["nll"], mine["tokens"])),
                    }
            except ValueError as e:  # different row counts: no paired test
                m["paired"] = {"vs": ref, "error": str(e)}
    for per_split in evals.values():
        for m in per_split.values():
            m.pop("_rows", None)
