"""onnxruntime-genai's model builder as an exporter (compressor/onnx/genai_builder.py) on tiny Llama, Qwen2, Mistral
(grouped-query attention) and Phi-3 built from configs: the graph has GroupQueryAttention, matches PyTorch over a
prefill and 5 decode steps without padding (a left-padded batch is measured and recorded: the graph has no
position_ids), greedy tokens equal transformers' generate, and our MatMulNBits runs on it with the configured block
size. `compressor validate` refuses what the builder cannot take, in one line with exit 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from compressor import testing as T
from tests.conftest import ROOT, write_recipe

FAMILIES = ["llama", "qwen2", "mistral", "phi3"]
PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [20, 21, 22, 23, 24]]
needs_genai = pytest.mark.skipif(
    __import__("importlib").util.find_spec("onnxruntime_genai") is None,
    reason="exporter: genai needs the onnxruntime-genai package, which is not installed",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """family -> (model, folder with the builder's model.onnx); head size 16 (GroupQueryAttention on CPU needs a
    multiple of 16); built once per family."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compressor.onnx.genai_builder import export_genai

    cache: dict = {}

    def get(family: str):
        if family not in cache:
            d = tmp_path_factory.mktemp(family)
            getattr(T, f"tiny_{family}")(d / "hf", hidden=64, heads=4)
            model = AutoModelForCausalLM.from_pretrained(d / "hf").eval()
            info = export_genai(model, AutoTokenizer.from_pretrained(d / "hf"), d / "onnx" / "model.onnx")
            cache[family] = (model, d / "onnx", info)
        return cache[family]

    return get


@needs_genai
@pytest.mark.parametrize("family", FAMILIES)
def test_builder_graph_parity_and_greedy_tokens(built, family):
    import torch

    from compressor.arch.signature import graph_signature
    from compressor.onnx.decoder import cached_parity, onnx_greedy
    from compressor.onnx.session import make_session

    model, d, info = built(family)
    assert info["op_counts"]["GroupQueryAttention"] == model.config.num_hidden_layers
    assert "position_ids" not in [i.name for i in make_session(d / "model.onnx").get_inputs()]
    check = cached_parity(model, d / "model.onnx", PROMPTS, steps=5, tolerance=1e-4)
    assert check["max_abs_diff"] < 1e-4 and check["decode_steps"] == 5 and check["argmax_agreement"] == 1.0
    assert check["equal_length_prompts"] == 3 and not check["left_padded"]
    padded = check["left_padded_batch"]  # measured, not enforced: positions come from the mask's sum
    assert padded["left_padded"] and padded["max_abs_diff"] >= 0 and "position_ids" in padded["note"]

    session = make_session(d / "model.onnx")
    sig = graph_signature(session.get_inputs(), model.config)
    ids = np.array([PROMPTS[0]], dtype=np.int64)
    got, _ = onnx_greedy(session, sig, ids, np.ones_like(ids), 8)
    with torch.inference_mode():
        want = model.generate(
            torch.as_tensor(ids),
            attention_mask=torch.ones_like(torch.as_tensor(ids)),
            max_new_tokens=8,
            min_new_tokens=8,
            do_sample=False,
            pad_token_id=0,
        )
    assert got[0].tolist() == want[0, ids.shape[1] :].tolist()


@needs_genai
def test_decode_timing_runs_on_the_builder_graph(built):
    """`compressor bench --prompt / --new-tokens` and the run's generation rows feed this graph its presents by name
    (it lists every layer's key before the values)."""
    from compressor.measure.bench.decode import decode_onnx

    model, d, _ = built("qwen2")
    row = decode_onnx(d / "model.onnx", prompt=6, new_tokens=4, batch=2, warmup=0, repeats=1, vocab=model.config.vocab_size)
    assert row["runtime"] == "onnxruntime" and row["decode_tokens_per_s"] > 0 and row["batch"] == 2


@needs_genai
@pytest.mark.parametrize("block", [16, 32])
def test_our_matmulnbits_on_the_builder_graph(built, tmp_path, block):
    import onnx
    from onnx import helper

    from compressor.measure.perplexity import onnx_fn
    from compressor.onnx.session import make_session
    from compressor.quantize.weight_only import quantize_file

    model, d, _ = built("mistral")
    dst = tmp_path / "model.int4.onnx"
    info = quantize_file(d / "model.onnx", dst, 4, block, True, False, 4)
    nodes = onnx.load(str(dst)).graph.node
    nbits = [n for n in nodes if n.op_type == "MatMulNBits"]
    assert len(nbits) == info["matmulnbits_nodes"] == 2 * 5 and info["excluded_nodes"] == ["/lm_head/MatMul"]
    assert {helper.get_attribute_value(a) for n in nbits for a in n.attribute if a.name == "block_size"} == {block}
    assert sum(n.op_type == "GroupQueryAttention" for n in nodes) == 2
    ids = np.array([PROMPTS[0]], dtype=np.int64)
    fp32, q = onnx_fn(make_session(d / "model.onnx"))(ids), onnx_fn(make_session(dst))(ids)
    assert 0 < np.abs(fp32 - q).max() < 0.5 * np.abs(fp32).max()


