"""Our cached decoder folders load in Optimum's ``ORTModelForCausalLM`` with ``use_cache=True`` and generate the
same greedy tokens as PyTorch on a left-padded batch (issue 15, item 2: deployable with an existing runtime).

optimum-onnx 0.1.0 pins transformers < 4.58 while compressor runs on transformers 5, so Optimum lives in an
environment of its own: set ``COMPRESSOR_OPTIMUM_PYTHON`` to its Python (the README's "Interop checks" shows the
two lines that make it). Without it the tests skip, saying so.

Optimum 0.1.0 sizes the empty first cache of a Phi-3 model with ``num_attention_heads`` (it reads
``num_key_value_heads`` only for the families it lists as grouped-query: Llama, Mistral, Qwen2, ...), so the Phi-3
case here uses as many key/value heads as query heads, as the released Phi-3-mini does.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

OPTIMUM_PYTHON = os.environ.get("COMPRESSOR_OPTIMUM_PYTHON", "")

pytestmark = pytest.mark.skipif(
    not (OPTIMUM_PYTHON and Path(OPTIMUM_PYTHON).is_file()),
    reason="Optimum interop needs its own environment (optimum-onnx pins transformers < 4.58): set "
    "COMPRESSOR_OPTIMUM_PYTHON to a Python with optimum-onnx installed (README, 'Interop checks')",
)

IDS = [[0, 0, 5, 9, 12, 7], [3, 8, 11, 2, 6, 4]]
MASK = [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
NEW = 8

LOAD_AND_GENERATE = """
import json, sys, warnings
warnings.simplefilter("ignore")
import torch
from optimum.onnxruntime import ORTModelForCausalLM
jobs, ids, mask, new = json.loads(sys.argv[1])
out = {}
for key, folder, file_name in jobs:
    m = ORTModelForCausalLM.from_pretrained(folder, file_name=file_name, use_cache=True)
    gen = m.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=new,
                     do_sample=False, pad_token_id=0)
    out[key] = {"can_use_cache": bool(m.can_use_cache), "past_inputs": len(m.key_value_input_names),
                "tokens": gen[:, len(ids[0]):].tolist()}
print(json.dumps(out))
"""


def _export(family: str, folder: Path, **overrides) -> tuple[Path, list[list[int]]]:
    """A tiny ``family`` model exported with its cache as a deployable folder; PyTorch's greedy tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compressor import testing as T
    from compressor.onnx.decoder import export_decoder
    from compressor.onnx.genai import write_runtime_files

    src = T.tiny_model(family, folder / "src")
    if overrides:  # the same family with other config values: rebuilt from the changed config
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(src)
        for key, value in overrides.items():
            setattr(config, key, value)
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src).eval()
    out = folder / "onnx" / "model.onnx"
    out.parent.mkdir(parents=True)
    export_decoder(model, out)
    AutoTokenizer.from_pretrained(src).save_pretrained(out.parent)
    write_runtime_files(out.parent, model.config, out.name)
    with torch.no_grad():
        gen = model.generate(
            input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK), max_new_tokens=NEW, do_sample=False, pad_token_id=0
        )
    return out.parent, gen[:, len(IDS[0]) :].tolist()


def _optimum(jobs: list[tuple[str, Path, str]]) -> dict:
    arg = json.dumps([[[k, str(f), n] for k, f, n in jobs], IDS, MASK, NEW])
    proc = subprocess.run(
        [OPTIMUM_PYTHON, "-c", LOAD_AND_GENERATE, arg],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("optimum")
    folders = {f: _export(f, root / f) for f in ("gpt2", "llama", "qwen2", "mistral", "opt")}
    folders["phi3"] = _export("phi3", root / "phi3", num_key_value_heads=4)
    return folders


def test_cached_folders_load_in_optimum_with_cache_and_generate_pytorch_tokens(exported):
    got = _optimum([(f, folder, "model.onnx") for f, (folder, _) in exported.items()])
    for family, (_, torch_tokens) in exported.items():
        assert got[family]["can_use_cache"] and got[family]["past_inputs"] > 0, family
        assert got[family]["tokens"] == torch_tokens, family


def test_int4_graph_loads_in_optimum_and_matches_our_greedy_loop(exported):
    from compressor.arch.signature import decoder_signature
    from compressor.onnx.decoder import onnx_greedy
    from compressor.onnx.session import make_session
    from compressor.quantize.weight_only import quantize_file

    folder, _ = exported["llama"]
    info = quantize_file(
        folder / "model.onnx",
        folder / "model.int4.onnx",
        bits=4,
        block_size=16,
        symmetric=True,
        include_lm_head=True,
        accuracy_level=None,
    )
    assert info["matmulnbits_nodes"] > 0
    from transformers import AutoConfig

    sig = decoder_signature(AutoConfig.from_pretrained(folder), with_past=True)
    ours, _ = onnx_greedy(
        make_session(folder / "model.int4.onnx", threads=1),
        sig,
        np.array(IDS, dtype=np.int64),
        np.array(MASK, dtype=np.int64),
        NEW,
    )
    got = _optimum([("int4", folder, "model.int4.onnx")])["int4"]
    assert got["can_use_cache"] and got["tokens"] == ours.tolist()
