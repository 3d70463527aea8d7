"""The base of architecture families: the Family class, its Block, the registry keyed by model type (see families.py).

Nothing here imports torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    heads_key, kv_key, hidden_key, ffn_key, layers_key = (
        "num_attention_heads",
        None,
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
    )
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


FAMILIES: dict[str, Family] = {}


def register(family_cls: type[Family]) -> type[Family]:
    fam = family_cls()
    for mt in fam.model_types:
        FAMILIES[mt] = fam
    return family_cls
