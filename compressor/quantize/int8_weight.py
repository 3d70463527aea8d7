"""``quantize: {type: int8_weight}``: weight-only INT8 (MatMulNBits ``bits=8``), a scheme of its own.

The example of issue 14's extension contract: a scheme is one module with one registered function returning what it
wrote; the shared ``finalize`` (compressor/quantize/scheme.py) does the parity check, provenance and run context.
"""

from compressor.pipeline.context import RunContext
from compressor.quantize.scheme import QuantizedGraph, register_scheme
from compressor.quantize.weight_only import run_weight_only
from compressor.recipe.schema import Int8WeightQuant


@register_scheme(Int8WeightQuant)
def run_int8_weight(ctx: RunContext, cfg: Int8WeightQuant) -> QuantizedGraph:
    return run_weight_only(ctx, cfg, 8)
