"""`export: {with_past: true, exporter: genai}`: onnxruntime-genai's model builder writes the run's fused decoder graph
(GroupQueryAttention, no position_ids), parity-checked without padding (the left-padded difference recorded); our
weight-only INT4 (MatMulNBits, the configured block size, lm_head and the embedding table included) and AWQ then run
on that graph, and perplexity is scored on it."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import helper

from compressor.pipeline.orchestrate import run
from tests.conftest import write_recipe

pytest.importorskip("onnxruntime_genai", reason="exporter: genai needs the onnxruntime-genai package")


@pytest.fixture(scope="module")
def llama64(tmp_path_factory):
    """A tiny Llama with head size 16 (GroupQueryAttention on CPU needs a multiple of 16)."""
    from compressor import testing as T

    d = tmp_path_factory.mktemp("llama64")
    T.tiny_llama(d / "model", hidden=64, heads=4, kv_heads=2)
    T.write_lm_text(d / "lm.txt")
    return d


def _recipe(d, out, quantize: str) -> str:
    return f"""
name: tiny-llama-genai
model: {{path: {d / "model"}, task: causal-lm}}
data: {{train: {d / "lm.txt"}, split: {{dev: 0.2}}, max_length: 16, max_eval_samples: 24}}
stages:
  - export: {{with_past: true, exporter: genai}}
  - quantize: {quantize}
evaluate: {{splits: [dev], artifacts: [torch, onnx, int4]}}
bench: {{enabled: false}}
output: {{dir: {out}}}
"""


@pytest.fixture(scope="module")
def rtn_run(llama64, tmp_path_factory):
    folder = tmp_path_factory.mktemp("genai-rtn")
    quant = "{type: int4, block_size: 16, include_lm_head: true, include_embeddings: true}"
    return run(write_recipe(folder, _recipe(llama64, folder / "runs", quant)), quiet=True)


def test_export_stage_writes_the_builders_fused_graph(rtn_run):
    graph = onnx.load(str(rtn_run / "onnx/model.onnx"), load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    assert "GroupQueryAttention" in ops and "SkipSimplifiedLayerNormalization" in ops
    inputs = [i.name for i in graph.input]
    assert "position_ids" not in inputs and "past_key_values.1.value" in inputs
    past = next(i for i in graph.input if i.name == "past_key_values.0.key")
    assert past.type.tensor_type.shape.dim[3].dim_value == 16  # the head size, pinned
    prov = json.loads((rtn_run / "onnx/model.onnx.json").read_text())
    assert prov["exporter"] == "genai" and prov["op_counts"]["GroupQueryAttention"] == 2
    assert prov["parity"]["max_abs_diff"] < 1e-3 and prov["parity"]["decode_steps"] == 5
    assert not prov["parity"]["left_padded"] and prov["parity"]["left_padded_batch"]["left_padded"]
    genai = json.loads((rtn_run / "onnx/genai_config.json").read_text())
    assert genai["search"]["past_present_share_buffer"] is True  # the builder's own config
    assert "position_ids" not in genai["model"]["decoder"]["inputs"]
    assert (rtn_run / "onnx/tokenizer.json").is_file() and (rtn_run / "onnx/model.onnx.data").is_file()


def test_int4_on_the_fused_graph_with_lm_head_and_embeddings(rtn_run):
    nodes = onnx.load(str(rtn_run / "onnx/model.int4.onnx")).graph.node
    nbits = [n for n in nodes if n.op_type == "MatMulNBits"]
    assert len(nbits) == 2 * 5 + 1  # fused qkv, o, gate, up, down per layer + lm_head
    assert {helper.get_attribute_value(a) for n in nbits for a in n.attribute if a.name == "block_size"} == {16}
    assert sum(n.op_type == "GatherBlockQuantized" for n in nodes) == 1
    assert sum(n.op_type == "GroupQueryAttention" for n in nodes) == 2
    m = json.loads((rtn_run / "metrics.json").read_text())
    ppl = {k: v["metrics"]["dev"]["perplexity"] for k, v in m["artifacts"].items() if v.get("metrics")}
    assert ppl["onnx"] == pytest.approx(ppl["pytorch"], rel=1e-4)  # the builder's graph, unpadded windows
    assert ppl["int4"] != ppl["onnx"] and ppl["int4"] == pytest.approx(ppl["onnx"], rel=0.2)


def test_awq_on_the_fused_graph(llama64, tmp_path_factory):
    folder = tmp_path_factory.mktemp("genai-awq")
    quant = "{type: awq, block_size: 16, calibration_samples: 4, grid: 4}"
    out = run(write_recipe(folder, _recipe(llama64, folder / "runs", quant)), quiet=True)
    nodes = onnx.load(str(out / "onnx/model.int4.onnx")).graph.node
    assert sum(n.op_type == "GroupQueryAttention" for n in nodes) == 2
    assert sum(n.op_type == "MatMulNBits" for n in nodes) == 2 * 5  # lm_head stays fp32 by default
    prov = json.loads((out / "onnx/model.int4.onnx.json").read_text())
    assert prov["exporter"] == "genai" and prov["method"] == "awq" and prov["pairs_scaled"] > 0
