"""Metrics computed the same way for a PyTorch model and for an ONNX Runtime session (offline)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np


class MetricAccumulator:
    """Accuracy and macro-F1 for classifiers, perplexity for causal LMs."""

    def __init__(self, task: str):
        self.task = task
        self.preds: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.nll = 0.0
        self.tokens = 0

    def add(self, logits: np.ndarray, batch: dict[str, Any]) -> None:
        import torch

        if self.task == "sequence-classification":
            self.preds.append(np.asarray(logits).argmax(-1))
            self.labels.append(np.asarray(batch["labels"]))
            return
        logits_t = torch.as_tensor(np.asarray(logits), dtype=torch.float32)
        labels = torch.as_tensor(np.asarray(batch["labels"]))
        shift_logits = logits_t[:, :-1].reshape(-1, logits_t.shape[-1])
        shift_labels = labels[:, 1:].reshape(-1)
        nll = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
        self.nll += float(nll)
        self.tokens += int((shift_labels != -100).sum())

    def result(self) -> dict[str, float]:
        if self.task == "sequence-classification":
            from sklearn.metrics import accuracy_score, f1_score

            y, p = np.concatenate(self.labels), np.concatenate(self.preds)
            return {"accuracy": float(accuracy_score(y, p)), "f1_macro": float(f1_score(y, p, average="macro")), "n": int(len(y))}
        loss = self.nll / max(self.tokens, 1)
        return {"perplexity": float(math.exp(min(loss, 700))), "loss": float(loss), "tokens": int(self.tokens)}


def torch_logits(model, batch: dict, device: str = "cpu") -> np.ndarray:
    import torch

    inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
    with torch.inference_mode():
        out = model(**inputs)
    return out.logits.float().cpu().numpy()


def evaluate_torch(model, loader: Iterable[dict], task: str, device: str = "cpu") -> dict[str, float]:
    was_training = model.training
    model.eval()
    acc = MetricAccumulator(task)
    for batch in loader:
        acc.add(torch_logits(model, batch, device), batch)
    model.train(was_training)
    return acc.result()


def onnx_feed(session, batch: dict) -> dict[str, np.ndarray]:
    """Feed ONNX inputs by name (never by position: BERT's mask and segment ids would swap)."""
    feed = {}
    for inp in session.get_inputs():
        if inp.name in batch:
            feed[inp.name] = np.asarray(batch[inp.name], dtype=np.int64)
        elif inp.name == "token_type_ids":
            feed[inp.name] = np.zeros_like(np.asarray(batch["input_ids"]), dtype=np.int64)
        else:
            from compressor.errors import ExportError

            raise ExportError(f"ONNX model expects an input '{inp.name}' that the tokenizer does not produce")
    return feed


def onnx_logits(session, batch: dict) -> np.ndarray:
    return session.run(None, onnx_feed(session, batch))[0]


def evaluate_onnx(path, loader: Iterable[dict], task: str, threads: int | None = None) -> dict[str, float]:
    from compressor.export.session import make_session

    session = make_session(path, threads=threads)
    acc = MetricAccumulator(task)
    for batch in loader:
        acc.add(onnx_logits(session, batch), batch)
    del session
    return acc.result()
