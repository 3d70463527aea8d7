"""Distillation on tiny models: student construction, training signal, errors, end to end."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from compressor import testing as T
from compressor.core.errors import ModelError, RecipeError
from compressor.distill.losses import build_terms
from compressor.distill.stage import check_vocab, make_loss_fn
from compressor.distill.student import build_student, from_layers
from compressor.pipeline.orchestrate import run
from compressor.recipe.schema import HiddenLoss, LogitLoss, StudentConfig
from tests.conftest import write_recipe


def _bert(tmp_path, name="t", **kw):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(T.tiny_bert(tmp_path / name, **kw))


def test_layer_subset_student_copies_the_right_teacher_weights(tmp_path):
    teacher = _bert(tmp_path, layers=4)
    student = from_layers(teacher, [0, 3])
    assert student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2
    for s_idx, t_idx in ((0, 0), (1, 3)):
        for (ns, ps), (nt, pt) in zip(
            student.bert.encoder.layer[s_idx].named_parameters(), teacher.bert.encoder.layer[t_idx].named_parameters()
        ):
            assert ns == nt and torch.equal(ps, pt), ns
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    with pytest.raises(ValueError, match="layer 4 does not exist"):
        from_layers(teacher, [0, 4])


def test_layer_subset_works_for_decoders(tmp_path):
    from transformers import AutoModelForCausalLM

    for builder in (T.tiny_gpt2, T.tiny_llama):
        teacher = AutoModelForCausalLM.from_pretrained(builder(tmp_path / builder.__name__, layers=4))
        student = build_student(teacher, StudentConfig(every=2))
        assert student.config.num_hidden_layers == 2
        ids = torch.tensor([[5, 6, 7, 8]])
        assert student(input_ids=ids).logits.shape == teacher(input_ids=ids).logits.shape


def test_kd_loss_decreases_on_a_fixed_batch(tmp_path):
    teacher = _bert(tmp_path, layers=2, seed=1).eval()
    student = build_student(teacher, StudentConfig(num_hidden_layers=1, hidden_size=16, intermediate_size=32))
    terms = build_terms([LogitLoss(alpha=0.0, temperature=2.0), HiddenLoss()], student.config, teacher.config, causal=False)
    assert terms[1].proj is not None  # width 16 → 32 needs a projection
    loss_fn = make_loss_fn(teacher, terms, "cpu")
    torch.manual_seed(0)
    ids = torch.randint(5, T.vocab_size(), (8, 12))
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
        "labels": torch.randint(0, 2, (8,)),
    }
    params = list(student.parameters()) + list(terms[1].parameters())
    opt = torch.optim.AdamW(params, lr=3e-3)
    losses = []
    for _ in range(30):
        loss, _ = loss_fn(student, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for p in teacher.parameters())  # the teacher never trains
    assert "proj" not in " ".join(n for n, _ in student.named_parameters())


def test_vocab_mismatch_is_a_clear_error(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    a = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=16, n_layer=1, n_head=2))
    b = GPT2LMHeadModel(GPT2Config(vocab_size=120, n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(ModelError, match="vocabularies differ \\(100 vs 120"):
        check_vocab(a, b)


def test_student_larger_than_teacher_warns(tmp_path, caplog):
    teacher = _bert(tmp_path, layers=1)
    with caplog.at_level(logging.WARNING, logger="compressor"):
        build_student(teacher, StudentConfig(num_hidden_layers=3))
    assert "larger than the teacher" in caplog.text


def _distill_recipe(
    tiny_dir,
    tmp_path,
    model="bert",
    task="sequence-classification",
    student="{layers: [1]}",
    losses="[{type: logits}]",
    data=None,
    extra="",
):
    data = data or f"{{train: {tiny_dir / 'sent.csv'}, split: {{dev: 0.2}}, max_length: 32}}"
    return write_recipe(
        tmp_path,
        f"""name: d
