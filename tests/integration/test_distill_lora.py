"""``distill`` with ``lora:`` through the command line, on tiny causal LMs built from a config: a layer-subset student
distilled with LoRA adapters runs end to end, the adapters are merged, and neither the saved model nor the ONNX graph
holds a LoRA module; after a one-shot 2:4 prune, ``distill: {student: current, lora: ...}`` keeps every mask exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compressor import testing as T

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("distill-lora")
    T.tiny_llama(d / "llama", layers=4, hidden=64)
    T.tiny_qwen2(d / "qwen2", layers=4, hidden=64)
    T.write_lm_text(d / "lm.txt")
    return d


def run(folder: Path, tmp_path: Path, model: str, stages: str) -> Path:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""model: {{path: {folder / model}, task: causal-lm}}
data: {{train: {folder / "lm.txt"}, split: {{dev: 0.2}}, max_length: 16}}
stages:
{stages}
evaluate: {{artifacts: [torch]}}
bench: {{enabled: false}}
""")
    r = subprocess.run(
        [sys.executable, "-m", "compressor", "run", str(recipe), "--output", str(tmp_path / "out")],
        cwd=folder,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp_path / "out" / "run"


@pytest.mark.parametrize("model", ["llama", "qwen2"])
def test_layer_subset_student_distilled_with_lora_exports_a_plain_model(folder, tmp_path, model):
    import onnx
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = run(
        folder,
        tmp_path,
        model,
        """  - distill:
      student: {layers: [0, 3]}
      losses: [{type: logits, alpha: 0.0, temperature: 1.0}]
      lora: {rank: 4, alpha: 8, dropout: 0.0}
      max_steps: 6
      lr: 1.0e-2
      batch_size: 8
  - export: {}""",
    )
    st = json.loads((out / "metrics.json").read_text())["stages"][0]
    assert st["stage"] == "distill" and st["student"]["layers"] == 2 and st["teacher"]["layers"] == 4
    lora = st["lora"]
    assert lora["merged_layers"] == lora["layers"] == 14  # 7 Linears x 2 layers, every one merged
    assert 0 < lora["trainable_params"] < st["student"]["params"] / 2
    assert [h for h in st["history"] if "kd" in h], "the KD term ran"
    weights = load_file(out / "model" / "model.safetensors")
    assert not [k for k in weights if "lora" in k.lower()], "the saved student holds adapter weights"
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    assert not (out / "model" / "adapter_config.json").exists()
    student = AutoModelForCausalLM.from_pretrained(out / "model")
    assert not [n for n, _ in student.named_modules() if "lora" in n.lower()]
    # the adapters moved the weights: the merged student is not the teacher's layers 0 and 3 unchanged
    teacher = load_file(folder / model / "model.safetensors")
    assert any(
        not bool((weights[f"model.layers.1.{k}"] == teacher[f"model.layers.3.{k}"]).all())
        for k in ("self_attn.q_proj.weight", "mlp.down_proj.weight")
    )
    graph = onnx.load(str(next(out.rglob("model.onnx"))), load_external_data=False).graph
    names = [i.name for i in graph.initializer] + [n.name for n in graph.node]
    assert names and not [n for n in names if "lora" in n.lower()], "the ONNX graph holds adapter weights"


def test_lora_distillation_after_2_4_pruning_keeps_every_mask(folder, tmp_path):
    from safetensors.torch import load_file

    out = run(
        folder,
        tmp_path,
        "llama",
        f"""  - prune: {{type: unstructured, sparsity: 0.5, pattern: "2:4", criterion: {{type: wanda, samples: 8}}}}
  - distill:
      teacher: {folder / "llama"}
      student: current
      losses: [{{type: logits, alpha: 0.5, temperature: 2.0}}]
      lora: {{rank: 4}}
      max_steps: 6
      lr: 1.0e-2
      batch_size: 8""",
    )
    stages = json.loads((out / "metrics.json").read_text())["stages"]
    lora = stages[1]["lora"]
    assert lora["sparsity_before_merge"] == pytest.approx(0.5, abs=1e-9)
    assert lora["sparsity_after_merge"] == lora["sparsity_before_merge"]
    assert lora["regrown_and_reset"] > 0  # the raw merge would have regrown pruned weights
    weights = load_file(out / "model" / "model.safetensors")
    pruned = [k for k in weights if k.startswith("model.layers.") and k.endswith("proj.weight")]
    assert len(pruned) == 28
    for k in pruned:
        groups = (weights[k] != 0).reshape(weights[k].shape[0], -1, 4).sum(-1)
        assert bool((groups == 2).all()), f"{k}: not exactly 2 of every 4 weights kept after the merge"
    assert not [k for k in weights if "lora" in k.lower()]


def test_distill_with_lora_without_peft_is_refused_by_validate(folder, tmp_path):
    from tests.integration.test_llm_prune_cli import cli, one_line, without

    env = without("peft", tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""model: {{path: {folder / "llama"}, task: causal-lm}}
data: {{train: {folder / "lm.txt"}, max_length: 16}}
stages:
  - distill: {{student: {{every: 2}}, max_steps: 2, lora: {{rank: 4}}}}
""")
    one_line(*cli(["validate", str(recipe)], folder, env), "stages.0.distill.lora", "peft", "compressor[llm]")
    assert cli(["validate", str(recipe)], folder)[0] == 0  # with peft installed the same recipe is fine
