"""Weight-only INT4 / INT8 (MatMulNBits) of the cached decoder graph, and the block-size check at validate."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from compressor import testing as T
from tests.conftest import ROOT, write_recipe

PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [20, 21, 22, 23, 24]]


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from compressor.onnx.decoder import export_decoder

    made: dict = {}

    def get(family: str):
        if family not in made:
            d = tmp_path_factory.mktemp(f"wo-{family}")
            getattr(T, f"tiny_{family}")(d)
            model = AutoModelForCausalLM.from_pretrained(d)
            export_decoder(model, d / "model.onnx")
            made[family] = (model, d)
        return made[family]

    return get


def _nbits(path):
    import onnx
    from onnx import helper

    return [
        {a.name: helper.get_attribute_value(a) for a in n.attribute}
        for n in onnx.load(str(path)).graph.node
        if n.op_type == "MatMulNBits"
    ]


@pytest.mark.parametrize(
    "family,bits,block,include_lm_head",
    [
        ("gpt2", 4, 16, False),
        ("llama", 4, 32, True),
        ("qwen2", 4, 16, True),
        ("mistral", 4, 32, False),
        ("phi3", 4, 16, False),
        ("llama", 8, 32, True),
    ],
)
def test_matmulnbits_nodes_with_the_configured_block_size(cached, tmp_path, family, bits, block, include_lm_head):
    from compressor.onnx.decoder import cached_parity
    from compressor.quantize.weight_only import quantize_file

    model, d = cached(family)
    dst = tmp_path / "q.onnx"
    info = quantize_file(d / "model.onnx", dst, bits, block, True, include_lm_head, 4)
    nodes = _nbits(dst)
    layers = model.config.num_hidden_layers
    per_layer = 4 if family in ("gpt2", "phi3") else 7  # fused qkv / gate_up vs separate projections
    assert len(nodes) == info["matmulnbits_nodes"] == layers * per_layer + int(include_lm_head)
    assert {n["block_size"] for n in nodes} == {block} and {n["bits"] for n in nodes} == {bits}
    assert info["excluded_nodes"] == ([] if include_lm_head else ["/model/lm_head/MatMul"])
    if family == "gpt2":
        assert info["gemm_rewritten"] == 8  # Conv1D exports as Gemm; the quantizer takes MatMul only
    check = cached_parity(model, dst, PROMPTS, steps=5, tolerance=None)
    assert 0 < check["max_abs_diff"] < (0.02 if bits == 8 else 0.2)  # quantized (not exact), yet close


def test_gemm_rewrite_is_exact(cached, tmp_path):
    import onnx

    from compressor.arch.signature import decoder_signature
    from compressor.onnx.session import make_session
    from compressor.quantize.weight_only import gemm_to_matmul

    model, d = cached("gpt2")
    graph = onnx.load(str(d / "model.onnx"))
    assert gemm_to_matmul(graph) == 8 and not any(n.op_type == "Gemm" for n in graph.graph.node)
    onnx.save(graph, str(tmp_path / "mm.onnx"))
    feed = decoder_signature(model.config).dummy_inputs()
    a = make_session(d / "model.onnx").run(None, feed)
    b = make_session(tmp_path / "mm.onnx").run(None, feed)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-6)


def test_block_size_that_does_not_divide_is_refused(cached, tmp_path):
    from compressor.core.errors import CompressorError
    from compressor.quantize.weight_only import quantize_file

    _, d = cached("llama")  # hidden 32, intermediate 64
    with pytest.raises(CompressorError, match="block_size 64 does not divide the input width 32"):
        quantize_file(d / "model.onnx", tmp_path / "q.onnx", 4, 64, True, True, 4)
    assert not (tmp_path / "q.onnx").exists()


def _validate(recipe):
    return subprocess.run(
        [sys.executable, "-m", "compressor", "validate", str(recipe)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_validate_refuses_a_block_size_against_config_json(cached, tmp_path):
    _, d = cached("llama")
    text = f"""name: lm-int4
model:
  path: {d}
  task: causal-lm
data: {{train: {d / "vocab.txt"}}}
stages:
  - export: {{}}
  - quantize:
      type: int4
      block_size: {{bs}}
"""
    bad = write_recipe(tmp_path, text.replace("{bs}", "64"), "bad.yaml")
    r = _validate(bad)
    assert r.returncode == 2, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "bad.yaml:10" in out and "stages.1.quantize.block_size" in out and "hidden_size 32" in out, out
    good = write_recipe(tmp_path, text.replace("{bs}", "16"), "good.yaml")
    r = _validate(good)
    assert r.returncode == 0, r.stdout + r.stderr


def test_validate_refuses_weight_only_before_export(tmp_path, cached):
    _, d = cached("llama")
    recipe = write_recipe(
        tmp_path,
        f"""model: {{path: {d}, task: causal-lm}}
data: {{train: {d / "vocab.txt"}}}
stages:
  - quantize: {{type: int8_weight}}
""",
    )
    r = _validate(recipe)
    assert r.returncode == 2 and "put an 'export' stage before it" in r.stdout + r.stderr
