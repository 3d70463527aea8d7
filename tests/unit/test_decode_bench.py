"""Generation benchmark (prefill ms, decode tokens/s) for PyTorch with its KV cache and the cached ONNX graph, and
`compressor bench --prompt / --new-tokens`. Checks the shape of the results, never a speed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from compressor import testing as T
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def cached_llama(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from compressor.onnx.decoder import export_decoder

    d = tmp_path_factory.mktemp("bench-llama")
    T.tiny_llama(d)
    export_decoder(AutoModelForCausalLM.from_pretrained(d), d / "model.onnx")
    return d


def test_decode_rows_for_torch_and_onnx(cached_llama):
    from transformers import AutoModelForCausalLM

    from compressor.measure.bench.decode import decode_onnx, decode_torch

    t = decode_torch(AutoModelForCausalLM.from_pretrained(cached_llama), prompt=8, new_tokens=4, batch=2, warmup=0, repeats=2)
    o = decode_onnx(cached_llama / "model.onnx", prompt=8, new_tokens=4, batch=2, warmup=0, repeats=2, vocab=T.vocab_size())
    for row, runtime in ((t, "torch"), (o, "onnxruntime")):
        assert row["runtime"] == runtime and row["batch"] == 2 and row["prompt"] == 8 and row["repeats"] == 2
        assert row["prefill_ms"] > 0 and row["decode_tokens_per_s"] > 0
        # tokens/s counts every row: 2 rows x 3 decode steps over the decode time
        assert row["decode_tokens_per_s"] == pytest.approx(2 * 1e3 / row["decode_ms_per_token"], rel=0.01)


def test_decode_onnx_refuses_a_graph_without_cache(tiny_bert_onnx):
    from compressor.core.errors import ExportError
    from compressor.measure.bench.decode import decode_onnx

    with pytest.raises(ExportError, match="not a graph with a key / value cache"):
        decode_onnx(tiny_bert_onnx["plain"], prompt=4, new_tokens=2)


def _bench(*args):
    return subprocess.run(
        [sys.executable, "-m", "compressor", "bench", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_cli_bench_generation(cached_llama, tmp_path):
    out = tmp_path / "gen.json"
    r = _bench(
        cached_llama,
        cached_llama / "model.onnx",
        "--prompt",
        8,
        "--new-tokens",
        4,
        "--batch-sizes",
        "1",
        "--iterations",
        1,
        "--warmup",
        0,
        "--json",
        out,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [row["runtime"] for row in rows] == ["torch", "onnxruntime"]
    assert all(row["prompt"] == 8 and row["new_tokens"] == 4 for row in rows)
    r = _bench(cached_llama, "--prompt", 120, "--new-tokens", 20)
    assert r.returncode == 2 and "longer than the model's 128 positions" in r.stdout + r.stderr
