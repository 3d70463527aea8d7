"""onnxruntime-genai's model builder as an exporter (``export: {with_past: true, exporter: genai}``).

The run's PyTorch model (after any pruning, fine-tuning or AWQ transform) is saved to a scratch folder as fp32
safetensors with its config and tokenizer, and ``python -m onnxruntime_genai.models.builder -i DIR -o OUT -p fp32
-e cpu`` writes the graph: GroupQueryAttention with rotary embedding inside, SkipSimplifiedLayerNormalization,
fused q/k/v projections, and ``genai_config.json`` with a KV buffer shared between past and present. No Hub access:
the builder reads the folder. Our weight-only quantizers (quantize/weight_only.py) then run on that fp32 graph.

The graph's interface differs from ours (compressor/onnx/decoder.py) in one way that matters: it has no
``position_ids`` input. GroupQueryAttention derives each row's positions from ``attention_mask.sum(-1)``, i.e. it
assumes the valid tokens of a row come first (right padding, or none). A left-padded batch is therefore scored
wrongly in its padded rows (measured and recorded by the export's parity check, never hidden); unpadded rows,
batch 1 and onnxruntime-genai's own generator (which keeps its batches consistent with this layout) are exact.

The builder's past / present shapes name the head size symbolically (``kv_cache_dim``); the export writes the
model's head size there (a metadata edit of the graph's inputs and outputs) so that the graph describes itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from compressor.core.errors import ExportError
from compressor.core.rundir import tmp_sibling
from compressor.recipe.schema.export import GENAI_MISSING, genai_available

log = logging.getLogger("compressor")

# text decoders whose config.json architectures onnxruntime-genai 0.18's builder dispatches on (builder.py)
ARCHITECTURES = (
    "ChatGLMModel",
    "Ernie4_5ForCausalLM",
    "GemmaForCausalLM",
    "Gemma2ForCausalLM",
    "Gemma3ForCausalLM",
    "GraniteForCausalLM",
    "InternLM2ForCausalLM",
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "NemotronForCausalLM",
    "OlmoForCausalLM",
    "PhiForCausalLM",
    "Phi3ForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "SmolLM3ForCausalLM",
)


def architecture_problem(cfg: dict) -> str | None:
    """Why the builder cannot take a model with this config.json (a dict), or None."""
    arch = cfg.get("architectures")
    name = arch[0] if isinstance(arch, list) and arch and isinstance(arch[0], str) else None
    if name is None:
        return (
            f"onnxruntime-genai's builder picks its graph from config.json 'architectures', which this model "
            f"(model_type '{cfg.get('model_type', '?')}') does not set"
        )
    if name not in ARCHITECTURES:
        return (
            f"onnxruntime-genai's builder does not support {name} (model_type '{cfg.get('model_type', '?')}'); "
            f"it takes {', '.join(ARCHITECTURES)}; use the default exporter (auto)"
        )
    heads, hidden = cfg.get("num_attention_heads"), cfg.get("hidden_size")
    head = cfg.get("head_dim") or (hidden // heads if isinstance(hidden, int) and isinstance(heads, int) and heads else None)
    if isinstance(head, int) and head % 16:
        return (
            f"head size {head} (hidden_size / num_attention_heads): GroupQueryAttention on CPU, which the builder's "
            f"graph uses, needs a multiple of 16; use the default exporter (auto)"
        )
    return None


def save_folder(model, tokenizer, folder: Path) -> Path:
    """The model as an fp32 Hugging Face folder (config.json, model.safetensors, tokenizer files) the builder reads."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    if next(model.parameters()).dtype != torch.float32:
        model = model.float()
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    cfg = json.loads((folder / "config.json").read_text())
    problem = architecture_problem(cfg)
    if problem:
        raise ExportError(problem)
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise ExportError("exporter: genai copies the tokenizer into the graph's folder, and the run has none")
    return folder


def run_builder(src: Path, out: Path, precision: str = "fp32", options: dict | None = None) -> dict:
    """``python -m onnxruntime_genai.models.builder -i src -o out -p precision -e cpu``; returns the command and time."""
    if not genai_available():
        raise ExportError(GENAI_MISSING)
    extra = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in (options or {}).items()]
    cmd = [
        sys.executable,
        "-m",
        "onnxruntime_genai.models.builder",
        "-i",
        str(src),
        "-o",
        str(out),
        "-p",
        precision,
        "-e",
        "cpu",
        "-c",
        str(Path(out) / ".cache"),
    ] + (["--extra_options", *extra] if extra else [])
    t0 = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    shutil.rmtree(Path(out) / ".cache", ignore_errors=True)
    if r.returncode != 0:
        tail = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if ln.strip()][-1:] or [f"exit {r.returncode}"]
        raise ExportError(f"onnxruntime-genai's model builder failed: {tail[0]}")
    shown = ["python", "-m", "onnxruntime_genai.models.builder", "-i", "MODEL", "-o", "OUT", "-p", precision, "-e", "cpu"]
    return {
        "command": " ".join(shown + (["--extra_options", *extra] if extra else [])),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def pin_head_size(model_path: Path, head_size: int) -> int:
    """Write ``head_size`` into the symbolic last axis of the past / present tensors (graph I/O metadata only; the
    weights stay in their external file). Returns the count of axes pinned."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    pinned = 0
    for value in list(model.graph.input) + list(model.graph.output):
        if not value.name.startswith(("past_key_values.", "present.")):
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[3].dim_param:
            dims[3].Clear()
            dims[3].dim_value = head_size
            pinned += 1
    if pinned:
        onnx.save(model, str(model_path))
    return pinned


def op_counts(model_path: Path) -> tuple[dict[str, int], int | None]:
    """({op type: count}, the default domain's opset) of a graph."""
    import collections

    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return dict(collections.Counter(n.op_type for n in model.graph.node)), opset


def export_genai(model, tokenizer, out_path: Path, options: dict | None = None) -> dict:
    """Build ``out_path`` (its folder gets model.onnx, model.onnx.data, genai_config.json and the tokenizer files)
    from ``model`` with the builder in fp32. Returns the provenance fields."""
    out_path = Path(out_path)
    if out_path.name != "model.onnx":
        raise ExportError(f"{out_path}: the builder writes model.onnx (with model.onnx.data beside it)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    work = tmp_sibling(out_path.parent / "genai-build")
    try:
        save_folder(model, tokenizer, work / "hf")
        info = run_builder(work / "hf", work / "onnx", "fp32", options)
        built = work / "onnx"
        head = json.loads((built / "genai_config.json").read_text())["model"]["decoder"]["head_size"]
        pin_head_size(built / "model.onnx", int(head))
        for f in sorted(built.iterdir()):
            if f.is_file():
                os.replace(f, out_path.parent / f.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ops, opset = op_counts(out_path)
    if not ops.get("GroupQueryAttention"):
        raise ExportError(f"{out_path}: the builder's graph has no GroupQueryAttention node ({ops})")
    return {
        "exporter": "genai",
        "opset": opset,
        "builder": f"onnxruntime-genai {_version()}",
        **info,
        "with_past": True,
        "precision": "fp32",
        "op_counts": ops,
        "position_ids": False,
        "external_data": "model.onnx.data",
        "builder_options": dict(options or {}),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _version() -> str:
    try:
        import onnxruntime_genai

        return str(onnxruntime_genai.__version__)
    except ImportError:
        return "?"
