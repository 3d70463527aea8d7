"""Post-training quantization of the exported ONNX graph with ONNX Runtime."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

from compressor.core.errors import CompressorError
from compressor.core.registry import STAGES
from compressor.core.rundir import quiet_libraries, tmp_sibling
from compressor.core.writeerrors import writing
from compressor.onnx.onnx import parity, write_provenance
from compressor.onnx.stage import parity_batches
from compressor.pipeline.context import RunContext
from compressor.quantize.cpu_graph import tune_layernorm
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


@STAGES.register(DynamicQuant)
def run_dynamic(ctx: RunContext, cfg: DynamicQuant) -> dict:
    source = ctx.artifacts.get("onnx-opt") if cfg.optimized else None
    source = source or ctx.artifacts.get("onnx")
    if source is None:
        raise CompressorError("quantize: {type: dynamic} needs an ONNX model; put an 'export' stage before it")
    if cfg.include_nodes or cfg.exclude_nodes:
        import onnx

        from compressor.quantize.static_graph import check_node_names

        graph = onnx.load(str(source), load_external_data=False)
        check_node_names(ctx, graph, cfg.include_nodes, "include_nodes")
        check_node_names(ctx, graph, cfg.exclude_nodes, "exclude_nodes")
    dst = ctx.run_dir / "onnx" / "model.int8.onnx"
    quantize_dynamic_file(source, dst, cfg)
    kernels = tune_layernorm(dst, cfg.layernorm, ctx.recipe.bench.threads)
    batches = parity_batches(ctx)
    check = parity(ctx.model, dst, batches, tolerance=None, what="INT8") if batches else {}
    ctx.artifacts["int8"] = dst
    record = {"artifact": "int8", "source": source.name, "scheme": "dynamic", "weight_type": "int8",
              "per_channel": cfg.per_channel, "reduce_range": cfg.reduce_range, "included_nodes": list(cfg.include_nodes),
              "excluded_nodes": list(cfg.exclude_nodes), "layernorm_kernels": kernels,
              "parity": check}
    write_provenance(dst, record)
    ctx.provenance["int8"] = record
    log.info("dynamic INT8: %s (max |diff| vs PyTorch %.4g, argmax agreement %.4f)", dst.name,
             check.get("max_abs_diff", float("nan")), check.get("argmax_agreement", float("nan")))
    return {"artifact": str(dst.relative_to(ctx.run_dir)), "parity": check}

