"""Architecture families, registered by ``config.model_type``.

A family knows, for one layout of transformer layers: which config keys hold the head count, key/value
head count, hidden size, FFN width and layer count (so ``compressor validate`` and ``plan`` can read them
from config.json alone); where each layer's attention and FFN projections are (``blocks``); how a layer's
head count is patched after heads are removed; how structured pruning rewrites the config; which ONNX
Runtime optimizer (if any) fuses its exported graph; and how a layer-subset student is formed.

Nothing here imports torch: the slicing itself is in :mod:`compressor.arch.slicing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compressor.errors import ModelError

STRUCTURE_KEY = "compressor_structure"  # config entry of families whose config cannot hold pruned head counts


def cfg_get(config: Any, key: str | None, default: Any = None) -> Any:
    """``key`` of a config object or of config.json read as a dict."""
    if key is None:
        return default
    value = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
    return default if value is None else value


@dataclass
class Block:
    """One transformer layer, as far as head / neuron pruning is concerned."""

    attn: Any  # the module whose head-count attributes are patched
    out: Any  # attention output projection: its input holds the heads side by side
    q: Any = None
    k: Any = None
    v: Any = None
    qkv: Any = None  # fused q | k | v along the output (GPT-2 Conv1D, ModernBERT Wqkv, Phi-3 qkv_proj)
    q_extra: list = field(default_factory=list)  # sliced like q (DeBERTa's pos_query_proj)
    k_extra: list = field(default_factory=list)  # sliced like k (DeBERTa's pos_key_proj)
    ffn_in: list = field(default_factory=list)  # up (and gate)
    ffn_gate_up: Any = None  # fused halves [a | b] along the output (ModernBERT Wi, Phi-3 gate_up_proj)
    ffn_out: Any = None


class Family:
    """How one architecture family lays out its layers and records its sizes."""

    name = "?"
    model_types: tuple[str, ...] = ()
    heads_key, kv_key, hidden_key, ffn_key, layers_key = "num_attention_heads", None, "hidden_size", "intermediate_size", "num_hidden_layers"
    head_dim_key: str | None = None  # config key that fixes the head size: pruned head counts then live in the config
    shared_heads = False  # one set of heads for every layer (a per-head table shared by all layers, e.g. MPNet's bias)
    shared_block = False  # every layer runs the same weights (ALBERT)
    ort_optimizer: str | None = None  # onnxruntime.transformers.optimizer model type that fuses the exported graph
    no_fusion = "ONNX Runtime's transformer optimizer has no fusion for this architecture"
    causal = False

    # ---- sizes, from a config object or config.json as a dict
    def heads(self, config) -> int:
        return int(cfg_get(config, self.heads_key, 0))

    def kv_heads(self, config) -> int:
        return int(cfg_get(config, self.kv_key, 0) or self.heads(config))

    def hidden(self, config) -> int:
        return int(cfg_get(config, self.hidden_key, 0))

    def head_dim(self, config) -> int:
        s = cfg_get(config, STRUCTURE_KEY) or {}
        return int(s.get("head_dim") or cfg_get(config, self.head_dim_key, 0) or self.hidden(config) // self.heads(config))

    def ffn_size(self, config) -> int:
        return int(cfg_get(config, self.ffn_key, 0))

    def layers(self, config) -> int:
        return int(cfg_get(config, self.layers_key, 0))

    def layer_heads(self, config) -> list[int]:
        """Heads per layer, as the model really has them (after structured pruning too)."""
        s = cfg_get(config, STRUCTURE_KEY) or {}
        if s.get("attention_heads"):
            return list(s["attention_heads"])
        return [self.heads(config)] * self.layers(config)

    def student_refusal(self, config) -> str | None:
        """Why a layer-subset student cannot be made, or None."""
        return None

    # ---- modules
    def blocks(self, model) -> list[Block]:
        """The distinct transformer layers (ALBERT: its shared ones)."""
        raise NotImplementedError

    def set_heads(self, block: Block, n: int, n_kv: int, head_dim: int) -> None:
        """Patch the attention module's own head-count attributes after slicing."""

    def prune_shared(self, model, keep: list[int]) -> None:
        """Slice per-head tables shared by every layer (``shared_heads`` families) to heads ``keep``."""

    # ---- config rewrite after structured pruning
    def rewrite_config(self, config, heads: int, kv: int, head_dim: int, ffn: int) -> None:
        setattr(config, self.ffn_key, ffn)
        if heads == self.heads(config) and kv == self.kv_heads(config):
            return
        if self.head_dim_key is not None:
            setattr(config, self.head_dim_key, head_dim)
            setattr(config, self.heads_key, heads)
            if self.kv_key is not None:
                setattr(config, self.kv_key, kv)
        else:  # the config derives the head size from hidden / heads: the counts go into compressor_structure
            setattr(config, STRUCTURE_KEY, {"attention_heads": [heads] * self.layers(config), "head_dim": head_dim})


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
            raise CountError("heads", f"the model groups its {h} query heads over {kv} key/value heads: remove a multiple "
                                      f"of {kv} heads per layer (the same number from every group){whole}, not {remove}")
    drop = _count(ffn, n_ffn)
    if drop >= n_ffn:
        raise CountError("ffn", f"removes {drop} of the {n_ffn} FFN neurons of every layer; at least one must stay")
    keep = n_ffn - drop
    if drop and round_to > 1 and keep >= round_to:
        keep = max(round_to, (keep // round_to) * round_to)
    return Counts(remove, keep, gqa)


FAMILIES: dict[str, Family] = {}


def register(family_cls: type[Family]) -> type[Family]:
    fam = family_cls()
    for mt in fam.model_types:
        FAMILIES[mt] = fam
    return family_cls


def find_family(model_or_config) -> Family | None:
    config = getattr(model_or_config, "config", model_or_config)
    return FAMILIES.get(str(cfg_get(config, "model_type", "?")))


def family_of(model_or_config) -> Family:
    fam = find_family(model_or_config)
    if fam is None:
        config = getattr(model_or_config, "config", model_or_config)
        raise ModelError(f"structured pruning supports {', '.join(sorted(FAMILIES))} models, "
                         f"not '{cfg_get(config, 'model_type', '?')}'")
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


from compressor.arch import known  # noqa: E402,F401  (registers the families)
