"""The shallower KD student of benchmarks/llm_pruning.py: SmolLM2-135M (30 layers) -> a 15-layer subset, trained
with token-level KD and, as its twin, the same student trained on the same blocks in the same order with plain
next-token loss; each with full fine-tuning and with LoRA. Every piece is the library's: the student is
``distill.student.build_student`` (a recipe's ``student: {layers: [...]}``), the loss ``distill.losses`` (a recipe's
``losses: [{type: logits, alpha, temperature}]``; alpha 1 is the hard-label twin, which runs no teacher), the
adapters ``train.callbacks`` / ``train.adapters`` (``lora:``), the loop ``train.loop.train``, the perplexity ``measure.perplexity``.

Used by llm_pruning.py (children ``--kd VARIANT``); not meant to be run alone.
"""

from __future__ import annotations

import time
from pathlib import Path

# the kept teacher layers: the first 6 and the last 9 (a contiguous middle block, 6..20, is dropped); chosen because
# it is the 15-layer subset the teacher's own weights start best from (the run measures CANDIDATES below and reports)
LAYERS = list(range(6)) + list(range(21, 30))
CANDIDATES = {
    "every other layer (0, 2, ..., 28)": list(range(0, 30, 2)),
    "every other, first and last kept (0, 2, ..., 26, 29)": list(range(0, 28, 2)) + [29],
    "first 8 + last 7 (drop 8..22)": list(range(8)) + list(range(23, 30)),
    "first 6 + last 9 (drop 6..20)": LAYERS,
}
VARIANTS = ("kd-full", "ce-full", "kd-lora", "ce-lora")


def ppl(model, ids, window: int, what: str = "WikiText-2 raw test") -> float:
    from compressor.measure.perplexity import perplexity, torch_fn

    return perplexity(torch_fn(model), ids.numpy(), window, what=what)["perplexity"]


SELECT_WINDOWS = 40


def select_ppl(model, tok, a) -> float:
    """Perplexity on the selection text: the first SELECT_WINDOWS windows of Tiny Shakespeare's held-out last 10 %
    (no training block comes from it), in --kd-len windows. The settings of the KD runs were chosen on it (a pilot,
    stated in LLM_PRUNING.md); the reported figure is the WikiText-2 test one."""
    import torch

    text = (Path(a.data) / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    held = torch.tensor(tok(text[int(0.9 * len(text)) :], add_special_tokens=False)["input_ids"])
    held = held[: SELECT_WINDOWS * a.kd_len]  # after the character cut of kd_blocks: no overlap with training
    return ppl(model, held, a.kd_len, what="Tiny Shakespeare held-out")


def candidates(teacher, ids, window: int) -> list[dict]:
    """Perplexity of each candidate subset as the teacher's layers give it, before any training."""
    from compressor.distill.student import from_layers

    return [
        {"name": name, "layers": layers, "ppl_init": ppl(from_layers(teacher, layers).eval(), ids, window)}
        for name, layers in CANDIDATES.items()
    ]


def kd_blocks(tok, data: Path, a):
    """Training blocks of ``--kd-len`` tokens: Tiny Shakespeare (its first 90 %: the last 10 % is our Tiny Shakespeare
    model's validation text) and WikiText-2 validation (v1 tokens; the shared folder has no WikiText-2 train split),
    each cut into blocks, pooled; the loader's seeded shuffle draws ``--kd-steps`` x ``--kd-batch`` of them."""
    import numpy as np

    shakes = (data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    wiki = (data / "wikitext-2" / "wiki.valid.tokens").read_text(encoding="utf-8")
    out = {}
    for name, text in (("tinyshakespeare", shakes[: int(0.9 * len(shakes))]), ("wikitext-2 valid", wiki)):
        ids = np.array(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
        n = len(ids) // a.kd_len
        out[name] = ids[: n * a.kd_len].reshape(n, a.kd_len)
    return out


def stage_config(variant: str, a):
    from compressor.recipe.schema import DistillStage

    kd, lora = variant.startswith("kd"), variant.endswith("lora")
    return DistillStage(
        student={"layers": LAYERS},
        max_steps=a.kd_steps,
        batch_size=a.kd_batch,
        lr=a.kd_lora_lr if lora else a.kd_lr,
        warmup_ratio=0.1,
        weight_decay=0.0,
        mixed_precision="no",
        max_grad_norm=1.0,
        losses=[{"type": "logits", "alpha": a.kd_alpha if kd else 1.0, "temperature": a.kd_temperature}],
        lora={"rank": a.kd_rank, "alpha": 2.0 * a.kd_rank, "dropout": 0.0} if lora else None,
    )


def kd_child(a, variant: str, load, token_sets) -> dict:
    """Train one variant of the student; return its row."""
    from types import SimpleNamespace

    import numpy as np
    import torch

    from compressor.data import encode_blocks, make_loader
    from compressor.distill.losses import build_terms
    from compressor.distill.stage import make_loss_fn
    from compressor.distill.student import build_student
    from compressor.models import count_parameters
    from compressor.recipe.schema import Recipe
    from compressor.train import adapters  # noqa: F401  (registers the lora: callback)
    from compressor.train.callbacks import training_callbacks
    from compressor.train.loop import train

    torch.manual_seed(0)
    teacher, tok = load(Path(a.model_dir))
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    cfg = stage_config(variant, a)
    student = build_student(teacher, cfg.student)
    terms = build_terms(cfg.losses, student.config, teacher.config, causal=True)
    pools = kd_blocks(tok, Path(a.data), a)
    blocks = np.concatenate(list(pools.values()))
    loader = make_loader(encode_blocks(blocks), tok, cfg.batch_size, shuffle=True, seed=0, task="causal-lm")
    ctx = SimpleNamespace(recipe=Recipe.model_validate({"model": {"path": "m"}, "data": {"train": "t"}}), task="causal-lm")
    callbacks = training_callbacks(ctx, cfg, student, "distill")  # lora: when the variant sets it
    t0 = time.perf_counter()
    state = train(
        student, loader, cfg, make_loss_fn(teacher, terms, "cpu"), name=f"distill-{variant}", callbacks=callbacks, seed=0
    )
    train_s = time.perf_counter() - t0
    student = state.model.eval()
    logged = [h for h in state.history if "loss" in h]  # means over the logging interval (50 steps)
    ids = token_sets(tok, a)["eval"]  # the same evaluation windows as the SmolLM2 pruning rows
    lora = next((cb.summary() for cb in callbacks if getattr(cb, "name", "") == "lora"), None)
    return {
        "variant": variant,
        "kd": variant.startswith("kd"),
        "lora": lora,
        "layers": LAYERS,
        "params": count_parameters(student),
        "trainable_params": lora["trainable_params"] if lora else count_parameters(student),
        "steps": state.step,
        "tokens": state.step * cfg.batch_size * a.kd_len,
        "train_s": round(train_s, 1),
        "ce_logged": [round(h["ce"], 4) for h in logged if "ce" in h],
        "kd_logged": [round(h["kd"], 4) for h in logged if "kd" in h],
        "lora_modules_left": sum(1 for n, _ in student.named_modules() if "lora" in n),
        "blocks": {k: len(v) for k, v in pools.items()},
        "ppl": ppl(student, ids, a.window),
        "ppl_select": select_ppl(student, tok, a),
    }
