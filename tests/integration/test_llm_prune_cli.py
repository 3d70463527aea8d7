"""The LLM pruning and recovery options through the command line: bad input is one line naming the field, exit 2,
from ``validate`` where the config alone tells; a prune -> LoRA recovery run keeps the masks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compressor import testing as T

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def cli(args: list[str], cwd: Path, env: dict | None = None) -> tuple[int, str, str]:
    r = subprocess.run(
        [sys.executable, "-m", "compressor", *args], cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=600
    )
    return r.returncode, r.stdout, r.stderr


def one_line(code: int, out: str, err: str, *needles: str) -> str:
    assert code == 2, (code, out, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("llm-cli")
    T.tiny_llama(d / "llama", hidden=64)
    T.tiny_llama(d / "llama36", hidden=36, heads=2, kv_heads=1)  # hidden 36: no multiple of 8
    T.write_lm_text(d / "lm.txt")
    return d


def recipe(folder: Path, stages: str, model: str = "llama") -> Path:
    p = folder / f"r{abs(hash(stages + model))}.yaml"
    p.write_text(f"""model: {{path: {folder / model}, task: causal-lm}}
data: {{train: {folder / "lm.txt"}, max_length: 16}}
stages:
{stages}
evaluate: {{artifacts: [torch]}}
bench: {{enabled: false}}
""")
    return p


def test_nm_width_not_divisible_is_refused_by_validate(folder):
    r = recipe(
        folder, '  - prune: {type: unstructured, sparsity: 0.5, pattern: "4:8", criterion: {type: wanda}}', model="llama36"
    )
    line = one_line(*cli(["validate", str(r)], folder), "stages.0.prune.pattern", "multiple of 8", "hidden_size is 36")
    assert f"{r.name}:4:" in line


def test_nm_sparsity_mismatch_and_one_shot_criterion_in_training(folder):
    r = recipe(folder, '  - prune: {type: unstructured, sparsity: 0.6, pattern: "2:4"}')
    one_line(*cli(["validate", str(r)], folder), "stages.0.prune.pattern", "sparsity must be 0.5")
    r = recipe(folder, "  - finetune: {max_steps: 2, prune: {sparsity: 0.5, criterion: {type: sparsegpt}}}")
    one_line(*cli(["validate", str(r)], folder), "stages.0.finetune.prune", "one-shot")


BLOCK = """import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == {0!r} or name.startswith({0!r} + "."):
            raise ModuleNotFoundError("No module named " + {0!r})
        return None
sys.meta_path.insert(0, _Blocked())
"""


def without(package: str, tmp_path: Path) -> dict:
    """An environment whose Python cannot import ``package``."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK.format(package))
    return {**ENV, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}


def test_lora_without_peft_is_refused_by_validate(folder, tmp_path):
    r = recipe(folder, "  - finetune: {max_steps: 2, lora: {rank: 4}}")
    one_line(*cli(["validate", str(r)], folder, without("peft", tmp_path)), "stages.0.finetune.lora", "peft", "compressor[llm]")
    assert cli(["validate", str(r)], folder)[0] == 0  # with peft installed the same recipe is fine


def test_qlora_without_bitsandbytes_is_refused_by_validate(folder, tmp_path):
    import importlib.util

    r = recipe(folder, "  - distill: {student: {layers: [0]}, max_steps: 2, lora: {rank: 4, base: nf4}}")
    env = without("bitsandbytes", tmp_path)
    line = one_line(*cli(["validate", str(r)], folder, env), "stages.0.distill.lora.base", "bitsandbytes", "compressor[qlora]")
    assert "base: full" in line
    full = recipe(folder, "  - distill: {student: {layers: [0]}, max_steps: 2, lora: {rank: 4, base: full}}")
    assert cli(["validate", str(full)], folder, env)[0] == 0  # the default base needs no bitsandbytes
    code = cli(["validate", str(r)], folder)[0]  # this environment: refused exactly when bitsandbytes is missing
    assert code == (0 if importlib.util.find_spec("bitsandbytes") else 2)


def test_lora_target_matching_nothing_exits_2_naming_the_field(folder, tmp_path):
    r = recipe(folder, "  - finetune: {max_steps: 2, lora: {target_modules: [q_proj, attn_qkv]}}")
    code, out, err = cli(["run", str(r), "--output", str(tmp_path / "out")], folder)
    one_line(code, out, err, "stages.0.finetune.lora.target_modules.1", "'attn_qkv' matches no Linear module")


def test_prune_then_lora_recovery_run_keeps_the_2_4_masks(folder, tmp_path):
    import json

    from safetensors.torch import load_file

    r = recipe(
        folder,
        """  - prune: {type: unstructured, sparsity: 0.5, pattern: "2:4", criterion: {type: sparsegpt, samples: 8}}
  - finetune: {max_steps: 4, lr: 1.0e-2, batch_size: 8, lora: {rank: 4}}""",
    )
    code, out, err = cli(["run", str(r), "--output", str(tmp_path / "out")], folder)
    assert code == 0, err[-3000:]
    run = tmp_path / "out" / "run"
    weights = load_file(run / "model" / "model.safetensors")
    pruned = [k for k in weights if k.startswith("model.layers.") and k.endswith("proj.weight")]
    assert len(pruned) == 14
    for k in pruned:
        groups = (weights[k] != 0).reshape(weights[k].shape[0], -1, 4).sum(-1)
        assert bool((groups <= 2).all()), k
    metrics = json.loads((run / "metrics.json").read_text())
    text = json.dumps(metrics)
    assert '"sparsity_after_merge"' in text and '"pattern": "2:4"' in text
