"""Bad input for causal LMs, refused by `compressor validate` in one line with exit 2, naming the field or file:
a model without a language-model head, text shorter than one window."""

from __future__ import annotations

import json
import subprocess
import sys

from compressor import testing as T
from tests.conftest import ROOT, write_recipe


def _validate(recipe):
    return subprocess.run(
        [sys.executable, "-m", "compressor", "validate", str(recipe)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_a_model_without_lm_head_is_refused_for_causal_lm(tmp_path):
    from transformers import AutoModel

    folder = T.tiny_model("llama", tmp_path / "llama")
    AutoModel.from_pretrained(folder).save_pretrained(tmp_path / "base")  # LlamaModel: no head
    assert json.loads((tmp_path / "base" / "config.json").read_text())["architectures"] == ["LlamaModel"]
    text = f"""name: headless
model:
  path: {{path}}
  task: causal-lm
data: {{train: {folder / "vocab.txt"}}}
"""
    r = _validate(write_recipe(tmp_path, text.replace("{path}", str(tmp_path / "base")), "bad.yaml"))
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 2, out
    assert "bad.yaml:3" in out and "model.path" in out and "config.json" in out and "language-model head" in out
    assert len(out.splitlines()) == 1 and "Traceback" not in out
    r = _validate(write_recipe(tmp_path, text.replace("{path}", str(folder)), "good.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_text_shorter_than_one_window_is_refused(tmp_path):
    folder = T.tiny_model("llama", tmp_path / "llama")
    short = tmp_path / "short.txt"
    short.write_text("the movie was good\n")
    out = tmp_path / "e.json"
    r = subprocess.run(
        [sys.executable, "-m", "compressor", "eval", str(folder), "--data", str(short), "--max-length", "64", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    text = (r.stdout + r.stderr).strip()
    assert r.returncode == 2, text
    assert "fewer than one" in text and "64" in text and "Traceback" not in text and not out.exists()


def test_which_architectures_have_no_lm_head():
    from compressor.recipe.model_config import lm_head_problem

    for headless in (["LlamaModel"], ["GPT2Model"]):
        assert "without a language-model head" in lm_head_problem({"architectures": headless})
    for fine in (["GPT2LMHeadModel"], ["GPT2DoubleHeadsModel"], ["LlamaForCausalLM"], None, []):
        assert lm_head_problem({"architectures": fine}) is None
