"""Pruning on tiny models: structured slicing is exact and reloads, gradual pruning during training, recipe errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from compressor import testing as T
from compressor.core.errors import RecipeError
from compressor.models import count_parameters, load_model
from compressor.onnx.onnx import export_model, parity
from compressor.pipeline.orchestrate import run
from compressor.prune.structured import attention_heads, family_of, prune_structured
from compressor.recipe.schema import MagnitudeCriterion, Recipe, StructuredPrune
from tests.conftest import write_recipe

BUILDERS = {
    "bert": (T.tiny_bert, "sequence-classification"),
    "gpt2": (T.tiny_gpt2, "causal-lm"),
    "llama": (T.tiny_llama, "causal-lm"),
}


def _zero_units(model, heads: list[int], neurons: list[int]) -> None:
    """Make ``heads`` (every layer) and ``neurons`` worthless: all their weights in and out are zero."""
    fam = family_of(model)
    cfg = model.config
    h, d = cfg.num_attention_heads, fam.head_dim(cfg)
    rows = torch.cat([torch.arange(x * d, (x + 1) * d) for x in heads])
    n = torch.tensor(neurons)

    def zero(m, idx, out: bool):
        conv = type(m).__name__ == "Conv1D"  # GPT-2: weight is (in, out)
        w = m.weight.data
        if out == conv:  # output features of a Conv1D / input features of a Linear are columns
            w[:, idx] = 0
        else:
            w[idx] = 0
        if out and m.bias is not None:
            m.bias.data[idx] = 0

    with torch.no_grad():
        for b in fam.blocks(model):
            if b.qkv is not None:
                zero(b.qkv, torch.cat([rows, rows + h * d, rows + 2 * h * d]), out=True)
            else:
                zero(b.q, rows, out=True)
                if fam.kv_heads(cfg) == h:
                    zero(b.k, rows, out=True)
                    zero(b.v, rows, out=True)
            zero(b.out, rows, out=False)
            for m in b.ffn_in:
                zero(m, n, out=True)
            zero(b.ffn_out, n, out=False)


def _ctx(model, tmp_path):
    recipe = Recipe.model_validate({"model": {"path": "x"}, "data": {"train": "y"}})
    return SimpleNamespace(model=model, recipe=recipe, stage_path="stages.0.prune", device="cpu", run_dir=tmp_path)


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_structured_pruning_of_zero_importance_units_keeps_outputs(arch, tmp_path):
    builder, task = BUILDERS[arch]
    model = load_model(builder(tmp_path / arch), task).eval()
    heads = [1, 3] if arch == "llama" else [2]  # tiny llama: 4 query heads in 2 key/value groups → one per group
    _zero_units(model, heads, neurons=list(range(0, 64, 4)))
    ids = torch.randint(5, T.vocab_size(), (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
    before = count_parameters(model)
    # the 16 zeroed neurons go (bert, llama: 64 → 48 per layer; gpt2: 128 → 112)
    cfg = StructuredPrune(heads=len(heads), ffn=16, criterion=MagnitudeCriterion(), round_to=1)
    result = prune_structured(_ctx(model, tmp_path), cfg)
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(got, ref, atol=1e-5), float((got - ref).abs().max())
    assert result["params_after"] == count_parameters(model) < before
    assert all(sorted(set(range(4)) - set(k)) == heads for k in result["heads"]["kept"])
    assert attention_heads(model) == [4 - len(heads)] * model.config.num_hidden_layers

    model.save_pretrained(tmp_path / "pruned")  # plain save_pretrained; reloads at the smaller size
    again = load_model(tmp_path / "pruned", task).eval()
    assert count_parameters(again) == count_parameters(model)
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids, attention_mask=mask).logits, got, atol=1e-6)
    if arch == "llama":  # the head count lives in the standard config: plain from_pretrained works too
        from transformers import AutoModelForCausalLM

        plain = AutoModelForCausalLM.from_pretrained(tmp_path / "pruned").eval()
        with torch.no_grad():
            assert torch.allclose(plain(input_ids=ids, attention_mask=mask).logits, got, atol=1e-6)
    batch = {"input_ids": ids, "attention_mask": mask}
    if task == "sequence-classification":
        batch["token_type_ids"] = torch.zeros_like(ids)
    (tmp_path / "onnx").mkdir()
    export_model(again, batch, tmp_path / "onnx" / "model.onnx")
    check = parity(again, tmp_path / "onnx" / "model.onnx", [batch], tolerance=1e-4)
    assert check["max_abs_diff"] < 1e-4


def test_pruning_more_heads_than_a_layer_has_is_a_recipe_error(tiny_dir, tmp_path):
    recipe = write_recipe(
        tmp_path,
        f"""model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2}}, max_length: 32}}
