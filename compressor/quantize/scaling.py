"""Exact per-channel re-scaling of a decoder's linear layers, shared by AWQ (quantize/awq.py) and SmoothQuant
(quantize/smoothquant.py).

A *pair* is a producer whose output feeds only some linear layers: a LayerNorm / RMSNorm before the attention or MLP
projections, an ``up`` projection whose output is multiplied element-wise into ``down``'s input, a ``v`` projection
feeding the attention output projection, or OPT's ``fc1`` through a ReLU. Dividing the producer's output channel j by
``s_j`` and multiplying column j of every consumer's weight by ``s_j`` leaves the model's function unchanged (exactly,
up to float rounding): ``W·x = (W·diag(s))·(x / s)``. Quantizing the re-scaled weights then puts the precision where
the activations are large (AWQ) or moves activation outliers into the weights (SmoothQuant).

Observe, then apply: :func:`observe` runs calibration blocks through the model once with hooks and keeps, per pair,
the per-channel max |x| and mean |x| of the consumers' input and a sample of input rows; the schemes compute scales
from those, :func:`apply_scales` folds them in, and :func:`check_unchanged` proves the fp32 logits did not move.

Pairs are found by the module names of the families compressor knows (GPT-2, OPT, Llama / Qwen2 / Mistral, Phi-3);
a pair whose producer is not plainly scalable (Gemma's ``1 + weight`` norm, OPT with post-layer norms, a ``v`` that
grouped-query attention shares between heads, GELU between GPT-2's ``c_fc`` and ``c_proj``) is left out, and its
layers are quantized without scales.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compressor.core.errors import CompressorError

# (producer attribute of a layer, consumer attributes) per layout; a dotted name reads through submodules
_LAYOUTS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "llama": [
        ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
        ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
        ("mlp.up_proj", ("mlp.down_proj",)),
        ("self_attn.v_proj", ("self_attn.o_proj",)),
    ],
    "phi3": [("input_layernorm", ("self_attn.qkv_proj",)), ("post_attention_layernorm", ("mlp.gate_up_proj",))],
    "gpt2": [("ln_1", ("attn.c_attn",)), ("ln_2", ("mlp.c_fc",))],
    "opt": [
        ("self_attn_layer_norm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
        ("final_layer_norm", ("fc1",)),
        ("fc1", ("fc2",)),
    ],
}
_LAYOUT_OF = {"llama": "llama", "mistral": "llama", "qwen2": "llama", "phi3": "phi3", "gpt2": "gpt2", "opt": "opt"}


@dataclass
class Pair:
    name: str  # e.g. "model.layers.0.input_layernorm"
    producer: Any
    consumers: list  # nn.Linear or transformers Conv1D
    consumer_names: list[str]
    # observed statistics of the consumers' (shared) input
    absmax: Any = None  # torch (channels,)
    absmean: Any = None
    samples: Any = None  # torch (rows, channels)
    rows_seen: int = 0
    extra: dict = field(default_factory=dict)


def _get(module, dotted: str):
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def layers_of(model) -> list:
    base = model.base_model
    for path in ("layers", "h", "decoder.layers"):
        found = _get(base, path)
        if found is not None:
            return list(found)
    raise CompressorError(f"activation-aware scaling: no decoder layers found in {type(model).__name__}")


def in_features(module) -> int:
    """Input width of a linear layer: nn.Linear stores (out, in), GPT-2's Conv1D (in, out)."""
    return int(module.weight.shape[1] if _is_linear(module) else module.weight.shape[0])


def _is_linear(module) -> bool:
    import torch

    return isinstance(module, torch.nn.Linear)


def weight_out_in(module):
    """The weight as (out, in), a view for nn.Linear, a transposed view for Conv1D."""
    return module.weight.data if _is_linear(module) else module.weight.data.t()


def _scalable_producer(producer, config, name: str) -> bool:
    cls = type(producer).__name__
    if "Gemma" in cls:
        return False  # (1 + weight) * x̂: dividing the weight does not divide the output
    if cls.endswith("Norm") or "LayerNorm" in cls or "RMSNorm" in cls:
        return hasattr(producer, "weight") and producer.weight is not None
    return hasattr(producer, "weight")


