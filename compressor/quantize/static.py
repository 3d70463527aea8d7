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

import difflib
import logging
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compressor.core.errors import CompressorError
from compressor.core.registry import STAGES
from compressor.core.rundir import quiet_libraries, tmp_sibling
from compressor.onnx.onnx import parity, write_provenance
from compressor.onnx.stage import parity_batches
from compressor.pipeline.context import RunContext
from compressor.quantize.budget import SENSITIVITY_SAMPLES, fit_budget, sensitivity
from compressor.quantize.calibration import METHOD_NAMES, calibrate, calibration_split, range_table
from compressor.quantize.cpu_graph import tune_layernorm
from compressor.recipe.schema import StaticQuant

log = logging.getLogger("compressor")
FUSED_DYNAMIC = ("Attention", "EmbedLayerNormalization")  # fused contrib ops: quantized dynamically (no QDQ kernel)


@dataclass
class Plan:
    """The graph to quantize and which of its nodes are candidates."""

    src: Path  # fp32 graph handed to the quantizer (shape-annotated when fused)
    fp32: Path  # the fp32 artifact it stands for (reference for the budget)
    graph: str  # "plain" | "fused"
    static: list[str] = field(default_factory=list)  # QDQ nodes
    dynamic: list[str] = field(default_factory=list)  # fused nodes quantized dynamically
    op_of: dict[str, str] = field(default_factory=dict)
    tensors: set[str] = field(default_factory=set)  # activations to calibrate
    skipped: dict[str, int] = field(default_factory=dict)  # why some nodes of quantized types stay fp32
    note: str | None = None  # why the fused graph was not used


def _load(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False)


def plan_nodes(model, cfg: StaticQuant) -> tuple[list[str], list[str], dict[str, str], set[str], dict[str, int]]:
    """(static nodes, dynamic nodes, node -> op type, tensors to calibrate, skipped counts) before exclusions."""
    import onnx

    g = model.graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    tables = {i.name for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 2}
    static, dynamic, op_of, tensors = [], [], {}, set()
    skipped = {"activation_matmuls": 0}
    for n in g.node:
        if n.op_type in cfg.op_types and len(n.input) >= 2:
            if n.input[1] not in consts and not cfg.activation_matmuls:
                skipped["activation_matmuls"] += 1
                continue
            static.append(n.name)
            tensors.update(t for t in n.input[:2] if t and t not in consts)
        elif n.op_type == "Gather" and cfg.quantize_embeddings and n.input[0] in tables:
            static.append(n.name)  # the table is quantized from its own values: nothing to calibrate
        elif n.op_type == "Attention" or (n.op_type == "EmbedLayerNormalization" and cfg.quantize_embeddings):
            dynamic.append(n.name)
        else:
            continue
        op_of[n.name] = n.op_type
    return static, dynamic, op_of, tensors, skipped


