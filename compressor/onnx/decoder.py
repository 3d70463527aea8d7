"""Causal-LM export with a key / value cache: one graph for prefill (past length 0) and decode.

Inputs and outputs follow ``compressor.arch.signature.decoder_signature``: ``input_ids``, ``attention_mask`` (over
past + new tokens), ``position_ids`` and ``past_key_values.{i}.key / .value`` in; ``logits`` and
``present.{i}.key / .value`` out, batch / sequence / past axes dynamic. Positions come from the caller (cumsum of
the mask − 1 under left padding), never from inside the graph, so a left-padded row scores as it does alone.

The TorchScript exporter is tried first (a few seconds on tiny models; it traces with a past of 3 positions and a
left-padded row, so neither the cache length nor the masking path is frozen); the dynamo exporter is the fallback.
The wrapper rebuilds a transformers ``DynamicCache`` from the flat past tensors, so the model's own cache code runs.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import numpy as np

from compressor.arch.signature import Signature, decoder_signature, position_ids
from compressor.core.errors import ExportError
from compressor.models import set_eager_attention
from compressor.onnx.onnx import export_with_fallback

log = logging.getLogger("compressor")


def _cache_kwarg(model) -> str:
    """transformers 5 names the forward argument ``cache`` (``past_key_values`` before)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _present(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def make_cache(past: list):
    """A DynamicCache holding ``past`` = [k0, v0, k1, v1, ...]."""
    from transformers import DynamicCache

    return DynamicCache([(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)])


def flatten_cache(cache) -> list:
    if hasattr(cache, "layers"):
        return [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return [t for pair in cache for t in pair[:2]]  # legacy tuple of (key, value)


class CachedLM:
    """Wraps a causal LM so the graph takes the signature's flat inputs and returns logits + flat present."""

    @staticmethod
    def wrap(model, sig: Signature):
        import torch

        kwarg = _cache_kwarg(model)

        class _Wrapper(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask, position_ids, *past):
                out = self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    use_cache=True,
                    return_dict=True,
                    **{kwarg: make_cache(list(past))},
                )
                return (out.logits, *flatten_cache(_present(out)))

        return _Wrapper().eval()


def _export_torchscript(wrapped, args: tuple, path: Path, sig: Signature, opset: int) -> int:
    import torch

    torch.onnx.export(
        wrapped,
        args,
        str(path),
        input_names=sig.input_names,
        output_names=sig.output_names,
        dynamic_axes=sig.dynamic_axes(),
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )
    return opset


def _export_dynamo(wrapped, args: tuple, path: Path, sig: Signature, opset: int) -> int:
    import torch

    dims: dict[str, object] = {}

    def shape(spec) -> dict:
        return {i: dims.setdefault(a, torch.export.Dim(a)) for i, a in spec.dynamic().items()}

    specs = {t.name: t for t in sig.inputs}
    fixed = tuple(shape(specs[n]) for n in sig.input_names[:3])
    past = tuple(shape(specs[n]) for n in sig.past_names())
    torch.onnx.export(
        wrapped,
        args,
        str(path),
        input_names=sig.input_names,
        output_names=sig.output_names,
        dynamic_shapes=(*fixed, past),
        opset_version=max(opset, 18),
        dynamo=True,
        report=False,
    )
    return max(opset, 18)


def prepare(model):
    """The model on CPU, in eval mode, with eager attention and its cache switched on."""
    model = model.cpu().eval()
    set_eager_attention(model)
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = True
    return model


def export_decoder(model, out_path: Path, opset: int = 17, exporter: str = "auto") -> dict:
    """Export the cached graph of ``model`` to ``out_path`` (atomically). Returns the provenance fields."""
    import torch

    model = prepare(model)
    sig = decoder_signature(model.config, with_past=True)
    wrapped = CachedLM.wrap(model, sig)
    dummy = sig.dummy_inputs()
    args = tuple(torch.as_tensor(dummy[n]) for n in sig.input_names)

    def attempt(kind: str, target: Path) -> int:
        return (_export_torchscript if kind == "torchscript" else _export_dynamo)(wrapped, args, target, sig, opset)

    used, used_opset, tried, seconds = export_with_fallback(out_path, exporter, attempt, "ONNX export with KV cache")
    return {
        "exporter": used,
        "opset": used_opset,
        "with_past": True,
        "inputs": sig.input_names,
        "outputs": sig.output_names,
        "kv_cache": {"layers": sig.kv.layers, "kv_heads": sig.kv.kv_heads, "head_dim": sig.kv.head_dim},
        "notes": list(sig.notes),
        "seconds": seconds,
        "failed_exporters": tried,
    }


# ---------------------------------------------------------------- running the cached graph
def left_pad(rows: list[list[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) with every row right-aligned."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = r
            mask[i, width - len(r) :] = 1
    return ids, mask


def prompts_from_batches(batches: list[dict], rows: int = 4, max_len: int = 16) -> list[list[int]]:
    """Prompts of differing lengths (so the batch is padded) taken from real tokenized rows."""
    out: list[list[int]] = []
    for batch in batches:
        ids, mask = np.asarray(batch["input_ids"]), np.asarray(batch["attention_mask"]).astype(bool)
        for r in range(len(ids)):
            tokens = ids[r][mask[r]].tolist()
            keep = max(2, max_len - 3 * len(out))
            if len(tokens) >= 2:
                out.append(tokens[:keep])
            if len(out) == rows:
                return out
    return out


def _past_from(sig: Signature, outputs: list, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """The next step's past from a step's outputs, by name (``names``: the session's output names, in order; the
    builder's graph lists every layer's key before the values)."""
    if names is None:
        return {n.replace("present.", "past_key_values.", 1): v for n, v in zip(sig.present_names(), outputs[1:])}
    return {n.replace("present.", "past_key_values.", 1): v for n, v in zip(names, outputs) if n.startswith("present.")}


def onnx_greedy(
    session, sig: Signature, ids: np.ndarray, mask: np.ndarray, new_tokens: int, eos: int | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Greedy decoding through the cached graph: (generated ids (batch, new_tokens), last-position logits per step).
    A row that emitted ``eos`` keeps emitting it (as transformers pads finished rows)."""
    names = [o.name for o in session.get_outputs()]
    outs = session.run(None, sig.feed({"input_ids": ids, "attention_mask": mask}))
    mask, done = mask.copy(), np.zeros(len(ids), dtype=bool)
    tokens, logits = [], []
    for step in range(new_tokens):
        last = outs[0][:, -1]
        logits.append(last)
        nxt = last.argmax(-1)
        if eos is not None:
            nxt = np.where(done, eos, nxt)
            done |= nxt == eos
        tokens.append(nxt)
        if step == new_tokens - 1:
            break
        mask = np.concatenate([mask, np.ones((len(ids), 1), dtype=np.int64)], axis=1)
        outs = session.run(
            None, sig.feed({"input_ids": nxt[:, None].astype(np.int64), "attention_mask": mask}, _past_from(sig, outs, names))
        )
    return np.stack(tokens, axis=1), logits


def cached_parity(
    model, onnx_path: Path, prompts: list[list[int]], steps: int = 5, tolerance: float | None = 1e-3, pad_id: int = 0
) -> dict:
    """Left-padded prefill plus ``steps`` greedy decode steps, PyTorch (its own cache) against the ONNX graph fed
    its own presents; both follow PyTorch's tokens. Compares logits at every real (unpadded) position.

    A graph without ``position_ids`` (onnxruntime-genai's builder) takes its positions from the mask's sum, which
    only holds without left padding: it is checked (and ``tolerance`` enforced) on the prompts cut to one length,
    and the left-padded batch is measured and recorded under ``left_padded_batch`` (not enforced)."""
    from compressor.onnx.session import make_session

    session = make_session(onnx_path)
    if "position_ids" in {i.name for i in session.get_inputs()} or not prompts:
        return _parity_run(model, session, onnx_path, prompts, steps, tolerance, pad_id)
    width = min(len(p) for p in prompts)
    result = _parity_run(model, session, onnx_path, [p[:width] for p in prompts], steps, tolerance, pad_id)
    padded = _parity_run(model, session, onnx_path, prompts, steps, None, pad_id)
    result["left_padded_batch"] = {
        k: padded[k] for k in ("max_abs_diff", "prefill_max_abs_diff", "decode_max_abs_diff", "argmax_agreement", "left_padded")
    }
    result["left_padded_batch"]["note"] = (
        "no position_ids input: positions come from the attention mask's sum, exact without left padding only"
    )
    result["equal_length_prompts"] = width
    return result


def _parity_run(
    model, session, onnx_path: Path, prompts: list[list[int]], steps: int, tolerance: float | None, pad_id: int
) -> dict:
    import torch

    from compressor.arch.signature import graph_signature

    model = prepare(model)
    sig = graph_signature(session.get_inputs(), model.config) or decoder_signature(model.config, with_past=True)
    names = [o.name for o in session.get_outputs()]
    ids, mask = left_pad(prompts, pad_id)
    pos = position_ids(mask)
    with torch.inference_mode():
        ref = model(
            input_ids=torch.as_tensor(ids),
            attention_mask=torch.as_tensor(mask),
            position_ids=torch.as_tensor(pos),
            use_cache=True,
            return_dict=True,
        )
    outs = session.run(None, sig.feed({"input_ids": ids, "attention_mask": mask}))
    prefill = float(np.abs(ref.logits.numpy() - outs[0])[mask.astype(bool)].max())
    decode, agree = 0.0, 0
    cache = _present(ref)
    for _ in range(steps):
        nxt = ref.logits[:, -1].argmax(-1, keepdim=True)
        mask = np.concatenate([mask, np.ones((len(ids), 1), dtype=np.int64)], axis=1)
        step_pos = position_ids(mask, 1)
        with torch.inference_mode():
            ref = model(
                input_ids=nxt,
                attention_mask=torch.as_tensor(mask),
                position_ids=torch.as_tensor(step_pos),
                use_cache=True,
                return_dict=True,
                **{_cache_kwarg(model): cache},
            )
        cache = _present(ref)
        outs = session.run(None, sig.feed({"input_ids": nxt.numpy(), "attention_mask": mask}, _past_from(sig, outs, names)))
        got, want = outs[0][:, -1], ref.logits[:, -1].numpy()
        decode = max(decode, float(np.abs(got - want).max()))
        agree += int((got.argmax(-1) == want.argmax(-1)).sum())
    worst = max(prefill, decode)
    result = {
        "max_abs_diff": worst,
        "prefill_max_abs_diff": prefill,
        "decode_max_abs_diff": decode,
        "decode_steps": steps,
        "rows": len(prompts),
        "left_padded": bool((mask[:, 0] == 0).any()),
        "argmax_agreement": agree / max(steps * len(prompts), 1),
        "tolerance": tolerance,
    }
    if tolerance is not None and not worst <= tolerance:
        raise ExportError(
            f"{onnx_path}: the cached graph differs from PyTorch by {worst:.3g} (tolerance {tolerance:g}) "
            f"over a left-padded prefill and {steps} decode steps; the export is wrong"
        )
    return result
