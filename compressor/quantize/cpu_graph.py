"""CPU kernel choice for residual Add + LayerNorm in INT8 graphs.

ONNX Runtime fuses ``LayerNormalization(Add(x, skip [+ bias]))`` into its ``SkipLayerNormalization``
contrib op, both in its offline transformer optimizer and again when a session loads a graph. On
ONNX Runtime 1.32's CPU provider that kernel is much slower than the two ops it replaces (measured
here at width 384, batch 1 x 128: 249 us against 48 us for Sum + LayerNormalization), and a MiniLM
encoder has 12 of them: 2.5 ms of a 14.5 ms INT8 forward pass. ORT's fusion matches the ``Add`` op
only, so writing the residual sum as the equivalent variadic ``Sum`` keeps the faster pair under the
default session options a user deploys with; nothing else in the graph changes.

``auto`` (the default of every quantize stage) times both forms at the model's width on this machine
and splits only when the pair is clearly faster, so a build of ONNX Runtime whose fused kernel is fast
keeps it. INT8 graphs are CPU artifacts (their integer kernels are CPU ones), so the GPU, where the
fused kernel pays, is not affected; the fp32 ``model.opt.onnx`` keeps its fusions.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("compressor")

# split when the fused kernel takes more than this factor of Sum + LayerNormalization
SLOWER = 1.2


def _consumers(graph) -> dict[str, int]:
    used: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            used[name] = used.get(name, 0) + 1
    for out in graph.output:
        used[out.name] = used.get(out.name, 0) + 1
    return used


def _fold_residual_add(add, add_producing, drop: set[int]) -> None:
    """The residual ``Add`` feeding a LayerNorm becomes a ``Sum``, taking in the terms of a bias ``Add`` that feeds
    only it (that Add is dropped); ``Sum`` keeps the output name (it may feed more than the LayerNorm: pre-LN)."""
    terms: list[str] = []
    for name in add.input:
        inner = add_producing(name, single_use=True)
        if inner is not None and id(inner) not in drop:
            terms.extend(inner.input)
            drop.add(id(inner))
        else:
            terms.append(name)
    add.op_type = "Sum"
    del add.input[:]
    add.input.extend(terms)


def _unfused_skip_layernorm(node) -> list | None:
    """``Sum`` + ``LayerNormalization`` for a SkipLayerNormalization node; None when it must stay (its mean or
    inverse std dev outputs are used: only the fused op produces them)."""
    from onnx import helper

    outs = list(node.output) + [""] * (4 - len(node.output))
    if outs[1] or outs[2]:
        return None
    data, skip, gamma, beta, bias = (list(node.input) + [""] * (5 - len(node.input)))[:5]
    total = outs[3] or f"{node.name or outs[0]}_residual_sum"
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
    return [
        helper.make_node("Sum", [data, skip] + ([bias] if bias else []), [total], name=f"{node.name}_Sum"),
        helper.make_node(
            "LayerNormalization",
            [total, gamma] + ([beta] if beta else []),
            [outs[0]],
            name=f"{node.name}_LayerNorm",
            axis=-1,
            epsilon=eps,
        ),
    ]


def split_skip_layernorm(model) -> dict:
    """Rewrite, in place, every residual sum feeding a LayerNorm as ``Sum`` + ``LayerNormalization``.

    Covers both forms: ``SkipLayerNormalization`` nodes (the fused graph) and ``Add`` (optionally fed
    by a bias ``Add``) → ``LayerNormalization`` pairs (a plain export, which ORT would fuse at load).
    Returns {"skip_layernorm": n rewritten contrib nodes, "add_layernorm": n rewritten Add pairs, "kept": n left}.
    """
    graph = model.graph
    nodes_in = list(graph.node)  # one Python object per node, held for the whole pass: ids below stay valid
    producer = {out: node for node in nodes_in for out in node.output}
    used = _consumers(graph)
    rewritten_sln = rewritten_add = kept = 0
    drop: set[int] = set()
    replace: dict[int, list] = {}

    def add_producing(name: str, single_use: bool):
        node = producer.get(name)
        ok = node is not None and node.op_type == "Add" and node.domain in ("", "ai.onnx")
        return node if ok and (used.get(name) == 1 or not single_use) else None

    for node in nodes_in:
        if node.op_type == "LayerNormalization" and node.domain in ("", "ai.onnx"):
            add = add_producing(node.input[0], single_use=False)
            if add is not None and id(add) not in drop and add.op_type == "Add":
                _fold_residual_add(add, add_producing, drop)
                rewritten_add += 1
        elif node.op_type == "SkipLayerNormalization" and node.domain == "com.microsoft":
            pair = _unfused_skip_layernorm(node)
            if pair is None:
                kept += 1
            else:
                replace[id(node)] = pair
                rewritten_sln += 1
    if replace or drop:
        nodes = []
        for node in nodes_in:
            if id(node) in replace:
                nodes.extend(replace[id(node)])
            elif id(node) not in drop:
                nodes.append(node)
        del graph.node[:]
        graph.node.extend(nodes)
    if rewritten_sln:  # LayerNormalization is an opset-17 op
        for opset in model.opset_import:
            if opset.domain in ("", "ai.onnx") and opset.version < 17:
                opset.version = 17
    return {"skip_layernorm": rewritten_sln, "add_layernorm": rewritten_add, "kept": kept}


def _layernorm_models(width: int) -> tuple[bytes, bytes]:
    from onnx import TensorProto, helper, numpy_helper

    def build(fused: bool) -> bytes:
        inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "s", width]) for n in ("x", "y")]
        consts = [
            numpy_helper.from_array(np.ones(width, np.float32), "g"),
            numpy_helper.from_array(np.zeros(width, np.float32), "b0"),
            numpy_helper.from_array(np.full(width, 0.1, np.float32), "bias"),
        ]
        if fused:
            nodes = [
                helper.make_node(
                    "SkipLayerNormalization", ["x", "y", "g", "b0", "bias"], ["o"], domain="com.microsoft", epsilon=1e-12
                )
            ]
        else:
            nodes = [
                helper.make_node("Sum", ["x", "y", "bias"], ["t"]),
                helper.make_node("LayerNormalization", ["t", "g", "b0"], ["o"], axis=-1, epsilon=1e-12),
            ]
        graph = helper.make_graph(
            nodes, "ln", inputs, [helper.make_tensor_value_info("o", TensorProto.FLOAT, ["b", "s", width])], consts
        )
        opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
        return helper.make_model(graph, opset_imports=opsets, ir_version=8).SerializeToString()

    return build(True), build(False)


def time_layernorm_kernels(width: int, threads: int | None = None, tokens: int = 128, budget_s: float = 0.4) -> dict:
    """Median microseconds of SkipLayerNormalization vs Sum + LayerNormalization at ``width``, here."""
    from compressor.onnx.session import make_session

    rng = np.random.default_rng(0)
    feed = {n: rng.standard_normal((1, tokens, width), dtype=np.float32) for n in ("x", "y")}
    out = {}
    for label, blob in zip(("fused_us", "split_us"), _layernorm_models(width)):
        session = make_session(blob, threads or 1)
        for _ in range(10):
            session.run(None, feed)
        times: list[float] = []
        stop = time.perf_counter() + budget_s / 2
        while time.perf_counter() < stop or len(times) < 20:
            t0 = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - t0)
        out[label] = round(float(np.median(times)) * 1e6, 1)
        del session
    return out


def graph_width(model) -> int | None:
    """Hidden width of the first LayerNorm's scale, if the graph has one."""
    inits = {i.name: i for i in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.op_type in ("LayerNormalization", "SkipLayerNormalization") and len(node.input) > 2:
            name = node.input[2] if node.op_type == "SkipLayerNormalization" else node.input[1]
            if name not in inits and name in producer and producer[name].input:  # a dequantized (shared) constant
                name = producer[name].input[0]
            scale = inits.get(name)
            if scale is not None and len(scale.dims) == 1:
                return int(scale.dims[0])
    return None


def tune_layernorm(path: Path, mode: str, threads: int | None = None) -> dict:
    """Apply ``mode`` ('auto', 'split' or 'fused') to the INT8 graph at ``path`` (rewritten in place).

    Returns the provenance record: the mode, the decision, the kernel timings when measured and the
    rewritten counts.
    """
    import onnx

    from compressor.core.rundir import atomic_write_onnx

    record: dict = {"mode": mode}
    if mode == "fused":
        record["decision"] = "fused (as asked)"
        return record
    model = onnx.load(str(path))
    width = graph_width(model)
    if width is None:
        record["decision"] = "no LayerNorm in the graph"
        return record
    if mode == "auto":
        timing = time_layernorm_kernels(width, threads)
        record["timing"] = {**timing, "width": width, "tokens": 128, "threads": threads or 1}
        if not timing["fused_us"] > SLOWER * timing["split_us"]:
            record["decision"] = (
                f"fused: SkipLayerNormalization {timing['fused_us']:.0f} us is not slower than "
                f"Sum + LayerNormalization {timing['split_us']:.0f} us here"
            )
            return record
        record["decision"] = (
            f"split: SkipLayerNormalization {timing['fused_us']:.0f} us vs Sum + LayerNormalization "
            f"{timing['split_us']:.0f} us at width {width} here"
        )
    else:
        record["decision"] = "split (as asked)"
    counts = split_skip_layernorm(model)
    record.update(counts)
    if counts["skip_layernorm"] or counts["add_layernorm"]:
        atomic_write_onnx(model, path)
    log.info(
        "INT8 LayerNorm kernels: %s (%d SkipLayerNormalization and %d Add → LayerNorm rewritten as Sum + LayerNormalization)",
        record["decision"],
        counts["skip_layernorm"],
        counts["add_layernorm"],
    )
    return record
