"""Weight-only quantization (int4 / int8_weight) against config.json: a block size must divide the input width of
every layer it quantizes. Called by compressor/recipe/model_config.py (validate, plan, run) and again by the stage
against the loaded config (for a model whose config.json is not local)."""

from __future__ import annotations

from typing import Any

from compressor.arch.families import find_family
from compressor.arch.signature import config_value

# the input widths of the MatMuls a weight-only scheme quantizes: attention and FFN-in read the hidden size, the
# FFN-out projection the intermediate size (GPT-2's n_inner defaults to 4 × n_embd)
_HIDDEN = ("hidden_size", "n_embd", "d_model")
_INTERMEDIATE = ("intermediate_size", "n_inner", "ffn_dim")


def layer_widths(config: Any) -> dict[str, int]:
    """{config field: width} of the quantizable layers' inputs, for the fields config.json has."""
    out: dict[str, int] = {}
    fam = find_family(config)
    if fam is not None:  # the family knows its own keys (DistilBERT: dim, hidden_dim)
        hidden_keys, inter_keys = (fam.hidden_key, *_HIDDEN), (fam.ffn_key, *_INTERMEDIATE)
    else:
        hidden_keys, inter_keys = _HIDDEN, _INTERMEDIATE
    hidden = config_value(config, hidden_keys)
    if hidden:
        field = next(n for n in hidden_keys if config_value(config, (n,)) is not None)
        out[field] = int(hidden)
    inter = config_value(config, inter_keys)
    if inter:
        out[next(n for n in inter_keys if config_value(config, (n,)) is not None)] = int(inter)
    elif hidden and config_value(config, ("model_type",)) == "gpt2":
        out["n_inner (4 × n_embd)"] = 4 * int(hidden)
    heads, head_dim = config_value(config, ("num_attention_heads",)), config_value(config, ("head_dim",))
    if heads and head_dim and hidden and int(heads) * int(head_dim) != int(hidden):
        out["num_attention_heads × head_dim"] = int(heads) * int(head_dim)  # the attention output projection's input
    return out


def block_size_problem(config: Any, block_size: int) -> str | None:
    for field, width in layer_widths(config).items():
        if width % block_size:
            return (
                f"block_size {block_size} does not divide the model's {field} {width} (the input width of layers "
                f"it would quantize); use a block size that divides it"
            )
    return None
