"""Quantization schemes, registered by config type, and the one ``finalize`` every INT8 / INT4 artifact goes through.

A scheme is ``fn(ctx, cfg) -> QuantizedGraph``: it writes the quantized graph and says what it did. It registers
with :func:`register_scheme`, which also makes its config type a pipeline stage::

    @register_scheme(DynamicQuant)
    def run_dynamic(ctx: RunContext, cfg: DynamicQuant) -> QuantizedGraph: ...

The stage then runs :func:`finalize` on what the scheme returned, the same steps for every scheme:

1. the CPU LayerNorm rewrite (compressor/quantize/cpu_graph.py), when the scheme names a setting (``layernorm``;
   weight-only decoder graphs name none);
2. parity against PyTorch on the run's representative parity batches (compressor/onnx/batches.py), on the final
   graph, after any rewrite: a graph with a KV cache over a left-padded prefill and 5 decode steps, any other on the
   batches themselves; recorded, or enforced when the scheme sets a ``tolerance``;
3. the provenance record beside the file (compressor/onnx/onnx.py ``write_provenance``);
4. the artifact and its record in the run context; one log line.

:func:`finish_file` is steps 1-3 without a run: ``compressor export --int8`` (compressor/onnx/folder.py) uses it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from compressor.core.registry import STAGES, Registry
from compressor.onnx.batches import parity_batches
from compressor.onnx.onnx import parity, write_provenance
from compressor.pipeline.context import RunContext
from compressor.quantize.cpu_graph import tune_layernorm

log = logging.getLogger("compressor")

# config type -> ``fn(ctx, cfg) -> QuantizedGraph``
SCHEMES: Registry = Registry("quantization scheme")
DECODE_STEPS = 5  # decode steps the parity of a graph with a KV cache runs after its prefill


@dataclass
class QuantizedGraph:
    """What a scheme wrote, for :func:`finalize`."""

    path: Path
    artifact: str  # the run's artifact name: "int8" | "int4"
    what: str  # for messages: "static INT8", "weight-only INT4", ...
    record: dict  # the scheme's provenance details (``artifact``, ``parity``, ``layernorm_kernels`` are added)
    result: dict = field(default_factory=dict)  # the scheme's stage result (``artifact`` and ``parity`` are added)
    layernorm: str | None = None  # the LayerNorm kernel setting (cpu_graph.tune_layernorm); None: no rewrite
    reference: Any = None  # the PyTorch model parity compares with (default: the run's model)
    tolerance: float | None = None  # parity raises ExportError above it; None: recorded only
    parity: dict | None = None  # a check the scheme already ran on this file: reused when no rewrite followed
    inspect: Callable[[Path], dict] | None = None  # details read from the final graph, added to the record
    summary: str = ""  # scheme details for the log line
    after: Callable[[RunContext, dict], None] | None = None  # once finalized, with the stage result (QAT: plain layers back)


def register_scheme(config_type: type) -> Callable:
    """``@register_scheme(Config)`` on ``fn(ctx, cfg) -> QuantizedGraph``: the scheme, and a stage for ``Config``."""

    def deco(fn: Callable) -> Callable:
        SCHEMES.register(config_type)(fn)
        STAGES.register(config_type)(partial(run_scheme, fn))
        return fn

    return deco


def run_scheme(scheme: Callable, ctx: RunContext, cfg) -> dict:
    """The quantize stage: the scheme, then :func:`finalize`."""
    return finalize(ctx, scheme(ctx, cfg))


def check_graph(model, path: Path, batches: list[dict], tolerance: float | None, what: str, pad_id: int = 0) -> dict:
    """Parity of a quantized graph against ``model``: a graph with a KV cache (its inputs say so) over a left-padded
    prefill of prompts taken from ``batches`` and a few decode steps, any other graph on the batches themselves."""
    from compressor.arch.signature import graph_signature
    from compressor.onnx.session import make_session

    if graph_signature(make_session(path).get_inputs()) is not None:
        from compressor.onnx.decoder import cached_parity, prompts_from_batches

        return cached_parity(model, path, prompts_from_batches(batches), steps=DECODE_STEPS, tolerance=tolerance, pad_id=pad_id)
    return parity(model, path, batches, tolerance, what=what)


def finish_file(
    q: QuantizedGraph, model, batches: list[dict], threads: int | None = None, extra: dict | None = None, pad_id: int = 0
) -> dict:
    """LayerNorm rewrite, parity against ``model`` on ``batches``, provenance. Returns the provenance record."""
    kernels = tune_layernorm(q.path, q.layernorm, threads) if q.layernorm is not None else None
    rewritten = bool(kernels and (kernels.get("skip_layernorm") or kernels.get("add_layernorm")))
    if q.parity is not None and not rewritten:
        check = q.parity
    elif not batches:
        check = {}
    else:
        check = check_graph(model, q.path, batches, q.tolerance, q.what, pad_id)
    record = {"artifact": q.artifact, **(extra or {}), **q.record, "parity": check}
    if q.inspect is not None:
        record.update(q.inspect(q.path))
    if kernels is not None:
        record["layernorm_kernels"] = kernels
    write_provenance(q.path, record)
    return record


def finalize(ctx: RunContext, q: QuantizedGraph) -> dict:
    """Finish a scheme's graph (see the module docstring) and register it with the run. Returns the stage result."""
    model = q.reference if q.reference is not None else ctx.model
    tok = ctx.tokenizer
    pad = tok.pad_token_id if tok is not None and tok.pad_token_id is not None else 0
    record = finish_file(
        q, model, parity_batches(ctx), ctx.recipe.bench.threads, {"recipe": ctx.recipe.name, "seed": ctx.seed}, pad
    )
    check = record["parity"]
    ctx.artifacts[q.artifact], ctx.provenance[q.artifact] = q.path, record
    log.info(
        "%s: %s%s; max |diff| vs PyTorch %.4g, argmax agreement %.4f",
        q.what,
        q.path.name,
        f", {q.summary}" if q.summary else "",
        check.get("max_abs_diff", float("nan")),
        check.get("argmax_agreement", float("nan")),
    )
    result = {"artifact": str(q.path.relative_to(ctx.run_dir)), **q.result, "parity": check}
    if q.after is not None:
        q.after(ctx, result)
    return result
