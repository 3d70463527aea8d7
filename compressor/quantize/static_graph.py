"""Static INT8, the graph half: which nodes to quantize (the plan) and one QDQ quantization of a plan.

budget.py quantizes single nodes through ``quantize_plan`` and static.py runs the whole scheme; both import this
module, which imports neither (it used to live in static.py, closing an import cycle with budget.py).
"""

from __future__ import annotations

import difflib
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compressor.core.errors import CompressorError
from compressor.core.rundir import quiet_libraries
from compressor.pipeline.context import RunContext
from compressor.quantize.calibration import METHOD_NAMES
from compressor.recipe.schema import StaticQuant

log = logging.getLogger("compressor")


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
        raise ctx.recipe.error(
            ctx.stage_path, "no node left to quantize (check op_types, include_nodes, exclude_nodes, exclude_op_types)"
        )
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


def quantize_plan(
    plan: Plan, cfg: StaticQuant, cache: Path, dst: Path, keep_fp32: frozenset[str] = frozenset(), only: str | None = None
) -> Path:
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
                str(plan.src),
                str(dst),
                calibration_data_reader=None,
                calibration_cache_path=str(cache),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=sorted({plan.op_of[n] for n in static}),
                nodes_to_quantize=static,
                per_channel=cfg.per_channel,
                reduce_range=cfg.reduce_range,
                activation_type=qtype[cfg.activation_type],
                weight_type=qtype[cfg.weight_type],
                calibrate_method=getattr(CalibrationMethod, METHOD_NAMES[cfg.method]),
                extra_options={
                    "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"],
                    "ActivationSymmetric": cfg.activation_type == "int8",
                    "DefaultTensorType": onnx.TensorProto.FLOAT,
                },
            )
            current = dst
        if dynamic:
            quantize_dynamic(
                str(current),
                str(dst),
                op_types_to_quantize=sorted({plan.op_of[n] for n in dynamic}),
                nodes_to_quantize=dynamic,
                per_channel=False,
                reduce_range=cfg.reduce_range,
                weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    return dst


def _has_activation_qdq(path: Path) -> bool:
    return any(n.op_type == "QuantizeLinear" for n in _load(path).graph.node)
