"""Fake quantization for QAT: the layer that simulates INT8 in PyTorch, and the model-level helpers around it.

What is quantized: the ``nn.Linear`` layers (and GPT-2's ``Conv1D``) whose names match ``qat.include`` and
no ``exclude`` regex. Each is replaced in place by :class:`FakeQuantLinear`, which keeps the very same
``weight`` / ``bias`` Parameters (optimizers, ``state_dict`` keys, tied weights unchanged) and computes
``fq_u8(x) @ fq_s8(W^T) + b`` with a float output (no requantization, like static INT8's scheme):

* weights: int8, symmetric, per output channel: scale = max|w_c| / 127, zero point 0. The range [-128, 127]
  is what the ONNX exporter accepts; with that scale only the 255 levels -127..127 are used;
* input activations: uint8 (0..255), asymmetric, per tensor; the range (always holding 0) from an observer:
  ``minmax`` (running min / max) or ``ema`` (moving average of per-batch min / max).

The weight is used as (in, out) and quantized along axis 1, so DequantizeLinear(W) feeds MatMul directly
(no Transpose); 2-D inputs get a leading axis (ORT would turn a 2-D MatMul + Add into a Gemm, which its QDQ
fusion leaves fp32). Observer state is in non-persistent buffers and flags: ``state_dict`` / ``save_pretrained``
see a plain model; :func:`qat_state` / :func:`load_qat_state` carry the ranges.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from compressor.core.errors import CompressorError
from compressor.recipe.schema import QATConfig

log = logging.getLogger("compressor")
W_QMIN, W_QMAX, W_LEVELS = -128, 127, 127  # int8 weights; symmetric scale max|w| / 127
A_QMIN, A_QMAX = 0, 255  # uint8 activations
MIN_SCALE = 1e-8
FLAGS = ("observed", "fake_quant", "observing")


def weight_qparams(w: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel symmetric int8 (scale, zero point) of ``w``; channels along ``axis``."""
    amax = w.detach().float().abs().amax(dim=[d for d in range(w.ndim) if d != axis])
    return (amax / W_LEVELS).clamp_min(MIN_SCALE), torch.zeros_like(amax, dtype=torch.int32)


def activation_qparams(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric uint8 (scale, zero point) for the range [lo, hi], widened to hold 0."""
    lo, hi = lo.float().clamp(max=0.0), hi.float().clamp(min=0.0)
    scale = ((hi - lo) / (A_QMAX - A_QMIN)).clamp_min(MIN_SCALE)
    return scale, (A_QMIN - torch.round(lo / scale)).clamp(A_QMIN, A_QMAX).to(torch.int32)


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t if t.dtype == dtype else t.to(dtype)  # no-op casts would be exported and break ORT's QDQ fusion


class FakeQuantLinear(nn.Module):
    """A Linear / Conv1D with fake-quantized weights and inputs; the same Parameters as the module it replaces."""

    def __init__(self, module: nn.Module, cfg: QATConfig):
        super().__init__()
        self.transposed = not isinstance(module, nn.Linear)  # Conv1D stores weight as (in, out)
        self.weight = module.weight
        self.register_parameter("bias", module.bias)
        self.plain = (module,)  # the original module (in a tuple: not a submodule), put back by strip_qat
        self.observer, self.ema_decay = cfg.observer, cfg.ema_decay
        for name in ("act_min", "act_max"):
            self.register_buffer(name, torch.zeros((), device=module.weight.device), persistent=False)
        self.observed = False  # the observer has seen at least one batch
        self.fake_quant = False  # off: exactly the original layer
        self.observing = True  # update the range in training mode (and while calibrating)
        self.calibrating = False
        self.static_qparams: tuple | None = None  # constants while exporting

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        lo, hi = torch.aminmax(x.detach().float())
        if not self.observed:
            self.act_min.copy_(lo)
            self.act_max.copy_(hi)
        elif self.observer == "minmax":
            torch.minimum(self.act_min, lo, out=self.act_min)
            torch.maximum(self.act_max, hi, out=self.act_max)
        else:
            self.act_min.lerp_(lo, 1.0 - self.ema_decay)
            self.act_max.lerp_(hi, 1.0 - self.ema_decay)
        self.observed = True

    def weight_t(self) -> torch.Tensor:
        """The weight as (in, out), the layout MatMul uses."""
        return self.weight if self.transposed else self.weight.t()

    def qparams(self) -> tuple:
        """(activation scale, zero point) or (None, None) before any observation, then the weight's."""
        if self.static_qparams is not None:
            return self.static_qparams
        a = activation_qparams(self.act_min, self.act_max) if self.observed else (None, None)
        return (*a, *weight_qparams(self.weight_t(), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing and (self.training or self.calibrating):
            self.observe(x)
        if not self.fake_quant:  # the original computation, bit for bit
            if not self.transposed:
                return nn.functional.linear(x, self.weight, self.bias)
            out = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
            return out.view(x.size()[:-1] + (self.weight.size(-1),))
        if x.dim() == 2:  # see the module docstring: keeps ORT's integer MatMul for poolers / heads
            return self.quantized(x.unsqueeze(0)).squeeze(0)
        return self.quantized(x)

    def quantized(self, x: torch.Tensor) -> torch.Tensor:
        a_scale, a_zp, w_scale, w_zp = self.qparams()
        if a_scale is not None:
            x = _as(torch.fake_quantize_per_tensor_affine(_as(x, torch.float32), a_scale, a_zp, A_QMIN, A_QMAX), x.dtype)
        w = torch.fake_quantize_per_channel_affine(_as(self.weight_t(), torch.float32), w_scale, w_zp, 1, W_QMIN, W_QMAX)
        y = torch.matmul(x, _as(w, x.dtype))
        return y if self.bias is None else y + self.bias


# ---------------------------------------------------------------- model-level helpers
def wrappers(model) -> list[tuple[str, FakeQuantLinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FakeQuantLinear)]


def prepare_qat(model, cfg: QATConfig) -> list[str]:
    """Wrap the eligible Linear / Conv1D modules in place; return their names (already wrapped ones included)."""
    from transformers.pytorch_utils import Conv1D

    include, exclude = [re.compile(p) for p in cfg.include], [re.compile(p) for p in cfg.exclude]
    chosen, wrapped = [], set()
    for name, mod in model.named_modules():
        if not name or not any(p.search(name) for p in include) or any(p.search(name) for p in exclude):
            continue
        if isinstance(mod, FakeQuantLinear):
            mod.observer, mod.ema_decay = cfg.observer, cfg.ema_decay
            wrapped.add(name)
        elif isinstance(mod, (nn.Linear, Conv1D)) and mod.weight.ndim == 2:
            chosen.append((name, mod))
    if not chosen and not wrapped:
        raise CompressorError(
            f"qat: no Linear layer matches include {list(cfg.include)} without matching exclude "
            f"{list(cfg.exclude)}; nothing to quantize"
        )
    for name, mod in chosen:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, FakeQuantLinear(mod, cfg))
        wrapped.add(name)
    log.info("qat: %d layers fake-quantized (%s observer)", len(wrapped), cfg.observer)
    return [n for n, _ in wrappers(model) if n in wrapped]


def is_qat(model) -> bool:
    return model is not None and any(isinstance(m, FakeQuantLinear) for m in model.modules())


def set_flags(model, **flags: bool) -> None:
    """``fake_quant=`` / ``observing=`` on every fake-quantized layer."""
    for _, m in wrappers(model):
        for k, v in flags.items():
            setattr(m, k, v)


@contextlib.contextmanager
def fake_quant_disabled(model) -> Iterator[None]:
    """Plain fp32 behaviour inside (no fake quant, no observing); the flags come back afterwards."""
    saved = [(m, m.fake_quant, m.observing) for _, m in wrappers(model)]
    set_flags(model, fake_quant=False, observing=False)
    try:
        yield
    finally:
        for m, fq, obs in saved:
            m.fake_quant, m.observing = fq, obs


def qat_state(model) -> dict[str, torch.Tensor]:
    """Observer ranges and flags of a prepared model: ``<layer>.act_min`` / ``.act_max`` / ``.observed`` / …"""
    out = {}
    for name, m in wrappers(model):
        out.update({f"{name}.{k}": getattr(m, k).detach().cpu().clone() for k in ("act_min", "act_max")})
        out.update({f"{name}.{k}": torch.tensor(bool(getattr(m, k))) for k in FLAGS})
    return out


def load_qat_state(model, state: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`qat_state` returned, into a model prepared the same way (:func:`prepare_qat`)."""
    layers = wrappers(model)
    if not layers:
        raise CompressorError("QAT state given for a model without fake-quantized layers (call prepare_qat first)")
    expected = {f"{n}.{k}" for n, _ in layers for k in ("act_min", "act_max", *FLAGS)}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise CompressorError(
            f"QAT state does not match the model's fake-quantized layers (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for name, m in layers:
        m.act_min.copy_(torch.as_tensor(state[f"{name}.act_min"]))
        m.act_max.copy_(torch.as_tensor(state[f"{name}.act_max"]))
        for k in FLAGS:
            setattr(m, k, bool(state[f"{name}.{k}"]))


def activation_ranges(model) -> dict[str, list[float]]:
    return {n: [float(m.act_min), float(m.act_max)] for n, m in wrappers(model) if m.observed}


def range_summary(model) -> dict:
    r = activation_ranges(model)
    return {
        "observed_layers": len(r),
        "min": min((lo for lo, _ in r.values()), default=None),
        "max": max((hi for _, hi in r.values()), default=None),
        "median_width": float(np.median([hi - lo for lo, hi in r.values()])) if r else None,
    }


def strip_qat(model):
    """Put the plain modules back (same Parameters); the model then saves and loads as a plain HF model."""
    for name, m in wrappers(model):
        plain = m.plain[0]
        plain.weight, plain.bias = m.weight, m.bias
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, plain)
    return model
