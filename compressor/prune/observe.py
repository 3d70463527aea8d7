"""One observation pass for importance criteria: forward / backward over training batches with the task loss."""

from __future__ import annotations

import torch

from compressor.core.errors import CompressorError


def observe_gradients(ctx, model, batches: int, on_backward) -> int:
    """Forward/backward over ``batches`` shuffled training batches with the task loss, calling ``on_backward()``
    after each backward pass. Eval mode (no dropout): the scores describe the model as it predicts."""
    model.to(ctx.device)
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with torch.enable_grad():
            for batch in ctx.loader("train", 32, shuffle=True):
                if seen >= batches:
                    break
                model.zero_grad(set_to_none=True)
                out = model(**{k: v.to(ctx.device) for k, v in batch.items()})
                if out.loss is None:
                    raise CompressorError("taylor importance needs a loss: the training batches carry no labels")
                out.loss.backward()
                on_backward()
                seen += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        model.to("cpu")
    if seen == 0:
        raise CompressorError("taylor importance: the training split gave no batch")
    return seen