stages:
  - prune:
      type: structured
      heads: 4
bench: {{enabled: false}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )
    with pytest.raises(RecipeError, match=r"recipe.yaml:6: stages.0.prune.heads: removes 4 of the 4 heads"):
        run(recipe, quiet=True)


def test_grouped_query_heads_must_go_by_whole_groups(tiny_dir, tmp_path):
    recipe = write_recipe(
        tmp_path,
        f"""model: {{path: {tiny_dir / "llama"}, task: causal-lm}}
data: {{train: {tiny_dir / "lm.txt"}, split: {{dev: 0.2}}, max_length: 16}}
stages:
  - prune: {{type: structured, heads: 1, criterion: {{type: magnitude}}}}
bench: {{enabled: false}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )
    with pytest.raises(RecipeError, match=r"recipe.yaml:4: stages.0.prune.heads: .*remove a multiple of 2"):
        run(recipe, quiet=True)


@pytest.mark.parametrize(
    "stage, line, field, message",
    [
        ("- prune: {type: unstructured, sparsity: 1.0}", 4, "stages.0.prune.sparsity", "less than 1"),
        ("- prune: {type: unstructured, sparsity: -0.1}", 4, "stages.0.prune.sparsity", "greater than or equal to 0"),
        (
            "- finetune: {max_steps: 5, prune: {type: unstructured, sparsity: 1.5}}",
            4,
            "stages.0.finetune.prune.sparsity",
            "less than 1",
        ),
        (
            "- prune: {type: unstructured, sparsity: 0.5, criterion: {type: movement}}",
            4,
            "stages.0.prune.criterion.type",
            "movement pruning needs training",
        ),
        (
            "- prune: {type: unstructured, sparsity: 0.5, schedule: {type: cubic}}",
            4,
            "stages.0.prune.schedule.type",
            "needs training",
        ),
        ("- prune: {type: structured}", 4, "stages.0.prune", "say what to remove"),
        ("- prune: {type: structured, heads: 0.5, criterion: {type: movement}}", 4, "stages.0.prune", "movement needs training"),
        ("- prune: {type: unstructured, sparsity: 0.5, include: ['(']}", 4, "stages.0.prune.include", "not a valid regular"),
    ],
)
def test_bad_prune_settings_are_recipe_errors(tiny_dir, tmp_path, stage, line, field, message):
    from compressor.recipe import load_recipe

    recipe = write_recipe(
        tmp_path,
        f"""model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}}}
stages:
  {stage}
""",
    )
    with pytest.raises(RecipeError) as e:
        load_recipe(recipe)
    assert f"recipe.yaml:{line}: {field}" in str(e.value) and message in str(e.value), str(e.value)


def test_patterns_that_match_no_module_are_recipe_errors(tiny_dir, tmp_path):
    recipe = write_recipe(
        tmp_path,
        f"""model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2}}, max_length: 32}}
stages:
  - prune:
      type: unstructured
      sparsity: 0.5
      include: ['encoder', 'decoder\\.block']
bench: {{enabled: false}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )
    with pytest.raises(RecipeError, match=r"recipe.yaml:7: stages.0.prune.include.1: pattern 'decoder\\\\.block' matches no"):
        run(recipe, quiet=True)


