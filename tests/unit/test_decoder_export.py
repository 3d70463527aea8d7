"""Causal-LM export with a KV cache: signature, left-padded parity over prefill + 5 decode steps, greedy tokens equal
to transformers' generate, and generation by onnxruntime-genai from the exported folder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from compressor import testing as T
from compressor.arch.signature import KVLayout, decoder_signature, encoder_signature, position_ids

FAMILIES = ["gpt2", "llama", "qwen2", "mistral", "phi3", "opt"]
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [20, 21, 22, 23, 24]]  # different lengths: rows 2 and 3 left-padded


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """family -> (model, folder with model.onnx); built lazily, once per family."""
    from transformers import AutoModelForCausalLM

    from compressor.onnx.decoder import export_decoder

    cache: dict = {}

    def get(family: str):
        if family not in cache:
            d = tmp_path_factory.mktemp(family)
            getattr(T, f"tiny_{family}")(d)
            model = AutoModelForCausalLM.from_pretrained(d)
            info = export_decoder(model, d / "model.onnx")
            cache[family] = (model, d, info)
        return cache[family]

    return get


def test_kv_layout_from_configs():
    assert KVLayout.from_config({"n_layer": 3, "n_head": 4, "n_embd": 32}) == KVLayout(3, 4, 8)
    gqa = {"num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2, "hidden_size": 64}
    assert KVLayout.from_config(gqa) == KVLayout(2, 2, 8)
    assert KVLayout.from_config({**gqa, "head_dim": 32}).head_dim == 32  # explicit head_dim wins over hidden / heads
    with pytest.raises(ValueError, match="do not divide"):
        KVLayout.from_config({**gqa, "num_key_value_heads": 3})


def test_decoder_signature_names_axes_and_feeds():
    cfg = {
        "model_type": "mistral",
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "hidden_size": 32,
        "vocab_size": 50,
    }
    sig = decoder_signature(cfg)
    assert sig.input_names[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert sig.past_names() == [f"past_key_values.{i}.{p}" for i in range(2) for p in ("key", "value")]
    assert sig.present_names() == [f"present.{i}.{p}" for i in range(2) for p in ("key", "value")]
    axes = sig.dynamic_axes()
    assert axes["past_key_values.0.key"] == {0: "batch", 2: "past_sequence"}
    assert axes["attention_mask"] == {0: "batch", 1: "total_sequence"}
    dummy = sig.dummy_inputs(batch=2, seq=4, past=3)
    assert dummy["past_key_values.1.value"].shape == (2, 1, 3, 8) and dummy["attention_mask"].shape == (2, 7)
    assert dummy["attention_mask"][0, 0] == 0  # a left-padded row, so the traced graph keeps the mask path
    feed = sig.feed({"input_ids": np.array([[4, 5]]), "attention_mask": np.array([[1, 1]])})
    assert feed["past_key_values.0.key"].shape == (1, 1, 0, 8)  # prefill: an empty cache
    bench = sig.synthetic_inputs(batch=1, seq=1, past=16)
    assert bench["attention_mask"].shape == (1, 17) and bench["position_ids"].tolist() == [[16]]
    assert encoder_signature(None).input_names == ["input_ids", "attention_mask", "token_type_ids"]


def test_graph_signature_recognises_a_cached_graph(exported):
    from compressor.arch.signature import graph_signature
    from compressor.onnx.session import make_session

    model, d, _ = exported("mistral")
    sig = graph_signature(make_session(d / "model.onnx").get_inputs())
    assert sig is not None and sig.kv == decoder_signature(model.config).kv
    assert sig.present_names() == decoder_signature(model.config).present_names()
    assert graph_signature([]) is None


def test_position_ids_under_left_padding():
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert position_ids(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert position_ids(mask, 1).tolist() == [[2], [4]]


@pytest.mark.parametrize("family", FAMILIES)
def test_cached_export_parity_left_padded(exported, family):
    from compressor.onnx.decoder import cached_parity

    model, d, info = exported(family)
    assert info["with_past"] and info["inputs"][:3] == ["input_ids", "attention_mask", "position_ids"]
    result = cached_parity(model, d / "model.onnx", PROMPTS, steps=5, tolerance=1e-4)
    assert result["left_padded"] and result["decode_steps"] == 5
    assert result["prefill_max_abs_diff"] < 1e-4 and result["decode_max_abs_diff"] < 1e-4
    assert result["argmax_agreement"] == 1.0


@pytest.mark.parametrize("family", ["llama", "mistral", "gpt2"])
def test_greedy_tokens_match_generate(exported, family):
    import torch

    from compressor.onnx.decoder import left_pad, onnx_greedy, prepare
    from compressor.onnx.session import make_session

    model, d, _ = exported(family)
    model = prepare(model)
    ids, mask = left_pad(PROMPTS)
    got, _ = onnx_greedy(make_session(d / "model.onnx"), decoder_signature(model.config), ids, mask, 8)
    ref = model.generate(
        input_ids=torch.as_tensor(ids),
        attention_mask=torch.as_tensor(mask),
        max_new_tokens=8,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
    )[:, ids.shape[1] :].numpy()
    assert got.shape == (3, 8)
    np.testing.assert_array_equal(got, ref)


def test_parity_catches_a_wrong_graph(exported, tmp_path):
    """The check can fail: a graph from another seed's weights is refused."""
    from transformers import AutoModelForCausalLM

    from compressor.core.errors import ExportError
    from compressor.onnx.decoder import cached_parity

    _, d, _ = exported("llama")
    other = T.tiny_llama(tmp_path / "other", seed=1)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        cached_parity(AutoModelForCausalLM.from_pretrained(other), d / "model.onnx", PROMPTS, steps=1)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_onnxruntime_genai_generates_from_the_folder(exported, family, tmp_path):
    og = pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is not installed (pip install onnxruntime-genai)")
    import torch

    from compressor.onnx.decoder import prepare
    from compressor.onnx.genai import read_genai_config, write_runtime_files

    model, d, _ = exported(family)
    model = prepare(model)
    out = tmp_path / "deploy"
    out.mkdir()
    shutil.copyfile(d / "model.onnx", out / "model.onnx")
    written = write_runtime_files(out, model.config, "model.onnx", d)
    assert "genai_config.json" in written and "tokenizer.json" in written
    assert read_genai_config(out)["model"]["decoder"]["num_key_value_heads"] == decoder_signature(model.config).kv.kv_heads
    prompt = [5, 6, 7, 8, 9]
    gen_model = og.Model(str(out))
    params = og.GeneratorParams(gen_model)
    params.set_search_options(max_length=len(prompt) + 6, do_sample=False)
    gen = og.Generator(gen_model, params)
    gen.append_tokens(np.array([prompt], dtype=np.int32))
    while not gen.is_done():
        gen.generate_next_token()
    seq = [int(t) for t in gen.get_sequence(0)]
    ref = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)[
        0
    ].tolist()
    assert seq == ref