def check_node_names(ctx: RunContext, model, names: list[str], field: str) -> None:
    """Every name in ``names`` (the recipe list at ``field``) must be a node of ``model``: else a recipe error."""
    nodes = [n.name for n in model.graph.node]
    known = set(nodes)
    for i, name in enumerate(names):
        if name not in known:
            close = difflib.get_close_matches(name, nodes, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (it has {len(nodes)} nodes; see {ctx.stage_path} docs)"
            raise ctx.recipe.error(f"{ctx.stage_path}.{field}.{i}", f"no node named '{name}' in the graph{hint}")


def _check_names(ctx: RunContext, cfg: StaticQuant, model) -> None:
    check_node_names(ctx, model, cfg.include_nodes, "include_nodes")
    check_node_names(ctx, model, cfg.exclude_nodes, "exclude_nodes")
    ops = {n.op_type for n in model.graph.node}
    for i, op in enumerate(cfg.exclude_op_types):
        if op not in ops:
            close = difflib.get_close_matches(op, sorted(ops), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ctx.recipe.error(f"{ctx.stage_path}.exclude_op_types.{i}", f"no '{op}' operator in the graph{hint}")


def make_plan(ctx: RunContext, cfg: StaticQuant, work: Path, force_plain: str | None = None) -> Plan:
    plain = ctx.artifacts.get("onnx")
    fused = ctx.artifacts.get("onnx-opt")
    if plain is None and fused is None:
        raise CompressorError("quantize: {type: static} needs an ONNX model; put an 'export' stage before it")
    plan = None
    note = force_plain
    if cfg.optimized and not force_plain:
        if fused is None:
            note = "no fused graph (export.optimize is off, or ORT has no optimizer for this architecture)"
        else:
            try:
                plan = Plan(src=_shape_infer(fused, work / "fused.shaped.onnx"), fp32=fused, graph="fused")
            except Exception as e:  # symbolic shape inference fails in many ways
                note = f"ORT symbolic shape inference failed on the fused graph: {str(e).splitlines()[0][:200] if str(e) else e}"
    if plan is None:
        if plain is None:
            raise CompressorError(f"quantize: the plain ONNX export is missing and the fused graph cannot be used ({note})")
        plan = Plan(src=plain, fp32=plain, graph="plain", note=note)
    model = _load(plan.src)
    _check_names(ctx, cfg, model)
    static, dynamic, plan.op_of, plan.tensors, plan.skipped = plan_nodes(model, cfg)
    drop, only = set(cfg.exclude_nodes), set(cfg.include_nodes)

    def chosen(n: str) -> bool:
        return n not in drop and plan.op_of[n] not in cfg.exclude_op_types and (not only or n in only)

    plan.static, plan.dynamic = [n for n in static if chosen(n)], [n for n in dynamic if chosen(n)]
    if not plan.static and not plan.dynamic:
        raise ctx.recipe.error(ctx.stage_path, "no node left to quantize (check op_types, include_nodes, exclude_nodes, "
                                               "exclude_op_types)")
    return plan


def _shape_infer(src: Path, dst: Path) -> Path:
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    with warnings.catch_warnings(), quiet_libraries():
        warnings.simplefilter("ignore")
        shaped = SymbolicShapeInference.infer_shapes(onnx.load(str(src)), auto_merge=True)
    if shaped is None:
        raise RuntimeError("no result")
    _unshare_initializers(shaped)
    onnx.save(shaped, str(dst))
    return dst


def _unshare_initializers(model, max_elements: int = 1 << 20) -> int:
    """Give each consumer of a shared small initializer its own copy.

    Exporters merge identical constants (a fresh model's LayerNorm weights and zero biases are all one
    tensor); the static pass then rewrites a Gemm bias that the dynamic pass's LayerNorm also reads,
    and ORT's quantizer ends with a cyclic graph. Copies keep the two passes apart.
    """
    import onnx

    inits = {i.name: i for i in model.graph.initializer}
    seen: dict[str, int] = {}
    copies = 0
    for node in model.graph.node:
        for j, name in enumerate(node.input):
            if name not in inits:
                continue
            seen[name] = seen.get(name, 0) + 1
            if seen[name] == 1 or int(np.prod(inits[name].dims)) > max_elements:
                continue
            dup = onnx.TensorProto()
            dup.CopyFrom(inits[name])
            dup.name = f"{name}__copy{seen[name]}"
            model.graph.initializer.append(dup)
            node.input[j] = dup.name
            copies += 1
    return copies


def quantize_plan(plan: Plan, cfg: StaticQuant, cache: Path, dst: Path, keep_fp32: frozenset[str] = frozenset(),
                  only: str | None = None) -> Path:
    """Write the INT8 graph to ``dst``: QDQ for plan.static, then dynamic QAttention / QEmbedLayerNorm for plan.dynamic.

    ``keep_fp32`` nodes are left alone; ``only`` quantizes that one node (for sensitivity).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    pick = (lambda n: n == only) if only else (lambda n: n not in keep_fp32)
    static = [n for n in plan.static if pick(n)]
    dynamic = [n for n in plan.dynamic if pick(n)]
    if not static and not dynamic:
        raise CompressorError("static INT8: every candidate node is kept in fp32; nothing to quantize")
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    with warnings.catch_warnings(), quiet_libraries():
        warnings.simplefilter("ignore")
        current = plan.src
        if static:
            quantize_static(
                str(plan.src), str(dst), calibration_data_reader=None, calibration_cache_path=str(cache),
                quant_format=QuantFormat.QDQ, op_types_to_quantize=sorted({plan.op_of[n] for n in static}),
                nodes_to_quantize=static, per_channel=cfg.per_channel, reduce_range=cfg.reduce_range,
                activation_type=qtype[cfg.activation_type], weight_type=qtype[cfg.weight_type],
                calibrate_method=getattr(CalibrationMethod, METHOD_NAMES[cfg.method]),
                extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"],
                               "ActivationSymmetric": cfg.activation_type == "int8",
                               "DefaultTensorType": onnx.TensorProto.FLOAT},
            )
            current = dst
        if dynamic:
            quantize_dynamic(
                str(current), str(dst), op_types_to_quantize=sorted({plan.op_of[n] for n in dynamic}),
                nodes_to_quantize=dynamic, per_channel=False, reduce_range=cfg.reduce_range, weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    return dst


def _has_activation_qdq(path: Path) -> bool:
    return any(n.op_type == "QuantizeLinear" for n in _load(path).graph.node)


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