@needs_genai
def test_tied_embeddings_share_the_lm_heads_4bit_weight(tmp_path, monkeypatch):
    """The builder's graph of a tied model reads the table as Transpose(lm_head weight); with the lm_head and the
    embeddings in INT4 our quantizer stores it once (GatherBlockQuantized on the lm_head's MatMulNBits weight, as the
    builder's int4 does), with the same logits as a separate 4-bit copy."""
    import os

    import onnx
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compressor.measure.perplexity import onnx_fn
    from compressor.onnx.genai_builder import export_genai
    from compressor.onnx.session import make_session
    from compressor.quantize import weight_only

    T._tiny_causal(
        tmp_path / "hf",
        "LlamaConfig",
        "LlamaForCausalLM",
        0,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    src = tmp_path / "onnx" / "model.onnx"
    export_genai(model, AutoTokenizer.from_pretrained(tmp_path / "hf"), src)
    info = weight_only.quantize_file(src, tmp_path / "shared.onnx", 4, 32, True, True, 4, True)
    assert info["tied_tables_shared"] == 1 and info["gather_block_quantized_nodes"] == 1
    graph = onnx.load(str(tmp_path / "shared.onnx")).graph
    gather = next(n for n in graph.node if n.op_type == "GatherBlockQuantized")
    assert gather.input[2] == "lm_head.MatMul.weight_scales" and not any(
        "table" in i.name and i.name.endswith("_Q4") for i in graph.initializer
    )
    monkeypatch.setattr(weight_only, "share_tied_tables", lambda model, tied: 0)
    weight_only.quantize_file(src, tmp_path / "copy.onnx", 4, 32, True, True, 4, True)
    ids = np.array([PROMPTS[0]], dtype=np.int64)
    shared, copy = (onnx_fn(make_session(tmp_path / f))(ids) for f in ("shared.onnx", "copy.onnx"))
    assert np.abs(shared - copy).max() < 1e-5
    assert os.path.getsize(tmp_path / "shared.onnx") < os.path.getsize(tmp_path / "copy.onnx")


# ---------------------------------------------------------------- refusals
def _validate(recipe):
    return subprocess.run(
        [sys.executable, "-m", "compressor", "validate", str(recipe)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def _recipe(model, export: str) -> str:
    return f"""name: genai
model:
  path: {model}
  task: causal-lm
data: {{train: {model / "vocab.txt"}}}
stages:
  - export: {export}
"""


@pytest.mark.parametrize(
    "family, why",
    [("gpt2", "does not support GPT2LMHeadModel"), ("opt", "does not support OPTForCausalLM"), ("llama", "multiple of 16")],
)
def test_validate_refuses_what_the_builder_cannot_take(tmp_path, family, why):
    model = getattr(T, f"tiny_{family}")(tmp_path / family)  # llama: hidden 32, 4 heads, head size 8
    r = _validate(write_recipe(tmp_path, _recipe(model, "{with_past: true, exporter: genai}"), "bad.yaml"))
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 2, out
    assert "bad.yaml:7" in out and "exporter" in out and why in out and "config.json" in out
    assert len(out.splitlines()) == 1 and "Traceback" not in out
    r = _validate(write_recipe(tmp_path, _recipe(model, "{with_past: true}"), "good.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_validate_refuses_genai_without_a_cache(tmp_path):
    model = T.tiny_llama(tmp_path / "llama", hidden=64)
    r = _validate(write_recipe(tmp_path, _recipe(model, "{exporter: genai}"), "bad.yaml"))
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 2 and "bad.yaml:7" in out and "with_past: true" in out and len(out.splitlines()) == 1, out


def test_a_missing_package_is_refused_before_any_weights_load(tmp_path, monkeypatch):
    from compressor.core.errors import RecipeError
    from compressor.recipe import loader
    from compressor.recipe.schema import export

    model = T.tiny_llama(tmp_path / "llama", hidden=64)
    recipe = write_recipe(tmp_path, _recipe(model, "{with_past: true, exporter: genai}"), "r.yaml")
    monkeypatch.setattr(export, "genai_available", lambda: False)
    with pytest.raises(RecipeError) as e:
        loader.load_recipe(recipe)
    assert e.value.exit_code == 2
    assert "r.yaml:7" in str(e.value) and "pip install onnxruntime-genai" in str(e.value)
