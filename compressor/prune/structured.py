"""Structured pruning: remove whole attention heads and FFN neurons, so the matrices really shrink.

Importance (observed first, in one pass): ``magnitude`` is the L1 / L2 norm of a head's (or neuron's)
weights in and out; ``taylor`` puts a mask of ones on the input of the attention output projection
(one entry per head) and of the FFN output projection (one per neuron) and accumulates |∂L/∂mask|
over training batches (Michel et al. 2019; Molchanov et al. 2019). Then every layer keeps its most
important heads and neurons — the same number in every layer — and its Linear layers are sliced.

The config is rewritten so the model saves and reloads at its smaller size: ``intermediate_size``
(``n_inner`` for GPT-2) always; for Llama-style decoders ``num_attention_heads`` /
``num_key_value_heads`` / ``head_dim``. BERT and GPT-2 derive the head size from
``hidden_size / num_attention_heads`` and transformers 5 dropped ``pruned_heads``, so their head counts
go into ``config.compressor_structure``; ``compressor.models.load_model`` (which every compressor
command uses) rebuilds such a model before loading its weights. The ONNX export carries the shapes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from compressor.errors import CompressorError, ModelError
from compressor.recipe.schema import StructuredPrune

log = logging.getLogger("compressor")
STRUCTURE_KEY = "compressor_structure"


@dataclass
class Block:
    """One transformer layer, as far as head / neuron pruning is concerned."""

    attn: torch.nn.Module  # the module whose head-count attributes are patched
    out: torch.nn.Module  # attention output projection: its input holds the heads side by side
    q: torch.nn.Module | None = None
    k: torch.nn.Module | None = None
    v: torch.nn.Module | None = None
    qkv: torch.nn.Module | None = None  # GPT-2: one Conv1D for q | k | v
    ffn_in: list[torch.nn.Module] = field(default_factory=list)  # up (and gate)
    ffn_out: torch.nn.Module | None = None


class Family:
    """How one architecture family lays out its layers and records its sizes."""

    name = "?"
    head_count_in_config = False  # can config.num_attention_heads say how many heads a layer has?

    def blocks(self, model) -> list[Block]:
        raise NotImplementedError

    def head_dim(self, config) -> int:
        return config.hidden_size // config.num_attention_heads

    def kv_heads(self, config) -> int:
        return config.num_attention_heads

    def ffn_size(self, config) -> int:
        return config.intermediate_size


class BertFamily(Family):
    name = "bert"

    def blocks(self, model):
        enc = model.base_model.encoder.layer
        return [Block(attn=b.attention.self, out=b.attention.output.dense, q=b.attention.self.query,
                      k=b.attention.self.key, v=b.attention.self.value, ffn_in=[b.intermediate.dense],
                      ffn_out=b.output.dense) for b in enc]

    @staticmethod
    def set_heads(block: Block, n: int, head_dim: int) -> None:
        block.attn.num_attention_heads = n
        block.attn.all_head_size = n * head_dim


class GPT2Family(Family):
    name = "gpt2"

    def blocks(self, model):
        return [Block(attn=b.attn, out=b.attn.c_proj, qkv=b.attn.c_attn, ffn_in=[b.mlp.c_fc], ffn_out=b.mlp.c_proj)
                for b in model.base_model.h]

    def ffn_size(self, config) -> int:
        return config.n_inner or 4 * config.hidden_size

    @staticmethod
    def set_heads(block: Block, n: int, head_dim: int) -> None:
        block.attn.num_heads = n
        block.attn.split_size = n * head_dim


class LlamaFamily(Family):
    name = "llama"
    head_count_in_config = True  # config.head_dim fixes the head size; num_attention_heads is free

    def blocks(self, model):
        return [Block(attn=b.self_attn, out=b.self_attn.o_proj, q=b.self_attn.q_proj, k=b.self_attn.k_proj,
                      v=b.self_attn.v_proj, ffn_in=[b.mlp.gate_proj, b.mlp.up_proj], ffn_out=b.mlp.down_proj)
                for b in model.base_model.layers]

    def head_dim(self, config) -> int:
        return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads

    def kv_heads(self, config) -> int:
        return getattr(config, "num_key_value_heads", None) or config.num_attention_heads

    @staticmethod
    def set_heads(block: Block, n: int, head_dim: int) -> None:
        kv = block.k.weight.shape[0] // head_dim
        block.attn.num_key_value_groups = n // kv


FAMILIES = {"bert": BertFamily(), "roberta": BertFamily(), "xlm-roberta": BertFamily(), "electra": BertFamily(),
            "gpt2": GPT2Family(), "llama": LlamaFamily(), "mistral": LlamaFamily(), "qwen2": LlamaFamily()}


def family_of(model_or_config) -> Family:
    config = getattr(model_or_config, "config", model_or_config)
    mt = getattr(config, "model_type", "?")
    if mt not in FAMILIES:
        raise ModelError(f"structured pruning supports {', '.join(sorted(FAMILIES))} models, not '{mt}'")
    return FAMILIES[mt]


# ---------------------------------------------------------------- slicing Linear / Conv1D
def _is_conv1d(m) -> bool:
    return type(m).__name__ == "Conv1D"  # GPT-2: weight is (in, out)


@torch.no_grad()
def slice_out(m: torch.nn.Module, idx: torch.Tensor) -> None:
    """Keep output features ``idx`` of a Linear / Conv1D."""
    idx = idx.to(m.weight.device)
    if _is_conv1d(m):
        m.weight = torch.nn.Parameter(m.weight[:, idx].clone())
        m.nf = len(idx)
    else:
        m.weight = torch.nn.Parameter(m.weight[idx].clone())
        m.out_features = len(idx)
    if m.bias is not None:
        m.bias = torch.nn.Parameter(m.bias[idx].clone())


@torch.no_grad()
def slice_in(m: torch.nn.Module, idx: torch.Tensor) -> None:
    """Keep input features ``idx`` of a Linear / Conv1D."""
    idx = idx.to(m.weight.device)
    if _is_conv1d(m):
        m.weight = torch.nn.Parameter(m.weight[idx].clone())
    else:
        m.weight = torch.nn.Parameter(m.weight[:, idx].clone())
        m.in_features = len(idx)


def _rows(heads: list[int], head_dim: int) -> torch.Tensor:
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads]) if heads else torch.zeros(0, dtype=torch.long)


def prune_heads(fam: Family, block: Block, keep: list[int], n_heads: int, n_kv: int, head_dim: int) -> None:
    """Keep query heads ``keep`` (sorted). Grouped-query attention keeps its key/value heads; multi-head
    attention (``n_kv == n_heads``) drops the matching key/value heads too."""
    rows = _rows(keep, head_dim)
    if block.qkv is not None:  # GPT-2: q | k | v side by side in one Conv1D
        width = n_heads * head_dim
        slice_out(block.qkv, torch.cat([rows, rows + width, rows + 2 * width]))
    else:
        slice_out(block.q, rows)
        if n_kv == n_heads:
            slice_out(block.k, rows)
            slice_out(block.v, rows)
    slice_in(block.out, rows)
    fam.set_heads(block, len(keep), head_dim)


def prune_neurons(block: Block, keep: torch.Tensor) -> None:
    for m in block.ffn_in:
        slice_out(m, keep)
    slice_in(block.ffn_out, keep)


# ---------------------------------------------------------------- importance
def _weight_rows(m, rows: torch.Tensor, ord_: int, dim_out: bool = True) -> torch.Tensor:
    """Norm of each of ``rows`` output (dim_out) or input features of a Linear / Conv1D, per feature."""
    w = m.weight.detach().float()
    if _is_conv1d(m):
        w = w.t()  # to (out, in)
    w = w[rows] if dim_out else w[:, rows].t()
    return w.abs().sum(-1) if ord_ == 1 else w.pow(2).sum(-1)


def magnitude_scores(fam: Family, blocks: list[Block], config, norm: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(per layer: a score per query head, per layer: a score per FFN neuron) from weight norms."""
    o = 1 if norm == "l1" else 2
    h, d, kv = config.num_attention_heads, fam.head_dim(config), fam.kv_heads(config)
    heads, neurons = [], []
    for b in blocks:
        all_rows = torch.arange(h * d)
        if b.qkv is not None:
            w = h * d
            per = sum(_weight_rows(b.qkv, all_rows + j * w, o) for j in range(3))
        else:
            per = _weight_rows(b.q, all_rows, o)
            if kv == h:
                per = per + _weight_rows(b.k, all_rows, o) + _weight_rows(b.v, all_rows, o)
        per = per + _weight_rows(b.out, all_rows, o, dim_out=False)
        heads.append(per.reshape(h, d).sum(-1))
        n = torch.arange(fam.ffn_size(config))
        neurons.append(sum(_weight_rows(m, n, o) for m in b.ffn_in) + _weight_rows(b.ffn_out, n, o, dim_out=False))
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


