"""Fine-tuning methods besides full training: LoRA through peft, and partial fine-tuning (frozen parameters).

Both are training callbacks built from the stage config (``lora:`` / ``partial:`` of ``finetune`` and
``distill``): they change what trains when they are built — before the optimizer is made — and undo it in
``on_train_end``, after the loop has restored the best weights:

- LoRA injects low-rank adapters (peft) into the target Linear layers and freezes every other weight (a
  classifier's head still trains fully); at the end the adapters are merged into the weights and removed, so
  every later stage sees a plain model. The merge keeps the sparsity of a pruned model: weights that were exactly
  zero before training are zero after the merge (the mask is re-applied), and the summary gives the sparsity
  before and after the merge and how many weights the raw merge would have regrown. With ``base: nf4`` / ``fp4``
  (QLoRA) the target layers' frozen weights are held in 4 bits by bitsandbytes while training (``train/qlora.py``),
  and the merge turns each back into a plain layer: dequantized base + adapters, masks re-applied.
- Partial fine-tuning freezes parameters by pattern and / or everything but the last N transformer layers;
  frozen parameters stay bit-identical, and are trainable again for later stages.
"""

from __future__ import annotations

import logging
import re

import torch

from compressor.recipe.schema.train import (
    BNB_MISSING,
    PEFT_MISSING,
    LoRAConfig,
    PartialConfig,
    bnb_available,
    peft_available,
)
from compressor.train.callbacks import TRAINING_CALLBACKS

log = logging.getLogger("compressor")

HEAD = re.compile(r"(^|\.)(classifier|score|pooler)(\.|$)")  # a classifier's task head: trains fully under LoRA


def _examples(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names[:3]) + (" ..." if len(names) > 3 else "")


def _zeros(weights: dict[str, torch.Tensor]) -> tuple[int, int]:
    return sum(int((w == 0).sum()) for w in weights.values()), sum(w.numel() for w in weights.values())


def _lora_targets(ctx, cfg, model, linear: dict, where: str) -> list[str]:
    """The names of the Linear layers LoRA adapts: ``cfg.target_modules`` (each must match), else every Linear
    layer but the output embeddings and a classifier's head."""
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if cfg.target_modules is None:
        targets = [n for n, m in linear.items() if m is not out_emb and not HEAD.search(n)]
    else:
        targets = []
        for i, t in enumerate(cfg.target_modules):
            hit = [n for n in linear if n == t or n.endswith("." + t)]
            if not hit:
                raise ctx.recipe.error(
                    f"{where}.target_modules.{i}",
                    f"{t!r} matches no Linear module (names look like {_examples(list(linear))})",
                )
            targets += [n for n in hit if n not in targets]
    if not targets:
        raise ctx.recipe.error(f"{where}.target_modules", "no Linear module to adapt")
    return targets


def _describe_base(q: dict) -> str:
    return (
        f"QLoRA: their frozen weights are {q['base'].upper()}{' with double quantization' if q['double_quant'] else ''} "
        f"({q['base_mib_4bit']:.3g} MiB instead of {q['base_mib_before']:.3g} MiB), dequantization error against the "
        f"original weights max {q['dequant_error_max']:.3g}, mean {q['dequant_error_mean']:.3g}"
    )


class LoRATuning:
    """Training callback: LoRA adapters in, merged out (masks kept)."""

    name = "lora"

    def __init__(self, ctx, cfg, model, where: str):
        from compressor.prune.masks import linear_modules

        if not peft_available():
            raise ctx.recipe.error(where, PEFT_MISSING)
        if cfg.base != "full" and not bnb_available():
            raise ctx.recipe.error(f"{where}.base", BNB_MISSING)
        from peft import LoraConfig, inject_adapter_in_model
        from transformers.pytorch_utils import Conv1D

        self.cfg = cfg
        linear = linear_modules(model)
        targets = _lora_targets(ctx, cfg, model, linear, where)
        self.masks = {n: linear[n].weight.detach() != 0 for n in targets}
        zeros, total = _zeros({n: linear[n].weight.detach() for n in targets})
        self.before = zeros / total
        self.quantized: dict = {}
        if cfg.base != "full":  # QLoRA: the targets' frozen weights in 4 bits (Conv1D ones become Linear4bit)
            from compressor.train.qlora import quantize_base

            device = getattr(ctx, "device", "cpu")  # quantize where training runs (bitsandbytes' GPU kernels)
            on = None if device == "cpu" else torch.device(device)
            self.quantized = quantize_base(model, {n: linear[n] for n in targets}, cfg.base, cfg.double_quant, on)
        conv = not self.quantized and all(isinstance(linear[n], Conv1D) for n in targets)
        model.is_loaded_in_4bit = bool(self.quantized)  # peft wraps Linear4bit bases with its bnb LoRA layers only then
        try:
            inject_adapter_in_model(
                LoraConfig(
                    r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets, fan_in_fan_out=conv
                ),
                model,
            )
        finally:
            del model.is_loaded_in_4bit
        trainable = 0
        for n, p in model.named_parameters():
            p.requires_grad_("lora_" in n or (ctx.task == "sequence-classification" and bool(HEAD.search(n))))
            trainable += p.numel() if p.requires_grad else 0
        self.trainable, self.targets, self.result = trainable, targets, {}
        log.info(
            "LoRA: rank %d, alpha %g on %d Linear layers; %d trainable parameters; %.2f %% of their weights are zero "
            "(kept zero by the merge)%s",
            cfg.rank,
            cfg.alpha,
            len(targets),
            trainable,
            100 * self.before,
            "" if not self.quantized else "; " + _describe_base(self.quantized),
        )

    def on_train_end(self, state) -> None:
        self.result = merge_lora(state.model, self.masks, set(self.quantized.get("transposed", ())))
        log.info(
            "LoRA merged into %d layers: sparsity %.2f %% before the merge, %.2f %% after (%d pruned weights the "
            "raw merge would have regrown, reset to zero)",
            len(self.masks),
            100 * self.before,
            100 * self.result["sparsity_after_merge"],
            self.result["regrown_and_reset"],
        )

    def summary(self) -> dict:
        return {
            "rank": self.cfg.rank,
            "alpha": self.cfg.alpha,
            "dropout": self.cfg.dropout,
            "layers": len(self.targets),
            "trainable_params": self.trainable,
            "base": self.cfg.base,
            **{k: v for k, v in self.quantized.items() if k not in ("base", "transposed")},
            "sparsity_before_merge": self.before,
            **self.result,
        }


