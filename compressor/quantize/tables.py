"""The token embedding table in weight-only INT4 (``include_embeddings``): which Gather reads it, a table that the
graph only holds as Transpose(lm_head weight) (onnxruntime-genai's builder, tied embeddings) folded into a constant
so it can be quantized, and, once both are in 4 bits, the table read from the lm_head's MatMulNBits weight instead of
a copy (what the builder's int4 does: same blocks along the hidden axis, so the same values)."""

from __future__ import annotations

import numpy as np


def fold_table_transposes(model) -> dict[str, str]:
    """A Gather by ``input_ids`` whose table is Transpose(constant) (onnxruntime-genai's builder shares a tied
    lm_head weight that way) gets the transposed table as its own constant, so it can be quantized as a table.
    Exact; the lm_head keeps its weight. Returns {Gather node: the constant it was transposed from}."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    folded: dict[str, str] = {}
    for n in model.graph.node:
        src = producer.get(n.input[0]) if n.op_type == "Gather" and n.input[1] == "input_ids" else None
        if src is None or src.op_type != "Transpose" or src.input[0] not in inits:
            continue
        perm = next((helper.get_attribute_value(a) for a in src.attribute if a.name == "perm"), None)
        table = numpy_helper.to_array(inits[src.input[0]])
        table = np.ascontiguousarray(table.transpose(perm) if perm else table.T)
        name = n.name.strip("/").replace("/", ".") + ".table"
        model.graph.initializer.append(numpy_helper.from_array(table, name))
        n.input[0] = name
        folded[n.name] = src.input[0]
    if folded:
        used = {i for node in model.graph.node for i in node.input}
        keep = [node for node in model.graph.node if node.op_type != "Transpose" or any(o in used for o in node.output)]
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return folded


def embedding_gathers(model) -> tuple[list[str], list[str]]:
    """(Gather nodes that look up the token embedding table: a 2-D constant indexed by ``input_ids``, directly or
    through a Cast / Reshape; every other Gather node)."""
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def from_ids(name: str) -> bool:
        while name in producer and producer[name].op_type in ("Cast", "Reshape", "Identity", "Unsqueeze"):
            name = producer[name].input[0]
        return name == "input_ids"

    gathers = [n for n in model.graph.node if n.op_type == "Gather"]
    table = [n.name for n in gathers if n.input[0] in inits and len(inits[n.input[0]].dims) == 2 and from_ids(n.input[1])]
    return table, [n.name for n in gathers if n.name not in table]


def share_tied_tables(model, tied: dict[str, str]) -> int:
    """After quantization: a GatherBlockQuantized table folded from Transpose(W) (``tied``: Gather node name -> W)
    reads W's 4-bit MatMulNBits weight and scales instead of its own copy, as onnxruntime-genai's builder does for
    tied embeddings (same blocks along the hidden axis: the same values). Symmetric 4-bit only. Returns the count."""
    from onnx import helper, numpy_helper

    g = model.graph
    nbits = {n.input[1]: n for n in g.node if n.op_type == "MatMulNBits"}
    shared = 0
    for node in list(g.node):
        src = tied.get(node.name.removesuffix("_Q4")) if node.op_type == "GatherBlockQuantized" else None
        mm = nbits.get(f"{src}_Q4") if src else None
        if mm is None or len(node.input) > 3 or len(mm.input) > 3 and mm.input[3]:
            continue  # zero points (asymmetric) are laid out differently: keep the copy
        attrs = {a.name: helper.get_attribute_value(a) for a in mm.attribute}
        if attrs.get("bits") != 4:
            continue
        n_out, k = attrs["N"], attrs["K"]
        shape_name = f"{mm.input[1]}_as_table_shape"
        g.initializer.append(numpy_helper.from_array(np.array([n_out, k // 2], dtype=np.int64), shape_name))
        flat = f"{mm.input[1]}_as_table"
        at = list(g.node).index(node)
        g.node.insert(at, helper.make_node("Reshape", [mm.input[1], shape_name], [flat], name=f"{node.name}_shared_Reshape"))
        old = (node.input[0], node.input[2])
        node.input[0], node.input[2] = flat, mm.input[2]
        for a in [a for a in node.attribute if a.name == "bits"]:
            node.attribute.remove(a)
        node.attribute.append(helper.make_attribute("bits", 4))
        used = {i for n in g.node for i in n.input}
        keep = [i for i in g.initializer if i.name not in old or i.name in used]
        del g.initializer[:]
        g.initializer.extend(keep)
        shared += 1
    return shared
