"""Every family × two chains, in-process on tiny models built from configs (issue 18):

- structured prune (taylor) → layer-subset student of the pruned model → export (parity) → static INT8
- one-shot unstructured prune → export (parity) → dynamic INT8

Each cell either completes — parity checked, the shapes the stages promise, a model that reloads — or is
refused by ``load_recipe`` (what ``compressor validate`` runs) before anything loads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from compressor import testing as T
from compressor.arch.families import attention_heads, family_of
from compressor.core.errors import RecipeError
from compressor.recipe import load_recipe
from tests.conftest import write_recipe

FAMILIES = sorted(T.TINY)
GROUPED = {mt for mt, (_, _, kw) in T.TINY.items() if kw.get("num_key_value_heads", 4) not in (None, 4)}
PAIRS = {mt for mt in GROUPED if T.TINY[mt][2]["num_key_value_heads"] == 2}  # 4 query heads over 2 key/value heads
FUSED_ATTENTION = {"bert", "roberta", "xlm-roberta", "electra", "distilbert"}  # ORT's bert optimizer: Attention
UNFUSED = {"deberta-v2", "mpnet", "modernbert"}  # encoders ONNX Runtime's optimizer cannot fuse


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("families")
    T.write_sentiment_csv(d / "sent.csv", n=96)
    T.write_lm_text(d / "lm.txt", n_lines=120)
    return {"root": d, **{mt: T.tiny_model(mt, d / mt) for mt in FAMILIES}}


def _recipe(dirs, mt: str, tmp_path: Path, stages: str) -> Path:
    causal = T.TINY[mt][1]
    data = (
        f"{{train: {dirs['root'] / 'lm.txt'}, split: {{dev: 0.2}}, max_length: 16}}"
        if causal
        else f"{{train: {dirs['root'] / 'sent.csv'}, split: {{dev: 0.25}}, max_length: 16}}"
    )
    return write_recipe(
        tmp_path,
        f"""model: {{path: {dirs[mt]}, task: {"causal-lm" if causal else "sequence-classification"}}}
data: {data}
stages:
{stages}
bench: {{enabled: false}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )


def run_stages(recipe_path: Path, tmp_path: Path):
    """What ``compressor run`` does up to the end of the last stage (no evaluation, benchmark or report)."""
    from compressor.core.registry import STAGES
    from compressor.pipeline.orchestrate import _register_stages, build_context

    recipe, _ = load_recipe(recipe_path)
    _register_stages()
    ctx = build_context(recipe, recipe_path.parent, tmp_path / "run")
    for i, (kind, cfg) in enumerate(recipe.stage_list()):
        ctx.stage_path, ctx.stage_dir = f"stages.{i}.{kind}", tmp_path / "run" / f"stage-{i}"
        t0 = time.perf_counter()
        ctx.stage_results.append({"stage": kind, **(STAGES.get(cfg)(ctx, cfg) or {})})
        ctx.stage_results[-1]["seconds"] = time.perf_counter() - t0
    return ctx


STRUCTURED = """  - prune: {type: structured, heads: 2, ffn: 16, round_to: 1, criterion: {type: taylor, batches: 1}}
  - distill: {student: {layers: [1]}, max_steps: 2, batch_size: 8}
  - export: {}
  - quantize: {type: static, calibration_samples: 12, calibration_batch_size: 8}"""


