"""Sequential (layer-by-layer) calibration of a decoder for one-shot pruning.

The inputs of the first decoder layer are captured once for every calibration batch (the embeddings run,
the layers do not). Then, for each layer in turn: one pass over the captured inputs observes what the
criterion needs (input-channel norms, Hessians) at the layer's Linear modules; the criterion prunes them;
a second pass computes the pruned layer's outputs, which replace the captured inputs and become the next
layer's inputs. So every layer is calibrated on what the already-pruned layers before it produce (as in
SparseGPT and Wanda), and besides the model only one layer's activations for the calibration set are held.
"""

from __future__ import annotations

import logging
import time

import torch

from compressor.core.errors import CompressorError
from compressor.prune.criteria.base import GRADIENTS, LayerStats

log = logging.getLogger("compressor")


class _Captured(Exception):
    pass


def decoder_layers(model) -> tuple[str, torch.nn.ModuleList]:
    """(name, module list) of the model's transformer layers: the ModuleList with one entry per hidden layer."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.ModuleList) and n and len(m) == n:
            return name, m
    raise CompressorError(f"{type(model).__name__}: found no list of {n} transformer layers to calibrate layer by layer")


def out_in(module) -> torch.Tensor:
    """The weight as an (out × in) matrix (GPT-2's Conv1D stores in × out)."""
    from transformers.pytorch_utils import Conv1D

    return module.weight.data.t() if isinstance(module, Conv1D) else module.weight.data


def capture_inputs(model, layer, batches) -> list[tuple[torch.Tensor, tuple, dict]]:
    """(hidden states, other positional args, keyword args) of ``layer``'s call for every batch."""
    store: list = []

    def hook(module, args, kwargs):
        if args:
            store.append((args[0], tuple(args[1:]), dict(kwargs)))
        else:
            kw = dict(kwargs)
            store.append((kw.pop("hidden_states"), (), kw))
        raise _Captured

    handle = layer.register_forward_pre_hook(hook, with_kwargs=True)
    from compressor.arch.signature import decoder_signature

    device = next(model.parameters()).device
    names = decoder_signature(model.config, with_past=False).input_names  # the graph's inputs, no cache
    try:
        for batch in batches:
            try:
                model(**{k: v.to(device) for k, v in batch.items() if k in names}, use_cache=False)
            except _Captured:
                pass
    finally:
        handle.remove()
    if not store:
        raise CompressorError("calibration: no batch reached the first decoder layer")
    return store


def _run(layer, item) -> torch.Tensor:
    x, args, kwargs = item
    out = layer(x, *args, **kwargs)
    return out[0] if isinstance(out, tuple) else out


class StatsObserver:
    """Forward hooks that accumulate :class:`LayerStats` of the inputs of some Linear modules.

    Modules fed the very same tensor (q / k / v, gate / up) share one statistics object."""

    def __init__(self, modules: dict[str, torch.nn.Module], needs: frozenset):
        self.needs, self.stats, self.leader = needs, {}, {}
        self._seen: dict[int, tuple[torch.Tensor, str]] = {}
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in modules.items()]

    def _hook(self, name: str):
        def fn(module, args, output):
            x = args[0]
            if name not in self.leader:
                lead = self._seen.get(id(x))
                self.leader[name] = lead[1] if lead is not None and lead[0] is x else name
                self._seen[id(x)] = (x, self.leader[name])
                if self.leader[name] == name:
                    self.stats[name] = LayerStats()
            if self.leader[name] == name:
                self.stats[name].add(x, self.needs)

        return fn

    def end_batch(self) -> None:
        self._seen.clear()

    def get(self, name: str) -> LayerStats:
        return self.stats[self.leader[name]]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _bytes(items) -> int:
    return sum(x.numel() * x.element_size() for x, _, _ in items)


@torch.no_grad()
def prune_sequential(
    model, batches, criterion, pattern, sparsity: float, targets: dict[str, torch.nn.Module], field: str
) -> dict:
    """Prune ``targets`` (name -> Linear, all inside the decoder layers) layer by layer; returns a summary."""
    if GRADIENTS in criterion.needs:
        raise CompressorError(f"{criterion.name} needs gradients: it prunes inside training, not layer by layer")
    prefix, layers = decoder_layers(model)
    outside = [n for n in targets if not n.startswith(prefix + ".")]
    if outside:
        raise CompressorError(
            f"{field}: {criterion.name} prunes the decoder layers' Linear modules only; "
            f"{outside[0]} is outside {prefix} (exclude it)"
        )
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    items = capture_inputs(model, layers[0], batches)
    tokens = sum(x.shape[0] * x.shape[1] for x, _, _ in items)
    peak_bytes = _bytes(items)
    for i, layer in enumerate(layers):
        mine = {n: m for n, m in targets.items() if n.startswith(f"{prefix}.{i}.")}
        observer = StatsObserver(mine, criterion.needs) if criterion.needs and mine else None
        if observer is not None:
            try:
                for item in items:
                    _run(layer, item)
                    observer.end_batch()
            finally:
                observer.remove()
        for name, module in mine.items():
            w = out_in(module)
            w.copy_(criterion.prune(w, observer.get(name) if observer else None, pattern, sparsity, name))
        del observer
        for j, item in enumerate(items):
            items[j] = (_run(layer, item), item[1], item[2])
        peak_bytes = max(peak_bytes, _bytes(items))
    model.train(was_training)
    seconds = time.perf_counter() - t0
    log.info(
        "sequential calibration: %d layers, %d batches, %d tokens, %.1f s, %.1f MiB of layer activations held",
        len(layers),
        len(items),
        tokens,
        seconds,
        peak_bytes / 2**20,
    )
    return {
        "layers": len(layers),
        "batches": len(items),
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "activation_bytes": peak_bytes,
    }
