"""Exact graph trim: the last encoder layer computed for the first ([CLS]) token only.

A sequence classifier whose head reads ``hidden_states[:, 0]`` (BERT's pooler, RoBERTa's and
DistilBERT's heads) uses one row of the last encoder layer's output. That layer still needs every
token's keys and values, but its queries, attention output projection, residual sums, LayerNorms and
feed-forward block only matter for row 0. On the ORT-fused graph this rewrite replaces the last
``Attention`` node (packed Q/K/V weights) by ``MatMul`` projections and a ``MultiHeadAttention`` whose
query is ``x[:, 0:1]``, and feeds that slice to the token-wise nodes after it. The logits are the
same computation (parity is checked on real batches with padding before the graph is kept); on the
MiniLM SST-2 teacher it removes 1/7 of the encoder's integer GEMM work and 1/6 of its attention,
GELU and LayerNorm work (see benchmarks/INT8_RESULTS.md).

Only a graph that matches exactly is changed; anything else (no fused Attention, a head that reads
every token, a causal or cached attention, an op between the attention and the head that mixes
tokens) is left as it was, with the reason returned.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# ops that compute each token's row from that row alone (given constant per-feature operands)
TOKENWISE = {
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "LayerNormalization",
    "SimplifiedLayerNormalization",
    "Add",
    "Sum",
    "Sub",
    "Mul",
    "Div",
    "MatMul",
    "BiasGelu",
    "Gelu",
    "FastGelu",
    "QuickGelu",
    "Relu",
    "Tanh",
    "Erf",
    "Sigmoid",
    "Cast",
    "Identity",
}
ELEMENTWISE = {"Add", "Sum", "Sub", "Mul", "Div"}
# Attention attributes MultiHeadAttention takes the same way (or that this rewrite reads); any other: no rewrite
KNOWN_ATTENTION_ATTRS = {"num_heads", "qkv_hidden_sizes", "mask_filter_value", "scale", "unidirectional"}


class NotApplicable(Exception):
    """The graph does not have the shape this rewrite needs; the message says why."""


def _const_value(graph, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and name in node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
    return None


def _attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _first_token_pick(graph, consts: set[str]):
    """The ``Gather(axis=1, index 0)`` that reads the first token for the head (exactly one)."""
    picks = []
    for node in graph.node:
        if node.op_type == "Gather" and _attr(node, "axis", 0) == 1 and node.input[1] in consts:
            index = _const_value(graph, node.input[1])
            if index is not None and index.size == 1 and int(index.reshape(-1)[0]) == 0:
                picks.append(node)
    if len(picks) != 1:
        raise NotApplicable(f"the head does not read one first-token row ({len(picks)} Gather(axis=1, 0) nodes)")
    return picks[0]


def _last_attention(nodes: list, start: str, producer: dict):
    """The fused Attention node nearest upstream of ``start`` (the last one in graph order among its ancestors)."""
    order = {id(n): k for k, n in enumerate(nodes)}
    seen, stack, found = set(), [start], []
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "Attention":
            found.append(node)
        stack.extend(i for i in node.input if i)
    if not found:
        raise NotApplicable("no fused Attention node upstream of the head (the ORT optimizer did not fuse attention)")
    return max(found, key=lambda n: order[id(n)])


def _region(graph, start: str, stop: set[str], consts: set[str], producer: dict) -> list:
    """Nodes between the attention's input/output (``stop``) and ``start``; each must be token-wise."""
    region, seen, stack = [], set(), [start]
    while stack:
        name = stack.pop()
        if name in stop or name in consts or not name:
            continue
        node = producer.get(name)
        if node is None:
            raise NotApplicable(f"the last layer reads graph input '{name}' outside its attention")
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type not in TOKENWISE:
            raise NotApplicable(f"'{node.name}' ({node.op_type}) after the last attention may mix tokens")
        if node.op_type == "MatMul" and node.input[1] not in consts:
            raise NotApplicable(f"'{node.name}' multiplies two activations")
        if node.op_type in ("LayerNormalization", "SimplifiedLayerNormalization") and _attr(node, "axis", -1) != -1:
            raise NotApplicable(f"'{node.name}' normalizes over axis {_attr(node, 'axis')}")
        if node.op_type in ELEMENTWISE:
            for i in node.input:
                if i in consts:
                    value = _const_value(graph, i)
                    if value is not None and value.ndim >= 2 and int(np.prod(value.shape[:-1])) != 1:
                        raise NotApplicable(f"'{node.name}' adds a constant of shape {list(value.shape)}")
        region.append(node)
        stack.extend(node.input)
    return region


