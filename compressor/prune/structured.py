"""Structured pruning: remove whole attention heads and FFN neurons, so the matrices really shrink.

Importance (observed first, in one pass): ``magnitude`` is the L1 / L2 norm of a head's (or neuron's)
weights in and out; ``taylor`` puts a mask of ones on the input of the attention output projection
(one entry per head) and of the FFN output projection (one per neuron) and accumulates |∂L/∂mask|
over training batches (Michel et al. 2019; Molchanov et al. 2019). Then every layer keeps its most
important heads and neurons — the same number in every layer — and its Linear layers are sliced.

Where the layers are and how each family records its smaller sizes is in :mod:`compressor.arch`
(families registered by model type); the slicing is :mod:`compressor.arch.slicing`. Families whose
config cannot hold a head count (BERT, GPT-2, ...) record it in ``config.compressor_structure``;
``compressor.models.load_model`` rebuilds such a model before loading its weights.
"""

from __future__ import annotations

import logging

import torch

from compressor.arch.families import STRUCTURE_KEY, Block, CountError, Family, attention_heads, family_of, structured_counts  # noqa: F401
from compressor.arch.slicing import apply_structure, is_conv1d, load_structured, prune_heads, prune_neurons  # noqa: F401
from compressor.core.errors import CompressorError, ModelError
from compressor.recipe.schema import StructuredPrune

log = logging.getLogger("compressor")


# ---------------------------------------------------------------- importance
def _weight_rows(m, rows: torch.Tensor, ord_: int, dim_out: bool = True) -> torch.Tensor:
    """Norm of each of ``rows`` output (dim_out) or input features of a Linear / Conv1D, per feature."""
    w = m.weight.detach().float()
    if is_conv1d(m):
        w = w.t()  # to (out, in)
    w = w[rows] if dim_out else w[:, rows].t()
    return w.abs().sum(-1) if ord_ == 1 else w.pow(2).sum(-1)