model: {{path: {tiny_dir / model}, task: {task}}}
data: {data}
stages:
  - distill:
      student: {student}
      losses: {losses}
      epochs: 3
      lr: 1.0e-3
      batch_size: 16{extra}
bench: {{enabled: false}}
output: {{dir: {tmp_path / "runs"}}}
""",
    )


def test_layer_that_does_not_exist_is_a_recipe_error_with_line(tiny_dir, tmp_path):
    recipe = _distill_recipe(tiny_dir, tmp_path, student="{layers: [0, 5]}")
    with pytest.raises(RecipeError) as e:
        run(recipe, quiet=True)
    assert e.value.line == 6 and "stages.0.distill.student.layers" in str(e.value) and "layer 5 does not exist" in str(e.value)
    assert str(e.value).startswith(f"{recipe}:6: ")


def test_layer_map_out_of_range_is_a_recipe_error(tiny_dir, tmp_path):
    recipe = _distill_recipe(tiny_dir, tmp_path, losses="[{type: hidden, layer_map: {0: 9}}]")
    with pytest.raises(RecipeError, match=r":7: stages\.0\.distill\.losses: layer_map names teacher layer 9"):
        run(recipe, quiet=True)


@pytest.mark.parametrize(
    "bad, field",
    [("temperature: 0", "temperature"), ("temperature: -1", "temperature"), ("alpha: 1.5", "alpha"), ("alpha: -0.1", "alpha")],
)
def test_bad_temperature_and_alpha_are_recipe_errors(tiny_dir, tmp_path, bad, field):
    from compressor.recipe import load_recipe

    recipe = _distill_recipe(tiny_dir, tmp_path, losses=f"[{{type: logits, {bad}}}]")
    with pytest.raises(RecipeError, match=rf":7: stages\.0\.distill\.losses\.0\.{field}: "):
        load_recipe(recipe)


def test_classifier_distillation_end_to_end(tiny_dir, tmp_path):
    recipe = _distill_recipe(
        tiny_dir,
        tmp_path,
        model="bert",
        losses="[{type: logits, temperature: 2.0, alpha: 0.5}, {type: hidden}, {type: attention}]",
        extra="\n      eval_every: 10",
    )
    m = json.loads((run(recipe, quiet=True) / "metrics.json").read_text())
    st = m["stages"][0]
    assert st["stage"] == "distill" and st["student"]["layers"] == 1 and st["teacher"]["layers"] == 2
    assert st["student"]["params"] < st["teacher"]["params"]
    logged = [h for h in st["history"] if "loss" in h]
    assert {"kd", "ce", "hidden", "attention"} <= set(logged[0])
    saved = json.loads((tmp_path / "runs/d/model/config.json").read_text())
    assert saved["num_hidden_layers"] == 1


@pytest.mark.parametrize("model", ["gpt2", "llama"])
def test_causal_lm_distillation_end_to_end(tiny_dir, tmp_path, model):
    data = f"{{train: {tiny_dir / 'lm.txt'}, split: {{dev: 0.2}}, max_length: 16}}"
    recipe = _distill_recipe(
        tiny_dir,
        tmp_path,
        model=model,
        task="causal-lm",
        student="{layers: [0]}",
        losses="[{type: logits, temperature: 1.0, alpha: 0.5}, {type: hidden}]",
        data=data,
        extra="\n      eval_every: 8",
    )  # 18 steps (a tenth of the blocks is the validation split)
    m = json.loads((run(recipe, quiet=True) / "metrics.json").read_text())
    st = m["stages"][0]
    losses = [h["loss"] for h in st["history"] if "loss" in h]
    assert losses[-1] < losses[0]
    ppl = m["artifacts"]["pytorch"]["metrics"]["dev"]["perplexity"]
    assert 1.0 < ppl < T.vocab_size()
    assert st["teacher"]["metrics"]["dev"]["perplexity"] > 1.0


def test_cached_teacher_logits_give_the_same_student(tiny_dir, tmp_path):
    """Caching the (deterministic, eval-mode) teacher's logits changes the cost, not the result."""
    out = {}
    for cache in (False, True):
        folder = tmp_path / str(cache)
        folder.mkdir()
        recipe = _distill_recipe(
            tiny_dir,
            folder,
            losses="[{type: logits, temperature: 2.0, alpha: 0.5}]",
            extra=f"\n      cache_teacher_logits: {str(cache).lower()}",
        )
        run_dir = run(recipe, quiet=True)
        out[cache] = json.loads((run_dir / "metrics.json").read_text())["stages"][0]["history"]
        if cache:  # written for the stage, and removed with the other stage files once the run is complete
            assert "teacher logits: cached for" in (run_dir / "log.txt").read_text()
            assert not (run_dir / "checkpoints/stage-0-distill/teacher_logits.npy").exists()
    la = [h["loss"] for h in out[False] if "loss" in h]
    lb = [h["loss"] for h in out[True] if "loss" in h]
    assert lb == pytest.approx(la, rel=1e-4)


