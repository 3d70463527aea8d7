"""Shared fixtures: tiny models from configs, tiny data, and a guard that nothing downloads."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# tiny models: one intra-op thread is faster than two, and subprocesses (`compressor run` in a child, accelerate
# launch) inherit it, so in-process and subprocess runs compute the same floats in the same order
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test (local sockets are fine)."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or self.family == socket.AF_UNIX):
            return real_connect(self, address)
        raise RuntimeError(f"test tried to reach the network: {address}")

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(RuntimeError(f"network: {a}")))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    from compressor import testing as T

    d = tmp_path_factory.mktemp("tiny")
    T.tiny_bert(d / "bert")
    T.tiny_gpt2(d / "gpt2")
    T.tiny_llama(d / "llama")
    T.write_sentiment_csv(d / "sent.csv", n=400)
    T.write_lm_text(d / "lm.txt")
    return d


@pytest.fixture(scope="session")
def tiny_bert_onnx(tiny_dir, tmp_path_factory) -> dict:
    """The tiny BERT classifier exported plain and fused by ORT's optimizer (read-only: copy before changing).

    {"plain": path, "fused": path, "fusions": {op: count}, "model": the PyTorch model}"""
    from compressor.models import load_model, load_tokenizer
    from compressor.onnx.onnx import export_model, optimize

    d = tmp_path_factory.mktemp("tiny_bert_onnx")
    model = load_model(tiny_dir / "bert", "sequence-classification", 2, ["negative", "positive"])
    tok = load_tokenizer(tiny_dir / "bert")
    export_model(model, dict(tok(["a good film", "a bad and boring film"], padding=True, return_tensors="np")), d / "plain.onnx")
    fusions = optimize(d / "plain.onnx", model.config, d / "fused.onnx")
    return {"plain": d / "plain.onnx", "fused": d / "fused.onnx", "fusions": fusions, "model": model}


def write_recipe(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    p = Path(folder) / name
    p.write_text(text)
    return p


@pytest.fixture
def cls_recipe(tiny_dir, tmp_path) -> Path:
    return write_recipe(
        tmp_path,
        f"""
name: tiny-cls
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2, test: 0.1}}, max_length: 32}}
stages:
  - finetune: {{epochs: 10, lr: 1.0e-3, batch_size: 16}}
  - export: {{}}
  - quantize: {{type: dynamic}}
bench: {{batch_sizes: [1], seq_lengths: [32], iterations: 3, warmup: 1}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )


@pytest.fixture
def lm_recipe(tiny_dir, tmp_path) -> Path:
    return write_recipe(
        tmp_path,
        f"""
name: tiny-lm
model: {{path: {tiny_dir / "gpt2"}, task: causal-lm}}
data: {{train: {tiny_dir / "lm.txt"}, split: {{dev: 0.2}}, max_length: 16}}
stages:
  - finetune: {{epochs: 2, lr: 1.0e-3, batch_size: 8}}
  - export: {{}}
  - quantize: {{type: dynamic}}
bench: {{batch_sizes: [1], seq_lengths: [16], iterations: 3, warmup: 1}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )
