"""Quantization-aware training (QAT) and its export as an ONNX QDQ graph with INT8 weights.

What is quantized: the ``nn.Linear`` layers (and GPT-2's ``Conv1D``) whose names match ``qat.include`` and
no ``exclude`` regex. Each is replaced in place by :class:`FakeQuantLinear`, which keeps the very same
``weight`` / ``bias`` Parameters (optimizers, ``state_dict`` keys, tied weights unchanged) and computes
``fq_u8(x) @ fq_s8(W^T) + b`` with a float output (no requantization, like static.py's scheme):

* weights: int8, symmetric, per output channel: scale = max|w_c| / 127, zero point 0. The range [-128, 127]
  is what the ONNX exporter accepts; with that scale only the 255 levels -127..127 are used;
* input activations: uint8 (0..255), asymmetric, per tensor; the range (always holding 0) from an observer:
  ``minmax`` (running min / max) or ``ema`` (moving average of per-batch min / max).

The weight is used as (in, out) and quantized along axis 1, so DequantizeLinear(W) feeds MatMul directly
(no Transpose); 2-D inputs get a leading axis (ORT would turn a 2-D MatMul + Add into a Gemm, which its QDQ
fusion leaves fp32). Observer state is in non-persistent buffers and flags: ``state_dict`` / ``save_pretrained``
see a plain model; :func:`qat_state` / :func:`load_qat_state` carry the ranges. :class:`QATCallback` drives
training: calibrate, fake-quantize, freeze the ranges.

``quantize: {type: qat}`` (:func:`run_qat_export`) exports the fake-quant graph (``fake_quantize_*`` become
QuantizeLinear / DequantizeLinear), folds each QuantizeLinear of a constant weight into an int8 initializer,
optionally stores embedding tables as per-tensor uint8 (weight-only; ORT gathers uint8 rows, then
dequantizes them), checks parity against the fake-quant PyTorch model and records the kernels ORT runs
(onnxruntime 1.32: every quantized layer becomes MatMulIntegerToFloat).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compressor.core.errors import CompressorError, ExportError
from compressor.core.registry import STAGES
from compressor.core.rundir import tmp_sibling
from compressor.pipeline.context import RunContext
from compressor.recipe.schema import QATConfig, QATQuant

log = logging.getLogger("compressor")
W_QMIN, W_QMAX, W_LEVELS = -128, 127, 127  # int8 weights; symmetric scale max|w| / 127
A_QMIN, A_QMAX = 0, 255  # uint8 activations
MIN_SCALE = 1e-8
INTEGER_KERNELS = ("MatMulIntegerToFloat", "QLinearMatMul", "MatMulInteger", "DynamicQuantizeLinear", "QGemm")  # ORT
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
def _wrappers(model) -> list[tuple[str, FakeQuantLinear]]:
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
        raise CompressorError(f"qat: no Linear layer matches include {list(cfg.include)} without matching exclude "
                              f"{list(cfg.exclude)}; nothing to quantize")
    for name, mod in chosen:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, FakeQuantLinear(mod, cfg))
        wrapped.add(name)
    log.info("qat: %d layers fake-quantized (%s observer)", len(wrapped), cfg.observer)
    return [n for n, _ in _wrappers(model) if n in wrapped]


def is_qat(model) -> bool:
    return model is not None and any(isinstance(m, FakeQuantLinear) for m in model.modules())


def set_flags(model, **flags: bool) -> None:
    """``fake_quant=`` / ``observing=`` on every fake-quantized layer."""
    for _, m in _wrappers(model):
        for k, v in flags.items():
            setattr(m, k, v)


@contextlib.contextmanager
def fake_quant_disabled(model) -> Iterator[None]:
    """Plain fp32 behaviour inside (no fake quant, no observing); the flags come back afterwards."""
    saved = [(m, m.fake_quant, m.observing) for _, m in _wrappers(model)]
    set_flags(model, fake_quant=False, observing=False)
    try:
        yield
    finally:
        for m, fq, obs in saved:
            m.fake_quant, m.observing = fq, obs


def qat_state(model) -> dict[str, torch.Tensor]:
    """Observer ranges and flags of a prepared model: ``<layer>.act_min`` / ``.act_max`` / ``.observed`` / …"""
    out = {}
    for name, m in _wrappers(model):
        out.update({f"{name}.{k}": getattr(m, k).detach().cpu().clone() for k in ("act_min", "act_max")})
        out.update({f"{name}.{k}": torch.tensor(bool(getattr(m, k))) for k in FLAGS})
    return out


def load_qat_state(model, state: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`qat_state` returned, into a model prepared the same way (:func:`prepare_qat`)."""
    wrappers = _wrappers(model)
    if not wrappers:
        raise CompressorError("QAT state given for a model without fake-quantized layers (call prepare_qat first)")
    expected = {f"{n}.{k}" for n, _ in wrappers for k in ("act_min", "act_max", *FLAGS)}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise CompressorError(f"QAT state does not match the model's fake-quantized layers (missing {missing[:3]}, "
                              f"unexpected {extra[:3]})")
    for name, m in wrappers:
        m.act_min.copy_(torch.as_tensor(state[f"{name}.act_min"]))
        m.act_max.copy_(torch.as_tensor(state[f"{name}.act_max"]))
        for k in FLAGS:
            setattr(m, k, bool(state[f"{name}.{k}"]))


def activation_ranges(model) -> dict[str, list[float]]:
    return {n: [float(m.act_min), float(m.act_max)] for n, m in _wrappers(model) if m.observed}


def range_summary(model) -> dict:
    r = activation_ranges(model)
    return {"observed_layers": len(r), "min": min((lo for lo, _ in r.values()), default=None),
            "max": max((hi for _, hi in r.values()), default=None),
            "median_width": float(np.median([hi - lo for lo, hi in r.values()])) if r else None}


def strip_qat(model):
    """Put the plain modules back (same Parameters); the model then saves and loads as a plain HF model."""
    for name, m in _wrappers(model):
        plain = m.plain[0]
        plain.weight, plain.bias = m.weight, m.bias
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, plain)
    return model


class QATCallback:
    """Training-loop hooks: calibrate the observers, fake-quantize, freeze the ranges late in training.

    Only evaluations after the freeze may become the kept "best" checkpoint (``ready``): the ranges are
    not part of the weights, so an earlier checkpoint would be paired with ranges it was not trained with.
    """

    name = "qat"

    def __init__(self, model, cfg: QATConfig, calibration_batches: Iterable[dict], device: str = "cpu"):
        self.model, self.cfg, self.device = model, cfg, device
        self.batches = list(itertools.islice(calibration_batches, cfg.calibration_batches))
        self.layers = prepare_qat(model, cfg)
        self.frozen, self.frozen_at, self.calibrated_on = False, None, 0

    def calibrate(self) -> None:
        """Observe the calibration batches (forward only, fake quant off) from fresh ranges."""
        if not self.batches:
            raise CompressorError("qat: no calibration batches (the training split is empty?)")
        wrappers = [m for _, m in _wrappers(self.model)]
        device = next(self.model.parameters(), torch.empty(0, device=self.device)).device
        was_training = self.model.training
        self.model.eval()
        for m in wrappers:
            m.observed, m.fake_quant, m.observing, m.calibrating = False, False, True, True
        try:
            with torch.no_grad():
                for batch in self.batches:
                    self.model(**{k: torch.as_tensor(v).to(device) for k, v in batch.items() if k != "labels"})
        finally:
            for m in wrappers:
                m.calibrating = False
            self.model.train(was_training)
        self.calibrated_on = len(self.batches)
        log.info("qat: observed %d calibration batches; fake quantization on", len(self.batches))

    def on_train_begin(self, state) -> None:
        if state.step == 0:
            self.calibrate()
        set_flags(self.model, fake_quant=True, observing=not self.frozen)

    def on_step(self, state) -> None:
        if not self.frozen and state.step >= self.cfg.freeze_after * state.total_steps:
            self.frozen, self.frozen_at = True, state.step
            set_flags(self.model, observing=False)
            log.info("qat: activation ranges frozen at step %d/%d", state.step, state.total_steps)

    def ready(self, state) -> bool:
        return self.frozen

    def on_train_end(self, state) -> None:
        set_flags(self.model, observing=False)  # ranges stay as trained, whatever runs in training mode later

    def logs(self) -> dict:
        return {"qat_frozen": int(self.frozen)}

    def summary(self) -> dict:
        return {"layers": len(self.layers), "observer": self.cfg.observer, "calibration_batches": self.calibrated_on,
                "frozen_at_step": self.frozen_at, "ranges": range_summary(self.model)}

    def state_dict(self) -> dict:
        return {"frozen": self.frozen, "frozen_at": self.frozen_at, "calibrated_on": self.calibrated_on,
                "model": qat_state(self.model)}

    def load_state_dict(self, d: dict) -> None:
        load_qat_state(self.model, d["model"])
        self.frozen, self.frozen_at, self.calibrated_on = bool(d["frozen"]), d["frozen_at"], int(d["calibrated_on"])


