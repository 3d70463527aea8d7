"""`compressor run` with the calibrated decoder schemes registered by config type: `quantize: {type: awq}` writes
model.int4.onnx (MatMulNBits), `quantize: {type: smoothquant}` writes model.int8.onnx (W8A8); both are evaluated for
perplexity with the other artifacts. validate refuses an AWQ block size against config.json (exit 2, file:line)."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest

from compressor.pipeline.orchestrate import run
from tests.conftest import ROOT, write_recipe


def _recipe(folder, tiny_dir, quantize: str, artifacts: str) -> str:
    return f"""
name: tiny-llama-calibrated
model: {{path: {tiny_dir / "llama"}, task: causal-lm}}
data: {{train: {tiny_dir / "lm.txt"}, split: {{dev: 0.2}}, max_length: 16, max_eval_samples: 16}}
stages:
  - export: {{with_past: true}}
  - quantize: {quantize}
evaluate: {{splits: [dev], artifacts: [{artifacts}]}}
bench: {{enabled: false}}
output: {{dir: {folder / "runs"}}}
"""


@pytest.fixture(scope="module")
def awq_run(tiny_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("awq-run")
    recipe = write_recipe(
        folder, _recipe(folder, tiny_dir, "{type: awq, block_size: 16, calibration_samples: 8}", "torch, onnx, int4")
    )
    return run(recipe, quiet=True)


def test_awq_stage_writes_int4_with_matmulnbits_and_is_evaluated(awq_run):
    from onnx import helper

    nodes = [n for n in onnx.load(str(awq_run / "onnx/model.int4.onnx")).graph.node if n.op_type == "MatMulNBits"]
    assert len(nodes) == 2 * 7  # every projection of both layers; lm_head stays fp32 by default
    assert {helper.get_attribute_value(a) for n in nodes for a in n.attribute if a.name == "block_size"} == {16}
    prov = json.loads((awq_run / "onnx/model.int4.onnx.json").read_text())
    assert prov["method"] == "awq" and prov["pairs_scaled"] >= 4 and prov["rescale_relative_logit_change"] < 1e-4
    assert prov["parity"]["left_padded"] and prov["parity"]["decode_steps"] == 5
    m = json.loads((awq_run / "metrics.json").read_text())
    ppl = {k: v["metrics"]["dev"]["perplexity"] for k, v in m["artifacts"].items() if v.get("metrics")}
    assert set(ppl) == {"pytorch", "onnx", "int4"}
    assert ppl["onnx"] == pytest.approx(ppl["pytorch"], rel=1e-4)
    assert ppl["int4"] == pytest.approx(ppl["onnx"], rel=0.1)


def test_smoothquant_stage_writes_w8a8(tiny_dir, tmp_path):
    recipe = write_recipe(
        tmp_path,
        _recipe(tmp_path, tiny_dir, "{type: smoothquant, alpha: 0.6, activations: static, calibration_samples: 8}", "onnx, int8"),
    )
    out = run(recipe, quiet=True)
    ops = [n.op_type for n in onnx.load(str(out / "onnx/model.int8.onnx")).graph.node]
    assert ops.count("QuantizeLinear") > 0 and "MatMulNBits" not in ops
    prov = json.loads((out / "onnx/model.int8.onnx.json").read_text())
    assert prov["alpha"] == 0.6 and prov["mode"] == "static" and prov["rescale_relative_logit_change"] < 1e-4
    m = json.loads((out / "metrics.json").read_text())
    ppl = {k: v["metrics"]["dev"]["perplexity"] for k, v in m["artifacts"].items() if v.get("metrics")}
    assert ppl["int8"] == pytest.approx(ppl["onnx"], rel=0.1)


def test_validate_refuses_an_awq_block_size_that_does_not_divide(tiny_dir, tmp_path):
    text = _recipe(tmp_path, tiny_dir, "\n      type: awq\n      block_size: 64", "onnx, int4")
    recipe = write_recipe(tmp_path, text, "bad.yaml")
    r = subprocess.run(
        [sys.executable, "-m", "compressor", "validate", str(recipe)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "stages.1.quantize.block_size" in out and "hidden_size 32" in out and "Traceback" not in out
    assert len([ln for ln in out.splitlines() if ln.strip()]) == 1