def find_pairs(model) -> list[Pair]:
    """Every scalable (producer, consumers) pair of the model's decoder layers, in layer order."""
    model_type = getattr(model.config, "model_type", "?")
    layout = _LAYOUTS.get(_LAYOUT_OF.get(model_type, ""))
    if layout is None:
        known = ", ".join(sorted(_LAYOUT_OF))
        raise CompressorError(f"activation-aware scaling supports {known} models, not '{model_type}'")
    heads = getattr(model.config, "num_attention_heads", None) or getattr(model.config, "n_head", None)
    kv_heads = getattr(model.config, "num_key_value_heads", None) or heads
    prefix = {id(m): n for n, m in model.named_modules()}
    pairs = []
    for layer in layers_of(model):
        for prod_name, cons_names in layout:
            if prod_name == "self_attn.v_proj" and kv_heads != heads:
                continue  # grouped-query: one v channel feeds several heads' o_proj columns
            if model_type == "opt" and not getattr(model.config, "do_layer_norm_before", True) and "norm" in prod_name:
                continue
            if prod_name == "fc1" and getattr(model.config, "activation_function", "relu") != "relu":
                continue  # only a positively homogeneous activation lets a scale pass through
            producer = _get(layer, prod_name)
            consumers = [_get(layer, c) for c in cons_names]
            if producer is None or any(c is None for c in consumers) or not _scalable_producer(producer, model.config, prod_name):
                continue
            pairs.append(Pair(prefix[id(producer)], producer, consumers, [prefix[id(c)] for c in consumers]))
    return pairs


def observe(model, pairs: list[Pair], blocks: np.ndarray, batch_size: int = 4, keep_rows: int = 512, seed: int = 0) -> None:
    """One pass over calibration ``blocks`` (token ids, (n, length)): per pair the per-channel max |x| and mean |x| of
    the consumers' input, and up to ``keep_rows`` input rows sampled uniformly (reservoir) for error estimates."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    hooks = []

    def hook_for(pair: Pair):
        def hook(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            a = x.abs()
            pair.absmax = a.amax(0) if pair.absmax is None else torch.maximum(pair.absmax, a.amax(0))
            total = a.sum(0) if pair.absmean is None else pair.absmean * pair.rows_seen + a.sum(0)
            pair.rows_seen += x.shape[0]
            pair.absmean = total / pair.rows_seen
            # keep a uniform sample: rank rows by a random key, keep the smallest keep_rows
            keys = torch.rand(x.shape[0], generator=gen)
            pool = x if pair.samples is None else torch.cat([pair.samples, x])
            pkeys = keys if "keys" not in pair.extra else torch.cat([pair.extra["keys"], keys])
            order = pkeys.argsort()[:keep_rows]
            pair.samples, pair.extra["keys"] = pool[order].clone(), pkeys[order]

        return hook

    for pair in pairs:
        hooks.append(pair.consumers[0].register_forward_pre_hook(hook_for(pair)))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for i in range(0, len(blocks), batch_size):
                model(input_ids=torch.as_tensor(np.asarray(blocks[i : i + batch_size], dtype=np.int64)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for pair in pairs:
        pair.extra.pop("keys", None)
        if pair.absmax is None:
            raise CompressorError(f"calibration never reached {pair.consumer_names[0]}")


def apply_scales(pair: Pair, scales) -> None:
    """Fold ``scales`` (channels,) into the pair: producer output / s, consumer weight columns × s. Exact in fp32."""
    import torch

    s = scales.to(torch.float32)
    with torch.no_grad():
        prod = pair.producer
        if _is_linear(prod) or type(prod).__name__ == "Conv1D":
            w = weight_out_in(prod)  # producer output channels are its rows
            w.div_(s[:, None])
        else:
            prod.weight.data.div_(s)
        if getattr(prod, "bias", None) is not None:
            prod.bias.data.div_(s)
        for c in pair.consumers:
            weight_out_in(c).mul_(s[None, :])
    for key in ("absmax", "absmean"):
        setattr(pair, key, getattr(pair, key) / s)
    if pair.samples is not None:
        pair.samples = pair.samples / s


def logits_of(model, blocks: np.ndarray):
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.as_tensor(np.asarray(blocks, dtype=np.int64))).logits.float()


def check_unchanged(before, model, blocks: np.ndarray, tolerance: float = 1e-3) -> float:
    """The re-scaled model's fp32 logits against ``before`` (the original's on the same blocks): the largest
    difference relative to the logits' scale. Raises when the re-scaling was not exact."""
    after = logits_of(model, blocks)
    diff = float((after - before).abs().max() / before.abs().max().clamp_min(1e-6))
    if not diff <= tolerance:
        raise CompressorError(
            f"per-channel re-scaling changed the fp32 logits by {diff:.3g} (relative; tolerance "
            f"{tolerance:g}): a scaled producer is not linear in its output; this is a bug"
        )
    return diff
