"""QLoRA (``lora: {base: nf4}``) on tiny decoders: the target layers train over a bitsandbytes 4-bit base, the merge
turns them back into plain fp32 layers computing the trained function, pruned weights stay exactly zero, and a run
with it goes end to end (export parity, and an interrupted stage resumes to the same weights). Needs bitsandbytes
(``pip install 'compressor[qlora]'``); skipped without it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")

from compressor.recipe.schema import FinetuneStage  # noqa: E402
from compressor.train.adapters import LoRATuning  # noqa: E402
from compressor.train.finetune import task_loss  # noqa: E402
from compressor.train.loop import train  # noqa: E402
from tests.integration.test_adapters import BUILD, setup  # noqa: E402

LOGITS_TOL = 1e-5  # merged vs trained logits (fp32 rounding of base + B·A summed before vs after the matmul)


def fit(model, loader, callbacks, steps: int = 6):
    cfg = FinetuneStage(max_steps=steps, lr=1e-2, warmup_ratio=0)
    return train(model, loader, cfg, task_loss, name="t", callbacks=callbacks)


def _targets(model) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in model.named_modules() if n.endswith(("q_proj", "up_proj", "c_attn", "c_fc"))}


@torch.no_grad()
def _loss(model, loader) -> float:
    model.eval()
    losses = [float(model(**b).loss) for b in loader]
    return sum(losses) / len(losses)


class Recorder:
    """Before the LoRA merge (listed first, so its on_train_end runs first): the target layers' types, the trained
    model's logits, and the dequantized base's largest difference from the original weights."""

    def __init__(self, x, original):
        self.x, self.original, self.types = x, original, set()

    def on_step(self, state):
        self.types |= {type(m.get_base_layer()) for m in _targets(state.model).values()}

    @torch.no_grad()
    def on_train_end(self, state):
        from bitsandbytes.functional import dequantize_4bit

        self.logits = state.model(input_ids=self.x).logits.clone()
        from peft.tuners.lora import LoraLayer

        err = 0.0
        for n, m in state.model.named_modules():
            if not isinstance(m, LoraLayer):
                continue
            w = m.get_base_layer().weight
            err = max(err, float((dequantize_4bit(w.data, w.quant_state) - self.original[n]).abs().max()))
        self.dequant_error = err


@pytest.mark.parametrize("family", list(BUILD))
def test_qlora_trains_over_a_4bit_base_and_merges_into_plain_fp32_layers(family, tmp_path):
    from transformers.pytorch_utils import Conv1D

    model, loader, ctx = setup(family, tmp_path)
    from compressor.prune.masks import linear_modules
    from compressor.prune.sequential import out_in

    original = {n: out_in(m).clone() for n, m in linear_modules(model).items()}
    lora = LoRATuning(ctx, FinetuneStage(lora={"rank": 8, "alpha": 16, "dropout": 0.0, "base": "nf4"}).lora, model, "w.lora")
    start = _loss(model, loader)  # adapters start at B = 0: the 4-bit base alone
    model.train()
    rec = Recorder(torch.randint(5, 100, (2, 16)), original)
    state = fit(model, loader, [rec, lora], steps=12)
    assert rec.types == {bnb.nn.Linear4bit}, "the target layers trained over a 4-bit base"
    after = dict(state.model.named_modules())
    assert not any(isinstance(m, bnb.nn.Linear4bit) or "lora" in n for n, m in after.items()), "merged and removed"
    plain = Conv1D if family == "gpt2" else torch.nn.Linear
    for n in lora.targets:
        assert type(after[n]) is plain and after[n].weight.dtype == torch.float32, n
        assert all(p.requires_grad for p in after[n].parameters())
    with torch.no_grad():
        merged = state.model(input_ids=rec.x).logits
    assert float((merged - rec.logits).abs().max()) < LOGITS_TOL
    assert _loss(state.model, loader) < start - 0.05, "QLoRA training lowered the training loss"
    s = lora.summary()
    assert s["base"] == "nf4" and s["merged_layers"] == s["layers"]
    assert s["dequant_error_max"] == pytest.approx(rec.dequant_error, rel=1e-6)
    assert 0 < s["dequant_error_mean"] < s["dequant_error_max"]
    assert s["base_mib_4bit"] < s["base_mib_before"] / 4


@pytest.mark.parametrize("base", ["nf4", "fp4"])
def test_qlora_merge_keeps_pruned_weights_at_zero(base, tmp_path):
    model, loader, ctx = setup("llama", tmp_path)
    g = torch.Generator().manual_seed(1)
    targets = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith("model.layers.")}
    with torch.no_grad():
        for m in targets.values():
            m.weight.mul_(torch.rand(m.weight.shape, generator=g) >= 0.5)
    pruned = {n: m.weight == 0 for n, m in targets.items()}
    cfg = FinetuneStage(lora={"rank": 4, "alpha": 8, "base": base, "double_quant": True}).lora
    lora = LoRATuning(ctx, cfg, model, "w.lora")
    state = fit(model, loader, [lora])
    after = dict(state.model.named_modules())
    for n, zero in pruned.items():
        w = after[n].weight
        assert type(after[n]) is torch.nn.Linear and bool((w[zero] == 0).all()), f"{n}: a pruned weight regrew"
        assert int((w[~zero] == 0).sum()) < 0.01 * int((~zero).sum())  # the rest did not collapse to zero
    s = lora.summary()
    assert s["base"] == base and s["double_quant"] and s["regrown_and_reset"] > 0
    assert s["sparsity_after_merge"] == pytest.approx(s["sparsity_before_merge"], abs=1e-3)
    assert s["sparsity_before_merge"] == pytest.approx(0.5, abs=0.02)


def _recipe(folder: Path) -> Path:
    from compressor import testing as T

    T.tiny_llama(folder / "llama", hidden=64)
    T.write_lm_text(folder / "lm.txt")
    recipe = folder / "r.yaml"
    recipe.write_text(f"""model: {{path: {folder / "llama"}, task: causal-lm}}
