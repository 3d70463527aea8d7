"""One description of a model's ONNX interface: inputs (names, order, dtypes, dynamic axes), outputs, and for causal
LMs the with-past variant (``position_ids``, ``past_key_values.{i}.key/value`` in, ``present.{i}.key/value`` out).

Export, feeds for evaluation and parity, and synthetic benchmark inputs read the names and shapes from here, so the
graph's contract is written once. It reads a config (a transformers config object or the dict of config.json) and
needs neither torch nor onnxruntime.

Key / value shapes: ``(batch, kv_heads, past_sequence, head_dim)``, with ``kv_heads`` the grouped-query count
(``num_key_value_heads``; equal to the attention heads where a family has no GQA) and ``head_dim`` the config's own
(``head_dim``) or ``hidden / heads``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compressor.core.errors import ExportError

TOKEN_IDS = "input_ids"  # the input every signature starts with: the token ids an embedding table is read with
ENCODER_INPUTS = (TOKEN_IDS, "attention_mask", "token_type_ids")
DECODER_INPUTS = (TOKEN_IDS, "attention_mask", "position_ids")
BATCH, SEQ, PAST, TOTAL = "batch", "sequence", "past_sequence", "total_sequence"

# attribute spellings per concept, first match wins (GPT-2 and OPT use their own names)
_LAYERS = ("num_hidden_layers", "n_layer", "num_layers")
_HEADS = ("num_attention_heads", "n_head")
_HIDDEN = ("hidden_size", "n_embd", "d_model")


class MissingInput(ExportError):
    """A graph input that no tokenized batch provides."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: ``axes`` holds a symbolic name (dynamic) or an int (fixed) per dimension."""

    name: str
    dtype: str
    axes: tuple

    def dynamic(self) -> dict[int, str]:
        return {i: a for i, a in enumerate(self.axes) if isinstance(a, str)}


def config_value(config: Any, names: tuple[str, ...], default: Any = None) -> Any:
    """The first of ``names`` set on ``config`` (object or config.json dict)."""
    for n in names:
        v = config.get(n) if isinstance(config, dict) else getattr(config, n, None)
        if v is not None:
            return v
    return default


@dataclass(frozen=True)
class KVLayout:
    """Shape of the key / value cache, from the config."""

    layers: int
    kv_heads: int
    head_dim: int

    @classmethod
    def from_config(cls, config: Any) -> KVLayout:
        layers = config_value(config, _LAYERS)
        heads = config_value(config, _HEADS)
        hidden = config_value(config, _HIDDEN)
        if not layers or not heads or not hidden:
            raise ValueError("the config names no layer count, attention heads or hidden size")
        kv_heads = config_value(config, ("num_key_value_heads",), heads)
        head_dim = config_value(config, ("head_dim",)) or hidden // heads
        if heads % kv_heads:
            raise ValueError(f"{heads} attention heads do not divide into {kv_heads} key/value heads")
        return cls(int(layers), int(kv_heads), int(head_dim))