# ---------------------------------------------------------------- the stage
def _count(spec: int | float, total: int) -> int:
    return int(spec) if isinstance(spec, int) else int(round(spec * total))


def plan_counts(cfg: StructuredPrune, fam: Family, config, error) -> tuple[int, int]:
    """(heads removed per layer, FFN neurons kept per layer); ``error(field, message)`` builds recipe errors."""
    h, kv, n_ffn = config.num_attention_heads, fam.kv_heads(config), fam.ffn_size(config)
    remove = _count(cfg.heads, h)
    if remove >= h:
        raise error("heads", f"removes {remove} of the {h} heads of every layer; at least one must stay")
    if kv != h and remove % kv:
        raise error("heads", f"the model groups its {h} query heads over {kv} key/value heads: remove a multiple of {kv} "
                             f"heads per layer (each group keeps the same number), not {remove}")
    drop = _count(cfg.ffn, n_ffn)
    if drop >= n_ffn:
        raise error("ffn", f"removes {drop} of the {n_ffn} FFN neurons of every layer; at least one must stay")
    keep = n_ffn - drop
    if drop and cfg.round_to > 1:
        keep = max(cfg.round_to, (keep // cfg.round_to) * cfg.round_to) if keep >= cfg.round_to else keep
    return remove, keep


def choose_heads(scores: torch.Tensor, remove: int, n_kv: int) -> list[int]:
    """Heads to keep (sorted): the best of every key/value group, or of the layer for multi-head attention."""
    h = scores.numel()
    if remove == 0:
        return list(range(h))
    if n_kv == h:
        return sorted(torch.topk(scores, h - remove).indices.tolist())
    per_group = h // n_kv
    keep_per = per_group - remove // n_kv
    out = []
    for g in range(n_kv):
        group = scores[g * per_group:(g + 1) * per_group]
        out += [g * per_group + int(i) for i in torch.topk(group, keep_per).indices]
    return sorted(out)


def prune_structured(ctx, cfg: StructuredPrune) -> dict:
    from compressor.models import count_parameters
    from compressor.prune.stage import observe_gradients

    model, config = ctx.model, ctx.model.config
    try:
        fam = family_of(model)
    except ModelError as e:
        raise ctx.recipe.error(ctx.stage_path, str(e)) from None
    if getattr(config, STRUCTURE_KEY, None):
        raise ctx.recipe.error(ctx.stage_path, "the model was structurally pruned already; prune it once, with the final sizes")
    remove, ffn_keep = plan_counts(cfg, fam, config, lambda f, m: ctx.recipe.error(f"{ctx.stage_path}.{f}", m))
    blocks = fam.blocks(model)
    h, d, kv, n_ffn = config.num_attention_heads, fam.head_dim(config), fam.kv_heads(config), fam.ffn_size(config)
    before = count_parameters(model)
    batches = 0
    if cfg.criterion.type == "taylor":
        grads = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)  # only the masks need gradients
        masks = MaskGradients(blocks, h, d, n_ffn, ctx.device)
        try:
            batches = observe_gradients(ctx, model, cfg.criterion.batches, masks.observe)
        finally:
            masks.remove()
            for p, g in zip(model.parameters(), grads):
                p.requires_grad_(g)
        head_scores, ffn_scores = [s.cpu() for s in masks.head_scores], [s.cpu() for s in masks.ffn_scores]
    else:
        head_scores, ffn_scores = magnitude_scores(fam, blocks, config, cfg.criterion.norm)
    kept_heads = []
    for b, hs, fs in zip(blocks, head_scores, ffn_scores):
        keep = choose_heads(hs, remove, kv)
        if remove:
            prune_heads(fam, b, keep, h, kv, d)
        kept_heads.append(keep)
        if ffn_keep < n_ffn:
            prune_neurons(b, torch.sort(torch.topk(fs, ffn_keep).indices).values)
    rewrite_config(fam, config, h - remove, kv if kv != h else h - remove, d, ffn_keep, len(blocks))
    after = count_parameters(model)
    log.info("structured pruning (%s%s): heads %d -> %d per layer, FFN %d -> %d per layer; parameters %.2f M -> %.2f M",
             cfg.criterion.type, f", {batches} batches" if batches else "", h, h - remove, n_ffn, ffn_keep,
             before / 1e6, after / 1e6)
    return {"type": "structured", "criterion": cfg.criterion.type, "batches_observed": batches,
            "heads": {"before": h, "after": h - remove, "kept": kept_heads}, "ffn": {"before": n_ffn, "after": ffn_keep},
            "params_before": before, "params_after": after}


def rewrite_config(fam: Family, config, heads: int, kv: int, head_dim: int, ffn: int, n_layers: int) -> None:
    if isinstance(fam, GPT2Family):
        config.n_inner = ffn
    else:
        config.intermediate_size = ffn
    if heads == config.num_attention_heads:
        return
    if fam.head_count_in_config:
        config.head_dim = head_dim
        config.num_attention_heads = heads
        config.num_key_value_heads = kv
    else:
        setattr(config, STRUCTURE_KEY, {"attention_heads": [heads] * n_layers, "head_dim": head_dim})


def attention_heads(model_or_config) -> list[int]:
    """Heads per layer, as the model really has them (after structured pruning too)."""
    config = getattr(model_or_config, "config", model_or_config)
    s = getattr(config, STRUCTURE_KEY, None)
    if s and s.get("attention_heads"):
        return list(s["attention_heads"])
    return [config.num_attention_heads] * config.num_hidden_layers


def apply_structure(model) -> None:
    """Shrink a freshly built model to the head counts in ``config.compressor_structure`` (before loading weights)."""
    s = getattr(model.config, STRUCTURE_KEY, None) or {}
    heads = s.get("attention_heads")
    if not heads:
        return
    fam = family_of(model)
    blocks = fam.blocks(model)
    if len(heads) != len(blocks):
        raise ModelError(f"{STRUCTURE_KEY} lists {len(heads)} layers but the model has {len(blocks)}")
    h, d = model.config.num_attention_heads, s.get("head_dim") or fam.head_dim(model.config)
    for b, n in zip(blocks, heads):
        if not 1 <= n <= h:
            raise ModelError(f"{STRUCTURE_KEY}: {n} heads in a layer of a model with {h}")
        if n < h:
            prune_heads(fam, b, list(range(n)), h, h, d)


def load_structured(cls, src, config):
    """Build ``cls`` from ``config``, shrink it to ``config.compressor_structure``, then load the weights."""
    from pathlib import Path

    from safetensors.torch import load_file

    folder = Path(src)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelError(f"model {src}: structurally pruned, but no .safetensors weights beside config.json")
    model = cls.from_config(config)
    apply_structure(model)
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in missing if not k.endswith("position_ids") and k not in tied and "lm_head" not in k]
    if missing or unexpected:
        raise ModelError(f"model {src}: weights do not match its pruned structure (missing {missing[:2]}, "
                         f"unexpected {unexpected[:2]})")
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.eval()
