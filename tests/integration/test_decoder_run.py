"""`compressor run` on a causal LM: the export stage with with_past: true writes the cached graph with its
runtime files, `quantize: {type: int4}` quantizes that graph, and evaluation scores perplexity on both."""

from __future__ import annotations

import json

import onnx
import pytest

from compressor.pipeline.orchestrate import run
from tests.conftest import write_recipe


@pytest.fixture(scope="module")
def lm_run(tiny_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("decoder-run")
    recipe = write_recipe(
        folder,
        f"""
name: tiny-llama-int4
model: {{path: {tiny_dir / "llama"}, task: causal-lm}}
data: {{train: {tiny_dir / "lm.txt"}, split: {{dev: 0.2}}, max_length: 16, max_eval_samples: 24}}
stages:
  - finetune: {{epochs: 1, lr: 1.0e-3, batch_size: 8}}
  - export: {{with_past: true}}
  - quantize: {{type: int4, block_size: 16, include_lm_head: true}}
evaluate: {{splits: [dev], artifacts: [torch, onnx, int4]}}
bench: {{batch_sizes: [1], seq_lengths: [16], iterations: 2, warmup: 0, devices: [cpu], bitsandbytes: []}}
output: {{dir: {folder / "runs"}}}
""",
    )
    return run(recipe, quiet=True)


def test_export_stage_writes_the_cached_graph_and_runtime_files(lm_run):
    graph = onnx.load(str(lm_run / "onnx/model.onnx"), load_external_data=False).graph
    inputs = [i.name for i in graph.input]
    assert inputs[:3] == ["input_ids", "attention_mask", "position_ids"] and "past_key_values.1.value" in inputs
    assert "present.1.value" in [o.name for o in graph.output]
    prov = json.loads((lm_run / "onnx/model.onnx.json").read_text())
    assert prov["with_past"] and prov["parity"]["decode_steps"] == 5 and prov["parity"]["left_padded"]
    assert prov["parity"]["max_abs_diff"] < 1e-3
    genai = json.loads((lm_run / "onnx/genai_config.json").read_text())
    assert genai["model"]["decoder"]["num_key_value_heads"] == 2 and genai["model"]["decoder"]["filename"] == "model.onnx"
    assert (lm_run / "onnx/tokenizer.json").is_file()


def test_int4_stage_and_perplexity_on_every_artifact(lm_run):
    from onnx import helper

    nodes = [n for n in onnx.load(str(lm_run / "onnx/model.int4.onnx")).graph.node if n.op_type == "MatMulNBits"]
    assert len(nodes) == 2 * 7 + 1
    assert {helper.get_attribute_value(a) for n in nodes for a in n.attribute if a.name == "block_size"} == {16}
    m = json.loads((lm_run / "metrics.json").read_text())
    ppl = {k: v["metrics"]["dev"]["perplexity"] for k, v in m["artifacts"].items() if v.get("metrics")}
    assert set(ppl) == {"pytorch", "onnx", "int4"}
    assert ppl["onnx"] == pytest.approx(ppl["pytorch"], rel=1e-4)  # the cached graph, fed an empty cache
    assert ppl["int4"] != ppl["onnx"] and ppl["int4"] == pytest.approx(ppl["onnx"], rel=0.1)
    assert m["artifacts"]["int4"]["size_bytes"] < m["artifacts"]["onnx"]["size_bytes"]
    assert m["stages"][2]["matmulnbits_nodes"] == 15 and m["artifacts"]["int4"]["bench"]