# ---------------------------------------------------------------- ONNX export
@contextlib.contextmanager
def _static_qparams(model) -> Iterator[None]:
    """Scales / zero points as constants while tracing, so the QuantizeLinear inputs are constants too."""
    wrappers = [m for _, m in _wrappers(model)]
    try:
        with torch.no_grad():
            for m in wrappers:
                m.static_qparams = tuple(None if t is None else t.detach().clone() for t in m.qparams())
        yield
    finally:
        for m in wrappers:
            m.static_qparams = None


def _fold_weights(model) -> dict:
    """QuantizeLinear(constant fp32 weight) -> an int8 initializer feeding the DequantizeLinear."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in g.node if n.op_type == "Constant" and n.attribute[0].name == "value"}
    consumers: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)

    def value(name):
        t = inits[name] if name in inits else consts.get(name)
        return None if t is None else numpy_helper.to_array(t)

    folded, before, after = 0, 0, 0
    for n in [n for n in g.node if n.op_type == "QuantizeLinear" and len(n.input) == 3]:
        w, scale, zp = (value(x) for x in n.input)
        if w is None or w.dtype != np.float32 or w.ndim != 2 or scale is None or zp is None:
            continue
        shape = [1, 1]
        if scale.ndim:
            shape[next((a.i for a in n.attribute if a.name == "axis"), 1)] = -1
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(w / scale.reshape(shape)) + zp.reshape(shape).astype(np.int64), info.min, info.max)
        tensor = numpy_helper.from_array(q.astype(zp.dtype), f"{(n.name or n.output[0]).strip('/')}.int8")
        g.initializer.append(tensor)
        for m in consumers.get(n.output[0], []):
            m.input[:] = [tensor.name if x == n.output[0] else x for x in m.input]
        consumers[n.input[0]].remove(n)
        if not consumers[n.input[0]] and n.input[0] in inits:  # the fp32 weight has no other reader
            g.initializer.remove(inits.pop(n.input[0]))
        g.node.remove(n)
        folded, before, after = folded + 1, before + w.nbytes, after + q.size * np.dtype(zp.dtype).itemsize
    return {"folded_weights": folded, "weight_bytes_fp32": before, "weight_bytes_int8": after}


def _quantize_tables(model) -> list[str]:
    """2-D fp32 tables read only by Gather (axis 0): uint8 per-tensor asymmetric, DQ -> Gather -> Q -> DQ.

    ORT drops the pair around Gather (so it gathers uint8 rows and dequantizes only those) when DQ and Q
    share u8 parameters; with int8 its s8 -> u8 rewrite of the Q leaves the whole table dequantized per run.
    """
    from onnx import helper, numpy_helper

    g = model.graph
    readers: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            readers.setdefault(x, []).append(n)
    done, nodes = [], list(g.node)
    for init in list(g.initializer):
        name, users = init.name, readers.get(init.name, [])
        if (len(init.dims) != 2 or init.data_type != 1 or not users or min(init.dims) < 2
                or any(u.op_type != "Gather" or u.input[0] != name or any(a.i for a in u.attribute) for u in users)):
            continue
        table = numpy_helper.to_array(init)
        scale, zp = (t.item() for t in activation_qparams(torch.tensor(float(table.min())), torch.tensor(float(table.max()))))
        q = np.clip(np.rint(table / np.float32(scale)) + zp, A_QMIN, A_QMAX).astype(np.uint8)
        g.initializer.remove(init)
        g.initializer.extend([numpy_helper.from_array(q, f"{name}.uint8"),
                              numpy_helper.from_array(np.array(scale, np.float32), f"{name}.scale"),
                              numpy_helper.from_array(np.array(zp, np.uint8), f"{name}.zero_point")])
        qp = [f"{name}.scale", f"{name}.zero_point"]
        nodes.insert(nodes.index(users[0]), helper.make_node("DequantizeLinear", [f"{name}.uint8", *qp], [f"{name}.dq"],
                                                             name=f"{name}/DQ"))
        for j, u in enumerate(users):
            out = u.output[0]
            u.input[0], u.output[0] = f"{name}.dq", f"{out}.gathered"
            at = nodes.index(u) + 1
            nodes[at:at] = [helper.make_node("QuantizeLinear", [f"{out}.gathered", *qp], [f"{out}.q"], name=f"{name}/Q{j}"),
                            helper.make_node("DequantizeLinear", [f"{out}.q", *qp], [out], name=f"{name}/DQ{j}")]
        done.append(name)
    del g.node[:]
    g.node.extend(nodes)
    return done


def qdq_structure(model) -> dict:
    """Counts of the QDQ pattern: activation Q->DQ pairs, weight DQs of int8 initializers, MatMuls fed by both."""
    g = model.graph
    prod = {o: n.op_type for n in g.node for o in n.output}
    int8 = {i.name for i in g.initializer if i.data_type == 3}  # TensorProto.INT8
    act = sum(1 for n in g.node if n.op_type == "DequantizeLinear" and prod.get(n.input[0]) == "QuantizeLinear")
    wdq = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in int8}
    mm = [n for n in g.node if n.op_type == "MatMul" and n.input[1] in wdq]
    full = sum(1 for n in mm if prod.get(n.input[0]) == "DequantizeLinear")
    return {"activation_qdq_pairs": act, "weight_dequantize": len(wdq), "quantized_matmuls": full,
            "weight_only_matmuls": len(mm) - full}


def ort_kernels(path: Path) -> dict[str, int]:
    """Node types in the graph ONNX Runtime runs (all optimizations on), from its optimized-model dump."""
    import onnx

    from compressor.onnx.session import make_session

    tmp = tmp_sibling(Path(path))
    try:
        make_session(path, optimized_model_path=tmp / "ort.onnx",
                     config={"session.optimized_model_external_initializers_file_name": "ort.onnx.data"})
        ops = Counter(n.op_type for n in onnx.load(str(tmp / "ort.onnx"), load_external_data=False).graph.node)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dict(sorted(ops.items()))


def export_qdq(model, batch: dict, out_path: Path, opset: int = 17, quantize_embeddings: bool = True) -> dict:
    """Export a fake-quant model to an ONNX QDQ graph with int8 weights at ``out_path`` (atomically).

    Returns the provenance details: quantized layer / QDQ counts, weight bytes, embeddings, opset, exporter.
    """
    import onnx

    from compressor.onnx.onnx import export_model

    wrappers = [m for _, m in _wrappers(model)] if model is not None else []
    if not wrappers:
        raise CompressorError("export_qdq: the model has no fake-quantized layers (train it with `qat:`)")
    if opset < 13:
        raise CompressorError(f"QDQ with per-channel weights needs opset >= 13 (got {opset})")
    if not any(m.fake_quant for m in wrappers):
        raise CompressorError("export_qdq: fake quantization is off (the model was never calibrated / trained with qat)")
    if unobserved := sum(1 for m in wrappers if m.fake_quant and not m.observed):
        log.warning("qat export: %d layer(s) never saw data; their inputs stay fp32 (weight-only)", unobserved)
    out_path = Path(out_path)
    work = tmp_sibling(out_path)
    try:
        model.cpu().eval()
        with _static_qparams(model):
            info = export_model(model, batch, work / "fake-quant.onnx", opset=opset)
        proto = onnx.load(str(work / "fake-quant.onnx"))
        folded = _fold_weights(proto)
        tables = _quantize_tables(proto) if quantize_embeddings else []
        onnx.checker.check_model(proto)
        structure = qdq_structure(proto)
        big = sum(len(i.raw_data) for i in proto.graph.initializer) > 1_800_000_000  # protobuf's 2 GB limit
        onnx.save(proto, str(work / out_path.name), save_as_external_data=big, location=out_path.name + ".data")
        for f in (work / out_path.name, work / (out_path.name + ".data")):
            if f.exists():
                f.replace(out_path.parent / f.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if structure["quantized_matmuls"] == 0:
        raise ExportError(f"{out_path}: no MatMul reads int8 weights after export; the QDQ pattern was not produced")
    return {**{k: info[k] for k in ("exporter", "opset", "inputs", "seconds")}, "quantized_linears": len(wrappers),
            **structure, **folded, "embeddings_quantized": tables, "quantize_embeddings": quantize_embeddings}


# ---------------------------------------------------------------- the stage
@STAGES.register(QATQuant)
def run_qat_export(ctx: RunContext, cfg: QATQuant) -> dict:
    from compressor.onnx.batches import parity_batches
    from compressor.onnx.onnx import parity, write_provenance

    if not is_qat(ctx.model):
        raise CompressorError("quantize: {type: qat} needs a model trained with fake quantization: add `qat: {}` "
                              "to a finetune or distill stage before it")
    dst = ctx.run_dir / "onnx" / "model.int8.onnx"
    dst.parent.mkdir(parents=True, exist_ok=True)
    batches = parity_batches(ctx)
    info = export_qdq(ctx.model, batches[0], dst, cfg.opset, cfg.quantize_embeddings)
    embedding_note = None
    try:
        check = parity(ctx.model, dst, batches, cfg.tolerance, what="QAT INT8")
    except ExportError as e:
        if not info["embeddings_quantized"]:
            raise
        embedding_note = f"uint8 embedding tables exceeded the parity tolerance ({e}); tables kept fp32"
        log.warning("qat export: %s", embedding_note)
        info = export_qdq(ctx.model, batches[0], dst, cfg.opset, quantize_embeddings=False)
        check = parity(ctx.model, dst, batches, cfg.tolerance, what="QAT INT8")
    from compressor.quantize.cpu_graph import tune_layernorm

    layernorm = tune_layernorm(dst, cfg.layernorm, ctx.recipe.bench.threads)
    if layernorm.get("skip_layernorm") or layernorm.get("add_layernorm"):
        check = parity(ctx.model, dst, batches, cfg.tolerance, what="QAT INT8")
    kernels = ort_kernels(dst)
    integer = {k: v for k, v in kernels.items() if k in INTEGER_KERNELS}
    layer = next(m for _, m in _wrappers(ctx.model))
    record = {"artifact": "int8", "recipe": ctx.recipe.name, "seed": ctx.seed, "scheme": "qat", "format": "QDQ",
              "observer": layer.observer, "ema_decay": layer.ema_decay if layer.observer == "ema" else None,
              "weights": "int8, symmetric, per output channel (scale max|w|/127, zero point 0)",
              "activations": "uint8, asymmetric, per tensor (observed ranges, frozen in training)",
              "embeddings": "uint8, asymmetric, per tensor, weight-only" if info["embeddings_quantized"] else "fp32",
              **info, "embedding_fallback": embedding_note, "parity": check, "layernorm_kernels": layernorm, "ort_kernels": kernels,
              "ort_integer_kernels": integer, "activation_ranges": activation_ranges(ctx.model)}
    write_provenance(dst, record)
    ctx.artifacts["int8"], ctx.provenance["int8"] = dst, record
    log.info("QAT INT8: %s, %d layers, weights %.2f -> %.2f MB, ORT integer kernels %s; max |diff| vs fake-quant PyTorch "
             "%.3g", dst.name, info["quantized_linears"], info["weight_bytes_fp32"] / 1e6, info["weight_bytes_int8"] / 1e6,
             integer or "none", check["max_abs_diff"])
    if not integer:
        log.warning("QAT INT8: ONNX Runtime runs no integer MatMul kernel for %s (it dequantizes the weights)", dst.name)
    result = {"artifact": str(dst.relative_to(ctx.run_dir)), "scheme": "qat", "parity": check,
              **{k: info[k] for k in ("quantized_linears", "quantized_matmuls", "activation_qdq_pairs", "weight_bytes_fp32",
                                      "weight_bytes_int8")},
              "embeddings_quantized": len(info["embeddings_quantized"]), "ort_integer_kernels": integer,
              "ranges": range_summary(ctx.model)}
    ctx.model = strip_qat(ctx.model)
    return result
