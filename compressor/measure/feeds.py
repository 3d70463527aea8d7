"""ONNX Runtime feeds by input name, shared by evaluation, perplexity and the benchmarks (a leaf: imports no
other measure module)."""

from __future__ import annotations

import numpy as np


def onnx_feed(session, batch: dict) -> dict[str, np.ndarray]:
    """Feed ONNX inputs by name (never by position: BERT's mask and segment ids would swap). A causal LM's cached
    graph (compressor/onnx/decoder.py) gets positions from the mask and an empty cache: a plain forward pass."""
    from compressor.arch.signature import graph_signature

    sig = graph_signature(session.get_inputs())
    if sig is not None:
        return sig.feed(batch)
    feed = {}
    for inp in session.get_inputs():
        if inp.name in batch:
            feed[inp.name] = np.asarray(batch[inp.name], dtype=np.int64)
        elif inp.name == "token_type_ids":
            feed[inp.name] = np.zeros_like(np.asarray(batch["input_ids"]), dtype=np.int64)
        else:
            from compressor.core.errors import ExportError

            raise ExportError(f"ONNX model expects an input '{inp.name}' that the tokenizer does not produce")
    return feed
