"""Export a PyTorch model to ONNX, check it against PyTorch, optimise it, record provenance.

This module is the one place that picks the exporter and the opset. The TorchScript
exporter with eager attention is tried first: on BERT it yields a graph that ONNX Runtime's
transformer optimizer fuses into Attention / EmbedLayerNormalization / SkipLayerNormalization /
BiasGelu. Models it cannot trace (Llama's ``aten::diff``) fall back to the dynamo exporter.
"""

from __future__ import annotations

import inspect
import logging
import shutil
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from compressor.arch.signature import signature_for
from compressor.core.errors import ExportError
from compressor.core.records import Provenance, read_dict, write_record
from compressor.core.rundir import quiet_libraries, tmp_sibling
from compressor.core.writeerrors import as_write_error, writing
from compressor.models import set_eager_attention

log = logging.getLogger("compressor")


def model_signature(model):
    """The plain (no-cache) graph signature of ``model``: compressor/arch/signature.py."""
    return signature_for(model.config, "causal-lm" if _is_causal(model) else "sequence-classification")


def input_names_for(model, batch: dict) -> list[str]:
    """The graph's inputs: the signature's, in its order, that the batch carries and the model's forward takes
    (ALBERT / DistilBERT take no token types)."""
    params = inspect.signature(model.forward).parameters
    return [n for n in model_signature(model).input_names if n in batch and n in params]


def _dynamic_axes(model, names: list[str]) -> dict[str, dict[int, str]]:
    """{tensor: {axis: symbol}} of the graph's inputs and outputs, from the signature."""
    return {k: v for k, v in model_signature(model).dynamic_axes().items() if k in names or k in ("logits",)}


class NamedInputs:
    """Wraps a HF model so that the exported graph takes exactly ``names``, in that order,
    and hands each one to the model by keyword. Exporters bind positional inputs to the
    model's own signature order, which differs between architectures (BERT's mask and
    segment ids swap silently; GPT-2 would expose ``logits_to_keep``)."""

    @staticmethod
    def wrap(model, names: list[str]):
        import torch

        class _Wrapper(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, *args):
                return self.model(**dict(zip(names, args)), use_cache=False, return_dict=True).logits

        return _Wrapper().eval()


def _export_torchscript(model, inputs: dict, path: Path, opset: int) -> None:
    names = list(inputs)
    axes = _dynamic_axes(model, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_onnx_export(model, path, inputs, names, axes, opset, dynamo=False)


def _export_dynamo(model, inputs: dict, path: Path, opset: int) -> None:
    import torch

    dims: dict[str, Any] = {}
    shapes = {
        n: {i: dims.setdefault(sym, torch.export.Dim(sym)) for i, sym in axes.items()}
        for n, axes in _dynamic_axes(model, list(inputs)).items()
        if n in inputs
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_onnx_export(model, path, inputs, list(inputs), None, max(opset, 18), dynamo=True, dynamic_shapes=shapes)


def torch_onnx_export(model, path: Path, inputs: dict, names: list[str], axes, opset: int, dynamo: bool, dynamic_shapes=None):
    import torch

    wrapped = NamedInputs.wrap(model, names)
    args = tuple(inputs[n] for n in names)
    kwargs: dict[str, Any] = dict(input_names=names, output_names=["logits"], opset_version=opset, dynamo=dynamo)
    if dynamo:
        kwargs["dynamic_shapes"] = tuple(dynamic_shapes[n] for n in names)
        kwargs["report"] = False
    else:
        kwargs["dynamic_axes"] = axes
        kwargs["do_constant_folding"] = True
    torch.onnx.export(wrapped, args, str(path), **kwargs)


def _is_causal(model) -> bool:
    return any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in (model.config.architectures or [])) or (
        type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))
    )


def export_model(model, batch: dict, out_path: Path, opset: int = 17, exporter: str = "auto") -> dict:
    """Export ``model`` to ``out_path`` (written atomically, external data beside it if any).

    Returns {"exporter", "opset", "inputs", "seconds"}.
    """
    with writing(f"the ONNX export ({out_path})", out_path):
        return _export_model(model, batch, Path(out_path), opset, exporter)


