"""Recipe values checked against the model's config.json (read as JSON: no weights, no transformers).

Used by ``validate``, ``plan`` and ``run`` (before anything is written), so that a sequence length the model
cannot take, or a config.json that is not a JSON object, is refused up front, naming the recipe field; what the
stages ask of the model (layers, heads) is checked by ``model_checks.py`` when the recipe loads.
"""

from __future__ import annotations

import json
from pathlib import Path

from compressor.core.errors import CompressorError, ModelError

# families whose position table has padding_idx + 1 rows in front of the usable positions
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text", "xmod"}
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")


def read_model_config(spec: str, base_dir: Path | None) -> dict | None:
    """config.json of a local / pkg:// model; None for a Hub id or a folder without one (found missing later).

    A config.json that is not a JSON object is a ModelError naming the file."""
    from compressor.models import resolve

    try:
        path = resolve(spec, base_dir, "model.path", must_exist=False)
    except CompressorError:
        return None
    file = Path(path) / "config.json" if not isinstance(path, str) else None
    if file is None or not file.is_file():
        return None
    try:
        cfg = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ModelError(f"{file}: not UTF-8 text (byte {e.start})") from None
    except ValueError as e:
        raise ModelError(f"{file}: not valid JSON ({e})") from None
    except OSError as e:
        raise ModelError(f"{file}: cannot read: {e.strerror}") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{file}: not a model config (a JSON {type(cfg).__name__}, not an object)")
    return cfg


def _int(cfg: dict, key: str) -> int | None:
    v = cfg.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def position_limit(cfg: dict) -> tuple[int, str] | None:
    """(tokens a sequence may hold, the config key that says so), or None when the config sets no limit."""
    for key in _POSITION_KEYS:
        n = _int(cfg, key)
        if n is not None:
            if cfg.get("model_type") in _OFFSET_POSITIONS:
                n -= (_int(cfg, "pad_token_id") or 1) + 1
            return n, key
    return None


def check_against_model(recipe, recipe_dir: Path | None) -> dict | None:
    """Raise a RecipeError (file:line: field: ...) for a value the model's config.json rules out; return the config."""
    cfg = read_model_config(recipe.model.path, recipe_dir)
    if cfg is None:
        return None
    limit = position_limit(cfg)
    if limit is not None:
        n, key = limit
        why = f"the model takes at most {n} tokens ({key} in config.json)"
        if recipe.data.max_length > n:
            raise recipe.error("data.max_length", f"{recipe.data.max_length} is too long: {why}")
        if recipe.bench.enabled:
            for i, s in enumerate(recipe.bench.seq_lengths):
                if s > n:
                    raise recipe.error(f"bench.seq_lengths.{i}", f"{s} is too long: {why}")
    return cfg