@dataclass(frozen=True)
class Signature:
    """The ONNX interface of one model for one task."""

    task: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    kv: KVLayout | None = None
    vocab_size: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def with_past(self) -> bool:
        return self.kv is not None

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def past_names(self) -> list[str]:
        return [t.name for t in self.inputs if t.name.startswith("past_key_values.")]

    def present_names(self) -> list[str]:
        return [t.name for t in self.outputs if t.name.startswith("present.")]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """For torch.onnx.export(dynamo=False): {name: {axis: symbol}} over inputs and outputs."""
        return {t.name: t.dynamic() for t in self.inputs + self.outputs if t.dynamic()}

    def empty_past(self, batch: int) -> dict[str, np.ndarray]:
        """Past key / values of length 0: the feed for a prefill through the cached graph."""
        assert self.kv is not None
        shape = (batch, self.kv.kv_heads, 0, self.kv.head_dim)
        return {n: np.zeros(shape, dtype=np.float32) for n in self.past_names()}

    def feed(self, batch: dict, past: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """ONNX inputs from a tokenized batch (``input_ids``, ``attention_mask`` over past + new tokens; optional
        ``position_ids``), filling what the tokenizer does not give: token types of 0, positions from the mask,
        an empty cache."""
        ids = np.asarray(batch["input_ids"], dtype=np.int64)
        mask = np.asarray(batch.get("attention_mask", np.ones_like(ids)), dtype=np.int64)
        out: dict[str, np.ndarray] = {}
        for name in self.input_names:
            if name == "input_ids":
                out[name] = ids
            elif name == "attention_mask":
                out[name] = mask
            elif name == "token_type_ids":
                out[name] = np.asarray(batch.get(name, np.zeros_like(ids)), dtype=np.int64)
            elif name == "position_ids":
                pos = batch.get("position_ids")
                out[name] = np.asarray(pos, dtype=np.int64) if pos is not None else position_ids(mask, ids.shape[1])
            elif name in batch:  # an input of the graph's own that the batch carries
                out[name] = np.asarray(batch[name], dtype=np.int64)
            elif not (self.with_past and name.startswith("past_key_values.")):
                raise MissingInput(f"the ONNX model expects an input '{name}' that the tokenizer does not produce")
        if self.with_past:
            out.update(past if past is not None else self.empty_past(ids.shape[0]))
        return out

    def dummy_inputs(self, batch: int = 2, seq: int = 4, past: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs to trace an export with: every dynamic axis a distinct size (> 1, so that no tracer treats it as
        a constant), and the first row left-padded, so that the traced graph keeps the masking path."""
        rng = np.random.default_rng(seed)
        total = seq + (past if self.with_past else 0)
        ids = rng.integers(3, max(self.vocab_size or 8, 8), size=(batch, seq), dtype=np.int64)
        mask = np.ones((batch, total), dtype=np.int64)
        mask[0, :1] = 0
        data = {"input_ids": ids, "attention_mask": mask}
        if not self.with_past:
            return self.feed(data)
        cache = {
            n: rng.standard_normal((batch, self.kv.kv_heads, past, self.kv.head_dim)).astype(np.float32)
            for n in self.past_names()
        }
        return self.feed(data, cache)

    def synthetic_inputs(self, batch: int, seq: int, past: int = 0, seed: int = 0, low: int = 3) -> dict[str, np.ndarray]:
        """Benchmark inputs: random tokens (ids from ``low``), a full mask, and (with past) a random cache of ``past``
        positions."""
        rng = np.random.default_rng(seed)
        ids = rng.integers(low, max(self.vocab_size or 8, 8, low + 1), size=(batch, seq), dtype=np.int64)
        data = {"input_ids": ids, "attention_mask": np.ones((batch, seq + (past if self.with_past else 0)), np.int64)}
        if not self.with_past:
            return self.feed(data)
        cache = {
            n: rng.standard_normal((batch, self.kv.kv_heads, past, self.kv.head_dim)).astype(np.float32)
            for n in self.past_names()
        }
        return self.feed(data, cache)


def position_ids(mask: np.ndarray, new_tokens: int | None = None) -> np.ndarray:
    """Positions under left padding: cumsum(mask) − 1, clipped at 0 (pads get 0), for the last ``new_tokens``."""
    mask = np.asarray(mask, dtype=np.int64)
    pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    return pos if new_tokens is None else pos[:, mask.shape[1] - new_tokens :]


def _num_labels(config: Any) -> int | None:
    """The classifier's label count: ``num_labels`` of a config object, else the size of config.json's id2label."""
    n = config_value(config, ("num_labels",))
    if n is None:
        n = len(config_value(config, ("id2label",), {})) or None
    return int(n) if n else None


def encoder_signature(config: Any = None, token_type_ids: bool = True, task: str = "sequence-classification") -> Signature:
    names = ENCODER_INPUTS if token_type_ids else ENCODER_INPUTS[:2]
    inputs = tuple(TensorSpec(n, "int64", (BATCH, SEQ)) for n in names)
    labels = _num_labels(config) if config is not None else None
    logits_axes = (BATCH, SEQ, "vocab") if task == "causal-lm" else (BATCH, labels or "labels")
    vocab = config_value(config, ("vocab_size",)) if config is not None else None
    return Signature(task, inputs, (TensorSpec("logits", "float32", logits_axes),), vocab_size=vocab)


def decoder_signature(config: Any, with_past: bool = True) -> Signature:
    """A causal LM's graph: ``input_ids``, ``attention_mask`` (batch, past + sequence), ``position_ids`` and, with
    past, ``past_key_values.{i}.key / .value``; outputs ``logits`` and ``present.{i}.key / .value``."""
    vocab = config_value(config, ("vocab_size",))
    logits = TensorSpec("logits", "float32", (BATCH, SEQ, int(vocab) if vocab else "vocab"))
    if not with_past:
        inputs = tuple(TensorSpec(n, "int64", (BATCH, SEQ)) for n in DECODER_INPUTS[:2])
        return Signature("causal-lm", inputs, (logits,), vocab_size=vocab)
    kv = KVLayout.from_config(config)
    inputs = [
        TensorSpec("input_ids", "int64", (BATCH, SEQ)),
        TensorSpec("attention_mask", "int64", (BATCH, TOTAL)),
        TensorSpec("position_ids", "int64", (BATCH, SEQ)),
    ]
    outputs = [logits]
    for i in range(kv.layers):
        for part in ("key", "value"):
            inputs.append(TensorSpec(f"past_key_values.{i}.{part}", "float32", (BATCH, kv.kv_heads, PAST, kv.head_dim)))
            outputs.append(TensorSpec(f"present.{i}.{part}", "float32", (BATCH, kv.kv_heads, TOTAL, kv.head_dim)))
    notes = []
    window = config_value(config, ("sliding_window",))
    if window and config_value(config, ("use_sliding_window",), True):
        notes.append(f"sliding window {window}: the cache is exported whole, exact up to {window} positions")
    return Signature("causal-lm", tuple(inputs), tuple(outputs), kv=kv, vocab_size=vocab, notes=tuple(notes))


def signature_for(config: Any, task: str, with_past: bool = False, token_type_ids: bool = True) -> Signature:
    """The signature for ``task``: causal LMs get the decoder one (with or without past), others the encoder's."""
    if task == "causal-lm":
        return decoder_signature(config, with_past)
    return encoder_signature(config, token_type_ids, task)


def session_signature(session_inputs: list, config: Any = None) -> Signature:
    """The signature of a graph from its ONNX Runtime session inputs: a with-past decoder's when it is one
    (:func:`graph_signature`), else the graph's own inputs in their order (token ids, masks, token types)."""
    sig = graph_signature(session_inputs, config)
    if sig is not None:
        return sig
    vocab = config_value(config, ("vocab_size",)) if config is not None else None
    inputs = tuple(TensorSpec(i.name, "int64", (BATCH, SEQ)) for i in session_inputs)
    return Signature("graph", inputs, (TensorSpec("logits", "float32", (BATCH, "labels")),), vocab_size=vocab)


def session_feed(session_inputs: list, batch: dict) -> dict[str, np.ndarray]:
    """ONNX feeds by input name for a graph (never by position: BERT's mask and segment ids would swap)."""
    return session_signature(session_inputs).feed(batch)


def graph_signature(session_inputs: list, config: Any = None) -> Signature | None:
    """Recognise a with-past graph from an ONNX Runtime session's inputs (name, shape); None for others. A graph
    without ``position_ids`` (onnxruntime-genai's builder: positions from the mask inside GroupQueryAttention) is
    fed without them."""
    names = [i.name for i in session_inputs]
    past = [i for i in session_inputs if i.name.startswith("past_key_values.")]
    if not past or "input_ids" not in names:
        return None
    shape = past[0].shape
    kv_heads, head_dim = shape[1], shape[3]
    if not isinstance(kv_heads, int) or not isinstance(head_dim, int):
        return None
    kv = KVLayout(layers=len(past) // 2, kv_heads=kv_heads, head_dim=head_dim)
    specs = tuple(
        TensorSpec(i.name, "float32" if i.name in {p.name for p in past} else "int64", tuple(i.shape)) for i in session_inputs
    )
    vocab = config_value(config, ("vocab_size",)) if config is not None else None
    outputs = (TensorSpec("logits", "float32", (BATCH, SEQ, vocab or "vocab")),) + tuple(
        TensorSpec(p.name.replace("past_key_values.", "present.", 1), "float32", (BATCH, kv_heads, TOTAL, head_dim)) for p in past
    )
    return Signature("causal-lm", specs, outputs, kv=kv, vocab_size=vocab)
