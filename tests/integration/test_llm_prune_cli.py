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
    r = subprocess.run([sys.executable, "-m", "compressor", *args], cwd=cwd, env=env or ENV, capture_output=True,
                       text=True, timeout=600)
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
data: {{train: {folder / 'lm.txt'}, max_length: 16}}
stages:
{stages}
evaluate: {{artifacts: [torch]}}
bench: {{enabled: false}}
""")
    return p


def test_nm_width_not_divisible_is_refused_by_validate(folder):
    r = recipe(folder, '  - prune: {type: unstructured, sparsity: 0.5, pattern: "4:8", criterion: {type: wanda}}',
               model="llama36")
    line = one_line(*cli(["validate", str(r)], folder), "stages.0.prune.pattern", "multiple of 8", "hidden_size is 36")
    assert f"{r.name}:4:" in line


def test_nm_sparsity_mismatch_and_one_shot_criterion_in_training(folder):
    r = recipe(folder, '  - prune: {type: unstructured, sparsity: 0.6, pattern: "2:4"}')
    one_line(*cli(["validate", str(r)], folder), "stages.0.prune.pattern", "sparsity must be 0.5")
    r = recipe(folder, "  - finetune: {max_steps: 2, prune: {sparsity: 0.5, criterion: {type: sparsegpt}}}")
    one_line(*cli(["validate", str(r)], folder), "stages.0.finetune.prune", "one-shot")