@pytest.mark.parametrize("mt", FAMILIES)
def test_structured_prune_layer_student_export_static_int8(mt, family_dirs, tmp_path):
    ctx = run_stages(_recipe(family_dirs, mt, tmp_path, STRUCTURED), tmp_path)
    model, fam = ctx.model, family_of(ctx.model)
    prune, distill, export, quant = ctx.stage_results
    prune = prune["prune"]
    assert prune["heads"] == {**prune["heads"], "before": 4, "after": 2} and prune["ffn"]["after"] == prune["ffn"]["before"] - 16
    assert attention_heads(model) == [2] and model.config.num_hidden_layers == 1
    assert fam.ffn_size(model.config) == prune["ffn"]["after"]
    if mt in GROUPED:  # whole key/value groups or one query head per group: either way the config says which
        assert fam.kv_heads(model.config) == prune["kv_heads"]["after"] in (1, 2)
    assert export["parity"]["max_abs_diff"] <= 1e-3
    onnx_dir = ctx.run_dir / "onnx"
    record = json.loads((onnx_dir / "model.onnx.json").read_text())
    if mt in UNFUSED:
        assert "fusions" not in export and not record["fusion"]["applied"] and mt in record["fusion"]["reason"]
    if mt in FUSED_ATTENTION:  # fused attention and the [CLS]-only last layer
        assert export["fusions"].get("Attention", 0) + export["fusions"].get("MultiHeadAttention", 0) >= 1
        assert export["cls_only_last_layer"] is True
    assert (onnx_dir / "model.int8.onnx").is_file() and "parity" in json.dumps(quant)
    # the pruned one-layer student saves and reloads at its size
    from compressor.models import count_parameters, load_model

    model.save_pretrained(tmp_path / "saved")
    again = load_model(tmp_path / "saved", ctx.task)
    assert count_parameters(again) == count_parameters(model)
    ids = torch.randint(5, T.vocab_size(), (2, 9))
    with torch.no_grad():
        a = model.eval()(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        b = again(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert torch.allclose(a, b, atol=1e-5)


UNSTRUCTURED = """  - prune: {type: unstructured, sparsity: 0.5}
  - export: {}
  - quantize: {type: dynamic}"""


@pytest.mark.parametrize("mt", FAMILIES)
def test_unstructured_prune_export_dynamic_int8(mt, family_dirs, tmp_path):
    ctx = run_stages(_recipe(family_dirs, mt, tmp_path, UNSTRUCTURED), tmp_path)
    prune, export, quant = ctx.stage_results
    prune = prune["prune"]
    assert prune["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert export["parity"]["max_abs_diff"] <= 1e-3
    assert (ctx.run_dir / "onnx" / "model.int8.onnx").is_file()


@pytest.mark.parametrize("mt", sorted(PAIRS))
def test_heads_that_split_a_key_value_group_are_refused_at_validate(mt, family_dirs, tmp_path):
    recipe = _recipe(family_dirs, mt, tmp_path, "  - prune: {type: structured, heads: 1}")
    with pytest.raises(RecipeError, match=r"recipe.yaml:\d+: stages.0.prune.heads: .*key/value heads: remove a multiple"):
        load_recipe(recipe)


def test_a_family_without_structured_pruning_is_refused_at_validate(family_dirs, tmp_path):
    cfg = json.loads((family_dirs["bert"] / "config.json").read_text())
    other = tmp_path / "model"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "bloom"}))
    recipe = _recipe({**family_dirs, "bert": other}, "bert", tmp_path, STRUCTURED)
    with pytest.raises(RecipeError, match=r"recipe.yaml:\d+: stages.0.prune: structured pruning supports .* not 'bloom'"):
        load_recipe(recipe)


def test_a_worthless_key_value_group_goes_whole(family_dirs, tmp_path):
    """4 query heads over 2 key/value heads; group 1 (query heads 2, 3 and key/value head 1) contributes nothing:
    removing 2 heads removes that group, key/value head included, and the outputs stay the same."""
    from types import SimpleNamespace

    from compressor.models import load_model
    from compressor.prune.structured import prune_structured
    from compressor.recipe.schema import MagnitudeCriterion, Recipe, StructuredPrune

    model = load_model(family_dirs["qwen2"], "causal-lm").eval()
    d = model.config.hidden_size // model.config.num_attention_heads
    with torch.no_grad():
        for layer in model.model.layers:
            a = layer.self_attn
            a.q_proj.weight[2 * d :] = 0
            a.q_proj.bias[2 * d :] = 0
            a.o_proj.weight[:, 2 * d :] = 0
    ids = torch.randint(5, T.vocab_size(), (2, 9))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
    ctx = SimpleNamespace(
        model=model,
        recipe=Recipe.model_validate({"model": {"path": "x"}, "data": {"train": "y"}}),
        stage_path="stages.0.prune",
        device="cpu",
        run_dir=tmp_path,
    )
    result = prune_structured(ctx, StructuredPrune(heads=2, criterion=MagnitudeCriterion()))
    assert result["kv_heads"] == {"before": 2, "after": 1, "kept": [[0], [0]]}
    assert model.config.num_key_value_heads == 1 and model.config.num_attention_heads == 2
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, ref, atol=1e-5)
    model.save_pretrained(tmp_path / "pruned")
    again = load_model(tmp_path / "pruned", "causal-lm")
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids).logits, ref, atol=1e-5)


def test_validate_refuses_a_head_count_that_splits_groups_with_exit_2(family_dirs, tmp_path):
    import os
    import subprocess
    import sys

    recipe = _recipe(family_dirs, "llama", tmp_path, "  - finetune: {max_steps: 1}\n  - prune: {type: structured, heads: 3}")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    p = subprocess.run([sys.executable, "-m", "compressor", "validate", str(recipe)], capture_output=True, text=True, env=env)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and "recipe.yaml:5: stages.1.prune.heads:" in lines[0] and "remove a multiple of 2" in lines[0]