def _export_model(model, batch: dict, out_path: Path, opset: int = 17, exporter: str = "auto") -> dict:
    import torch

    model = model.cpu().eval()
    set_eager_attention(model)
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    names = input_names_for(model, batch)
    inputs = {n: torch.as_tensor(np.asarray(batch[n]), dtype=torch.long)[:2] for n in names}

    def attempt(kind: str, target: Path) -> None:
        (_export_torchscript if kind == "torchscript" else _export_dynamo)(model, inputs, target, opset)

    used, _, tried, seconds = export_with_fallback(out_path, exporter, attempt, "ONNX export")
    return {
        "exporter": used,
        "opset": opset if used == "torchscript" else max(opset, 18),
        "inputs": names,
        "seconds": seconds,
        "failed_exporters": tried,
    }


def export_with_fallback(out_path: Path, exporter: str, attempt, what: str) -> tuple[str, Any, list[str], float]:
    """The one exporter choice for every graph: TorchScript first, then dynamo (``exporter: auto``), each writing
    into a temporary folder beside ``out_path`` that replaces the files only once one succeeds.
    ``attempt(kind, target)`` exports; returns (exporter used, what attempt returned, failures, seconds)."""
    import torch

    tmp, tried = tmp_sibling(out_path), []
    order = {"auto": ["torchscript", "dynamo"], "torchscript": ["torchscript"], "dynamo": ["dynamo"]}[exporter]
    t0 = time.perf_counter()
    try:
        for kind in order:
            try:
                with torch.no_grad(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = attempt(kind, tmp / out_path.name)
                used = kind
                break
            except Exception as e:  # exporter failures come in many types
                if as_write_error(e, strict=True) is not None:
                    raise  # a full disk is no reason to try another exporter
                first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
                tried.append(f"{kind}: {first}")
                log.info("%s with %s failed: %s", what, kind, first)
                for f in tmp.iterdir():
                    f.unlink()
        else:
            raise ExportError(f"{what} failed: " + " | ".join(tried))
        for f in tmp.iterdir():
            (out_path.parent / f.name).unlink(missing_ok=True)
            f.replace(out_path.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return used, result, tried, round(time.perf_counter() - t0, 2)


def parity(model, onnx_path: Path, batches: Iterable[dict], tolerance: float | None, what: str = "ONNX") -> dict:
    """Run real batches through PyTorch and ONNX Runtime; raise ExportError above ``tolerance``."""
    from compressor.measure.evaluate import onnx_logits, torch_logits
    from compressor.onnx.session import make_session

    model = model.cpu().eval()
    session = make_session(onnx_path)
    max_abs, agree, total = 0.0, 0, 0
    for batch in batches:
        ref = torch_logits(model, batch)
        got = onnx_logits(session, batch)
        if ref.shape != got.shape:
            raise ExportError(f"{onnx_path}: output shape {got.shape} differs from PyTorch's {ref.shape}")
        mask = np.asarray(batch["attention_mask"], dtype=bool) if ref.ndim == 3 else None
        diff = np.abs(ref - got)
        if mask is not None:
            diff = diff[mask]
            agree += int((ref.argmax(-1) == got.argmax(-1))[mask].sum())
            total += int(mask.sum())
        else:
            agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
            total += len(ref)
        max_abs = max(max_abs, float(diff.max()) if diff.size else 0.0)
    del session
    result = {"max_abs_diff": max_abs, "argmax_agreement": agree / max(total, 1), "tolerance": tolerance, "compared": total}
    if tolerance is not None and not max_abs <= tolerance:
        raise ExportError(
            f"{onnx_path}: {what} output differs from PyTorch by {max_abs:.3g} (tolerance {tolerance:g}) on real batches; "
            "the export is wrong (check input names, opset, or raise export.tolerance)"
        )
    return result


def fusion_unavailable(config) -> str | None:
    """Why ORT's transformer optimizer cannot fuse this architecture (None when it can); goes into provenance."""
    from compressor.arch.families import find_family

    fam = find_family(config)
    if fam is not None and fam.ort_optimizer:
        return None
    model_type = getattr(config, "model_type", "?")
    return f"'{model_type}': {fam.no_fusion if fam else 'no ONNX Runtime transformer optimizer for this architecture'}"


def optimize(onnx_path: Path, config, out_path: Path) -> dict | None:
    """ONNX Runtime transformer fusions, where the architecture supports them."""
    from compressor.arch.families import find_family

    fam = find_family(config)
    model_type = fam.ort_optimizer if fam else None
    if model_type is None:
        log.info("no ONNX Runtime optimizer for model type '%s'; using the plain export", config.model_type)
        return None
    from onnxruntime.transformers.optimizer import optimize_model

    heads, hidden = fam.heads(config), fam.hidden(config)
    pruned = (getattr(config, "compressor_structure", None) or {}).get("attention_heads")
    if pruned:  # heads removed by structured pruning: the fused Attention is kept × head_dim wide
        kept = set(pruned)
        heads = kept.pop() if len(kept) == 1 else 0  # differing counts per layer: ORT cannot fuse with one setting
        hidden = heads * config.compressor_structure["head_dim"]
    try:
        with warnings.catch_warnings(), quiet_libraries():
            warnings.simplefilter("ignore")
            opt = optimize_model(str(onnx_path), model_type=model_type, num_heads=heads, hidden_size=hidden, opt_level=1)
        fusions = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        tmp = tmp_sibling(out_path)
        try:
            with writing(f"the optimized ONNX graph ({out_path})", out_path):
                opt.save_model_to_file(str(tmp / out_path.name))
                (tmp / out_path.name).replace(out_path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception as e:
        if as_write_error(e, strict=True) is not None:
            raise  # a full disk must not pass for an optimizer that failed
        log.warning("ONNX Runtime optimizer failed (%s); using the plain export", str(e).splitlines()[0][:200] if str(e) else e)
        return None
    return fusions


def provenance_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".json")


def write_provenance(artifact: Path, record: dict) -> None:
    import onnx
    import onnxruntime
    import torch
    import transformers

    from compressor import __version__

    record = dict(record)
    record.setdefault("file", artifact.name)
    if "fusion" not in record and "fusions" not in record:
        inherited = source_fusion(artifact, record)
        if inherited is not None:
            record["fusion"] = inherited
    record["versions"] = {
        "compressor": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_record(provenance_path(artifact), Provenance, record)


def source_fusion(artifact: Path, record: dict) -> dict | None:
    """For a graph made from another one beside it (INT8 / INT4 of model.onnx or model.opt.onnx): whether that
    source was fused, read from its provenance, so that every quantized artifact says so too. For an architecture
    ORT cannot fuse (MPNet, DeBERTa-v2, ModernBERT, ...) this is {"applied": false, "reason": ..., "source_graph": ...}."""
    name = record.get("source_graph") or record.get("source")
    if not isinstance(name, str) or "/" in name or not name.endswith(".onnx"):
        return None
    src = read_provenance(artifact.with_name(name))
    if src.get("fusions") is not None:
        trim = src.get("cls_only_last_layer") or {}
        return {
            "applied": True,
            "source_graph": name,
            "fusions": src["fusions"],
            "cls_only_last_layer": bool(trim.get("applied")) if isinstance(trim, dict) else bool(trim),
        }
    if isinstance(src.get("fusion"), dict):
        return {**src["fusion"], "source_graph": name}
    return None


def read_provenance(artifact: Path) -> dict:
    """The artifact's provenance record (typed: ``core.records.Provenance``), or {} when it has none."""
    p = provenance_path(artifact)
    return read_dict(p, Provenance) if p.is_file() else {}