data: {{train: {folder / "lm.txt"}, split: {{dev: 0.2}}, max_length: 16}}
stages:
  - prune: {{type: unstructured, sparsity: 0.5, criterion: {{type: wanda, samples: 8}}}}
  - finetune: {{max_steps: 6, lr: 1.0e-2, batch_size: 8, eval_every: 2, checkpoint_every: 2, lora: {{rank: 4, base: nf4}}}}
  - export: {{}}
evaluate: {{artifacts: [torch, onnx]}}
bench: {{enabled: false}}
""")
    return recipe


def test_qlora_run_exports_a_plain_model_and_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """A prune -> QLoRA -> export run; the same run killed in the middle of the QLoRA stage and resumed (its
    checkpoints hold the 4-bit layers) ends with the uninterrupted run's weights, bit for bit."""
    import json

    from safetensors.torch import load_file

    import compressor.train.finetune as F
    from compressor.pipeline.orchestrate import run
    from compressor.train.loop import Interrupted

    recipe = _recipe(tmp_path)
    done = run(recipe, output_dir=str(tmp_path / "full"), quiet=True)
    metrics = json.loads((done / "metrics.json").read_text())
    stages = {s["stage"]: s for s in metrics["stages"]}
    lora = stages["finetune"]["lora"]
    assert lora["base"] == "nf4" and lora["merged_layers"] == 14 and lora["sparsity_after_merge"] == 0.5
    assert stages["finetune"]["best_step"] is not None  # the best weights were loaded back into the 4-bit layers
    assert stages["export"]["parity"]["max_abs_diff"] < stages["export"]["parity"]["tolerance"]
    art = metrics["artifacts"]
    assert art["onnx"]["metrics"]["dev"]["perplexity"] == pytest.approx(art["pytorch"]["metrics"]["dev"]["perplexity"], rel=1e-5)
    want = load_file(done / "model" / "model.safetensors")
    assert not [k for k in want if "lora" in k or "absmax" in k or "quant" in k]

    real, calls = F.task_loss, []

    def loss_then_signal(model, batch):
        calls.append(1)
        if len(calls) == 4:  # inside the finetune stage, after the checkpoint of step 2
            os.kill(os.getpid(), signal.SIGTERM)
        return real(model, batch)

    monkeypatch.setattr(F, "task_loss", loss_then_signal)
    with pytest.raises(Interrupted, match="finetune interrupted"):
        run(recipe, output_dir=str(tmp_path / "cut"), quiet=True)
    monkeypatch.setattr(F, "task_loss", real)
    resumed = run(resume=tmp_path / "cut" / "run", quiet=True)
    got = load_file(resumed / "model" / "model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
