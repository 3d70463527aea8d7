"""LoRA (peft) and partial fine-tuning on tiny decoders: the LoRA merge keeps pruned weights at zero, partial
fine-tuning leaves frozen parameters bit-identical, recipe mistakes name their field."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from compressor import testing as T
from compressor.core.errors import RecipeError
from compressor.data import encode_blocks, make_loader
from compressor.models import load_tokenizer
from compressor.prune.masks import select_modules
from compressor.prune.oneshot import prune_modules
from compressor.prune.sequential import out_in
from compressor.recipe.schema import DEFAULT_EXCLUDE, FinetuneStage, Recipe, UnstructuredPrune, WandaCriterion
from compressor.train.adapters import LoRATuning, PartialTuning
from compressor.train.finetune import task_loss
from compressor.train.loop import train

BUILD = {"llama": T.tiny_llama, "gpt2": T.tiny_gpt2}


def setup(family: str, folder):
    path = BUILD[family](folder / family, hidden=64)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = load_tokenizer(path)
    rng = np.random.default_rng(0)
    loader = make_loader(encode_blocks(rng.integers(5, T.vocab_size(), (32, 16))), tok, 8, True, task="causal-lm")
    ctx = SimpleNamespace(recipe=Recipe.model_validate({"model": {"path": "m"}, "data": {"train": "t"}}), task="causal-lm")
    return model, loader, ctx


def fit(model, loader, callbacks, **cfg):
    return train(
        model, loader, FinetuneStage(max_steps=6, lr=1e-2, warmup_ratio=0, **cfg), task_loss, name="t", callbacks=callbacks
    )


@pytest.mark.parametrize("family", list(BUILD))
def test_lora_merge_keeps_pruned_weights_at_zero(family, tmp_path):
    model, loader, ctx = setup(family, tmp_path)
    modules = select_modules(model, [".*"], list(DEFAULT_EXCLUDE))
    batches = [{"input_ids": torch.randint(5, T.vocab_size(), (4, 16))}]
    prune_modules(model, modules, UnstructuredPrune(sparsity=0.5, criterion=WandaCriterion(), scope="layer"), batches)
    before = {n: out_in(m).clone() for n, m in modules.items()}
    cfg = FinetuneStage(lora={"rank": 4, "alpha": 8}).lora
    lora = LoRATuning(ctx, cfg, model, "stages.1.finetune.lora")
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    state = fit(model, loader, [lora])
    after = dict(state.model.named_modules())
    assert not any("lora" in n for n in after), "adapters are merged and removed"
    changed = 0
    for n, w0 in before.items():
        w1 = out_in(after[n])
        assert bool((w1[w0 == 0] == 0).all()), f"{n}: a pruned weight regrew"
        changed += int((w1 != w0).sum())
    assert changed > 0, "LoRA changed no weight"
    s = lora.summary()
    assert s["sparsity_before_merge"] == pytest.approx(0.5, abs=0.005)
    assert s["sparsity_after_merge"] == pytest.approx(s["sparsity_before_merge"], abs=1e-9)
    assert s["regrown_and_reset"] > 0  # the raw merge would have filled the zeros
    assert all(p.requires_grad for p in state.model.parameters())


@pytest.mark.parametrize("family", list(BUILD))
def test_partial_finetuning_leaves_frozen_parameters_bit_identical(family, tmp_path):
    model, loader, ctx = setup(family, tmp_path)
    cfg = FinetuneStage(partial={"freeze": ["embed|wte|wpe"], "last_layers": 1}).partial
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    partial = PartialTuning(ctx, cfg, model, "stages.0.finetune.partial")
    last = "model.layers.1." if family == "llama" else "transformer.h.1."
    state = fit(model, loader, [partial], weight_decay=0.1)
    for n, p in state.model.named_parameters():
        if n.startswith(last) and not any(k in n for k in ("embed", "wte", "wpe")):
            assert not torch.equal(p, before[n]) or p.ndim == 1, f"{n} should have trained"
        else:
            assert torch.equal(p, before[n]), f"{n} is frozen but changed"
    assert partial.summary()["frozen_params"] > partial.summary()["trainable_params"] > 0
    assert all(p.requires_grad for p in state.model.parameters())  # later stages train everything again


def test_bad_adapter_settings_name_their_field(tmp_path, monkeypatch):
    import compressor.train.adapters as A

    model, _, ctx = setup("llama", tmp_path)
    monkeypatch.setattr(A, "bnb_available", lambda: False)
    with pytest.raises(RecipeError, match="bitsandbytes package, which is not installed") as e:
        LoRATuning(ctx, FinetuneStage(lora={"base": "nf4"}).lora, model, "stages.0.finetune.lora")
    assert e.value.field == "stages.0.finetune.lora.base"
    assert not any("lora" in n for n, _ in model.named_modules()), "refused before touching the model"
    with pytest.raises(ValueError, match="double_quant quantizes the scales of a 4-bit base"):
        FinetuneStage(lora={"double_quant": True})
    with pytest.raises(RecipeError, match="'qkv' matches no Linear module") as e:
        LoRATuning(ctx, FinetuneStage(lora={"target_modules": ["q_proj", "qkv"]}).lora, model, "stages.0.finetune.lora")
    assert e.value.field == "stages.0.finetune.lora.target_modules.1"
    with pytest.raises(RecipeError, match="fewer than last_layers=5") as e:
        PartialTuning(ctx, FinetuneStage(partial={"last_layers": 5}).partial, model, "stages.0.finetune.partial")
    assert e.value.field == "stages.0.finetune.partial.last_layers"
    with pytest.raises(RecipeError, match="matches no parameter") as e:
        PartialTuning(ctx, FinetuneStage(partial={"freeze": ["nothing_here"]}).partial, model, "w.partial")
    assert e.value.field == "w.partial.freeze.0"
    with pytest.raises(RecipeError, match="nothing would train"):
        PartialTuning(ctx, FinetuneStage(partial={"freeze": ["."]}).partial, model, "w.partial")
    with pytest.raises(ValueError, match="give lora or partial, not both"):
        FinetuneStage(lora={}, partial={"last_layers": 1})
    with pytest.raises(ValueError, match="gradual `prune:` in the same stage"):
        FinetuneStage(lora={}, prune={"sparsity": 0.5})
