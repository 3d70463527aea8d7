"""ONNX Runtime feeds by input name, shared by evaluation, perplexity and the benchmarks (a leaf: imports no
other measure module)."""

from __future__ import annotations

import numpy as np


def onnx_feed(session, batch: dict) -> dict[str, np.ndarray]:
    """Feed ONNX inputs by name, from the graph's signature (compressor/arch/signature.py): token types default to
    zeros; a causal LM's cached graph gets positions from the mask and an empty cache: a plain forward pass."""
    from compressor.arch.signature import session_feed

    return session_feed(session.get_inputs(), batch)
