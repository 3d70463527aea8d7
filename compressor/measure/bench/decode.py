"""Generation speed: prefill latency at a stated prompt length and decode tokens/s, for a PyTorch causal LM with
its KV cache and for the cached ONNX graph (compressor/onnx/decoder.py).

One measurement = a prefill of ``prompt`` random tokens (timed alone) followed by ``new_tokens`` − 1 greedy decode
steps of one token each (timed together). ``repeats`` measurements after ``warmup`` untimed ones; the medians are
reported. Tokens/s counts every row of the batch.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from compressor.arch.signature import decoder_signature, graph_signature, position_ids


def _summary(prefill: list[float], decode: list[float], batch: int, prompt: int, new_tokens: int, runtime: str) -> dict:
    steps = max(new_tokens - 1, 1)
    dec = statistics.median(decode)
    return {
        "runtime": runtime,
        "batch": batch,
        "prompt": prompt,
        "new_tokens": new_tokens,
        "repeats": len(prefill),
        "prefill_ms": round(statistics.median(prefill) * 1e3, 3),
        "decode_ms_per_token": round(dec / steps * 1e3, 3),
        "decode_tokens_per_s": round(batch * steps / dec, 2) if dec > 0 else float("inf"),
    }


def _prompt(vocab: int, batch: int, prompt: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, max(vocab, 8), size=(batch, prompt), dtype=np.int64)


def decode_torch(
    model,
    prompt: int = 128,
    new_tokens: int = 64,
    batch: int = 1,
    warmup: int = 1,
    repeats: int = 3,
    threads: int | None = None,
    seed: int = 0,
) -> dict:
    """PyTorch with its own KV cache (the model's DynamicCache), greedy, on CPU."""
    import torch

    from compressor.onnx.decoder import _cache_kwarg, _present

    if threads:
        torch.set_num_threads(threads)
    model = model.cpu().eval()
    kwarg = _cache_kwarg(model)
    ids = torch.as_tensor(_prompt(model.config.vocab_size, batch, prompt, seed))
    pre, dec = [], []
    for r in range(warmup + repeats):
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = model(input_ids=ids, attention_mask=mask, use_cache=True, return_dict=True)
            t1 = time.perf_counter()
            cache = _present(out)
            for _ in range(new_tokens - 1):
                nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
                pos = (mask.shape[1] - 1) * torch.ones_like(nxt)
                out = model(
                    input_ids=nxt, attention_mask=mask, position_ids=pos, use_cache=True, return_dict=True, **{kwarg: cache}
                )
                cache = _present(out)
            t2 = time.perf_counter()
        if r >= warmup:
            pre.append(t1 - t0)
            dec.append(t2 - t1)
    return _summary(pre, dec, batch, prompt, new_tokens, "torch")


def decode_onnx(
    path: Path,
    prompt: int = 128,
    new_tokens: int = 64,
    batch: int = 1,
    warmup: int = 1,
    repeats: int = 3,
    threads: int | None = None,
    vocab: int | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """The cached graph in ONNX Runtime: prefill with an empty past, then one token per step fed the presents."""
    from compressor.core.errors import ExportError
    from compressor.onnx.session import make_session

    session = make_session(path, threads=threads, device=device)
    sig = graph_signature(session.get_inputs())
    if sig is None:
        raise ExportError(f"{path}: not a graph with a key / value cache (export a causal LM with export.with_past)")
    ids = _prompt(vocab or 100, batch, prompt, seed)
    names = [o.name for o in session.get_outputs()]  # by name: the builder's graph lists all keys before the values
    pre, dec = [], []
    for r in range(warmup + repeats):
        mask = np.ones_like(ids)
        t0 = time.perf_counter()
        outs = session.run(None, sig.feed({"input_ids": ids, "attention_mask": mask}))
        t1 = time.perf_counter()
        for _ in range(new_tokens - 1):
            nxt = outs[0][:, -1].argmax(-1)[:, None].astype(np.int64)
            mask = np.concatenate([mask, np.ones_like(nxt)], axis=1)
            past = {n.replace("present.", "past_key_values.", 1): v for n, v in zip(names, outs) if n.startswith("present.")}
            outs = session.run(
                None, sig.feed({"input_ids": nxt, "attention_mask": mask, "position_ids": position_ids(mask, 1)}, past)
            )
        t2 = time.perf_counter()
        if r >= warmup:
            pre.append(t1 - t0)
            dec.append(t2 - t1)
    del session
    return _summary(pre, dec, batch, prompt, new_tokens, "onnxruntime")


def kv_cache_bytes(config, batch: int, tokens: int) -> int:
    """fp32 bytes of the key / value cache for ``batch`` rows of ``tokens`` positions."""
    kv = decoder_signature(config).kv
    return 2 * kv.layers * batch * kv.kv_heads * tokens * kv.head_dim * 4


def generation_rows(
    plan: list[tuple],
    prompt: int,
    new_tokens: int,
    batch_sizes: list[int],
    warmup: int,
    repeats: int,
    threads: int | None,
    device: str = "cpu",
) -> list[dict]:
    """``compressor bench --prompt N --new-tokens M``: one row per artifact and batch size. ``plan`` holds
    (path, model folder or None, config or None) as the bench command checked them. Every artifact is checked
    (a causal LM, room for prompt + new tokens) before any is measured."""
    import gc

    from compressor.core.errors import CompressorError

    for path, _, config in plan:
        limit = (
            None if config is None else (getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None))
        )
        if limit and prompt + new_tokens > limit:
            raise CompressorError(
                f"{path}: --prompt {prompt} + --new-tokens {new_tokens} is longer than the model's {limit} positions"
            )
        if (
            path.suffix.lower() != ".onnx"
            and config is not None
            and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in (config.architectures or []))
        ):
            raise CompressorError(
                f"{path}: --prompt / --new-tokens time generation, which needs a causal LM "
                f"(this model is {', '.join(config.architectures or ['of unknown architecture'])})"
            )
    rows: list[dict] = []
    for path, home, config in plan:
        for b in batch_sizes:
            args = dict(prompt=prompt, new_tokens=new_tokens, batch=b, warmup=warmup, repeats=repeats, threads=threads)
            if path.suffix.lower() == ".onnx":
                vocab = getattr(config, "vocab_size", None) if config is not None else None
                got = decode_onnx(path, vocab=vocab, device=device, **args)
            else:
                from compressor.models import load_model

                model = load_model(home, "causal-lm")
                got = decode_torch(model, **args)
                del model
                gc.collect()
            rows.append({"artifact": str(path), "device": device, "threads": threads, **got})
    return rows
