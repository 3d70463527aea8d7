"""One perplexity procedure: windows and stride, a hand computation, PyTorch = ONNX (plain, cached whole, cached in
chunks), and the same figure as `compressor eval`."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from compressor import testing as T
from tests.conftest import ROOT


def test_windows_and_stride():
    from compressor.core.errors import DataError
    from compressor.measure.perplexity import make_windows

    w = make_windows(10, 4, 2)
    assert w.starts == [0, 2, 4, 6] and [w.score_from(i) for i in range(4)] == [1, 2, 2, 2]
    assert w.scored_tokens == 3 + 3 * 2  # tokens 1..9, each once
    assert make_windows(9, 4).starts == [0, 4]  # disjoint; the ninth token is not scored
    with pytest.raises(DataError, match="holds 3 tokens, fewer than one window of 4"):
        make_windows(3, 4, what="the text")
    with pytest.raises(DataError, match="stride 5"):
        make_windows(10, 4, 5)


def test_equals_a_hand_computation():
    """A fixed table of logits: the token-weighted NLL over overlapping windows, written out by hand."""
    from compressor.measure.perplexity import perplexity

    rng = np.random.default_rng(0)
    vocab = 5
    table = rng.standard_normal((vocab, vocab))  # logits for the next token depend on the current token only
    ids = np.array([0, 3, 1, 4, 4, 2, 0, 1])

    def fn(batch):
        return table[batch]

    got = perplexity(fn, ids, length=4, stride=2, batch_size=3)

    def nll(prev: int, nxt: int) -> float:
        row = table[prev]
        return -(row[nxt] - math.log(sum(math.exp(v) for v in row)))

    # windows [0:4] scores targets at 1,2,3; [2:6] scores 4,5; [4:8] scores 6,7
    scored = [1, 2, 3, 4, 5, 6, 7]
    hand = sum(nll(ids[p - 1], ids[p]) for p in scored) / len(scored)
    assert got["tokens"] == 7 and got["windows"] == 3 and got["stride"] == 2
    assert got["loss"] == pytest.approx(hand, rel=1e-6)
    assert got["perplexity"] == pytest.approx(math.exp(hand), rel=1e-6)
    # token-weighted, not the mean of the windows' perplexities
    assert "token-weighted" in got["procedure"]


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from transformers import AutoModelForCausalLM

    from compressor.onnx.decoder import export_decoder

    d = tmp_path_factory.mktemp("ppl-llama")
    T.tiny_model("llama", d)
    model = AutoModelForCausalLM.from_pretrained(d)
    export_decoder(model, d / "model.onnx")
    return model, d


def test_torch_and_onnx_with_and_without_cache_agree(llama):
    from compressor.measure.perplexity import onnx_fn, perplexity, torch_fn
    from compressor.onnx.session import make_session

    model, d = llama
    ids = np.random.default_rng(1).integers(3, 100, size=70)
    session = make_session(d / "model.onnx")
    ref = perplexity(torch_fn(model), ids, 16, 8)
    whole = perplexity(onnx_fn(session), ids, 16, 8)
    chunked = perplexity(onnx_fn(session, chunk=5), ids, 16, 8)  # 5 + 5 + 5 + 1 through the cache
    assert ref["tokens"] == whole["tokens"] == chunked["tokens"] == 15 + 6 * 8
    assert whole["perplexity"] == pytest.approx(ref["perplexity"], rel=1e-4)
    assert chunked["perplexity"] == pytest.approx(ref["perplexity"], rel=1e-4)


def test_compressor_eval_reports_the_same_figure(llama, tmp_path):
    """`compressor eval` (and so `run`, which scores through the same accumulator) = the procedure with
    stride = window on the same tokens."""
    from transformers import AutoTokenizer

    from compressor.measure.perplexity import perplexity, torch_fn

    model, d = llama
    text = tmp_path / "lm.txt"
    text.write_text(" ".join(T.NEUTRAL * 12) + "\n")
    out = tmp_path / "eval.json"
    r = subprocess.run(
        [sys.executable, "-m", "compressor", "eval", str(d), "--data", str(text), "--max-length", "16", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    metrics = json.loads(out.read_text())["metrics"]
    ids = AutoTokenizer.from_pretrained(d)(text.read_text(), add_special_tokens=False)["input_ids"]
    mine = perplexity(torch_fn(model), np.asarray(ids), 16)
    assert metrics["tokens"] == mine["tokens"] > 0
    assert metrics["perplexity"] == pytest.approx(mine["perplexity"], rel=1e-5)
