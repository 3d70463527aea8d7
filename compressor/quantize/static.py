"""Static INT8: calibrated activation ranges, QDQ format, and an accuracy budget with fp32 fallback.

What is quantized (measured with onnxruntime 1.32, see the tests and benchmarks/int8_schemes.py):

* Plain export (``optimized: false``): every MatMul / Gemm with a constant weight gets
  QuantizeLinear/DequantizeLinear pairs; ONNX Runtime fuses them into MatMulIntegerToFloat (or
  QLinearMatMul). Their outputs are left fp32 (no requantization error; the bias Add and the
  LayerNorm / GELU fusions ORT applies at load time stay fp32). MatMuls of two activations
  (attention scores, context) stay fp32 unless ``activation_matmuls``. Embedding tables become
  uint8 (QDQ Gather; ORT drops the pairs around Gather and dequantizes the gathered rows only).
* Fused graph (``optimized: true``, the default when the export stage made one): static QDQ needs
  shapes that ONNX's shape inference cannot give for ORT's contrib ops (without them no activation is
  calibrated and ORT turns the result into weight-only MatMulNBits), so ORT's symbolic shape
  inference runs first. The fused Attention op has no static INT8 kernel: QDQ around it is left
  unfused (fp32 Attention plus dequantized weights), so it is converted to QAttention (dynamic
  activation quantization) instead, and EmbedLayerNormalization to QEmbedLayerNormalization. The
  export's [CLS]-only last layer (compressor/onnx/first_token.py) has plain MatMul projections,
  which get QDQ like the others. When any of this fails the plain export is quantized and the reason
  recorded. On the MiniLM SST-2 teacher (1 thread, batch 1 x seq 128, benchmarks/INT8_RESULTS.md)
  static QDQ of the fused graph ran in 10.2 ms against 12.0 ms for the plain export, at the same or
  better dev accuracy, hence the default.

Accuracy budget (``max_drop`` / ``max_drop_relative``, see budget.py): the INT8 graph is scored on the
dev split against the fp32 graph it came from; when it misses, each quantized node is quantized alone
and ranked by the error it adds to the logits; trial t keeps the 2^(t-1) most sensitive nodes in fp32
until the budget holds or ``fallback_trials`` are spent (then the best trial is kept, the miss recorded).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from compressor.core.errors import CompressorError
from compressor.core.registry import STAGES
from compressor.core.rundir import tmp_sibling
from compressor.onnx.batches import parity_batches
from compressor.onnx.onnx import parity, write_provenance
from compressor.pipeline.context import RunContext
from compressor.quantize.budget import SENSITIVITY_SAMPLES, fit_budget, sensitivity
from compressor.quantize.calibration import calibrate, calibration_split, range_table
from compressor.quantize.cpu_graph import tune_layernorm
from compressor.quantize.static_graph import Plan, _has_activation_qdq, make_plan, quantize_plan
from compressor.recipe.schema import StaticQuant

log = logging.getLogger("compressor")


# ---------------------------------------------------------------- the stage
@STAGES.register(StaticQuant)
def run_static(ctx: RunContext, cfg: StaticQuant) -> dict:
    from compressor.core.health import reference_warning
    from compressor.measure.evaluate import evaluate_onnx

    budget_on = cfg.max_drop is not None or cfg.max_drop_relative is not None
    split = ctx.selection_split()  # trials are chosen on the validation split: dev / test stay for the report
    if budget_on and split is None:
        field_name = "max_drop" if cfg.max_drop is not None else "max_drop_relative"
        raise ctx.recipe.error(f"{ctx.stage_path}.{field_name}", "the accuracy budget needs a dev or test split")
    dst = ctx.run_dir / "onnx" / "model.int8.onnx"
    work = tmp_sibling(ctx.run_dir / "onnx" / "static-int8")
    threads = ctx.recipe.bench.threads
    try:
        calib, where = calibration_split(ctx, cfg.calibration_samples, f"{ctx.stage_path}.calibration_samples")
        symmetric = cfg.activation_type == "int8"

        def observe(plan: Plan) -> Path:
            """Calibrate once per graph; every trial after reads the ranges from this cache."""
            from onnxruntime.quantization.calibrate import save_tensors_data

            from compressor.data import make_loader

            cache = work / f"calibration-{plan.graph}.json"
            batches = make_loader(calib, ctx.tokenizer, cfg.calibration_batch_size, False, ctx.seed, ctx.task)
            ranges = calibrate(plan.src, plan.tensors, batches, cfg.method, cfg.percentile, symmetric, work, threads)
            save_tensors_data(ranges, cache)
            observed["ranges"] = range_table(ranges)
            return cache

        observed: dict = {"ranges": {}}

        plan = make_plan(ctx, cfg, work)
        cache = observe(plan)
        prebuilt: list[Path] = []  # the first trial, when trying the fused graph already made it
        if plan.graph == "fused":
            first = work / "fused-all.onnx"
            try:
                quantize_plan(plan, cfg, cache, first)
                if plan.static and not _has_activation_qdq(first):
                    raise CompressorError("no activation was calibrated (shapes missing for fused ops)")
                prebuilt.append(first)
            except Exception as e:
                reason = f"static QDQ on the fused graph failed: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"
                log.warning("%s; quantizing the plain export instead", reason)
                plan = make_plan(ctx, cfg, work, force_plain=reason)
                cache = observe(plan)
        trials = iter(range(1_000_000))

        def quantize(keep: list[str]) -> Path:
            if not keep and prebuilt:
                return prebuilt.pop()
            return quantize_plan(plan, cfg, cache, work / f"trial-{next(trials)}.onnx", frozenset(keep))

        if budget_on:
            metric, higher = ctx.primary_metric
            bs = ctx.recipe.evaluate.batch_size

            def score(path: Path) -> float:
                return evaluate_onnx(path, ctx.loader(split, bs), ctx.task, threads, progress=f"~budget trial on {split}")[metric]

            reference = evaluate_onnx(plan.fp32, ctx.loader(split, bs), ctx.task, threads, progress=f"~fp32 reference on {split}")
            fp32 = reference[metric]
            caveat = reference_warning(reference, "the fp32 reference", ctx.label_names)
            if caveat:
                log.warning("INT8 accuracy budget: %s", caveat.replace("**Warning**: ", ""))
            probe = []
            for b in ctx.loader(split, 32):
                probe.append(b)
                if sum(len(x["input_ids"]) for x in probe) >= SENSITIVITY_SAMPLES:
                    break
            fit = fit_budget(cfg, fp32, higher, metric == "accuracy", quantize, score,
                             lambda: sensitivity(plan, cfg, cache, work, probe, threads))
            budget = {"metric": metric, "split": split, "fp32": fp32, "reference_warning": caveat, "max_drop": cfg.max_drop,
                      "max_drop_relative": cfg.max_drop_relative, "units": "points" if metric == "accuracy" else metric,
                      **{k: v for k, v in fit.items() if k != "path"}}
            chosen, kept = fit["path"], fit["kept_fp32"]
            if not fit["passed"]:
                log.warning("static INT8 misses the accuracy budget after %d trial(s); keeping the best (%s %.4f vs fp32 %.4f)",
                            len(fit["trials"]), metric, next(t["value"] for t in fit["trials"] if t["kept_fp32"] == kept), fp32)
        else:
            chosen, kept, budget = quantize([]), [], None
        dst.unlink(missing_ok=True)
        shutil.move(str(chosen), str(dst))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    kernels = tune_layernorm(dst, cfg.layernorm, threads)
    batches = parity_batches(ctx)
    check = parity(ctx.model, dst, batches, tolerance=None, what="static INT8") if batches else {}
    quantized = [n for n in plan.static + plan.dynamic if n not in set(kept)]
    record = {
        "artifact": "int8", "source": plan.fp32.name, "graph": plan.graph, "fused_fallback": plan.note,
        "scheme": "static", "format": "QDQ",
        "calibration": {"method": cfg.method, "percentile": cfg.percentile if cfg.method == "percentile" else None,
                        "samples": len(calib), "batch_size": cfg.calibration_batch_size, "data": where,
                        "tensors": len(observed["ranges"]), "streamed": "one batch at a time"},
        "activation_type": cfg.activation_type, "weight_type": cfg.weight_type, "per_channel": cfg.per_channel,
        "reduce_range": cfg.reduce_range, "op_types": list(cfg.op_types), "quantize_embeddings": cfg.quantize_embeddings,
        "quantized_nodes": len(quantized), "dynamic_nodes": [n for n in plan.dynamic if n in quantized],
        "skipped": plan.skipped, "included_nodes": list(cfg.include_nodes), "excluded_nodes": list(cfg.exclude_nodes),
        "excluded_op_types": list(cfg.exclude_op_types),
        "kept_fp32": kept, "budget": budget, "layernorm_kernels": kernels, "parity": check,
    }
    write_provenance(dst, record)
    ctx.artifacts["int8"] = dst
    ctx.provenance["int8"] = record
    log.info("static INT8 (%s, %s graph): %s, %d nodes quantized, %d kept fp32; max |diff| vs PyTorch %.4g",
             cfg.method, plan.graph, dst.name, len(quantized), len(kept), check.get("max_abs_diff", float("nan")))
    return {"artifact": str(dst.relative_to(ctx.run_dir)), "scheme": "static", "method": cfg.method, "graph": plan.graph,
            "fused_fallback": plan.note, "kept_fp32": kept, "budget": budget, "parity": check}
