"""Calibrated LLM quantization: the exact re-scaling both schemes share, AWQ's INT4 (MatMulNBits) and SmoothQuant's
W8A8, on tiny decoders built from configs."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from compressor import testing as T

FAMILIES = ["gpt2", "llama", "qwen2", "mistral", "phi3", "opt"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    made: dict = {}

    def get(family: str):
        if family not in made:
            d = tmp_path_factory.mktemp(f"cq-{family}")
            (T.tiny_model(family, d) if family in ("gpt2", "llama") else getattr(T, f"tiny_{family}")(d))
            made[family] = (AutoModelForCausalLM.from_pretrained(d), d)
        return made[family]

    return get


def _blocks(n: int = 6, length: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, 100, size=(n, length))


@pytest.mark.parametrize("family", FAMILIES)
def test_rescaling_leaves_fp32_outputs_unchanged(tiny, family):
    """SmoothQuant's migration with a strong α changes the weights a lot and the logits not at all."""
    import torch

    from compressor.quantize.scaling import find_pairs, logits_of
    from compressor.quantize.smoothquant import smooth

    model, _ = tiny(family)
    work = copy.deepcopy(model)
    blocks = _blocks()
    info = smooth(work, blocks, alpha=0.8)
    assert info["pairs_smoothed"] == len(find_pairs(model)) >= 4
    moved = max(float((a - b).detach().abs().max()) for a, b in zip(model.parameters(), work.parameters()))
    assert moved > 1e-2  # the weights really were re-scaled
    other = _blocks(2, 17, seed=5)  # rows the scales were not fitted on
    torch.testing.assert_close(logits_of(work, other), logits_of(model, other), rtol=1e-4, atol=1e-4)


def test_a_non_exact_rescaling_is_caught(tiny):
    """check_unchanged is what stands between a wrong producer and a silently different model."""
    import torch

    from compressor.core.errors import CompressorError
    from compressor.quantize.scaling import apply_scales, check_unchanged, find_pairs, logits_of

    model, _ = tiny("gpt2")
    work = copy.deepcopy(model)
    blocks = _blocks(2)
    before = logits_of(work, blocks)
    pair = find_pairs(work)[1]  # ln_2 -> c_fc
    pair.absmax = pair.absmean = torch.ones(work.config.n_embd)
    apply_scales(pair, torch.linspace(0.5, 2.0, work.config.n_embd))
    pair.consumers[0].weight.data.mul_(1.01)  # a consumer that did not get the exact inverse
    with pytest.raises(CompressorError, match="changed the fp32 logits"):
        check_unchanged(before, work, blocks)


def test_fake_quant_matches_matmulnbits(tmp_path):
    """The quantizer AWQ searches with rounds exactly as ONNX Runtime's MatMulNBits stores (both symmetries)."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from compressor.quantize.awq import fake_quant
    from compressor.quantize.weight_only import quantize_file

    k, n = 64, 8
    w = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        [numpy_helper.from_array(w, "W")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    for symmetric in (True, False):
        quantize_file(tmp_path / "m.onnx", tmp_path / "q.onnx", 4, 16, symmetric, True, 0)
        dequantized = ort.InferenceSession(str(tmp_path / "q.onnx")).run(None, {"x": np.eye(k, dtype=np.float32)})[0]
        ours = fake_quant(torch.tensor(w.T), 16, symmetric).numpy().T
        np.testing.assert_array_equal(dequantized, ours)
        assert np.abs(ours - w).max() > 0.01  # it does quantize


@pytest.mark.parametrize("family,block", [("gpt2", 32), ("llama", 32), ("phi3", 32), ("opt", 16)])
def test_awq_int4_graph(tiny, tmp_path, family, block):
    """AWQ: MatMulNBits with the configured block size, whose logits on the calibration rows are closer to PyTorch's
    than round-to-nearest's on the same graph (the output error is what it minimises), and the cached graph right
    under left padding."""
    import onnx
    import torch
    from onnx import helper

    from compressor.arch.signature import decoder_signature
    from compressor.onnx.decoder import cached_parity, export_decoder
    from compressor.onnx.session import make_session
    from compressor.quantize.awq import quantize_awq
    from compressor.quantize.weight_only import quantize_file

    model, _ = tiny(family)
    blocks = _blocks(8, 32)
    info = quantize_awq(model, blocks, tmp_path / "awq.onnx", block, True, False, 0)
    nodes = [
        {a.name: helper.get_attribute_value(a) for a in n.attribute}
        for n in onnx.load(str(tmp_path / "awq.onnx")).graph.node
        if n.op_type == "MatMulNBits"
    ]
    assert nodes and {n["block_size"] for n in nodes} == {block} and {n["bits"] for n in nodes} == {4}
    assert info["method"] == "awq" and info["pairs_scaled"] >= 4 and info["rescale_relative_logit_change"] < 1e-4
    export_decoder(model, tmp_path / "fp32.onnx")
    quantize_file(tmp_path / "fp32.onnx", tmp_path / "rtn.onnx", 4, block, True, False, 0)
    sig = decoder_signature(model.config)
    with torch.inference_mode():
        ref = model(input_ids=torch.as_tensor(blocks)).logits.numpy()

    def mse(name: str) -> float:
        out = make_session(tmp_path / name).run(None, sig.feed({"input_ids": blocks}))[0]
        return float(((out - ref) ** 2).mean())

    assert mse("awq.onnx") < mse("rtn.onnx")
    prompts = [b[:12].tolist() for b in blocks[:3]] + [blocks[3][:5].tolist()]
    check = cached_parity(model, tmp_path / "awq.onnx", prompts, tolerance=None)
    assert check["left_padded"] and check["argmax_agreement"] >= 0.8


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_smoothquant_w8a8_graph(tiny, tmp_path, mode):
    import onnx

    from compressor.onnx.decoder import cached_parity
    from compressor.quantize.smoothquant import quantize_smoothquant

    model, _ = tiny("llama")
    blocks = _blocks(8, 32)
    info = quantize_smoothquant(model, blocks, tmp_path / "w8a8.onnx", alpha=0.5, mode=mode)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "w8a8.onnx")).graph.node]
    layers = model.config.num_hidden_layers
    assert info["int8_matmuls"] == 7 * layers  # every projection, lm_head excluded by default
    if mode == "dynamic":
        assert ops.count("MatMulInteger") == 7 * layers
    else:
        assert ops.count("DequantizeLinear") >= 2 * 7 * layers  # weights and activations
    assert info["activation_outlier_ratio_after"] < info["activation_outlier_ratio_before"]
    check = cached_parity(model, tmp_path / "w8a8.onnx", [b[:10].tolist() for b in blocks[:3]], tolerance=None)
    assert check["argmax_agreement"] >= 0.8


def test_an_unsupported_family_is_named(tiny):
    from transformers import AutoModelForCausalLM

    from compressor.core.errors import CompressorError
    from compressor.quantize.scaling import find_pairs

    model, _ = tiny("gpt2")
    fake = copy.copy(model)
    fake.config = copy.deepcopy(model.config)
    fake.config.model_type = "bloom"
    with pytest.raises(CompressorError, match="not 'bloom'"):
        find_pairs(fake)
    assert AutoModelForCausalLM  # imported for the fixture's models
