"""Export of a fake-quant (QAT) model as an ONNX QDQ graph with INT8 weights.

The fake-quant graph is traced (``fake_quantize_*`` become QuantizeLinear / DequantizeLinear), each QuantizeLinear of
a constant weight is folded into an int8 initializer, and embedding tables may be stored as per-tensor uint8
(weight-only; ORT gathers uint8 rows, then dequantizes them). :func:`ort_kernels` records the kernels ONNX Runtime
runs (onnxruntime 1.32: every quantized layer becomes MatMulIntegerToFloat).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from compressor.core.errors import CompressorError, ExportError
from compressor.core.rundir import tmp_sibling
from compressor.onnx.onnx import export_model
from compressor.quantize.fakequant import A_QMAX, A_QMIN, activation_qparams, wrappers

log = logging.getLogger("compressor")
INTEGER_KERNELS = ("MatMulIntegerToFloat", "QLinearMatMul", "MatMulInteger", "DynamicQuantizeLinear", "QGemm")  # ORT


@contextlib.contextmanager
def _static_qparams(model) -> Iterator[None]:
    """Scales / zero points as constants while tracing, so the QuantizeLinear inputs are constants too."""
    layers = [m for _, m in wrappers(model)]
    try:
        with torch.no_grad():
            for m in layers:
                m.static_qparams = tuple(None if t is None else t.detach().clone() for t in m.qparams())
        yield
    finally:
        for m in layers:
            m.static_qparams = None


def _fold_weights(model) -> dict:
    """QuantizeLinear(constant fp32 weight) -> an int8 initializer feeding the DequantizeLinear."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in g.node if n.op_type == "Constant" and n.attribute[0].name == "value"}
    consumers: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)

    def value(name):
        t = inits[name] if name in inits else consts.get(name)
        return None if t is None else numpy_helper.to_array(t)

    folded, before, after = 0, 0, 0
    for n in [n for n in g.node if n.op_type == "QuantizeLinear" and len(n.input) == 3]:
        w, scale, zp = (value(x) for x in n.input)
        if w is None or w.dtype != np.float32 or w.ndim != 2 or scale is None or zp is None:
            continue
        shape = [1, 1]
        if scale.ndim:
            shape[next((a.i for a in n.attribute if a.name == "axis"), 1)] = -1
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(w / scale.reshape(shape)) + zp.reshape(shape).astype(np.int64), info.min, info.max)
        tensor = numpy_helper.from_array(q.astype(zp.dtype), f"{(n.name or n.output[0]).strip('/')}.int8")
        g.initializer.append(tensor)
        for m in consumers.get(n.output[0], []):
            m.input[:] = [tensor.name if x == n.output[0] else x for x in m.input]
        consumers[n.input[0]].remove(n)
        if not consumers[n.input[0]] and n.input[0] in inits:  # the fp32 weight has no other reader
            g.initializer.remove(inits.pop(n.input[0]))
        g.node.remove(n)
        folded, before, after = folded + 1, before + w.nbytes, after + q.size * np.dtype(zp.dtype).itemsize
    return {"folded_weights": folded, "weight_bytes_fp32": before, "weight_bytes_int8": after}


def _quantize_tables(model) -> list[str]:
    """2-D fp32 tables read only by Gather (axis 0): uint8 per-tensor asymmetric, DQ -> Gather -> Q -> DQ.

    ORT drops the pair around Gather (so it gathers uint8 rows and dequantizes only those) when DQ and Q
    share u8 parameters; with int8 its s8 -> u8 rewrite of the Q leaves the whole table dequantized per run.
    """
    from onnx import helper, numpy_helper

    g = model.graph
    readers: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            readers.setdefault(x, []).append(n)
    done, nodes = [], list(g.node)
    for init in list(g.initializer):
        name, users = init.name, readers.get(init.name, [])
        if (
            len(init.dims) != 2
            or init.data_type != 1
            or not users
            or min(init.dims) < 2
            or any(u.op_type != "Gather" or u.input[0] != name or any(a.i for a in u.attribute) for u in users)
        ):
            continue
        table = numpy_helper.to_array(init)
        scale, zp = (t.item() for t in activation_qparams(torch.tensor(float(table.min())), torch.tensor(float(table.max()))))
        q = np.clip(np.rint(table / np.float32(scale)) + zp, A_QMIN, A_QMAX).astype(np.uint8)
        g.initializer.remove(init)
        g.initializer.extend(
            [
                numpy_helper.from_array(q, f"{name}.uint8"),
                numpy_helper.from_array(np.array(scale, np.float32), f"{name}.scale"),
                numpy_helper.from_array(np.array(zp, np.uint8), f"{name}.zero_point"),
            ]
        )
        qp = [f"{name}.scale", f"{name}.zero_point"]
        nodes.insert(
            nodes.index(users[0]), helper.make_node("DequantizeLinear", [f"{name}.uint8", *qp], [f"{name}.dq"], name=f"{name}/DQ")
        )
        for j, u in enumerate(users):
            out = u.output[0]
            u.input[0], u.output[0] = f"{name}.dq", f"{out}.gathered"
            at = nodes.index(u) + 1
            nodes[at:at] = [
                helper.make_node("QuantizeLinear", [f"{out}.gathered", *qp], [f"{out}.q"], name=f"{name}/Q{j}"),
                helper.make_node("DequantizeLinear", [f"{out}.q", *qp], [out], name=f"{name}/DQ{j}"),
            ]
        done.append(name)
    del g.node[:]
    g.node.extend(nodes)
    return done


