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
from compressor.core.rundir import tmp_sibling
from compressor.pipeline.context import RunContext
from compressor.quantize.budget import SENSITIVITY_SAMPLES, fit_budget, sensitivity
from compressor.quantize.calibration import calibrate, calibration_split, range_table
from compressor.quantize.scheme import QuantizedGraph, register_scheme
from compressor.quantize.static_graph import Plan, _has_activation_qdq, make_plan, quantize_plan
from compressor.recipe.schema import StaticQuant

log = logging.getLogger("compressor")


class _Trials:
    """The chosen graph (fused, else plain), its calibration cache, and INT8 trials written from it in ``work``."""

    def __init__(self, ctx: RunContext, cfg: StaticQuant, work: Path):
        self.ctx, self.cfg, self.work = ctx, cfg, work
        self.calib, self.where = calibration_split(ctx, cfg.calibration_samples, f"{ctx.stage_path}.calibration_samples")
        self.ranges: dict = {}
        self.prebuilt: list[Path] = []  # the first trial, when trying the fused graph already made it
        self.count = 0
        self.plan = make_plan(ctx, cfg, work)
        self.cache = self.observe(self.plan)
        if self.plan.graph == "fused":
            self._try_fused()

    def observe(self, plan: Plan) -> Path:
        """Calibrate once per graph; every trial after reads the ranges from this cache."""
        from onnxruntime.quantization.calibrate import save_tensors_data

        from compressor.data import make_loader

        ctx, cfg = self.ctx, self.cfg
        cache = self.work / f"calibration-{plan.graph}.json"
        batches = make_loader(self.calib, ctx.tokenizer, cfg.calibration_batch_size, False, ctx.seed, ctx.task)
        ranges = calibrate(
            plan.src,
            plan.tensors,
            batches,
            cfg.method,
            cfg.percentile,
            cfg.activation_type == "int8",
            self.work,
            ctx.recipe.bench.threads,
        )
        save_tensors_data(ranges, cache)
        self.ranges = range_table(ranges)
        return cache

    def _try_fused(self) -> None:
        first = self.work / "fused-all.onnx"
        try:
            quantize_plan(self.plan, self.cfg, self.cache, first)
            if self.plan.static and not _has_activation_qdq(first):
                raise CompressorError("no activation was calibrated (shapes missing for fused ops)")
            self.prebuilt.append(first)
        except Exception as e:
            reason = f"static QDQ on the fused graph failed: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"
            log.warning("%s; quantizing the plain export instead", reason)
            self.plan = make_plan(self.ctx, self.cfg, self.work, force_plain=reason)
            self.cache = self.observe(self.plan)

    def quantize(self, keep: list[str]) -> Path:
        if not keep and self.prebuilt:
            return self.prebuilt.pop()
        self.count += 1
        return quantize_plan(self.plan, self.cfg, self.cache, self.work / f"trial-{self.count - 1}.onnx", frozenset(keep))


def _budget_split(ctx: RunContext, cfg: StaticQuant) -> str | None:
    """The split budget trials are scored on (the validation split: dev / test stay for the report); None: no budget."""
    if cfg.max_drop is None and cfg.max_drop_relative is None:
        return None
    split = ctx.selection_split()
    if split is None:
        field_name = "max_drop" if cfg.max_drop is not None else "max_drop_relative"
        raise ctx.recipe.error(f"{ctx.stage_path}.{field_name}", "the accuracy budget needs a dev or test split")
    return split


def _fit(ctx: RunContext, cfg: StaticQuant, trials: _Trials, split: str) -> tuple[Path, list[str], dict]:
    """The accuracy budget: (chosen trial, nodes kept fp32, the budget record)."""
    from compressor.core.health import reference_warning
    from compressor.measure.evaluate import evaluate_onnx

    metric, higher = ctx.primary_metric
    bs, threads = ctx.recipe.evaluate.batch_size, ctx.recipe.bench.threads

    def score(path: Path) -> float:
        return evaluate_onnx(path, ctx.loader(split, bs), ctx.task, threads, progress=f"~budget trial on {split}")[metric]

    plan = trials.plan
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
    fit = fit_budget(
        cfg,
        fp32,
        higher,
        metric == "accuracy",
        trials.quantize,
        score,
        lambda: sensitivity(plan, cfg, trials.cache, trials.work, probe, threads),
    )
    budget = {
        "metric": metric,
        "split": split,
        "fp32": fp32,
        "reference_warning": caveat,
        "max_drop": cfg.max_drop,
        "max_drop_relative": cfg.max_drop_relative,
        "units": "points" if metric == "accuracy" else metric,
        **{k: v for k, v in fit.items() if k != "path"},
    }
    kept = fit["kept_fp32"]
    if not fit["passed"]:
        log.warning(
            "static INT8 misses the accuracy budget after %d trial(s); keeping the best (%s %.4f vs fp32 %.4f)",
            len(fit["trials"]),
            metric,
            next(t["value"] for t in fit["trials"] if t["kept_fp32"] == kept),
            fp32,
        )
    return fit["path"], kept, budget


@register_scheme(StaticQuant)
def run_static(ctx: RunContext, cfg: StaticQuant) -> QuantizedGraph:
    split = _budget_split(ctx, cfg)
    dst = ctx.run_dir / "onnx" / "model.int8.onnx"
    work = tmp_sibling(ctx.run_dir / "onnx" / "static-int8")
    try:
        trials = _Trials(ctx, cfg, work)
        chosen, kept, budget = _fit(ctx, cfg, trials, split) if split is not None else (trials.quantize([]), [], None)
        dst.unlink(missing_ok=True)
        shutil.move(str(chosen), str(dst))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    plan = trials.plan
    quantized = [n for n in plan.static + plan.dynamic if n not in set(kept)]
    record = {
        "source": plan.fp32.name,
        "graph": plan.graph,
        "fused_fallback": plan.note,
        "scheme": "static",
        "format": "QDQ",
        "calibration": {
            "method": cfg.method,
            "percentile": cfg.percentile if cfg.method == "percentile" else None,
            "samples": len(trials.calib),
            "batch_size": cfg.calibration_batch_size,
            "data": trials.where,
            "tensors": len(trials.ranges),
            "streamed": "one batch at a time",
        },
        "activation_type": cfg.activation_type,
        "weight_type": cfg.weight_type,
        "per_channel": cfg.per_channel,
        "reduce_range": cfg.reduce_range,
        "op_types": list(cfg.op_types),
        "quantize_embeddings": cfg.quantize_embeddings,
        "quantized_nodes": len(quantized),
        "dynamic_nodes": [n for n in plan.dynamic if n in quantized],
        "skipped": plan.skipped,
        "included_nodes": list(cfg.include_nodes),
        "excluded_nodes": list(cfg.exclude_nodes),
        "excluded_op_types": list(cfg.exclude_op_types),
        "kept_fp32": kept,
        "budget": budget,
    }
    result = {
        "scheme": "static",
        "method": cfg.method,
        "graph": plan.graph,
        "fused_fallback": plan.note,
        "kept_fp32": kept,
        "budget": budget,
    }
    return QuantizedGraph(
        dst,
        "int8",
        "static INT8",
        record,
        result,
        layernorm=cfg.layernorm,
        summary=f"{cfg.method}, {plan.graph} graph, {len(quantized)} nodes quantized, {len(kept)} kept fp32",
    )