def trim_to_first_token(model) -> dict:
    """Rewrite ``model`` (an ORT-fused ONNX graph) in place; returns what was done.

    ``{"applied": True, "attention": <replaced node>, "sliced_consumers": n, "nodes": n token-wise nodes}``
    or ``{"applied": False, "reason": ...}`` with the graph untouched.
    """
    try:
        return _trim(model)
    except NotApplicable as e:
        return {"applied": False, "reason": str(e)}


def trim_file(path: Path) -> dict:
    """:func:`trim_to_first_token` on the graph at ``path``, rewritten in place when it applies."""
    import onnx

    from compressor.core.rundir import atomic_write_onnx

    model = onnx.load(str(path))
    record = trim_to_first_token(model)
    if record["applied"]:
        atomic_write_onnx(model, path)
    return record


@dataclass
class _Packed:
    """The last layer's ORT Attention node and its packed Q/K/V projection, checked for the rewrite."""

    attention: Any
    x: str  # the layer's input (every token)
    w_name: str
    b_name: str
    mask: str
    weight: np.ndarray
    sizes: list


def _packed_attention(graph, nodes: list, start: str, producer: dict) -> _Packed:
    """The Attention node of the layer that ``start`` (the first-token pick's input) comes from, or NotApplicable."""
    attention = _last_attention(nodes, start, producer)
    if attention.domain != "com.microsoft" or _attr(attention, "unidirectional", 0):
        raise NotApplicable(f"'{attention.name}' is causal or not ORT's Attention")
    unknown = {a.name for a in attention.attribute} - KNOWN_ATTENTION_ATTRS
    if unknown:
        raise NotApplicable(f"'{attention.name}' has attributes this rewrite does not carry over: {sorted(unknown)}")
    inputs = list(attention.input)
    if len(inputs) > 4 or len(attention.output) > 1 and any(attention.output[1:]):
        raise NotApplicable(f"'{attention.name}' has past state or an attention bias")
    x, w_name, b_name = inputs[0], inputs[1], inputs[2]
    weight, bias = _const_value(graph, w_name), _const_value(graph, b_name) if b_name else None
    if weight is None or weight.ndim != 2 or b_name and bias is None:
        raise NotApplicable(f"'{attention.name}' has no constant packed Q/K/V weight")
    sizes = _attr(attention, "qkv_hidden_sizes") or [weight.shape[1] // 3] * 3
    if sum(sizes) != weight.shape[1] or sizes[0] != sizes[1]:
        raise NotApplicable(f"'{attention.name}' has Q/K/V widths {list(sizes)}")
    return _Packed(attention, x, w_name, b_name, inputs[3] if len(inputs) > 3 else "", weight, list(sizes))


def _check_region(region: list, pick, packed: _Packed, consumers: dict, outputs: set[str]) -> None:
    """Nothing outside the first-token head may read the rows the rewrite drops."""
    in_region = {id(n) for n in region}
    for n in region:
        for out in n.output:
            if out in outputs or any(id(c) not in in_region and c is not pick for c in consumers[out] if out):
                raise NotApplicable(f"'{out}' of the last layer is read by more than the first-token head")
    if any(id(c) not in in_region for c in consumers[packed.attention.output[0]]):
        raise NotApplicable(f"the output of '{packed.attention.name}' is read outside the last layer")


def _replacement(graph, p: _Packed) -> tuple[list, str]:
    """Slice x to its first row, Q from that row, K / V from every row, MultiHeadAttention; new initializers added.
    Returns (the nodes, the sliced input's name)."""
    from onnx import helper, numpy_helper

    stem = p.attention.name or "attention"
    x0 = f"{p.x}_first_token"
    q_w, k_w, v_w = np.split(p.weight, np.cumsum(p.sizes)[:2], axis=1)
    new_inits = {
        f"{stem}_q_weight": q_w,
        f"{stem}_k_weight": k_w,
        f"{stem}_v_weight": v_w,
        f"{stem}_first_token_starts": np.array([0], np.int64),
        f"{stem}_first_token_ends": np.array([1], np.int64),
        f"{stem}_first_token_axes": np.array([1], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in new_inits.items())
    nodes = [
        helper.make_node(
            "Slice",
            [p.x, f"{stem}_first_token_starts", f"{stem}_first_token_ends", f"{stem}_first_token_axes"],
            [x0],
            name=f"{stem}_first_token",
        ),
        helper.make_node("MatMul", [x0, f"{stem}_q_weight"], [f"{stem}_q"], name=f"{stem}_q/MatMul"),
        helper.make_node("MatMul", [p.x, f"{stem}_k_weight"], [f"{stem}_k"], name=f"{stem}_k/MatMul"),
        helper.make_node("MatMul", [p.x, f"{stem}_v_weight"], [f"{stem}_v"], name=f"{stem}_v/MatMul"),
    ]
    mha_inputs = [f"{stem}_q", f"{stem}_k", f"{stem}_v", p.b_name, p.mask]
    while not mha_inputs[-1]:  # optional inputs: trailing ones dropped, a missing bias before a mask stays ""
        mha_inputs.pop()
    mha = helper.make_node(
        "MultiHeadAttention",
        mha_inputs,
        [p.attention.output[0]],
        name=f"{stem}_first_token_mha",
        domain="com.microsoft",
        num_heads=_attr(p.attention, "num_heads"),
    )
    for extra in ("mask_filter_value", "scale"):
        if _attr(p.attention, extra) is not None:
            mha.attribute.append(helper.make_attribute(extra, _attr(p.attention, extra)))
    return nodes + [mha], x0


def _trim(model) -> dict:
    graph = model.graph
    nodes = list(graph.node)
    producer = {o: n for n in nodes for o in n.output}
    consumers = defaultdict(list)
    for n in nodes:
        for i in n.input:
            consumers[i].append(n)
    consts = {i.name for i in graph.initializer} | {o for n in nodes if n.op_type == "Constant" for o in n.output}

    pick = _first_token_pick(graph, consts)
    p = _packed_attention(graph, nodes, pick.input[0], producer)
    region = _region(graph, pick.input[0], {p.x, p.attention.output[0]}, consts, producer)
    _check_region(region, pick, p, consumers, {o.name for o in graph.output})
    replacement, x0 = _replacement(graph, p)

    sliced = 0
    for n in region:
        for k, name in enumerate(n.input):
            if name == p.x:
                n.input[k] = x0
                sliced += 1
    at = nodes.index(p.attention)
    del graph.node[:]
    graph.node.extend(nodes[:at] + replacement + nodes[at + 1 :])
    changed = {p.attention.output[0]} | {o for n in region for o in n.output}
    keep_info = [v for v in graph.value_info if v.name not in changed]  # their sequence dimension is now 1
    del graph.value_info[:]
    graph.value_info.extend(keep_info)
    if not any(p.w_name in n.input for n in graph.node):
        keep = [i for i in graph.initializer if i.name != p.w_name]
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return {"applied": True, "attention": p.attention.name, "sliced_consumers": sliced, "nodes": len(region)}
