"""Architecture families, registered by ``config.model_type`` (the classes: known.py; the base: base.py).

A family knows, for one layout of transformer layers: which config keys hold the head count, key/value
head count, hidden size, FFN width and layer count (so ``compressor validate`` and ``plan`` can read them
from config.json alone); where each layer's attention and FFN projections are (``blocks``); how a layer's
head count is patched after heads are removed; how structured pruning rewrites the config; which ONNX
Runtime optimizer (if any) fuses its exported graph; and how a layer-subset student is formed.

Nothing here imports torch: the slicing itself is in :mod:`compressor.arch.slicing`.
"""

from __future__ import annotations

from dataclasses import dataclass

from compressor.arch import known  # noqa: F401  (registers the families)
from compressor.arch.base import FAMILIES, STRUCTURE_KEY, Block, Family, cfg_get, register  # noqa: F401
from compressor.core.errors import ModelError


class CountError(ValueError):
    """A structured-pruning size that the model cannot take: ``field`` (heads / ffn) and the message."""

    def __init__(self, field_: str, message: str):
        super().__init__(message)
        self.field, self.message = field_, message


@dataclass
class Counts:
    remove: int  # query heads removed from every layer
    ffn_keep: int  # FFN neurons every layer keeps
    gqa: tuple[str, ...]  # grouped-query layouts that can lose ``remove`` heads: "within" groups, whole "groups"


def _count(spec: int | float, total: int) -> int:
    return int(spec) if isinstance(spec, int) else int(round(spec * total))


def structured_counts(fam: Family, config, heads: int | float, ffn: int | float, round_to: int) -> Counts:
    """What a structured-pruning stage removes from ``config`` (an object or config.json as a dict); raises
    :class:`CountError` for sizes the layout cannot take. Reads no weights: ``validate`` calls it too."""
    h, kv, n_ffn = fam.heads(config), fam.kv_heads(config), fam.ffn_size(config)
    remove = _count(heads, h)
    if remove >= h:
        raise CountError("heads", f"removes {remove} of the {h} heads of every layer; at least one must stay")
    gqa: tuple[str, ...] = ()
    if remove and kv != h:
        group = h // kv
        gqa = tuple(m for m, ok in (("within", remove % kv == 0), ("groups", remove % group == 0)) if ok)
        if not gqa:
            whole = f" or of {group} (whole key/value groups)" if group < h else ""
            raise CountError(
                "heads",
                f"the model groups its {h} query heads over {kv} key/value heads: remove a multiple "
                f"of {kv} heads per layer (the same number from every group){whole}, not {remove}",
            )
    drop = _count(ffn, n_ffn)
    if drop >= n_ffn:
        raise CountError("ffn", f"removes {drop} of the {n_ffn} FFN neurons of every layer; at least one must stay")
    keep = n_ffn - drop
    if drop and round_to > 1 and keep >= round_to:
        keep = max(round_to, (keep // round_to) * round_to)
    return Counts(remove, keep, gqa)


def find_family(model_or_config) -> Family | None:
    config = getattr(model_or_config, "config", model_or_config)
    return FAMILIES.get(str(cfg_get(config, "model_type", "?")))


def family_of(model_or_config) -> Family:
    fam = find_family(model_or_config)
    if fam is None:
        config = getattr(model_or_config, "config", model_or_config)
        raise ModelError(
            f"structured pruning supports {', '.join(sorted(FAMILIES))} models, not '{cfg_get(config, 'model_type', '?')}'"
        )
    return fam


def ort_optimizer_type(config) -> str | None:
    fam = find_family(config)
    return fam.ort_optimizer if fam else None


def attention_heads(model_or_config) -> list[int]:
    """Heads per layer, as the model really has them (after structured pruning too)."""
    config = getattr(model_or_config, "config", model_or_config)
    fam = find_family(config)
    if fam is not None:
        return fam.layer_heads(config)
    s = cfg_get(config, STRUCTURE_KEY) or {}
    return list(s.get("attention_heads") or [config.num_attention_heads] * config.num_hidden_layers)
