"""Physically remove attention heads and FFN neurons from a family's blocks, and rebuild a pruned model.

Grouped-query attention is sliced two ways: query heads inside every key/value group (the groups stay,
``keep_kv`` is every key/value head), or whole groups (their key/value heads and all their query heads).
"""

from __future__ import annotations

import torch

from compressor.arch.families import STRUCTURE_KEY, Block, Family, family_of
from compressor.core.errors import ModelError


def is_conv1d(m) -> bool:
    return type(m).__name__ == "Conv1D"  # GPT-2: weight is (in, out)


@torch.no_grad()
def slice_out(m: torch.nn.Module, idx: torch.Tensor) -> None:
    """Keep output features ``idx`` of a Linear / Conv1D."""
    idx = idx.to(m.weight.device)
    if is_conv1d(m):
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
    if is_conv1d(m):
        m.weight = torch.nn.Parameter(m.weight[idx].clone())
    else:
        m.weight = torch.nn.Parameter(m.weight[:, idx].clone())
        m.in_features = len(idx)


def head_rows(heads: list[int], head_dim: int) -> torch.Tensor:
    if not heads:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in heads])


def qkv_rows(q_rows: torch.Tensor, kv_rows: torch.Tensor, n_heads: int, n_kv: int, head_dim: int) -> torch.Tensor:
    """Rows of a fused [q | k | v] projection (q: n_heads heads, k and v: n_kv heads each)."""
    q_width, kv_width = n_heads * head_dim, n_kv * head_dim
    return torch.cat([q_rows, kv_rows + q_width, kv_rows + q_width + kv_width])


def prune_heads(fam: Family, block: Block, keep_q: list[int], keep_kv: list[int], n_heads: int, n_kv: int, head_dim: int) -> None:
    """Keep query heads ``keep_q`` and key/value heads ``keep_kv`` (sorted) of one block."""
    q_rows, kv_rows = head_rows(keep_q, head_dim), head_rows(keep_kv, head_dim)
    if block.qkv is not None:
        slice_out(block.qkv, qkv_rows(q_rows, kv_rows, n_heads, n_kv, head_dim))
    else:
        for m in [block.q, *block.q_extra]:
            slice_out(m, q_rows)
        if len(keep_kv) < n_kv:
            for m in [block.k, block.v, *block.k_extra]:
                slice_out(m, kv_rows)
    slice_in(block.out, q_rows)
    fam.set_heads(block, len(keep_q), len(keep_kv), head_dim)


def prune_neurons(block: Block, keep: torch.Tensor, n_ffn: int) -> None:
    for m in block.ffn_in:
        slice_out(m, keep)
    if block.ffn_gate_up is not None:
        slice_out(block.ffn_gate_up, torch.cat([keep, keep + n_ffn]))
    slice_in(block.ffn_out, keep)


def apply_structure(model) -> None:
    """Shrink a freshly built model to the head counts in ``config.compressor_structure`` (before loading weights)."""
    s = getattr(model.config, STRUCTURE_KEY, None) or {}
    heads = s.get("attention_heads")
    if not heads:
        return
    fam = family_of(model)
    blocks = fam.blocks(model)
    if fam.shared_block or fam.shared_heads:
        if len(set(heads)) != 1:
            raise ModelError(f"{STRUCTURE_KEY}: a '{fam.name}' model keeps the same heads in every layer, not {heads}")
        heads = heads[:1] * len(blocks)
    if len(heads) != len(blocks):
        raise ModelError(f"{STRUCTURE_KEY} lists {len(heads)} layers but the model has {len(blocks)}")
    config = model.config
    h, d = fam.heads(config), int(s.get("head_dim") or fam.head_dim(config))
    for b, n in zip(blocks, heads):
        if not 1 <= n <= h:
            raise ModelError(f"{STRUCTURE_KEY}: {n} heads in a layer of a model with {h}")
        if n < h:
            prune_heads(fam, b, list(range(n)), list(range(n)), h, h, d)
    if fam.shared_heads and heads[0] < h:
        fam.prune_shared(model, list(range(heads[0])))


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
        raise ModelError(
            f"model {src}: weights do not match its pruned structure (missing {missing[:2]}, unexpected {unexpected[:2]})"
        )
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.eval()