def test_gradual_pruning_during_finetune_reaches_the_target_and_the_kept_model_is_pruned(tiny_dir, tmp_path):
    recipe = write_recipe(
        tmp_path,
        f"""name: gmp
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2}}, max_length: 32}}
stages:
  - finetune:
      max_steps: 60
      lr: 1.0e-3
      batch_size: 16
      eval_every: 10
      prune: {{type: unstructured, sparsity: 0.8, schedule: {{type: cubic, start: 5, end: 40, every: 5}}}}
  - export: {{}}
bench: {{enabled: false}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )
    run_dir = run(recipe, quiet=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stage = metrics["stages"][0]
    prune = stage["prune"]
    assert prune["sparsity"] == pytest.approx(0.8, abs=0.005)
    assert [c["step"] for c in prune["curve"]] == [10, 15, 20, 25, 30, 35, 40]  # step 5: cubic starts at 0 %
    curve = [c["sparsity"] for c in prune["curve"]]
    assert all(b >= a for a, b in zip(curve, curve[1:])) and curve[-1] == pytest.approx(0.8, abs=0.005)
    assert stage["best_step"] >= 40  # only fully pruned evaluations compete for the kept checkpoint
    logged = [h["sparsity"] for h in stage["history"] if "sparsity" in h]
    assert logged and logged[-1] == pytest.approx(0.8, abs=0.005)
    # the saved model is a plain HF model whose pruned weights are zeros, and the masks survived 20 more steps
    from safetensors.torch import load_file

    w = load_file(str(run_dir / "model" / "model.safetensors"))
    pruned = [
        k for k in w if k.endswith(".weight") and w[k].ndim == 2 and not any(x in k for x in ("embed", "classifier", "pooler"))
    ]
    assert not any((w[k] == 0).any() for k in w if "pooler" in k)  # the pooler belongs to the task head: never pruned
    zeros = sum(int((w[k] == 0).sum()) for k in pruned)
    assert zeros / sum(w[k].numel() for k in pruned) == pytest.approx(0.8, abs=0.005)
    assert (run_dir / "status").read_text().strip() == "complete"
    report = (run_dir / "report.md").read_text().lower()
    assert "smaller when compressed, not faster" in report and "per-layer sparsity" in report
    assert "| baseline |" in report  # the unpruned model, evaluated beside the pruned one
    html = (run_dir / "report.html").read_text()
    assert "<h2>Compression</h2>" in html and "Per-layer sparsity" in html and "<b>Smaller when compressed" in html
    assert "sparsity of the pruned layers" not in report  # a plot title: in the PNG, not the text


def test_structured_prune_then_distill_from_the_unpruned_teacher(tiny_dir, tmp_path):
    recipe = write_recipe(
        tmp_path,
        f"""name: sp
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2}}, max_length: 32}}
stages:
  - prune: {{type: structured, heads: 2, ffn: 0.5, criterion: {{type: taylor, batches: 4}}}}
  - distill:
      teacher: {tiny_dir / "bert"}
      student: current
      losses: [{{type: logits}}, {{type: hidden}}]
      max_steps: 20
      batch_size: 16
  - export: {{}}
bench: {{batch_sizes: [1], seq_lengths: [16], iterations: 3, warmup: 1}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )
    run_dir = run(recipe, quiet=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    prune = metrics["stages"][0]["prune"]
    assert prune["heads"] == {"before": 4, "after": 2, "kept": prune["heads"]["kept"]}
    assert prune["ffn"] == {"before": 64, "after": 32} and prune["batches_observed"] == 4
    assert metrics["artifacts"]["pytorch"]["params"] == prune["params_after"] < prune["params_before"]
    model = load_model(run_dir / "model", "sequence-classification")
    assert attention_heads(model) == [2, 2] and model.config.intermediate_size == 32
    assert (run_dir / "status").read_text().strip() == "complete"


def test_resume_after_structured_pruning_and_vocabulary_trimming(tiny_dir, tmp_path):
    """Killed after the pruning stages: --resume rebuilds the smaller model (heads in compressor_structure) and
    its trimmed tokenizer from the snapshot, and finishes with the same result as the uninterrupted run."""
    import shutil

    recipe = write_recipe(
        tmp_path,
        f"""name: rs
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2}}, max_length: 32}}
stages:
  - prune: {{type: structured, heads: 1, ffn: 16, criterion: {{type: magnitude}}, round_to: 1}}
  - prune: {{type: vocabulary}}
  - export: {{}}
bench: {{enabled: false}}
output: {{dir: {tmp_path / "runs"}, keep_checkpoints: true}}
""",
    )
    ref = run(recipe, quiet=True)  # keep_checkpoints: the copy below plays a run killed after stage 1
    again = tmp_path / "again"
    shutil.copytree(ref, again)
    shutil.rmtree(again / "checkpoints" / "stage-2-export")
    for f in ("metrics.json", "onnx"):
        p = again / f
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    (again / "status").write_text("running\n")
    run(resume=again, quiet=True)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (ref, again))
    assert "stage 1 (prune): already complete, skipped" in (again / "log.txt").read_text()
    assert b["artifacts"]["onnx"]["params"] == a["artifacts"]["onnx"]["params"]
    assert b["artifacts"]["onnx"]["metrics"]["dev"] == a["artifacts"]["onnx"]["metrics"]["dev"]
    assert b["artifacts"]["baseline"]["params"] == a["artifacts"]["baseline"]["params"] > a["artifacts"]["pytorch"]["params"]
    model = load_model(again / "model", "sequence-classification")
    assert attention_heads(model) == [3, 3] and model.config.vocab_size == b["stages"][1]["vocab_after"]


