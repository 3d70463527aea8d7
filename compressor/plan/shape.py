"""The model's size, from config.json only (no weights): what ``plan`` estimates compute and parameters with."""

from __future__ import annotations

from dataclasses import dataclass

GATED_MLP = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "mixtral", "modernbert"}


@dataclass
class Shape:
    model_type: str
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    causal: bool

    @classmethod
    def from_config(cls, cfg: dict, causal: bool) -> Shape | None:
        from compressor.arch.families import find_family

        def num(v) -> int | None:  # a positive integer, or None (a hand-edited config may hold anything)
            return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

        def get(*keys: str) -> int | None:
            return next((num(cfg.get(k)) for k in keys if num(cfg.get(k))), None)

        def fam_value(what: str) -> int | None:
            try:
                return num(getattr(fam, what)(cfg)) if fam else None
            except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError):
                return None

        fam = find_family(cfg)
        layers = fam_value("layers") or get("num_hidden_layers", "n_layer")
        hidden = fam_value("hidden") or get("hidden_size", "n_embd", "dim")
        if not layers or not hidden:
            return None
        inter = fam_value("ffn_size") or get("intermediate_size", "n_inner", "hidden_dim") or 4 * hidden
        return cls(str(cfg.get("model_type", "?")), layers, hidden, inter, get("vocab_size") or 0, causal)

    def layer_params(self, hidden: int | None = None, inter: int | None = None) -> float:
        h, i = hidden or self.hidden, inter or self.intermediate
        return 4 * h * h + (3 if self.model_type in GATED_MLP else 2) * h * i

    def params(self, layers: int | None = None, hidden: int | None = None, inter: int | None = None) -> float:
        h = hidden or self.hidden
        return self.vocab * h + (self.layers if layers is None else layers) * self.layer_params(h, inter)

    def compute(self, layers: int | None = None, hidden: int | None = None, inter: int | None = None) -> float:
        """Multiply-adds per token: the layers, plus the LM head for a causal LM (an embedding lookup is free)."""
        h = hidden or self.hidden
        head = self.vocab * h if self.causal else 0
        return (self.layers if layers is None else layers) * self.layer_params(h, inter) + head


def shape_heads(config: dict | None) -> int | None:
    """Query heads per layer from config.json (the family's key, else the common ones)."""
    from compressor.arch.families import find_family

    cfg = config or {}
    fam = find_family(cfg)
    return (fam.heads(cfg) if fam else None) or cfg.get("num_attention_heads") or cfg.get("n_head")