def qdq_structure(model) -> dict:
    """Counts of the QDQ pattern: activation Q->DQ pairs, weight DQs of int8 initializers, MatMuls fed by both."""
    g = model.graph
    prod = {o: n.op_type for n in g.node for o in n.output}
    int8 = {i.name for i in g.initializer if i.data_type == 3}  # TensorProto.INT8
    act = sum(1 for n in g.node if n.op_type == "DequantizeLinear" and prod.get(n.input[0]) == "QuantizeLinear")
    wdq = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in int8}
    mm = [n for n in g.node if n.op_type == "MatMul" and n.input[1] in wdq]
    full = sum(1 for n in mm if prod.get(n.input[0]) == "DequantizeLinear")
    return {
        "activation_qdq_pairs": act,
        "weight_dequantize": len(wdq),
        "quantized_matmuls": full,
        "weight_only_matmuls": len(mm) - full,
    }


def ort_kernels(path: Path) -> dict[str, int]:
    """Node types in the graph ONNX Runtime runs (all optimizations on), from its optimized-model dump."""
    import onnx

    from compressor.onnx.session import make_session

    tmp = tmp_sibling(Path(path))
    try:
        make_session(
            path,
            optimized_model_path=tmp / "ort.onnx",
            config={"session.optimized_model_external_initializers_file_name": "ort.onnx.data"},
        )
        ops = Counter(n.op_type for n in onnx.load(str(tmp / "ort.onnx"), load_external_data=False).graph.node)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dict(sorted(ops.items()))


def export_qdq(model, batch: dict, out_path: Path, opset: int = 17, quantize_embeddings: bool = True) -> dict:
    """Export a fake-quant model to an ONNX QDQ graph with int8 weights at ``out_path`` (atomically).

    Returns the provenance details: quantized layer / QDQ counts, weight bytes, embeddings, opset, exporter.
    """
    import onnx

    layers = [m for _, m in wrappers(model)] if model is not None else []
    if not layers:
        raise CompressorError("export_qdq: the model has no fake-quantized layers (train it with `qat:`)")
    if opset < 13:
        raise CompressorError(f"QDQ with per-channel weights needs opset >= 13 (got {opset})")
    if not any(m.fake_quant for m in layers):
        raise CompressorError("export_qdq: fake quantization is off (the model was never calibrated / trained with qat)")
    if unobserved := sum(1 for m in layers if m.fake_quant and not m.observed):
        log.warning("qat export: %d layer(s) never saw data; their inputs stay fp32 (weight-only)", unobserved)
    out_path = Path(out_path)
    work = tmp_sibling(out_path)
    try:
        model.cpu().eval()
        with _static_qparams(model):
            info = export_model(model, batch, work / "fake-quant.onnx", opset=opset)
        proto = onnx.load(str(work / "fake-quant.onnx"))
        folded = _fold_weights(proto)
        tables = _quantize_tables(proto) if quantize_embeddings else []
        onnx.checker.check_model(proto)
        structure = qdq_structure(proto)
        big = sum(len(i.raw_data) for i in proto.graph.initializer) > 1_800_000_000  # protobuf's 2 GB limit
        onnx.save(proto, str(work / out_path.name), save_as_external_data=big, location=out_path.name + ".data")
        for f in (work / out_path.name, work / (out_path.name + ".data")):
            if f.exists():
                f.replace(out_path.parent / f.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if structure["quantized_matmuls"] == 0:
        raise ExportError(f"{out_path}: no MatMul reads int8 weights after export; the QDQ pattern was not produced")
    return {
        **{k: info[k] for k in ("exporter", "opset", "inputs", "seconds")},
        "quantized_linears": len(layers),
        **structure,
        **folded,
        "embeddings_quantized": tables,
        "quantize_embeddings": quantize_embeddings,
    }
