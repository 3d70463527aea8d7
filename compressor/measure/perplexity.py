"""Perplexity by one procedure for every artifact: PyTorch, an ONNX graph without cache, the cached graph fed whole,
and the cached graph fed in chunks through its key / value cache.

The procedure (the same as ``compressor eval`` / ``run`` on a causal LM when ``stride`` equals the window):

* the text's token ids are cut into windows of exactly ``length`` tokens starting at 0, ``stride``, 2·``stride``, …
  (tokens after the last full window are not scored);
* the first window scores its tokens 1 … length−1; each later window scores only its last ``stride`` tokens (the ones
  no earlier window scored), so every scored token has at least ``length − stride`` tokens of context, and no token is
  scored twice; with ``stride == length`` the windows are disjoint blocks and each scores length−1 tokens;
* perplexity = exp(sum of the scored tokens' negative log-likelihoods / their number): token-weighted, not a mean of
  per-window perplexities.

``window_nll`` is the only place the NLL of a window is computed; ``MetricAccumulator`` (evaluate.py) uses it too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from compressor.core.errors import DataError


@dataclass(frozen=True)
class Windows:
    starts: list[int]
    length: int
    stride: int

    def score_from(self, i: int) -> int:
        """First position of window ``i`` whose token is scored."""
        return 1 if i == 0 else self.length - self.stride

    @property
    def scored_tokens(self) -> int:
        return (self.length - 1) + (len(self.starts) - 1) * self.stride


def make_windows(n_tokens: int, length: int, stride: int | None = None, what: str = "the text") -> Windows:
    stride = length if stride is None else stride
    if not 0 < stride <= length:
        raise DataError(f"stride {stride} must be between 1 and the window length {length}")
    if n_tokens < length:
        raise DataError(f"{what} holds {n_tokens} tokens, fewer than one window of {length}")
    return Windows(list(range(0, n_tokens - length + 1, stride)), length, stride)


def window_nll(logits: np.ndarray, ids: np.ndarray, score_from: int | np.ndarray = 1) -> tuple[np.ndarray, np.ndarray]:
    """(sum of NLL, tokens scored) per row: logits (rows, L, V) at position p predict ids[:, p+1]; targets at positions
    ≥ ``score_from`` (per row or one for all) and ≠ −100 count. NLL = logsumexp(logits) − logit of the target, per
    token in float32 (no (rows, L, V) log-softmax is materialised), summed in float64."""
    import torch

    lg = torch.as_tensor(np.asarray(logits), dtype=torch.float32)[:, :-1]
    tgt = torch.as_tensor(np.asarray(ids, dtype=np.int64))[:, 1:]
    keep = tgt != -100
    nll = (torch.logsumexp(lg, dim=-1) - lg.gather(-1, tgt.clamp_min(0)[..., None])[..., 0]).double()
    pos = torch.arange(1, tgt.shape[1] + 1)[None, :]
    start = torch.as_tensor(np.broadcast_to(np.asarray(score_from), (tgt.shape[0],)).copy())[:, None]
    keep &= pos >= start
    return (nll * keep).sum(1).numpy(), keep.sum(1).numpy()


def perplexity(
    logits_fn: Callable[[np.ndarray], np.ndarray],
    ids: np.ndarray,
    length: int,
    stride: int | None = None,
    batch_size: int = 4,
    what: str = "the text",
) -> dict:
    """Perplexity of the model behind ``logits_fn`` ((rows, L) ids → (rows, L, V) logits) over ``ids`` (1-D)."""
    ids = np.asarray(ids, dtype=np.int64)
    win = make_windows(len(ids), length, stride, what)
    nll_rows, tok_rows = [], []
    for b in range(0, len(win.starts), batch_size):
        idx = list(range(b, min(b + batch_size, len(win.starts))))
        batch = np.stack([ids[win.starts[i] : win.starts[i] + length] for i in idx])
        nll, tok = window_nll(logits_fn(batch), batch, np.array([win.score_from(i) for i in idx]))
        nll_rows.append(nll)
        tok_rows.append(tok)
    nll, tok = np.concatenate(nll_rows), np.concatenate(tok_rows)
    loss = float(nll.sum() / tok.sum())
    return {
        "perplexity": math.exp(min(loss, 700)),
        "loss": loss,
        "tokens": int(tok.sum()),
        "windows": len(win.starts),
        "window": length,
        "stride": win.stride,
        "procedure": describe(length, win.stride),
    }


def describe(length: int, stride: int) -> str:
    how = "disjoint windows" if stride == length else f"windows every {stride} tokens, each scoring its last {stride}"
    return f"token-weighted NLL over {length}-token {how}"


# ------------------------------------------------------------------ logits functions, one per kind of artifact
def torch_fn(model, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    import torch

    model.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(input_ids=torch.as_tensor(batch, device=device)).logits.float().cpu().numpy()

    return run


def onnx_fn(session, chunk: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """An ONNX Runtime session's logits. A cached graph is fed the window whole (past of length 0) or, with
    ``chunk``, ``chunk`` tokens at a time through its own presents (the decode path)."""
    from compressor.arch.signature import graph_signature
    from compressor.measure.feeds import onnx_feed

    sig = graph_signature(session.get_inputs())
    names = [o.name for o in session.get_outputs()]

    def run(batch: np.ndarray) -> np.ndarray:
        if sig is None or not chunk:
            return session.run(None, onnx_feed(session, {"input_ids": batch, "attention_mask": np.ones_like(batch)}))[0]
        parts, past = [], None
        for s in range(0, batch.shape[1], chunk):
            piece = batch[:, s : s + chunk]
            mask = np.ones((batch.shape[0], s + piece.shape[1]), dtype=np.int64)
            outs = session.run(None, sig.feed({"input_ids": piece, "attention_mask": mask}, past))
            parts.append(outs[0])
            past = {n.replace("present.", "past_key_values.", 1): v for n, v in zip(names, outs) if n.startswith("present.")}
        return np.concatenate(parts, axis=1)

    return run