def magnitude_scores(fam: Family, blocks: list[Block], config, norm: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(per layer: a score per query head, per layer: a score per FFN neuron) from weight norms."""
    o = 1 if norm == "l1" else 2
    h, d, kv, n_ffn = fam.heads(config), fam.head_dim(config), fam.kv_heads(config), fam.ffn_size(config)
    heads, neurons = [], []
    q_rows = torch.arange(h * d)
    for b in blocks:
        if b.qkv is not None:
            per = _weight_rows(b.qkv, q_rows, o)
            if kv == h:  # the matching key / value heads go with each query head
                per = per + _weight_rows(b.qkv, q_rows + h * d, o) + _weight_rows(b.qkv, q_rows + 2 * h * d, o)
        else:
            per = _weight_rows(b.q, q_rows, o)
            if kv == h:
                per = per + _weight_rows(b.k, q_rows, o) + _weight_rows(b.v, q_rows, o)
        per = per + _weight_rows(b.out, q_rows, o, dim_out=False)
        heads.append(per.reshape(h, d).sum(-1))
        n = torch.arange(n_ffn)
        score = _weight_rows(b.ffn_out, n, o, dim_out=False)
        for m in b.ffn_in:
            score = score + _weight_rows(m, n, o)
        if b.ffn_gate_up is not None:
            score = score + _weight_rows(b.ffn_gate_up, n, o) + _weight_rows(b.ffn_gate_up, n + n_ffn, o)
        neurons.append(score)
    return heads, neurons


class MaskGradients:
    """Masks of ones on the inputs of the attention and FFN output projections; |∂L/∂mask| per head / neuron."""

    def __init__(self, blocks: list[Block], n_heads: int, head_dim: int, n_ffn: int, device: str):
        self.head_masks = [torch.ones(n_heads, device=device, requires_grad=True) for _ in blocks]
        self.ffn_masks = [torch.ones(n_ffn, device=device, requires_grad=True) for _ in blocks]
        self.head_scores = [torch.zeros(n_heads, device=device) for _ in blocks]
        self.ffn_scores = [torch.zeros(n_ffn, device=device) for _ in blocks]
        self.handles = []
        for i, b in enumerate(blocks):
            self.handles.append(b.out.register_forward_pre_hook(self._head_hook(i, head_dim)))
            self.handles.append(b.ffn_out.register_forward_pre_hook(self._ffn_hook(i)))

    def _head_hook(self, i: int, head_dim: int):
        def hook(module, args):
            x = args[0]
            m = self.head_masks[i].repeat_interleave(head_dim).to(x.dtype)
            return (x * m, *args[1:])

        return hook

    def _ffn_hook(self, i: int):
        def hook(module, args):
            return (args[0] * self.ffn_masks[i].to(args[0].dtype), *args[1:])

        return hook

    def observe(self) -> None:
        for masks, scores in ((self.head_masks, self.head_scores), (self.ffn_masks, self.ffn_scores)):
            for m, s in zip(masks, scores):
                if m.grad is None:
                    raise CompressorError("taylor importance needs gradients: no gradient reached the head / neuron masks")
                s += m.grad.detach().abs()
                m.grad = None

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


# ---------------------------------------------------------------- which heads stay
def _within_groups(scores: torch.Tensor, remove: int, n_kv: int) -> tuple[list[int], list[int]]:
    """The best query heads of every key/value group (every group keeps the same number, and its k / v)."""
    h = scores.numel()
    if n_kv == h:
        keep = sorted(torch.topk(scores, h - remove).indices.tolist())
        return keep, keep
    per_group, keep = h // n_kv, []
    for g in range(n_kv):
        group = scores[g * per_group : (g + 1) * per_group]
        keep += [g * per_group + int(i) for i in torch.topk(group, per_group - remove // n_kv).indices]
    return sorted(keep), list(range(n_kv))


def _whole_groups(scores: torch.Tensor, remove: int, n_kv: int) -> tuple[list[int], list[int]]:
    """The best key/value groups, each with all its query heads."""
    per_group = scores.numel() // n_kv
    groups = sorted(torch.topk(scores.reshape(n_kv, per_group).sum(-1), n_kv - remove // per_group).indices.tolist())
    return [g * per_group + j for g in groups for j in range(per_group)], groups


def choose_heads(scores: list[torch.Tensor], remove: int, n_kv: int, gqa: tuple[str, ...], shared: bool):
    """Per layer (query heads to keep, key/value heads to keep). Where grouped-query attention can lose the heads
    both ways, the layout that keeps more importance over all layers wins (one layout: the config has one)."""
    h = scores[0].numel()
    if remove == 0:
        return [(list(range(h)), list(range(n_kv)))] * len(scores)
    if shared:  # one head set for every layer
        scores = [torch.stack(scores).sum(0)] * len(scores)
    options = [_whole_groups if g == "groups" else _within_groups for g in (gqa or ("within",))]
    best, best_kept = None, -1.0
    for pick in options:
        choice = [pick(s, remove, n_kv) for s in scores]
        kept = sum(float(s[torch.tensor(q)].sum()) for s, (q, _) in zip(scores, choice))
        if kept > best_kept:
            best, best_kept = choice, kept
    return best


# ---------------------------------------------------------------- the stage
def _observe_taylor(ctx, model, blocks, config, fam, batches_wanted):
    from compressor.prune.observe import observe_gradients

    grads = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)  # only the masks need gradients
    masks = MaskGradients(blocks, fam.heads(config), fam.head_dim(config), fam.ffn_size(config), ctx.device)
    try:
        batches = observe_gradients(ctx, model, batches_wanted, masks.observe)
    finally:
        masks.remove()
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
    return [s.cpu() for s in masks.head_scores], [s.cpu() for s in masks.ffn_scores], batches


def prune_structured(ctx, cfg: StructuredPrune) -> dict:
    from compressor.models import count_parameters

    model, config = ctx.model, ctx.model.config
    try:
        fam = family_of(model)
    except ModelError as e:
        raise ctx.recipe.error(ctx.stage_path, str(e)) from None
    if getattr(config, STRUCTURE_KEY, None):
        raise ctx.recipe.error(ctx.stage_path, "the model was structurally pruned already; prune it once, with the final sizes")
    try:
        counts = structured_counts(fam, config, cfg.heads, cfg.ffn, cfg.round_to)
    except CountError as e:
        raise ctx.recipe.error(f"{ctx.stage_path}.{e.field}", e.message) from None
    blocks = fam.blocks(model)
    h, d, kv, n_ffn = fam.heads(config), fam.head_dim(config), fam.kv_heads(config), fam.ffn_size(config)
    before = count_parameters(model)
    batches = 0
    if cfg.criterion.type == "taylor":
        head_scores, ffn_scores, batches = _observe_taylor(ctx, model, blocks, config, fam, cfg.criterion.batches)
    else:
        head_scores, ffn_scores = magnitude_scores(fam, blocks, config, cfg.criterion.norm)
    choice = choose_heads(head_scores, counts.remove, kv, counts.gqa, fam.shared_heads)
    for b, (keep_q, keep_kv), fs in zip(blocks, choice, ffn_scores):
        if counts.remove:
            prune_heads(fam, b, keep_q, keep_kv, h, kv, d)
        if counts.ffn_keep < n_ffn:
            prune_neurons(b, torch.sort(torch.topk(fs, counts.ffn_keep).indices).values, n_ffn)
    if counts.remove and fam.shared_heads:
        fam.prune_shared(model, choice[0][0])
    kv_after = len(choice[0][1]) if kv != h else h - counts.remove
    fam.rewrite_config(config, h - counts.remove, kv_after, d, counts.ffn_keep)
    after = count_parameters(model)
    log.info(
        "structured pruning (%s%s): heads %d -> %d per layer%s, FFN %d -> %d per layer; parameters %.2f M -> %.2f M",
        cfg.criterion.type,
        f", {batches} batches" if batches else "",
        h,
        h - counts.remove,
        f" (key/value heads {kv} -> {kv_after})" if kv != h else "",
        n_ffn,
        counts.ffn_keep,
        before / 1e6,
        after / 1e6,
    )
    kept = [q for q, _ in choice]
    if fam.shared_block:  # one shared block: the same heads in every layer
        kept = kept[:1] * fam.layers(config)
    result = {
        "type": "structured",
        "family": fam.name,
        "criterion": cfg.criterion.type,
        "batches_observed": batches,
        "heads": {"before": h, "after": h - counts.remove, "kept": kept},
        "ffn": {"before": n_ffn, "after": counts.ffn_keep},
        "params_before": before,
        "params_after": after,
    }
    if kv != h:
        result["kv_heads"] = {"before": kv, "after": kv_after, "kept": [g for _, g in choice]}
    return result