def test_one_shot_taylor_pruning_inside_training_waits_for_gradients(tiny_dir, tmp_path):
    recipe = write_recipe(
        tmp_path,
        f"""name: os
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2}}, max_length: 32}}
stages:
  - finetune:
      max_steps: 12
      batch_size: 16
      eval_every: 6
      prune: {{type: unstructured, sparsity: 0.5, criterion: {{type: taylor}}, schedule: {{type: one_shot}}}}
bench: {{enabled: false}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )
    stage = json.loads((run(recipe, quiet=True) / "metrics.json").read_text())["stages"][0]
    assert [c["step"] for c in stage["prune"]["curve"]] == [1]  # step 0 has no gradients; step 1 does
    assert stage["prune"]["sparsity"] == pytest.approx(0.5, abs=0.005) and stage["best_step"] in (6, 12)


def test_pruning_and_qat_in_one_stage_act_on_the_same_weights(tiny_dir, tmp_path):
    recipe = write_recipe(
        tmp_path,
        f"""name: pq
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2}}, max_length: 32}}
stages:
  - finetune:
      max_steps: 20
      batch_size: 16
      eval_every: 10
      prune: {{type: unstructured, sparsity: 0.6, schedule: {{type: one_shot}}}}
      qat: {{calibration_batches: 2, freeze_after: 0.5}}
  - export: {{}}
  - quantize: {{type: qat}}
bench: {{enabled: false}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )
    run_dir = run(recipe, quiet=True)
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["stages"][0]["prune"]["sparsity"] == pytest.approx(0.6, abs=0.005) and m["stages"][0]["qat"]["layers"] > 0
    assert m["artifacts"]["int8"]["provenance"]["scheme"] == "qat"
    assert m["artifacts"]["pytorch"]["nonzero_params"] < m["artifacts"]["pytorch"]["params"]


@pytest.mark.parametrize(
    "stages, line, message",
    [
        (
            "  - finetune: {max_steps: 5, qat: {}}\n  - prune: {type: structured, heads: 1}\n  - quantize: {type: qat}",
            5,
            "stages.1.prune: pruning between QAT training",
        ),
        (
            "  - prune: {type: unstructured, sparsity: 0.5}\n  - finetune: {max_steps: 5}",
            5,
            "stages.1.finetune: this stage trains the model that stages.0 made sparse",
        ),
        (
            "  - prune: {type: vocabulary}\n  - distill: {teacher: some/dir, student: {every: 2}}",
            5,
            "stages.1.distill.teacher: the vocabulary was trimmed",
        ),
    ],
)
def test_stage_orders_that_would_undo_or_break_pruning_are_recipe_errors(tiny_dir, tmp_path, stages, line, message):
    from compressor.recipe import load_recipe

    recipe = write_recipe(
        tmp_path,
        f"""model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}}}
stages:
{stages}
""",
    )
    with pytest.raises(RecipeError) as e:
        load_recipe(recipe)
    assert f"recipe.yaml:{line}: {message}" in str(e.value), str(e.value)


def test_training_after_unstructured_pruning_keeps_the_zeros_with_a_one_shot_schedule(tiny_dir, tmp_path):
    recipe = write_recipe(
        tmp_path,
        f"""name: keep
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2}}, max_length: 32}}
stages:
  - prune: {{type: unstructured, sparsity: 0.7}}
  - finetune: {{max_steps: 10, batch_size: 16, prune: {{type: unstructured, sparsity: 0.7, schedule: {{type: one_shot}}}}}}
bench: {{enabled: false}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )
    m = json.loads((run(recipe, quiet=True) / "metrics.json").read_text())
    first, second = m["stages"][0]["prune"], m["stages"][1]["prune"]
    assert first["sparsity"] == pytest.approx(0.7, abs=0.005) and second["sparsity"] == pytest.approx(0.7, abs=0.005)
    assert m["artifacts"]["pytorch"]["nonzero_params"] < m["artifacts"]["baseline"]["nonzero_params"]
