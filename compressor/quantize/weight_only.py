"""Weight-only quantization of the exported graph's MatMuls with ONNX Runtime's ``MatMulNBits`` (round to nearest).

``quantize: {type: int4}`` stores every constant MatMul weight in 4 bits, in blocks of ``block_size`` input rows
with one scale (and, asymmetric, one zero point) per block and output column; ``{type: int8_weight}`` does the same
with 8 bits (MatMulNBits ``bits=8``, ONNX Runtime >= 1.21). Activations stay fp32; with ``accuracy_level: 4`` the
CPU kernel quantizes them to int8 per block on the fly, as onnxruntime-genai's model builder does for CPU.

Gemm nodes with a constant weight (GPT-2's Conv1D, OPT's projections after TorchScript export) are first rewritten
to MatMul + Add, which is exact, since the quantizer takes MatMul only. ``include_lm_head: false`` keeps the output
projection (the MatMul that yields ``logits``) in fp32; ``include_embeddings: true`` (INT4) stores the token
embedding table in 4 bits too (``GatherBlockQuantized``, as onnxruntime-genai's builder does). A block size must divide each quantized layer's input width;
``compressor validate`` checks it against config.json (hidden and intermediate sizes) and the stage again against the
graph itself.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import numpy as np

from compressor.core.errors import CompressorError
from compressor.core.rundir import quiet_libraries, tmp_sibling
from compressor.pipeline.context import RunContext
from compressor.quantize.scheme import QuantizedGraph, register_scheme
from compressor.quantize.tables import embedding_gathers, fold_table_transposes, share_tied_tables
from compressor.recipe.schema import Int4Quant, Int8WeightQuant

log = logging.getLogger("compressor")
ARTIFACT = {4: ("int4", "model.int4.onnx"), 8: ("int8", "model.int8.onnx")}


def gemm_to_matmul(model) -> int:
    """Rewrite Gemm(A, W, C) with a constant W (alpha = beta = 1, no transA) as MatMul(A, W') + C. Returns the count."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    nodes, done = [], 0
    for n in g.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if (
            n.op_type != "Gemm"
            or n.input[1] not in inits
            or attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
        ):
            nodes.append(n)
            continue
        weight = numpy_helper.to_array(inits[n.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        w_name = n.input[1] + "_matmul"
        g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), w_name))
        has_bias = len(n.input) > 2 and n.input[2]
        mm_out = n.output[0] + "_matmul" if has_bias else n.output[0]
        nodes.append(helper.make_node("MatMul", [n.input[0], w_name], [mm_out], name=n.name + "_MatMul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [mm_out, n.input[2]], [n.output[0]], name=n.name + "_Add"))
        done += 1
    if done:
        del g.node[:]
        g.node.extend(nodes)
        used = {i for n in g.node for i in n.input}
        keep = [i for i in g.initializer if i.name in used]
        del g.initializer[:]
        g.initializer.extend(keep)
        onnx.checker.check_model(model) if model.ByteSize() < 2**31 else None
    return done


def weight_matmuls(model) -> dict[str, int]:
    """Constant-weight MatMul node -> input width K (rows of its weight)."""
    inits = {i.name: i for i in model.graph.initializer}
    return {
        n.name: int(inits[n.input[1]].dims[0])
        for n in model.graph.node
        if n.op_type == "MatMul" and n.input[1] in inits and len(inits[n.input[1]].dims) == 2
    }


def lm_head_nodes(model) -> list[str]:
    """The MatMul producing the graph output ``logits`` (directly, or through an Add of a bias)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    node = producer.get("logits")
    while node is not None and node.op_type in ("Add", "Identity", "Reshape"):
        node = producer.get(node.input[0])
    return [node.name] if node is not None and node.op_type == "MatMul" else []


def quantize_file(
    src: Path,
    dst: Path,
    bits: int,
    block_size: int,
    symmetric: bool,
    include_lm_head: bool,
    accuracy_level: int | None,
    include_embeddings: bool = False,
) -> dict:
    """MatMulNBits quantization of ``src`` into ``dst`` (atomic); with ``include_embeddings`` (4 bits only) the token
    embedding table too (GatherBlockQuantized, blocks along the hidden axis). Returns what was done."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    if include_embeddings and bits != 4:
        raise CompressorError(f"include_embeddings: ONNX Runtime's GatherBlockQuantized takes 4-bit tables, not {bits}-bit")
    model = onnx.load(str(src))
    rewritten = gemm_to_matmul(model)
    widths = weight_matmuls(model)
    excluded = [] if include_lm_head else lm_head_nodes(model)
    tied = fold_table_transposes(model) if include_embeddings else {}
    tables, other_gathers = embedding_gathers(model) if include_embeddings else ([], [])
    if include_embeddings and not tables:
        raise CompressorError(f"{src}: include_embeddings: no Gather of a constant table by input_ids in the graph")
    bad = {n: k for n, k in widths.items() if k % block_size and n not in excluded}
    if bad:
        name, k = next(iter(bad.items()))
        raise CompressorError(
            f"block_size {block_size} does not divide the input width {k} of {name} "
            f"({len(bad)} such layer{'s' if len(bad) > 1 else ''}); pick a block size that divides it"
        )
    cfg = DefaultWeightOnlyQuantConfig(
        block_size=block_size,
        is_symmetric=symmetric,
        accuracy_level=accuracy_level,
        bits=bits,
        op_types_to_quantize=("MatMul", "Gather") if tables else None,
    )
    qlog = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level, qlog.level = qlog.level, logging.WARNING
    tmp = tmp_sibling(dst)
    try:
        with warnings.catch_warnings(), quiet_libraries():
            warnings.simplefilter("ignore")
            quantizer = MatMulNBitsQuantizer(model, algo_config=cfg, nodes_to_exclude=excluded + other_gathers)
            quantizer.process()
            shared = share_tied_tables(quantizer.model.model, tied) if include_lm_head else 0
            quantizer.model.save_model_to_file(str(tmp / dst.name), use_external_data_format=False)
        (tmp / dst.name).replace(dst)
    finally:
        qlog.level = level
        shutil.rmtree(tmp, ignore_errors=True)
    nodes = onnx.load(str(dst), load_external_data=False).graph.node
    nbits = [n for n in nodes if n.op_type == "MatMulNBits"]
    return {
        "bits": bits,
        "block_size": block_size,
        "symmetric": symmetric,
        "accuracy_level": accuracy_level,
        "method": "rtn",
        "matmulnbits_nodes": len(nbits),
        "fp32_matmuls": len(widths) - len(nbits),
        "gemm_rewritten": rewritten,
        "excluded_nodes": excluded,
        "include_embeddings": include_embeddings,
        "tied_tables_shared": shared,
        "gather_block_quantized_nodes": sum(n.op_type == "GatherBlockQuantized" for n in nodes),
    }


def run_weight_only(ctx: RunContext, cfg: Int4Quant | Int8WeightQuant, bits: int) -> QuantizedGraph:
    """The weight-only scheme at ``bits``; the shared ``finalize`` (compressor/quantize/scheme.py) checks and records it
    (parity recorded, not enforced: a graph with a KV cache over a left-padded prefill and 5 decode steps)."""
    source = ctx.artifacts.get("onnx")
    if source is None:
        raise CompressorError(f"quantize: {{type: {cfg.type}}} needs an ONNX model; put an 'export' stage before it")
    from compressor.recipe.block_sizes import block_size_problem

    problem = block_size_problem(ctx.model.config, cfg.block_size)
    if problem:
        raise ctx.recipe.error(f"{ctx.stage_path}.block_size", problem)
    name, file = ARTIFACT[bits]
    dst = ctx.run_dir / "onnx" / file
    try:
        info = quantize_file(
            source, dst, bits, cfg.block_size, cfg.symmetric, cfg.include_lm_head, cfg.accuracy_level, cfg.include_embeddings
        )
    except CompressorError as e:
        raise ctx.recipe.error(f"{ctx.stage_path}.block_size", str(e)) from None
    record = {"source": source.name, "scheme": f"weight-only int{bits} (MatMulNBits)", **info}
    return QuantizedGraph(
        dst,
        name,
        f"weight-only INT{bits}",
        record,
        dict(info),
        summary=f"{info['matmulnbits_nodes']} MatMulNBits (block {cfg.block_size}, "
        f"{'symmetric' if cfg.symmetric else 'asymmetric'})",
    )


@register_scheme(Int4Quant)
def run_int4(ctx: RunContext, cfg: Int4Quant) -> QuantizedGraph:
    return run_weight_only(ctx, cfg, 4)
