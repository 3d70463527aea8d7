"""``compressor eval``: a model directory or an ONNX file evaluated on a data file, with the code ``compressor run``
uses (the same data reading, tokenization, metrics and health checks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FileEval:
    """What :func:`evaluate_file` measured, and what to tell the user about it."""

    task: str
    rows: int  # examples (classifier) or blocks (causal LM)
    metrics: dict
    facts: list[str]
    warnings: list[str]
    data_rows: dict | None = None  # the data summary of a classification file
    notes: list[str] = field(default_factory=list)  # said before the metrics (e.g. unnamed labels)


@dataclass
class EvalOptions:
    """The data file and how to read it (the command's options; each is named in errors by its option)."""

    data: str
    text: str = "text"
    label: str = "label"
    labels: str | None = None
    task: str = "auto"
    tokenizer: Path | None = None
    max_length: int = 128
    batch_size: int = 64
    limit: int | None = None
    data_format: str = "auto"
    encoding: str = "utf-8"
    threads: int | None = None
    quoting: str = "auto"
    dedupe: bool = True
    conflicts: str = "keep-first"
    sep: str | None = None
    header: bool = True
    columns: str | None = None

    def layout(self) -> dict:
        """How to read the file, as measure.eval_file.data_config takes it."""
        return dict(
            format=self.data_format,
            encoding=self.encoding,
            quoting=self.quoting,
            sep=self.sep,
            header=self.header,
            columns=self.columns,
            dedupe=self.dedupe,
            conflicts=self.conflicts,
            max_length=self.max_length,
            limit=self.limit,
        )


def _task(artifact: Path, home: Path, config, task: str) -> str:
    from compressor.models import task_of

    if config is not None:
        return task_of(config, home, task)
    if task == "auto":  # an ONNX file without config.json: a classifier's logits are (batch, labels)
        from compressor.onnx.session import make_session

        return "causal-lm" if len(make_session(artifact).get_outputs()[0].shape) == 3 else "sequence-classification"
    return task


def evaluate_file(artifact: Path, o: EvalOptions) -> FileEval:
    """Evaluate ``artifact`` (a model directory or an .onnx file) on the data file ``o.data``."""
    from compressor import data as D
    from compressor.core.errors import ModelError
    from compressor.measure import eval_file as E
    from compressor.measure.evaluate import evaluate_onnx, evaluate_torch
    from compressor.models import load_config, load_model, load_tokenizer, model_folder, resolve
    from compressor.onnx.files import companion, onnx_file

    is_onnx = artifact.suffix.lower() == ".onnx"
    if is_onnx:
        onnx_file(artifact)
    # a path (from here), pkg://<package>/<path>, or a Hub dataset (hf:NAME)
    data_path = o.data if o.data.startswith("hf:") else str(resolve(o.data, None, "--data"))
    home = companion(artifact, o.tokenizer) if is_onnx else model_folder(artifact, onnx_too=True)
    if home is None:
        raise ModelError(f"{artifact}: no tokenizer next to it (looked in {artifact.parent} and ../model); pass --tokenizer DIR")
    config = load_config(home) if (home / "config.json").is_file() else None
    task = _task(artifact, home, config, o.task)
    tok = load_tokenizer(home)
    classify, notes = task == "sequence-classification", []
    cfg = E.data_config(data_path, text=o.text, label=o.label if classify else None, **o.layout())  # options first
    if classify:
        names, warning = E.label_names(config, cfg, o.labels)
        notes += [warning] if warning else []
        cfg = E.data_config(data_path, text=o.text, label=o.label, names=names, **o.layout())
    ds, n_labels, blocks = None, None, None
    if classify:
        num_labels = getattr(config, "num_labels", None) if config is not None else None
        encoded, ds = E.load_classification_file(cfg, num_labels, tok, o.max_length)
        n_labels = len(ds.label_names or []) or None
    else:
        blocks = D.load_causal_lm(cfg, None, tok, seed=0)["train"]
        encoded = D.encode_blocks(blocks)
    loader = D.make_loader(encoded, tok, o.batch_size, shuffle=False, task=task)
    model: Any = None
    if is_onnx:
        metrics = evaluate_onnx(
            artifact, loader, task, o.threads, detail=True, progress=f"eval {artifact.name}", intervals=True, num_labels=n_labels
        )
    else:
        model = load_model(home, task)
        metrics = evaluate_torch(model, loader, task, detail=True, progress=f"eval {artifact.name}", intervals=True)
    metrics.pop("_rows", None)
    if not classify:
        E.lm_extras(metrics, blocks, getattr(config, "vocab_size", None), model, tok)
    facts, warnings = E.health_lines(metrics, task, ds.label_names if ds else None)
    return FileEval(task, len(encoded), metrics, facts, warnings, E.data_summary(ds) if ds else None, notes)