def test_cache_with_hidden_transfer_is_a_recipe_error(tiny_dir, tmp_path):
    recipe = _distill_recipe(
        tiny_dir, tmp_path, losses="[{type: logits}, {type: hidden}]", extra="\n      cache_teacher_logits: true"
    )
    with pytest.raises(RecipeError, match="cache_teacher_logits: caching works for classifiers"):
        run(recipe, quiet=True)


def test_transfer_texts_are_learned_from_the_teacher_only_and_never_repeat_labelled_or_eval_texts(tiny_dir, tmp_path):
    import csv
    import random

    rows = list(csv.DictReader(open(tiny_dir / "sent.csv", newline="")))
    rng = random.Random(1)
    texts = [T.sentiment_sentence(rng, i % 2) + " w7" for i in range(150)]  # unlabelled, same vocabulary
    transfer = tmp_path / "transfer.txt"
    transfer.write_text("\n".join(texts + [r["text"] for r in rows]) + "\n")  # the labelled rows too: all must go
    recipe = _distill_recipe(
        tiny_dir,
        tmp_path,
        losses="[{type: logits, temperature: 2.0, alpha: 0.5}]",
        extra=f"\n      transfer: {{path: {transfer}}}\n      cache_teacher_logits: true",
    )
    run_dir = run(recipe, quiet=True)
    log = (run_dir / "log.txt").read_text()
    m = json.loads((run_dir / "metrics.json").read_text())
    n_train, n_dev = m["data"]["train"], m["data"]["dev"]
    expect = len(set(texts))  # dev texts never leak in; train texts are already there, with their labels
    assert f"{expect} transfer texts" in log and f"{n_train} labelled + {expect} transfer examples" in log, log
    assert n_dev > 0 and len(rows) == n_train + n_dev + m["data"]["validation"]  # validation: held out for selection
    logged = [h for h in m["stages"][0]["history"] if "loss" in h]
    assert logged and all(h["ce"] >= 0 and h["kd"] >= 0 for h in logged)


def test_transfer_needs_soft_targets_and_a_classifier(tiny_dir, tmp_path):
    from compressor.recipe import load_recipe

    transfer = tmp_path / "t.txt"
    transfer.write_text("good film\n")
    hard = _distill_recipe(
        tiny_dir, tmp_path, losses="[{type: logits, alpha: 1.0}]", extra=f"\n      transfer: {{path: {transfer}}}"
    )
    with pytest.raises(RecipeError, match=r"recipe.yaml:\d+: stages.0.distill.transfer: transfer rows have no labels"):
        load_recipe(hard)
    data = f"{{train: {tiny_dir / 'lm.txt'}, split: {{dev: 0.2}}, max_length: 16}}"
    lm = _distill_recipe(
        tiny_dir, tmp_path, model="gpt2", task="causal-lm", data=data, extra=f"\n      transfer: {{path: {transfer}}}"
    )
    with pytest.raises(RecipeError, match="a transfer set is for classifiers"):
        run(lm, quiet=True)
