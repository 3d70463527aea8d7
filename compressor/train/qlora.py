"""QLoRA's 4-bit base: the frozen weights of LoRA's target layers held as bitsandbytes NF4 / FP4, and the merge back.

``quantize_base`` replaces each target Linear (or GPT-2 Conv1D) by a ``bitsandbytes.nn.Linear4bit`` holding the same
weight in 4 bits (blocks of 64 values, one absmax scale per block, optionally double-quantized), computing in the
weight's former dtype; peft then wraps those layers with its bnb LoRA layers, whose adapters train in full precision.
The full-precision copy of a target's weight is dropped once quantized (that is the memory QLoRA saves); what the
quantization cost is measured first: the max and mean absolute difference between the dequantized and the original
weights.

``dense_from_4bit`` undoes it at the end of the stage: dequantize the base, add the adapters' delta scale·B·A, and
return a plain layer of the original type and dtype (Linear, or Conv1D with its weight transposed back). The merge
goes onto the dequantized base, not the original weights: the adapters were trained (and the best checkpoint chosen)
against the dequantized base, so that sum is the function that was trained and evaluated, and the merged model
computes the same logits up to float rounding; adding the adapters to the original weights instead would give a model
nobody evaluated (the adapters partly compensate the quantization error, and would then correct an error that is no
longer there). The cost is that the merged weights keep the 4-bit rounding of the base. Zeros are not disturbed by it:
NF4 and FP4 both have an exact zero code, and the caller re-applies the pruning masks after the merge anyway.
"""

from __future__ import annotations

import logging

import torch

BLOCK = 64  # values per 4-bit block (one absmax scale each): QLoRA's setting


def quantize_base(model, modules: dict[str, torch.nn.Module], quant_type: str, double_quant: bool, device=None) -> dict:
    """Replace every module of ``modules`` (name -> Linear / Conv1D of ``model``) by a 4-bit ``Linear4bit``, quantized
    on ``device`` (the device training will run on; default: where the weight is) and left there.

    Returns what the summary reports: the base type, the dequantization error of the base against the original
    weights (max and mean absolute), the size of the targets' weights before and after (MiB), and the names of the
    layers that were Conv1D (their merge transposes back)."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit
    from transformers.pytorch_utils import Conv1D

    err_max, err_sum, count, before, after, transposed = 0.0, 0.0, 0, 0, 0, []
    for name, module in modules.items():
        conv = isinstance(module, Conv1D)
        weight = module.weight.detach()
        w = (weight.t() if conv else weight).contiguous().to(device or weight.device)
        out_f, in_f = w.shape
        q = bnb.nn.Linear4bit(
            in_f,
            out_f,
            bias=module.bias is not None,
            compute_dtype=weight.dtype,
            compress_statistics=double_quant,
            quant_type=quant_type,
            device="meta",
        )
        q.weight = bnb.nn.Params4bit(
            w, requires_grad=False, blocksize=BLOCK, compress_statistics=double_quant, quant_type=quant_type
        )
        q.weight = q.weight.to(w.device)  # quantizes (Params4bit quantizes on its first move to a real device)
        q.weight.module = q
        if module.bias is not None:
            q.bias = torch.nn.Parameter(module.bias.detach().to(w.device, copy=True), requires_grad=False)
        # bitsandbytes repacks the weight for its CPU inference kernel on an eval forward (with bf16 scales): a
        # different function from the one that trains, and a layout load_state_dict cannot restore; keep one format
        q.support_avx512bf16_for_cpu = False
        q._register_load_state_dict_pre_hook(_frozen_quant_state)
        q.qlora_dtype = weight.dtype  # the dtype the merged layer gets back
        diff = (dequantize_4bit(q.weight.data, q.weight.quant_state).float() - w.float()).abs()
        err_max, err_sum, count = (
            max(err_max, float(diff.max())),
            err_sum + float(diff.sum(dtype=torch.float64)),
            count + diff.numel(),
        )
        before += w.numel() * w.element_size()
        after += _packed_bytes(q.weight)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, q)
        if conv:
            transposed.append(name)
    return {
        "base": quant_type,
        "double_quant": double_quant,
        "dequant_error_max": err_max,
        "dequant_error_mean": err_sum / max(count, 1),
        "base_mib_before": before / 2**20,
        "base_mib_4bit": after / 2**20,
        "transposed": transposed,
    }


def _packed_bytes(param) -> int:
    """Bytes of a quantized weight: the packed 4-bit values plus its quantization state's tensors."""
    state = param.quant_state.as_dict(packed=True)
    return param.data.numel() * param.data.element_size() + sum(
        t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor)
    )


def _frozen_quant_state(state_dict, prefix, *_args) -> None:
    """Loading a state dict into a Linear4bit (the training loop restores its best weights): the frozen base's
    quantization state is the one the layer already holds, so its entries (``weight.absmax`` ...) are dropped
    instead of failing as unexpected keys; the packed weight itself loads like any parameter."""
    for key in [k for k in state_dict if k.startswith(prefix + "weight.")]:
        del state_dict[key]


def is_4bit(module) -> bool:
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return False
    import bitsandbytes as bnb

    return isinstance(module, bnb.nn.Linear4bit)


@torch.no_grad()
def dense_from_4bit(lora_module, transposed: bool) -> torch.nn.Module:
    """A plain layer computing what the peft LoRA layer ``lora_module`` (over a ``Linear4bit`` base) computes in
    eval mode: dequantized base + scale·B·A of its active adapters, in the base's former dtype; a Conv1D (weight
    in × out) when ``transposed``, else a Linear."""
    from bitsandbytes.functional import dequantize_4bit
    from transformers.pytorch_utils import Conv1D

    base = lora_module.get_base_layer()
    state = base.weight.quant_state
    if getattr(state, "packing_format_for_cpu", False):  # repacked for the CPU kernel despite quantize_base's setting
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

        base.weight.data, state = _convert_weight_packed_for_cpu_inverse(base.weight.data, state)
        base.weight.quant_state = state
    w = dequantize_4bit(base.weight.data, state).float()
    for adapter in lora_module.active_adapters:
        if adapter in lora_module.lora_A:
            w += lora_module.get_delta_weight(adapter).float()
    dtype = getattr(base, "qlora_dtype", torch.float32)
    out_f, in_f = w.shape
    if transposed:
        dense = Conv1D(out_f, in_f)
        dense.weight = torch.nn.Parameter(w.t().contiguous().to(dtype))
    else:
        dense = torch.nn.Linear(in_f, out_f, bias=base.bias is not None, device=w.device, dtype=dtype)
        dense.weight = torch.nn.Parameter(w.to(dtype))
    if base.bias is not None:
        dense.bias = torch.nn.Parameter(base.bias.detach().clone().to(dtype))
    return dense.to(w.device)


def quiet_bitsandbytes() -> None:
    """Keep bitsandbytes' import-time warnings about the optional CPU kernel it tries to fetch from the Hub
    (kernels-community) off stderr: its own CPU code runs without it. bitsandbytes is imported by peft, which
    transformers imports when it is installed, so every run would print them (and break a recipe error's one line)."""
    for name in ("bitsandbytes.backends.cpu", "kernels"):
        logging.getLogger(name).setLevel(logging.ERROR)
