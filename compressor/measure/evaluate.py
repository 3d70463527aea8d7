"""Metrics computed the same way for a PyTorch model and for an ONNX Runtime session (offline)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from compressor.measure.feeds import onnx_feed


class MetricAccumulator:
    """Accuracy and macro-F1 for classifiers, perplexity for causal LMs.

    ``detail``: per-class recall and the confusion matrix too. With ``intervals`` the result also holds 95 %
    intervals (``accuracy_ci``: Wilson; ``f1_macro_ci`` and ``perplexity_ci``: bootstrap over rows / windows) and,
    under ``_rows``, the per-row outcomes that a paired test between two artifacts needs (correctness per row, or
    nll and token count per window); callers drop ``_rows`` before writing JSON."""

    def __init__(self, task: str, detail: bool = False, intervals: bool = False):
        self.task, self.detail, self.intervals = task, detail, intervals
        self.num_classes = 0
        self.preds: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.row_nll: list[np.ndarray] = []
        self.row_tokens: list[np.ndarray] = []

    def add(self, logits: np.ndarray, batch: dict[str, Any]) -> None:
        if self.task == "sequence-classification":
            self.num_classes = max(self.num_classes, int(np.asarray(logits).shape[-1]))
            self.preds.append(np.asarray(logits).argmax(-1))
            self.labels.append(np.asarray(batch["labels"]))
            return
        from compressor.measure.perplexity import window_nll  # the one NLL of a window (see perplexity.py)

        nll, tokens = window_nll(logits, batch["labels"])
        self.row_nll.append(nll)
        self.row_tokens.append(tokens)

    def result(self) -> dict[str, Any]:
        from compressor.core.stats import f1_interval, perplexity_interval, wilson

        if self.task == "sequence-classification":
            from sklearn.metrics import accuracy_score, f1_score

            from compressor.core.health import class_stats

            y, p = np.concatenate(self.labels), np.concatenate(self.preds)
            out: dict[str, Any] = {
                "accuracy": float(accuracy_score(y, p)),
                "f1_macro": float(f1_score(y, p, average="macro")),
                "n": int(len(y)),
                **class_stats(y, p, self.num_classes, self.detail),
            }
            if self.intervals:
                out["accuracy_ci"] = list(wilson(int((y == p).sum()), len(y)))
                out["f1_macro_ci"] = list(f1_interval(y, p))
                out["_rows"] = {"correct": y == p}
            return out
        nll = np.concatenate(self.row_nll) if self.row_nll else np.zeros(0)
        tok = np.concatenate(self.row_tokens) if self.row_tokens else np.zeros(0, dtype=int)
        tokens = int(tok.sum())
        loss = float(nll.sum()) / max(tokens, 1)
        out = {"perplexity": float(math.exp(min(loss, 700))), "loss": float(loss), "tokens": tokens}
        if self.intervals:
            out["perplexity_ci"] = list(perplexity_interval(nll, tok))
            out["windows"] = int(len(nll))
            out["_rows"] = {"nll": nll, "tokens": tok}
        return out


def torch_logits(model, batch: dict, device: str = "cpu") -> np.ndarray:
    import torch

    inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    with torch.inference_mode():
        out = model(**inputs)
    return out.logits.float().cpu().numpy()


def _batches(loader, progress: str | None, task: str = "sequence-classification"):
    """The loader's batches, with progress lines (rows done, time left) when ``progress`` names the step; a name
    starting with "~" is quiet (lines only when the step is slow: e.g. the dev evaluations during training)."""
    if progress is None:
        yield from loader
        return
    from compressor.core.progress import Progress

    total = len(loader.dataset) if hasattr(loader, "dataset") else 0
    bar = Progress(progress.lstrip("~"), total, "blocks" if task == "causal-lm" else "rows", quiet=progress.startswith("~"))
    for batch in loader:
        yield batch
        bar.update(len(batch["input_ids"]))
    bar.finish()


def evaluate_torch(
    model,
    loader: Iterable[dict],
    task: str,
    device: str = "cpu",
    detail: bool = False,
    progress: str | None = None,
    intervals: bool = False,
) -> dict[str, Any]:
    """Metrics of a PyTorch model; ``detail``: per-class recall and confusion matrix too; ``progress``: the step's
    name for progress lines; ``intervals``: 95 % intervals and per-row outcomes (see ``MetricAccumulator``)."""
    was_training = model.training
    model.eval()
    acc = MetricAccumulator(task, detail, intervals)
    for batch in _batches(loader, progress, task):
        acc.add(torch_logits(model, batch, device), batch)
    model.train(was_training)
    return acc.result()


def onnx_logits(session, batch: dict) -> np.ndarray:
    return session.run(None, onnx_feed(session, batch))[0]


def evaluate_onnx(
    path,
    loader: Iterable[dict],
    task: str,
    threads: int | None = None,
    detail: bool = False,
    progress: str | None = None,
    intervals: bool = False,
    num_labels: int | None = None,
) -> dict[str, Any]:
    """Metrics of an ONNX graph; a graph whose first output cannot be this task's logits is an ExportError
    (a classifier's (batch, num_labels) floats, a causal LM's (batch, seq, vocab) floats)."""
    from compressor.onnx.session import make_session

    session = make_session(path, threads=threads)
    check_output_spec(session, path, task, num_labels)
    acc = MetricAccumulator(task, detail, intervals)
    for batch in _batches(loader, progress, task):
        logits = onnx_logits(session, batch)
        check_logits(logits, path, task, num_labels, len(batch["input_ids"]))
        acc.add(logits, batch)
    del session
    return acc.result()


def greedy_check(
    model, blocks: list, device: str = "cpu", prompts: int = 4, prompt_len: int = 16, new_tokens: int = 32, tokenizer=None
) -> dict:
    """Greedy continuations of the first tokens of a few evaluation blocks: is the output degenerate (repetitive)?"""
    import torch

    from compressor.core.health import DISTINCT_MIN, repetition

    was_training = model.training
    model.eval()
    ratios, sample = [], ""
    for ids in list(blocks)[:prompts]:
        x = torch.as_tensor(np.asarray(ids[:prompt_len], dtype=np.int64), device=device)[None]
        with torch.inference_mode():
            for _ in range(new_tokens):  # no KV cache: a few dozen short steps, and no generation config needed
                nxt = model(input_ids=x).logits[:, -1].argmax(-1, keepdim=True)
                x = torch.cat([x, nxt], dim=1)
        out = x[0, prompt_len:].tolist()
        ratios.append(repetition(out))
        if not sample and tokenizer is not None:
            sample = tokenizer.decode(out)[:120]
    model.train(was_training)
    distinct = float(np.mean(ratios)) if ratios else 1.0
    return {
        "distinct_bigrams": distinct,
        "prompts": len(ratios),
        "new_tokens": new_tokens,
        "degenerate": bool(ratios) and distinct < DISTINCT_MIN,
        "sample": sample,
    }


_FLOATS = ("tensor(float)", "tensor(float16)", "tensor(double)", "tensor(bfloat16)")


def _expected(task: str, num_labels: int | None) -> str:
    return (
        f"(batch, {num_labels or 'labels'}) float logits"
        if task == "sequence-classification"
        else "(batch, sequence, vocabulary) float logits"
    )


def check_output_spec(session, path, task: str, num_labels: int | None) -> None:
    """What the graph declares about its first output, checked before any batch runs."""
    from compressor.core.errors import ExportError

    out = session.get_outputs()[0]
    rank = 2 if task == "sequence-classification" else 3
    shape = list(out.shape) if out.shape is not None else None
    problem = None
    if out.type not in _FLOATS:
        problem = f"its output '{out.name}' is {out.type}"
    elif shape is not None and len(shape) != rank:
        problem = f"its output '{out.name}' has shape {shape}"
    elif rank == 2 and num_labels and isinstance(shape[-1], int) and shape[-1] != num_labels:
        problem = f"its output '{out.name}' has {shape[-1]} classes but the data has {num_labels} labels"
    if problem:
        raise ExportError(f"{path}: not a {task} graph for this data: {problem}; expected {_expected(task, num_labels)}")


def check_logits(logits: np.ndarray, path, task: str, num_labels: int | None, batch: int) -> None:
    """The logits a batch produced (a dynamic output shape is only known now)."""
    from compressor.core.errors import ExportError

    logits = np.asarray(logits)
    rank = 2 if task == "sequence-classification" else 3
    bad = logits.ndim != rank or logits.shape[0] != batch or not np.issubdtype(logits.dtype, np.floating)
    if not bad and rank == 2 and num_labels and logits.shape[1] != num_labels:
        bad = True
    if bad:
        raise ExportError(
            f"{path}: not a {task} graph for this data: a batch of {batch} gave {logits.dtype} of shape "
            f"{list(logits.shape)}; expected {_expected(task, num_labels)}"
        )
