"""Dynamic INT8 (``quantize: {type: dynamic}``): weights quantized ahead, activations at run time, by ONNX Runtime.

The scheme writes the graph; the shared ``finalize`` (compressor/quantize/scheme.py) checks and records it."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

from compressor.core.errors import CompressorError
from compressor.core.rundir import quiet_libraries, tmp_sibling
from compressor.core.writeerrors import writing
from compressor.pipeline.context import RunContext
from compressor.quantize.scheme import QuantizedGraph, register_scheme
from compressor.quantize.static_graph import check_node_names
from compressor.recipe.schema import DynamicQuant

log = logging.getLogger("compressor")


def quantize_dynamic_file(src: Path, dst: Path, cfg: DynamicQuant) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = tmp_sibling(dst)
    try:
        with warnings.catch_warnings(), quiet_libraries(), writing(f"the INT8 graph ({dst})", dst):
            warnings.simplefilter("ignore")
            quantize_dynamic(
                str(src),
                str(tmp / dst.name),
                per_channel=cfg.per_channel,
                reduce_range=cfg.reduce_range,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=list(cfg.include_nodes) or None,
                nodes_to_exclude=list(cfg.exclude_nodes),
                # fused graphs carry ops without type info; without this the quantizer stops
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        (tmp / dst.name).replace(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@register_scheme(DynamicQuant)
def run_dynamic(ctx: RunContext, cfg: DynamicQuant) -> QuantizedGraph:
    source = ctx.artifacts.get("onnx-opt") if cfg.optimized else None
    source = source or ctx.artifacts.get("onnx")
    if source is None:
        raise CompressorError("quantize: {type: dynamic} needs an ONNX model; put an 'export' stage before it")
    if cfg.include_nodes or cfg.exclude_nodes:
        import onnx

        graph = onnx.load(str(source), load_external_data=False)
        check_node_names(ctx, graph, cfg.include_nodes, "include_nodes")
        check_node_names(ctx, graph, cfg.exclude_nodes, "exclude_nodes")
    dst = ctx.run_dir / "onnx" / "model.int8.onnx"
    quantize_dynamic_file(source, dst, cfg)
    record = {
        "source": source.name,
        "scheme": "dynamic",
        "weight_type": "int8",
        "per_channel": cfg.per_channel,
        "reduce_range": cfg.reduce_range,
        "included_nodes": list(cfg.include_nodes),
        "excluded_nodes": list(cfg.exclude_nodes),
    }
    return QuantizedGraph(dst, "int8", "dynamic INT8", record, layernorm=cfg.layernorm)