@torch.no_grad()
def merge_lora(model, masks: dict[str, torch.Tensor], transposed: set[str] = frozenset()) -> dict:
    """Merge every peft LoRA layer of ``model`` into its base layer, replace it by that layer, re-apply ``masks``.

    A 4-bit (QLoRA) base becomes a plain layer: dequantized base + adapters (see ``train/qlora.py``; the names in
    ``transposed`` were Conv1D layers and become Conv1D again)."""
    from peft.tuners.lora import LoraLayer

    from compressor.train.qlora import dense_from_4bit, is_4bit

    merged, regrown = {}, 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, LoraLayer):
            continue
        if is_4bit(module.get_base_layer()):
            base = dense_from_4bit(module, name in transposed)
        else:
            module.merge()
            base = module.get_base_layer()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, base)
        if name in masks:
            keep = masks[name].to(base.weight.device)
            regrown += int(((base.weight != 0) & ~keep).sum())
            base.weight.mul_(keep.to(base.weight.dtype))
        base.weight.requires_grad_(True)
        merged[name] = base.weight
    for p in model.parameters():
        p.requires_grad_(True)
    zeros, total = _zeros(merged) if merged else (0, 1)
    return {"merged_layers": len(merged), "sparsity_after_merge": zeros / total, "regrown_and_reset": regrown}


class PartialTuning:
    """Training callback: freeze parameters by pattern and / or all but the last N layers; unfreeze at the end."""

    name = "partial"

    def __init__(self, ctx, cfg, model, where: str):
        params = dict(model.named_parameters())
        frozen: set[str] = set()
        for i, pattern in enumerate(cfg.freeze):
            hit = {n for n in params if re.search(pattern, n)}
            if not hit:
                raise ctx.recipe.error(
                    f"{where}.freeze.{i}", f"pattern {pattern!r} matches no parameter (names look like {_examples(list(params))})"
                )
            frozen |= hit
        if cfg.last_layers is not None:
            from compressor.core.errors import CompressorError
            from compressor.prune.sequential import decoder_layers

            try:
                prefix, layers = decoder_layers(model)
            except CompressorError as e:
                raise ctx.recipe.error(f"{where}.last_layers", str(e)) from None
            if cfg.last_layers > len(layers):
                raise ctx.recipe.error(
                    f"{where}.last_layers", f"the model has {len(layers)} layers, fewer than last_layers={cfg.last_layers}"
                )
            keep = tuple(f"{prefix}.{i}." for i in range(len(layers) - cfg.last_layers, len(layers)))
            frozen |= {n for n in params if not n.startswith(keep)}
        if frozen >= set(params):
            raise ctx.recipe.error(where, "this freezes every parameter: nothing would train")
        self.frozen = [params[n] for n in sorted(frozen)]
        for p in self.frozen:
            p.requires_grad_(False)
        self.frozen_params = sum(p.numel() for p in self.frozen)
        self.trainable = sum(p.numel() for p in params.values()) - self.frozen_params
        log.info(
            "partial fine-tuning: %d parameter tensors frozen (%d values), %d values train",
            len(self.frozen),
            self.frozen_params,
            self.trainable,
        )

    def on_train_end(self, state) -> None:
        for p in self.frozen:  # later stages train the whole model again unless they say otherwise
            p.requires_grad_(True)

    def summary(self) -> dict:
        return {"frozen_tensors": len(self.frozen), "frozen_params": self.frozen_params, "trainable_params": self.trainable}


@TRAINING_CALLBACKS.register(LoRAConfig)
def lora_callback(ctx, train_cfg, cfg: LoRAConfig, model, where: str) -> LoRATuning:
    return LoRATuning(ctx, cfg, model, where)


@TRAINING_CALLBACKS.register(PartialConfig)
def partial_callback(ctx, train_cfg, cfg: PartialConfig, model, where: str) -> PartialTuning:
    return PartialTuning(ctx, cfg, model, where)
