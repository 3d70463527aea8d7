"""``compressor export``: a model directory to ONNX files in a folder, each checked against PyTorch on tokenized sample
sentences and given a provenance record; optionally a dynamic INT8 graph; the tokenizer and config beside them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PARITY_SAMPLES, PARITY_BATCH = 64, 16  # the sample sentences the graphs are checked on (see onnx/samples.py)
PARITY_MAX_LENGTH = 128
NAMES = ("model.onnx", "model.onnx.data", "model.opt.onnx", "model.int8.onnx")


@dataclass
class FolderExport:
    """What :func:`export_folder` wrote: the records of the fp32 graph, the fused one and the INT8 one."""

    task: str
    model_type: str
    fp32: Path
    record: dict  # the fp32 graph's provenance (exporter, opset, inputs, parity)
    opt: dict | None  # the fused graph: path, fusions, parity, cls_only_last_layer
    int8: Path | None = None
    int8_parity: dict | None = None
    best: Path | None = None  # the graph INT8 was made from


def _prepare(model_dir: Path, out: Path, force: bool) -> None:
    from compressor.core.errors import RunDirError
    from compressor.core.rundir import ensure_replaceable

    if out.resolve() != model_dir.resolve():  # ONNX files next to the model's own files: the user asked for that
        ensure_replaceable(out, NAMES + tuple(f"{n}.json" for n in NAMES), "an export folder", "choose an empty or new -o folder")
    existing = [out / n for n in NAMES if (out / n).exists()]
    if existing and not force:
        raise RunDirError(f"{existing[0]}: already exists; use --force to replace it")


def export_folder(model_dir: Path, out: Path, cfg, task: str = "auto", int8: bool = False, force: bool = False) -> FolderExport:
    """Export ``model_dir`` (a Hugging Face model directory) into ``out`` as ``cfg`` (an ExportStage) says."""
    from compressor.models import load_config, load_model, load_tokenizer, model_folder, save_tokenizer, task_of
    from compressor.onnx.stage import export_fp32

    model_dir = model_folder(model_dir)
    _prepare(model_dir, out, force)
    config = load_config(model_dir)
    task = task_of(config, model_dir, task)
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, task)
    out.mkdir(parents=True, exist_ok=True)
    for n in NAMES:
        for f in (out / n, out / f"{n}.json"):
            f.unlink(missing_ok=True)
    batches = parity_batches(tokenizer, task, model.config)
    source = {
        "source": str(model_dir.resolve()),
        "task": task,
        "parity_inputs": f"{PARITY_SAMPLES} sample sentences in padded batches of {PARITY_BATCH}",
    }
    record, opt = export_fp32(model, batches, out / "model.onnx", cfg, "onnx", source)
    done = FolderExport(task, str(getattr(model.config, "model_type", "?")), out / "model.onnx", record, opt)
    done.best = opt["path"] if opt is not None else done.fp32
    if int8:
        done.int8, done.int8_parity = out / "model.int8.onnx", _int8(model, done.best, out / "model.int8.onnx", batches, source)
    if out.resolve() != model_dir.resolve():  # the folder stands on its own: eval / bench find the tokenizer there
        save_tokenizer(tokenizer, out)
        model.config.save_pretrained(out)
    return done


def _int8(model, best: Path, q: Path, batches: list[dict], source: dict) -> dict:
    """Dynamic INT8 of ``best`` into ``q``, finished like every INT8 artifact of a run (compressor/quantize/scheme.py:
    LayerNorm rewrite, parity against PyTorch on ``batches``, provenance); returns the parity check."""
    from compressor.quantize.ptq import quantize_dynamic_file
    from compressor.quantize.scheme import QuantizedGraph, finish_file
    from compressor.recipe.schema import DynamicQuant

    qcfg = DynamicQuant()
    quantize_dynamic_file(best, q, qcfg)
    details = {"source_graph": best.name, "scheme": "dynamic", "weight_type": "int8", "per_channel": qcfg.per_channel}
    return finish_file(QuantizedGraph(q, "int8", "INT8", details, layernorm=qcfg.layernorm), model, batches, extra=source)[
        "parity"
    ]


def parity_batches(tokenizer, task: str, config) -> list[dict]:
    """The sample sentences, tokenized in batches of PARITY_BATCH (padded, the longest truncated)."""
    from compressor.arch.signature import signature_for
    from compressor.onnx.samples import sample_texts

    names = signature_for(config, task).input_names
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or PARITY_MAX_LENGTH
    texts = sample_texts(PARITY_SAMPLES)
    batches = []
    for i in range(0, len(texts), PARITY_BATCH):
        enc = tokenizer(
            texts[i : i + PARITY_BATCH],
            padding=True,
            truncation=True,
            max_length=min(PARITY_MAX_LENGTH, limit),
            return_tensors="pt",
        )
        # the signature's inputs only: an LM's carry ids and mask (GPT-2 would embed token_type_ids with its word table)
        batches.append({k: v for k, v in enc.items() if k in names})
    return batches
